"""THE pose vector (docs/data-format.md, "The pose vector"): names, indices, rest pose, bounds,
the range check `out_of_range` and THE pose check `pose_problem`.

Six numbers in this order: head_x, head_y, neck_z (head rotation, each in [-1, 1],
one unit = ANGLE_DEGREES) then left_eye, right_eye, mouth (expression, each in
[0, 1]).  This module imports nothing beyond numpy, so every package (renderer,
dataset, train, inference, tracking, the app) can take pose facts from here without
pulling in OpenGL or torch.
"""
from __future__ import annotations

import numpy as np

POSE_NAMES: tuple[str, ...] = ("head_x", "head_y", "neck_z", "left_eye", "right_eye", "mouth")
POSE_SIZE = 6
HEAD_X, HEAD_Y, NECK_Z, LEFT_EYE, RIGHT_EYE, MOUTH = range(POSE_SIZE)
#: name -> index into the vector
POSE_INDEX: dict[str, int] = {name: i for i, name in enumerate(POSE_NAMES)}
HEAD_SLICE = slice(0, 3)
EXPRESSION_SLICE = slice(3, 6)
#: degrees of rotation for a head value of 1
ANGLE_DEGREES: float = 15.0

#: head straight, eyes open, mouth fully open: the networks' input image
REST_POSE = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 1.0], dtype=np.float32)
POSE_LOW = np.array([-1.0, -1.0, -1.0, 0.0, 0.0, 0.0], dtype=np.float32)
POSE_HIGH = np.ones(6, dtype=np.float32)
#: slack a stored or computed value may have beyond the bounds (float rounding)
RANGE_TOLERANCE = 1e-6


def out_of_range(values, tolerance: float = RANGE_TOLERANCE) -> np.ndarray:
    """Boolean mask shaped like `values` (..., 6): True where a value lies outside
    [low - tolerance, high + tolerance] or is not a number.

    The widened bounds are computed in float64 and compared in the dtype of
    `values` (float32 poses are compared against float32 bounds); values that are
    not floating point are compared as float64.
    """
    v = np.asarray(values)
    if not np.issubdtype(v.dtype, np.floating):
        v = v.astype(np.float64)
    low = (POSE_LOW.astype(np.float64) - tolerance).astype(v.dtype)
    high = (POSE_HIGH.astype(np.float64) + tolerance).astype(v.dtype)
    return ~((v >= low) & (v <= high))


def pose_problem(pose, tolerance: float = RANGE_TOLERANCE, batch: bool = False) -> str | None:
    """THE pose check: what is wrong with `pose` as one pose vector (shape (6,); with `batch` an
    (N, 6) array of them), or None when nothing is.  In this order: not numbers or another shape,
    a value that is not a finite number, a value outside [POSE_LOW, POSE_HIGH] by more than
    `tolerance` (out_of_range).  One line naming the first bad value, e.g.
    "left_eye = 1.5 is outside [0, 1]" (batch: "pose 3: left_eye = 1.5 is outside [0, 1]");
    callers put where the pose came from in front of it.
    """
    shape = "an (N, 6) array of poses" if batch else f"{POSE_SIZE} numbers"
    try:
        p = np.asarray(pose)
        if not np.issubdtype(p.dtype, np.floating):
            p = p.astype(np.float64)
    except (TypeError, ValueError):
        return f"a pose must be {shape} ({' '.join(POSE_NAMES)}), got {str(pose)[:80]!r}"
    if p.shape[-1:] != (POSE_SIZE,) or p.ndim != (2 if batch else 1):
        return f"a pose must be {shape} ({' '.join(POSE_NAMES)}), got shape {p.shape}"
    bad = out_of_range(p, tolerance)            # True for NaN and infinities too
    return first_bad_value(p, bad, POSE_NAMES, POSE_LOW, POSE_HIGH, batch)


def first_bad_value(p: np.ndarray, bad: np.ndarray, names, low, high, batch: bool) -> str | None:
    """One line naming the first True of `bad` in the poses `p` (the same shape): "NAME = VALUE is
    outside [LOW, HIGH]" or "... is not a finite number", with "pose K: " in front for a batch;
    None when nothing is bad. The wording of every pose check (this module's and pose schemas')."""
    if not bad.any():
        return None
    where = tuple(int(i) for i in np.argwhere(bad)[0])
    i, value = where[-1], float(p[where])
    prefix = f"pose {where[0]}: " if batch else ""
    if not np.isfinite(value):
        return f"{prefix}{names[i]} = {value} is not a finite number"
    return f"{prefix}{names[i]} = {value:g} is outside [{low[i]:g}, {high[i]:g}]"


def pose_facts() -> dict:
    """The pose facts as JSON (names, low, high, rest, angle_degrees): what the browser pages'
    sliders are built from (served as GET /api/pose)."""
    return {"names": list(POSE_NAMES), "low": POSE_LOW.tolist(), "high": POSE_HIGH.tolist(),
            "rest": REST_POSE.tolist(), "angle_degrees": ANGLE_DEGREES}


#: the pose of the mirror image (flipped left to right) of a character posed with pose p is
#: p[MIRROR_ORDER] * MIRROR_SIGN: the eyes swap (the character's left eye moves to the image's left
#: half) and the turn (head_y) and the tilt (neck_z) change sign; head_x (nodding) stays.
MIRROR_ORDER: tuple[int, ...] = (HEAD_X, HEAD_Y, NECK_Z, RIGHT_EYE, LEFT_EYE, MOUTH)
MIRROR_SIGN = np.array([1.0, -1.0, -1.0, 1.0, 1.0, 1.0], dtype=np.float32)


def mirror_pose(values) -> np.ndarray:
    """The pose (..., 6) that the mirror image of a render with pose `values` shows (see MIRROR_ORDER)."""
    return np.asarray(values)[..., list(MIRROR_ORDER)] * MIRROR_SIGN
