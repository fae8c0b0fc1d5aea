"""THA1 networks: shapes, exact parameter counts, alpha-blend and grid-sample semantics, io, VGG."""
from __future__ import annotations

import pytest
import torch

from models import Combiner, FaceMorpher, Poser, TwoAlgoFaceRotator
from models.io import WeightsError, load_weights, read_metadata, save_weights
from models.morpher import AlphaBlendHeads
from models.rotator import apply_flow, identity_grid
from models.vgg import TAPS, VGG16Features, VGGWeightsError, load_vgg16_features

TINY = dict(image_size=32, base_channels=8, num_downsample=2, num_res_blocks=1)


def rand_image(b=2, s=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 4, s, s, generator=g) * 2 - 1


def count(module):
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------ parameter counts at THA1's defaults

def analytic_counts(b=64, n=3, k=6):
    """Independent count from THA1's layer list (no bias; IN affine = 2 per channel)."""
    conv = lambda cin, cout, ks: cin * cout * ks * ks  # noqa: E731
    inorm = lambda c: 2 * c  # noqa: E731
    def encoder(cin):
        t = conv(cin, b, 7) + inorm(b)
        for i in range(n):
            t += conv(b * 2 ** i, b * 2 ** (i + 1), 4) + inorm(b * 2 ** (i + 1))
        top = b * 2 ** n
        t += k * 2 * (conv(top, top, 3) + inorm(top))
        return t
    def decoder_plain():
        return sum(conv(b * 2 ** i, b * 2 ** (i - 1), 4) + inorm(b * 2 ** (i - 1)) for i in range(n, 0, -1))
    def decoder_unet():
        t = 0
        for i in range(n, 0, -1):
            cin = b * 2 ** i * (1 if i == n else 2)
            t += conv(cin, b * 2 ** (i - 1), 4) + inorm(b * 2 ** (i - 1))
        return t + conv(2 * b, b, 7) + inorm(b)
    heads = 2 * conv(b, 4, 7)
    morpher = encoder(7) + decoder_plain() + heads
    rotator = encoder(7) + decoder_plain() + heads + conv(b, 2, 7)
    combiner = encoder(11) + decoder_unet() + 3 * conv(b, 4, 7)
    return morpher, rotator, combiner


