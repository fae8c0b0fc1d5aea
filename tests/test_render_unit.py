"""Renderer behaviour on tiny hand-made models: blending, culling, cut-outs, lighting,
camera mapping, output conventions, texture lookup. Real EGL rendering, no mocks."""
from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from renderer.errors import RenderError
from renderer.framing import Frame
from renderer.model import Material, MaterialFlag, MMDModel, ModelFormat, SphereMode

S = 64


@pytest.fixture(scope="module")
def rc():
    from renderer.offscreen import RenderContext

    with RenderContext(size=S, aa=0) as ctx:
        yield ctx


def quad(x0, y0, x1, y1, z, clockwise=True):
    """Two triangles facing -z (toward the viewer); MMD front faces are clockwise on screen."""
    p = np.array([[x0, y0, z], [x0, y1, z], [x1, y1, z], [x1, y0, z]], np.float32)
    tris = [[0, 1, 2], [0, 2, 3]] if clockwise else [[0, 2, 1], [0, 3, 2]]
    uv = np.array([[0, 1], [0, 0], [1, 0], [1, 1]], np.float32)
    return p, np.array(tris, np.uint32), uv


def material(rgba, start, count, flags=MaterialFlag.NONE, texture=None):
    return Material(name="m", name_en="m", diffuse=np.array(rgba, np.float32), specular=np.zeros(3, np.float32),
                    specular_power=0.0, ambient=np.zeros(3, np.float32), flags=flags,
                    edge_color=np.array([0, 0, 0, 1], np.float32), edge_size=0.0, texture=texture, sphere=None,
                    sphere_mode=SphereMode.NONE, toon=None, toon_shared=None, index_start=start, index_count=count)


def make_model(parts, path=Path("handmade.pmx"), textures=()):
    """parts: list of (quad tuple, rgba, flags, texture)."""
    pos, idx, uvs, mats = [], [], [], []
    base = 0
    for (p, t, uv), rgba, flags, tex in parts:
        mats.append(material(rgba, sum(len(i) for i in idx) * 3, len(t) * 3, flags, tex))
        pos.append(p)
        uvs.append(uv)
        idx.append(t + base)
        base += len(p)
    P = np.concatenate(pos)
    V = len(P)
    N = np.tile(np.array([[0, 0, -1]], np.float32), (V, 1))
    z3 = np.zeros((V, 3), np.float32)
    return MMDModel(path=path, format=ModelFormat.PMX, version=2.0, name="h", name_en="h", comment="",
                    positions=P, normals=N, uvs=np.concatenate(uvs), extra_uvs=np.zeros((0, V, 4), np.float32),
                    skin_type=np.zeros(V, np.uint8), bone_indices=np.zeros((V, 4), np.int32),
                    bone_weights=np.tile(np.array([[1, 0, 0, 0]], np.float32), (V, 1)), sdef_c=z3, sdef_r0=z3,
                    sdef_r1=z3, edge_scale=np.ones(V, np.float32), indices=np.concatenate(idx).astype(np.uint32),
                    textures=list(textures), materials=mats, bones=[], morphs=[])


def mesh_of(model):
    return SimpleNamespace(positions=model.positions, normals=model.normals, uvs=model.uvs, material_morph=None)


FULL = Frame(0.0, 0.0, 1.0)


def render(rc, model, frame=FULL, ambient=0.5, shading="phong"):
    with rc.prepare(model, shading) as scene:
        return scene.render(mesh_of(model), frame, ambient)


