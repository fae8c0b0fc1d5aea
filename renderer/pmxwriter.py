"""A small PMX 2.0 writer (own code) for `MMDModel`-shaped data.

Used to write the built-in sample characters (`renderer.samples`) and, in
tests, to make model files with exactly the features a test needs. It writes
what MikuMikuDance, PMXEditor and pymeshio expect from a PMX 2.0 file:

* header "PMX " 2.0, text UTF-16LE (or UTF-8 on request), 0..4 additional UVs,
  index sizes chosen from the counts (vertex indices unsigned at 1/2 bytes,
  signed at 4; other indices signed so that -1 = none fits);
* vertices with BDEF1 / BDEF2 / BDEF4 / SDEF weights (QDEF is PMX 2.1 and is
  refused), edge scale;
* triangles, the texture table, materials (texture / sphere index, shared or
  own toon), bones (parent, deform layer, flags, tail bone or offset, append parent and
  weight, fixed/local axes, IK), morphs of the PMX 2.0 kinds (group, vertex,
  bone, UV, additional UV, material), display frames, and an empty rigid-body
  and joint list.

Per-vertex and per-offset data are packed with numpy structured arrays; there
is no per-vertex Python loop (a 22k-vertex model writes in ~15 ms).

`load_model(...)` → `pmx_bytes(...)` → `load_model(...)` gives back the same
arrays, materials, bones and morphs for every model in ../shared/models (PMD
files come out as PMX). Not kept: IK loop counts/limits/link angle limits
(written as 40 / 0.5 rad / none), rigid bodies and joints (none written).
"""
from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.atomicfile import write_bytes
from .model import (
    MATERIAL_MORPH_WIDTH,
    Bone,
    BoneFlag,
    Material,
    MMDModel,
    Morph,
    MorphKind,
    SkinningType,
)

__all__ = ["DisplayFrame", "PmxWriteError", "default_display_frames", "pmx_bytes", "write_pmx"]


class PmxWriteError(ValueError):
    """The data handed to the writer cannot be written as PMX 2.0 (a programming error)."""


@dataclass
class DisplayFrame:
    """One display frame (表示枠): a named list of bones and morphs shown in MMD's panels.

    `items` holds (kind, index) pairs, kind 0 = bone, 1 = morph. `special` = 1 for
    the two fixed frames every PMX has ("Root" and "表情").
    """
    name: str
    name_en: str
    special: int = 0
    items: list[tuple[int, int]] = field(default_factory=list)


def _signed_size(count: int) -> int:
    """Byte size of a signed index able to hold 0..count-1 and -1."""
    if count < 0x80:
        return 1
    if count < 0x8000:
        return 2
    return 4


def _vertex_index_size(count: int) -> int:
    """Byte size of a vertex index (unsigned at 1 and 2 bytes, signed at 4)."""
    if count < 0x100:
        return 1
    if count < 0x10000:
        return 2
    return 4


_SIGNED = {1: "<i1", 2: "<i2", 4: "<i4"}
_UNSIGNED = {1: "<u1", 2: "<u2", 4: "<i4"}


def default_display_frames(model: MMDModel) -> list[DisplayFrame]:
    """Root (the first root bone), 表情 (every morph), and one frame for the other bones."""
    roots = [i for i, b in enumerate(model.bones) if b.parent < 0]
    root = roots[:1]
    frames = [
        DisplayFrame("Root", "Root", 1, [(0, i) for i in root]),
        DisplayFrame("表情", "Exp", 1, [(1, i) for i in range(len(model.morphs))]),
    ]
    others = [(0, i) for i in range(len(model.bones)) if i not in root]
    if others:
        frames.append(DisplayFrame("ボーン", "Bones", 0, others))
    return frames


class _Out:
    """Little-endian binary builder with the text encoding and index sizes of one file."""

    def __init__(self, utf8: bool, sizes: dict[str, int]):
        self.buf = io.BytesIO()
        self.utf8 = utf8
        self.sizes = sizes
        self._fmt = {
            k: ("<" + {1: "b", 2: "h", 4: "i"}[v]) for k, v in sizes.items() if k != "vertex"
        }

    def raw(self, b: bytes) -> None:
        self.buf.write(b)

    def pack(self, fmt: str, *vals) -> None:
        self.buf.write(struct.pack("<" + fmt, *vals))

    def text(self, s: str | None) -> None:
        data = (s or "").encode("utf-8" if self.utf8 else "utf-16-le")
        self.buf.write(struct.pack("<i", len(data)))
        self.buf.write(data)

    def index(self, kind: str, i: int) -> None:
        self.buf.write(struct.pack(self._fmt[kind], int(i)))

    def floats(self, a, n: int) -> None:
        arr = np.asarray(a, dtype="<f4").reshape(-1)
        if arr.size != n:
            raise PmxWriteError(f"expected {n} floats, got {arr.size}")
        self.buf.write(arr.tobytes())


