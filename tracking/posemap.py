"""Head angles and eye/mouth ratios -> THA pose vectors (SPEC order), with gain, mirror and clamping.

    head_x = gain · up / 15°
    head_y = ∓gain · turn / 15°        (− with mirror, + without)
    neck_z = ∓gain · tilt / 15°        (− with mirror, + without)
    eye    = clip((eye_open − ratio) / (eye_open − eye_closed), 0, 1)       (1 = closed)
    mouth  = clip((ratio − mouth_closed) / (mouth_open − mouth_closed), 0, 1)

Mirror (the default, as THA1's demo): the character moves like the subject's reflection. The
subject's RIGHT eye drives left_eye, the left eye drives right_eye, and a turn or tilt toward the
camera image's left moves the character toward the image's right. Without mirror the character
copies the camera image: the subject's right eye drives right_eye and the character turns the same
way on screen as the subject. Values are clamped to the pose ranges (±15° before gain).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.pose import ANGLE_DEGREES, POSE_HIGH, POSE_LOW

from .errors import TrackError


@dataclass(frozen=True)
class PoseMapping:
    gain: float = 1.0
    mirror: bool = True
    eye_open: float = 0.22       # lid gap / eye width at or above this: eye open (0)
    eye_closed: float = 0.08     # at or below this: closed (1)
    mouth_closed: float = 0.04   # inner-lip gap / mouth width at or below this: closed (0)
    mouth_open: float = 0.45     # at or above this: fully open (1)

    def check(self) -> "PoseMapping":
        if not (np.isfinite(self.gain) and self.gain > 0):
            raise TrackError(f"gain must be a positive number, got {self.gain}")
        if not 0 <= self.eye_closed < self.eye_open:
            raise TrackError(f"eye thresholds: need 0 <= closed < open, got closed {self.eye_closed}, "
                             f"open {self.eye_open}")
        if not 0 <= self.mouth_closed < self.mouth_open:
            raise TrackError(f"mouth thresholds: need 0 <= closed < open, got closed {self.mouth_closed}, "
                             f"open {self.mouth_open}")
        return self


def eye_closure(ratio: np.ndarray, m: PoseMapping) -> np.ndarray:
    return np.clip((m.eye_open - np.asarray(ratio)) / (m.eye_open - m.eye_closed), 0.0, 1.0)


def mouth_openness(ratio: np.ndarray, m: PoseMapping) -> np.ndarray:
    return np.clip((np.asarray(ratio) - m.mouth_closed) / (m.mouth_open - m.mouth_closed), 0.0, 1.0)


def to_poses(angles: np.ndarray, measures: np.ndarray, m: PoseMapping) -> np.ndarray:
    """(N, 3) calibrated angles (up, turn, tilt; degrees) and (N, 3) ratios (subject's right eye,
    left eye, mouth) -> (N, 6) float32 poses, clamped to the pose ranges."""
    angles = np.asarray(angles, np.float64).reshape(-1, 3)
    measures = np.asarray(measures, np.float64).reshape(-1, 3)
    side = -1.0 if m.mirror else 1.0
    poses = np.empty((len(angles), 6), np.float64)
    poses[:, 0] = m.gain * angles[:, 0] / ANGLE_DEGREES
    poses[:, 1] = side * m.gain * angles[:, 1] / ANGLE_DEGREES
    poses[:, 2] = side * m.gain * angles[:, 2] / ANGLE_DEGREES
    right, left = eye_closure(measures[:, 0], m), eye_closure(measures[:, 1], m)
    poses[:, 3] = right if m.mirror else left     # left_eye
    poses[:, 4] = left if m.mirror else right     # right_eye
    poses[:, 5] = mouth_openness(measures[:, 2], m)
    return np.clip(poses, POSE_LOW, POSE_HIGH).astype(np.float32)
