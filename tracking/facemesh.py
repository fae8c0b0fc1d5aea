"""The face tracker: MediaPipe FaceMesh (478 landmarks, refined eyes and lips), offline.

The models ship inside the `mediapipe` 0.10.14 wheel (Apache-2.0), installed by
`pip install -e ".[track]"`; nothing is downloaded at run time.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import warnings

import numpy as np

from core.errors import first_line

from .errors import TrackError

INSTALL_HINT = 'face tracking needs MediaPipe with its FaceMesh models: pip install -e ".[track]"'


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence what MediaPipe's C++ code writes to file descriptor 2 while it starts (TFLite and
    absl banners, on every run); Python's own sys.stderr is untouched."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _face_mesh_module():
    os.environ.setdefault("GLOG_minloglevel", "2")       # MediaPipe's C++ start-up chatter
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", message=r"SymbolDatabase\.GetPrototype\(\) is deprecated")
    try:
        from mediapipe.python.solutions import face_mesh
    except ImportError:
        raise TrackError(INSTALL_HINT) from None
    return face_mesh


class FaceTracker:
    """One face per frame -> (478, 3) float32 landmarks in pixels (x right, y down, z away; z has
    x's scale), or None when no face is found. `video=True` tracks from frame to frame (faster,
    for consecutive frames; a frame where tracking loses the face is tried once more with a fresh
    detection); False detects afresh in every image. Thread-safe (one call at a time).
    """

    def __init__(self, video: bool = True, min_confidence: float = 0.5):
        face_mesh = _face_mesh_module()
        try:
            with _quiet_native_stderr():
                self._mesh = face_mesh.FaceMesh(static_image_mode=not video, max_num_faces=1,
                                                refine_landmarks=True,
                                                min_detection_confidence=min_confidence,
                                                min_tracking_confidence=min_confidence)
                # the graph opens its models in worker threads, which print as they go: one blank
                # frame waits for them (and finds no face, so no tracking state is left behind)
                self._mesh.process(np.zeros((64, 64, 3), np.uint8))
        except (RuntimeError, FileNotFoundError, ValueError) as e:
            raise TrackError(f"the FaceMesh model could not be loaded ({first_line(e)}); "
                             f"{INSTALL_HINT}") from None
        self._lock = threading.Lock()
        self.video = video

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise TrackError(f"a frame must be (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
        rgb = np.ascontiguousarray(rgb)
        with self._lock:
            result = self._mesh.process(rgb)
            if self.video and not result.multi_face_landmarks:
                # tracking lost the face (a jump, a cut): the graph detects afresh on its next input
                result = self._mesh.process(rgb)
        if not result.multi_face_landmarks:
            return None
        h, w = rgb.shape[:2]
        pts = np.array([(p.x, p.y, p.z) for p in result.multi_face_landmarks[0].landmark], np.float32)
        return pts * np.array([w, h, w], np.float32)

    def close(self) -> None:
        with self._lock, _quiet_native_stderr():
            self._mesh.close()

    def __enter__(self) -> "FaceTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
