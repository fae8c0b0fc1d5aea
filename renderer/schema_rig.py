"""A pose schema on one model (docs/pose-schemas.md): which morph or bones each parameter of a
`core.poseschema.PoseSchema` drives, how that was decided, and the schema's pose -> posed mesh.

`resolve_schema_rig(model, schema, override, face_rig)` binds every parameter:
  * a morph without a side: the first morph named like its aliases (renderer.face_rig's name
    matching: NFKC, case, ウインク) -> `name`;
  * a morph with a side (left = the character's left, +x from the head bone): among the morphs named
    like its aliases, the first that moves mostly that side (face_rig.SIDE_THRESHOLD of its
    displacement, measured as for the winks) is used whole -> `geometry`; else the first that moves
    both sides is SPLIT: only its vertex displacement on that side is applied (a smooth ramp a few
    percent of the face wide at the head's x), so left + right at equal weight is the whole morph
    -> `split`;
  * a rotation or a combination: each turn's bone found by name; found bones turn by
    degrees x value about their axis, turns on one bone composed in schema order -> `name`;
  * the override's `parameters` map (parameter -> morph name, or null for none) wins -> `override`;
  * nothing found -> `missing` (the parameter is unavailable; data keeps it at rest).
A morph's weight is the parameter's value. `SchemaRig.pose(poser, pose)` poses the mesh through
`ModelPoser.pose_parts`; `probe_available` renders each parameter at its extreme against the rest
pose and marks those that change no pixels unavailable.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from core.poseschema import PoseSchema
from renderer.face_rig import SIDE_THRESHOLD, FaceRig, find_bone, find_morph, morph_side
from renderer.model import MMDModel
from renderer.posing import ModelPoser, PosedMesh
from renderer.skeleton import quat_axis_angle, quat_mul

HOWS = ("name", "geometry", "split", "override", "missing")
_AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}
#: half-width of the left/right ramp of a split morph, as a share of its moved vertices' x extent
SPLIT_RAMP = 0.1
#: a pixel changed when some channel moved by more than this (uint8 units; as dataset.modelcheck)
PROBE_DIFF = 8


@dataclass
class Binding:
    """What one parameter drives on this model."""
    name: str
    how: str                                   # one of HOWS
    morph: int | None = None
    split: str | None = None                   # left | right: only that side of `morph`
    turns: list[tuple[int, str, float]] = field(default_factory=list)   # (bone, axis, degrees)
    detail: str = ""                           # morph / bone names, for reports

    @property
    def found(self) -> bool:
        return self.how != "missing"


@dataclass
class SchemaRig:
    schema: PoseSchema
    bindings: list[Binding]
    x_ref: float
    _fields: dict = field(default_factory=dict, repr=False)   # (morph, side) -> (V, 3) offsets

    def found(self) -> np.ndarray:
        return np.array([b.found for b in self.bindings])

    def pose(self, poser: ModelPoser, pose) -> PosedMesh:
        """The mesh posed by a schema pose (P,)."""
        weights: dict[int, float] = {}
        offsets = None
        rots: dict[int, np.ndarray] = {}
        for b, v in zip(self.bindings, np.asarray(pose, float).reshape(-1).tolist()):
            if not b.found or v == 0.0:
                continue
            if b.morph is not None and b.split is None:
                weights[b.morph] = weights.get(b.morph, 0.0) + v
            elif b.morph is not None:
                field_ = self._split_field(poser, b.morph, b.split)
                offsets = v * field_ if offsets is None else offsets + v * field_
            for bone, axis, degrees in b.turns:
                q = quat_axis_angle(_AXES[axis], math.radians(degrees * v))
                rots[bone] = quat_mul(q, rots[bone]) if bone in rots else q
        return poser.pose_parts(weights, bone_rotations=rots or None, offsets=offsets)

    def _split_field(self, poser: ModelPoser, morph: int, side: str) -> np.ndarray:
        key = (morph, side)
        if key not in self._fields:
            d = poser.morphs.evaluate({morph: 1.0}).positions - poser.rest_positions
            x = poser.rest_positions[:, 0].astype(np.float64) - self.x_ref
            moved = np.abs(d).sum(axis=1) > 0
            width = SPLIT_RAMP * (float(np.abs(x[moved]).max()) if moved.any() else 1.0) or 1e-6
            left = np.clip(0.5 + x / (2.0 * width), 0.0, 1.0)
            share = left if side == "left" else 1.0 - left
            self._fields[key] = (d * share[:, None]).astype(np.float32)
        return self._fields[key]


def resolve_schema_rig(model: MMDModel, schema: PoseSchema, override: dict | None = None,
                       face_rig: FaceRig | None = None) -> SchemaRig:
    """Bind every parameter of `schema` on `model` (see the module docstring)."""
    tip = face_rig.neck_tip if face_rig is not None else find_bone(model, ("頭", "head"))
    x_ref = float(model.bones[tip].position[0]) if tip is not None and tip >= 0 else 0.0
    side_of = _SideCache(model, x_ref)
    chosen = dict((override or {}).get("parameters") or {})
    out = []
    for p in schema.parameters:
        if p.name in chosen:
            out.append(_override_binding(model, p, chosen[p.name], side_of))
        elif p.kind == "morph":
            out.append(_morph_binding(model, p, side_of))
        else:
            out.append(_turn_binding(model, p))
    return SchemaRig(schema, out, x_ref)


class _SideCache:
    """Share of each morph's displacement on +x (NaN: moves nothing), computed once per morph."""

    def __init__(self, model: MMDModel, x_ref: float):
        self.model, self.x_ref, self.poser, self.shares = model, x_ref, None, {}

    def __call__(self, i: int) -> float:
        if i not in self.shares:
            self.poser = self.poser or ModelPoser(self.model, None)
            share, total = morph_side(self.model, i, self.poser, self.x_ref)
            self.shares[i] = share if total > 0 else float("nan")
        return self.shares[i]


