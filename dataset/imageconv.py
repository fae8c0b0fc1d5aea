"""RGBA uint8 images <-> tensors in the THA1 network convention (numpy + torch only).

THA1 convention: RGBA, not premultiplied; RGB converted sRGB -> linear, then every
channel (alpha too) mapped from [0, 1] to [-1, 1]; channels first.  Transparent
pixels carry RGB 0 (linear 0 -> -1): non-zero colour under alpha 0 is the most
common cause of bad results, so both directions zero RGB where alpha is 0.

The forward direction uses a 256-entry lookup table (exact, and fast enough for
the data loader: a 256x256 image converts in well under a millisecond).
"""
from __future__ import annotations

import numpy as np
import torch


def _namespace(x):
    """torch for tensors, numpy for everything else (arrays, lists, scalars: computed in float64)."""
    if isinstance(x, torch.Tensor):
        return torch, x
    return np, np.asarray(x, dtype=np.float64)


def srgb_to_linear(x):
    """sRGB-encoded values -> linear light (IEC 61966-2-1), inputs clamped to [0, 1].

    The one sRGB decoding curve: numpy arrays (float64) or torch tensors (their own dtype/device).
    """
    xp, x = _namespace(x)
    x = xp.clip(x, 0.0, 1.0)
    return xp.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x):
    """Linear light -> sRGB-encoded values (IEC 61966-2-1), inputs clamped to [0, 1]; numpy or torch."""
    xp, x = _namespace(x)
    x = xp.clip(x, 0.0, 1.0)
    return xp.where(x <= 0.0031308, x * 12.92, 1.055 * xp.clip(x, 1e-12, None) ** (1.0 / 2.4) - 0.055)


_LEVELS = np.arange(256, dtype=np.float64) / 255.0
#: uint8 code -> network value, for RGB (through sRGB decoding) and for alpha
_LUT_RGB = (srgb_to_linear(_LEVELS) * 2.0 - 1.0).astype(np.float32)
_LUT_ALPHA = (_LEVELS * 2.0 - 1.0).astype(np.float32)
_LUT4 = np.concatenate([_LUT_RGB, _LUT_RGB, _LUT_RGB, _LUT_ALPHA])
_OFFSETS = np.array([0, 256, 512, 768], dtype=np.int16).reshape(4, 1, 1)


def uint8_to_numpy(img: np.ndarray) -> np.ndarray:
    """Like uint8_to_tensor, but returns a float32 numpy array (..., 4, S, S)."""
    a = np.asarray(img)
    if a.dtype != np.uint8 or a.ndim < 3 or a.shape[-1] != 4:
        raise ValueError(f"expected a uint8 RGBA image (..., S, S, 4), got {a.dtype} {a.shape}")
    # channels first, as int16 indices into one 4x256 table (RGB rows, then the alpha row)
    idx = np.ascontiguousarray(np.moveaxis(a, -1, -3)).astype(np.int16)  # (..., 4, S, S)
    rgb = idx[..., :3, :, :]
    np.multiply(rgb, idx[..., 3:4, :, :] != 0, out=rgb)  # RGB 0 where alpha is 0
    idx += _OFFSETS
    return np.take(_LUT4, idx)


def uint8_to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 RGBA (..., S, S, 4) -> float32 tensor (..., 4, S, S) in the THA1 convention."""
    return torch.from_numpy(uint8_to_numpy(img))


def tensor_to_uint8(t: torch.Tensor | np.ndarray) -> np.ndarray:
    """Inverse of uint8_to_tensor: (..., 4, S, S) in [-1, 1] -> uint8 numpy (..., S, S, 4).

    Values are clamped to [-1, 1]; RGB is linear -> sRGB encoded and rounded;
    RGB is zeroed wherever the resulting alpha is 0.
    """
    if isinstance(t, torch.Tensor):
        a = t.detach().to("cpu", torch.float32).numpy()
    else:
        a = np.asarray(t, dtype=np.float32)
    if a.ndim < 3 or a.shape[-3] != 4:
        raise ValueError(f"expected a (..., 4, S, S) RGBA tensor, got shape {a.shape}")
    x = (np.clip(a, -1.0, 1.0) + 1.0) * 0.5
    x = np.moveaxis(x, -3, -1)                       # (..., S, S, 4)
    out = np.empty(x.shape, dtype=np.uint8)
    out[..., :3] = np.rint(linear_to_srgb(x[..., :3]) * 255.0).astype(np.uint8)
    out[..., 3] = np.rint(x[..., 3] * 255.0).astype(np.uint8)
    out[..., :3][out[..., 3] == 0] = 0
    return out
