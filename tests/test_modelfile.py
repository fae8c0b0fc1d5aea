"""Loading .pmx/.pmd: every real model, the PMD/PMX Animasa Miku pair, a hand-built PMX 2.1
file (UTF-8, additional UVs, QDEF/SDEF, flip and impulse morphs) and broken inputs."""
from __future__ import annotations

import random
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from renderer.errors import ModelLoadError
from renderer.model import (
    BoneFlag,
    MaterialFlag,
    ModelFormat,
    MorphKind,
    SkinningType,
    SphereMode,
)
from renderer.modelfile import load_model
from conftest import real_model_paths

PAIR_PMD = "mmd_default_pmd/miku_v2.pmd"
PAIR_PMX = "animasa_miku_pmx_j3/index.pmx"


# ---------------------------------------------------------------- a small PMX written here

class _W:
    """Tiny little-endian byte builder for the synthetic PMX below (test-only)."""

    def __init__(self, enc: str = "utf-8"):
        self.parts: list[bytes] = []
        self.enc = enc

    def raw(self, fmt, *v):
        self.parts.append(struct.pack("<" + fmt, *v))
        return self

    def text(self, s: str):
        b = s.encode(self.enc)
        return self.raw("i", len(b)).bytes_(b)

    def bytes_(self, b: bytes):
        self.parts.append(b)
        return self

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


