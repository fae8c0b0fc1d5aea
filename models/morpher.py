"""THA1's face morpher: changes eyes and mouth of a rest-pose image (pose[3:6])."""
from __future__ import annotations

import torch
from torch import nn

from .blocks import ArchConfigMixin, EncoderDecoder, UNet, conv7, he_init, pose_planes


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
    """What the morpher and the rotator share: an encoder-decoder (or, with `unet`, a U-Net) over
    image + 3 pose planes and the alpha-blend heads. Subclasses add their own layers, then call
    he_init(self)."""

    def __init__(self, *, image_size: int = 256, base_channels: int = 64, num_downsample: int = 3,
                 num_res_blocks: int = 6, norm_pose_dim: int = 0, unet: bool = False, pose_size: int = 3):
        super().__init__()
        self._record(image_size, base_channels, num_downsample, num_res_blocks)
        if pose_size != 3:   # a pose schema's input (docs/pose-schemas.md); THA1's configs stay as they were
            self.config["pose_size"] = int(pose_size)
        body = UNet if unet else EncoderDecoder
        self.body = body(4 + pose_size, image_size, base_channels, num_downsample, num_res_blocks, pose_dim=norm_pose_dim)
        self.heads = AlphaBlendHeads(self.body.out_channels)


class FaceMorpher(AlphaBlendNet):
    """image (B, 4, H, W) in [-1, 1] + pose3 (B, 3) = (left_eye, right_eye, mouth).

    Returns (output, alpha, change), each (B, 4, H, W).

    Three options beyond THA1 (the defaults, False, 1.0 and False, are THA1's exact network):
      pose_film        every InstanceNorm of the encoder-decoder becomes a PoseNorm (the pose also
                       scales and shifts the normalised features), besides the pose planes at the input;
      head_init_scale  the He-initialised weights of the two output heads are multiplied by this,
                       so the alpha starts at 0.5 (logits near 0) instead of spread over (0, 1);
      unet             the body is the combiner's U-Net (each decoder level also sees the encoder's
                       features of its resolution) instead of the plain encoder-decoder.
    All are constructor keywords, recorded in `config` and so in the weights' metadata.
    """

    kind = "morpher"

    def __init__(self, *, pose_film: bool = False, head_init_scale: float = 1.0, unet: bool = False, **arch):
        super().__init__(norm_pose_dim=arch.get("pose_size", 3) if pose_film else 0, unet=unet, **arch)
        self.config.update(pose_film=bool(pose_film), head_init_scale=float(head_init_scale), unet=bool(unet))
        he_init(self)
        if head_init_scale != 1.0:
            with torch.no_grad():
                self.heads.alpha.weight.mul_(head_init_scale)
                self.heads.change.weight.mul_(head_init_scale)

    def forward(self, image: torch.Tensor, pose: torch.Tensor):
        film_pose = pose if self.config["pose_film"] else None
        features = self.body(pose_planes(image, pose), film_pose)
        return self.heads(features, image)
