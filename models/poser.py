"""The full THA1 poser: morpher(pose[3:6]) -> rotator(pose[0:3]) -> combiner(pose[0:3])."""
from __future__ import annotations

import torch
from torch import nn

from .combiner import Combiner
from .morpher import FaceMorpher
from .rotator import TwoAlgoFaceRotator

PATHS = ("combiner", "pumarola", "zhou")


class Poser(nn.Module):
    """image (B, 4, H, W) in [-1, 1] + pose (B, 6) in SPEC order -> (final, morphed, pumarola, zhou).

    `path` picks the final image: "combiner" (needs a combiner; THA1's FU configs),
    "pumarola" (PU) or "zhou" (ZH). Without arguments all three networks are built at
    THA1's defaults (randomly initialised); pass trained modules to use weights.
    """

    def __init__(self, morpher: FaceMorpher | None = None, rotator: TwoAlgoFaceRotator | None = None,
                 combiner: Combiner | None = None, *, path: str | None = None, **arch):
        super().__init__()
        if morpher is None and rotator is None and combiner is None:
            morpher, rotator, combiner = FaceMorpher(**arch), TwoAlgoFaceRotator(**arch), Combiner(**arch)
        if morpher is None or rotator is None:
            raise ValueError("Poser needs a morpher and a rotator")
        path = path or ("combiner" if combiner is not None else "pumarola")
        if path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {path!r}")
        if path == "combiner" and combiner is None:
            raise ValueError("path 'combiner' needs a combiner")
        self.morpher, self.rotator, self.combiner, self.path = morpher, rotator, combiner, path

    def forward(self, image: torch.Tensor, pose: torch.Tensor):
        if pose.dim() != 2 or pose.shape[1] != 6:
            raise ValueError(f"pose must be (B, 6), got {tuple(pose.shape)}")
        rotation, expression = pose[:, 0:3], pose[:, 3:6]
        morphed = self.morpher(image, expression)[0]
        pumarola, zhou = self.rotator(morphed, rotation)[:2]
        if self.path == "combiner":
            final = self.combiner(pumarola, zhou, rotation)[0]
        else:
            final = pumarola if self.path == "pumarola" else zhou
        return final, morphed, pumarola, zhou