def build_pmx(version: float = 2.1, extra_uv: int = 2, utf8: bool = True) -> bytes:
    """A 6-vertex, 2-triangle PMX using every deform type, every morph type and 2.1 features."""
    w = _W("utf-8" if utf8 else "utf-16-le")
    w.bytes_(b"PMX ").raw("f", version).raw("B", 8)
    # encoding, additional UVs, index sizes: vertex 2, texture 1, material 1, bone 2, morph 1, rigid 1
    w.raw("8B", 1 if utf8 else 0, extra_uv, 2, 1, 1, 2, 1, 1)
    w.text("テスト").text("test").text("コメント").text("comment")
    verts = [  # (deform type, deform packer)
        (0, lambda: w.raw("h", 1)),
        (1, lambda: w.raw("hhf", 1, 2, 0.25)),
        (2, lambda: w.raw("hhhh4f", 0, 1, 2, -1, 0.5, 0.25, 0.25, 0.0)),
        (3, lambda: w.raw("hhf9f", 2, 1, 0.75, 1, 2, 3, 4, 5, 6, 7, 8, 9)),
        (4, lambda: w.raw("hhhh4f", 2, 3, 0, 0, 0.5, 0.5, 0.0, 0.0)),
        (0, lambda: w.raw("h", 3)),
    ]
    w.raw("i", len(verts))
    for i, (t, deform) in enumerate(verts):
        w.raw("3f", i, 10 + i, -i)                 # position
        w.raw("3f", 0, 0, -1)                      # normal
        w.raw("2f", 0.1 * i, 0.2 * i)              # uv
        for a in range(extra_uv):
            w.raw("4f", i, a, 7, 8)                # additional UV a
        w.raw("B", t)
        deform()
        w.raw("f", 1.0 if i != 5 else 0.0)         # edge scale
    w.raw("i", 6).raw("6H", 0, 1, 2, 3, 4, 5)
    w.raw("i", 2).text("tex\\Face.PNG").text("sphere.spa")
    w.raw("i", 1)                                  # one material
    w.text("顔").text("face").raw("4f", 1, 0.5, 0.25, 0.9).raw("3f", 0.1, 0.2, 0.3).raw("f", 5)
    w.raw("3f", 0.4, 0.5, 0.6).raw("B", 0x01 | 0x10).raw("4f", 0, 0, 0, 1).raw("f", 0.7)
    w.raw("bb", 0, 1).raw("B", 2).raw("B", 1).raw("b", 3).text("memo").raw("i", 6)
    # bones: 0 センター (root), 1 首 (child of 0), 2 頭 (child of 1),
    #        3 付与 (append rotation from 2, weight 0.5, layer 1), 4 IK bone
    w.raw("i", 5)
    w.text("センター").text("center").raw("3f", 0, 0, 0).raw("h", -1).raw("i", 0)
    w.raw("H", 0x0002 | 0x0004 | 0x0008 | 0x0010).raw("3f", 0, 1, 0)
    w.text("首").text("neck").raw("3f", 0, 15, 0).raw("h", 0).raw("i", 0)
    w.raw("H", 0x0001 | 0x0002 | 0x0008 | 0x0010).raw("h", 2)
    w.text("頭").text("head").raw("3f", 0, 16, 0).raw("h", 1).raw("i", 0)
    w.raw("H", 0x0002 | 0x0008 | 0x0010 | 0x0800).raw("3f", 0, 1, 0).raw("6f", 1, 0, 0, 0, 0, 1)
    w.text("付与").text("append").raw("3f", 1, 12, 0).raw("h", 0).raw("i", 1)
    w.raw("H", 0x0002 | 0x0010 | 0x0100 | 0x0400).raw("3f", 0, 1, 0).raw("hf", 2, 0.5)
    w.raw("3f", 0, 0, 1)                           # fixed axis
    w.text("IK").text("ik").raw("3f", 0, 0, 0).raw("h", 0).raw("i", 2)
    w.raw("H", 0x0002 | 0x0004 | 0x0010 | 0x0020).raw("3f", 0, 1, 0)
    w.raw("hif", 3, 40, 0.1).raw("i", 2).raw("hB", 2, 0).raw("hB6f", 1, 1, -1, 0, 0, 1, 0, 0)
    # morphs (9): one of every type
    w.raw("i", 9)
    w.text("ウインク").text("wink").raw("BB", 2, 1).raw("i", 2)
    w.raw("H3f", 0, 0, -1, 0).raw("H3f", 3, 0, -0.5, 0)
    w.text("uv").text("uv").raw("BB", 4, 3).raw("i", 1).raw("H4f", 1, 0.5, 0.5, 0, 0)
    w.text("uv1").text("uv1").raw("BB", 4, 4).raw("i", 1).raw("H4f", 2, 1, 1, 1, 1)
    w.text("bone").text("bone").raw("BB", 4, 2).raw("i", 1).raw("h3f4f", 2, 0, 1, 0, 0, 0, 0, 1)
    w.text("mat").text("mat").raw("BB", 4, 8).raw("i", 1).raw("bB", -1, 0)
    w.raw("28f", *([0.5] * 28))
    w.text("group").text("group").raw("BB", 4, 0).raw("i", 3).raw("bf", 0, 0.5).raw("bf", 5, 1.0)
    w.raw("bf", 7, 1.0)                            # group: vertex 0.5, itself (loop), impulse
    w.text("flip").text("flip").raw("BB", 4, 9).raw("i", 1).raw("bf", 0, 1.0)
    w.text("impulse").text("impulse").raw("BB", 4, 10).raw("i", 1).raw("bB6f", 0, 1, 1, 2, 3, 4, 5, 6)
    w.text("broken").text("").raw("BB", 4, 0).raw("i", 1).raw("bf", 100, 1.0)
    # display slots
    w.raw("i", 1).text("表情").text("exp").raw("B", 1).raw("i", 2).raw("Bb", 1, 0).raw("Bh", 0, 2)
    # rigid bodies, joints
    w.raw("i", 1).text("rb").text("rb").raw("h", 2).raw("BHB", 0, 0xFFFF, 0).raw("9f", *range(9))
    w.raw("5f", 1, 0.5, 0.5, 0, 0.5).raw("B", 0)
    w.raw("i", 1).text("j").text("j").raw("B", 0).raw("bb", 0, 0).raw("24f", *range(24))
    if version >= 2.1:
        w.raw("i", 0)                              # soft bodies
    return w.getvalue()


# ---------------------------------------------------------------- real models

