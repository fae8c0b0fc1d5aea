"""The live puppet's server-side state: the networks, each browser tab's drawing and webcam
calibration, and one face tracker for webcam frames. One instance per server; every method is
safe to call from several threads.

Poses follow the networks' pose schema (`runner.schema`, core.poseschema): a pose is the schema's
P numbers in order, checked by `schema.problem`; what gives THA1's six numbers (motion presets, the
webcam's tracked face) is placed in the schema by `schema.from_tha1`. `slider_groups` says how the
page groups the schema's sliders.

Tabs: the page makes up an id per page load and sends it with every request; a request without
one is the command-line tab "". The last MAX_TABS tabs used keep their state (least recently
used first out); a forgotten tab is told to choose its drawing again.
"""
from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .http import HttpError

MAX_TABS = 32
TAB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# the page's slider groups by name prefix, in this order of preference for a name
GROUP_PREFIXES = (("eyebrow", ("eyebrow_",)), ("eye", ("eye_",)), ("iris", ("iris_",)), ("mouth", ("mouth_",)),
                  ("head", ("head_", "neck_")), ("body & breathing", ("body_", "breathing")))
NO_DRAWING = (f"no drawing chosen in this tab yet (the server keeps the drawings of the last {MAX_TABS} "
              "tabs used): choose or upload one")


@dataclass
class TrackReply:
    face: bool
    pose: list[float] | None = None
    angles: list[float] | None = None      # calibrated (up, turn, tilt), degrees
    track_ms: float = 0.0


@dataclass
class TabState:
    """What one browser tab chose: its checked drawing and its webcam's neutral face."""
    drawing_name: str | None = None
    image: np.ndarray | None = None         # (S, S, 4) uint8, as the networks take it
    calibration: object = None              # tracking.calibration.LiveCalibration, made on first use
    warnings: list[str] = field(default_factory=list)


def slider_groups(schema) -> list[dict]:
    """How the page groups the sliders of `schema`: [{"name": str, "indices": [positions]}], groups in
    order of their first parameter, positions in schema order. THA1's six: one group named "" (the page
    shows it without a heading, as it always did); a schema whose every name starts with one of
    GROUP_PREFIXES (tha3): by prefix; any other schema: one group per `input` kind (face, rotation)."""
    if schema.is_tha1:
        return [{"name": "", "indices": list(range(schema.size))}]
    def prefix_group(name: str) -> str | None:
        return next((g for g, starts in GROUP_PREFIXES if name.startswith(starts)), None)
    keys = [prefix_group(n) for n in schema.names]
    if None in keys:
        keys = [p.input for p in schema.parameters]
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return [{"name": name, "indices": indices} for name, indices in groups.items()]


def check_tab_id(value: str | None) -> str:
    """A tab id as sent by the page ("" when none was sent); HttpError(400) for anything odd."""
    if not value:
        return ""
    if not TAB_ID.fullmatch(value):
        raise HttpError(400, "bad tab id: 1 to 64 letters, digits, '-' or '_'")
    return value


