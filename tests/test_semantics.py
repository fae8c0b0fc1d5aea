"""train.semantics: change centroids of a morpher on constructed networks with known behaviour."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from models import FaceMorpher
from train.semantics import change_centroids, semantics_hold


class BoxMorpher(nn.Module):
    """Darkens a fixed box per pose value: the morpher contract (image, pose3) -> (output, ...)."""

    def __init__(self, boxes: dict[int, tuple[int, int, int, int]], ignore_pose: bool = False):
        super().__init__()
        self.boxes, self.ignore_pose = boxes, ignore_pose
        self.anchor = nn.Parameter(torch.zeros(()))  # change_centroids asks for a device

    def forward(self, image, pose):
        if self.ignore_pose:
            pose = torch.zeros_like(pose)
        out = image.clone()
        for k, (y0, y1, x0, x1) in self.boxes.items():
            out[:, :, y0:y1, x0:x1] -= pose[:, k, None, None, None]
        return out, None, None


FACE = {0: (20, 24, 36, 44), 1: (20, 24, 20, 28), 2: (40, 44, 28, 36)}  # left eye on the image's right


def test_known_boxes_give_their_centres():
    rest = torch.zeros(3, 4, 64, 64)
    cents = change_centroids(BoxMorpher(FACE), rest, batch_size=2)
    assert cents["left_eye"].x == pytest.approx(40 / 64) and cents["left_eye"].y == pytest.approx(22 / 64)
    assert cents["right_eye"].x == pytest.approx(24 / 64) and cents["right_eye"].right_share == 0.0
    assert cents["mouth"].y == pytest.approx(42 / 64)
    assert cents["left_eye"].mass == pytest.approx(4 * 8 * 4)  # 4x8 pixels x 4 channels, change 1
    assert semantics_hold(cents)


def test_swapped_eyes_or_a_mouth_above_fail():
    rest = torch.zeros(1, 4, 64, 64)
    swapped = {0: FACE[1], 1: FACE[0], 2: FACE[2]}
    assert not semantics_hold(change_centroids(BoxMorpher(swapped), rest))
    high_mouth = {0: FACE[0], 1: FACE[1], 2: (8, 12, 28, 36)}
    assert not semantics_hold(change_centroids(BoxMorpher(high_mouth), rest))


def test_a_network_that_ignores_its_pose_has_no_centroid():
    rest = torch.rand(2, 4, 64, 64) * 2 - 1
    cents = change_centroids(BoxMorpher(FACE, ignore_pose=True), rest)
    assert all(c.mass == 0.0 and math.isnan(c.x) for c in cents.values())
    assert not semantics_hold(cents)


def test_runs_on_a_real_morpher_and_restores_its_mode():
    torch.manual_seed(0)
    m = FaceMorpher(image_size=32, base_channels=4, num_downsample=2, num_res_blocks=1, pose_film=True)
    m.train()
    cents = change_centroids(m, torch.rand(2, 4, 32, 32) * 2 - 1)
    assert m.training and set(cents) == {"left_eye", "right_eye", "mouth"}
    assert all(c.mass > 0 and 0 < c.x < 1 and 0 < c.y < 1 for c in cents.values())
