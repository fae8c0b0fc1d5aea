"""Read .pmx (2.0, 2.1) and .pmd files into one numpy-backed `MMDModel`.

Parsing goes through pymeshio (the user's chosen parser), extended where it
falls short:

* PMX: `_PmxReader` subclasses `pymeshio.pmx.reader.Reader`. pymeshio's own
  methods read the small object tables (texture names, materials, bones,
  display slots, rigid bodies, joints). The subclass adds what pymeshio rejects
  or lacks (additional UV4s, QDEF skinning, PMX 2.1 flip/impulse morphs, UTF-8/
  UTF-16 names decoded leniently) and reads the bulk arrays (vertices, faces,
  morph offsets) straight into numpy, which is what makes loading fast.
* PMD: `_PmdReader` subclasses `pymeshio.pmd.reader.Reader`; pymeshio reads
  materials, bones, IK chains, rigid bodies and joints; names come back as
  Shift-JIS bytes and are decoded here; vertices, faces and morph offsets are
  read with numpy. The PMD "base" morph (absolute positions) is folded into
  the other morphs, which become ordinary PMX-style vertex morphs on absolute
  vertex indices; "base" itself is not kept (as PMDEditor's conversion does).

Every problem with the input - wrong magic, unsupported version, truncation
anywhere, absurd counts (checked against the bytes left before anything is
allocated), out-of-range indices in faces - raises
`ModelLoadError("<path>: <problem>")` and nothing else. Dangling references
that real models sometimes carry (a morph pointing at a missing bone, a vertex
weighted to bone -1) are dropped and listed in `MMDModel.warnings`.

PMD → PMX mappings used here:
* material: edge flag 1 → `MaterialFlag.EDGE`; alpha < 1 → DOUBLE_SIDED (MMD
  draws such PMD materials without culling); ground/self shadow on, except
  self shadow off at alpha 0.98 (MMD's convention). Texture field
  "tex.bmp*sphere.sph": `.sph` = multiply sphere, `.spa` = add sphere. Toon
  index 255 = none; index i with the file's toon list naming the standard
  `toon{i+1:02d}.bmp` (or no toon list) → `toon_shared = i`; a custom name in
  the list → `toon = name`.
* bone types (`PmdBoneType`): 0 rotate; 1 rotate+move; 2 IK; 4 IK-influenced; 5 rotation
  influenced (append rotation from the bone in the IK field, weight 1);
  6 IK target; 7 invisible; 8 twist (fixed axis along the tail); 9 rotation
  linked (append rotation from the tail bone, weight = IK field / 100).
  PMD has no deform layers: all 0. Tail index 0 or 0xFFFF = no tail bone.
* vertex: two bones, weight byte / 100 on the first → BDEF2 (BDEF1 when the
  weight is 100 or both bones are the same); edge flag 1 → edge_scale 0.
"""
from __future__ import annotations

import enum
import io
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pymeshio.pmd import reader as pmd_reader
from pymeshio.pmx import reader as pmx_reader