def _on_side(share: float, side: str) -> bool:
    return not np.isnan(share) and (share >= SIDE_THRESHOLD if side == "left" else share <= 1 - SIDE_THRESHOLD)


def _two_sided(share: float) -> bool:
    return not np.isnan(share) and 1 - SIDE_THRESHOLD < share < SIDE_THRESHOLD


def _morph_binding(model: MMDModel, p, side_of) -> Binding:
    if p.side is None:
        i = find_morph(model, p.morphs)
        if i is None:
            return Binding(p.name, "missing", detail="no morph named " + "/".join(p.morphs[:3]))
        return Binding(p.name, "name", morph=i, detail=model.morphs[i].name)
    cands = list(dict.fromkeys(i for a in p.morphs if (i := find_morph(model, [a])) is not None))
    for i in cands:
        if _on_side(side_of(i), p.side):
            return Binding(p.name, "geometry", morph=i,
                           detail=f"{model.morphs[i].name} ({_share_text(side_of(i), p.side)})")
    for i in cands:
        if _two_sided(side_of(i)):
            return Binding(p.name, "split", morph=i, split=p.side,
                           detail=f"{model.morphs[i].name} ({p.side} half)")
    return Binding(p.name, "missing", detail="no morph named " + "/".join(p.morphs[:3])
                   + (" moving that side" if cands else ""))


def _share_text(share: float, side: str) -> str:
    return f"{share if side == 'left' else 1 - share:.0%} on the {side}"


def _override_binding(model: MMDModel, p, name, side_of) -> Binding:
    if name is None or p.kind != "morph":
        return Binding(p.name, "missing", detail="override: none")
    i = model.morph_index(str(name))
    if i < 0:
        return Binding(p.name, "missing", detail=f"override: no morph named {name!r}")
    split = p.side if p.side and _two_sided(side_of(i)) else None
    return Binding(p.name, "override", morph=i, split=split,
                   detail=model.morphs[i].name + (f" ({split} half)" if split else ""))


def _turn_binding(model: MMDModel, p) -> Binding:
    turns = [(b, t.axis, t.degrees) for t in p.turns if (b := find_bone(model, t.bones)) >= 0]
    if not turns:
        return Binding(p.name, "missing", detail="no bone named " + "/".join(p.turns[0].bones[:2]))
    return Binding(p.name, "name", turns=turns,
                   detail=", ".join(f"{model.bones[b].name} {a} {d:g}°" for b, a, d in turns))


def extreme(schema: PoseSchema, i: int) -> float:
    """Parameter i's value farthest from its rest (the high end on a tie)."""
    p = schema.parameters[i]
    return p.high if p.high - p.rest >= p.rest - p.low else p.low


def probe_available(rig: SchemaRig, poser: ModelPoser, render, min_pixels: int = 1) -> np.ndarray:
    """(P,) bool: found, and at its extreme changes at least `min_pixels` pixels (some channel by
    more than PROBE_DIFF) against the rest pose; `render(mesh)` gives an (S, S, 4) uint8 image."""
    rest_pose = rig.schema.rest
    rest = render(rig.pose(poser, rest_pose)).astype(np.int16)
    out = np.zeros(rig.schema.size, bool)
    for i, b in enumerate(rig.bindings):
        if not b.found:
            continue
        pose = rest_pose.copy()
        pose[i] = extreme(rig.schema, i)
        img = render(rig.pose(poser, pose)).astype(np.int16)
        out[i] = int((np.abs(img - rest).max(axis=2) > PROBE_DIFF).sum()) >= min_pixels
    return out
