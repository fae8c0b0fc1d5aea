"""Bone hierarchy, evaluation order, append (付与) transforms and skinning matrices.

MMD bones carry no rest orientation: a bone's local rotation acts in its
parent's axes, about the bone's own head position. With parent p,

    R_i = R_p · Rl_i                         (global rotation)
    P_i = P_p + R_p · (rest_i - rest_p + t_i) (world position of the bone head)

and a vertex skinned to bone i goes to  R_i · (x - rest_i) + P_i. Rotations
here are 3×3 matrices acting on column vectors in MMD's own (left-handed)
coordinates, quaternions are (x, y, z, w).

Evaluation order: bones sorted by (deform layer, index), then moved as little
as needed so that every parent and every append parent comes before the bones
that depend on it (PMD has no layers; the dependency rule alone orders it).

Append: a bone with APPEND_ROTATION takes slerp(identity, q_a, weight) of its
append parent a's *local* rotation (a's own rotation combined with a's own
append rotation, as MMD does), applied before its own rotation; with
APPEND_TRANSLATION it adds weight · a's local translation. INHERIT_LOCAL
("local append") is treated like a plain append. IK and physics are not
evaluated (head-only poses do not need them).

Only bones that actually move are touched: a bone with no local transform
whose parent does not move keeps the identity skinning matrix.
"""
from __future__ import annotations

import heapq

import numpy as np

from renderer.model import BoneFlag, MMDModel

IDENTITY_QUAT = np.array([0.0, 0.0, 0.0, 1.0])


# ---------------------------------------------------------------- quaternion helpers (x,y,z,w)

def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a·b (apply b first, then a)."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw,
                     aw * bw - ax * bx - ay * by - az * bz])


def quat_axis_angle(axis, radians: float) -> np.ndarray:
    """Quaternion of the standard (right-hand-rule) rotation by `radians` about `axis`."""
    axis = np.asarray(axis, float)
    axis = axis / np.linalg.norm(axis)
    s = np.sin(radians / 2.0)
    return np.array([axis[0] * s, axis[1] * s, axis[2] * s, np.cos(radians / 2.0)])


def quat_pow(q: np.ndarray, t: float) -> np.ndarray:
    """slerp(identity, q, t)."""
    q = np.asarray(q, float)
    if q[3] < 0:
        q = -q
    w = min(1.0, max(-1.0, q[3]))
    half = np.arccos(w)
    s = np.sin(half)
    if s < 1e-9:
        return IDENTITY_QUAT.copy()
    axis = q[:3] / s
    h = half * t
    return np.concatenate([axis * np.sin(h), [np.cos(h)]])


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    x, y, z, w = np.asarray(q, float) / max(np.linalg.norm(q), 1e-12)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """Quaternion (x,y,z,w) of a 3×3 rotation matrix (w ≥ 0)."""
    m = np.asarray(m, float)
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def is_identity(q: np.ndarray, eps: float = 1e-9) -> bool:
    return abs(q[0]) < eps and abs(q[1]) < eps and abs(q[2]) < eps


def evaluation_order(model: MMDModel) -> list[int]:
    """Bones by (deform layer, index), moved so parents/append parents come first."""
    B = len(model.bones)
    deps: list[list[int]] = [[] for _ in range(B)]
    indeg = [0] * B
    for i, b in enumerate(model.bones):
        for d in {b.parent, b.append_parent}:
            if 0 <= d < B and d != i:
                deps[d].append(i)
                indeg[i] += 1
    key = [(b.deform_layer, i) for i, b in enumerate(model.bones)]
    heap = [key[i] for i in range(B) if indeg[i] == 0]
    heapq.heapify(heap)
    order: list[int] = []
    while heap:
        _, i = heapq.heappop(heap)
        order.append(i)
        for c in deps[i]:
            indeg[c] -= 1
            if indeg[c] == 0:
                heapq.heappush(heap, key[c])
    if len(order) < B:  # dependency loop in a corrupt file: the rest in plain key order
        seen = set(order)
        order += [i for _, i in sorted(key) if i not in seen]
    return order


