"""THA1's two-algorithm face rotator: Pumarola (alpha blend) and Zhou (appearance flow) paths.

Zhou path, the sampling convention (kept identical in training and inference —
this module is the only place it is computed): offsets are produced by a
zero-initialised conv7 (64 -> 2, x then y, in grid_sample's normalised [-1, 1]
units) and added to the identity grid; the image is sampled with
`grid_sample(mode="bilinear", padding_mode="border", align_corners=False)`.
With align_corners=False the identity grid points are pixel centres, so zero
offsets reproduce the input exactly (the later THA versions' choice; THA1 used
align_corners=True). An offset of +2/W in x moves the content one pixel LEFT
(each output pixel reads the pixel to its right).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import conv7, he_init, pose_planes
from .morpher import AlphaBlendNet

ALIGN_CORNERS = False


def identity_grid(batch: int, height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(B, H, W, 2) sampling grid (x, y) at pixel centres, (2k+1)/n - 1, the identity under ALIGN_CORNERS.

    Built from integers (not affine_grid's linspace) so that, for power-of-two sizes, every value
    is exact in float32 and zero offsets reproduce the image bit for bit.
    """
    xs = (torch.arange(width, device=device, dtype=torch.float32) * 2 + 1) / width - 1
    ys = (torch.arange(height, device=device, dtype=torch.float32) * 2 + 1) / height - 1
    grid = torch.stack([xs[None, :].expand(height, width), ys[:, None].expand(height, width)], dim=-1)
    return grid[None].expand(batch, height, width, 2).to(dtype)


def apply_flow(image: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Sample `image` (B, C, H, W) at identity grid + offsets (B, 2, H, W) (x then y, [-1, 1] units)."""
    b, _, h, w = image.shape
    grid = identity_grid(b, h, w, device=image.device, dtype=torch.float32)
    grid = grid + offsets.float().permute(0, 2, 3, 1)
    out = F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="border",
                        align_corners=ALIGN_CORNERS)
    return out.to(image.dtype)


class TwoAlgoFaceRotator(AlphaBlendNet):
    """image (B, 4, H, W) in [-1, 1] (the morphed image) + pose3 (B, 3) = (head_x, head_y, neck_z).

    Returns (pumarola, zhou, offsets, alpha, change):
      pumarola (B, 4, H, W)  alpha * image + (1 - alpha) * change   <- element [0]
      zhou     (B, 4, H, W)  image resampled by the flow
      offsets  (B, 2, H, W)  the flow, x then y, in normalised [-1, 1] grid units
      alpha, change          the Pumarola path's heads
    """

    kind = "rotator"

    def __init__(self, **arch):
        super().__init__(**arch)
        self.flow = conv7(self.body.out_channels, 2)
        he_init(self)
        nn.init.zeros_(self.flow.weight)  # start from the identity flow

    def forward(self, image: torch.Tensor, pose: torch.Tensor):
        features = self.body(pose_planes(image, pose))
        pumarola, alpha, change = self.heads(features, image)
        offsets = self.flow(features)
        zhou = apply_flow(image, offsets)
        return pumarola, zhou, offsets, alpha, change
