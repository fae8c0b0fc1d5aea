"""Test helpers: state_dicts laid out exactly as THA1's released files, and THA1's forward pass.

The layout comes from ../shared/THA1_STATE_DICT_KEYS.json (beside the repository, or the file named
by THACTL_TEST_THA1_KEYS): every key and shape of face_morpher.pt, two_algo_face_rotator.pt and
combiner.pt in the order the author's code writes them (59, 60 and 63 tensors). Nothing here is
derived from models/tha1.py, so tests check that module against the author's list. Without the
list the tests that need it skip, saying where it was looked for.

Tests run the released layout (256 px, 3 downsamplings, 6 residual blocks) at a small width: every
channel count of the list (a multiple of the released 64) is scaled by width / 64; image channels
(7, 11) and head outputs (4, 2) stay as they are.
"""
from __future__ import annotations

import contextlib
import json
import os
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
KEYS_FILE = Path(os.environ.get("THACTL_TEST_THA1_KEYS", REPO.parent / "shared" / "THA1_STATE_DICT_KEYS.json"))
FILE_NAMES = {"morpher": "face_morpher.pt", "rotator": "two_algo_face_rotator.pt", "combiner": "combiner.pt"}
RELEASED_WIDTH = 64
N, K = 3, 6  # the released networks' downsamplings and residual blocks (the reference passes use them)


@lru_cache(maxsize=None)
def _key_list() -> dict[str, tuple[tuple[str, tuple[int, ...]], ...]] | None:
    if not KEYS_FILE.is_file():
        return None
    raw = json.loads(KEYS_FILE.read_text())
    return {kind: tuple((key, tuple(shape)) for key, shape in raw[name]) for kind, name in FILE_NAMES.items()}


def released_shapes(kind: str) -> dict[str, tuple[int, ...]]:
    """The author's keys and shapes for `kind`, in his order (skips the test when the list is absent)."""
    keys = _key_list()
    if keys is None:
        pytest.skip(f"THA1's key list not found at {KEYS_FILE} (set THACTL_TEST_THA1_KEYS)")
    return dict(keys[kind])


def tha1_shapes(kind: str, width: int = RELEASED_WIDTH) -> dict[str, tuple[int, ...]]:
    """The author's keys for `kind` with channel counts scaled to `width` base channels."""
    def scale(d: int) -> int:
        return d * width // RELEASED_WIDTH if d % RELEASED_WIDTH == 0 else d

    return {key: tuple(scale(d) for d in shape) for key, shape in released_shapes(kind).items()}


def tha1_state(kind: str, width: int = RELEASED_WIDTH, seed: int = 0, constant: bool = False):
    """A state_dict with the author's keys: seeded random values (distinct per tensor), or
    (constant) tensor i of the list filled with i + 1.

    The random flow head is scaled so the flow moves pixels by up to ~10 % of the image, as a trained
    rotator's does (whole-image flows would make fp32 rounding differences visible on noise images)."""
    g = torch.Generator().manual_seed(seed)
    out = OrderedDict()  # as Module.state_dict() returns it, with the per-module version record
    out._metadata = OrderedDict([("", {"version": 1})])
    for i, (key, shape) in enumerate(tha1_shapes(kind, width).items()):
        out._metadata.setdefault(key.rsplit(".", 1)[0], {"version": 1})
        if constant:
            out[key] = torch.full(shape, float(i + 1))
        elif key.endswith("bias"):
            out[key] = torch.randn(shape, generator=g) * 0.1
        elif len(shape) == 1:
            out[key] = 1 + torch.randn(shape, generator=g) * 0.1
        else:
            fan_in = shape[1] * shape[2] * shape[3]
            scale = 0.03 if key == "zhou_grid_change.weight" else 1.0
            out[key] = torch.randn(shape, generator=g) * scale * (1.0 / fan_in) ** 0.5
    return out


@contextlib.contextmanager
def saved_as_cuda():
    """torch.save inside this block records every CPU tensor as living on 'cuda:0' (as the released
    files do), so loading without map_location fails on a machine without CUDA."""
    from torch import serialization

    def tag(storage):
        return "cuda:0" if storage.device.type == "cpu" else None

    entry = (1, tag, lambda storage, location: None)
    serialization._package_registry.append(entry)
    serialization._package_registry.sort(key=lambda e: e[0])
    try:
        yield
    finally:
        serialization._package_registry.remove(entry)