def _vertex_block(model: MMDModel, out: _Out, n_uv: int) -> bytes:
    """All vertex records, packed per skinning type and scattered into one buffer."""
    V = model.vertex_count
    pos = np.asarray(model.positions, np.float32).reshape(V, 3)
    nor = np.asarray(model.normals, np.float32).reshape(V, 3)
    uv = np.asarray(model.uvs, np.float32).reshape(V, 2)
    st = np.asarray(model.skin_type, np.uint8).reshape(V)
    bi = np.asarray(model.bone_indices, np.int64).reshape(V, 4)
    bw = np.asarray(model.bone_weights, np.float32).reshape(V, 4)
    edge = np.asarray(model.edge_scale, np.float32).reshape(V)
    extra = np.asarray(model.extra_uvs, np.float32)
    if extra.size and extra.shape != (n_uv, V, 4):
        raise PmxWriteError(f"extra_uvs has shape {extra.shape}, expected ({n_uv}, {V}, 4)")
    bsz = out.sizes["bone"]
    bdt = _SIGNED[bsz]
    if V and (bi.min() < -1 or bi.max() >= len(model.bones)):
        raise PmxWriteError("a vertex references a bone that does not exist")
    if np.any(st == SkinningType.QDEF):
        raise PmxWriteError("QDEF skinning needs PMX 2.1; this writer writes 2.0")
    if np.any(st > SkinningType.QDEF):
        raise PmxWriteError("unknown skinning type")

    head = [("pos", "<f4", 3), ("nor", "<f4", 3), ("uv", "<f4", 2)]
    if n_uv:
        head.append(("auv", "<f4", (n_uv, 4)))
    head.append(("type", "u1"))
    tails = {
        SkinningType.BDEF1: [("b", bdt)],
        SkinningType.BDEF2: [("b", bdt, 2), ("w", "<f4")],
        SkinningType.BDEF4: [("b", bdt, 4), ("w", "<f4", 4)],
        SkinningType.SDEF: [("b", bdt, 2), ("w", "<f4"), ("c", "<f4", 3), ("r0", "<f4", 3),
                            ("r1", "<f4", 3)],
    }
    dtypes = {k: np.dtype(head + t + [("edge", "<f4")]) for k, t in tails.items()}
    sizes = np.zeros(V, np.int64)
    for k, dt in dtypes.items():
        sizes[st == k] = dt.itemsize
    starts = np.zeros(V, np.int64)
    if V:
        starts[1:] = np.cumsum(sizes)[:-1]
    total = int(sizes.sum())
    buf = np.zeros(total, np.uint8)
    for k, dt in dtypes.items():
        sel = np.nonzero(st == k)[0]
        if sel.size == 0:
            continue
        rec = np.zeros(sel.size, dt)
        rec["pos"] = pos[sel]
        rec["nor"] = nor[sel]
        rec["uv"] = uv[sel]
        if n_uv:
            rec["auv"] = np.transpose(extra[:, sel, :], (1, 0, 2))
        rec["type"] = int(k)
        if k == SkinningType.BDEF1:
            rec["b"] = bi[sel, 0]
        elif k == SkinningType.BDEF4:
            rec["b"] = bi[sel]
            rec["w"] = bw[sel]
        else:
            rec["b"] = bi[sel, :2]
            rec["w"] = bw[sel, 0]
            if k == SkinningType.SDEF:
                rec["c"] = np.asarray(model.sdef_c, np.float32)[sel]
                rec["r0"] = np.asarray(model.sdef_r0, np.float32)[sel]
                rec["r1"] = np.asarray(model.sdef_r1, np.float32)[sel]
        rec["edge"] = edge[sel]
        raw = rec.view(np.uint8).reshape(sel.size, dt.itemsize)
        dest = starts[sel][:, None] + np.arange(dt.itemsize)[None, :]
        buf[dest] = raw
    return buf.tobytes()


def _texture_table(model: MMDModel) -> tuple[list[str], dict[str, int]]:
    """The model's texture table plus every texture/sphere/toon path its materials name."""
    table = list(model.textures)
    for m in model.materials:
        for p in (m.texture, m.sphere, m.toon):
            if p and p not in table:
                table.append(p)
    return table, {p: i for i, p in enumerate(table)}


