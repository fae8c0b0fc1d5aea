"""channels_last through the networks: the layout-keeping InstanceNorm, the rotator's resampling and the
colour augmentation keep a channels_last batch channels_last, with the results of the NCHW path."""
from __future__ import annotations

import pytest
import torch

from models import Combiner, FaceMorpher, TwoAlgoFaceRotator
from models.blocks import InstanceNorm2d
from train.augment import Augment
from train.tasks import MORPHER_TRAIN_DEFAULTS

CL = torch.channels_last
ARCH = dict(image_size=16, base_channels=8, num_downsample=2, num_res_blocks=1)


def is_cl(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=CL) and not x.is_contiguous()


@pytest.fixture
def keep_always(monkeypatch):
    monkeypatch.setattr(InstanceNorm2d, "keep_channels_last", "always")


def test_layout_keeping_instance_norm_matches_torch(keep_always):
    torch.manual_seed(0)
    norm = InstanceNorm2d(6, affine=True)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = (torch.randn(3, 6, 10, 12) * 4 + 7).contiguous(memory_format=CL).requires_grad_()
    x_ref = x.detach().contiguous().requires_grad_()
    g = torch.randn(3, 6, 10, 12)
    y = norm(x)
    assert is_cl(y)
    (y * g).sum().backward()
    grads = [x.grad, norm.weight.grad.clone(), norm.bias.grad.clone()]
    norm.zero_grad()
    y_ref = torch.nn.InstanceNorm2d.forward(norm, x_ref)  # torch's kernel
    (y_ref * g).sum().backward()
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, [x_ref.grad, norm.weight.grad, norm.bias.grad]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_layout_keeping_instance_norm_in_bf16_autocast(keep_always):
    torch.manual_seed(1)
    norm = InstanceNorm2d(4, affine=True)
    x = (torch.randn(2, 4, 8, 8) * 3 + 20).contiguous(memory_format=CL)  # mean far from 0: fp32 statistics
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = norm(x.bfloat16())
    assert y.dtype == torch.bfloat16 and is_cl(y)
    torch.testing.assert_close(y.float(), torch.nn.InstanceNorm2d.forward(norm, x.bfloat16().float()),
                               rtol=0.02, atol=0.03)


def test_default_mode_keeps_torch_kernel_in_eager():
    """'compiled' (the default): eager mode takes torch's kernel, so its output is NCHW."""
    assert InstanceNorm2d.keep_channels_last == "compiled"
    y = InstanceNorm2d(4, affine=True)(torch.randn(2, 4, 8, 8).contiguous(memory_format=CL))
    assert y.is_contiguous()


def _networks():
    return [("morpher", FaceMorpher(**ARCH, **MORPHER_TRAIN_DEFAULTS), 1),
            ("tha1-morpher", FaceMorpher(**ARCH), 1), ("rotator", TwoAlgoFaceRotator(**ARCH), 1),
            ("combiner", Combiner(**ARCH), 2)]


@pytest.mark.parametrize("name, net, images", _networks(), ids=[n[0] for n in _networks()])
def test_networks_stay_channels_last_with_the_nchw_results(keep_always, name, net, images):
    torch.manual_seed(2)
    for p in net.parameters():  # nonzero heads and flow, so every output path is exercised
        p.data.normal_(0, 0.05)
    xs, pose = [torch.rand(2, 4, 16, 16) * 2 - 1 for _ in range(images)], torch.rand(2, 3)
    want = net(*xs, pose)
    net = net.to(memory_format=CL)
    not_cl = []

    def hook(mod, _inp, out):
        for o in out if isinstance(out, (tuple, list)) else [out]:
            if torch.is_tensor(o) and o.dim() == 4 and o.shape[1] > 1 and not is_cl(o):
                not_cl.append(type(mod).__name__)
    handles = [m.register_forward_hook(hook) for m in net.modules()]
    got = net(*[x.contiguous(memory_format=CL) for x in xs], pose)
    for h in handles:
        h.remove()
    assert not_cl == [], f"{name}: NCHW outputs from {sorted(set(not_cl))}"
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


def test_colour_augmentation_keeps_the_layout():
    aug = Augment(("mirror", "colour"), seed=5)
    images = [torch.rand(4, 4, 8, 8) * 2 - 1 for _ in range(2)]
    pose = torch.rand(4, 3)
    params = aug.params(0, 4)
    want, _ = aug.apply(images, pose, slice(3, 6), params)
    got, _ = aug.apply([im.contiguous(memory_format=CL) for im in images], pose, slice(3, 6), params)
    for g, w in zip(got, want):
        assert is_cl(g)
        torch.testing.assert_close(g, w)
