"""THA1's released weight files: key mapping, strict loading, the tha1 grid convention, errors.

THA1-format files are built from the author's list of keys and shapes (tests/tha1_files.py reads
../shared/THA1_STATE_DICT_KEYS.json); tests that need the list skip without it."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from models import FaceMorpher, TwoAlgoFaceRotator
from models.io import WeightsError, load_weights, save_weights
from models.rotator import apply_flow, identity_grid
from tha1_files import (FILE_NAMES, released_shapes, saved_as_cuda, tha1_combiner, tha1_morpher, tha1_rotator,
                        tha1_shapes, tha1_state, write_tha1_folder)

B = 4  # tiny width; the layout (3 downsamplings, 6 residual blocks) is the released one


def _image(b=2, s=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 4, s, s, generator=g) * 2 - 1


def _pose(b=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, generator=g) * 2 - 1


def _source_of_each_parameter(net, state) -> dict[str, str]:
    """thactl parameter name -> the THA1 key whose tensor it equals (values are distinct per tensor)."""
    out = {}
    for name, value in net.state_dict().items():
        hits = [k for k, v in state.items() if v.shape == value.shape and torch.equal(v, value)]
        assert len(hits) == 1, (name, hits)
        out[name] = hits[0]
    return out


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return write_tha1_folder(tmp_path_factory.mktemp("tha1"), width=B)


# ------------------------------------------------------------------ every tensor in the right place

@pytest.mark.parametrize("kind,count", [("morpher", 59), ("rotator", 60), ("combiner", 63)])
def test_each_tensor_lands_once_and_the_network_computes_tha1s_outputs(tiny_folder, kind, count):
    state = torch.load(tiny_folder / FILE_NAMES[kind], map_location="cpu", weights_only=True)
    assert list(state) == list(released_shapes(kind)) and len(state) == count
    net = load_weights(tiny_folder, kind).eval()  # a folder holding THA1's files, as a user passes it
    assert net.config["image_size"] == 256 and net.config["base_channels"] == B
    sources = _source_of_each_parameter(net, state)
    assert sorted(sources.values()) == sorted(state)  # a bijection: nothing dropped, nothing used twice
    x, pose = _image(), _pose()
    with torch.no_grad():
        if kind == "morpher":
            torch.testing.assert_close(net(x, pose)[0], tha1_morpher(state, x, pose), rtol=0, atol=1e-5)
        elif kind == "rotator":
            assert net.config["grid_convention"] == "tha1"
            pu, zh = net(x, pose)[:2]
            ref_pu, ref_zh = tha1_rotator(state, x, pose)
            torch.testing.assert_close(pu, ref_pu, rtol=0, atol=1e-5)
            torch.testing.assert_close(zh, ref_zh, rtol=0, atol=1e-5)
            assert (zh - x).abs().max() > 0.1  # the flow is not the identity: the test means something
        else:
            y = _image(seed=5)
            torch.testing.assert_close(net(x, y, pose)[0], tha1_combiner(state, x, y, pose), rtol=0, atol=1e-5)


def test_combiner_upsampling_list_is_used_in_reverse():
    net = load_weights_from_state("combiner", tha1_state("combiner", B))
    sources = _source_of_each_parameter(net, tha1_state("combiner", B))
    assert sources["body.ups.0.0.weight"] == "main_body.upsampling_modules.3.0.weight"  # the deepest runs first
    assert sources["body.ups.2.0.weight"] == "main_body.upsampling_modules.1.0.weight"
    assert sources["body.last.0.weight"] == "main_body.upsampling_modules.0.0.weight"
    assert sources["body.res.5.body.3.weight"] == "main_body.bottleneck_modules.5.conv2.weight"


@pytest.mark.parametrize("kind", ["morpher", "rotator", "combiner"])
def test_the_accepted_keys_are_exactly_the_authors_list(kind):
    """Every key of the author's list is taken, and no key outside it: the map's image is the list."""
    from models.tha1 import tha1_key

    net = load_weights_from_state(kind, tha1_state(kind, B))
    accepted = [tha1_key(kind, k, net.config["num_downsample"]) for k in net.state_dict()]
    assert len(accepted) == len(set(accepted))
    assert set(accepted) == set(released_shapes(kind))


@pytest.mark.parametrize("kind", ["morpher", "rotator", "combiner"])
def test_every_key_of_the_list_is_required(kind):
    from models.tha1 import network_from_state

    full = tha1_state(kind, B)
    for key in full:
        state = {k: v for k, v in full.items() if k != key}
        with pytest.raises(WeightsError):
            network_from_state(state, kind)


def test_the_combiner_without_main_body_is_refused_in_one_line(tmp_path):
    """The layout thactl once expected (the U-Net's keys without `main_body.`) is not THA1's."""
    state = {k.removeprefix("main_body."): v for k, v in tha1_state("combiner", B).items()}
    torch.save(state, tmp_path / "combiner.pt")
    assert "not a complete THA1 combiner" in _err(tmp_path / "combiner.pt", "combiner")


def load_weights_from_state(kind, state):
    from models.tha1 import network_from_state

    return network_from_state(state, kind)


def test_full_size_released_layout_loads_with_the_same_placement(tmp_path):
    """Files of exactly the author's keys and shapes (64 channels, 256 px) load, with the tiny
    test's placement, and every shape equal to the list's."""
    from models.tha1 import tha1_key

    for i, (kind, count, params) in enumerate([("morpher", 59, 33_878_720), ("rotator", 60, 33_884_992),
                                               ("combiner", 63, 34_960_704)]):
        full = tha1_state(kind, constant=True)
        assert {k: tuple(v.shape) for k, v in full.items()} == released_shapes(kind)
        assert len(full) == count and sum(v.numel() for v in full.values()) == params
        with saved_as_cuda():
            torch.save(full, tmp_path / FILE_NAMES[kind])
        del full
        net = load_weights(tmp_path / FILE_NAMES[kind], kind)
        own = {"rotator": {"grid_convention": "tha1"}, "morpher": {"pose_film": False, "head_init_scale": 1.0, "unet": False}}
        assert net.config == dict(image_size=256, base_channels=64, num_downsample=3, num_res_blocks=6,
                                  **own.get(kind, {}))
        keys = list(tha1_shapes(kind))
        tiny = tha1_state(kind, B)
        tiny_sources = _source_of_each_parameter(load_weights_from_state(kind, tiny), tiny)
        for name, value in net.state_dict().items():  # tensor i was filled with i + 1
            assert keys[int(value.flatten()[0]) - 1] == tiny_sources[name] == tha1_key(kind, name, 3)
            assert tuple(value.shape) == released_shapes(kind)[tiny_sources[name]]
            assert torch.all(value == value.flatten()[0])
        del net


def test_released_files_need_map_location_and_thactl_gives_it(tiny_folder):
    if torch.cuda.is_available():
        pytest.skip("the CUDA-saved file loads without map_location here")
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(tiny_folder / FILE_NAMES["morpher"], weights_only=True)
    assert isinstance(load_weights(tiny_folder / FILE_NAMES["morpher"]), FaceMorpher)  # kind from content


def test_legacy_pickle_format_also_loads(tmp_path):
    p = tmp_path / "old.pt"
    torch.save(tha1_state("morpher", B), p, _use_new_zipfile_serialization=False)
    assert isinstance(load_weights(p, "morpher"), FaceMorpher)


# ------------------------------------------------------------------ the tha1 grid convention

@pytest.mark.parametrize("h,w", [(8, 8), (5, 7), (256, 256)])
def test_tha1_identity_grid_is_affine_grids(h, w):
    theta = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]]).repeat(2, 1, 1)
    ref = F.affine_grid(theta, [2, 4, h, w], align_corners=True)
    assert torch.equal(identity_grid(2, h, w, convention="tha1"), ref)


def test_tha1_flow_equals_grid_sample_with_align_corners():
    x = _image(2, 32)
    g = torch.Generator().manual_seed(3)
    off = (torch.rand(2, 2, 32, 32, generator=g) - 0.5) * 0.3
    theta = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]]).repeat(2, 1, 1)
    grid = F.affine_grid(theta, [2, 4, 32, 32], align_corners=True) + off.permute(0, 2, 3, 1)
    ref = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
    assert torch.equal(apply_flow(x, off, "tha1"), ref)
    assert (apply_flow(x, off, "thactl") - ref).abs().max() > 1e-3  # the two conventions differ


def test_tha1_flow_of_two_over_w_minus_one_moves_one_pixel():
    s = 16
    x = _image(1, s)
    off = torch.zeros(1, 2, s, s)
    off[:, 0] = 2.0 / (s - 1)
    out = apply_flow(x, off, "tha1")
    torch.testing.assert_close(out[..., :, :-1], x[..., :, 1:], rtol=0, atol=1e-5)
    torch.testing.assert_close(out[..., :, -1], x[..., :, -1], rtol=0, atol=1e-5)  # border
    off = torch.zeros(1, 2, s, s)
    off[:, 1] = -2.0 / (s - 1)  # content moves one row down
    out = apply_flow(x, off, "tha1")
    torch.testing.assert_close(out[..., 1:, :], x[..., :-1, :], rtol=0, atol=1e-5)
    torch.testing.assert_close(apply_flow(x, torch.zeros(1, 2, s, s), "tha1"), x, rtol=0, atol=1e-5)


def test_grid_convention_is_kept_in_the_weights(tmp_path):
    r = TwoAlgoFaceRotator(image_size=32, base_channels=4, num_downsample=2, num_res_blocks=1,
                           grid_convention="tha1")
    save_weights(r, tmp_path / "rotator.safetensors")
    assert load_weights(tmp_path, "rotator").grid_convention == "tha1"
    with pytest.raises(ValueError, match="grid_convention"):
        TwoAlgoFaceRotator(grid_convention="pixel")


def test_old_rotator_files_without_the_key_keep_thactls_convention(tmp_path):
    from safetensors.torch import save_file

    arch = dict(image_size=32, base_channels=4, num_downsample=2, num_res_blocks=1)
    r = TwoAlgoFaceRotator(**arch)
    save_file({k: v.contiguous() for k, v in r.state_dict().items()}, str(tmp_path / "rotator.safetensors"),
              metadata={"format": "thactl-weights", "kind": "rotator", "config": json.dumps(arch)})
    assert load_weights(tmp_path / "rotator.safetensors").grid_convention == "thactl"


# ------------------------------------------------------------------ errors: one line naming the file

def _err(path, kind=None) -> str:
    with pytest.raises(WeightsError) as e:
        load_weights(path, kind)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_wrong_network(tiny_folder):
    assert "holds THA1's combiner, expected the morpher" in _err(tiny_folder / FILE_NAMES["combiner"], "morpher")


def test_missing_key(tmp_path):
    state = tha1_state("rotator", B)
    del state["main_body.module_list.6.conv2.weight"]
    torch.save(state, tmp_path / "r.pt")
    msg = _err(tmp_path / "r.pt", "rotator")
    assert "missing 1 key(s) (main_body.module_list.6.conv2.weight)" in msg and "unexpected" not in msg


def test_unexpected_key(tmp_path):
    state = tha1_state("morpher", B)
    state["main_body.module_list.4.conv3.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "m.pt")
    assert "unexpected 1 key(s) (main_body.module_list.4.conv3.weight)" in _err(tmp_path / "m.pt")


def test_changed_shape(tmp_path):
    state = tha1_state("combiner", B)
    state["retouch_color_change.0.weight"] = torch.zeros(3, B, 7, 7)
    torch.save(state, tmp_path / "c.pt")
    assert "'retouch_color_change.0.weight' has shape (3, 4, 7, 7), expected (4, 4, 7, 7)" in _err(tmp_path / "c.pt")


def test_not_a_state_dict(tmp_path):
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    assert "not a state_dict" in _err(tmp_path / "list.pt")
    torch.save({"a.weight": torch.zeros(2)}, tmp_path / "other.pt")
    assert "not a THA1 network's state_dict" in _err(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("hello")
    assert "neither a safetensors file nor a readable PyTorch file" in _err(tmp_path / "text.pt")


@pytest.mark.parametrize("zipfile", [True, False])
def test_truncated_file(tmp_path, zipfile):
    p = tmp_path / "t.pt"
    torch.save(tha1_state("morpher", B), p, _use_new_zipfile_serialization=zipfile)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    assert "truncated" in _err(p, "morpher")


def test_pickled_code_is_never_run(tmp_path, capsys):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"a": Evil()}, tmp_path / "evil.pt")
    assert "holds Python objects besides tensors" in _err(tmp_path / "evil.pt")
    assert "pwned" not in capsys.readouterr().out
