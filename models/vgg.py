"""VGG16 features up to relu3_3, built in code (no torchvision), for THA1's perceptual loss.

Layer indices match torchvision's `vgg16().features`, so a torchvision-style
state_dict (`features.N.weight` / `features.N.bias`, .pth or .safetensors)
loads directly: relu1_2 = features[3], relu2_2 = features[8], relu3_3 = features[15].

Input convention: images in the THA convention ([-1, 1], linear RGB) are mapped to
[0, 1] and normalised with ImageNet's mean/std before the network.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# (out_channels or "M" for max-pool) for features[0..15], torchvision's numbering
_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256]
TAPS = {3: "relu1_2", 8: "relu2_2", 15: "relu3_3"}
TAP_CHANNELS = {"relu1_2": 64, "relu2_2": 128, "relu3_3": 256}
TAP_SCALE = {"relu1_2": 1, "relu2_2": 2, "relu3_3": 4}  # downsampling factor of each tap
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGWeightsError(ValueError):
    """The VGG16 weight file is missing or not a VGG16 state_dict (message names the file)."""


class VGG16Features(nn.Module):
    """`forward(x)` with x (B, 3, H, W) in [-1, 1] -> [relu1_2, relu2_2, relu3_3] feature maps."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in _CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=False)]
                cin = v
        self.features = nn.Sequential(*layers)
        assert len(self.features) == 16
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x + 1) * 0.5 - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in TAPS:
                out.append(x)
        return out


def load_vgg16_features(path: str | Path | None, *, random_init: bool = False, seed: int = 0) -> VGG16Features:
    """VGG16 features with weights from `path` (frozen, eval mode).

    `path` may be a torchvision vgg16 state_dict (.pth/.pt, keys `features.N.weight`, extra keys
    such as the classifier are ignored) or a .safetensors file with the same keys. With
    `random_init=True` and no path the weights are random (for tests of the mechanics only).
    """
    net = VGG16Features()
    if path is None:
        if not random_init:
            raise VGGWeightsError("the perceptual loss needs VGG16 ImageNet weights: pass --vgg-weights FILE "
                                  "(a torchvision vgg16 state_dict .pth or .safetensors)")
        g = torch.Generator().manual_seed(seed)
        for m in net.features:
            if isinstance(m, nn.Conv2d):
                with torch.no_grad():
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / (9 * m.in_channels)) ** 0.5)
                    m.bias.zero_()
    else:
        p = Path(path)
        if not p.is_file():
            raise VGGWeightsError(f"{p}: VGG16 weight file not found")
        try:
            if p.suffix == ".safetensors":
                from safetensors.torch import load_file
                state = load_file(str(p))
            else:
                state = torch.load(str(p), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file is a user error
            raise VGGWeightsError(f"{p}: cannot read VGG16 weights ({type(e).__name__}: {e})") from None
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise VGGWeightsError(f"{p}: not a state_dict")
        wanted = net.state_dict()
        sub = {}
        for k in wanted:
            for cand in (k, "module." + k):
                if cand in state:
                    sub[k] = state[cand]
                    break
            else:
                raise VGGWeightsError(f"{p}: not a VGG16 state_dict (no '{k}')")
            if tuple(sub[k].shape) != tuple(wanted[k].shape):
                raise VGGWeightsError(f"{p}: '{k}' has shape {tuple(sub[k].shape)}, VGG16 has {tuple(wanted[k].shape)}")
        net.load_state_dict({k: v.float() for k, v in sub.items()})
    net.eval()
    for prm in net.parameters():
        prm.requires_grad_(False)
    return net
