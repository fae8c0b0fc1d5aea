"""Motion transfer (`thactl animate --video`): the posed character beside the source video."""
from __future__ import annotations

import numpy as np

from .frames import FrameSource


def side_by_side(source: FrameSource, character: np.ndarray) -> np.ndarray:
    """(N, S, S, 4) character frames -> (N, S, W + S, 4): each source frame scaled to height S
    (width W even, as H.264 needs), opaque, on the left of its character frame."""
    from PIL import Image

    n, s = character.shape[:2]
    out = None
    for i, frame in enumerate(source.frames()):
        if i >= n:
            break
        h, w = frame.shape[:2]
        width = max(2, int(round(w * s / h / 2)) * 2)
        if out is None:
            out = np.zeros((n, s, width + s, 4), np.uint8)
            out[:, :, :width, 3] = 255
        out[i, :, :width, :3] = np.asarray(Image.fromarray(frame).resize((width, s), Image.BILINEAR))
        out[i, :, width:] = character[i]
    return out