class Puppet:
    """Poses each tab's drawing; tracks webcam frames against the tab's calibrated neutral face."""

    def __init__(self, weights: Path, device: str = "auto", max_tabs: int = MAX_TABS, precision: str = "auto"):
        from inference.runner import PoserRunner
        from inference.weights import half_of, untrained_warning

        self.runner = PoserRunner.from_weights(weights, device=device, batch_size=8, half=half_of(precision))
        self.weights_warning = untrained_warning(self.runner.weight_files, names_only=True)  # None when they look trained
        self.max_tabs = max_tabs
        self._tabs: OrderedDict[str, TabState] = OrderedDict()
        self._tabs_lock = threading.Lock()
        self._net_lock = threading.Lock()
        self._runner_image: np.ndarray | None = None   # the array the runner holds (its morph cache's key)
        self._track_lock = threading.Lock()
        self._tracker = None

    @property
    def image_size(self) -> int:
        return self.runner.image_size

    def tab(self, tab_id: str) -> TabState:
        """The tab's state, made when new; the least recently used tab is forgotten past max_tabs."""
        with self._tabs_lock:
            state = self._tabs.get(tab_id)
            if state is None:
                state = self._tabs[tab_id] = TabState()
                while len(self._tabs) > self.max_tabs:
                    self._tabs.popitem(last=False)
            self._tabs.move_to_end(tab_id)
            return state

    def tab_count(self) -> int:
        with self._tabs_lock:
            return len(self._tabs)

    def set_drawing(self, tab_id: str, name: str, path: Path | None = None, data: bytes | None = None,
                    fit: bool = True) -> list[str]:
        """Check and load a tab's drawing (a file, or uploaded bytes named `name`); returns its
        warnings. A drawing that fails the check leaves the tab's drawing as it was."""
        from inference.drawing import load_input_image
        from inference.errors import ImageInputError

        try:
            img, warnings = load_input_image(path or Path(name), self.image_size, fit=fit, data=data)
        except ImageInputError as e:
            raise HttpError(400, _upload_message(str(e), name)) from None
        state = self.tab(tab_id)
        with self._net_lock:
            state.image, state.drawing_name, state.warnings = img, name, list(warnings)
        return warnings

    def input_png(self, tab_id: str) -> bytes:
        """The tab's drawing as the networks take it (after fitting), as PNG bytes."""
        state = self.tab(tab_id)
        image = state.image
        if image is None:
            raise HttpError(409, NO_DRAWING)
        return _png(image)

    def _run(self, state: TabState, poses: np.ndarray) -> np.ndarray:
        """The networks on the tab's drawing; call with _net_lock held."""
        if state.image is None:
            raise HttpError(409, NO_DRAWING)
        if self._runner_image is not state.image:
            self.runner.set_image(state.image)
            self._runner_image = state.image
        return self.runner.run(poses)

    @property
    def schema(self):
        """The networks' pose schema (core.poseschema.PoseSchema; THA1's when the weights record none)."""
        return self.runner.schema

    def check_pose(self, pose, what: str = "pose") -> np.ndarray:
        """`pose` (the schema's P numbers, in order) as float32; HttpError(400) naming the bad value."""
        problem = self.schema.problem(pose)
        if problem:
            raise HttpError(400, f"{what}: {problem}")
        return np.asarray(pose, np.float32)

    def driven(self) -> list[int]:
        """The schema's positions that THA1's six numbers (presets, the webcam) set (FROM_THA1)."""
        return sorted(self.schema.tha1_positions().values())

    def from_tha1(self, poses6: np.ndarray, base=None) -> np.ndarray:
        """THA1-order poses (N, 6) -> the schema's (N, P) (schema.from_tha1); the positions THA1's numbers
        do not set take `base` (a checked pose of the schema) when given, else their rest values."""
        poses = self.schema.from_tha1(poses6)
        if base is not None:
            driven = set(self.driven())
            still = [i for i in range(self.schema.size) if i not in driven]
            poses[:, still] = self.check_pose(base)[still]
        return poses

    def pose_png(self, tab_id: str, pose) -> tuple[bytes, float]:
        """The tab's drawing posed by `pose` (the schema's P numbers) as PNG bytes, and the networks'
        time in ms."""
        p = self.check_pose(pose)
        state = self.tab(tab_id)
        with self._net_lock:
            t0 = time.perf_counter()
            frame = self._run(state, p[None])[0]
            ms = (time.perf_counter() - t0) * 1000
        return _png(frame), ms

    def animation_gif(self, tab_id: str, poses: np.ndarray, fps: float) -> bytes:
        import tempfile

        from inference.animation import write_animation

        state = self.tab(tab_id)
        with self._net_lock:
            frames = self._run(state, poses)
        with tempfile.TemporaryDirectory() as tmp:
            out = write_animation(frames, Path(tmp) / "puppet.gif", fps=fps)
            return out.read_bytes()

    def track(self, tab_id: str, rgb: np.ndarray, calibrate: bool, mapping) -> TrackReply:
        """One webcam frame -> the pose of the face in it, against the tab's neutral face
        (calibrate: this frame becomes neutral; until then the tab's first face seen is). The pose is
        the schema's (from_tha1: the head, eyes and mouth tracked, the rest at rest)."""
        from tracking.calibration import LiveCalibration
        from tracking.errors import TrackError
        from tracking.facemesh import FaceTracker
        from tracking.geometry import face_measures
        from tracking.posemap import to_poses

        state = self.tab(tab_id)
        with self._track_lock:
            try:
                if self._tracker is None:
                    self._tracker = FaceTracker(video=True)
                t0 = time.perf_counter()
                lm = self._tracker(rgb)
            except TrackError as e:
                raise HttpError(501, str(e)) from None
            ms = (time.perf_counter() - t0) * 1000
            if lm is None:
                return TrackReply(False, track_ms=ms)
            if state.calibration is None:
                state.calibration = LiveCalibration()
            angles = state.calibration.angles(lm, calibrate)
        pose = self.from_tha1(to_poses(angles[None], face_measures(lm)[None], mapping))[0]
        return TrackReply(True, [round(float(v), 5) for v in pose], [round(float(a), 3) for a in angles], ms)


def _png(rgba: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


BYTESIO = r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>"


def _upload_message(message: str, name: str) -> str:
    """Pillow names uploaded bytes by their Python object (<_io.BytesIO object at 0x…>): name
    the upload instead."""
    message = re.sub(r"\(cannot identify image file " + BYTESIO + r"\)", "(not a PNG, WebP or other image "
                     "file; upload a PNG or WebP with a transparent background)", message)
    return re.sub(BYTESIO, repr(name), message)
