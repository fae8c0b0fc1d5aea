"""The live puppet's server-side state: the networks, the current drawing, and a face tracker for
webcam frames. One instance per server; every method is safe to call from several threads."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .http import HttpError


@dataclass
class TrackReply:
    face: bool
    pose: list[float] | None = None
    angles: list[float] | None = None      # calibrated (up, turn, tilt), degrees
    track_ms: float = 0.0


class Puppet:
    """Poses the current drawing; tracks webcam frames against the calibrated neutral face."""

    def __init__(self, weights: Path, device: str = "auto"):
        from inference.runner import PoserRunner

        self.runner = PoserRunner.from_weights(weights, device=device, batch_size=8)
        self.drawing_name: str | None = None
        self._net_lock = threading.Lock()
        self._track_lock = threading.Lock()
        self._tracker = None
        self._calibration = None

    @property
    def image_size(self) -> int:
        return self.runner.image_size

    def set_drawing(self, name: str, path: Path | None = None, data: bytes | None = None,
                    fit: bool = True) -> list[str]:
        """Check and load a drawing (a file, or uploaded bytes named `name`); returns its warnings."""
        from inference.drawing import load_input_image
        from inference.errors import ImageInputError

        try:
            img, warnings = load_input_image(path or Path(name), self.image_size, fit=fit, data=data)
        except ImageInputError as e:
            raise HttpError(400, str(e)) from None
        with self._net_lock:
            self.runner.set_image(img)
            self.drawing_name = name
        return warnings

    def pose_png(self, pose) -> tuple[bytes, float]:
        """The drawing posed by `pose` (6 numbers) as PNG bytes, and the networks' time in ms."""
        import io

        from PIL import Image

        from core.pose import pose_problem

        problem = pose_problem(pose)
        if problem:
            raise HttpError(400, f"pose: {problem}")
        p = np.asarray(pose, np.float32)
        with self._net_lock:
            if self.drawing_name is None:
                raise HttpError(409, "no drawing chosen yet")
            t0 = time.perf_counter()
            frame = self.runner.run(p[None])[0]
            ms = (time.perf_counter() - t0) * 1000
        buf = io.BytesIO()
        Image.fromarray(frame, "RGBA").save(buf, format="PNG", compress_level=1)
        return buf.getvalue(), ms

    def animation_gif(self, poses: np.ndarray, fps: float) -> bytes:
        from inference.animation import write_animation

        with self._net_lock:
            if self.drawing_name is None:
                raise HttpError(409, "no drawing chosen yet")
            frames = self.runner.run(poses)
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            out = write_animation(frames, Path(tmp) / "puppet.gif", fps=fps)
            return out.read_bytes()

    def track(self, rgb: np.ndarray, calibrate: bool, mapping) -> TrackReply:
        """One webcam frame -> the pose of the face in it (calibrate: this frame becomes neutral)."""
        from tracking.calibration import LiveCalibration
        from tracking.errors import TrackError
        from tracking.facemesh import FaceTracker
        from tracking.geometry import face_measures
        from tracking.posemap import to_poses

        with self._track_lock:
            try:
                if self._tracker is None:
                    self._tracker, self._calibration = FaceTracker(video=True), LiveCalibration()
                t0 = time.perf_counter()
                lm = self._tracker(rgb)
            except TrackError as e:
                raise HttpError(501, str(e)) from None
            ms = (time.perf_counter() - t0) * 1000
            if lm is None:
                return TrackReply(False, track_ms=ms)
            angles = self._calibration.angles(lm, calibrate)
        pose = to_poses(angles[None], face_measures(lm)[None], mapping)[0]
        return TrackReply(True, [round(float(v), 5) for v in pose], [round(float(a), 3) for a in angles], ms)