@pytest.mark.parametrize("path", real_model_paths(), ids=lambda p: p.parent.name + "/" + p.name)
def test_every_real_model_loads(path: Path):
    m = load_model(path)
    V = m.vertex_count
    assert V > 0 and m.triangle_count > 0
    assert m.format == (ModelFormat.PMX if path.suffix.lower() == ".pmx" else ModelFormat.PMD)
    assert m.positions.shape == (V, 3) and m.positions.dtype == np.float32
    assert m.normals.shape == (V, 3) and m.uvs.shape == (V, 2)
    assert m.bone_indices.shape == (V, 4) and m.bone_weights.shape == (V, 4)
    assert np.allclose(m.bone_weights.sum(axis=1), 1.0, atol=1e-5)
    assert m.bone_indices.min() >= 0 and m.bone_indices.max() < len(m.bones)
    assert m.indices.dtype == np.uint32 and int(m.indices.max()) < V
    assert sum(mat.index_count for mat in m.materials) <= m.indices.size
    assert all(isinstance(b.name, str) for b in m.bones)
    assert all(isinstance(x.name, str) for x in m.morphs)
    assert m.bone_index("首") >= 0 and m.bone_index("頭") >= 0
    for mo in m.morphs:
        if mo.kind == MorphKind.VERTEX:
            # an empty vertex morph (no offsets) is valid
            assert mo.indices.size == 0 or mo.indices.max() < V
            assert mo.offsets.shape == (mo.indices.size, 3)


def _pair(shared_models):
    a, b = shared_models / PAIR_PMD, shared_models / PAIR_PMX
    if not (a.is_file() and b.is_file()):
        pytest.skip("Animasa Miku PMD/PMX pair not present")
    return load_model(a), load_model(b)


def test_animasa_pair_same_mesh(shared_models):
    pmd, pmx = _pair(shared_models)
    assert pmd.vertex_count == pmx.vertex_count == 12354
    assert np.abs(pmd.positions - pmx.positions).max() < 1e-4
    assert np.abs(pmd.normals - pmx.normals).max() < 1e-4
    assert np.abs(pmd.uvs - pmx.uvs).max() < 1e-4
    assert np.array_equal(pmd.indices, pmx.indices)
    # same effective skinning: dense (V, B) weight matrices agree
    def dense(m):
        d = np.zeros((m.vertex_count, len(m.bones)), np.float32)
        np.add.at(d, (np.arange(m.vertex_count)[:, None], m.bone_indices), m.bone_weights)
        return d
    assert np.abs(dense(pmd) - dense(pmx)).max() < 1e-5
    assert [x.name for x in pmd.morphs] == [x.name for x in pmx.morphs]
    for x, y in zip(pmd.morphs, pmx.morphs):
        assert np.array_equal(x.indices, y.indices), x.name
        assert np.abs(x.offsets - y.offsets).max() < 1e-5, x.name
    for x, y in zip(pmd.bones, pmx.bones):
        assert x.name == y.name and x.parent == y.parent
        assert x.append_parent == y.append_parent
        assert abs(x.append_weight - y.append_weight) < 1e-6
    for x, y in zip(pmd.materials, pmx.materials):
        assert (x.texture, x.sphere, x.toon_shared) == (y.texture, y.sphere, y.toon_shared)
        assert np.allclose(x.diffuse, y.diffuse) and x.index_count == y.index_count


def test_animasa_pair_same_posed_positions(shared_models):
    from renderer.face_rig import resolve_face_rig
    from renderer.posing import ModelPoser

    pmd, pmx = _pair(shared_models)
    pa, pb = ModelPoser(pmd, resolve_face_rig(pmd)), ModelPoser(pmx, resolve_face_rig(pmx))
    for pose in ([0.7, -0.4, 0.9, 1.0, 0.0, 0.5], [-1, 1, -1, 0.3, 0.8, 1.0]):
        a, b = pa.pose(pose), pb.pose(pose)
        assert np.abs(a.positions - b.positions).max() < 1e-4
        assert np.abs(a.normals - b.normals).max() < 1e-4
        assert np.abs(a.positions - pmd.positions).max() > 0.1     # it did move