def _write_material(out: _Out, m: Material, tex_index: dict[str, int]) -> None:
    out.text(m.name)
    out.text(m.name_en)
    out.floats(m.diffuse, 4)
    out.floats(m.specular, 3)
    out.pack("f", float(m.specular_power))
    out.floats(m.ambient, 3)
    out.pack("B", int(m.flags) & 0xFF)
    out.floats(m.edge_color, 4)
    out.pack("f", float(m.edge_size))
    out.index("texture", tex_index[m.texture] if m.texture else -1)
    out.index("texture", tex_index[m.sphere] if m.sphere else -1)
    out.pack("B", int(m.sphere_mode) if m.sphere else 0)
    if m.toon_shared is not None and not m.toon:
        if not 0 <= int(m.toon_shared) <= 9:
            raise PmxWriteError(f"material {m.name!r}: shared toon index {m.toon_shared} not in 0..9")
        out.pack("BB", 1, int(m.toon_shared))
    else:
        out.pack("B", 0)
        out.index("texture", tex_index[m.toon] if m.toon else -1)
    out.text(m.comment)
    if m.index_count % 3:
        raise PmxWriteError(f"material {m.name!r}: index count {m.index_count} not a multiple of 3")
    out.pack("i", int(m.index_count))


def _write_bone(out: _Out, b: Bone, nbones: int) -> None:
    flags = BoneFlag(int(b.flags))
    if b.append_parent >= 0 and not flags & (BoneFlag.APPEND_ROTATION | BoneFlag.APPEND_TRANSLATION):
        raise PmxWriteError(f"bone {b.name!r} has an append parent but no append flag")
    if flags & BoneFlag.EXTERNAL_PARENT:
        raise PmxWriteError(f"bone {b.name!r}: external parent is not supported by this writer")
    if b.tail_bone >= 0:
        flags |= BoneFlag.TAIL_IS_BONE
    else:
        flags &= ~BoneFlag.TAIL_IS_BONE
    out.text(b.name)
    out.text(b.name_en)
    out.floats(b.position, 3)
    out.index("bone", b.parent)
    out.pack("i", int(b.deform_layer))
    out.pack("H", int(flags) & 0xFFFF)
    if flags & BoneFlag.TAIL_IS_BONE:
        out.index("bone", b.tail_bone)
    else:
        out.floats(b.tail_offset, 3)
    if flags & (BoneFlag.APPEND_ROTATION | BoneFlag.APPEND_TRANSLATION):
        out.index("bone", b.append_parent)
        out.pack("f", float(b.append_weight))
    if flags & BoneFlag.FIXED_AXIS:
        out.floats(b.fixed_axis if b.fixed_axis is not None else (1, 0, 0), 3)
    if flags & BoneFlag.LOCAL_AXIS:
        out.floats(b.local_axis_x if b.local_axis_x is not None else (1, 0, 0), 3)
        out.floats(b.local_axis_z if b.local_axis_z is not None else (0, 0, 1), 3)
    if flags & BoneFlag.IK:
        out.index("bone", b.ik_target)
        out.pack("if", 40, 0.5)   # loop count, limit angle: Bone keeps neither (IK is parsed, not run)
        out.pack("i", len(b.ik_links))
        for link in b.ik_links:
            out.index("bone", link)
            out.pack("B", 0)
    for idx in (b.parent, b.append_parent, b.ik_target, b.tail_bone):
        if not -1 <= idx < nbones:
            raise PmxWriteError(f"bone {b.name!r} references bone {idx}, which does not exist")


