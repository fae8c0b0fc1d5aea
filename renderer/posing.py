"""Pose a loaded model: morphs, the two neck bones, skinning. CPU, vectorised numpy.

Pose vector (docs/data-format.md): head_x, head_y, neck_z, left_eye, right_eye, mouth.

Rotations are the standard right-hand-rule matrices applied in MMD's own
(left-handed) model coordinates, about the bone's head position:

    Rx(a) = [[1,0,0],[0,c,-s],[0,s,c]]   Ry(a) = [[c,0,s],[0,1,0],[-s,0,c]]
    Rz(a) = [[c,-s,0],[s,c,0],[0,0,1]]   with a = 15°·v

* neck ROOT (首) gets Rz(15°·neck_z): + moves the top of the head toward -x
  (the character's right shoulder, the image's left);
* neck TIP (頭) gets R = Ry(15°·head_y) · Rx(15°·head_x) (x applied first, then
  y, both in the axes of the neck root's frame): +head_x moves points in front
  of the face (z < 0) up, +head_y moves the nose toward -x.

Skinning: BDEF1/2/4 are linear blends of bone matrices; SDEF is evaluated as
PMX defines it (blended rotation about the vertex's C point, see _skin_sdef;
the rotation blend is a normalised quaternion lerp, within a fraction of a
degree of slerp at these angles; `ModelPoser(..., sdef=False)` falls back to
the linear blend); QDEF (PMX 2.1 dual quaternions) is evaluated as a linear
blend of its four bones. Normals are transformed by the blended rotation and
renormalised.

Morphs are evaluated by renderer.morph_eval (group/flip recursion; vertex and UV
morphs move positions/UVs, bone morphs add local bone transforms, material morphs
are combined into `PosedMesh.material_morph`, impulse morphs are ignored).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from renderer.model import MMDModel, SkinningType
from renderer.morph_eval import MorphEvaluator
from core.pose import ANGLE_DEGREES
from renderer.skeleton import Skeleton, matrix_to_quat, quat_axis_angle, quat_mul


@dataclass
class PosedMesh:
    positions: np.ndarray              # (V,3) float32
    normals: np.ndarray                # (V,3) float32
    uvs: np.ndarray                    # (V,2) float32
    # (M, MATERIAL_MORPH_WIDTH) float32 or None (no material morph active), columns named by
    # MaterialMorphColumn. DIFFUSE..EDGE_SIZE are the material's effective values after the
    # morphs (base·Πmul + Σadd); TINTS are RGBA tints for the texture, sphere and toon colours
    # (Πmul + Σadd starting from 1; colour_used = colour_sampled · tint).
    material_morph: np.ndarray | None


def neck_quaternions(pose6) -> tuple[np.ndarray, np.ndarray]:
    """(neck root quaternion, neck tip quaternion), (x,y,z,w), for a pose vector."""
    hx, hy, nz = (float(v) for v in np.asarray(pose6, float)[:3])
    k = math.radians(ANGLE_DEGREES)
    root = quat_axis_angle((0, 0, 1), k * nz)
    tip = quat_mul(quat_axis_angle((0, 1, 0), k * hy), quat_axis_angle((1, 0, 0), k * hx))
    return root, tip


class ModelPoser:
    """Poses one model. `rig` (a FaceRig) maps the pose vector onto morphs and bones;
    without a rig only `pose_parts` with identity neck rotations is possible."""

    def __init__(self, model: MMDModel, rig=None, sdef: bool = True):
        self.model = model
        self.rig = rig
        self.skeleton = Skeleton(model)
        # SDEF vertices: per-vertex rotation centre terms, precomputed once (see _skin_sdef)
        self._sdef = np.zeros(model.vertex_count, bool)
        if sdef:
            self._sdef = (model.skin_type == SkinningType.SDEF) & (model.bone_weights[:, 1] > 0)
        if self._sdef.any():
            with np.errstate(all="ignore"):         # absurd values in odd files: no warnings
                w0 = model.bone_weights[:, :1].astype(np.float64)
                w1 = 1.0 - w0
                c = model.sdef_c.astype(np.float64)
                r0, r1 = model.sdef_r0.astype(np.float64), model.sdef_r1.astype(np.float64)
                rw = w0 * r0 + w1 * r1
                self._sdef_cr0 = (c + 0.5 * (r0 - rw)).astype(np.float32)  # (C + r0) / 2
                self._sdef_cr1 = (c + 0.5 * (r1 - rw)).astype(np.float32)
        self.rest_positions = np.ascontiguousarray(model.positions, np.float32)
        self.rest_normals = np.ascontiguousarray(model.normals, np.float32)
        self.rest_uvs = np.ascontiguousarray(model.uvs, np.float32)
        self._bidx = model.bone_indices.astype(np.intp)
        self._bw = model.bone_weights.astype(np.float32)
        self._bw_nonzero = self._bw > 0
        self.morphs = MorphEvaluator(model, self.rest_positions, self.rest_uvs)
        self._subset_cache: dict[bytes, tuple] = {}

    # ------------------------------------------------------------ public
    def pose(self, pose6) -> PosedMesh:
        if self.rig is None:
            raise ValueError("ModelPoser.pose needs a FaceRig (ModelPoser(model, rig))")
        pose6 = np.asarray(pose6, float).reshape(6)
        root_q, tip_q = neck_quaternions(pose6)
        return self.pose_parts(self.rig.morph_weights(pose6), root_q, tip_q)

    def pose_parts(self, morph_weights: dict[int, float], neck_root_quat=None,
                   neck_tip_quat=None, bone_rotations: dict[int, np.ndarray] | None = None,
                   offsets: np.ndarray | None = None) -> PosedMesh:
        """Morphs at their weights, then `offsets` ((V, 3) added to the morphed rest positions),
        `bone_rotations` ({bone: quaternion} applied after the morphs' own) and the neck
        rotations; then skinning."""
        morphed = self.morphs.evaluate(morph_weights)
        if offsets is not None:
            morphed.positions += offsets
        local_rot = morphed.bone_rotations
        for bone, q in (bone_rotations or {}).items():
            local_rot[bone] = quat_mul(q, local_rot[bone]) if bone in local_rot else q
        for which, q in (("neck_root", neck_root_quat), ("neck_tip", neck_tip_quat)):
            bone = self._neck(which)
            if q is None:
                continue
            q = np.asarray(q, float)
            if np.allclose(q[:3], 0.0):
                continue
            if bone < 0:
                from renderer.errors import RenderError
                label = "neck root (首)" if which == "neck_root" else "neck tip (頭)"
                raise RenderError(f"{self.model.path}: no {label} bone to rotate "
                                  "(see FaceRig.problems())")
            local_rot[bone] = quat_mul(q, local_rot[bone]) if bone in local_rot else q
        with np.errstate(over="ignore", invalid="ignore"):
            positions, normals = self._skin(morphed.positions, local_rot,
                                            morphed.bone_translations)
        return PosedMesh(positions=positions, normals=normals, uvs=morphed.uvs,
                         material_morph=morphed.material)

    # ------------------------------------------------------------ internals
    def _neck(self, which: str) -> int:
        if self.rig is None:
            return -1
        v = getattr(self.rig, which)
        return -1 if v is None else int(v)

    def _skin(self, pos, local_rot, local_trans):
        """Skin `pos` (morphed rest positions) in place; returns (positions, normals).

        Bones fall into a few classes that share one matrix (see Skeleton.skin_matrices);
        per class structure the vertices that move, and their weight per class, are cached,
        so a pose costs a handful of (n,3)·(3,3) products over the moving vertices only.
        """
        normals = self.rest_normals
        if not local_rot and not local_trans or self.skeleton.count == 0:
            return pos, normals.copy()
        S, moved, cls = self.skeleton.skin_matrices(local_rot, local_trans, with_classes=True)
        if not moved.any():
            return pos, normals.copy()
        key = cls.tobytes()
        cached = self._subset_cache.get(key)
        if cached is None:
            cached = self._plan(cls)
            if len(self._subset_cache) > 64:
                self._subset_cache.clear()
            self._subset_cache[key] = cached
        sub, W, rep, sub_sdef = cached
        normals = normals.copy()
        if sub.size:
            x, n = pos[sub], normals[sub]
            Sc = S[rep]                                        # (C,3,4) one matrix per class
            if len(rep) <= 8:
                px = np.zeros_like(x)
                nx = np.zeros_like(n)
                for c in range(len(rep)):
                    w = W[:, c:c + 1]
                    R = Sc[c, :, :3]
                    px += w * (x @ R.T + Sc[c, :, 3])
                    nx += w * (n @ R.T)
            else:
                M = (W @ Sc.reshape(len(rep), 12)).reshape(-1, 3, 4)
                px = np.einsum("vij,vj->vi", M[:, :, :3], x) + M[:, :, 3]
                nx = np.einsum("vij,vj->vi", M[:, :, :3], n)
            pos[sub] = px
            normals[sub] = nx / np.maximum(np.linalg.norm(nx, axis=1, keepdims=True), 1e-12)
        if sub_sdef.size:
            self._skin_sdef(sub_sdef, S, moved, pos, normals)
        return pos, normals

    def _plan(self, cls):
        """Vertices to re-skin for a class structure, their (n,C) class weights, one
        representative bone per class, and the SDEF vertices needing the SDEF formula."""
        vcls = cls[self._bidx]                                 # (V,4)
        hit = ((vcls != 0) & self._bw_nonzero).any(axis=1)
        # SDEF vertices whose two bones share a matrix move rigidly: plain skinning is exact
        sdef = hit & self._sdef & (vcls[:, 0] != vcls[:, 1])
        sub = np.nonzero(hit & ~sdef)[0]
        classes, rep = np.unique(cls, return_index=True)
        lookup = np.zeros(int(classes.max()) + 1, np.intp)
        lookup[classes] = np.arange(classes.size)
        W = np.zeros((sub.size, classes.size), np.float32)
        rows = np.repeat(np.arange(sub.size), 4)
        np.add.at(W, (rows, lookup[vcls[sub]].ravel()), self._bw[sub].ravel())
        return sub, W, rep, np.nonzero(sdef)[0]

    def _skin_sdef(self, sub, S, moved, pos, normals):
        """SDEF (PMX spherical deform) for the vertices `sub`, in place.

        With bones 0/1, weights w0/w1, the blended rotation R = nlerp(q0, q1; w1) of the two
        bones' global rotations and the precomputed centres cr0 = (C + r0)/2, cr1 = (C + r1)/2
        (r_k = C + R_k - (w0·R0 + w1·R1)):
            x' = R·(x - C) + w0·M0(cr0) + w1·M1(cr1),   n' = R·n
        which equals plain skinning whenever both bones move rigidly together.
        """
        b = self._bidx[sub, :2]
        w0 = self._bw[sub, :1]
        w1 = 1.0 - w0
        bones = np.unique(b)
        Q = np.zeros((S.shape[0], 4))
        Q[:, 3] = 1.0
        for i in bones[moved[bones]].tolist():
            Q[i] = matrix_to_quat(S[i, :, :3])
        q0, q1 = Q[b[:, 0]], Q[b[:, 1]]
        q1 = np.where((np.einsum("vi,vi->v", q0, q1) < 0)[:, None], -q1, q1)
        q = w0 * q0 + w1 * q1
        q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        x, y, z, w = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
        R = np.stack([
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ], 1).astype(np.float32)                                         # (n,3,3)
        M0, M1 = S[b[:, 0]], S[b[:, 1]]
        cr0, cr1 = self._sdef_cr0[sub], self._sdef_cr1[sub]
        c = self.model.sdef_c[sub]
        t0 = np.einsum("vij,vj->vi", M0[:, :, :3], cr0) + M0[:, :, 3]
        t1 = np.einsum("vij,vj->vi", M1[:, :, :3], cr1) + M1[:, :, 3]
        pos[sub] = np.einsum("vij,vj->vi", R, pos[sub] - c) + w0 * t0 + w1 * t1
        n = np.einsum("vij,vj->vi", R, normals[sub])
        normals[sub] = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
