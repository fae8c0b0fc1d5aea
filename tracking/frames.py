"""Frames to track: a video (any format imageio reads; MP4 and most others through imageio-ffmpeg)
or a folder of images (sorted by name). Frames are (H, W, 3) uint8 RGB."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from core.errors import first_line

from .errors import TrackError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class FrameSource:
    """Where frames come from and at what rate; iterate with `frames()`."""

    path: Path
    fps: float
    images: list[Path] | None = None    # a folder's image files, in order; None for a video

    def frames(self) -> Iterator[np.ndarray]:
        if self.images is not None:
            for p in self.images:
                yield _read_image(p)
            return
        import imageio.v3 as iio

        try:
            for frame in iio.imiter(self.path):
                yield _to_rgb(frame, self.path)
        except (OSError, ValueError, RuntimeError, IndexError) as e:
            raise TrackError(f"{self.path}: cannot read the video ({first_line(e)})") from None


def open_frames(path: str | Path, fps: float | None = None) -> FrameSource:
    """A video file or an image folder; `fps` overrides the video's own rate (folders: default 20)."""
    path = Path(path)
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not images:
            raise TrackError(f"{path}: no images in the folder ({', '.join(IMAGE_SUFFIXES)})")
        return FrameSource(path, fps or 20.0, images)
    if not path.is_file():
        raise TrackError(f"{path}: no such video file or image folder")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return FrameSource(path, fps or 20.0, [path])
    return FrameSource(path, fps or _video_fps(path))


def _video_fps(path: Path) -> float:
    import imageio.v3 as iio

    try:
        meta = iio.immeta(path)
    except (OSError, ValueError, RuntimeError, IndexError) as e:
        raise TrackError(f"{path}: not a readable video ({first_line(e)})") from None
    fps = meta.get("fps") or (1000.0 / meta["duration"] if meta.get("duration") else None)
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        fps = 0.0
    return fps if np.isfinite(fps) and fps > 0 else 20.0


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise TrackError(f"{path}: not a readable image ({first_line(e)})") from None


def _to_rgb(frame: np.ndarray, path: Path) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise TrackError(f"{path}: frames of shape {frame.shape} are not images")
    if frame.dtype != np.uint8:
        raise TrackError(f"{path}: frames of type {frame.dtype}; expected 8-bit colour")
    return np.ascontiguousarray(frame[..., :3])
