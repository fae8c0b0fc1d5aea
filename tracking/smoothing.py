"""Filling frames without a face and smoothing per-frame signals without lag."""
from __future__ import annotations

import math

import numpy as np


def hold_last(values: np.ndarray, found: np.ndarray) -> np.ndarray:
    """(N, K) values where `found` is False replaced by the last found frame's (before the first
    found frame: the first found frame's). Needs at least one found frame."""
    found = np.asarray(found, bool)
    idx = np.where(found, np.arange(len(found)), -1)
    idx = np.maximum.accumulate(idx)
    idx[idx < 0] = int(np.argmax(found))
    return np.asarray(values)[idx]


def forward_backward(values: np.ndarray, fps: float, seconds: float) -> np.ndarray:
    """Zero-lag smoothing of (N, K) values: a one-pole low-pass with time constant `seconds` run
    forward, then backward over the result (so a step is blurred symmetrically, never delayed).
    `seconds` <= 0 returns the values unchanged."""
    x = np.asarray(values, np.float64)
    if seconds <= 0 or len(x) < 2:
        return x.copy()
    a = 1.0 - math.exp(-1.0 / (fps * seconds))
    y = x.copy()
    for i in range(1, len(y)):
        y[i] = y[i - 1] + a * (y[i] - y[i - 1])
    for i in range(len(y) - 2, -1, -1):
        y[i] = y[i + 1] + a * (y[i] - y[i + 1])
    return y
