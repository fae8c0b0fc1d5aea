"""Pose constants and THE pose check (core/pose.py), the sampling law (dataset/poses.py) and the
image convention (dataset/imageconv.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dataset.imageconv import tensor_to_uint8, uint8_to_numpy, uint8_to_tensor
from core.pose import ANGLE_DEGREES, POSE_NAMES, REST_POSE, pose_facts, pose_problem
from dataset.poses import expected_fractions, head_cdf, sample_poses


def test_constants_match_spec():
    assert POSE_NAMES == ("head_x", "head_y", "neck_z", "left_eye", "right_eye", "mouth")
    assert ANGLE_DEGREES == 15.0
    assert REST_POSE.dtype == np.float32
    assert REST_POSE.tolist() == [0, 0, 0, 0, 0, 1]


def test_sample_poses_distribution():
    p = sample_poses(np.random.default_rng(0), 200_000)
    assert p.shape == (200_000, 6) and p.dtype == np.float32
    assert p[:, :3].min() >= -1 and p[:, :3].max() <= 1
    assert p[:, 3:].min() >= 0 and p[:, 3:].max() <= 1
    # head values: density |v| -> P(|v| <= t) = t^2; symmetric
    for c in range(3):
        a = np.abs(p[:, c])
        for t in (0.25, 0.5, 0.75):
            assert abs((a <= t).mean() - t * t) < 0.005
        assert abs((p[:, c] > 0).mean() - 0.5) < 0.005
    # eyes/mouth uniform
    for c in range(3, 6):
        hist, _ = np.histogram(p[:, c], bins=10, range=(0, 1))
        assert np.allclose(hist / len(p), 0.1, atol=0.004)
    # components independent (no accidental le == re)
    assert abs(np.corrcoef(p[:, 3], p[:, 4])[0, 1]) < 0.01


def test_sample_poses_deterministic_and_one_eye():
    a = sample_poses(np.random.default_rng(5), 100)
    b = sample_poses(np.random.default_rng(5), 100)
    c = sample_poses(np.random.default_rng(5), 100, one_eye_morphs=False)
    assert np.array_equal(a, b)
    assert np.array_equal(c[:, 4], c[:, 3])
    assert np.array_equal(np.delete(c, 4, axis=1), np.delete(a, 4, axis=1))


def test_expected_fractions():
    edges = np.linspace(-1, 1, 11)
    f = expected_fractions(0, edges)
    assert abs(f.sum() - 1) < 1e-12 and f[0] > f[4]
    assert np.allclose(head_cdf(np.array([-1.0, 0.0, 1.0])), [0, 0.5, 1])
    assert np.allclose(expected_fractions(5, np.linspace(0, 1, 5)), 0.25)


def test_pose_problem_names_the_first_bad_value():
    assert pose_problem([0, 0, 0, 0, 0, 1]) is None and pose_problem(REST_POSE) is None
    assert pose_problem([1 + 5e-7, -1, 1, 0, 1, 0]) is None            # float rounding is tolerated
    assert pose_problem([1 + 5e-7, 0, 0, 0, 0, 0], tolerance=0.0) == "head_x = 1 is outside [-1, 1]"
    assert pose_problem([0, 0, 0, -0.5, 0, 2]) == "left_eye = -0.5 is outside [0, 1]"
    assert pose_problem(np.float32([0, 0, 0, 0, 0.3, 1.3])) == "mouth = 1.3 is outside [0, 1]"
    assert pose_problem([0, float("nan"), 0, 0, 0, 1]) == "head_y = nan is not a finite number"
    assert pose_problem([0, 0, float("inf"), 0, 0, 1]) == "neck_z = inf is not a finite number"
    for bad in ([0, 0, 0, 0, 0], [[0, 0, 0, 0, 0, 1]], "0,0,0,0,0,1", None, {"pose": 1}):
        assert pose_problem(bad).startswith("a pose must be 6 numbers (head_x head_y neck_z left_eye "
                                            "right_eye mouth), got"), bad
    poses = np.zeros((4, 6), np.float32)
    assert pose_problem(poses, batch=True) is None and pose_problem(np.zeros((0, 6)), batch=True) is None
    poses[2, 4] = 7
    assert pose_problem(poses, batch=True) == "pose 2: right_eye = 7 is outside [0, 1]"
    assert "got shape (6,)" in pose_problem(np.zeros(6), batch=True)


def test_pose_facts_are_the_constants():
    facts = pose_facts()
    assert facts == {"names": list(POSE_NAMES), "low": [-1, -1, -1, 0, 0, 0], "high": [1] * 6,
                     "rest": [0, 0, 0, 0, 0, 1], "angle_degrees": 15.0}


def test_imageconv_values():
    img = np.zeros((2, 2, 4), np.uint8)
    img[0, 0] = (255, 255, 255, 255)
    img[0, 1] = (188, 0, 0, 128)     # sRGB 188 ~ linear 0.5
    img[1, 0] = (50, 60, 70, 0)      # colour under alpha 0: zeroed
    t = uint8_to_tensor(img)
    assert t.shape == (4, 2, 2) and t.dtype == torch.float32
    assert torch.allclose(t[:, 0, 0], torch.ones(4))
    assert abs(float(t[0, 0, 1]) - 0.0) < 0.01          # linear 0.5 -> 0
    assert abs(float(t[3, 0, 1]) - (128 / 255 * 2 - 1)) < 1e-6
    assert torch.all(t[:, 1, 0] == -1) and torch.all(t[:, 1, 1] == -1)
    back = tensor_to_uint8(t)
    assert back.shape == (2, 2, 4) and back.dtype == np.uint8
    assert back[0, 0].tolist() == [255] * 4 and back[0, 1].tolist() == [188, 0, 0, 128]
    assert back[1, 0].tolist() == [0, 0, 0, 0]


def test_imageconv_roundtrip_batched():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (3, 16, 16, 4), dtype=np.uint8)
    img[..., :3][img[..., 3] == 0] = 0
    t = uint8_to_tensor(img)
    assert t.shape == (3, 4, 16, 16)
    assert np.array_equal(tensor_to_uint8(t), img)
    assert np.array_equal(uint8_to_numpy(img), t.numpy())
    # out-of-range network output is clamped; RGB zeroed under alpha 0
    x = torch.full((4, 2, 2), 3.0)
    x[3] = -1.0
    assert tensor_to_uint8(x).tolist() == np.zeros((2, 2, 4), np.uint8).tolist()
    with pytest.raises(ValueError):
        uint8_to_tensor(np.zeros((4, 4, 3), np.uint8))