class Skeleton:
    """Rest data of a model's bones and the per-pose skinning matrices."""

    def __init__(self, model: MMDModel):
        bones = model.bones
        self.count = len(bones)
        self.rest = (np.array([b.position for b in bones], float).reshape(-1, 3)
                     if bones else np.zeros((0, 3)))
        self.parent = [b.parent for b in bones]
        self.order = evaluation_order(model)
        self.append = [
            (b.append_parent, b.append_weight,
             bool(b.flags & BoneFlag.APPEND_ROTATION), bool(b.flags & BoneFlag.APPEND_TRANSLATION))
            if b.append_parent >= 0 else None for b in bones]
        self.children: list[list[int]] = [[] for _ in bones]
        for i, p in enumerate(self.parent):
            if 0 <= p < self.count:
                self.children[p].append(i)

    def descendants(self, roots) -> set[int]:
        """`roots` and every bone below them in the hierarchy."""
        out, stack = set(), list(roots)
        while stack:
            i = stack.pop()
            if i in out or not (0 <= i < self.count):
                continue
            out.add(i)
            stack.extend(self.children[i])
        return out

    def skin_matrices(self, local_rot: dict[int, np.ndarray],
                      local_trans: dict[int, np.ndarray], with_classes: bool = False):
        """Skinning matrices for the given local transforms.

        local_rot: bone → quaternion (x,y,z,w); local_trans: bone → (3,) offset.
        Returns (S (B,3,4) float32 with S[i] = [R_i | P_i - R_i·rest_i], moved (B,) bool).
        Bones not moved keep the identity matrix.

        with_classes=True adds `cls` (B,) int32: bones with the same class have the same
        matrix by construction (0 = identity; a bone with no transform of its own shares its
        parent's class, since then S_i = S_parent). A head pose has only a few classes.
        """
        B = self.count
        S = np.zeros((max(B, 1), 3, 4), np.float32)
        S[:, 0, 0] = S[:, 1, 1] = S[:, 2, 2] = 1.0
        moved = np.zeros(max(B, 1), bool)
        cls = np.zeros(max(B, 1), np.int32)
        if not local_rot and not local_trans:
            return (S, moved, cls) if with_classes else (S, moved)
        n_cls = 0
        eff_rot: dict[int, np.ndarray] = dict(local_rot)
        eff_trans: dict[int, np.ndarray] = dict(local_trans)
        R: dict[int, np.ndarray] = {}
        P: dict[int, np.ndarray] = {}
        rest = self.rest
        eye = np.eye(3)
        for i in self.order:
            ap = self.append[i]
            if ap is not None:
                a, w, do_rot, do_trans = ap
                if do_rot and a in eff_rot and w != 0.0:
                    qa = quat_pow(eff_rot[a], w)
                    eff_rot[i] = quat_mul(eff_rot[i], qa) if i in eff_rot else qa
                if do_trans and a in eff_trans and w != 0.0:
                    ta = w * np.asarray(eff_trans[a], float)
                    eff_trans[i] = eff_trans[i] + ta if i in eff_trans else ta
            p = self.parent[i]
            q = eff_rot.get(i)
            t = eff_trans.get(i)
            has_rot = q is not None and not is_identity(q)
            has_t = t is not None and np.any(t)
            parent_moved = 0 <= p < B and moved[p]
            if not (has_rot or has_t or parent_moved):
                continue
            Rl = quat_to_matrix(q) if has_rot else None
            off = rest[i] - rest[p] if 0 <= p < B else rest[i]
            if has_t:
                off = off + t
            if parent_moved:
                Rp, Pp = R[p], P[p]
                Pi = Pp + Rp @ off
                Ri = Rp @ Rl if has_rot else Rp
            else:
                Pi = (rest[p] if 0 <= p < B else 0.0) + off
                Ri = Rl if has_rot else eye
            R[i], P[i] = Ri, Pi
            moved[i] = True
            if has_rot or has_t:
                n_cls += 1
                cls[i] = n_cls
            else:
                cls[i] = cls[p]
            S[i, :, :3] = Ri
            S[i, :, 3] = Pi - Ri @ rest[i]
        return (S, moved, cls) if with_classes else (S, moved)
