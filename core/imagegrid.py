"""THE image grid, alpha-over-background compositing and labelled contact sheets (numpy uint8;
Pillow only to draw the labels of `contact_sheet`).

Compositing works on straight-alpha RGBA uint8 images in sRGB, as image viewers do:
rgb · a + background · (1 − a) with a = alpha / 255.  A grid places equal-sized
square cells row-major (cell i at column i % columns, row i // columns).  Across,
`pad` pixels sit left of every column and right of the last; down, `top` pixels sit
above the first row (room for a heading), and every row is followed by `gap_below`
pixels (room for a caption) and then `pad` pixels.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def blend_over(rgba: np.ndarray, background) -> np.ndarray:
    """(..., 4) uint8 over an opaque RGB colour -> (..., 3) float32, unrounded."""
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    bg = np.asarray(background, np.float32)
    return rgba[..., :3].astype(np.float32) * a + bg * (1 - a)


def composite_over(rgba: np.ndarray, background) -> np.ndarray:
    """(..., 4) uint8 over an opaque RGB colour -> (..., 3) uint8, rounded half up."""
    return np.clip(blend_over(rgba, background) + 0.5, 0, 255).astype(np.uint8)


def enlarge(img: np.ndarray, zoom: int) -> np.ndarray:
    """(H, W, ...) enlarged `zoom` times in both directions by repeating pixels (nearest)."""
    if zoom == 1:
        return img
    return np.repeat(np.repeat(img, zoom, axis=0), zoom, axis=1)


def cell_origin(index: int, columns: int, size: int, pad: int = 0, gap_below: int = 0,
                top: int = 0) -> tuple[int, int]:
    """(x, y) of the top-left pixel of cell `index` in a grid of `size`-pixel square cells."""
    col, row = index % columns, index // columns
    return pad + col * (size + pad), top + row * (size + gap_below + pad)


def grid_shape(count: int, columns: int, size: int, pad: int = 0, gap_below: int = 0,
               top: int = 0) -> tuple[int, int]:
    """(height, width) of a grid of `count` cells."""
    rows = -(-count // columns)
    return top + rows * (size + gap_below + pad) + pad, columns * size + (columns + 1) * pad


def tile(cells: Sequence[np.ndarray], columns: int, pad: int = 0, gap_below: int = 0, top: int = 0,
         background=0) -> np.ndarray:
    """Equal-shaped (S, S, C) uint8 cells laid out row-major on a canvas filled with `background`
    (a number or a C-tuple); returns the (H, W, C) uint8 canvas."""
    size, channels = cells[0].shape[0], cells[0].shape[2]
    height, width = grid_shape(len(cells), columns, size, pad, gap_below, top)
    canvas = np.empty((height, width, channels), np.uint8)
    canvas[...] = np.asarray(background, np.uint8)
    for i, cell in enumerate(cells):
        x, y = cell_origin(i, columns, size, pad, gap_below, top)
        canvas[y:y + size, x:x + size] = cell
    return canvas


def contact_sheet(images: list[np.ndarray], labels: list[str], columns: int = 4,
                  background=(200, 200, 200)) -> np.ndarray:
    """RGB uint8 grid of RGBA renders composited over `background`, each labelled underneath."""
    from PIL import Image, ImageDraw  # only here: the rest of core needs no Pillow

    s0 = images[0].shape[0]
    zoom = -(-112 // s0) if s0 < 112 else 1  # small renders are enlarged (nearest) so the labels fit
    s = s0 * zoom
    label_h = 16
    cells = [enlarge(composite_over(img, background), zoom) for img in images]
    sheet = Image.fromarray(tile(cells, columns, gap_below=label_h, background=(255, 255, 255)))
    draw = ImageDraw.Draw(sheet)
    for i, label in enumerate(labels):
        x, y = cell_origin(i, columns, s, gap_below=label_h)
        draw.text((x + 3, y + s + 2), label, fill=(0, 0, 0))
    return np.asarray(sheet)
