"""The neutral pose: which frames show the subject's resting head, and head angles relative to it.

Angles are measured against the subject's own face (no generic face model): every frame's head
rotation is fitted to a reference frame, the neutral rotation is the per-angle median over the
neutral frames, and a frame's calibrated rotation is R_frame · R_neutralᵀ · R_given, where R_given
says how the head is really turned in the neutral frames (`angles`, default straight: 0 0 0).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import TrackError
from .geometry import angles_to_rotation, head_rotation, rotation_to_angles


@dataclass(frozen=True)
class Neutral:
    """frames: "start" (the first second), "clip" (every frame) or a frame index (0-based);
    angles: the head's true (up, turn, tilt) in those frames, degrees."""

    frames: str | int = "start"
    angles: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def parse(cls, text: str, angles=(0.0, 0.0, 0.0)) -> "Neutral":
        t = str(text).strip().lower()
        if t in ("start", "clip"):
            return cls(t, tuple(angles))
        try:
            index = int(t)
        except ValueError:
            raise TrackError(f"--neutral {text!r}: use start, clip or a frame number") from None
        if index < 0:
            raise TrackError(f"--neutral {text!r}: frame numbers start at 0")
        return cls(index, tuple(angles))

    def window(self, n: int, fps: float) -> np.ndarray:
        """Boolean mask of the neutral frames among n."""
        mask = np.zeros(n, bool)
        if self.frames == "clip":
            mask[:] = True
        elif self.frames == "start":
            mask[:max(int(round(fps)), 1)] = True
        elif self.frames >= n:
            raise TrackError(f"--neutral {self.frames}: the clip has {n} frames (0-{n - 1})")
        else:
            mask[self.frames] = True
        return mask


def calibrated_angles(landmarks: np.ndarray, found: np.ndarray, neutral: Neutral, fps: float) -> np.ndarray:
    """(N, 3) head angles (up, turn, tilt; degrees) relative to the neutral pose; NaN where not found."""
    window = neutral.window(len(found), fps) & found
    if not window.any():
        where = "the first second" if neutral.frames == "start" else f"frame {neutral.frames}"
        if neutral.frames == "clip":
            where = "any frame"
        raise TrackError(f"no face in {where}, which --neutral uses to calibrate; pick a frame with a "
                         "face (--neutral N) or --neutral clip")
    ref = landmarks[int(np.argmax(window))]
    raw = np.full((len(found), 3, 3), np.nan)
    raw[found] = head_rotation(ref, landmarks[found])
    rest = angles_to_rotation(np.median(rotation_to_angles(raw[window]), axis=0))
    given = angles_to_rotation(np.asarray(neutral.angles, np.float64))
    out = np.full((len(found), 3), np.nan)
    out[found] = rotation_to_angles(raw[found] @ rest.T @ given)
    return out


class LiveCalibration:
    """Head angles of a live stream against a reference frame that `calibrate` sets (until then:
    the first face seen). One instance per stream."""

    def __init__(self):
        self.reference: np.ndarray | None = None

    def angles(self, landmarks: np.ndarray, calibrate: bool = False) -> np.ndarray:
        if calibrate or self.reference is None:
            self.reference = np.array(landmarks, np.float64)
        return rotation_to_angles(head_rotation(self.reference, landmarks))
