"""THA1's combiner: merges the rotator's two outputs and retouches the result (U-Net)."""
from __future__ import annotations

import torch
from torch import nn

from .blocks import ArchConfigMixin, UNet, conv7, he_init, pose_planes


class Combiner(ArchConfigMixin, nn.Module):
    """pumarola, zhou (B, 4, H, W) in [-1, 1] + pose3 (B, 3) = (head_x, head_y, neck_z).

    Returns (final, combined, m1, m2, retouch):
      combined = m1 * pumarola + (1 - m1) * zhou        m1 = sigmoid(conv7), (B, 4, H, W)
      final    = m2 * combined + (1 - m2) * retouch     m2 = sigmoid(conv7), retouch = tanh(conv7)
    """

    kind = "combiner"

    def __init__(self, *, image_size: int = 256, base_channels: int = 64, num_downsample: int = 3,
                 num_res_blocks: int = 6, pose_size: int = 3):
        super().__init__()
        self._record(image_size, base_channels, num_downsample, num_res_blocks)
        if pose_size != 3:   # a pose schema's rotation inputs (docs/pose-schemas.md)
            self.config["pose_size"] = int(pose_size)
        self.body = UNet(4 + 4 + pose_size, image_size, base_channels, num_downsample, num_res_blocks)
        c = self.body.out_channels
        self.combine_alpha = conv7(c, 4)
        self.retouch_alpha = conv7(c, 4)
        self.retouch = conv7(c, 4)
        he_init(self)

    def forward(self, pumarola: torch.Tensor, zhou: torch.Tensor, pose: torch.Tensor):
        features = self.body(pose_planes(torch.cat([pumarola, zhou], dim=1), pose))
        m1 = torch.sigmoid(self.combine_alpha(features))
        m2 = torch.sigmoid(self.retouch_alpha(features))
        retouch = torch.tanh(self.retouch(features))
        combined = m1 * pumarola + (1 - m1) * zhou
        final = m2 * combined + (1 - m2) * retouch
        return final, combined, m1, m2, retouch
