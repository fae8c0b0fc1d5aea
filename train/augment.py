"""Training-time augmentation: new characters from the ones rendered, the same change to input and target.

A data set holds few characters (each with a handful of rest images), and a network that has only
seen those learns them rather than what a pose does. Two transforms, each applied to an example's
input and target alike, make characters the data does not have:

  mirror  flip left to right with probability 1/2 and give the mirrored pose
          (core.pose.MIRROR_ORDER / MIRROR_SIGN: the eyes swap, head_y and neck_z change
          sign). The renderer is mirror-symmetric (orthographic camera, light along the view axis),
          so a flipped example is exactly the render of the mirrored character in the mirrored pose.
  colour  a random hue rotation about the grey axis (any angle) times a random gain in [0.7, 1.3],
          on linear RGB in [0, 1], clamped; alpha is left alone and transparent black stays black.

Deterministic: the parameters of global batch at position `seen` (examples seen before it) come from
a generator seeded with (seed, seen), drawn for the whole global batch, and a DDP rank takes its
own chunk, so resuming, and any number of processes, give the same examples.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from core.pose import MIRROR_ORDER, MIRROR_SIGN, POSE_SIZE

from .errors import TrainError

TRANSFORMS = ("mirror", "colour")
GAIN_RANGE = (0.7, 1.3)


def parse_augment(text: str | None) -> tuple[str, ...]:
    """'mirror,colour' -> ('mirror', 'colour'); 'none' or '' -> (); unknown names raise TrainError."""
    if text is None:
        return ()
    names = [t.strip() for t in text.replace("color", "colour").split(",") if t.strip()]
    if names == ["none"]:
        return ()
    bad = [n for n in names if n not in TRANSFORMS]
    if bad:
        raise TrainError(f"--augment: unknown transform {bad[0]!r} (choose from {', '.join(TRANSFORMS)}, "
                         "comma-separated, or none)")
    return tuple(n for n in TRANSFORMS if n in names)


def hue_gain_matrices(angle: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3): gain x the rotation by `angle` (radians) about the grey axis (1, 1, 1) of RGB."""
    c, s = torch.cos(angle), torch.sin(angle)
    k, r = (1.0 - c) / 3.0, s / math.sqrt(3.0)
    m = torch.stack([torch.stack([c + k, k - r, k + r], -1),
                     torch.stack([k + r, c + k, k - r], -1),
                     torch.stack([k - r, k + r, c + k], -1)], -2)
    return m * gain[:, None, None]


class Augment:
    """The augmentation of one run (see the module docstring); `transforms` from parse_augment."""

    def __init__(self, transforms: tuple[str, ...], seed: int):
        self.transforms, self.seed = tuple(transforms), int(seed)

    def __bool__(self) -> bool:
        return bool(self.transforms)

    def params(self, seen: int, global_batch: int, rank: int = 0, world: int = 1) -> dict[str, torch.Tensor]:
        """This rank's chunk of the global batch's parameters: flip (bool), angle, gain (float)."""
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, int(seen)]).generate_state(1)[0]))
        flip = torch.rand(global_batch, generator=g) < 0.5
        angle = (torch.rand(global_batch, generator=g) * 2.0 - 1.0) * math.pi
        lo, hi = GAIN_RANGE
        gain = lo + (hi - lo) * torch.rand(global_batch, generator=g)
        per = global_batch // world
        chunk = slice(rank * per, (rank + 1) * per)
        return {"flip": flip[chunk], "angle": angle[chunk], "gain": gain[chunk]}

    def apply(self, images: list[torch.Tensor], pose: torch.Tensor, pose_slice,
              params: dict[str, torch.Tensor], mirror=None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Transform each (B, 4, H, W) image (THA convention) alike, and the pose (B, P) that holds
        pose[pose_slice] (a slice or a list of indices) of the full vector; `mirror` is a pose
        schema's (size, order, sign) (None: THA1's); returns new tensors."""
        if "mirror" in self.transforms:
            flip = params["flip"].to(pose.device)
            images = [torch.where(flip[:, None, None, None], im.flip(-1), im) for im in images]
            pose = torch.where(flip[:, None], mirrored_pose_part(pose, pose_slice, mirror), pose)
        if "colour" in self.transforms:
            m = hue_gain_matrices(params["angle"], params["gain"]).to(images[0].device)
            images = [recolour(im, m) for im in images]
        return images, pose


def mirrored_pose_part(pose: torch.Tensor, pose_slice, mirror=None) -> torch.Tensor:
    """The mirror of pose[pose_slice] (B, P): a part that holds both eyes or all three head values
    (or, with a pose schema's `mirror` = (size, order, sign), both sides of each of its parameters)."""
    size, mirror_order, mirror_sign = (POSE_SIZE, MIRROR_ORDER, MIRROR_SIGN) if mirror is None else mirror
    full_index = (list(range(size))[pose_slice] if isinstance(pose_slice, slice) else list(pose_slice))
    order = [full_index.index(mirror_order[i]) for i in full_index]
    sign = torch.as_tensor(mirror_sign[full_index], dtype=pose.dtype, device=pose.device)
    return pose[:, order] * sign


def recolour(image: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Apply (B, 3, 3) to the linear RGB of a (B, 4, H, W) THA image, clamped to the valid range.

    The result has the image's memory format (einsum returns NCHW: a channels_last batch is copied
    back, one 4-channel image, so the network's first layers see the layout the device chose)."""
    rgb = (image[:, :3].float() + 1.0) * 0.5
    rgb = torch.einsum("bij,bjhw->bihw", matrices.to(rgb.dtype), rgb).clamp(0.0, 1.0)
    out = torch.cat([rgb * 2.0 - 1.0, image[:, 3:].float()], dim=1).to(image.dtype)
    if image.is_contiguous(memory_format=torch.channels_last) and not image.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)
    return out
