"""Real face photos that ship inside installed packages, and clips made from them with exact
ground truth, for the tracking tests (no download).

* scikit-image's astronaut (Eileen Collins, NASA, public domain): frontal, eyes open, lips parted;
* matplotlib's grace_hopper.jpg (U.S. Navy, public domain): frontal, mouth closed. matplotlib comes
  with MediaPipe (the [track] extra).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

GREY = (128, 128, 128)
CANVAS = (640, 480)


def astronaut_face() -> np.ndarray:
    """The astronaut's head and shoulders, 256×256 RGB."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[0:256, 96:352])


def grace_hopper() -> np.ndarray:
    cbook = pytest.importorskip("matplotlib.cbook", reason="matplotlib (installed with the [track] extra)")
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as im:
        return np.asarray(im.convert("RGB"))


def rolled_frame(face: np.ndarray, degrees: float, canvas=CANVAS, scale: float = 1.5) -> np.ndarray:
    """`face` turned counter-clockwise by `degrees` in the image plane (the top of the head moves
    toward the image's left), scaled, centred on a flat grey canvas (no mirrored border: that would
    make extra faces)."""
    img = Image.fromarray(face).rotate(degrees, resample=Image.BICUBIC, fillcolor=GREY)
    img = img.resize((int(face.shape[1] * scale), int(face.shape[0] * scale)), Image.BICUBIC)
    out = Image.new("RGB", canvas, GREY)
    out.paste(img, ((canvas[0] - img.width) // 2, (canvas[1] - img.height) // 2))
    return np.asarray(out)


def blank_frame(canvas=CANVAS) -> np.ndarray:
    return np.full((canvas[1], canvas[0], 3), GREY, np.uint8)


def write_mp4(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    import imageio.v3 as iio

    pytest.importorskip("imageio_ffmpeg", reason="MP4 needs imageio-ffmpeg (the [track] extra)")
    iio.imwrite(path, np.stack(frames), fps=fps, codec="libx264", macro_block_size=16)
    return path


def turned_frame(face: np.ndarray, turn_left: float = 0.0, up: float = 0.0, canvas=CANVAS,
                 radius: float = 150.0) -> np.ndarray:
    """`face` painted onto the front of an ellipsoid and seen from the front (orthographic),
    after turning the ellipsoid so its front moves toward the image's left by `turn_left` degrees
    (about the vertical axis) and toward the image's top by `up` degrees (about the horizontal
    axis). A ray cast in numpy: each pixel's ray is turned back into the ellipsoid's frame, hit,
    and the hit point's (x, y) picks the photo pixel (the photo is projected straight onto the
    front)."""
    w, h = canvas
    a, b, c = radius, radius * 1.25, radius * 0.9           # half-width, half-height, depth
    t, p = math.radians(turn_left), math.radians(up)
    # columns: where the ellipsoid's axes go; y up, z toward the camera
    turn = np.array([[math.cos(t), 0, -math.sin(t)], [0, 1, 0], [math.sin(t), 0, math.cos(t)]])
    tilt = np.array([[1, 0, 0], [0, math.cos(p), math.sin(p)], [0, -math.sin(p), math.cos(p)]])
    rot = turn @ tilt                                       # front (0, 0, 1) -> (-sin t, .., ..)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    origin = np.stack([xs - w / 2, h / 2 - ys, np.full_like(xs, 1e4)], -1) @ rot      # rot.T applied
    direction = np.array([0.0, 0.0, -1.0]) @ rot
    inv = np.array([1 / a, 1 / b, 1 / c]) ** 2
    qa = np.sum(direction ** 2 * inv)
    qb = 2 * np.sum(origin * direction * inv, -1)
    qc = np.sum(origin ** 2 * inv, -1) - 1
    disc = qb ** 2 - 4 * qa * qc
    hit = disc >= 0
    s = (-qb - np.sqrt(np.where(hit, disc, 0))) / (2 * qa)
    point = origin + s[..., None] * direction
    fh, fw = face.shape[:2]
    u = np.clip((point[..., 0] / a * 0.5 + 0.5) * (fw - 1), 0, fw - 1).round().astype(int)
    v = np.clip((0.5 - point[..., 1] / b * 0.5) * (fh - 1), 0, fh - 1).round().astype(int)
    out = np.empty((h, w, 3), np.uint8)
    out[:] = GREY
    out[hit] = face[v[hit], u[hit]]
    return out