def test_parameter_counts_at_tha1_defaults():
    with torch.device("meta"):
        nets = FaceMorpher(), TwoAlgoFaceRotator(), Combiner()
    got = tuple(count(n) for n in nets)
    assert got == (33_878_720, 33_884_992, 34_960_704)
    assert got == analytic_counts()
    # THA1: ~34 M, ~34 M, ~35 M
    assert [round(c / 1e6) for c in got] == [34, 34, 35]
    tha1 = dict(image_size=256, base_channels=64, num_downsample=3, num_res_blocks=6)
    assert nets[0].config == dict(tha1, pose_film=False, head_init_scale=1.0, unet=False)
    assert nets[1].config == dict(tha1, grid_convention="thactl")
    for n in nets:
        assert {k: n.config[k] for k in tha1} == tha1
        assert not any(isinstance(m, torch.nn.Conv2d) and m.bias is not None for m in n.modules())
        norms = [m for m in n.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
        assert norms and all(m.affine for m in norms)


def test_tiny_counts_follow_the_same_formula():
    nets = FaceMorpher(**TINY), TwoAlgoFaceRotator(**TINY), Combiner(**TINY)
    assert tuple(count(n) for n in nets) == analytic_counts(b=8, n=2, k=1)


def test_full_size_forward_shapes():
    x = rand_image(1, 256)
    with torch.no_grad():
        out = FaceMorpher()(x, torch.zeros(1, 3))
    assert out[0].shape == (1, 4, 256, 256)
    assert out[0].abs().max() <= 1.0


# ------------------------------------------------------------------ shapes and return conventions

def test_shapes_and_output_ranges():
    x, pose = rand_image(), torch.rand(2, 3)
    out, alpha, change = FaceMorpher(**TINY)(x, pose)
    assert out.shape == alpha.shape == change.shape == (2, 4, 32, 32)
    assert out.min() >= -1 and out.max() <= 1
    pu, zh, offsets, alpha, change = TwoAlgoFaceRotator(**TINY)(x, pose)
    assert pu.shape == zh.shape == (2, 4, 32, 32) and offsets.shape == (2, 2, 32, 32)
    final, combined, m1, m2, retouch = Combiner(**TINY)(pu, zh, pose)
    for t in (final, combined, m1, m2, retouch):
        assert t.shape == (2, 4, 32, 32)
    assert 0 <= m1.min() and m1.max() <= 1


def test_non_square_batch_and_bad_pose_rejected():
    with pytest.raises(ValueError):
        FaceMorpher(**TINY)(rand_image(), torch.zeros(3, 3))
    with pytest.raises(ValueError):
        FaceMorpher(image_size=30, base_channels=8, num_downsample=2)


def test_pose_changes_the_output():
    m = FaceMorpher(**TINY)
    x = rand_image(1)
    a = m(x, torch.zeros(1, 3))[0]
    b = m(x, torch.ones(1, 3))[0]
    assert (a - b).abs().max() > 1e-3


def _interior_pose_effect(morpher, size=32, border=4):
    """Mean |first block(pose 1) - first block(pose 0)| away from the zero-padded border."""
    first = morpher.body.body[0]
    x = rand_image(1, size)
    film = torch.ones(1, 3) if morpher.config["pose_film"] else None
    with torch.no_grad():
        a = first(torch.cat([x, torch.zeros(1, 3, size, size)], 1), None if film is None else film * 0)
        b = first(torch.cat([x, torch.ones(1, 3, size, size)], 1), film)
    return (a - b)[..., border:-border, border:-border].abs().mean().item()


def test_pose_film_reaches_the_interior_that_instancenorm_hides():
    torch.manual_seed(0)
    tha1 = FaceMorpher(**TINY)
    tha1_effect = _interior_pose_effect(tha1)  # conv of constant planes, then IN: only the border's
    assert tha1_effect < 0.1                   # share of the mean and variance is left inside
    torch.manual_seed(0)
    film = FaceMorpher(**TINY, pose_film=True)
    # zero-initialised FiLM: the same function as THA1's layers with the same weights
    x, pose = rand_image(), torch.rand(2, 3)
    film_keys = set(film.state_dict())
    renamed = {k if k in film_keys else k.replace(".weight", ".norm.weight").replace(".bias", ".norm.bias"): v
               for k, v in tha1.state_dict().items()}
    missing = film.load_state_dict(renamed, strict=False).missing_keys
    assert missing and all(".film." in k for k in missing)
    assert torch.allclose(film(x, pose)[0], tha1(x, pose)[0], atol=1e-5)
    with torch.no_grad():
        for m in film.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.fill_(0.2)
    assert _interior_pose_effect(film) > 3 * tha1_effect
    assert film.config["pose_film"] and not tha1.config["pose_film"]


def test_head_init_scale_starts_alpha_near_one_half():
    x, pose = rand_image(4, 32), torch.rand(4, 3)
    torch.manual_seed(0)
    _, alpha_tha1, _ = FaceMorpher(**TINY)(x, pose)
    torch.manual_seed(0)
    _, alpha_small, _ = FaceMorpher(**TINY, head_init_scale=0.01)(x, pose)
    assert (alpha_tha1 - 0.5).abs().max() > 0.4  # He init: logits of order 1, alpha spread over (0, 1)
    assert (alpha_small - 0.5).abs().max() < 0.05  # logits 100x smaller


def test_morpher_options_round_trip_through_weights(tmp_path):
    m = FaceMorpher(**TINY, pose_film=True, head_init_scale=0.01, unet=True)
    save_weights(m, tmp_path / "morpher.safetensors")
    assert read_metadata(tmp_path / "morpher.safetensors")["config"] == dict(TINY, pose_film=True,
                                                                                head_init_scale=0.01, unet=True)
    m2 = load_weights(tmp_path, "morpher")
    x, pose = rand_image(), torch.rand(2, 3)
    assert m2.config == m.config and torch.equal(m2(x, pose)[0], m(x, pose)[0])


def test_unet_morpher_body_is_the_combiners_unet_with_skip_connections():
    """unet=True: the body is blocks.UNet over image + pose planes (the combiner's body); every decoder level
    also reads the encoder's features, so the output reacts to a one-pixel input change right there."""
    from models.blocks import UNet
    torch.manual_seed(0)
    m = FaceMorpher(**TINY, unet=True, pose_film=True)
    assert isinstance(m.body, UNet) and m.config["unet"]
    unet_params = sum(p.numel() for p in UNet(7, **{k: v for k, v in TINY.items()}, pose_dim=3).parameters())
    assert count(m) == unet_params + count(m.heads)
    assert count(m) > count(FaceMorpher(**TINY, pose_film=True))  # the skip inputs widen the decoder
    x, pose = rand_image(1), torch.rand(1, 3)
    assert m(x, pose)[0].shape == x.shape
    with torch.no_grad():
        film = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear)]
        for lin in film:
            lin.weight.fill_(0.1)
    assert (m(x, pose)[0] - m(x, pose * 0)[0]).abs().max() > 1e-3


