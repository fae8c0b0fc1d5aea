"""THE poser chain: morpher(face part) -> rotator(rotation part) -> Pumarola | Zhou | combiner(rotation part).

The pose's parts come from its schema (core.poseschema): THA1's six numbers (no schema) split into
rotation pose[0:3] and face pose[3:6]; a schema's `face` parameters feed the morpher and its `rotation`
ones the rotator and the combiner, in schema order (docs/pose-schemas.md).

One path vocabulary everywhere (inference, ONNX export, evaluation, tests):
  "full"      both rotator outputs merged and retouched by the combiner (needs a combiner)
  "pumarola"  the rotator's Pumarola (appearance-flow) output
  "zhou"      the rotator's Zhou (warp) output
"""
from __future__ import annotations

import torch
from torch import nn

from .combiner import Combiner
from .morpher import FaceMorpher
from .rotator import TwoAlgoFaceRotator

PATHS = ("full", "pumarola", "zhou")


def default_path(has_combiner: bool) -> str:
    """"full" when a combiner is there, else "pumarola"."""
    return "full" if has_combiner else "pumarola"


def final_image(path: str, pumarola: torch.Tensor, zhou: torch.Tensor, rotation: torch.Tensor,
                combiner: nn.Module | None = None) -> torch.Tensor:
    """The image `path` picks from the rotator's two outputs (the combiner runs only for "full")."""
    if path == "pumarola":
        return pumarola
    if path == "zhou":
        return zhou
    return combiner(pumarola, zhou, rotation)[0]


def pose_parts(schema=None) -> tuple[list[int], list[int]]:
    """(face indices, rotation indices) of a pose: THA1's ([3, 4, 5], [0, 1, 2]) without a schema."""
    if schema is None:
        return [3, 4, 5], [0, 1, 2]
    return schema.indices("face"), schema.indices("rotation")


def split_pose(pose: torch.Tensor, schema=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, P) poses -> (face part for the morpher, rotation part for the rotator and combiner)."""
    face, rotation = pose_parts(schema)
    return pose[:, face], pose[:, rotation]


class Poser(nn.Module):
    """image (B, 4, H, W) in [-1, 1] + pose (B, P) -> (final, morphed, pumarola, zhou).

    `schema` (a core.poseschema.PoseSchema; None: THA1's six numbers in SPEC order, P = 6) says which
    pose values feed the morpher and which the rotator and combiner. `path` picks the final image (PATHS); default "full" with a combiner, else "pumarola".
    Without networks all three are built at THA1's defaults (randomly initialised), or with
    the architecture keywords given; pass trained modules to use weights.
    """

    def __init__(self, morpher: FaceMorpher | None = None, rotator: TwoAlgoFaceRotator | None = None,
                 combiner: Combiner | None = None, *, path: str | None = None, schema=None, **arch):
        super().__init__()
        self.schema = schema
        self.face_index, self.rotation_index = pose_parts(schema)
        if morpher is None and rotator is None and combiner is None:
            morpher, rotator, combiner = FaceMorpher(**arch), TwoAlgoFaceRotator(**arch), Combiner(**arch)
        if morpher is None or rotator is None:
            raise ValueError("Poser needs a morpher and a rotator")
        path = path or default_path(combiner is not None)
        if path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {path!r}")
        if path == "full" and combiner is None:
            raise ValueError("path 'full' needs a combiner")
        self.morpher, self.rotator, self.combiner, self.path = morpher, rotator, combiner, path

    def pose_morphed(self, morphed: torch.Tensor, rotation: torch.Tensor):
        """Rotate an already morphed image (B, 4, H, W) by rotation (B, 3) -> (final, pumarola, zhou)."""
        pumarola, zhou = self.rotator(morphed, rotation)[:2]
        return final_image(self.path, pumarola, zhou, rotation, self.combiner), pumarola, zhou

    @property
    def pose_size(self) -> int:
        return len(self.face_index) + len(self.rotation_index)

    def split(self, pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, P) poses -> (face part for the morpher, rotation part for the rotator and combiner)."""
        if pose.dim() != 2 or pose.shape[1] != self.pose_size:
            raise ValueError(f"pose must be (B, {self.pose_size}), got {tuple(pose.shape)}")
        return split_pose(pose, self.schema)

    def forward(self, image: torch.Tensor, pose: torch.Tensor):
        expression, rotation = self.split(pose)
        morphed = self.morpher(image, expression)[0]
        final, pumarola, zhou = self.pose_morphed(morphed, rotation)
        return final, morphed, pumarola, zhou
