"""Input drawings: read, check what THA needs (size, alpha channel, clean transparent pixels, head
roughly in the middle box), fit to a square on request; write RGBA PNGs."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import ImageInputError

def fit_to_square(img: np.ndarray, size: int) -> np.ndarray:
    """Pad (H, W, 4) uint8 with transparent pixels to a centred square, then resize to size x size.

    Pillow resizes RGBA with premultiplied alpha, so no dark fringes appear at the edges.
    """
    from PIL import Image

    h, w = img.shape[:2]
    side = max(h, w)
    canvas = np.zeros((side, side, 4), np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    canvas[top:top + h, left:left + w] = img
    if side != size:
        canvas = np.asarray(Image.fromarray(canvas, "RGBA").resize((size, size), Image.LANCZOS))
    return np.ascontiguousarray(canvas)


def clean_transparent(img: np.ndarray) -> tuple[np.ndarray, int]:
    """Zero the RGB of pixels whose alpha is 0; returns (image, number of pixels changed)."""
    bad = (img[..., 3] == 0) & np.any(img[..., :3] != 0, axis=-1)
    n = int(bad.sum())
    if n:
        img = img.copy()
        img[bad, :3] = 0
    return img, n


def placement_warnings(img: np.ndarray) -> list[str]:
    """Heuristic check that the head sits in the middle box (rows/cols S/4..3S/4, THA's layout).

    Warns when less than a third of the alpha mass lies in the middle box, or when the
    alpha-weighted centre is more than S/8 off the vertical centre line.
    """
    s = img.shape[0]
    a = img[..., 3].astype(np.float64)
    total = a.sum()
    if total == 0:
        return []
    q = s // 4
    inside = a[q:s - q, q:s - q].sum() / total
    cols = np.arange(img.shape[1], dtype=np.float64) + 0.5
    cx = float((a.sum(axis=0) * cols).sum() / total)
    out = []
    if inside < 1 / 3:
        out.append(f"only {inside:.0%} of the character lies in the middle {s // 2}x{s // 2} box; THA expects "
                   f"the head (chin to top of skull) in rows {q}-{s - q - 1}, centred: results may be poor")
    if abs(cx - s / 2) > s / 8:
        out.append(f"the character's centre is at column {cx:.0f}, far from the middle ({s // 2}); "
                   "centre the head horizontally")
    return out


def check_image(img: np.ndarray, size: int, name: str = "image", fit: bool = False,
                has_alpha: bool = True) -> tuple[np.ndarray, list[str]]:
    """Validate/fix an (H, W, 4) uint8 image for networks of `size`; returns (image, warnings)."""
    if not has_alpha:
        raise ImageInputError(f"{name}: no alpha channel; THA needs an RGBA image whose background is "
                              "transparent (alpha 0)")
    if img.ndim != 3 or img.shape[2] != 4:
        raise ImageInputError(f"{name}: expected an RGBA image, got array shape {img.shape}")
    h, w = img.shape[:2]
    warnings: list[str] = []
    if (h, w) != (size, size) and not fit:
        raise ImageInputError(f"{name}: image is {w}x{h}, the networks take {size}x{size}; "
                              "pass --fit to pad it to a square and resize it")
    if not np.any(img[..., 3]):
        raise ImageInputError(f"{name}: the image is fully transparent (alpha 0 everywhere)")
    img, n = clean_transparent(img)
    if n:
        warnings.append(f"{n} fully transparent pixels had non-zero RGB; set them to 0 (THA needs RGB 0 "
                        "under alpha 0: the commonest cause of bad results)")
    if (h, w) != (size, size):
        img = fit_to_square(img, size)
        img = clean_transparent(img)[0]  # resampling can leave colour under alpha 0 at the edges
        warnings.append(f"fitted {w}x{h} to {size}x{size} (padded to a square, centred, resized)")
        if not np.any(img[..., 3]):
            raise ImageInputError(f"{name}: nothing left visible after resizing to {size}x{size}")
    warnings += placement_warnings(img)
    return img, warnings


def load_input_image(path: str | Path, size: int, fit: bool = False,
                     data: bytes | None = None) -> tuple[np.ndarray, list[str]]:
    """Read a PNG (or any Pillow format) as checked (size, size, 4) uint8 sRGB + warnings.
    With `data` (an uploaded file's bytes) those bytes are read and `path` only names them."""
    import io

    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path if data is None else io.BytesIO(data)) as im:
            im.load()
            mode = im.mode
            has_alpha = mode in ("RGBA", "LA", "RGBa", "La", "PA") or (
                mode == "P" and "transparency" in im.info) or (
                mode in ("RGB", "L") and "transparency" in im.info)
            arr = np.asarray(im.convert("RGBA")) if has_alpha else None
    except FileNotFoundError:
        raise ImageInputError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ImageInputError(f"{path}: not a readable image ({e})") from None
    if not has_alpha:
        raise ImageInputError(f"{path}: no alpha channel (mode {mode}); THA needs an RGBA PNG whose "
                              "background is transparent")
    return check_image(arr, size, name=str(path), fit=fit, has_alpha=True)


def save_rgba_png(img: np.ndarray, path: str | Path) -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(img), "RGBA").save(path)
    return path

