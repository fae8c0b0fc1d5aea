"""The training-data sampling law of the THA1 pose vector.

The pose vector's names, bounds, rest pose and check belong to core/pose.py.

Sampling (docs/data-format.md, "The pose vector"):
  * eyes and mouth (indices 3, 4, 5): uniform on [0, 1];
  * head values (indices 0, 1, 2): density proportional to |v| on [-1, 1],
    i.e. |v| = sqrt(U) with U uniform on [0, 1] and an independent fair sign.
    Large rotations are therefore as common as THA1 intended (P(|v| > 0.5) = 3/4).
"""
from __future__ import annotations

import numpy as np

from core.pose import POSE_HIGH, POSE_LOW


def sample_poses(rng: np.random.Generator, n: int, one_eye_morphs: bool = True) -> np.ndarray:
    """`n` poses, shape (n, 6) float32, drawn from the SPEC distribution.

    The draws consumed from `rng` are fixed (one (n, 6) uniform block, then one
    (n, 3) block for the head signs) so a given generator state always yields
    the same poses.  With `one_eye_morphs=False` the right eye copies the left
    one (a model without wink morphs only gets poses that are true of its
    images, SPEC.md); the same draws are consumed either way.
    """
    n = int(n)
    if n < 0:
        raise ValueError("n must be >= 0")
    u = rng.random((n, 6))
    signs = rng.random((n, 3)) < 0.5
    poses = np.empty((n, 6), dtype=np.float64)
    head = np.sqrt(u[:, 0:3])
    poses[:, 0:3] = np.where(signs, -head, head)
    poses[:, 3:6] = u[:, 3:6]
    if not one_eye_morphs:
        poses[:, 4] = poses[:, 3]
    return np.clip(poses, POSE_LOW, POSE_HIGH).astype(np.float32)


def head_cdf(v: np.ndarray) -> np.ndarray:
    """CDF of one head component under the sampling law (density |v| on [-1, 1])."""
    v = np.clip(np.asarray(v, dtype=np.float64), -1.0, 1.0)
    return np.where(v < 0, (1.0 - v * v) / 2.0, (1.0 + v * v) / 2.0)


def expected_fractions(component: int, edges: np.ndarray) -> np.ndarray:
    """Fraction of samples the sampling law puts in each bin [edges[i], edges[i+1])."""
    edges = np.asarray(edges, dtype=np.float64)
    if component < 3:
        cdf = head_cdf(edges)
    else:
        cdf = np.clip(edges, 0.0, 1.0)
    return np.diff(cdf)

