"""Texture files of MMD models: finding them, reading them, and built-in toon ramps.

MMD models were made on Windows, so texture names in the files come with
backslashes, any letter case, and Shift-JIS names that archive tools often
turn into mojibake on the way to another system. `resolve_texture` finds the
file anyway; it never leaves the model's folder (absolute paths, drive letters
and `..` escaping the folder are refused, i.e. treated as missing).

`load_image` reads whatever Pillow reads (BMP, PNG, TGA, JPG, DDS, and
.sph/.spa sphere maps, which are BMPs inside) into an (H, W, 4) uint8 RGBA
array, top row first (MMD's v = 0 is the top of the image). The image's size
is read from its header before anything is decoded: a texture of more than
MAX_TEXTURE_PIXELS (8192 x 8192) pixels, or one Pillow calls a decompression
bomb, is a one-line RenderError naming the file, and the model is rejected
(a hostile or broken header must not cost gigabytes; the 379 textures of the
shared test models are at most 1024 px a side).

`builtin_toon(i)` is the project's own stand-in for MMD's shared
`toon{i+1:02d}.bmp` ramps (MMD's files cannot ship): a 32x32 vertical ramp,
lit at the top, shadow at the bottom, as MMD samples them.

`TextureSet` loads the textures of one model once, caches them by resolved
path and logs ONE warning per model listing everything that was missing or
unreadable (those materials fall back to their material colour).
"""
from __future__ import annotations

import logging
import os
import re
import unicodedata
from functools import lru_cache
from pathlib import Path, PurePosixPath

import numpy as np

from renderer.errors import RenderError

log = logging.getLogger("thactl.renderer")

# Largest texture side we upload; bigger images are reduced (a 256 px render
# never needs more, and it bounds memory on pathological files).
MAX_TEXTURE_SIDE = 2048

_DRIVE = re.compile(r"^[A-Za-z]:")
_SHARED_TOON_NAME = re.compile(r"^toon(\d\d)\.bmp$", re.IGNORECASE)


def _split_relative(name: str) -> list[str] | None:
    """Path components of a texture name relative to the model folder, or None if it escapes."""
    s = name.replace("\\", "/").strip().strip("\x00")
    if not s or s.startswith("/") or _DRIVE.match(s):
        return None
    parts: list[str] = []
    for p in PurePosixPath(s).parts:
        if p in ("", "."):
            continue
        if p == "..":
            if not parts:
                return None
            parts.pop()
            continue
        parts.append(p)
    return parts or None


@lru_cache(maxsize=4096)
def _variants(component: str) -> frozenset[str]:
    """Keys under which a name may appear on disk: case-folded, NFKC, and the usual
    Shift-JIS mojibake (cp932 bytes read as cp437 / latin-1 / raw undecodable bytes)."""
    out = {component}
    try:
        raw = component.encode("cp932")
    except UnicodeEncodeError:
        raw = None
    if raw is not None:
        for enc in ("cp437", "latin-1"):
            out.add(raw.decode(enc))
        out.add(os.fsdecode(raw))
    # the other direction: the model holds mojibake, the disk holds real Japanese
    for enc in ("cp437", "latin-1"):
        try:
            out.add(component.encode(enc).decode("cp932"))
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    try:
        out.add(os.fsencode(component).decode("cp932"))
    except (UnicodeEncodeError, UnicodeDecodeError):
        pass
    return frozenset(_key(v) for v in out)


def _key(s: str) -> str:
    return unicodedata.normalize("NFKC", s).casefold()


def _listdir(folder: str) -> tuple[str, ...]:
    try:
        return tuple(os.listdir(folder))
    except OSError:
        return ()


def resolve_texture(model_dir: str | os.PathLike, name: str | None) -> Path | None:
    """The file that texture `name` (as written in the model) refers to, or None.

    Tries the exact path first, then a case-insensitive / encoding-tolerant
    match of every path component. Never returns a path outside `model_dir`.
    """
    if not name:
        return None
    parts = _split_relative(name)
    if parts is None:
        return None
    base = Path(model_dir)
    exact = base.joinpath(*parts)
    if exact.is_file():
        return exact if _inside(base, exact) else None
    cur = base
    for i, comp in enumerate(parts):
        want = _variants(comp)
        entries = _listdir(str(cur))
        found = None
        for e in entries:
            if e == comp or _key(e) in want or (_variants(e) & want):
                cand = cur / e
                if (i == len(parts) - 1 and cand.is_file()) or (i < len(parts) - 1 and cand.is_dir()):
                    found = cand
                    break
        if found is None:
            return None
        cur = found
    return cur if _inside(base, cur) else None


def _inside(base: Path, path: Path) -> bool:
    """True when `path`, symlinks resolved, lies inside `base` (symlinks resolved too).

    Refuses texture files (or folders on the way) that are symlinks pointing out of the
    model's folder; a model folder that is itself a symlink is fine.
    """
    try:
        real_base = os.path.realpath(base)
        real = os.path.realpath(path)
        return os.path.commonpath([real_base, real]) == real_base
    except (OSError, ValueError):
        return False


