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