def test_pmd_specifics(shared_models):
    low = shared_models / "lowpoly_miku_gumi_pmd" / "miku.pmd"
    metal = shared_models / "mmd_default_pmd" / "miku_m.pmd"
    mokou = shared_models / "mokou_pmd" / "mokou_A.pmd"
    if not (low.is_file() and metal.is_file() and mokou.is_file()):
        pytest.skip("PMD test models missing")
    m = load_model(low)
    assert all(mat.toon is None and mat.toon_shared is None for mat in m.materials)  # toon 255
    assert {mat.texture for mat in m.materials} == {"ro_hatune01.tga", "ro_hatune02.tga"}
    m = load_model(metal)
    spheres = {(mat.texture, mat.sphere, mat.sphere_mode) for mat in m.materials if mat.sphere}
    assert ("metal.sph" in {s for _, s, _ in spheres})
    assert all(mode == SphereMode.MULTIPLY for _, s, mode in spheres if s.endswith(".sph"))
    assert any(mat.flags & MaterialFlag.EDGE for mat in m.materials)
    assert m.name == "初音ミク(メタル服)" and m.name_en                     # decoded, not bytes
    assert m.bones[m.bone_index("左目")].flags & BoneFlag.APPEND_ROTATION
    m = load_model(mokou)
    toons = {mat.toon for mat in m.materials if mat.toon}
    assert toons and toons <= {"toonH1.bmp", "toonH2.bmp"}                 # custom toon list
    assert all(b.deform_layer == 0 for b in m.bones)


def test_data_argument_names_the_file(shared_models):
    p = shared_models / PAIR_PMX
    if not p.is_file():
        pytest.skip("model missing")
    m = load_model("zipped/inside.pmx", data=p.read_bytes())
    assert m.path == Path("zipped/inside.pmx") and m.vertex_count == 12354
    with pytest.raises(ModelLoadError, match=r"^zipped/inside\.pmx: "):
        load_model("zipped/inside.pmx", data=p.read_bytes()[:5000])


# ---------------------------------------------------------------- synthetic PMX 2.1

def test_pmx21_extra_uv_qdef_all_morph_types():
    m = load_model("synthetic.pmx", data=build_pmx())
    assert m.format == ModelFormat.PMX and m.version == 2.1
    assert m.name == "テスト" and m.name_en == "test" and m.comment == "コメント"
    assert m.vertex_count == 6 and m.triangle_count == 2
    assert np.allclose(m.positions[:, 1], 10 + np.arange(6))
    assert m.extra_uvs.shape == (2, 6, 4)
    assert np.allclose(m.extra_uvs[1, 4], [4, 1, 7, 8])
    assert list(m.skin_type) == [0, 1, 2, 3, 4, 0]
    assert m.skin_type[4] == SkinningType.QDEF
    assert list(m.bone_indices[1, :2]) == [1, 2] and np.allclose(m.bone_weights[1, :2], [.25, .75])
    assert np.allclose(m.bone_weights[2], [0.5, 0.25, 0.25, 0.0]) and m.bone_indices[2, 3] == 0
    assert np.allclose(m.sdef_c[3], [1, 2, 3]) and np.allclose(m.sdef_r1[3], [7, 8, 9])
    assert np.allclose(m.edge_scale, [1, 1, 1, 1, 1, 0])
    mat = m.materials[0]
    assert mat.texture == "tex\\Face.PNG" and mat.sphere == "sphere.spa"
    assert mat.sphere_mode == SphereMode.ADD and mat.toon_shared == 3 and mat.toon is None
    assert mat.flags == MaterialFlag.DOUBLE_SIDED | MaterialFlag.EDGE and mat.index_count == 6
    assert np.allclose(mat.diffuse, [1, 0.5, 0.25, 0.9]) and mat.comment == "memo"
    names = [b.name for b in m.bones]
    assert names == ["センター", "首", "頭", "付与", "IK"]
    ap = m.bones[3]
    assert ap.append_parent == 2 and ap.append_weight == 0.5 and ap.deform_layer == 1
    assert np.allclose(ap.fixed_axis, [0, 0, 1])
    assert np.allclose(m.bones[2].local_axis_z, [0, 0, 1])
    assert m.bones[4].ik_target == 3 and m.bones[4].ik_links == [2, 1]
    kinds = [mo.kind for mo in m.morphs]
    assert kinds == [MorphKind.VERTEX, MorphKind.UV, MorphKind.UV1, MorphKind.BONE,
                     MorphKind.MATERIAL, MorphKind.GROUP, MorphKind.FLIP, MorphKind.IMPULSE,
                     MorphKind.GROUP]
    assert np.allclose(m.morphs[0].offsets[1], [0, -0.5, 0])
    assert m.morphs[3].rotations.shape == (1, 4) and m.morphs[4].values.shape == (1, 28)
    assert m.morphs[4].indices[0] == -1
    assert m.morphs[8].indices.size == 0          # reference to morph 100 dropped ...
    assert any("broken" in w for w in m.warnings)  # ... and reported


