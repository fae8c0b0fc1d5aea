"""Built-in sample characters and the PMX writer.

The samples are the project's default input and golden fixtures, so these tests
check them the way a real model is checked: the files are deterministic, parse
with pymeshio (an independent PMX reader), load through `load_model`, resolve a
face rig whose wink morphs are the geometrically right ones, and the morphs and
skin weights move the parts they should.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from renderer.errors import RendererError
from renderer.model import (
    Bone,
    BoneFlag,
    Material,
    MaterialFlag,
    MMDModel,
    ModelFormat,
    Morph,
    MorphKind,
    MorphPanel,
    SkinningType,
    SphereMode,
)
from renderer.pmxwriter import pmx_bytes, write_pmx
from renderer.samples import build_sample, write_samples


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def samples_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("samples")
    write_samples(out, count=3, seed=0)
    return out


@pytest.fixture(scope="module")
def sample_paths(samples_dir) -> list[Path]:
    return [samples_dir / f"sample-{i:02d}" / f"sample-{i:02d}.pmx" for i in (1, 2, 3)]


# ------------------------------------------------------------------------------ files

def test_layout_and_return_value(tmp_path):
    paths = write_samples(tmp_path / "out", count=2, seed=3)
    assert paths == [tmp_path / "out" / "sample-01" / "sample-01.pmx",
                     tmp_path / "out" / "sample-02" / "sample-02.pmx"]
    for p in paths:
        assert p.read_bytes()[:4] == b"PMX "
        assert (p.parent / "face.png").is_file()
        assert (p.parent / "tex" / "hair.png").is_file()


def test_deterministic_per_seed(tmp_path, samples_dir):
    write_samples(tmp_path / "a", count=3, seed=0)
    assert _digest(tmp_path / "a") == _digest(samples_dir)
    write_samples(tmp_path / "b", count=3, seed=1)
    da, db = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert da.keys() == db.keys()
    assert all(da[k] != db[k] for k in da if k.endswith(".pmx"))
    # the characters of one seed differ from each other too
    pmx = [v for k, v in sorted(da.items()) if k.endswith(".pmx")]
    assert len(set(pmx)) == 3


def test_rewrite_keeps_identical_files(tmp_path):
    p = write_samples(tmp_path, count=1, seed=0)[0]
    before = p.stat().st_mtime_ns
    write_samples(tmp_path, count=1, seed=0)
    assert p.stat().st_mtime_ns == before


def test_write_error_is_one_line_renderer_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RendererError, match="cannot write"):
        write_samples(blocker / "sub", count=1)
    with pytest.raises(RendererError):
        write_samples(tmp_path, count=0)


def test_cli_samples(tmp_path, capsys):
    from cli import main

    assert main(["samples", str(tmp_path / "s"), "--count", "2", "--seed", "7"]) == 0
    out = capsys.readouterr().out.split()
    assert out == [str(tmp_path / "s" / "sample-01" / "sample-01.pmx"),
                   str(tmp_path / "s" / "sample-02" / "sample-02.pmx")]
    blocker = tmp_path / "f"
    blocker.write_text("x")
    assert main(["samples", str(blocker / "x")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("thactl: error:") and "Traceback" not in err


# ------------------------------------------------------------------------------ pymeshio

def test_pymeshio_reads_the_files(sample_paths):
    import pymeshio.pmx.reader as reader

    for i, p in enumerate(sample_paths):
        ref = build_sample(i, 0).model
        m = reader.read_from_file(str(p))
        assert len(m.vertices) == ref.vertex_count
        assert len(m.indices) == 3 * ref.triangle_count
        assert 5_000 <= ref.triangle_count <= 20_000
        assert [b.name for b in m.bones] == ["センター", "上半身", "首", "頭", "両目", "左目", "右目"]
        names = [mo.name for mo in m.morphs]
        assert "あ" in names and "まばたき" in names
        assert m.textures == ["face.png", "tex\\hair.png"]
        assert sum(mt.vertex_count for mt in m.materials) == len(m.indices)
        textured = [mt for mt in m.materials if mt.texture_index >= 0]
        assert textured and all((p.parent / m.textures[mt.texture_index].replace("\\", "/")).is_file()
                                for mt in textured)
        # 左目 takes 両目's rotation through an append transform, as on real models
        assert m.bones[5].effect_index == 4 and m.bones[5].flag & 0x100
        assert [d.name for d in m.display_slots][:2] == ["Root", "表情"]
        v = m.vertices[0]
        assert abs(v.normal.x ** 2 + v.normal.y ** 2 + v.normal.z ** 2 - 1) < 1e-3


# ------------------------------------------------------------------------------ geometry

def _face_vertex_normal_agreement(model: MMDModel) -> float:
    P, N, F = model.positions, model.normals, model.indices.astype(np.int64)
    fn = np.cross(P[F[:, 1]] - P[F[:, 0]], P[F[:, 2]] - P[F[:, 0]])
    d = (fn * N[F].sum(1)).sum(1)
    return float((d > 0).mean())


@pytest.mark.parametrize("index", [0, 1, 2])
def test_winding_and_normals_like_real_models(index):
    # MMD models wind front faces so that cross(p1-p0, p2-p0) points along the normal
    # (miku_v2.pmd: 22876 of 22957 triangles); the samples must do the same.
    m = build_sample(index, 0).model
    assert _face_vertex_normal_agreement(m) > 0.995
    assert np.allclose(np.linalg.norm(m.normals, axis=1), 1, atol=1e-3)
    assert np.isfinite(m.positions).all()
    # no degenerate triangles, no unused vertices
    P, F = m.positions.astype(np.float64), m.indices.astype(np.int64)
    area = np.linalg.norm(np.cross(P[F[:, 1]] - P[F[:, 0]], P[F[:, 2]] - P[F[:, 0]]), axis=1) / 2
    assert area.min() > 1e-6
    assert np.bincount(F.ravel(), minlength=m.vertex_count).min() > 0


def test_pymeshio_consumes_every_byte():
    import io

    import pymeshio.pmx.reader as reader

    ch = build_sample(1, 0)
    data = pmx_bytes(ch.model, ch.display_frames)
    ios = io.BytesIO(data)
    reader.read(ios)
    assert ios.tell() == len(data)


def test_face_is_toward_minus_z_and_eyes_on_both_sides():
    m = build_sample(0, 0).model
    eye = m.materials[[x.name for x in m.materials].index("目")]
    idx = np.unique(m.indices.reshape(-1)[eye.index_start:eye.index_start + eye.index_count])
    P = m.positions[idx]
    assert (P[:, 0] > 0.2).any() and (P[:, 0] < -0.2).any()
    head = m.bones[m.bone_index("頭")].position
    assert (P[:, 2] < head[2] - 1.0).all()             # in front of the head joint, toward -z
    assert (m.normals[idx, 2] < -0.3).all()


def test_morph_a_moves_only_the_mouth_below_the_eyes():
    m = build_sample(0, 0).model
    a = m.morphs[m.morph_index("あ")]
    assert a.kind == MorphKind.VERTEX and len(a.indices) > 20
    moved = m.positions[a.indices]
    eye_y = m.bones[m.bone_index("左目")].position[1]
    chin_y = m.positions[:, 1][m.bone_weights[:, 0] == 1].min()
    assert (moved[:, 1] < eye_y - 0.4).all()
    assert (np.abs(moved[:, 0]) < 0.5).all()
    assert (moved[:, 2] < -0.5).all()
    opened = moved + a.offsets
    assert opened[:, 1].min() < moved[:, 1].min() - 0.1      # the mouth opens downward
    assert opened[:, 1].min() > chin_y                       # ... but stays on the face


def test_winks_close_the_geometrically_named_eyes():
    for index in range(3):
        m = build_sample(index, 0).model
        names = [x.name for x in m.morphs]
        right = names.index("ウインク" if index == 1 else "ウィンク")
        left = names.index("ウインク右" if index == 1 else "ウィンク右")
        # ウィンク closes the character's RIGHT eye (x < 0), ウィンク右 the LEFT one (+x)
        assert (m.positions[m.morphs[right].indices][:, 0] < 0).all()
        assert (m.positions[m.morphs[left].indices][:, 0] > 0).all()
        for k in (left, right):
            dy = m.morphs[k].offsets[:, 1]
            assert (dy < 0).mean() > 0.8 and dy.min() < -0.3         # lids come down


def test_head_weights_are_the_head():
    m = build_sample(0, 0).model
    B = {b.name: i for i, b in enumerate(m.bones)}
    head_y = m.bones[B["頭"]].position[1]
    neck_y = m.bones[B["首"]].position[1]
    w_head = np.where(m.bone_indices == B["頭"], m.bone_weights, 0).sum(1)
    w_neck = np.where(m.bone_indices == B["首"], m.bone_weights, 0).sum(1)
    w_body = np.where(m.bone_indices == B["上半身"], m.bone_weights, 0).sum(1)
    mat = np.empty(m.vertex_count, object)
    for mt in m.materials:
        mat[m.indices.reshape(-1)[mt.index_start:mt.index_start + mt.index_count]] = mt.name
    assert np.allclose(m.bone_weights.sum(1), 1, atol=1e-6)
    skin = mat == "肌"
    # skull and face: all 頭; neck: blended; clothes: all 上半身
    assert (w_head[skin & (m.positions[:, 1] > head_y + 0.6)] == 1).all()
    blend = m.skin_type == SkinningType.BDEF2
    assert blend.sum() > 50 and (mat[blend] == "肌").all() and (w_neck[blend] > 0).all()
    y = m.positions[blend, 1]
    assert y.min() > neck_y - 0.2 and y.max() < head_y + 0.2
    assert (w_head[blend] > 0).any() and (w_body[blend] > 0).any()
    assert (w_head[blend][y < neck_y] == 0).all() and (w_body[blend][y > head_y] == 0).all()
    assert (w_body[(mat == "服") | (mat == "襟")] == 1).all()
    # nothing below the neck base moves with the head except hanging hair
    low = m.positions[:, 1] < neck_y - 0.3
    assert (w_head[low & (mat != "髪")] == 0).all()
    assert (w_head[low & (mat == "髪")] == 1).any()          # hair hangs below the chin
    # the eyes follow the eye bones, children of 頭
    for side, name in ((1, "左目"), (-1, "右目")):
        sel = (m.bone_indices[:, 0] == B[name]) & (m.bone_weights[:, 0] == 1)
        assert sel.any() and (np.sign(m.positions[sel, 0]) == side).all()
        assert m.bones[B[name]].parent == B["頭"]


# ------------------------------------------------------------------------------ loader

def _loader():
    from renderer.modelfile import load_model
    from renderer.face_rig import resolve_face_rig

    return load_model, resolve_face_rig


def test_load_model_and_face_rig(sample_paths):
    load_model, resolve_face_rig = _loader()
    for i, p in enumerate(sample_paths):
        ref = build_sample(i, 0).model
        m = load_model(p)
        assert m.format == ModelFormat.PMX
        assert m.vertex_count == ref.vertex_count and m.triangle_count == ref.triangle_count
        np.testing.assert_array_equal(m.positions, ref.positions)
        np.testing.assert_array_equal(m.indices, ref.indices)
        np.testing.assert_allclose(m.bone_weights, ref.bone_weights, atol=1e-6)
        assert [b.name for b in m.bones] == [b.name for b in ref.bones]
        assert [b.parent for b in m.bones] == [b.parent for b in ref.bones]
        # bone tails: 上半身 → 首 → 頭 point at bones, the others carry offsets
        assert [b.tail_bone for b in m.bones] == [b.tail_bone for b in ref.bones] == [-1, 2, 3, -1, -1, -1, -1]
        np.testing.assert_array_equal(np.stack([b.tail_offset for b in m.bones]),
                                      np.stack([b.tail_offset for b in ref.bones]))
        assert [x.name for x in m.morphs] == [x.name for x in ref.morphs]
        assert [x.texture for x in m.materials] == [x.texture for x in ref.materials]
        rig = resolve_face_rig(m)
        assert rig.problems() == []
        names = [x.name for x in m.morphs]
        assert names[rig.left_eye] == ("ウインク右" if i == 1 else "ウィンク右")
        assert names[rig.right_eye] == ("ウインク" if i == 1 else "ウィンク")
        assert names[rig.mouth] == "あ"
        assert names[rig.both_eyes] == "まばたき"
        assert m.bones[rig.neck_root].name == "首" and m.bones[rig.neck_tip].name == "頭"
    # sample 2 has まばたき as a group morph of the two winks
    m = load_model(sample_paths[1])
    blink = m.morphs[m.morph_index("まばたき")]
    assert blink.kind == MorphKind.GROUP and len(blink.indices) == 2


def test_render_left_wink_changes_the_image_right(sample_paths):
    """Closing the character's LEFT eye changes pixels in the image's right half only."""
    from renderer.errors import ContextError
    from renderer.preview import render_preview

    try:
        res = render_preview(sample_paths[0], [("rest", (0, 0, 0, 0, 0, 1)),
                                               ("left", (0, 0, 0, 1, 0, 1)),
                                               ("shut", (0, 0, 0, 0, 0, 0))], size=256)
    except ContextError as e:
        pytest.skip(f"no OpenGL: {e}")
    rest, left, shut = (img.astype(int) for img in res.images)
    assert rest.shape == (256, 256, 4)
    assert (rest[0, 0] == 0).all() and (rest[:, :, 3] > 0).mean() > 0.3
    # the head (skull and face) sits in the middle strip; the face is skin-coloured there
    skin = np.array(build_sample(0, 0).model.materials[0].diffuse[:3]) * 255
    centre = rest[140:150, 118:138, :3].reshape(-1, 3).mean(0)
    assert np.abs(centre / centre.max() - skin / skin.max()).max() < 0.15
    diff = np.abs(left - rest).sum(-1) > 30
    assert diff.sum() > 30
    cols = np.nonzero(diff)[1]
    rows = np.nonzero(diff)[0]
    assert (cols > 128).all()
    assert 64 < rows.min() and rows.max() < 191
    # closing the mouth changes pixels below the eyes, in the middle columns
    d = np.abs(shut - rest).sum(-1) > 30
    r, c = np.nonzero(d)
    assert d.sum() > 20 and r.min() > rows.max() and (abs(c - 128) < 30).all()


# ------------------------------------------------------------------------------ writer

def _tiny_model(nverts: int = 4, nbones: int = 3) -> MMDModel:
    V = nverts
    rng = np.random.default_rng(0)
    pos = rng.normal(size=(V, 3)).astype(np.float32)
    nor = np.tile(np.float32([0, 0, -1]), (V, 1))
    tri = np.array([[0, 1, 2], [0, 2, 3]], np.uint32) % V
    skin = (np.arange(V) % 4).astype(np.uint8)               # BDEF1, BDEF2, BDEF4, SDEF
    bi = (np.arange(V * 4).reshape(V, 4) % nbones).astype(np.int32)
    bw = np.tile(np.float32([0.4, 0.3, 0.2, 0.1]), (V, 1))
    bw[skin == 0] = [1, 0, 0, 0]
    bw[(skin == 1) | (skin == 3)] = [0.25, 0.75, 0, 0]
    bones = [Bone(f"b{i}", f"b{i}", np.float32([0, i, 0]), i - 1, 0,
                  BoneFlag.ROTATABLE | BoneFlag.VISIBLE | BoneFlag.ENABLED) for i in range(nbones)]
    bones[-1].flags |= BoneFlag.APPEND_ROTATION | BoneFlag.FIXED_AXIS
    bones[-1].append_parent, bones[-1].append_weight = 0, 0.5
    bones[-1].fixed_axis = np.float32([0, 1, 0])
    mat = Material("m", "m", np.float32([1, 0.5, 0.25, 1]), np.float32([0.1] * 3), 5.0,
                   np.float32([0.5] * 3), MaterialFlag.DOUBLE_SIDED | MaterialFlag.EDGE,
                   np.float32([0, 0, 0, 1]), 1.0, "t\\a.png", "s.sph", SphereMode.MULTIPLY, None, 3,
                   0, 6)
    morphs = [
        Morph("v", "v", MorphPanel.EYE, MorphKind.VERTEX, np.array([0, V - 1], np.int32),
              offsets=np.float32([[0, -1, 0], [0, 0, 1]])),
        Morph("g", "g", MorphPanel.OTHER, MorphKind.GROUP, np.array([0], np.int32),
              weights=np.float32([0.5])),
        Morph("b", "b", MorphPanel.OTHER, MorphKind.BONE, np.array([1], np.int32),
              translations=np.float32([[0, 1, 0]]), rotations=np.float32([[0, 0, 0, 1]])),
        Morph("uv", "uv", MorphPanel.OTHER, MorphKind.UV, np.array([2], np.int32),
              offsets=np.float32([[0.1, 0.2, 0, 0]])),
        Morph("mat", "mat", MorphPanel.OTHER, MorphKind.MATERIAL, np.array([-1], np.int32),
              operations=np.uint8([0]), values=np.ones((1, 28), np.float32)),
    ]
    return MMDModel(Path("tiny.pmx"), ModelFormat.PMX, 2.0, "タイニー", "tiny", "コメント",
                    pos, nor, rng.random((V, 2)).astype(np.float32), np.zeros((0, V, 4), np.float32),
                    skin, bi, bw, np.ones((V, 3), np.float32), np.zeros((V, 3), np.float32),
                    np.zeros((V, 3), np.float32), np.ones(V, np.float32), tri, ["t\\a.png"], [mat],
                    bones, morphs)


@pytest.mark.parametrize("nverts, vsize, utf8", [(4, 1, False), (4, 1, True), (300, 2, True),
                                                 (300, 2, False), (66000, 4, False)])
def test_writer_roundtrip_pymeshio(tmp_path, nverts, vsize, utf8):
    import pymeshio.pmx.reader as reader

    model = _tiny_model(nverts)
    data = pmx_bytes(model, utf8=utf8)
    assert data[:4] == b"PMX " and data[8] == 8
    assert data[9] == (1 if utf8 else 0) and data[11] == vsize
    assert data[12:17] == bytes([1, 1, 1, 1, 1])             # texture/material/bone/morph/rigid
    path = write_pmx(tmp_path / "tiny.pmx", model, utf8=utf8)
    m = reader.read_from_file(str(path))
    assert m.name == "タイニー" and m.comment == "コメント"
    assert len(m.vertices) == nverts and list(m.indices) == [0, 1, 2, 0, 2, 3]
    got = np.array([[v.position.x, v.position.y, v.position.z] for v in m.vertices[:8]])
    np.testing.assert_array_equal(got, model.positions[:8])
    assert [type(v.deform).__name__ for v in m.vertices[:4]] == ["Bdef1", "Bdef2", "Bdef4", "Sdef"]
    assert m.textures == ["t\\a.png", "s.sph"]
    mt = m.materials[0]
    assert (mt.texture_index, mt.sphere_texture_index, mt.sphere_mode) == (0, 1, 1)
    assert (mt.toon_sharing_flag, mt.toon_texture_index, mt.vertex_count) == (1, 3, 6)
    assert m.bones[2].effect_index == 0 and abs(m.bones[2].effect_factor - 0.5) < 1e-6
    assert [mo.morph_type for mo in m.morphs] == [1, 0, 2, 3, 8]
    assert len(m.joints) == 0 and len(m.rigidbodies) == 0


def test_writer_roundtrip_load_model(tmp_path):
    load_model, _ = _loader()
    model = _tiny_model(300)
    m = load_model(write_pmx(tmp_path / "t.pmx", model))
    np.testing.assert_array_equal(m.positions, model.positions)
    np.testing.assert_array_equal(m.skin_type, model.skin_type)
    np.testing.assert_allclose(m.bone_weights, model.bone_weights, atol=1e-6)
    assert m.materials[0].texture == "t\\a.png" and m.materials[0].toon_shared == 3
    assert [x.kind for x in m.morphs] == [x.kind for x in model.morphs]
    np.testing.assert_array_equal(m.morphs[0].offsets, model.morphs[0].offsets)
    assert m.bones[2].append_parent == 0


def test_weights_that_sum_to_one_keep_their_file_bits(tmp_path):
    """The writer's round-trip decision: BDEF4 weights that sum to 1 within float32 rounding are
    the file's exact float32 values after loading, and survive write -> load bit for bit; rows
    that sum to something else are normalised once, and the result survives bit for bit too."""
    load_model, _ = _loader()
    model = _tiny_model(8)
    model.skin_type[:] = SkinningType.BDEF4
    near = np.float32([0.1, 0.2, 0.3, 0.39999998])          # sums to 0.99999994 in float32
    model.bone_weights[:4] = near
    model.bone_weights[4:] = [0.2, 0.2, 0.2, 0.3]            # sums to 0.9: normalised on load
    a = load_model(write_pmx(tmp_path / "a.pmx", model))
    assert a.bone_weights[:4].tobytes() == np.tile(near, (4, 1)).tobytes()
    np.testing.assert_allclose(a.bone_weights[4:].sum(axis=1), 1.0, atol=1e-6)
    b = load_model(write_pmx(tmp_path / "b.pmx", a))
    assert b.bone_weights.tobytes() == a.bone_weights.tobytes()


def test_writer_rejects_inconsistent_models():
    from renderer.pmxwriter import PmxWriteError

    model = _tiny_model()
    model.materials[0].index_count = 3
    with pytest.raises(PmxWriteError, match="materials cover"):
        pmx_bytes(model)
    model = _tiny_model()
    model.indices = model.indices + 10
    with pytest.raises(PmxWriteError, match="vertex"):
        pmx_bytes(model)
    model = _tiny_model()
    model.skin_type[:] = SkinningType.QDEF
    with pytest.raises(PmxWriteError, match="2.1"):
        pmx_bytes(model)


def test_index_sizes_follow_the_counts(tmp_path):
    import pymeshio.pmx.reader as reader

    from renderer.pmxwriter import _signed_size, _vertex_index_size

    assert [_vertex_index_size(n) for n in (1, 255, 256, 65535, 65536)] == [1, 1, 2, 2, 4]
    assert [_signed_size(n) for n in (0, 127, 128, 32767, 32768)] == [1, 1, 2, 2, 4]
    model = _tiny_model(256, nbones=200)
    model.bone_indices[0, 0] = 199
    data = pmx_bytes(model)
    assert data[11] == 2 and data[14] == 2
    m = reader.read_from_file(str(write_pmx(tmp_path / "b.pmx", model)))
    assert len(m.bones) == 200 and m.vertices[0].deform.index0 == 199


def test_ground_truth_for_framing():
    for index in range(3):
        ch = build_sample(index, 0)
        m = ch.model
        assert ch.chin_y < ch.skull_top_y < ch.head_top_y < ch.skull_top_y + 0.3
        assert 2.8 < ch.head_top_y - ch.chin_y < 4.0
        # the chin is the face's lowest point, in front of the head joint
        head = m.bones[m.bone_index("頭")].position
        assert ch.chin_y < head[1] < ch.chin_y + 0.5
        # hair hangs below the chin and (sample-01) an ahoge sticks up above the cap
        assert m.positions[:, 1].max() > ch.head_top_y + (0.5 if index == 0 else 0.0)


def test_writer_round_trips_every_real_model(shared_models):
    """load → write PMX 2.0 → load gives the same model (PMD files are converted to PMX)."""
    from conftest import real_model_paths

    load_model, resolve_face_rig = _loader()
    arrays = ("positions", "normals", "uvs", "extra_uvs", "skin_type", "bone_indices", "bone_weights",
              "sdef_c", "sdef_r0", "sdef_r1", "edge_scale", "indices")
    for path in real_model_paths():
        a = load_model(path)
        b = load_model(path.with_suffix(".roundtrip.pmx"), data=pmx_bytes(a))
        for f in arrays:
            np.testing.assert_array_equal(getattr(b, f), getattr(a, f), err_msg=f"{path.name}: {f}")
        assert (b.name, b.comment) == (a.name, a.comment)
        for x, y in zip(a.materials, b.materials, strict=True):
            assert (y.name, y.texture, y.sphere, y.toon, y.toon_shared, y.index_start, y.index_count) == \
                   (x.name, x.texture, x.sphere, x.toon, x.toon_shared, x.index_start, x.index_count)
            np.testing.assert_array_equal(y.diffuse, x.diffuse)
            assert int(y.flags) == int(x.flags) and y.sphere_mode == (x.sphere_mode if x.sphere else 0)
        for x, y in zip(a.bones, b.bones, strict=True):
            assert (y.name, y.parent, y.deform_layer, y.append_parent, y.ik_target, y.ik_links) == \
                   (x.name, x.parent, x.deform_layer, x.append_parent, x.ik_target, x.ik_links)
            np.testing.assert_array_equal(y.position, x.position)
            assert y.append_weight == pytest.approx(x.append_weight)
            assert y.tail_bone == x.tail_bone
            np.testing.assert_array_equal(y.tail_offset, x.tail_offset)
        for x, y in zip(a.morphs, b.morphs, strict=True):
            assert (y.name, y.kind, y.panel) == (x.name, x.kind, x.panel)
            for f in ("indices", "offsets", "translations", "rotations", "weights", "operations", "values"):
                if getattr(x, f) is not None:
                    np.testing.assert_array_equal(getattr(y, f), getattr(x, f), err_msg=f"{path.name}: {x.name}.{f}")
        ra, rb = resolve_face_rig(a), resolve_face_rig(b)
        assert (ra.left_eye, ra.right_eye, ra.both_eyes, ra.mouth, ra.neck_root, ra.neck_tip) == \
               (rb.left_eye, rb.right_eye, rb.both_eyes, rb.mouth, rb.neck_root, rb.neck_tip)