def load_image(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 4) uint8 RGBA, top row first. Raises OSError/ValueError when unreadable, RenderError
    when over the size cap (see the module doc)."""
    from PIL import Image

    try:
        im = Image.open(path)               # reads the header only
    except Image.DecompressionBombError as e:
        raise RenderError(f"{path}: texture refused before decoding ({e})") from None
    with im:
        _check_texture_size(path, im.size)
        im.load()
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")
        elif im.mode != "RGBA":
            im = im.convert("RGBA")
        if max(im.size) > MAX_TEXTURE_SIDE:
            scale = MAX_TEXTURE_SIDE / max(im.size)
            im = im.resize((max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale))),
                           Image.Resampling.BOX)
        arr = np.asarray(im, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 4 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{path}: unexpected image shape {arr.shape}")
    return np.ascontiguousarray(arr)


# Images with more pixels than this are refused before decoding (a corrupt or hostile
# header must not make one texture cost gigabytes); what Pillow reads is then capped too.
MAX_TEXTURE_PIXELS = 8192 * 8192


def _check_texture_size(path, size) -> None:
    """RenderError (the model is rejected) for an empty image or one over MAX_TEXTURE_PIXELS."""
    w, h = (int(v) for v in size)
    if w <= 0 or h <= 0 or w * h > MAX_TEXTURE_PIXELS:
        raise RenderError(f"{path}: texture of {w}x{h} pixels refused before decoding "
                          f"(empty, or over the cap of {MAX_TEXTURE_PIXELS} = 8192x8192 pixels)")


# Built-in toon ramps: (shadow colour, where the shadow starts (0..1 from the top), softness).
# Our own choice of gentle anime shades; index i stands for MMD's toon{i+1:02d}.bmp.
_TOON_RAMPS = [
    ((0.80, 0.80, 0.80), 0.55, 0.08),   # toon01: neutral grey shadow
    ((0.70, 0.70, 0.72), 0.55, 0.05),   # toon02: darker neutral (clothes, hair)
    ((0.55, 0.55, 0.58), 0.55, 0.05),   # toon03: dark (black parts)
    ((0.94, 0.82, 0.78), 0.55, 0.10),   # toon04: warm skin shadow
    ((0.86, 0.86, 0.90), 0.60, 0.12),   # toon05: light cool
    ((0.75, 0.72, 0.78), 0.50, 0.15),   # toon06: soft violet-grey
    ((0.90, 0.90, 0.90), 0.60, 0.20),   # toon07
    ((0.85, 0.80, 0.80), 0.60, 0.20),   # toon08
    ((0.80, 0.85, 0.85), 0.60, 0.20),   # toon09
    ((0.95, 0.95, 0.95), 0.60, 0.20),   # toon10
]


@lru_cache(maxsize=16)
def builtin_toon(index: int | None) -> np.ndarray:
    """(32, 32, 4) uint8 ramp standing in for MMD's shared toon{index+1:02d}.bmp.

    None or an index outside 0..9 gives plain white (no toon shading).
    """
    img = np.full((32, 32, 4), 255, np.uint8)
    if index is None or not 0 <= index < len(_TOON_RAMPS):
        return img
    shadow, start, soft = _TOON_RAMPS[index]
    v = (np.arange(32) + 0.5) / 32.0
    t = np.clip((v - start) / max(soft, 1e-3) + 0.5, 0.0, 1.0)      # 0 lit .. 1 shadow
    col = 1.0 + t[:, None] * (np.asarray(shadow)[None, :] - 1.0)
    img[:, :, :3] = np.round(col * 255.0).astype(np.uint8)[:, None, :]
    return img


def shared_toon_index(name: str | None) -> int | None:
    """0..9 when `name` is one of MMD's shared toon file names (toon01..toon10.bmp)."""
    if not name:
        return None
    m = _SHARED_TOON_NAME.match(name.replace("\\", "/").rsplit("/", 1)[-1])
    if not m:
        return None
    i = int(m.group(1)) - 1
    return i if 0 <= i <= 9 else None


class TextureSet:
    """Loads a model's textures once; remembers what was missing; warns once per model."""

    def __init__(self, model_dir: str | os.PathLike, model_name: str = ""):
        self.model_dir = Path(model_dir)
        self.model_name = model_name or str(model_dir)
        self._cache: dict[str, np.ndarray | None] = {}
        self.missing: list[str] = []
        self._warned = False

    def get(self, name: str | None) -> np.ndarray | None:
        """RGBA array for texture `name`, or None (missing/unreadable, recorded)."""
        if not name:
            return None
        if name in self._cache:
            return self._cache[name]
        arr = None
        path = resolve_texture(self.model_dir, name)
        if path is None:
            why = "refused (outside the model folder)" if _split_relative(name) is None else "not found"
            self.missing.append(f"{name} ({why})")
        else:
            try:
                arr = load_image(path)
            except RenderError:     # over the size cap: the model is rejected, not rendered without it
                raise
            except Exception as e:  # Pillow raises many types for bad files
                self.missing.append(f"{name} (unreadable: {type(e).__name__})")
                arr = None
        self._cache[name] = arr
        return arr

    def toon(self, name: str | None, shared_index: int | None) -> np.ndarray:
        """Toon ramp: the model's own file if present, otherwise a built-in ramp.

        A missing file named like MMD's shared toons (toon01.bmp ...) silently maps to
        the built-in ramp (that is what MMD does: it falls back to its Data folder).
        """
        if shared_index is not None:
            return builtin_toon(shared_index)
        if not name:
            return builtin_toon(None)
        idx = shared_toon_index(name)
        if idx is not None:
            path = resolve_texture(self.model_dir, name)
            if path is None:
                return builtin_toon(idx)
        arr = self.get(name)
        return arr if arr is not None else builtin_toon(idx)

    def warn_once(self) -> None:
        """Log one warning naming every missing/unreadable texture (no-op when none)."""
        if self.missing and not self._warned:
            self._warned = True
            shown = ", ".join(self.missing[:8]) + (f" and {len(self.missing) - 8} more" if len(self.missing) > 8 else "")
            log.warning("%s: %d texture(s) missing or unreadable, using material colours: %s",
                        self.model_name, len(self.missing), shown)
