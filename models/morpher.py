"""THA1's face morpher: changes eyes and mouth of a rest-pose image (pose[3:6])."""
from __future__ import annotations

import torch
from torch import nn

from .blocks import ArchConfigMixin, EncoderDecoder, conv7, he_init, pose_planes


class AlphaBlendHeads(nn.Module):
    """THA1's "Pumarola" output: change = tanh(conv7), alpha = sigmoid(conv7), one alpha per channel.

    output = alpha * image + (1 - alpha) * change   (alpha -> 1 keeps the input pixel).
    """

    def __init__(self, features: int, channels: int = 4):
        super().__init__()
        self.change = conv7(features, channels)
        self.alpha = conv7(features, channels)

    def forward(self, features: torch.Tensor, image: torch.Tensor):
        change = torch.tanh(self.change(features))
        alpha = torch.sigmoid(self.alpha(features))
        return alpha * image + (1 - alpha) * change, alpha, change


class AlphaBlendNet(ArchConfigMixin, nn.Module):
    """What the morpher and the rotator share: an encoder-decoder over image + 3 pose planes and
    the alpha-blend heads. Subclasses add their own layers, then call he_init(self)."""

    def __init__(self, *, image_size: int = 256, base_channels: int = 64, num_downsample: int = 3,
                 num_res_blocks: int = 6):
        super().__init__()
        self._record(image_size, base_channels, num_downsample, num_res_blocks)
        self.body = EncoderDecoder(4 + 3, image_size, base_channels, num_downsample, num_res_blocks)
        self.heads = AlphaBlendHeads(self.body.out_channels)


class FaceMorpher(AlphaBlendNet):
    """image (B, 4, H, W) in [-1, 1] + pose3 (B, 3) = (left_eye, right_eye, mouth).

    Returns (output, alpha, change), each (B, 4, H, W).
    """

    kind = "morpher"

    def __init__(self, **arch):
        super().__init__(**arch)
        he_init(self)

    def forward(self, image: torch.Tensor, pose: torch.Tensor):
        features = self.body(pose_planes(image, pose))
        return self.heads(features, image)
