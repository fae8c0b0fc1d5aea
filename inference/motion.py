"""Pose sequences for `thactl animate`: built-in motions and CSV files.

Every motion is an (N, 6) float32 array in SPEC order (head_x, head_y, neck_z, left_eye,
right_eye, mouth). CSV files hold one 6-number row per frame; an optional header row naming
the six columns and lines starting with '#' are allowed. A header may name more columns after the
six (`thactl track` adds `face`); those columns are ignored.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from core.pose import POSE_HIGH, POSE_LOW, POSE_NAMES, REST_POSE, pose_problem

from .errors import MotionError

BUILTIN = ("sweep", "blink", "talk")


def sweep(frames_per_param: int = 24) -> np.ndarray:
    """Each pose parameter in turn, starting and ending at the rest pose.

    Rotations go 0 -> +1 -> 0 -> -1 -> 0; eyes 0 -> 1 (closed) -> 0; the mouth 1 -> 0 -> 1.
    """
    if frames_per_param < 2:
        raise MotionError("sweep needs at least 2 frames per parameter")
    t = np.arange(frames_per_param, dtype=np.float64) / frames_per_param
    wave = np.sin(2 * math.pi * t)           # 0 -> 1 -> 0 -> -1 -> 0
    bump = 0.5 - 0.5 * np.cos(2 * math.pi * t)  # 0 -> 1 -> 0
    out = []
    for i in range(6):
        p = np.tile(REST_POSE, (frames_per_param, 1)).astype(np.float64)
        if i < 3:
            p[:, i] = wave
        elif i < 5:
            p[:, i] = bump
        else:
            p[:, i] = 1.0 - bump
        out.append(p)
    return np.concatenate(out).astype(np.float32)


def _blink_curve(n: int, fps: float, period_s: float = 1.6, blink_s: float = 0.24, first_s: float = 0.5) -> np.ndarray:
    """Eyelid closure per frame: 0 open, a smooth 0->1->0 bump lasting blink_s every period_s."""
    t = np.arange(n) / fps
    phase = (t - first_s) % period_s
    inside = (t >= first_s) & (phase < blink_s)
    return np.where(inside, 0.5 - 0.5 * np.cos(2 * math.pi * phase / blink_s), 0.0)


def blink(seconds: float = 3.0, fps: float = 20.0) -> np.ndarray:
    """Both eyes blink every 1.6 s; head straight; mouth closed."""
    n = max(int(round(seconds * fps)), 2)
    p = np.zeros((n, 6), np.float64)
    e = _blink_curve(n, fps)
    p[:, 3] = e
    p[:, 4] = e
    return p.astype(np.float32)


def talk(seconds: float = 3.0, fps: float = 20.0) -> np.ndarray:
    """Mouth opening and closing in syllable-like beats, a slight nod and sway, blinks."""
    n = max(int(round(seconds * fps)), 2)
    t = np.arange(n) / fps
    p = np.zeros((n, 6), np.float64)
    syll = np.abs(np.sin(2 * math.pi * 2.3 * t)) * (0.55 + 0.45 * np.abs(np.sin(2 * math.pi * 0.37 * t + 0.5)))
    pause = (t % 2.0) > 1.6  # a short pause every two seconds
    p[:, 5] = np.where(pause, 0.0, syll)
    p[:, 0] = 0.25 * np.sin(2 * math.pi * 0.5 * t)
    p[:, 1] = 0.3 * np.sin(2 * math.pi * 0.21 * t)
    p[:, 2] = 0.15 * np.sin(2 * math.pi * 0.33 * t + 1.0)
    e = _blink_curve(n, fps, period_s=2.2, first_s=0.8)
    p[:, 3] = e
    p[:, 4] = e
    return p.astype(np.float32)


def read_csv(path: str | Path) -> np.ndarray:
    """Poses from a CSV file: one row of 6 numbers per frame (ranges checked) -> (N, 6) float32."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise MotionError(f"{path}: motion file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise MotionError(f"{path}: cannot read motion file ({e})") from None
    rows: list[list[float]] = []
    width = 6
    for lineno, cells in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [c.strip() for c in cells]
        if not cells or all(c == "" for c in cells) or cells[0].startswith("#"):
            continue
        if not rows and [c.lower() for c in cells[:6]] == list(POSE_NAMES):
            width = len(cells)
            continue  # header, maybe with extra columns
        if len(cells) != width:
            what = "6 numbers" if width == 6 else f"{width} columns, as in the header"
            raise MotionError(f"{path}: line {lineno}: expected {what} ({', '.join(POSE_NAMES)}), "
                              f"got {len(cells)} columns")
        cells = cells[:6]
        try:
            values = [float(c) for c in cells]
        except ValueError:
            raise MotionError(f"{path}: line {lineno}: not a number in {','.join(cells)!r}") from None
        problem = pose_problem(np.array(values, np.float32))
        if problem:
            raise MotionError(f"{path}: line {lineno}: {problem}")
        rows.append(values)
    if not rows:
        raise MotionError(f"{path}: no pose rows (expected one row of 6 numbers per frame)")
    return np.clip(np.array(rows, np.float32), POSE_LOW, POSE_HIGH)


def write_csv(path: str | Path, poses: np.ndarray) -> Path:
    """Write (N, 6) poses with a header row; read_csv reads it back."""
    path = Path(path)
    poses = np.asarray(poses, np.float32).reshape(-1, 6)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(POSE_NAMES)
        for row in poses:
            w.writerow([f"{x:.6g}" for x in row])
    return path


def get_motion(spec: str, fps: float = 20.0, seconds: float | None = None) -> np.ndarray:
    """'sweep' | 'blink' | 'talk' | path to a CSV file -> (N, 6) float32 poses."""
    if spec == "sweep":
        per = max(int(round(fps * (seconds / 6 if seconds else 1.2))), 2)
        return sweep(per)
    if spec == "blink":
        return blink(seconds or 3.0, fps)
    if spec == "talk":
        return talk(seconds or 4.0, fps)
    p = Path(spec)
    if p.suffix.lower() == ".csv" or p.exists():
        return read_csv(p)
    raise MotionError(f"unknown motion {spec!r}: use sweep, blink, talk or a .csv file of poses")
