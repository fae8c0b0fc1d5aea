"""`thactl track`: frames -> landmarks -> calibrated, smoothed THA poses, and the poses CSV.

A frame without a face keeps the last pose (before the first face: the first face's) and is
marked face = 0 in the CSV; a clip without any face is an error.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.pose import POSE_NAMES

from .calibration import Neutral, calibrated_angles
from .errors import TrackError
from .facemesh import FaceTracker
from .frames import FrameSource
from .geometry import face_measures, face_size
from .posemap import PoseMapping, to_poses
from .smoothing import forward_backward, hold_last

N_LANDMARKS = 478
MIN_FACE_PIXELS = 60    # forehead to chin; smaller faces track poorly (a warning, not an error)
FACE_COLUMN = "face"


@dataclass
class Tracked:
    """Landmarks of every frame: (N, 478, 3) float32 in pixels, NaN where `found` is False."""

    path: Path
    fps: float
    landmarks: np.ndarray
    found: np.ndarray


@dataclass
class TrackedPoses:
    poses: np.ndarray       # (N, 6) float32, SPEC order
    angles: np.ndarray      # (N, 3) calibrated (up, turn, tilt) degrees, filled and smoothed
    measures: np.ndarray    # (N, 3) (right eye, left eye, mouth) ratios, filled and smoothed
    found: np.ndarray       # (N,) bool
    warnings: list[str] = field(default_factory=list)


def track_frames(source: FrameSource, tracker: FaceTracker | None = None, progress=None) -> Tracked:
    """Run the face tracker on every frame of `source`; `progress(1)` after each frame."""
    own = tracker is None
    tracker = tracker or FaceTracker(video=source.images is None or len(source.images) > 1)
    rows, found = [], []
    try:
        for frame in source.frames():
            lm = tracker(frame)
            found.append(lm is not None)
            rows.append(lm if lm is not None else np.full((N_LANDMARKS, 3), np.nan, np.float32))
            if progress is not None:
                progress(1)
    finally:
        if own:
            tracker.close()
    if not rows:
        raise TrackError(f"{source.path}: no frames")
    return Tracked(source.path, source.fps, np.stack(rows), np.array(found))


def poses_from_tracked(tracked: Tracked, mapping: PoseMapping = PoseMapping(),
                       neutral: Neutral = Neutral(), smooth_seconds: float = 0.05) -> TrackedPoses:
    """Calibrate, fill the frames without a face, smooth forward-backward, map to poses."""
    found = tracked.found
    if not found.any():
        raise TrackError(f"{tracked.path}: no face found in any of its {len(found)} frames")
    angles = calibrated_angles(tracked.landmarks, found, neutral, tracked.fps)
    measures = np.full((len(found), 3), np.nan)
    measures[found] = face_measures(tracked.landmarks[found])
    signals = hold_last(np.concatenate([angles, measures], axis=1), found)
    signals = forward_backward(signals, tracked.fps, smooth_seconds)
    poses = to_poses(signals[:, :3], signals[:, 3:], mapping.check())
    return TrackedPoses(poses, signals[:, :3], signals[:, 3:], found, _warnings(tracked))


def _warnings(tracked: Tracked) -> list[str]:
    out = []
    sizes = face_size(tracked.landmarks[tracked.found])
    small = int(np.sum(sizes < MIN_FACE_PIXELS))
    if small:
        out.append(f"the face is under {MIN_FACE_PIXELS} px (forehead to chin) in {small} frames: "
                   "tracking gets unreliable; use a closer or larger video")
    return out


def summary(tracked: Tracked, result: TrackedPoses) -> str:
    n, missing = len(result.found), np.flatnonzero(~result.found)
    text = f"tracked {n} frames at {tracked.fps:g} frames/s: face found in {n - len(missing)}"
    if len(missing):
        shown = ", ".join(str(i) for i in missing[:10]) + (", ..." if len(missing) > 10 else "")
        text += f"; no face in {len(missing)} (frames {shown}): the last pose is held there"
    return text


def poses_csv_text(poses: np.ndarray, found: np.ndarray) -> str:
    """The CSV `thactl animate --motion` reads: a header, six pose values and `face` (1/0) per row."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(POSE_NAMES) + [FACE_COLUMN])
    for row, ok in zip(np.asarray(poses, np.float32), found):
        w.writerow([f"{x:.6g}" for x in row] + [int(ok)])
    return buf.getvalue()