def test_pmx20_utf16_and_no_extra_uv():
    m = load_model("s.pmx", data=build_pmx(version=2.0, extra_uv=0, utf8=False))
    assert m.version == 2.0 and m.name == "テスト" and m.extra_uvs.shape == (0, 6, 4)
    assert m.skin_type[4] == SkinningType.QDEF


def test_group_flip_impulse_evaluation_on_synthetic():
    from renderer.morph_eval import flatten_morph_weights

    m = load_model("synthetic.pmx", data=build_pmx())
    # group → (vertex 0.5, itself: loop cut, impulse: ignored); flip → vertex at weight
    assert flatten_morph_weights(m, {5: 1.0}) == {0: 0.5}
    assert flatten_morph_weights(m, {6: 0.5}) == {0: 0.5}
    assert flatten_morph_weights(m, {7: 1.0}) == {}


# ---------------------------------------------------------------- broken input

# a guard against a loader that hangs or loops on a bad count, not a speed figure (a loaded
# 2-core machine must never miss it; bench/fuzz_loaders.py measures the speed)
HANG_S = 60.0


def _expect_error(data: bytes, name="bad.pmx", max_alloc_mb: float | None = None) -> str:
    """The one-line ModelLoadError that loading `data` gives; with `max_alloc_mb`, the loader must
    refuse before allocating more than that (tracemalloc's peak: deterministic, whatever the
    machine's load), so a claimed count of 2**31 is caught before memory is reserved for it."""
    import tracemalloc

    t = time.perf_counter()
    tracemalloc.start()
    try:
        with pytest.raises(ModelLoadError) as ei:
            load_model(name, data=data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t < HANG_S
    if max_alloc_mb is not None:
        assert peak < max_alloc_mb * 2**20, f"peak allocation {peak / 2**20:.0f} MB before the error"
    msg = str(ei.value)
    assert msg.startswith(f"{name}: ") and "\n" not in msg
    return msg


def test_synthetic_truncated_at_every_offset():
    data = build_pmx()
    for n in range(len(data)):                     # every single offset
        _expect_error(data[:n])


def test_real_pmx_truncated_at_many_offsets(shared_models):
    p = shared_models / "appearance_miku_pmx" / "index.pmx"
    if not p.is_file():
        pytest.skip("model missing")
    data = p.read_bytes()
    rng = random.Random(2)
    offsets = list(range(0, 64)) + rng.sample(range(len(data)), 60) + [len(data) - 1]
    for n in offsets:
        _expect_error(data[:n], "appearance.pmx")


def test_real_pmd_truncated_at_many_offsets(shared_models):
    p = shared_models / PAIR_PMD
    if not p.is_file():
        pytest.skip("model missing")
    data = p.read_bytes()
    full = load_model(p)
    rng = random.Random(3)
    for n in list(range(0, 40)) + rng.sample(range(len(data)), 80):
        try:
            m = load_model("miku.pmd", data=data[:n])
        except ModelLoadError as e:
            assert str(e).startswith("miku.pmd: ")
            continue
        # PMD's trailing sections (English names, toon list, physics) are optional: a cut
        # exactly between them loads, and then the mesh must be complete.
        assert np.array_equal(m.positions, full.positions)


def test_random_bytes_and_wrong_magic():
    rng = np.random.default_rng(0)
    for k in range(50):
        junk = rng.integers(0, 256, size=int(rng.integers(0, 5000)), dtype=np.uint8).tobytes()
        _expect_error(junk)
        _expect_error(b"PMX " + junk)
        _expect_error(b"Pmd" + junk, "bad.pmd")
        _expect_error(b"PMX " + struct.pack("<fB", 2.0, 8) + bytes([0, 0, 1, 1, 1, 1, 1, 1]) + junk)
    assert "not a PMX or PMD" in _expect_error(b"RIFF0000WAVE")
    assert "empty" in _expect_error(b"")
    assert "version" in _expect_error(b"PMX " + struct.pack("<f", 3.0) + bytes(40))
    assert "index size" in _expect_error(b"PMX " + struct.pack("<fB", 2.0, 8) + bytes([0, 0, 3, 1, 1, 1, 1, 1]) + bytes(40))


def test_huge_counts_refused_before_allocating():
    data = bytearray(build_pmx())
    # the vertex count sits right after the four texts of the header
    pos = 4 + 4 + 1 + 8
    for _ in range(4):
        n = struct.unpack_from("<i", data, pos)[0]
        pos += 4 + n
    assert struct.unpack_from("<i", data, pos)[0] == 6
    for huge in (2**31 - 1, 2**30, -5, 10**6):
        d = bytearray(data)
        struct.pack_into("<i", d, pos, huge)
        msg = _expect_error(bytes(d), max_alloc_mb=32)
        assert "vertex count" in msg
    # a text claiming 2 GiB
    d = bytearray(data)
    struct.pack_into("<i", d, 17, 2**31 - 1)
    assert "text length" in _expect_error(bytes(d), max_alloc_mb=32)


def test_huge_pmd_vertex_count(shared_models):
    p = shared_models / PAIR_PMD
    if not p.is_file():
        pytest.skip("model missing")
    d = bytearray(p.read_bytes())
    struct.pack_into("<I", d, 3 + 4 + 20 + 256, 2**32 - 1)
    assert "vertex count" in _expect_error(bytes(d), "x.pmd", max_alloc_mb=32)


def test_corrupted_bytes_never_raise_other_errors(shared_models):
    p = shared_models / PAIR_PMX
    if not p.is_file():
        pytest.skip("model missing")
    data = p.read_bytes()
    rng = random.Random(4)
    for _ in range(60):
        b = bytearray(data)
        for _ in range(rng.randint(1, 30)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        t = time.perf_counter()
        try:
            load_model("c.pmx", data=bytes(b))
        except ModelLoadError:
            pass
        assert time.perf_counter() - t < HANG_S


def test_missing_file_is_a_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="cannot read"):
        load_model(tmp_path / "nope.pmx")
    with pytest.raises(ModelLoadError, match="cannot read"):
        load_model(tmp_path)


def test_every_byte_corrupted_quick_sample():
    """Overwrite bytes of the small PMX (every 7th offset, two values): loading either fails
    with ModelLoadError or gives a model that the rig and the poser handle."""
    _every_byte(step=7, values=(0xFF, 0x80))


@pytest.mark.slow
def test_every_byte_corrupted_exhaustive():
    _every_byte(step=1, values=(0x00, 0xFF, 0x7F, 0x80, 0x01, 0x40))


def _every_byte(step, values):
    import warnings

    from renderer.face_rig import resolve_face_rig
    from renderer.posing import ModelPoser

    for data in (build_pmx(), build_pmx(version=2.0, extra_uv=0, utf8=False)):
        for i in range(0, len(data), step):
            for v in values:
                b = bytearray(data)
                b[i] = v
                t = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    try:
                        m = load_model("f.pmx", data=bytes(b))
                    except ModelLoadError:
                        continue
                    rig = resolve_face_rig(m)
                    poser = ModelPoser(m, rig)
                    if rig.neck_root >= 0 and rig.neck_tip >= 0:
                        poser.pose([0.5, 0.5, 0.5, 1, 1, 1])
                    else:
                        poser.pose_parts(rig.morph_weights([0, 0, 0, 1, 1, 1]))
                assert time.perf_counter() - t < HANG_S
