"""Loss values on hand-made tensors: L1, THA1's perceptual weights, the rotator's two-path sum."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models.vgg import load_vgg16_features
from train.losses import PerceptualLoss, l1_loss, perceptual_lambdas
from train.tasks import CombinerTask, MorpherTask, RotatorTask


def test_l1_on_hand_made_tensors():
    a = torch.zeros(2, 4, 2, 2)
    b = torch.zeros(2, 4, 2, 2)
    b[0, 0, 0, 0] = 1.0
    b[1, 3, 1, 1] = -3.0
    assert l1_loss(a, b).item() == pytest.approx(4.0 / 32)
    assert l1_loss(a.bfloat16(), b).dtype == torch.float32


def test_tha1_lambdas_at_256():
    lam = perceptual_lambdas(1 / 5, 256)
    # (1/5)·(4·256·256)/(C·H·W): relu1_2 64×256², relu2_2 128×128², relu3_3 256×64²
    assert lam == pytest.approx({"relu1_2": 0.0125, "relu2_2": 0.025, "relu3_3": 0.05})
    assert perceptual_lambdas(1 / 25, 64) == pytest.approx({"relu1_2": 0.0025, "relu2_2": 0.005, "relu3_3": 0.01})


class StubVGG(nn.Module):
    """Three 'feature maps' with VGG's channel counts and strides: channel-repeated red, pooled."""

    def forward(self, x):
        r = x[:, :1]
        return [r.expand(-1, 64, -1, -1), F.avg_pool2d(r, 2).expand(-1, 128, -1, -1),
                F.avg_pool2d(r, 4).expand(-1, 256, -1, -1)]


def test_perceptual_value_on_hand_made_tensors():
    s = 16
    out = torch.zeros(3, 4, s, s)
    tgt = torch.zeros(3, 4, s, s)
    tgt[:, 0] = 0.5  # red differs by 0.5 everywhere; alpha identical
    p = PerceptualLoss(StubVGG(), 1 / 5)(out, tgt)
    # every tap: Φ_j = C·H·W·0.5 per example; λ_j·Φ_j = w·4·S²·0.5; three taps, divided by 4·S²
    assert p.item() == pytest.approx(3 * 0.5 / 5)
    tgt2 = tgt.clone()
    tgt2[:, 3] = 1.0  # alpha now differs by 1 as well (the alpha copy's first channel is alpha)
    assert PerceptualLoss(StubVGG(), 1 / 25)(out, tgt2).item() == pytest.approx(3 * 1.5 / 25)


def test_perceptual_equals_weighted_feature_means_with_real_vgg():
    vgg = load_vgg16_features(None, random_init=True)
    g = torch.Generator().manual_seed(0)
    y, t = torch.rand(2, 4, 32, 32, generator=g) * 2 - 1, torch.rand(2, 4, 32, 32, generator=g) * 2 - 1
    p = PerceptualLoss(vgg, 0.2)(y, t)
    want = 0.0
    for a, b in ((y[:, :3], t[:, :3]), (y[:, 3:].expand(-1, 3, -1, -1), t[:, 3:].expand(-1, 3, -1, -1))):
        want += sum((fa - fb).abs().mean() for fa, fb in zip(vgg(a), vgg(b)))
    assert p.item() == pytest.approx(0.2 * float(want), rel=1e-5)
    assert PerceptualLoss(vgg, 0.2)(t, t).item() == 0.0


def test_rotator_loss_sums_both_paths():
    arch = dict(image_size=8, base_channels=4, num_downsample=1, num_res_blocks=1)
    task = RotatorTask(arch, "l1")
    tgt = torch.zeros(1, 4, 8, 8)
    pu, zh = torch.full_like(tgt, 0.25), torch.full_like(tgt, -0.5)
    loss, parts = task.loss([pu, zh], tgt)
    assert loss.item() == pytest.approx(0.75)
    assert parts["l1_pumarola"].item() == pytest.approx(0.25) and parts["l1_zhou"].item() == pytest.approx(0.5)


def test_perceptual_only_where_tha1_defines_it():
    arch = dict(image_size=8, base_channels=4, num_downsample=1, num_res_blocks=1)
    from train.errors import TrainError
    with pytest.raises(TrainError):
        MorpherTask(arch, "perceptual", vgg=StubVGG())
    with pytest.raises(TrainError, match="vgg"):
        RotatorTask(arch, "perceptual")
    with pytest.raises(TrainError, match="--rotator"):
        CombinerTask(arch, "l1")
    t = RotatorTask(arch, "perceptual", vgg=StubVGG())
    tgt = torch.zeros(1, 4, 8, 8)
    tgt[:, 0] = 0.5
    loss, parts = t.loss([torch.zeros_like(tgt), torch.zeros_like(tgt)], tgt)
    # per path: L1 = 0.5/4 = 0.125, perceptual = 3·0.5/5 = 0.3
    assert loss.item() == pytest.approx(2 * (0.125 + 0.3))