def test_encoder_decoder_depth_is_configurable():
    m = FaceMorpher(image_size=64, base_channels=4, num_downsample=3, num_res_blocks=2)
    assert m(rand_image(1, 64), torch.zeros(1, 3))[0].shape == (1, 4, 64, 64)


# ------------------------------------------------------------------ alpha blend

def test_alpha_blend_semantics():
    heads = AlphaBlendHeads(3)
    image = rand_image(1, 8)
    feats = torch.ones(1, 3, 8, 8)
    with torch.no_grad():
        heads.alpha.weight.zero_()
        heads.change.weight.zero_()
    out, alpha, change = heads(feats, image)
    assert torch.allclose(alpha, torch.full_like(alpha, 0.5)) and torch.equal(change, torch.zeros_like(change))
    assert torch.allclose(out, 0.5 * image)  # 0.5·image + 0.5·0
    with torch.no_grad():
        heads.alpha.weight.fill_(10.0)  # alpha -> 1: keep the input
    out, alpha, _ = heads(feats, image)
    assert torch.allclose(out, image, atol=1e-6)
    with torch.no_grad():
        heads.alpha.weight.fill_(-10.0)  # alpha -> 0: take the change
        heads.change.weight.fill_(1.0)
    out, alpha, change = heads(feats, image)
    assert torch.allclose(out, change, atol=1e-6) and change.min() > 0.99


def test_combiner_blend_semantics():
    c = Combiner(**TINY)
    pu, zh = rand_image(seed=1), rand_image(seed=2)
    final, combined, m1, m2, retouch = c(pu, zh, torch.zeros(2, 3))
    assert torch.allclose(combined, m1 * pu + (1 - m1) * zh, atol=1e-6)
    assert torch.allclose(final, m2 * combined + (1 - m2) * retouch, atol=1e-6)


# ------------------------------------------------------------------ grid sample (Zhou path)

@pytest.mark.parametrize("size", [8, 32, 256])
def test_zero_offsets_reproduce_the_input_exactly(size):
    x = rand_image(2, size)
    assert torch.equal(apply_flow(x, torch.zeros(2, 2, size, size)), x)


def test_fresh_rotator_zhou_path_is_the_identity():
    x = rand_image()
    zhou, offsets = TwoAlgoFaceRotator(**TINY)(x, torch.rand(2, 3))[1:3]
    assert torch.equal(offsets, torch.zeros_like(offsets))
    assert torch.equal(zhou, x)


def test_known_shift_moves_the_image():
    s = 16
    x = rand_image(1, s)
    off = torch.zeros(1, 2, s, s)
    off[:, 0] = 2.0 / s * 3  # x offset of 3 pixels: each output pixel reads 3 pixels to its right
    out = apply_flow(x, off)
    assert torch.allclose(out[..., :, : s - 3], x[..., :, 3:], atol=1e-5)
    assert torch.allclose(out[..., :, s - 3:], x[..., :, -1:].expand(-1, -1, -1, 3), atol=1e-5)  # border
    off = torch.zeros(1, 2, s, s)
    off[:, 1] = -2.0 / s * 2  # y offset of -2 pixels: content moves 2 rows down
    out = apply_flow(x, off)
    assert torch.allclose(out[..., 2:, :], x[..., : s - 2, :], atol=1e-5)
    off = torch.zeros(1, 2, s, s)
    off[:, 0] = 1.0 / s  # half a pixel: the mean of neighbours
    out = apply_flow(x, off)
    assert torch.allclose(out[..., :, :-1], 0.5 * (x[..., :, :-1] + x[..., :, 1:]), atol=1e-5)


