"""THA1's losses: L1, and L1 + perceptual (VGG16 relu1_2 / relu2_2 / relu3_3, on RGB and on alpha).

Scale convention (documented in the README):
  L1(y, t)          = mean over batch, channels and pixels of |y - t|   (THA range [-1, 1])
  perceptual(y, t)  = (1 / (4·S·S)) · Σ_j λ_j · Φ_j(y, t), averaged over the batch, where
    Φ_j            = Σ |VGG_j(rgb(y)) - VGG_j(rgb(t))| + Σ |VGG_j(aaa(y)) - VGG_j(aaa(t))|
                     (sums over the C_j·H_j·W_j feature elements of one example; aaa = alpha
                     copied to 3 channels),
    λ_j            = w · (4·S·S) / (C_j·H_j·W_j), with w = 1/5 (rotator) or 1/25 (combiner),
  i.e. THA1's λ_j with the actual image size S instead of 256, the whole loss divided by the
  4·S·S image elements so that the L1 term is a per-element mean. That makes the perceptual term
  exactly w · Σ_j (mean |ΔVGG_j(rgb)| + mean |ΔVGG_j(alpha)|), independent of S and of batch size.
"""
from __future__ import annotations

import torch
from torch import nn

PERCEPTUAL_WEIGHT = {"rotator": 1.0 / 5.0, "combiner": 1.0 / 25.0}


def l1_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference, computed in float32."""
    return (output.float() - target.float()).abs().mean()


def region_l1_loss(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference over the pixels where `mask` (B, 1, H, W) is set (all channels), float32;
    0 when the mask is empty."""
    d = (output.float() - target.float()).abs() * mask
    return d.sum() / (mask.float().sum() * output.shape[1]).clamp_min(1.0)


def perceptual_lambdas(weight: float, image_size: int) -> dict[str, float]:
    """THA1's λ_j = w·(4·S·S)/(C_j·H_j·W_j) for relu1_2, relu2_2, relu3_3 at image size S."""
    from models.vgg import TAP_CHANNELS, TAP_SCALE

    out = {}
    for name, c in TAP_CHANNELS.items():
        h = image_size // TAP_SCALE[name]
        out[name] = weight * (4 * image_size * image_size) / (c * h * h)
    return out


class PerceptualLoss(nn.Module):
    """The perceptual term alone (add the L1 yourself); `vgg` is a frozen models.vgg.VGG16Features."""

    def __init__(self, vgg: nn.Module, weight: float):
        super().__init__()
        self.vgg = vgg
        self.weight = float(weight)

    def _features(self, img: torch.Tensor) -> list[torch.Tensor]:
        rgb = img[:, 0:3]
        aaa = img[:, 3:4].expand(-1, 3, -1, -1)
        return self.vgg(torch.cat([rgb, aaa], dim=0))

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        b, _, s, s2 = output.shape
        if s != s2:
            raise ValueError("perceptual loss expects square images")
        lambdas = list(perceptual_lambdas(self.weight, s).values())
        fy = self._features(output)
        with torch.no_grad():
            ft = self._features(target)
        total = output.new_zeros((), dtype=torch.float32)
        for lam, a, t in zip(lambdas, fy, ft):
            # Φ_j summed over one example's features (rgb + alpha); batch-averaged
            phi = (a.float() - t.float()).abs().sum() / b
            total = total + lam * phi
        return total / (4 * s * s)
