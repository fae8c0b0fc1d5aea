"""THA1's two-algorithm face rotator: Pumarola (alpha blend) and Zhou (appearance flow) paths.

Zhou path: offsets are produced by a zero-initialised conv7 (64 -> 2, x then y, in
grid_sample's normalised [-1, 1] units), added to an identity grid, and the image is sampled
with `grid_sample(mode="bilinear", padding_mode="border")`. Two sampling conventions exist;
a rotator records its own in its config (`grid_convention`), so it is always run the way it was
trained (this module is the only place either is computed):

* "thactl" (thactl's default): align_corners=False, identity grid at pixel centres
  (2k+1)/n - 1. An offset of 2/W moves the content one pixel; zero offsets reproduce the input
  bit for bit.
* "tha1" (THA1's released networks): align_corners=True, identity grid linspace(-1, 1, n)
  (the values of `affine_grid(identity, align_corners=True)`). An offset of 2/(W-1) moves the
  content one pixel.

In both, a positive x offset moves the content LEFT (each output pixel reads a pixel to its right).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import conv7, he_init, pose_planes
from .morpher import AlphaBlendNet

GRID_CONVENTIONS = ("thactl", "tha1")
DEFAULT_GRID_CONVENTION = "thactl"


def check_grid_convention(name: str) -> str:
    if name not in GRID_CONVENTIONS:
        raise ValueError(f"grid_convention must be one of {', '.join(GRID_CONVENTIONS)}, got {name!r}")
    return name


def _axis(n: int, convention: str, device) -> torch.Tensor:
    if convention == "tha1":
        return torch.linspace(-1.0, 1.0, n, device=device, dtype=torch.float32)
    # from integers (not linspace) so that, for power-of-two sizes, every value is exact in float32
    return (torch.arange(n, device=device, dtype=torch.float32) * 2 + 1) / n - 1


def identity_grid(batch: int, height: int, width: int, device=None, dtype=torch.float32,
                  convention: str = DEFAULT_GRID_CONVENTION) -> torch.Tensor:
    """(B, H, W, 2) sampling grid (x, y) that grid_sample maps to the input under `convention`."""
    check_grid_convention(convention)
    xs, ys = _axis(width, convention, device), _axis(height, convention, device)
    grid = torch.stack([xs[None, :].expand(height, width), ys[:, None].expand(height, width)], dim=-1)
    return grid[None].expand(batch, height, width, 2).to(dtype)


def apply_flow(image: torch.Tensor, offsets: torch.Tensor,
               convention: str = DEFAULT_GRID_CONVENTION) -> torch.Tensor:
    """Sample `image` (B, C, H, W) at identity grid + offsets (B, 2, H, W) (x then y, [-1, 1] units)."""
    b, _, h, w = image.shape
    grid = identity_grid(b, h, w, device=image.device, dtype=torch.float32, convention=convention)
    grid = grid + offsets.float().permute(0, 2, 3, 1)
    out = F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="border",
                        align_corners=(convention == "tha1"))
    out = out.to(image.dtype)
    if image.is_contiguous(memory_format=torch.channels_last) and not image.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)  # grid_sample returns NCHW; a 4-channel copy
    return out


class TwoAlgoFaceRotator(AlphaBlendNet):
    """image (B, 4, H, W) in [-1, 1] (the morphed image) + pose3 (B, 3) = (head_x, head_y, neck_z).

    `grid_convention`: "thactl" (default) or "tha1", see the module docstring; kept in `config`.
    Returns (pumarola, zhou, offsets, alpha, change):
      pumarola (B, 4, H, W)  alpha * image + (1 - alpha) * change   <- element [0]
      zhou     (B, 4, H, W)  image resampled by the flow
      offsets  (B, 2, H, W)  the flow, x then y, in normalised [-1, 1] grid units
      alpha, change          the Pumarola path's heads
    """

    kind = "rotator"

    def __init__(self, *, grid_convention: str = DEFAULT_GRID_CONVENTION, **arch):
        super().__init__(**arch)
        self.grid_convention = check_grid_convention(grid_convention)
        self.config["grid_convention"] = grid_convention
        self.flow = conv7(self.body.out_channels, 2)
        he_init(self)
        nn.init.zeros_(self.flow.weight)  # start from the identity flow

    def forward(self, image: torch.Tensor, pose: torch.Tensor):
        features = self.body(pose_planes(image, pose))
        pumarola, alpha, change = self.heads(features, image)
        offsets = self.flow(features)
        zhou = apply_flow(image, offsets, self.grid_convention)
        return pumarola, zhou, offsets, alpha, change