def test_identity_grid_is_pixel_centres():
    g = identity_grid(1, 4, 4)
    assert torch.allclose(g[0, 0, :, 0], torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    assert torch.allclose(g[0, :, 0, 1], torch.tensor([-0.75, -0.25, 0.25, 0.75]))


# ------------------------------------------------------------------ poser

def test_poser_chains_the_three_networks():
    torch.manual_seed(0)
    m, r, c = FaceMorpher(**TINY), TwoAlgoFaceRotator(**TINY), Combiner(**TINY)
    x = rand_image()
    pose = torch.tensor([[0.5, -0.2, 0.1, 1.0, 0.0, 0.3], [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])
    final, morphed, pu, zh = Poser(m, r, c)(x, pose)
    ref_m = m(x, pose[:, 3:6])[0]
    ref_pu, ref_zh = r(ref_m, pose[:, 0:3])[:2]
    assert torch.equal(morphed, ref_m) and torch.equal(pu, ref_pu) and torch.equal(zh, ref_zh)
    assert torch.equal(final, c(ref_pu, ref_zh, pose[:, 0:3])[0])
    assert torch.equal(Poser(m, r, path="zhou")(x, pose)[0], ref_zh)
    assert torch.equal(Poser(m, r)(x, pose)[0], ref_pu)
    with pytest.raises(ValueError):
        Poser(m, r, path="combiner")


# ------------------------------------------------------------------ io

def test_save_and_load_weights_round_trip(tmp_path):
    r = TwoAlgoFaceRotator(**TINY)
    save_weights(r, tmp_path / "rotator.safetensors")
    assert read_metadata(tmp_path / "rotator.safetensors") == {"kind": "rotator",
                                                               "config": {**TINY, "grid_convention": "thactl"}}
    r2 = load_weights(tmp_path, "rotator")  # a run folder resolves to RUN/<kind>.safetensors
    assert isinstance(r2, TwoAlgoFaceRotator)
    for (k, a), (k2, b) in zip(r.state_dict().items(), r2.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert isinstance(load_weights(tmp_path), TwoAlgoFaceRotator)  # the only network there
    with pytest.raises(WeightsError, match="holds a rotator"):
        load_weights(tmp_path / "rotator.safetensors", "morpher")
    with pytest.raises(WeightsError, match="not found"):
        load_weights(tmp_path, "combiner")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="junk.safetensors"):
        load_weights(tmp_path / "junk.safetensors")


# ------------------------------------------------------------------ VGG

def test_vgg_layers_match_torchvision_numbering(tmp_path):
    v = VGG16Features()
    assert TAPS == {3: "relu1_2", 8: "relu2_2", 15: "relu3_3"}
    keys = [k for k in v.state_dict()]
    assert keys[0] == "features.0.weight" and keys[-1] == "features.14.bias"
    feats = v(torch.zeros(1, 3, 32, 32))
    assert [tuple(f.shape) for f in feats] == [(1, 64, 32, 32), (1, 128, 16, 16), (1, 256, 8, 8)]


def test_vgg_loads_torchvision_style_files(tmp_path):
    from safetensors.torch import save_file
    ref = load_vgg16_features(None, random_init=True, seed=3)
    state = {k: v.clone() for k, v in ref.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # extra keys of a full vgg16 are ignored
    torch.save(state, tmp_path / "vgg16.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "vgg16.safetensors"))
    x = rand_image(1, 16)[:, :3]
    want = ref(x)
    for name in ("vgg16.pth", "vgg16.safetensors"):
        v = load_vgg16_features(tmp_path / name)
        assert all(torch.equal(a, b) for a, b in zip(v(x), want))
        assert not any(p.requires_grad for p in v.parameters())


def test_vgg_errors_name_the_problem(tmp_path):
    with pytest.raises(VGGWeightsError, match="--vgg-weights"):
        load_vgg16_features(None)
    with pytest.raises(VGGWeightsError, match="not found"):
        load_vgg16_features(tmp_path / "missing.pth")
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(VGGWeightsError, match="bad.pth"):
        load_vgg16_features(tmp_path / "bad.pth")
