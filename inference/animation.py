"""Animation frames -> GIF (looping, optionally 1-bit transparent) or MP4 (H.264 through imageio-ffmpeg)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core.imagegrid import blend_over

from .errors import InferenceError


def composite(frames: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """(N, S, S, 4) uint8 over an opaque colour -> (N, S, S, 3) uint8 (in sRGB, as viewers do)."""
    return np.clip(np.rint(blend_over(frames, background)), 0, 255).astype(np.uint8)


def parse_color(text: str) -> tuple[int, int, int] | None:
    """'white', 'black', '#rrggbb', 'r,g,b' or 'transparent' (-> None)."""
    names = {"white": (255, 255, 255), "black": (0, 0, 0), "gray": (128, 128, 128), "grey": (128, 128, 128),
             "green": (0, 255, 0)}
    t = text.strip().lower()
    if t in ("transparent", "none"):
        return None
    if t in names:
        return names[t]
    try:
        if t.startswith("#") and len(t) == 7:
            return tuple(int(t[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
        parts = [int(x) for x in t.split(",")]
        if len(parts) == 3 and all(0 <= x <= 255 for x in parts):
            return tuple(parts)  # type: ignore[return-value]
    except ValueError:
        pass
    raise InferenceError(f"bad colour {text!r}: use white, black, #rrggbb, r,g,b or transparent")


def _gif_transparent(frames: np.ndarray) -> list:
    """RGBA frames -> palette images with index 255 transparent (alpha < 128 -> transparent)."""
    from PIL import Image

    out = []
    for f in frames:
        rgb = Image.fromarray(np.ascontiguousarray(f[..., :3]), "RGB")
        pal = rgb.quantize(colors=255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        idx = np.asarray(pal).copy()
        idx[f[..., 3] < 128] = 255
        p = Image.fromarray(idx, "P")
        palette = pal.getpalette()[: 255 * 3]
        p.putpalette(palette + [0, 0, 0] * (256 - len(palette) // 3))
        p.info["transparency"] = 255
        out.append(p)
    return out


def write_animation(frames: np.ndarray, path: str | Path, fps: float = 20.0,
                    background: tuple[int, int, int] | None = (255, 255, 255)) -> Path:
    """Write (N, S, S, 4) uint8 frames as .gif (looping) or .mp4 (needs imageio-ffmpeg).

    GIF: composited over `background`; background None keeps 1-bit transparency.
    MP4: always composited (white when background is None); H.264 needs even sizes (ours are).
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in (".gif", ".mp4"):
        raise InferenceError(f"{path}: output must end in .gif or .mp4")
    if len(frames) == 0:
        raise InferenceError("no frames to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    if ext == ".gif":
        duration_ms = max(int(round(1000.0 / fps)), 20)
        if background is None:
            imgs = _gif_transparent(frames)
            imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=duration_ms, loop=0,
                         disposal=2, transparency=255, optimize=False)
        else:
            from PIL import Image

            rgb = composite(frames, background)
            imgs = [Image.fromarray(f, "RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                                        dither=Image.Dither.NONE) for f in rgb]
            imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=duration_ms, loop=0,
                         optimize=False)
        return path
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        raise InferenceError(f"{path}: writing .mp4 needs ffmpeg through the imageio-ffmpeg package "
                         "(pip install imageio-ffmpeg), or write a .gif instead") from None
    import imageio.v2 as iio

    rgb = composite(frames, background or (255, 255, 255))
    with iio.get_writer(path, format="FFMPEG", mode="I", fps=fps, codec="libx264",
                        pixelformat="yuv420p", macro_block_size=2) as w:
        for f in rgb:
            w.append_data(f)
    return path

