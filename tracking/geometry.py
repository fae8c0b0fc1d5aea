"""Head rotation and eye/mouth openness from one frame's face landmarks (numpy only).

Landmarks are (478, 3) arrays in FaceMesh's topology, in pixel units: x to the image's right,
y down, z away from the camera (FaceMesh's z has the scale of x).

Angles are in degrees and named by what the image shows (`ANGLE_NAMES`):
  * up:   the face tilts up (chin forward);
  * turn: the face turns toward the image's left (the subject's own right);
  * tilt: the top of the head moves toward the image's left (a counter-clockwise in-plane turn).
They are the Euler angles of R = Rz(tilt) · Ry(−turn) · Rx(−up) in a right-handed frame with x to
the image's right, y up and z toward the camera, where R takes a reference face (the subject's own
landmarks of another frame) onto this frame's face by weighted Procrustes on stable points.
"""
from __future__ import annotations

import numpy as np

ANGLE_NAMES = ("up", "turn", "tilt")

# FaceMesh landmark indices. Stable points: forehead, nose bridge and ridge, eye corners,
# cheekbones and temples; they barely move with expressions (no lids, brows, lips or jaw).
STABLE_POINTS = np.array([10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1,
                          33, 133, 362, 263, 116, 345, 50, 280, 123, 352, 234, 454, 127, 356])
STABLE_WEIGHTS = np.where(np.isin(STABLE_POINTS, (234, 454, 127, 356)), 0.5, 1.0)  # silhouette: less sure
# each eye: (outer corner, inner corner, three (upper lid, lower lid) pairs)
RIGHT_EYE = (33, 133, ((160, 144), (159, 145), (158, 153)))   # the subject's right eye (image left)
LEFT_EYE = (263, 362, ((385, 380), (386, 374), (387, 373)))   # the subject's left eye (image right)
MOUTH_CORNERS = (78, 308)       # inner corners of the lips
MOUTH_GAP = (13, 14)            # inner upper lip, inner lower lip (middle)

_FLIP = np.array([1.0, -1.0, -1.0])  # image axes (x right, y down, z away) -> (x right, y up, z toward)


def procrustes_rotation(ref: np.ndarray, cur: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Rotations R (…, 3, 3) minimising sum w·|s·R·ref_i + t − cur_i|² (weighted Umeyama, det R = +1);
    ref (K, 3), cur (…, K, 3)."""
    w = np.asarray(weights, np.float64) / np.sum(weights)
    a = ref - w @ ref
    b = cur - np.einsum("k,...kj->...j", w, cur)[..., None, :]
    cov = np.einsum("...ki,k,kj->...ij", b, w, a)
    u, _, vt = np.linalg.svd(cov)
    d = np.where(np.linalg.det(u @ vt) < 0, -1.0, 1.0)
    fix = np.broadcast_to(np.eye(3), d.shape + (3, 3)).copy()
    fix[..., 2, 2] = d
    return u @ fix @ vt


def head_rotation(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """Rotations (…, 3, 3), in the y-up frame, taking the reference face's (478, 3) stable points
    onto each face of `cur` (…, 478, 3)."""
    a = ref[STABLE_POINTS].astype(np.float64) * _FLIP
    b = cur[..., STABLE_POINTS, :].astype(np.float64) * _FLIP
    return procrustes_rotation(a, b, STABLE_WEIGHTS)


def rotation_to_angles(r: np.ndarray) -> np.ndarray:
    """(…, 3, 3) rotations -> (…, 3) angles (up, turn, tilt) in degrees (see the module docstring)."""
    r = np.asarray(r, np.float64)
    ry = np.arcsin(np.clip(-r[..., 2, 0], -1.0, 1.0))
    rx = np.arctan2(r[..., 2, 1], r[..., 2, 2])
    rz = np.arctan2(r[..., 1, 0], r[..., 0, 0])
    return np.degrees(np.stack([-rx, -ry, rz], axis=-1))


def angles_to_rotation(angles: np.ndarray) -> np.ndarray:
    """(…, 3) angles (up, turn, tilt) in degrees -> (…, 3, 3) rotations; inverse of rotation_to_angles."""
    a = np.radians(np.asarray(angles, np.float64))
    rx, ry, rz = -a[..., 0], -a[..., 1], a[..., 2]
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    one, zero = np.ones_like(rx), np.zeros_like(rx)
    mx = np.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).reshape(a.shape[:-1] + (3, 3))
    my = np.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(a.shape[:-1] + (3, 3))
    mz = np.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).reshape(a.shape[:-1] + (3, 3))
    return mz @ my @ mx


def _dist(lm: np.ndarray, i: int, j: int) -> np.ndarray:
    return np.linalg.norm(lm[..., i, :] - lm[..., j, :], axis=-1)


def eye_ratio(lm: np.ndarray, eye: tuple) -> np.ndarray:
    """Lid gap ÷ eye width of (…, 478, 3) landmarks (about 0.3 open, under 0.1 closed)."""
    outer, inner, pairs = eye
    gap = np.mean([_dist(lm, u, d) for u, d in pairs], axis=0)
    return gap / np.maximum(_dist(lm, outer, inner), 1e-9)


def mouth_ratio(lm: np.ndarray) -> np.ndarray:
    """Inner-lip gap ÷ mouth width of (…, 478, 3) landmarks (about 0.02 closed, 0.18 lips parted)."""
    return _dist(lm, *MOUTH_GAP) / np.maximum(_dist(lm, *MOUTH_CORNERS), 1e-9)


def face_measures(lm: np.ndarray) -> np.ndarray:
    """(…, 3): (right eye ratio, left eye ratio, mouth ratio); the eyes are the subject's own."""
    return np.stack([eye_ratio(lm, RIGHT_EYE), eye_ratio(lm, LEFT_EYE), mouth_ratio(lm)], axis=-1)


def face_size(lm: np.ndarray) -> np.ndarray:
    """Forehead-to-chin distance in pixels (landmarks 10 and 152) of (…, 478, 3) landmarks."""
    return np.linalg.norm(lm[..., 10, :2] - lm[..., 152, :2], axis=-1)
