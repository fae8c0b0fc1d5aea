"""Training-time augmentation: the mirror convention against the renderer, the colour transform's
exact values, determinism per position and per DDP rank, and the option's parsing."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.pose import mirror_pose
from train.augment import Augment, hue_gain_matrices, mirrored_pose_part, parse_augment, recolour
from train.errors import TrainError


def test_mirrored_pose_swaps_the_eyes_and_turns_the_head_the_other_way():
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], np.float32)
    assert mirror_pose(p).tolist() == pytest.approx([0.1, -0.2, -0.3, 0.5, 0.4, 0.6])
    assert np.array_equal(mirror_pose(mirror_pose(p)), p)
    full = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [-1, 1, 0.5, 0, 1, 0]])
    for part in (slice(0, 3), slice(3, 6), slice(0, 6)):
        expect = torch.as_tensor(mirror_pose(full.numpy()))[:, part]
        assert torch.equal(mirrored_pose_part(full[:, part], part), expect)


def test_a_flipped_render_is_the_render_of_the_mirrored_pose(tmp_path):
    """The augmentation's claim, on the real renderer: flip(render(p)) = render(mirror(p)). A sample
    character is not exactly symmetric (its hair), so the eyes are compared as changes from the rest
    pose and the head turn against the unmirrored pose."""
    from cli import main as cli_main
    from renderer.preview import render_preview

    assert cli_main(["samples", str(tmp_path), "--count", "1", "--seed", "0"]) == 0
    wink = np.array([0, 0, 0, 1, 0, 0.5], np.float32)  # the character's left eye closed
    turn = np.array([0.3, 0.6, -0.4, 0, 0, 0.5], np.float32)
    rest = np.array([0, 0, 0, 0, 0, 0.5], np.float32)
    poses = [rest, wink, mirror_pose(wink), turn, mirror_pose(turn)]
    try:
        images = render_preview(tmp_path / "sample-01" / "sample-01.pmx", [(str(i), p) for i, p in enumerate(poses)],
                                size=64).images
    except Exception as e:  # no EGL here
        pytest.skip(f"cannot render: {e}")
    rest_im, wink_im, wink_m, turn_im, turn_m = (im.astype(np.float64) for im in images)

    def differing(a, b):
        return int((np.abs(a - b).max(-1) > 40).sum())

    change = wink_im - rest_im
    changed = differing(change, 0)  # 37 pixels (sample-01, 64 px)
    mirrored = differing(change[:, ::-1], wink_m - rest_im)  # 13: edge pixels of a 1-px-off centre
    assert changed > 20 and mirrored * 2 < changed  # the flipped wink is the other eye's wink ...
    assert mirrored * 4 < differing(change[:, ::-1], change)  # ... not the same eye's (74)
    assert differing(turn_im[:, ::-1], turn_m) * 3 < differing(turn_im[:, ::-1], turn_im)


def test_hue_rotation_by_a_third_turn_cycles_the_channels_and_keeps_alpha_and_black():
    m = hue_gain_matrices(torch.tensor([2 * math.pi / 3]), torch.tensor([1.0]))
    rgb = torch.tensor([0.9, 0.2, 0.05])
    assert (m[0] @ rgb).tolist() == pytest.approx([0.05, 0.9, 0.2], abs=1e-6)  # R -> G -> B -> R
    identity = hue_gain_matrices(torch.tensor([0.0]), torch.tensor([1.0]))
    assert torch.allclose(identity[0], torch.eye(3), atol=1e-7)
    image = torch.full((1, 4, 2, 2), -1.0)  # transparent black
    image[0, :, 0, 0] = torch.tensor([0.8, -0.6, -0.9, 0.5])  # linear (0.9, 0.2, 0.05), alpha 0.75
    out = recolour(image, hue_gain_matrices(torch.tensor([2 * math.pi / 3]), torch.tensor([1.2])))
    assert out[0, :, 0, 0].tolist() == pytest.approx([0.05 * 1.2 * 2 - 1, 1.0, 0.2 * 1.2 * 2 - 1, 0.5], abs=1e-5)
    assert torch.equal(out[0, :, 1, 1], torch.full((4,), -1.0))


def _batch(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    image = torch.rand(n, 4, 8, 8, generator=g) * 2 - 1
    target = torch.rand(n, 4, 8, 8, generator=g) * 2 - 1
    pose = torch.rand(n, 3, generator=g)
    return image, target, pose


def test_augment_is_one_transform_of_input_and_target_and_is_seeded_by_position():
    aug = Augment(("mirror", "colour"), seed=3)
    image, target, pose = _batch(64)
    params = aug.params(seen=128, global_batch=64)
    (a_img, a_tgt), a_pose = aug.apply([image, target], pose, slice(3, 6), params)
    flip = params["flip"]
    assert 16 < int(flip.sum()) < 48
    # the mirror: flipped examples carry the swapped eyes, the others their own pose
    assert torch.equal(a_pose[flip], pose[flip][:, [1, 0, 2]]) and torch.equal(a_pose[~flip], pose[~flip])
    # input and target got the same recolouring and flip: undo both on the target by the same rule
    m = hue_gain_matrices(params["angle"], params["gain"])
    expect_tgt = recolour(torch.where(flip[:, None, None, None], target.flip(-1), target), m)
    assert torch.allclose(a_tgt, expect_tgt)
    again = aug.apply([image, target], pose, slice(3, 6), aug.params(seen=128, global_batch=64))
    assert torch.equal(again[0][0], a_img)
    other = aug.params(seen=144, global_batch=64)
    assert not torch.equal(other["angle"], params["angle"])
    assert not Augment((), seed=0) and Augment(("mirror",), seed=0)


def test_each_rank_takes_its_chunk_of_the_global_batch():
    aug = Augment(("mirror", "colour"), seed=0)
    whole = aug.params(seen=32, global_batch=16)
    parts = [aug.params(seen=32, global_batch=16, rank=r, world=2) for r in (0, 1)]
    for key in whole:
        assert torch.equal(torch.cat([parts[0][key], parts[1][key]]), whole[key])


def test_parse_augment():
    assert parse_augment("mirror,colour") == ("mirror", "colour")
    assert parse_augment("color, mirror") == ("mirror", "colour")
    assert parse_augment("none") == () and parse_augment("") == () and parse_augment(None) == ()
    with pytest.raises(TrainError, match="unknown transform 'blur'"):
        parse_augment("mirror,blur")
