"""Texture filtering option of RenderContext: nearest-mip bilinear (default, faster on
llvmpipe) vs trilinear. Both must render the same character nearly identically."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def sample_renders(tmp_path_factory):
    import moderngl

    from renderer.framing import estimate_frame
    from renderer.modelfile import load_model
    from renderer.face_rig import resolve_face_rig
    from renderer.offscreen import RenderContext
    from core.pose import REST_POSE
    from renderer.posing import ModelPoser
    from renderer.samples import write_samples

    (path,) = write_samples(tmp_path_factory.mktemp("samples"), count=1, seed=0)
    model = load_model(path)
    rig = resolve_face_rig(model)
    poser = ModelPoser(model, rig)
    frame = estimate_frame(model, rig, poser.pose(REST_POSE).positions)
    poses = [REST_POSE, np.array([0.6, -0.8, 0.3, 1, 0, 0.2], np.float32)]
    out, filters = {}, {}
    for trilinear in (False, True):
        with RenderContext(size=128, aa=4, trilinear=trilinear) as rc, rc.prepare(model) as scene:
            out[trilinear] = [scene.render(poser.pose(p), frame) for p in poses]
            filters[trilinear] = {t.filter[0] for t in scene._gl_textures.values()}
    return out, filters, moderngl


def test_default_samples_nearest_mip_level(sample_renders):
    _, filters, mgl = sample_renders
    assert filters[False] == {mgl.LINEAR_MIPMAP_NEAREST}
    assert filters[True] == {mgl.LINEAR_MIPMAP_LINEAR}


def test_filters_render_nearly_the_same(sample_renders):
    from skimage.metrics import structural_similarity

    out, _, _ = sample_renders
    for fast, tri in zip(out[False], out[True]):
        assert (fast[..., 3] > 0).sum() > 1000
        assert np.mean((fast[..., 3] == 0) != (tri[..., 3] == 0)) < 0.002   # same silhouette
        assert structural_similarity(fast, tri, channel_axis=-1, data_range=255) >= 0.99
        assert np.abs(fast.astype(int) - tri.astype(int)).mean() < 1.0