from core.errors import first_line
from renderer.errors import ModelLoadError
from renderer.model import (
    MATERIAL_MORPH_WIDTH,
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

log = logging.getLogger("thactl.loader")

__all__ = ["load_model"]


class _Bad(Exception):
    """A problem found while parsing; becomes ModelLoadError with the path."""


_INT = {1: "<i1", 2: "<i2", 4: "<i4"}
_VIDX = {1: "<u1", 2: "<u2", 4: "<i4"}   # PMX vertex indices: unsigned at 1-2 bytes


def load_model(path, data: bytes | None = None) -> MMDModel:
    """Load a .pmx or .pmd model. `data` = the file's bytes (then `path` only names it)."""
    path = Path(path)
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ModelLoadError(f"{path}: cannot read file ({e.strerror or e})") from None
    else:
        data = bytes(data)
    if data[:4] == b"PMX ":
        fmt, parse = "PMX", _parse_pmx
    elif data[:3] == b"Pmd":
        fmt, parse = "PMD", _parse_pmd
    elif len(data) == 0:
        raise ModelLoadError(f"{path}: empty file")
    else:
        raise ModelLoadError(
            f"{path}: not a PMX or PMD model (file starts with {data[:4]!r}, "
            "expected b'PMX ' or b'Pmd')")
    try:
        return parse(path, data)
    except ModelLoadError:
        raise
    except _Bad as e:
        raise ModelLoadError(f"{path}: {e}") from None
    except MemoryError:
        raise ModelLoadError(f"{path}: corrupt {fmt} file (absurd sizes, out of memory)") from None
    except RecursionError:
        raise ModelLoadError(f"{path}: corrupt {fmt} file (reference loop)") from None
    except Exception as e:  # noqa: BLE001 - any parser failure on bad bytes is a bad file
        if isinstance(e, (struct.error, EOFError)):
            raise ModelLoadError(f"{path}: truncated or corrupt {fmt} file (unexpected end of "
                                 "data)") from None
        detail = first_line(e, 120)
        raise ModelLoadError(f"{path}: corrupt {fmt} file ({detail})") from None


# ---------------------------------------------------------------- shared helpers

class _ArrayMixin:
    """numpy bulk reads on top of a pymeshio BinaryReader (which reads from `self.ios`)."""

    data: bytes
    ios: io.BytesIO

    def remaining(self) -> int:
        return len(self.data) - self.ios.tell()

    def count(self, fmt: str, min_item: int, what: str) -> int:
        """Read an element count and refuse it if the rest of the file cannot hold it."""
        size = struct.calcsize(fmt)
        raw = self.ios.read(size)
        if len(raw) != size:
            raise _Bad(f"truncated file (end of data while reading the {what} count)")
        n = struct.unpack(fmt, raw)[0]
        if n < 0 or n * max(min_item, 1) > self.remaining():
            raise _Bad(f"corrupt or truncated file ({what} count {n} does not fit in the "
                       f"{self.remaining()} bytes left)")
        return n

    def array(self, dtype, n: int, what: str) -> np.ndarray:
        dt = np.dtype(dtype)
        nbytes = dt.itemsize * n
        if nbytes > self.remaining():
            raise _Bad(f"truncated file (end of data inside the {what})")
        start = self.ios.tell()
        arr = np.frombuffer(self.data, dt, count=n, offset=start)
        self.ios.seek(start + nbytes)
        return arr

    def need(self, n: int, what: str) -> None:
        if n > self.remaining():
            raise _Bad(f"truncated file (end of data inside the {what})")


def _vec(v) -> np.ndarray:
    return np.array([v.x, v.y, v.z], np.float32)


def _rgb(c) -> np.ndarray:
    return np.array([c.r, c.g, c.b], np.float32)


def _rgba(c) -> np.ndarray:
    return np.array([c.r, c.g, c.b, c.a], np.float32)


def _check_finite(a: np.ndarray, what: str) -> None:
    if a.size and not np.all(np.isfinite(a)):
        raise _Bad(f"corrupt file ({int((~np.isfinite(a)).any(axis=-1).sum())} {what} are not "
                   "finite numbers)")


def _fix_normals(n: np.ndarray, warnings: list[str]) -> None:
    """In place: non-finite normals become (0,0,-1) (facing the viewer); others untouched."""
    bad = ~np.all(np.isfinite(n), axis=1)
    if bad.any():
        n[bad] = (0.0, 0.0, -1.0)
        warnings.append(f"{int(bad.sum())} vertex normals were not finite (set to -z)")


#: a weight row whose sum is this close to 1 keeps the file's float32 values as they are
WEIGHT_SUM_TOLERANCE = 1e-5


def _normalise_weights(idx: np.ndarray, w: np.ndarray, nbones: int, warnings: list[str]):
    """Drop references to missing bones, renormalise rows; rows with no weight → bone 0.

    Only rows whose sum is off 1 by more than WEIGHT_SUM_TOLERANCE are divided by their sum:
    a file's weights that already sum to 1 (to float32 rounding) keep their exact bits, so
    writing a model back (renderer.pmxwriter) and loading it again gives identical weights."""
    w = np.nan_to_num(w, nan=0.0, posinf=0.0, neginf=0.0)
    bad = (idx < 0) | (idx >= max(nbones, 1))
    w = np.where(bad, 0.0, w).astype(np.float32)
    idx = np.where(bad, 0, idx).astype(np.int32)
    n_bad = int(np.count_nonzero(bad & (w != 0)))
    w = np.clip(w, 0.0, None)
    s = w.sum(axis=1)
    empty = s <= 1e-12
    if np.any(empty):
        w[empty] = 0.0
        w[empty, 0] = 1.0
        s = np.where(empty, 1.0, s)
        warnings.append(f"{int(empty.sum())} vertices had no valid bone weight (bound to bone 0)")
    elif n_bad:
        warnings.append(f"{n_bad} vertex weights referenced missing bones (dropped)")
    off = np.abs(s - 1.0) > WEIGHT_SUM_TOLERANCE
    w[off] /= s[off, None]
    return idx, w


# ---------------------------------------------------------------- PMX

class _PmxReader(_ArrayMixin, pmx_reader.Reader):
    """pymeshio's PMX reader, taught additional UVs, QDEF, 2.1 morphs and numpy bulk reads."""

    def __init__(self, data: bytes, ios: io.BytesIO, encoding: int, extra_uv: int,
                 sizes: tuple[int, int, int, int, int, int]):
        vs, ts, ms, bs, mos, rs = sizes
        # pymeshio refuses extended UVs in its constructor: give it 0, keep the real count.
        super().__init__(ios, encoding, 0, vs, ts, ms, bs, mos, rs)
        self.data = data
        self.extra_uv = extra_uv
        self.sizes = dict(vertex=vs, texture=ts, material=ms, bone=bs, morph=mos, rigid=rs)

    def get_read_text(self, text_encoding):
        codec = {0: "utf-16-le", 1: "utf-8"}.get(text_encoding)
        if codec is None:
            raise _Bad(f"unknown PMX text encoding {text_encoding} (expected 0 or 1)")

        def read_text():
            raw = self.ios.read(4)
            if len(raw) != 4:
                raise _Bad("truncated file (end of data inside a name)")
            n = struct.unpack("<i", raw)[0]
            if n < 0 or n > self.remaining():
                raise _Bad(f"corrupt or truncated file (text length {n} with "
                           f"{self.remaining()} bytes left)")
            return self.ios.read(n).decode(codec, "replace")
        return read_text

    # -- vertices: one cheap Python pass finds each vertex's start (deform records vary in
    #    size), then numpy gathers every field at once.
    def read_vertices(self) -> dict[str, np.ndarray]:
        """The vertex list as MMDModel's per-vertex arrays (keyword name -> array)."""
        V = self.count("<i", 32 + 16 * self.extra_uv + 1 + 1 + 4, "vertex")
        A = self.extra_uv
        starts, types = self._vertex_starts(V)
        fields = [("pos", "<f4", 3), ("nrm", "<f4", 3), ("uv", "<f4", 2)]
        if A:
            fields.append(("ex", "<f4", (A, 4)))
        head = self._gather(starts, fields)
        extra = (np.ascontiguousarray(head["ex"].transpose(1, 0, 2)).astype(np.float32)
                 if A else np.zeros((0, V, 4), np.float32))
        dpos = starts + self._fixed_vertex_bytes() + 1      # first byte after the deform type
        bidx, bw, sdef = self._gather_deforms(dpos, types)
        dsize = np.asarray(self._deform_sizes(), np.int64)[types]
        edge = self._gather(dpos + dsize, [("e", "<f4")])["e"]
        return dict(positions=head["pos"].astype(np.float32), normals=head["nrm"].astype(np.float32),
                    uvs=head["uv"].astype(np.float32), extra_uvs=extra,
                    skin_type=types.copy(), bone_indices=bidx, bone_weights=bw,
                    sdef_c=sdef[0], sdef_r0=sdef[1], sdef_r1=sdef[2],
                    edge_scale=edge.astype(np.float32))

    def _fixed_vertex_bytes(self) -> int:
        """Bytes of a vertex before its deform type: position, normal, UV, additional UVs."""
        return 32 + 16 * self.extra_uv

    def _deform_sizes(self) -> tuple[int, ...]:
        """Bytes of the deform record after the type byte, indexed by SkinningType."""
        bs = self.sizes["bone"]
        size = {SkinningType.BDEF1: bs, SkinningType.BDEF2: 2 * bs + 4,
                SkinningType.BDEF4: 4 * bs + 16, SkinningType.SDEF: 2 * bs + 4 + 36,
                SkinningType.QDEF: 4 * bs + 16}
        return tuple(size[t] for t in SkinningType)

    def _vertex_starts(self, V: int) -> tuple[np.ndarray, np.ndarray]:
        """(start offset (V,) int64, deform type (V,) uint8) of each vertex, from the read position."""
        pre = self._fixed_vertex_bytes()
        dsize = self._deform_sizes()
        last_type = int(SkinningType.QDEF)
        data = self.data
        o = self.ios.tell()
        end = len(data)
        starts = [0] * V
        types = bytearray(V)
        for i in range(V):
            p = o + pre
            if p >= end:
                raise _Bad(f"truncated file (end of data inside vertex {i} of {V})")
            t = data[p]
            if t > last_type:
                raise _Bad(f"corrupt file (vertex {i} has unknown deform type {t})")
            starts[i] = o
            types[i] = t
            o = p + 1 + dsize[t] + 4
        if o > end:
            raise _Bad("truncated file (end of data inside the vertex list)")
        self.ios.seek(o)
        return np.asarray(starts, np.int64), np.frombuffer(bytes(types), np.uint8)

    def _gather(self, offsets: np.ndarray, dtype) -> np.ndarray:
        """One record of `dtype` read at each of `offsets` (byte positions in the file)."""
        dt = np.dtype(dtype)
        rows = np.frombuffer(self.data, np.uint8)[offsets[:, None] + np.arange(dt.itemsize)]
        return np.ascontiguousarray(rows).view(dt)[:, 0]

    def _gather_deforms(self, dpos: np.ndarray, types: np.ndarray):
        """(bone indices (V,4), weights (V,4), SDEF C/R0/R1 (3,V,3)) from the deform records
        starting at `dpos`, one vectorised read per skinning type."""
        V = types.size
        bidx = np.zeros((V, 4), np.int32)
        bw = np.zeros((V, 4), np.float32)
        sdef = np.zeros((3, V, 3), np.float32)
        it = _INT[self.sizes["bone"]]
        for t in SkinningType:
            sel = np.nonzero(types == int(t))[0]
            if sel.size == 0:
                continue
            if t == SkinningType.BDEF1:
                rec = self._gather(dpos[sel], [("b", it, 1)])
                bidx[sel, 0] = rec["b"][:, 0]
                bw[sel, 0] = 1.0
            elif t in (SkinningType.BDEF2, SkinningType.SDEF):
                f = [("b", it, 2), ("w", "<f4")]
                if t == SkinningType.SDEF:
                    f.append(("s", "<f4", (3, 3)))
                rec = self._gather(dpos[sel], f)
                bidx[sel, :2] = rec["b"]
                w = rec["w"].astype(np.float32)
                bw[sel, 0] = w
                bw[sel, 1] = 1.0 - w
                if t == SkinningType.SDEF:
                    sdef[:, sel] = rec["s"].transpose(1, 0, 2)
            else:                                   # BDEF4, QDEF: four bones, four weights
                rec = self._gather(dpos[sel], [("b", it, 4), ("w", "<f4", 4)])
                bidx[sel] = rec["b"]
                bw[sel] = rec["w"]
        return bidx, bw, sdef

    def read_faces(self, nverts: int) -> np.ndarray:
        vs = self.sizes["vertex"]
        n = self.count("<i", vs, "face index")
        if n % 3:
            raise _Bad(f"corrupt file (face index count {n} is not a multiple of 3)")
        idx = self.array(_VIDX[vs], n, "face list").astype(np.int64)
        if n and (idx.min() < 0 or idx.max() >= nverts):
            raise _Bad(f"corrupt file (face refers to vertex {int(idx.max())} of {nverts})")
        return idx.astype(np.uint32).reshape(-1, 3)

    def read_deform(self):  # never used: vertices are read in bulk by read_vertices
        raise NotImplementedError("vertices are read with read_vertices")

    # pymeshio reads these two lists with an unchecked count; check it against the bytes left
    # first, so a corrupt count fails at once instead of looping until the end of the file.
    def read_ik(self):
        bs = self.sizes["bone"]
        self.need(bs + 8, "IK block")
        start = self.ios.tell()
        n = struct.unpack_from("<i", self.data, start + bs + 8)[0] if self.remaining() >= bs + 12 \
            else 0
        if n < 0 or n * (bs + 1) > self.remaining():
            raise _Bad(f"corrupt or truncated file (IK link count {n} does not fit in the "
                       f"{self.remaining()} bytes left)")
        return super().read_ik()

    def read_display_slot(self):
        self.read_text()
        self.read_text()
        self.need(1, "display slot")
        self.ios.read(1)
        n = self.count("<i", 2, "display slot entry")
        for _ in range(n):
            kind = self.read_uint(1)
            if kind == 0:
                self.read_bone_index()
            elif kind == 1:
                self.read_morph_index()
            else:
                raise _Bad(f"corrupt file (display slot entry of unknown type {kind})")
        return None

    def read_morgh(self):  # (sic: pymeshio's spelling) numpy offsets, every PMX 2.1 type
        """(name, English name, panel, kind, offset records) of one morph; panel and kind raw."""
        name = self.read_text()
        name_en = self.read_text()
        self.need(2, "morph")
        panel, kind = struct.unpack("<BB", self.ios.read(2))
        dt = self._morph_offset_dtype(kind, name)
        n = self.count("<i", np.dtype(dt).itemsize, f"morph {name!r} offset")
        rec = self.array(dt, n, f"morph {name!r}")
        return name, name_en, panel, kind, rec

    def _morph_offset_dtype(self, kind: int, name: str) -> list:
        """numpy record layout of one offset of a morph of type `kind` (MorphKind's numbering)."""
        s = self.sizes
        if kind in (MorphKind.GROUP, MorphKind.FLIP):
            return [("i", _INT[s["morph"]]), ("w", "<f4")]
        if kind == MorphKind.VERTEX:
            return [("i", _VIDX[s["vertex"]]), ("o", "<f4", 3)]
        if kind == MorphKind.BONE:
            return [("i", _INT[s["bone"]]), ("t", "<f4", 3), ("q", "<f4", 4)]
        if MorphKind.UV <= kind <= MorphKind.UV4:
            return [("i", _VIDX[s["vertex"]]), ("o", "<f4", 4)]
        if kind == MorphKind.MATERIAL:
            return [("i", _INT[s["material"]]), ("op", "u1"), ("v", "<f4", MATERIAL_MORPH_WIDTH)]
        if kind == MorphKind.IMPULSE:
            return [("i", _INT[s["rigid"]]), ("local", "u1"), ("v", "<f4", 6)]
        raise _Bad(f"corrupt file (morph {name!r} has unknown type {kind})")

    def skip_unused_sections(self, version: float) -> None:
        """Read (to check them) display slots, rigid bodies, joints and PMX 2.1 soft bodies
        (only their count): none of them plays a part in rendering."""
        for _ in range(self.count("<i", 13, "display slot")):
            self.read_display_slot()
        for _ in range(self.count("<i", 69, "rigid body")):
            self.read_rigidbody()
        for _ in range(self.count("<i", 105, "joint")):
            self.read_joint()
        if version >= 2.1:
            self.count("<i", 1, "soft body")


def _pmx_morph(name, name_en, panel, kind, rec, V, B, M, A, warnings) -> Morph:
    idx = rec["i"].astype(np.int64)
    panel = MorphPanel(panel) if panel <= 4 else MorphPanel.OTHER
    kind = MorphKind(kind)

    def keep(ok, what):
        if not np.all(ok):
            warnings.append(f"morph {name!r}: {int((~ok).sum())} entries refer to missing "
                            f"{what} (dropped)")
        return ok

    if kind == MorphKind.VERTEX:
        ok = keep((idx >= 0) & (idx < V), "vertices")
        return Morph(name, name_en, panel, kind, idx[ok].astype(np.int32),
                     offsets=rec["o"][ok].astype(np.float32))
    if kind in (MorphKind.UV, MorphKind.UV1, MorphKind.UV2, MorphKind.UV3, MorphKind.UV4):
        ok = keep((idx >= 0) & (idx < V), "vertices")
        if kind != MorphKind.UV and int(kind) - int(MorphKind.UV) > A:
            warnings.append(f"morph {name!r} drives additional UV {int(kind) - 3} the model "
                            "does not have (ignored)")
        return Morph(name, name_en, panel, kind, idx[ok].astype(np.int32),
                     offsets=rec["o"][ok].astype(np.float32))
    if kind == MorphKind.BONE:
        ok = keep((idx >= 0) & (idx < B), "bones")
        return Morph(name, name_en, panel, kind, idx[ok].astype(np.int32),
                     translations=rec["t"][ok].astype(np.float32),
                     rotations=rec["q"][ok].astype(np.float32))
    if kind in (MorphKind.GROUP, MorphKind.FLIP):
        # morph references are checked once every morph is known (see _check_group_refs)
        return Morph(name, name_en, panel, kind, idx.astype(np.int32),
                     weights=rec["w"].astype(np.float32))
    if kind == MorphKind.MATERIAL:
        ok = keep((idx >= -1) & (idx < M), "materials")
        return Morph(name, name_en, panel, kind, idx[ok].astype(np.int32),
                     operations=rec["op"][ok].astype(np.uint8),
                     values=rec["v"][ok].astype(np.float32))
    # impulse: rigid-body data kept, never evaluated
    return Morph(name, name_en, panel, kind, idx.astype(np.int32),
                 operations=rec["local"].astype(np.uint8),
                 values=rec["v"].astype(np.float32))


def _check_group_refs(morphs: list[Morph], warnings: list[str]) -> None:
    n = len(morphs)
    for m in morphs:
        if m.kind in (MorphKind.GROUP, MorphKind.FLIP) and m.indices.size:
            ok = (m.indices >= 0) & (m.indices < n)
            if not np.all(ok):
                warnings.append(f"morph {m.name!r}: {int((~ok).sum())} entries refer to "
                                "missing morphs (dropped)")
                m.indices = m.indices[ok]
                m.weights = m.weights[ok]


def _pmx_header(data: bytes) -> tuple[float, int, int, int, tuple[int, int, int, int, int, int]]:
    """(version, offset of the model name, text encoding, additional UV count,
    (vertex, texture, material, bone, morph, rigid body) index sizes) of a PMX file."""
    if len(data) < 17:
        raise _Bad("truncated file (PMX header incomplete)")
    version = struct.unpack_from("<f", data, 4)[0]
    if not np.isfinite(version) or round(version, 3) not in (2.0, 2.1):
        raise _Bad(f"unsupported PMX version {version:g} (expected 2.0 or 2.1)")
    version = round(float(version), 1)
    nflags = data[8]
    if nflags < 8:
        raise _Bad(f"corrupt PMX header ({nflags} header bytes, expected 8)")
    if len(data) < 9 + nflags:
        raise _Bad("truncated file (PMX header incomplete)")
    enc, extra_uv, vs, ts, ms, bs, mos, rs = data[9:17]
    if extra_uv > 4:
        raise _Bad(f"corrupt PMX header ({extra_uv} additional UVs, at most 4)")
    for what, s in (("vertex", vs), ("texture", ts), ("material", ms), ("bone", bs),
                    ("morph", mos), ("rigid body", rs)):
        if s not in (1, 2, 4):
            raise _Bad(f"corrupt PMX header ({what} index size {s}, expected 1, 2 or 4)")
    return version, 9 + nflags, enc, extra_uv, (vs, ts, ms, bs, mos, rs)


def _check_bone_positions(positions) -> None:
    """Refuse non-finite bone positions (pymeshio Vector3s)."""
    _check_finite(np.array([[v.x, v.y, v.z] for v in positions], np.float64).reshape(-1, 3),
                  "bone positions")


def _pmx_texture(textures: list[str], i, what: str, mname: str, warnings: list[str]) -> str | None:
    """Texture table entry `i` of material `mname`, None for none (-1) or out of range."""
    if i is None or i < 0:
        return None
    if i >= len(textures):
        warnings.append(f"material {mname!r}: {what} index {i} out of range (ignored)")
        return None
    return textures[i] or None


def _pmx_material(m, start: int, count: int, textures: list[str], warnings: list[str]) -> Material:
    def tex(i, what: str) -> str | None:
        return _pmx_texture(textures, i, what, m.name, warnings)

    if m.toon_sharing_flag == 1:
        toon, shared = None, (int(m.toon_texture_index) if 0 <= m.toon_texture_index <= 9
                              else None)
    else:
        toon, shared = tex(m.toon_texture_index, "toon texture"), None
    smode = m.sphere_mode if SphereMode.NONE <= m.sphere_mode <= SphereMode.SUBTEXTURE \
        else SphereMode.NONE
    sphere = tex(m.sphere_texture_index, "sphere texture") if smode else None
    return Material(
        name=m.name, name_en=m.english_name,
        diffuse=np.array([m.diffuse_color.r, m.diffuse_color.g, m.diffuse_color.b, m.alpha],
                         np.float32),
        specular=_rgb(m.specular_color), specular_power=float(m.specular_factor),
        ambient=_rgb(m.ambient_color), flags=MaterialFlag(m.flag & 0xFF),
        edge_color=_rgba(m.edge_color), edge_size=float(m.edge_size),
        texture=tex(m.texture_index, "texture"), sphere=sphere,
        sphere_mode=SphereMode(smode if sphere else 0), toon=toon, toon_shared=shared,
        index_start=start, index_count=count, comment=m.comment)


def _pmx_materials(raw_mats, textures: list[str], nidx: int, warnings: list[str]) -> list[Material]:
    """Materials in file order, each owning the next `vertex_count` of the `nidx` face indices."""
    materials = []
    start = 0
    for m in raw_mats:
        count = int(m.vertex_count)
        if count < 0 or start + count > nidx:
            raise _Bad(f"corrupt file (material {m.name!r} claims {count} face indices, "
                       f"only {nidx - start} left)")
        materials.append(_pmx_material(m, start, count, textures, warnings))
        start += count
    return materials


def _pmx_bone(i: int, b, nbones: int, warnings: list[str]) -> Bone:
    """Bone `i` of `nbones`; out-of-range parents and append parents are dropped with a warning."""
    flags = BoneFlag(b.flag & 0x3FFF)
    parent = int(b.parent_index)
    if parent < -1 or parent >= nbones or parent == i:
        warnings.append(f"bone {b.name!r}: parent {parent} out of range (made a root)")
        parent = -1
    tail = int(b.tail_index)
    bone = Bone(name=b.name, name_en=b.english_name, position=_vec(b.position),
                parent=parent, deform_layer=int(b.layer), flags=flags,
                tail_bone=tail if flags & BoneFlag.TAIL_IS_BONE and 0 <= tail < nbones else -1,
                tail_offset=_vec(b.tail_position))
    if flags & (BoneFlag.APPEND_ROTATION | BoneFlag.APPEND_TRANSLATION):
        ap = int(b.effect_index)
        if 0 <= ap < nbones and ap != i:
            bone.append_parent, bone.append_weight = ap, float(b.effect_factor)
        else:
            flags &= ~(BoneFlag.APPEND_ROTATION | BoneFlag.APPEND_TRANSLATION)
            bone.flags = flags
            if ap != -1:
                warnings.append(f"bone {b.name!r}: append parent {ap} out of range (ignored)")
    if flags & BoneFlag.FIXED_AXIS:
        bone.fixed_axis = _vec(b.fixed_axis)
    if flags & BoneFlag.LOCAL_AXIS:
        bone.local_axis_x, bone.local_axis_z = _vec(b.local_x_vector), _vec(b.local_z_vector)
    if flags & BoneFlag.IK and b.ik is not None:
        bone.ik_target = int(b.ik.target_index)
        bone.ik_links = [int(l.bone_index) for l in b.ik.link]
    return bone


def _parse_pmx(path: Path, data: bytes) -> MMDModel:
    version, start, enc, extra_uv, sizes = _pmx_header(data)
    ios = io.BytesIO(data)
    ios.seek(start)
    r = _PmxReader(data, ios, enc, extra_uv, sizes)
    warnings: list[str] = []

    name, name_en, comment, _comment_en = (r.read_text() for _ in range(4))
    verts = r.read_vertices()
    V = verts["positions"].shape[0]
    faces = r.read_faces(V)
    textures = [r.read_text() for _ in range(r.count("<i", 4, "texture"))]
    raw_mats = [r.read_material() for _ in range(r.count("<i", 84, "material"))]
    raw_bones = [r.read_bone() for _ in range(r.count("<i", 28, "bone"))]
    raw_morphs = [r.read_morgh() for _ in range(r.count("<i", 14, "morph"))]
    r.skip_unused_sections(version)

    B, M = len(raw_bones), len(raw_mats)
    _check_finite(verts["positions"], "vertex positions")
    _check_bone_positions(b.position for b in raw_bones)
    _fix_normals(verts["normals"], warnings)
    materials = _pmx_materials(raw_mats, textures, faces.size, warnings)
    bones = [_pmx_bone(i, b, B, warnings) for i, b in enumerate(raw_bones)]
    morphs = [_pmx_morph(*m, V, B, M, extra_uv, warnings) for m in raw_morphs]
    _check_group_refs(morphs, warnings)

    bidx, bw = _normalise_weights(verts.pop("bone_indices"), verts.pop("bone_weights"), B,
                                  warnings)
    return MMDModel(path=path, format=ModelFormat.PMX, version=version, name=name,
                    name_en=name_en, comment=comment, bone_indices=bidx, bone_weights=bw,
                    indices=faces, textures=textures, materials=materials, bones=bones,
                    morphs=morphs, warnings=warnings, **verts)


# ---------------------------------------------------------------- PMD

def _sjis(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("cp932", "replace")


_PMD_VERTEX = np.dtype([("pos", "<f4", 3), ("nrm", "<f4", 3), ("uv", "<f4", 2),
                        ("b", "<u2", 2), ("w", "u1"), ("edge", "u1")])


@dataclass
class _PmdExtensions:
    """What PMD's optional trailing blocks add: English names and the toon texture list."""
    name_en: str
    bone_en: list[str]
    morph_en: list[str]
    toon_names: list[str] | None


class _PmdReader(_ArrayMixin, pmd_reader.Reader):
    """pymeshio's PMD reader with numpy bulk reads and decoded names."""

    def __init__(self, data: bytes, ios: io.BytesIO, version: float):
        super().__init__(ios, version)
        self.data = data

    def text(self, size: int) -> str:
        self.need(size, "name field")
        return _sjis(self.read_text(size))

    def read_faces(self, nverts: int) -> np.ndarray:
        """The triangle list, (F,3) uint32, every index checked against `nverts`."""
        nidx = self.count("<I", 2, "face index")
        if nidx % 3:
            raise _Bad(f"corrupt file (face index count {nidx} is not a multiple of 3)")
        faces = self.array("<u2", nidx, "face list").astype(np.int64)
        if nidx and faces.max() >= nverts:
            raise _Bad(f"corrupt file (face refers to vertex {int(faces.max())} of {nverts})")
        return faces.astype(np.uint32).reshape(-1, 3)

    def read_morph_array(self):
        name = self.text(20)
        self.need(5, "morph")
        n = self.count("<I", 16, f"morph {name!r} offset")
        kind = self.read_uint(1)
        rec = self.array([("i", "<u4"), ("p", "<f4", 3)], n, f"morph {name!r}")
        return name, kind, rec

    def skip_display_lists(self) -> int:
        """Read (to check them) the morph display list, bone group names and bone display
        list; returns the bone group count (the English extension names the groups again)."""
        self.array("<u2", self.count("<B", 2, "morph display"), "morph display list")
        n_groups = self.count("<B", 50, "bone group")
        self.array("S50", n_groups, "bone group names")
        self.array([("b", "<u2"), ("g", "u1")], self.count("<I", 3, "bone display"),
                   "bone display list")
        return n_groups

    def read_extensions(self, nbones: int, raw_morphs, n_groups: int) -> _PmdExtensions:
        """The optional blocks after the display lists: English names, toon list, physics."""
        ext = _PmdExtensions("", [""] * nbones, [""] * len(raw_morphs), None)
        if self.remaining() > 0 and self.read_uint(1) == 1:      # extension 1: English names
            ext.name_en = self.text(20)
            self.text(256)
            ext.bone_en = [self.text(20) for _ in range(nbones)]
            for j, m in enumerate(raw_morphs):
                if j == 0 and m[0] == "base":
                    continue
                ext.morph_en[j] = self.text(20)
            for _ in range(n_groups):
                self.text(50)
        if self.remaining() > 0:                                 # extension 2: toon texture list
            ext.toon_names = [self.text(100) for _ in range(10)]
        if self.remaining() > 0:                                 # extension 3: rigid bodies, joints
            for _ in range(self.count("<I", 83, "rigid body")):
                self.read_rigidbody()
            for _ in range(self.count("<I", 124, "joint")):
                self.read_joint()
        return ext


def _split_pmd_texture(field: str) -> tuple[str | None, str | None, SphereMode]:
    tex = sphere = None
    mode = SphereMode.NONE
    for part in field.split("*"):
        part = part.strip()
        if not part:
            continue
        low = part.lower()
        if low.endswith(".sph"):
            sphere, mode = part, SphereMode.MULTIPLY
        elif low.endswith(".spa"):
            sphere, mode = part, SphereMode.ADD
        elif tex is None:
            tex = part
    return tex, sphere, mode


class PmdBoneType(enum.IntEnum):
    """PMD bone types, numbered as in the file (3 is unused)."""
    ROTATE = 0
    ROTATE_MOVE = 1
    IK = 2
    IK_INFLUENCED = 4
    ROTATION_INFLUENCED = 5     # append rotation from the bone in the IK field, weight 1
    IK_TARGET = 6
    INVISIBLE = 7
    TWIST = 8                   # fixed axis along the tail
    ROTATION_LINKED = 9         # append rotation from the tail bone, weight = IK field / 100


_SHOWN = BoneFlag.VISIBLE | BoneFlag.ENABLED
_PMD_BONE_FLAGS = {
    PmdBoneType.ROTATE: BoneFlag.ROTATABLE | _SHOWN,
    PmdBoneType.ROTATE_MOVE: BoneFlag.ROTATABLE | BoneFlag.TRANSLATABLE | _SHOWN,
    PmdBoneType.IK: BoneFlag.IK | BoneFlag.TRANSLATABLE | _SHOWN,
    PmdBoneType.IK_INFLUENCED: BoneFlag.ROTATABLE | _SHOWN,
    PmdBoneType.ROTATION_INFLUENCED: BoneFlag.ROTATABLE | BoneFlag.APPEND_ROTATION | _SHOWN,
    PmdBoneType.IK_TARGET: BoneFlag.ROTATABLE | BoneFlag.ENABLED,
    PmdBoneType.INVISIBLE: BoneFlag.ROTATABLE | BoneFlag.ENABLED,
    PmdBoneType.TWIST: BoneFlag.ROTATABLE | BoneFlag.FIXED_AXIS | _SHOWN,
    PmdBoneType.ROTATION_LINKED: BoneFlag.ROTATABLE | BoneFlag.APPEND_ROTATION | BoneFlag.ENABLED,
}


def _pmd_header(data: bytes) -> _PmdReader:
    """A reader positioned after the PMD header (magic + version 1.0)."""
    if len(data) < 7:
        raise _Bad("truncated file (PMD header incomplete)")
    version = struct.unpack_from("<f", data, 3)[0]
    if not np.isfinite(version) or round(version, 3) != 1.0:
        raise _Bad(f"unsupported PMD version {version:g} (expected 1.0)")
    ios = io.BytesIO(data)
    ios.seek(7)
    return _PmdReader(data, ios, 1.0)


def _pmd_skin(vrec: np.ndarray, nbones: int, warnings: list[str]):
    """(skin type (V,), bone indices (V,4), weights (V,4)): two bones, weight byte / 100 on the
    first → BDEF2, or BDEF1 when one bone carries everything."""
    V = vrec.shape[0]
    bidx = np.zeros((V, 4), np.int32)
    bw = np.zeros((V, 4), np.float32)
    bidx[:, :2] = vrec["b"]
    w0 = np.clip(vrec["w"].astype(np.float32), 0, 100) / 100.0
    bw[:, 0] = w0
    bw[:, 1] = 1.0 - w0
    zero = (vrec["w"] == 0) & (vrec["b"][:, 0] != vrec["b"][:, 1])
    bidx[zero, 0] = bidx[zero, 1]               # all weight on the second bone
    one = (vrec["w"] >= 100) | (vrec["b"][:, 0] == vrec["b"][:, 1]) | zero
    bw[one, 0] = 1.0
    bw[one, 1] = 0.0
    bidx[one, 1] = 0
    skin = np.where(one, SkinningType.BDEF1, SkinningType.BDEF2).astype(np.uint8)
    bidx, bw = _normalise_weights(bidx, bw, nbones, warnings)
    return skin, bidx, bw


def _pmd_vertices(vrec: np.ndarray, nbones: int, warnings: list[str]) -> dict[str, np.ndarray]:
    """MMDModel's per-vertex arrays (keyword name -> array) from PMD vertex records."""
    V = vrec.shape[0]
    normals = vrec["nrm"].astype(np.float32)
    _fix_normals(normals, warnings)
    skin, bidx, bw = _pmd_skin(vrec, nbones, warnings)
    zeros3 = np.zeros((V, 3), np.float32)
    return dict(positions=vrec["pos"].astype(np.float32), normals=normals,
                uvs=vrec["uv"].astype(np.float32), extra_uvs=np.zeros((0, V, 4), np.float32),
                skin_type=skin, bone_indices=bidx, bone_weights=bw,
                sdef_c=zeros3, sdef_r0=zeros3.copy(), sdef_r1=zeros3.copy(),
                edge_scale=np.where(vrec["edge"] == 1, 0.0, 1.0).astype(np.float32))


def _pmd_material(m, index: int, start: int, count: int, toon_names: list[str] | None) -> Material:
    tex, sphere, smode = _split_pmd_texture(_sjis(m.texture_file))
    toon, shared = None, None
    ti = int(m.toon_index)
    if 0 <= ti <= 9:
        listed = toon_names[ti] if toon_names else ""
        if not listed or listed.lower() == f"toon{ti + 1:02d}.bmp":
            shared = ti
        else:
            toon = listed
    alpha = float(m.alpha)
    flags = MaterialFlag.GROUND_SHADOW | MaterialFlag.SELF_SHADOW_MAP
    if abs(alpha - 0.98) > 1e-4:
        flags |= MaterialFlag.SELF_SHADOW
    if alpha < 1.0:
        flags |= MaterialFlag.DOUBLE_SIDED
    if m.edge_flag == 1:
        flags |= MaterialFlag.EDGE
    return Material(
        name=f"material{index}", name_en="",
        diffuse=np.array([m.diffuse_color.r, m.diffuse_color.g, m.diffuse_color.b, alpha],
                         np.float32),
        specular=_rgb(m.specular_color), specular_power=float(m.specular_factor),
        ambient=_rgb(m.ambient_color), flags=flags,
        edge_color=np.array([0, 0, 0, 1], np.float32), edge_size=1.0,
        texture=tex, sphere=sphere, sphere_mode=smode, toon=toon, toon_shared=shared,
        index_start=start, index_count=count)


def _pmd_materials(raw_mats, nidx: int, toon_names: list[str] | None) -> list[Material]:
    """Materials in file order, each owning the next `vertex_count` of the `nidx` face indices."""
    materials = []
    start = 0
    for m in raw_mats:
        count = int(m.vertex_count)
        if start + count > nidx:
            raise _Bad(f"corrupt file (material claims {count} face indices, only "
                       f"{nidx - start} left)")
        materials.append(_pmd_material(m, len(materials), start, count, toon_names))
        start += count
    return materials


def _pmd_bone(i: int, raw_bones, name_en: str) -> Bone:
    """Bone `i`, its PMD type mapped onto PMX flags, append parents and fixed axes."""
    b = raw_bones[i]
    B = len(raw_bones)
    flags = _PMD_BONE_FLAGS.get(b.type, BoneFlag.ROTATABLE | BoneFlag.ENABLED)
    parent = -1 if b.parent_index in (0xFFFF,) or b.parent_index >= B else int(b.parent_index)
    if parent == i:
        parent = -1
    tail = int(b.tail_index)
    has_tail = tail not in (0, 0xFFFF) and tail < B
    if has_tail:
        flags |= BoneFlag.TAIL_IS_BONE
    bone = Bone(name=_sjis(b.name), name_en=name_en, position=_vec(b.pos),
                parent=parent, deform_layer=0, flags=flags, tail_bone=tail if has_tail else -1)
    if b.type == PmdBoneType.ROTATION_INFLUENCED and b.ik_index < B and b.ik_index != i:
        bone.append_parent, bone.append_weight = int(b.ik_index), 1.0
    elif b.type == PmdBoneType.ROTATION_LINKED and has_tail and tail != i:
        bone.append_parent, bone.append_weight = tail, float(b.ik_index) / 100.0
    else:
        bone.flags &= ~BoneFlag.APPEND_ROTATION
    if b.type == PmdBoneType.TWIST and has_tail:
        axis = _vec(raw_bones[tail].pos) - bone.position
        nrm = float(np.linalg.norm(axis))
        bone.fixed_axis = axis / nrm if nrm > 0 else np.array([1, 0, 0], np.float32)
    elif b.type == PmdBoneType.TWIST:
        bone.flags &= ~BoneFlag.FIXED_AXIS
    return bone


def _pmd_bones(raw_bones, raw_iks, bone_en: list[str]) -> list[Bone]:
    """Bones with their IK chains (references to missing bones dropped)."""
    bones = [_pmd_bone(i, raw_bones, bone_en[i]) for i in range(len(raw_bones))]
    B = len(bones)
    for ik in raw_iks:
        if ik.index < B:
            bones[ik.index].ik_target = int(ik.target) if ik.target < B else -1
            bones[ik.index].ik_links = [int(c) for c in ik.children if c < B]
    return bones


_PMD_MORPH_PANELS = (MorphPanel.EYEBROW, MorphPanel.EYE, MorphPanel.MOUTH)


def _pmd_morphs(raw_morphs, morph_en: list[str], nverts: int) -> list[Morph]:
    """PMX-style vertex morphs on absolute vertex indices. The first morph of kind 0 ("base")
    holds absolute indices; the others index into its list. "base" itself is not kept."""
    morphs = []
    base_idx = None
    for j, (mname, kind, rec) in enumerate(raw_morphs):
        idx = rec["i"].astype(np.int64)
        if kind == MorphPanel.SYSTEM and base_idx is None:
            if not np.all(idx < nverts):
                raise _Bad(f"corrupt file (morph base refers to vertex {int(idx.max())} of "
                           f"{nverts})")
            base_idx = idx
            continue
        if base_idx is None:
            raise _Bad(f"corrupt file (morph {mname!r} comes before the base morph)")
        if not np.all(idx < base_idx.size):
            raise _Bad(f"corrupt file (morph {mname!r} refers to base entry "
                       f"{int(idx.max())} of {base_idx.size})")
        panel = MorphPanel(kind) if kind in _PMD_MORPH_PANELS else MorphPanel.OTHER
        morphs.append(Morph(mname, morph_en[j], panel, MorphKind.VERTEX,
                            base_idx[idx].astype(np.int32),
                            offsets=rec["p"].astype(np.float32)))
    return morphs


def _parse_pmd(path: Path, data: bytes) -> MMDModel:
    r = _pmd_header(data)
    warnings: list[str] = []

    name = r.text(20)
    comment = r.text(256)
    V = r.count("<I", _PMD_VERTEX.itemsize, "vertex")
    vrec = r.array(_PMD_VERTEX, V, "vertex list")
    faces = r.read_faces(V)
    raw_mats = [r.read_material() for _ in range(r.count("<I", 70, "material"))]
    raw_bones = [r.read_bone() for _ in range(r.count("<H", 39, "bone"))]
    raw_iks = [r.read_ik() for _ in range(r.count("<H", 11, "IK chain"))]
    raw_morphs = [r.read_morph_array() for _ in range(r.count("<H", 25, "morph"))]
    n_groups = r.skip_display_lists()
    ext = r.read_extensions(len(raw_bones), raw_morphs, n_groups)

    _check_finite(vrec["pos"].astype(np.float32), "vertex positions")
    _check_bone_positions(b.pos for b in raw_bones)
    verts = _pmd_vertices(vrec, len(raw_bones), warnings)
    materials = _pmd_materials(raw_mats, faces.size, ext.toon_names)
    bones = _pmd_bones(raw_bones, raw_iks, ext.bone_en)
    morphs = _pmd_morphs(raw_morphs, ext.morph_en, V)
    return MMDModel(
        path=path, format=ModelFormat.PMD, version=1.0, name=name, name_en=ext.name_en,
        comment=comment, indices=faces, textures=_pmd_texture_list(materials),
        materials=materials, bones=bones, morphs=morphs, warnings=warnings, **verts)


def _pmd_texture_list(materials: list[Material]) -> list[str]:
    seen: list[str] = []
    for m in materials:
        for t in (m.texture, m.sphere, m.toon):
            if t and t not in seen:
                seen.append(t)
    return seen