def test_lighting_recipe_and_exact_background(rc):
    m = make_model([(quad(-0.5, -0.5, 0.5, 0.5, 0), (1, 1, 1, 1), MaterialFlag.NONE, None)])
    img = render(rc, m, ambient=0.5)
    assert tuple(img[S // 2, S // 2]) == (255, 255, 255, 255)      # 0.5 + 0.5·1
    img = render(rc, m, ambient=0.2)
    assert abs(int(img[S // 2, S // 2, 0]) - round(0.7 * 255)) <= 1
    assert tuple(img[0, 0]) == (0, 0, 0, 0) and tuple(img[-1, -1]) == (0, 0, 0, 0)
    assert not img[img[..., 3] == 0, :3].any()


def test_camera_axes_and_frame_box(rc):
    # a quad in the +x, +y quadrant shows on the image's right and top
    m = make_model([(quad(0.25, 0.25, 0.75, 0.75, 0), (1, 0, 0, 1), MaterialFlag.NONE, None)])
    a = render(rc, m)[..., 3] > 0
    rows, cols = np.nonzero(a)
    assert cols.min() == S * 5 // 8 and cols.max() == S * 7 // 8 - 1      # x 0.25..0.75 of [-1,1]
    assert rows.min() == S // 8 and rows.max() == S * 3 // 8 - 1           # image row grows with -y
    # the box: centre (0.5, 0.5), half 0.25 -> the quad fills the image
    b = render(rc, m, frame=Frame(0.5, 0.5, 0.25))
    assert (b[..., 3] == 255).all()


def test_back_faces_culled_unless_double_sided(rc):
    back = quad(-0.5, -0.5, 0.5, 0.5, 0, clockwise=False)
    assert not render(rc, make_model([(back, (1, 1, 1, 1), MaterialFlag.NONE, None)]))[..., 3].any()
    m = make_model([(back, (1, 1, 1, 1), MaterialFlag.DOUBLE_SIDED, None)])
    m.normals[:] = (0, 0, 1)          # its normal points away, as the winding says
    img = render(rc, m)
    assert img[S // 2, S // 2, 3] == 255
    # seen from behind, the normal is flipped toward the viewer: fully lit
    assert img[S // 2, S // 2, 0] == 255


def test_alpha_blending_gives_straight_colour_and_correct_alpha(rc):
    red_back = (quad(-0.75, -0.75, 0.0, 0.75, 0.5), (1, 0, 0, 1), MaterialFlag.NONE, None)
    blue_half = (quad(-0.5, -0.5, 0.5, 0.5, 0.0), (0, 0, 1, 0.5), MaterialFlag.NONE, None)
    img = render(rc, make_model([red_back, blue_half])).astype(int)
    over_red = img[S // 2, S * 3 // 8]
    over_bg = img[S // 2, S * 5 // 8]
    assert over_red[3] == 255 and abs(over_red[0] - 128) <= 2 and abs(over_red[2] - 128) <= 2
    # alone over the background: alpha 0.5, colour NOT premultiplied (pure blue)
    assert abs(over_bg[3] - 128) <= 1 and over_bg[2] == 255 and over_bg[0] == 0


def test_alpha_cutout_texels_are_discarded(rc, tmp_path):
    tex = np.zeros((8, 8, 4), np.uint8)
    tex[:, :4] = (0, 255, 0, 255)            # left half opaque green, right half fully transparent
    Image.fromarray(tex).save(tmp_path / "Cut.PNG")
    front = (quad(-0.5, -0.5, 0.5, 0.5, 0.0), (1, 1, 1, 1), MaterialFlag.NONE, "cut.png")
    behind = (quad(-0.75, -0.75, 0.75, 0.75, 0.5), (1, 0, 0, 1), MaterialFlag.NONE, None)
    # the cut-out is drawn FIRST: without the alpha test its depth would hide the red quad
    img = render(rc, make_model([front, behind], path=tmp_path / "m.pmx", textures=["cut.png"]))
    assert tuple(img[S // 2, S * 3 // 8]) == (0, 255, 0, 255)
    assert tuple(img[S // 2, S * 5 // 8]) == (255, 0, 0, 255)


def test_msaa_edges_are_partial_and_unpremultiplied():
    from renderer.offscreen import RenderContext

    m = make_model([(quad(-0.51, -0.51, 0.49, 0.49, 0), (0.2, 0.4, 1.0, 1), MaterialFlag.NONE, None)])
    with RenderContext(size=S, aa=4) as rc4:
        img = render(rc4, m).astype(int)
    a = img[..., 3]
    edge = (a > 0) & (a < 255)
    assert edge.any()
    inside = img[S // 2, S // 2, :3]
    # straight colour on partly covered pixels equals the interior colour
    assert np.abs(img[edge][:, :3] - inside).max() <= 3


def test_supersampling_path():
    from renderer.offscreen import RenderContext

    m = make_model([(quad(-0.5, -0.5, 0.5, 0.5, 0), (1, 1, 1, 1), MaterialFlag.NONE, None)])
    with RenderContext(size=S, aa=0, supersample=2) as rc2:
        img = render(rc2, m)
    assert img.shape == (S, S, 4) and tuple(img[S // 2, S // 2]) == (255, 255, 255, 255)
    assert tuple(img[0, 0]) == (0, 0, 0, 0)


def test_missing_texture_warns_once_and_uses_material_colour(rc, tmp_path, caplog):
    parts = [(quad(-0.5, -0.5, 0.5, 0.5, 0), (0, 1, 0, 1), MaterialFlag.NONE, "nothere.bmp"),
             (quad(-0.9, -0.9, -0.6, -0.6, 0), (0, 1, 0, 1), MaterialFlag.NONE, "..\\..\\etc\\passwd")]
    with caplog.at_level(logging.WARNING, logger="thactl.renderer"):
        img = render(rc, make_model(parts, path=tmp_path / "m.pmx"))
    recs = [r for r in caplog.records if r.name == "thactl.renderer"]
    assert len(recs) == 1 and "nothere.bmp" in recs[0].getMessage() and "outside" in recs[0].getMessage()
    assert tuple(img[S // 2, S // 2]) == (0, 255, 0, 255)


def test_toon_shading_and_edges(rc):
    m = make_model([(quad(-0.5, -0.5, 0.5, 0.5, 0), (1, 1, 1, 1), MaterialFlag.EDGE, None)])
    m.materials[0].edge_size = 2.0
    img = render(rc, m, shading="toon")
    assert img[S // 2, S // 2, 3] == 255 and tuple(img[0, 0]) == (0, 0, 0, 0)


def test_bad_inputs_raise_render_errors(rc):
    m = make_model([(quad(-0.5, -0.5, 0.5, 0.5, 0), (1, 1, 1, 1), MaterialFlag.NONE, None)])
    with pytest.raises(RenderError):
        rc.prepare(m, "cel")
    with rc.prepare(m) as scene:
        with pytest.raises(RenderError):
            scene.render(mesh_of(m), Frame(0, 0, 0))
        bad = SimpleNamespace(positions=np.zeros((3, 3), np.float32), normals=np.zeros((3, 3), np.float32),
                              uvs=None, material_morph=None)
        with pytest.raises(RenderError):
            scene.render(bad, FULL)


# ------------------------------------------------------------------ textures.py

def test_resolve_texture_backslashes_case_and_escapes(tmp_path):
    from renderer.textures import resolve_texture

    (tmp_path / "Tex").mkdir()
    (tmp_path / "Tex" / "Face.BMP").write_bytes(b"x")
    assert resolve_texture(tmp_path, "tex\\face.bmp") == tmp_path / "Tex" / "Face.BMP"
    assert resolve_texture(tmp_path, "TEX/FACE.bmp") == tmp_path / "Tex" / "Face.BMP"
    assert resolve_texture(tmp_path, "tex\\..\\tex\\face.bmp") == tmp_path / "Tex" / "Face.BMP"
    assert resolve_texture(tmp_path, "..\\secret.bmp") is None
    assert resolve_texture(tmp_path, "C:\\Windows\\face.bmp") is None
    assert resolve_texture(tmp_path, "/etc/passwd") is None
    assert resolve_texture(tmp_path, "missing.bmp") is None


def test_resolve_texture_shift_jis_mojibake(tmp_path):
    from renderer.textures import resolve_texture

    name = "顔テクスチャ.png"
    mojibake = name.encode("cp932").decode("cp437")      # what many unzip tools produce
    (tmp_path / mojibake).write_bytes(b"x")
    assert resolve_texture(tmp_path, name) == tmp_path / mojibake
    (tmp_path / "髪.png").write_bytes(b"x")
    assert resolve_texture(tmp_path, "髪.png".encode("cp932").decode("cp437")) == tmp_path / "髪.png"


def test_load_image_formats(tmp_path):
    from renderer.textures import builtin_toon, load_image

    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[0] = (255, 0, 0)
    Image.fromarray(rgb).save(tmp_path / "a.bmp")
    (tmp_path / "a.sph").write_bytes((tmp_path / "a.bmp").read_bytes())   # sphere map = BMP inside
    Image.fromarray(rgb).save(tmp_path / "a.tga")
    for f in ("a.bmp", "a.sph", "a.tga"):
        arr = load_image(tmp_path / f)
        assert arr.shape == (4, 6, 4) and tuple(arr[0, 0]) == (255, 0, 0, 255) and arr[1, 0, 0] == 0, f
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(Exception):
        load_image(tmp_path / "bad.png")
    t = builtin_toon(0)
    assert t.shape == (32, 32, 4) and tuple(t[0, 0]) == (255, 255, 255, 255) and t[-1, 0, 0] < 255


def test_unpremultiply():
    from renderer.offscreen import unpremultiply

    img = np.array([[[64, 32, 0, 128], [5, 5, 5, 0], [10, 20, 30, 255]]], np.uint8)
    out = unpremultiply(img.copy())
    assert tuple(out[0, 0]) == (128, 64, 0, 128)
    assert tuple(out[0, 1]) == (0, 0, 0, 0)
    assert tuple(out[0, 2]) == (10, 20, 30, 255)


# ------------------------------------------------------------------ context errors and the CLI

def test_no_egl_gives_one_line_error_naming_packages(tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, __EGL_VENDOR_LIBRARY_FILENAMES=str(tmp_path / "none.json"),
               EGL_PLATFORM="surfaceless")
    code = ("import sys, cli; sys.exit(cli.main(['preview', 'x.pmx', '-o', 'y.png']))\n")
    # a model file that loads, so the failure is the context's
    from renderer.samples import write_samples
    (path,) = write_samples(tmp_path / "s", count=1, seed=0)
    code = code.replace("x.pmx", str(path)).replace("y.png", str(tmp_path / "out.png"))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                       cwd=str(Path(__file__).resolve().parents[1]))
    assert r.returncode == 1, r.stderr
    assert "libegl-mesa0" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out.png").exists()


def test_preview_cli_single_sheet_frame_and_errors(tmp_path, capsys):
    import cli
    from renderer.samples import write_samples

    (path,) = write_samples(tmp_path / "s", count=1, seed=0)
    out = tmp_path / "one.png"
    assert cli.main(["preview", str(path), "--pose", "0", "-0.5", "0", "1", "0", "0.2", "--size", "96",
                     "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    line = next(l for l in printed.splitlines() if l.startswith("frame:"))
    cx, cy, half = (float(v) for v in line.split()[1:4])
    img = np.asarray(Image.open(out))
    assert img.shape == (96, 96, 4) and tuple(img[0, 0]) == (0, 0, 0, 0)
    # the printed box reproduces the exact same image
    out2 = tmp_path / "two.png"
    assert cli.main(["preview", str(path), "--pose", "0", "-0.5", "0", "1", "0", "0.2", "--size", "96",
                     "--frame", repr(cx), repr(cy), repr(half), "-o", str(out2)]) == 0
    assert np.abs(np.asarray(Image.open(out2)).astype(int) - img).max() <= 1
    sheet = tmp_path / "sheet.png"
    assert cli.main(["preview", str(path), "--sheet", "--size", "64", "-o", str(sheet)]) == 0
    # 64 px renders are enlarged 2x (nearest) so that labels like "head_x -1 (down)" fit under them
    sheet_img = np.asarray(Image.open(sheet))
    assert sheet_img.shape[1] == 4 * 128
    cell = sheet_img[:128, :128].astype(int)
    assert (cell.reshape(64, 2, 64, 2, 3) == cell[::2, ::2][:, None, :, None]).all()
    capsys.readouterr()
    assert cli.main(["preview", str(path), "--pose", "0", "0", "0", "2", "0", "0.3", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "bad pose: left_eye = 2 is outside [0, 1]" in err and "Traceback" not in err
    assert cli.main(["preview", str(tmp_path / "nope.pmx"), "-o", str(out)]) == 1
    capsys.readouterr()
    jpg = tmp_path / "one.jpg"        # PNG bytes under a .jpg name would mislead every viewer
    assert cli.main(["preview", str(path), "--size", "32", "-o", str(jpg)]) == 1
    assert ".png" in capsys.readouterr().err and not jpg.exists()


def test_material_morph_rows_follow_material_indices(rc):
    # material 0 draws nothing (count 0) and must not shift the morph rows of material 1
    m = make_model([(quad(-0.5, -0.5, 0.5, 0.5, 0), (1, 1, 1, 1), MaterialFlag.NONE, None)])
    empty = material((1, 1, 1, 1), 0, 0)
    m.materials.insert(0, empty)
    mm = np.zeros((2, 28), np.float32)
    mm[:, 16:28] = 1.0
    mm[1, 0:4] = (1, 0, 0, 1)                 # material 1 turns red
    mm[0, 0:4] = (0, 0, 1, 1)
    with rc.prepare(m) as scene:
        mesh = mesh_of(m)
        mesh.material_morph = mm
        img = scene.render(mesh, FULL)
        assert tuple(img[S // 2, S // 2]) == (255, 0, 0, 255)
        mm[1, 3] = 0.0                        # alpha 0 hides the material (a common toggle)
        assert not scene.render(mesh, FULL)[..., 3].any()
        mesh.material_morph = np.zeros((1, 28), np.float32)
        with pytest.raises(RenderError):
            scene.render(mesh, FULL)



def test_forked_worker_after_gl_gets_an_error_not_a_hang(rc):
    import multiprocessing as mp

    m = make_model([(quad(-0.5, -0.5, 0.5, 0.5, 0), (1, 1, 1, 1), MaterialFlag.NONE, None)])
    render(rc, m)                                     # the parent has a live context
    with mp.get_context("fork").Pool(1) as pool:
        msg = pool.apply(_context_in_child, ())
    assert "spawn" in msg


def _context_in_child():
    from renderer.offscreen import RenderContext

    try:
        RenderContext(size=32, aa=0)
    except RenderError as e:
        return str(e)
    return "no error"


def test_bad_model_data_raise_render_errors_naming_the_file(rc):
    m = make_model([(quad(-0.5, -0.5, 0.5, 0.5, 0), (1, 1, 1, 1), MaterialFlag.NONE, None)])
    m.materials[0].index_count = 999                      # runs past the index buffer
    with pytest.raises(RenderError, match="handmade.pmx"):
        rc.prepare(m)
    m = make_model([(quad(-0.5, -0.5, 0.5, 0.5, 0), (1, 1, 1, 1), MaterialFlag.NONE, None)])
    m.indices = m.indices + 100                           # faces point at missing vertices
    with pytest.raises(RenderError, match="vertex count"):
        rc.prepare(m)


def _head_model(neck_on_head: bool):
    """A ball head (radius 1 at y=18) plus a thin neck column in front, from y=15 up to the head."""
    from renderer.model import Bone, BoneFlag

    u, v = np.meshgrid(np.linspace(0, np.pi, 24), np.linspace(0, 2 * np.pi, 24))
    ball = np.stack([np.sin(u) * np.cos(v), 18 + np.cos(u), np.sin(u) * np.sin(v)], -1).reshape(-1, 3)
    t = np.linspace(0, 1, 40)
    neck = np.stack([0.02 * np.cos(t * 20), 15 + 2.2 * t, -0.3 + 0 * t], -1)
    P = np.concatenate([ball, neck]).astype(np.float32)
    V = len(P)
    bones = [Bone("首", "neck", np.array([0, 16.8, 0], np.float32), -1, 0, BoneFlag.NONE),
             Bone("頭", "head", np.array([0, 17.2, 0], np.float32), 0, 0, BoneFlag.NONE),
             Bone("左目", "eye_L", np.array([0.3, 17.8, -0.8], np.float32), 1, 0, BoneFlag.NONE),
             Bone("右目", "eye_R", np.array([-0.3, 17.8, -0.8], np.float32), 1, 0, BoneFlag.NONE)]
    bi = np.zeros((V, 4), np.int32)
    bi[:, 0] = 1
    if not neck_on_head:
        bi[len(ball):, 0] = 0
    m = make_model([(quad(-0.5, -0.5, 0.5, 0.5, 0), (1, 1, 1, 1), MaterialFlag.NONE, None)])
    m.positions, m.bones = P, bones
    m.bone_indices = bi
    m.bone_weights = np.tile(np.array([[1, 0, 0, 0]], np.float32), (V, 1))
    return m


def test_framing_on_a_ball_head_and_the_implausible_chin_fallback():
    from renderer.framing import estimate_head

    good = estimate_head(_head_model(False), None, _head_model(False).positions)
    assert abs(good.chin_y - 17.0) < 0.05 and abs(good.head_top_y - 19.0) < 0.15 and not good.notes
    m = _head_model(True)                     # the whole neck skinned to 頭: chin would drop to y=15
    bad = estimate_head(m, None, m.positions)
    assert bad.notes and "chin" in bad.notes[0]
    assert abs(bad.chin_y - (17.8 - 0.55 * (bad.head_top_y - 17.8))) < 1e-4