def _write_morph(out: _Out, m: Morph) -> None:
    kind = MorphKind(int(m.kind))
    if kind in (MorphKind.FLIP, MorphKind.IMPULSE):
        raise PmxWriteError(f"morph {m.name!r}: {kind.name} morphs need PMX 2.1")
    idx = np.asarray(m.indices).reshape(-1)
    K = idx.size
    out.text(m.name)
    out.text(m.name_en)
    out.pack("BBi", int(m.panel), int(kind), K)
    if K == 0:
        return
    sz = out.sizes
    if kind == MorphKind.GROUP:
        dt = np.dtype([("i", _SIGNED[sz["morph"]]), ("w", "<f4")])
        rec = np.zeros(K, dt)
        rec["w"] = np.asarray(m.weights, np.float32).reshape(K)
    elif kind == MorphKind.VERTEX:
        dt = np.dtype([("i", _UNSIGNED[sz["vertex"]]), ("v", "<f4", 3)])
        rec = np.zeros(K, dt)
        rec["v"] = np.asarray(m.offsets, np.float32).reshape(K, 3)
    elif kind == MorphKind.BONE:
        dt = np.dtype([("i", _SIGNED[sz["bone"]]), ("t", "<f4", 3), ("q", "<f4", 4)])
        rec = np.zeros(K, dt)
        rec["t"] = np.asarray(m.translations, np.float32).reshape(K, 3)
        rec["q"] = np.asarray(m.rotations, np.float32).reshape(K, 4)
    elif kind in (MorphKind.UV, MorphKind.UV1, MorphKind.UV2, MorphKind.UV3, MorphKind.UV4):
        dt = np.dtype([("i", _UNSIGNED[sz["vertex"]]), ("v", "<f4", 4)])
        rec = np.zeros(K, dt)
        rec["v"] = np.asarray(m.offsets, np.float32).reshape(K, 4)
    elif kind == MorphKind.MATERIAL:
        dt = np.dtype([("i", _SIGNED[sz["material"]]), ("op", "u1"), ("v", "<f4", MATERIAL_MORPH_WIDTH)])
        rec = np.zeros(K, dt)
        rec["op"] = np.asarray(m.operations, np.uint8).reshape(K)
        rec["v"] = np.asarray(m.values, np.float32).reshape(K, MATERIAL_MORPH_WIDTH)
    else:  # pragma: no cover - all PMX 2.0 kinds handled above
        raise PmxWriteError(f"morph {m.name!r}: unsupported kind {kind}")
    rec["i"] = idx
    out.raw(rec.tobytes())


def pmx_bytes(model: MMDModel, display_frames: list[DisplayFrame] | None = None,
              utf8: bool = False) -> bytes:
    """The PMX 2.0 file for `model`, as bytes (deterministic for the same input)."""
    V = model.vertex_count
    F = np.asarray(model.indices).reshape(-1)
    if F.size % 3:
        raise PmxWriteError("index count is not a multiple of 3")
    if F.size and (F.min() < 0 or F.max() >= V):
        raise PmxWriteError("a triangle references a vertex that does not exist")
    counted = sum(m.index_count for m in model.materials)
    if counted != F.size:
        raise PmxWriteError(f"materials cover {counted} indices, the model has {F.size}")
    textures, tex_index = _texture_table(model)
    extra = np.asarray(model.extra_uvs)
    n_uv = int(extra.shape[0]) if extra.ndim == 3 else 0
    if n_uv > 4:
        raise PmxWriteError(f"{n_uv} additional UVs; PMX allows at most 4")
    if display_frames is None:
        display_frames = default_display_frames(model)
    sizes = {
        "vertex": _vertex_index_size(V),
        "texture": _signed_size(len(textures)),
        "material": _signed_size(len(model.materials)),
        "bone": _signed_size(len(model.bones)),
        "morph": _signed_size(len(model.morphs)),
        "rigid": _signed_size(0),
    }
    out = _Out(utf8, sizes)
    out.raw(b"PMX ")
    out.pack("f", 2.0)
    out.pack("B", 8)
    out.pack("8B", 1 if utf8 else 0, n_uv, sizes["vertex"], sizes["texture"], sizes["material"],
             sizes["bone"], sizes["morph"], sizes["rigid"])
    out.text(model.name)
    out.text(model.name_en)
    out.text(model.comment)
    out.text("")                # English comment: MMDModel keeps none

    out.pack("i", V)
    out.raw(_vertex_block(model, out, n_uv))

    out.pack("i", F.size)
    out.raw(F.astype(_UNSIGNED[sizes["vertex"]]).tobytes())

    out.pack("i", len(textures))
    for t in textures:
        out.text(t)

    out.pack("i", len(model.materials))
    for m in model.materials:
        _write_material(out, m, tex_index)

    out.pack("i", len(model.bones))
    for b in model.bones:
        _write_bone(out, b, len(model.bones))

    out.pack("i", len(model.morphs))
    for m in model.morphs:
        _write_morph(out, m)

    out.pack("i", len(display_frames))
    for fr in display_frames:
        out.text(fr.name)
        out.text(fr.name_en)
        out.pack("Bi", int(fr.special), len(fr.items))
        for kind, i in fr.items:
            out.pack("B", int(kind))
            out.index("bone" if kind == 0 else "morph", i)

    out.pack("i", 0)  # rigid bodies
    out.pack("i", 0)  # joints
    return out.buf.getvalue()


def write_pmx(path: str | Path, model: MMDModel, display_frames: list[DisplayFrame] | None = None,
              utf8: bool = False) -> Path:
    """Write `model` as a PMX 2.0 file at `path`; returns the path."""
    path = Path(path)
    data = pmx_bytes(model, display_frames, utf8=utf8)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, data)
    return path
