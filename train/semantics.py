"""Where a trained face morpher puts each expression: the centroid of its change per pose value.

For each probe pose (left_eye alone, right_eye alone, mouth alone, each at 1) the change is
|morpher(rest, probe) - morpher(rest, 0)| summed over the RGBA channels and over the given rest
images; its centroid is in image fractions (x from the left edge, y from the top, pixel centres).
A network that ignores its pose has no change and no centroid (NaN). The character's left eye
is on the image's right (the character faces the viewer).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

PROBES = {"left_eye": 0, "right_eye": 1, "mouth": 2}  # index into the morpher's 3 pose values


@dataclass
class ChangeCentroid:
    x: float  # 0 = left edge of the image, 1 = right edge
    y: float  # 0 = top, 1 = bottom
    mass: float  # mean over images of the summed |change| (THA units, all channels)
    right_share: float  # fraction of the change on the image's right half

    def as_dict(self) -> dict:
        return {"x": self.x, "y": self.y, "mass": self.mass, "right_share": self.right_share}


def _centroid(change: torch.Tensor, images: int) -> ChangeCentroid:
    """change (H, W), non-negative, summed over `images` images."""
    h, w = change.shape
    total = float(change.sum())
    if total <= 0.0:
        return ChangeCentroid(math.nan, math.nan, 0.0, math.nan)
    xs = (torch.arange(w, dtype=torch.float64) + 0.5) / w
    ys = (torch.arange(h, dtype=torch.float64) + 0.5) / h
    c = change.double()
    return ChangeCentroid(x=float((c.sum(0) * xs).sum()) / total, y=float((c.sum(1) * ys).sum()) / total,
                          mass=total / images, right_share=float(c[:, w // 2:].sum()) / total)


@torch.inference_mode()
def change_centroids(morpher, rest: torch.Tensor, batch_size: int = 64) -> dict[str, ChangeCentroid]:
    """Centroid of the morpher's change for each probe in PROBES over `rest` (B, 4, H, W), THA convention."""
    device = next(morpher.parameters()).device
    was_training = morpher.training
    morpher.eval()
    sums = {name: torch.zeros(rest.shape[-2:], dtype=torch.float64) for name in PROBES}
    for i in range(0, rest.shape[0], batch_size):
        x = rest[i:i + batch_size].to(device)
        zero = torch.zeros(x.shape[0], 3, device=device)
        base = morpher(x, zero)[0].float()
        for name, k in PROBES.items():
            probe = zero.clone()
            probe[:, k] = 1.0
            sums[name] += (morpher(x, probe)[0].float() - base).abs().sum(dim=(0, 1)).cpu().double()
    morpher.train(was_training)
    return {name: _centroid(s, rest.shape[0]) for name, s in sums.items()}


def semantics_hold(centroids: dict[str, ChangeCentroid]) -> bool:
    """left_eye's change on the image's right half, right_eye's on the left, the mouth's below both eyes."""
    le, re, mo = centroids["left_eye"], centroids["right_eye"], centroids["mouth"]
    if any(math.isnan(c.x) for c in (le, re, mo)):
        return False
    return le.x > 0.5 and re.x < 0.5 and mo.y > max(le.y, re.y)


@torch.inference_mode()
def eye_side_share(morpher, rest: torch.Tensor, batch_size: int = 64) -> float:
    """Fraction of the rest images (B, 4, H, W) on which each eye's change lands on its own side:
    left_eye alone changes mostly the image's right half AND right_eye alone mostly the left half
    (per image, the same probes as change_centroids). An image whose probe changes nothing counts
    as a miss."""
    device = next(morpher.parameters()).device
    was_training = morpher.training
    morpher.eval()
    hits = 0
    for i in range(0, rest.shape[0], batch_size):
        x = rest[i:i + batch_size].to(device)
        zero = torch.zeros(x.shape[0], 3, device=device)
        base = morpher(x, zero)[0].float()
        shares = []
        for k in (PROBES["left_eye"], PROBES["right_eye"]):
            probe = zero.clone()
            probe[:, k] = 1.0
            change = (morpher(x, probe)[0].float() - base).abs().sum(dim=1)       # (B, H, W)
            total = change.sum(dim=(1, 2))
            right = change[:, :, change.shape[-1] // 2:].sum(dim=(1, 2))
            shares.append(torch.where(total > 0, right / total.clamp_min(1e-12), torch.full_like(total, 0.5)))
        hits += int(((shares[0] > 0.5) & (shares[1] < 0.5)).sum())
    morpher.train(was_training)
    return hits / max(rest.shape[0], 1)
