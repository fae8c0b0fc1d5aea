"""Tiny randomly initialised networks saved as thactl weight files, for tests that run the poser
(no trained weights exist in the repository)."""
from __future__ import annotations

from pathlib import Path

import torch

S = 32
TINY = dict(image_size=S, base_channels=4, num_downsample=3, num_res_blocks=1)


def write_tiny_weights(folder: Path, seed: int, flow_std: float | None = None) -> Path:
    """morpher/rotator/combiner.safetensors of TINY size in `folder`, initialised from `seed`;
    `flow_std` re-draws the rotator's flow weights (a visible Zhou flow). Returns `folder`."""
    from models import Combiner, FaceMorpher, TwoAlgoFaceRotator
    from models.io import save_weights

    torch.manual_seed(seed)
    rotator = TwoAlgoFaceRotator(**TINY)
    if flow_std is not None:
        torch.nn.init.normal_(rotator.flow.weight, std=flow_std)
    for net in (FaceMorpher(**TINY), rotator, Combiner(**TINY)):
        save_weights(net, folder / f"{net.kind}.safetensors")
    return folder


def write_disc_drawing(path: Path, size: int) -> Path:
    """An RGBA PNG of `size` px: a skin-coloured disc of half the image's width on transparency (an
    input drawing for pose / animate tests)."""
    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[0:size, 0:size]
    img = np.zeros((size, size, 4), np.uint8)
    img[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2] = (230, 180, 160, 255)
    Image.fromarray(img, "RGBA").save(path)
    return path
