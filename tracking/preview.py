"""What the tracker saw: frames with their landmarks and the resulting pose values, as a contact
sheet (PNG) or an animation (GIF)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import TrackError
from .frames import FrameSource

CELL = 256
SHEET_FRAMES = 12


def pose_label(index: int, pose: np.ndarray, found: bool) -> str:
    x, y, z, le, re, m = (float(v) for v in pose)
    head = f"#{index} x{x:+.2f} y{y:+.2f} z{z:+.2f} L{le:.2f} R{re:.2f} M{m:.2f}"
    return head if found else head + " NO FACE"


def annotate(frame: np.ndarray, landmarks: np.ndarray | None, size: int = CELL) -> np.ndarray:
    """A (size, size, 4) uint8 square crop around the face (the whole frame when there is none),
    landmarks drawn as dots."""
    from PIL import Image, ImageDraw

    h, w = frame.shape[:2]
    if landmarks is not None and np.all(np.isfinite(landmarks)):
        lo, hi = landmarks[:, :2].min(axis=0), landmarks[:, :2].max(axis=0)
        cx, cy = (lo + hi) / 2
        half = max(hi - lo) * 0.8
    else:
        cx, cy, half = w / 2, h / 2, max(w, h) / 2
    box = (int(cx - half), int(cy - half), int(cx + half), int(cy + half))
    crop = Image.fromarray(frame).crop(box).resize((size, size), Image.BILINEAR)
    if landmarks is not None and np.all(np.isfinite(landmarks)):
        draw = ImageDraw.Draw(crop)
        scale = size / (box[2] - box[0])
        for px, py in (landmarks[:, :2] - (box[0], box[1])) * scale:
            draw.point((float(px), float(py)), fill=(0, 255, 0))
    rgba = np.dstack([np.asarray(crop), np.full((size, size), 255, np.uint8)])
    return rgba


def _frames_at(source: FrameSource, indices: set[int]):
    for i, frame in enumerate(source.frames()):
        if i in indices:
            yield i, frame


def write_preview(path: str | Path, source: FrameSource, landmarks: np.ndarray, found: np.ndarray,
                  poses: np.ndarray) -> Path:
    """`.png`: a sheet of up to 12 frames spread over the clip; `.gif`: every frame."""
    from PIL import Image

    from core.imagegrid import contact_sheet

    path = Path(path)
    ext = path.suffix.lower()
    if ext not in (".png", ".gif"):
        raise TrackError(f"{path}: the preview must be a .png sheet or a .gif")
    n = len(found)
    picks = np.unique(np.linspace(0, n - 1, min(n, SHEET_FRAMES)).round().astype(int)) if ext == ".png" \
        else np.arange(n)
    cells, labels = [], []
    for i, frame in _frames_at(source, set(picks.tolist())):
        cells.append(annotate(frame, landmarks[i] if found[i] else None))
        labels.append(pose_label(i, poses[i], bool(found[i])))
    path.parent.mkdir(parents=True, exist_ok=True)
    if ext == ".png":
        Image.fromarray(contact_sheet(cells, labels, columns=4)).save(path)
        return path
    images = [Image.fromarray(contact_sheet([c], [lab], columns=1)) for c, lab in zip(cells, labels)]
    images[0].save(path, save_all=True, append_images=images[1:], loop=0,
                   duration=max(int(round(1000 / source.fps)), 20))
    return path
