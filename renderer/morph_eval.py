"""Morph evaluation: what a set of morph weights does to a model at rest, before skinning.

* `flatten_morph_weights(model, weights)`: group and flip morphs expand into their
  members with multiplied weights (nested groups recurse; a morph already on the
  current path is skipped, which cuts loops; depth is capped at `MAX_GROUP_DEPTH`);
  impulse morphs are dropped; the result maps leaf morphs (vertex, UV, bone,
  material) to weights.
* `MorphEvaluator(model).evaluate(weights)` -> `MorphedRest`: vertex morphs move the
  rest positions, UV morphs the UVs (additional-UV morphs are ignored), bone morphs
  give local bone translations and rotations, material morphs combine into one
  (M, MATERIAL_MORPH_WIDTH) array (see `PosedMesh.material_morph` in renderer.posing).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from renderer.model import MATERIAL_MORPH_WIDTH, MMDModel, MorphKind
from renderer.model import MaterialMorphColumn as MC
from renderer.skeleton import quat_mul, quat_pow

MAX_GROUP_DEPTH = 32


def flatten_morph_weights(model: MMDModel, weights: dict[int, float]) -> dict[int, float]:
    """Expand group/flip morphs; returns {leaf morph index: total weight} (zeros dropped)."""
    morphs = model.morphs
    n = len(morphs)
    out: dict[int, float] = {}

    def visit(i: int, w: float, path: tuple[int, ...]) -> None:
        if w == 0.0 or not 0 <= i < n:
            return
        m = morphs[i]
        if m.kind in (MorphKind.GROUP, MorphKind.FLIP):
            if i in path or len(path) >= MAX_GROUP_DEPTH:
                return                       # loop (or absurd nesting): cut here
            for j, cw in zip(m.indices.tolist(), m.weights.tolist()):
                visit(j, w * cw, path + (i,))
        elif m.kind == MorphKind.IMPULSE:
            return
        else:
            out[i] = out.get(i, 0.0) + w

    for i, w in weights.items():
        visit(int(i), float(w), ())
    return {i: w for i, w in out.items() if w != 0.0}


def material_base(model: MMDModel) -> np.ndarray:
    """(M, MATERIAL_MORPH_WIDTH) float32: each material's own values in the
    MaterialMorphColumn layout, TINTS at 1."""
    base = np.zeros((len(model.materials), MATERIAL_MORPH_WIDTH), np.float32)
    for i, m in enumerate(model.materials):
        base[i, MC.DIFFUSE] = m.diffuse
        base[i, MC.SPECULAR] = m.specular
        base[i, MC.SPECULAR_POWER] = m.specular_power
        base[i, MC.AMBIENT] = m.ambient
        base[i, MC.EDGE_COLOR] = m.edge_color
        base[i, MC.EDGE_SIZE] = m.edge_size
        base[i, MC.TINTS] = 1.0
    return base


@dataclass
class MorphedRest:
    """The model at rest after its leaf morphs, before skinning (fresh arrays)."""
    positions: np.ndarray                      # (V,3) float32
    uvs: np.ndarray                            # (V,2) float32
    bone_rotations: dict[int, np.ndarray]      # bone -> local rotation quaternion (x,y,z,w)
    bone_translations: dict[int, np.ndarray]   # bone -> local translation (3,)
    material: np.ndarray | None                # (M, MATERIAL_MORPH_WIDTH) float32 or None


class MorphEvaluator:
    """Evaluates morph weights on one model's rest arrays `rest_positions`/`rest_uvs`
    (never modified)."""

    def __init__(self, model: MMDModel, rest_positions: np.ndarray, rest_uvs: np.ndarray):
        self.model = model
        self.rest_positions = rest_positions
        self.rest_uvs = rest_uvs
        self._dup = {}           # morph index -> True if its vertex indices repeat
        for i, m in enumerate(model.morphs):
            if m.kind in (MorphKind.VERTEX, MorphKind.UV) and m.indices.size:
                self._dup[i] = np.unique(m.indices).size != m.indices.size
        self._mat_base = None

    def evaluate(self, morph_weights: dict[int, float]) -> MorphedRest:
        """Group/flip morphs expanded, then every leaf morph applied at its weight."""
        model = self.model
        pos = self.rest_positions.copy()
        uvs = self.rest_uvs
        local_rot: dict[int, np.ndarray] = {}
        local_trans: dict[int, np.ndarray] = {}
        mat = None
        for mi, w in flatten_morph_weights(model, morph_weights).items():
            m = model.morphs[mi]
            k = m.kind
            if k == MorphKind.VERTEX:
                self._add_offsets(pos, mi, m.indices, w * m.offsets)
            elif k == MorphKind.UV:
                if uvs is self.rest_uvs:
                    uvs = uvs.copy()
                self._add_offsets(uvs, mi, m.indices, w * m.offsets[:, :2])
            elif k == MorphKind.BONE:
                for b, t, q in zip(m.indices.tolist(), m.translations, m.rotations):
                    if np.any(t):
                        local_trans[b] = local_trans.get(b, 0.0) + w * t.astype(float)
                    qw = quat_pow(q, w)
                    local_rot[b] = quat_mul(qw, local_rot[b]) if b in local_rot else qw
            elif k == MorphKind.MATERIAL:
                mat = self._apply_material_morph(mat, m, w)
        if mat is not None:
            mat = self._finish_material(mat)
        return MorphedRest(positions=pos, uvs=uvs if uvs is not self.rest_uvs else uvs.copy(),
                           bone_rotations=local_rot, bone_translations=local_trans, material=mat)

    def _add_offsets(self, target: np.ndarray, morph: int, indices, offsets) -> None:
        if self._dup.get(morph):
            np.add.at(target, indices, offsets)
        else:
            target[indices] += offsets

    def _apply_material_morph(self, acc, m, w):
        M = len(self.model.materials)
        if acc is None:
            acc = (np.ones((M, MATERIAL_MORPH_WIDTH), np.float32),
                   np.zeros((M, MATERIAL_MORPH_WIDTH), np.float32))
        mul, add = acc
        for target, op, vals in zip(m.indices.tolist(), m.operations.tolist(), m.values):
            rows = slice(None) if target < 0 else slice(target, target + 1)
            if op == 0:
                mul[rows] *= 1.0 + w * (vals - 1.0)
            else:
                add[rows] += w * vals
        return acc

    def _finish_material(self, acc):
        if self._mat_base is None:
            self._mat_base = material_base(self.model)
        mul, add = acc
        return (self._mat_base * mul + add).astype(np.float32)