def write_tha1_folder(folder: Path, width: int = 4, seed: int = 0) -> Path:
    """The three files under THA1's names, saved as the author's code does (`torch.save` of the
    state_dict) and 'on CUDA' as the released files were."""
    folder.mkdir(parents=True, exist_ok=True)
    with saved_as_cuda():
        for i, (kind, name) in enumerate(FILE_NAMES.items()):
            torch.save(tha1_state(kind, width, seed=seed + i), folder / name)
    return folder


# ------------------------------------------------------------------ THA1's forward pass, functionally

def _conv_block(x, sd, prefix, transposed=False):
    w = sd[f"{prefix}.0.weight"]
    if transposed:
        x = F.conv_transpose2d(x, w, stride=2, padding=1)
    elif w.shape[-1] == 4:
        x = F.conv2d(x, w, stride=2, padding=1)
    else:
        x = F.conv2d(x, w, padding=w.shape[-1] // 2)
    return F.relu(F.instance_norm(x, weight=sd[f"{prefix}.1.weight"], bias=sd[f"{prefix}.1.bias"]))


def _res_block(x, sd, prefix):
    y = F.instance_norm(F.conv2d(x, sd[f"{prefix}.conv1.weight"], padding=1),
                        weight=sd[f"{prefix}.norm1.weight"], bias=sd[f"{prefix}.norm1.bias"])
    y = F.instance_norm(F.conv2d(F.relu(y), sd[f"{prefix}.conv2.weight"], padding=1),
                        weight=sd[f"{prefix}.norm2.weight"], bias=sd[f"{prefix}.norm2.bias"])
    return x + y


def _planes(image, pose):
    return pose[:, :, None, None].expand(-1, -1, image.shape[2], image.shape[3])


def _encoder_decoder(x, sd):
    """THA1's encoder-decoder body: conv7, N downsamplings, K residual blocks, N upsamplings."""
    body = "main_body.module_list"
    for i in range(1 + 2 * N + K):
        if N < i <= N + K:
            x = _res_block(x, sd, f"{body}.{i}")
        else:
            x = _conv_block(x, sd, f"{body}.{i}", transposed=i > N + K)
    return x


def tha1_morpher(sd, image, pose):
    y = _encoder_decoder(torch.cat([image, _planes(image, pose)], 1), sd)
    color = torch.tanh(F.conv2d(y, sd["color_change.0.weight"], padding=3))
    alpha = torch.sigmoid(F.conv2d(y, sd["alpha_mask.0.weight"], padding=3))
    return alpha * image + (1 - alpha) * color


def tha1_rotator(sd, image, pose):
    """(pumarola, zhou) as THA1 computes them: affine_grid/grid_sample with align_corners=True."""
    b, c, h, w = image.shape
    y = _encoder_decoder(torch.cat([image, _planes(image, pose)], 1), sd)
    color = torch.tanh(F.conv2d(y, sd["pumarola_color_change.0.weight"], padding=3))
    alpha = torch.sigmoid(F.conv2d(y, sd["pumarola_alpha_mask.0.weight"], padding=3))
    change = F.conv2d(y, sd["zhou_grid_change.weight"], padding=3)
    change = change.view(b, 2, h * w).transpose(1, 2).reshape(b, h, w, 2)
    theta = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).unsqueeze(0).repeat(b, 1, 1)
    grid = F.affine_grid(theta, [b, c, h, w], align_corners=True) + change
    zhou = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return alpha * image + (1 - alpha) * color, zhou


def tha1_combiner(sd, first, second, pose):
    """THA1's U-Net (under main_body; its upsampling list runs from index N down to 0) and heads."""
    unet = "main_body"
    x = torch.cat([first, second, _planes(first, pose)], 1)
    downs = []
    for i in range(N + 1):
        x = _conv_block(x, sd, f"{unet}.downward_modules.{i}")
        downs.append(x)
    for r in range(K):
        x = _res_block(x, sd, f"{unet}.bottleneck_modules.{r}")
    x = _conv_block(x, sd, f"{unet}.upsampling_modules.{N}", transposed=True)
    for i in range(N - 1, -1, -1):
        x = _conv_block(torch.cat([x, downs[i]], 1), sd, f"{unet}.upsampling_modules.{i}", transposed=i > 0)
    m1 = torch.sigmoid(F.conv2d(x, sd["combine_alpha_mask.0.weight"], padding=3))
    combined = m1 * first + (1 - m1) * second
    m2 = torch.sigmoid(F.conv2d(x, sd["retouch_alpha_mask.0.weight"], padding=3))
    retouch = torch.tanh(F.conv2d(x, sd["retouch_color_change.0.weight"], padding=3))
    return m2 * combined + (1 - m2) * retouch
