"""Test helpers: state_dicts laid out exactly as THA1's released files, and THA1's forward pass.

Both are written from THA1's module layout (key names, shapes, order of use), independently of
models/tha1.py, so tests can check that module against them.
"""
from __future__ import annotations

import contextlib
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F

FILE_NAMES = {"morpher": "face_morpher.pt", "rotator": "two_algo_face_rotator.pt", "combiner": "combiner.pt"}
HEADS = {"morpher": {"color_change.0.weight": 4, "alpha_mask.0.weight": 4},
         "rotator": {"pumarola_color_change.0.weight": 4, "pumarola_alpha_mask.0.weight": 4,
                     "zhou_grid_change.weight": 2},
         "combiner": {"combine_alpha_mask.0.weight": 4, "retouch_alpha_mask.0.weight": 4,
                      "retouch_color_change.0.weight": 4}}


def _block(prefix: str, weight_shape: tuple, out_channels: int) -> dict[str, tuple]:
    return {f"{prefix}.0.weight": weight_shape, f"{prefix}.1.weight": (out_channels,),
            f"{prefix}.1.bias": (out_channels,)}


def _res(prefix: str, c: int) -> dict[str, tuple]:
    out = {}
    for i in (1, 2):
        out.update({f"{prefix}.conv{i}.weight": (c, c, 3, 3), f"{prefix}.norm{i}.weight": (c,),
                    f"{prefix}.norm{i}.bias": (c,)})
    return out


def tha1_shapes(kind: str, b: int = 64, n: int = 3, k: int = 6) -> dict[str, tuple]:
    """THA1's state_dict keys and shapes for `kind` (b base channels, n downsamplings, k residual blocks)."""
    shapes: dict[str, tuple] = {}
    top = b * 2 ** n
    if kind in ("morpher", "rotator"):
        body = "main_body.module_list"
        shapes.update(_block(f"{body}.0", (b, 7, 7, 7), b))
        for i in range(n):
            c = b * 2 ** i
            shapes.update(_block(f"{body}.{1 + i}", (2 * c, c, 4, 4), 2 * c))
        for r in range(k):
            shapes.update(_res(f"{body}.{1 + n + r}", top))
        for j in range(n):
            c = top // 2 ** j
            shapes.update(_block(f"{body}.{1 + n + k + j}", (c, c // 2, 4, 4), c // 2))  # ConvTranspose: (in, out)
    else:
        shapes.update(_block("downward_modules.0", (b, 11, 7, 7), b))
        for i in range(n):
            c = b * 2 ** i
            shapes.update(_block(f"downward_modules.{1 + i}", (2 * c, c, 4, 4), 2 * c))
        for r in range(k):
            shapes.update(_res(f"bottleneck_modules.{r}", top))
        c = top
        for level in range(n):  # order of use; THA1 inserts each at the front of its list
            cin = c if level == 0 else 2 * c
            shapes.update(_block(f"upsampling_modules.{n - level}", (cin, c // 2, 4, 4), c // 2))
            c //= 2
        shapes.update(_block("upsampling_modules.0", (b, 2 * b, 7, 7), b))
    for key, out in HEADS[kind].items():
        shapes[key] = (out, b, 7, 7)
    return shapes


def tha1_state(kind: str, b: int = 64, n: int = 3, k: int = 6, seed: int = 0, constant: bool = False):
    """A THA1-layout state_dict: random values (distinct per tensor), or tensor i filled with i + 1.

    The random flow head is scaled so the flow moves pixels by up to ~10 % of the image, as a trained
    rotator's does (whole-image flows would make fp32 rounding differences visible on noise images)."""
    g = torch.Generator().manual_seed(seed)
    out = OrderedDict()  # as Module.state_dict() returns it, with the per-module version record
    out._metadata = OrderedDict([("", {"version": 1})])
    for i, (key, shape) in enumerate(tha1_shapes(kind, b, n, k).items()):
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


def write_tha1_folder(folder: Path, b: int = 4, n: int = 3, k: int = 6, seed: int = 0) -> Path:
    """The three files under THA1's names, saved 'on CUDA'."""
    folder.mkdir(parents=True, exist_ok=True)
    with saved_as_cuda():
        for i, (kind, name) in enumerate(FILE_NAMES.items()):
            torch.save(tha1_state(kind, b, n, k, seed=seed + i), folder / name)
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


def _encoder_decoder(x, sd, n, k):
    body = "main_body.module_list"
    for i in range(1 + 2 * n + k):
        if n < i <= n + k:
            x = _res_block(x, sd, f"{body}.{i}")
        else:
            x = _conv_block(x, sd, f"{body}.{i}", transposed=i > n + k)
    return x


def tha1_morpher(sd, image, pose, n=3, k=6):
    y = _encoder_decoder(torch.cat([image, _planes(image, pose)], 1), sd, n, k)
    color = torch.tanh(F.conv2d(y, sd["color_change.0.weight"], padding=3))
    alpha = torch.sigmoid(F.conv2d(y, sd["alpha_mask.0.weight"], padding=3))
    return alpha * image + (1 - alpha) * color


def tha1_rotator(sd, image, pose, n=3, k=6):
    """(pumarola, zhou) as THA1 computes them: affine_grid/grid_sample with align_corners=True."""
    b, c, h, w = image.shape
    y = _encoder_decoder(torch.cat([image, _planes(image, pose)], 1), sd, n, k)
    color = torch.tanh(F.conv2d(y, sd["pumarola_color_change.0.weight"], padding=3))
    alpha = torch.sigmoid(F.conv2d(y, sd["pumarola_alpha_mask.0.weight"], padding=3))
    change = F.conv2d(y, sd["zhou_grid_change.weight"], padding=3)
    change = change.view(b, 2, h * w).transpose(1, 2).reshape(b, h, w, 2)
    theta = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).unsqueeze(0).repeat(b, 1, 1)
    grid = F.affine_grid(theta, [b, c, h, w], align_corners=True) + change
    zhou = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return alpha * image + (1 - alpha) * color, zhou


def tha1_combiner(sd, first, second, pose, n=3, k=6):
    x = torch.cat([first, second, _planes(first, pose)], 1)
    downs = []
    for i in range(n + 1):
        x = _conv_block(x, sd, f"downward_modules.{i}")
        downs.append(x)
    for r in range(k):
        x = _res_block(x, sd, f"bottleneck_modules.{r}")
    x = _conv_block(x, sd, f"upsampling_modules.{n}", transposed=True)
    for i in range(n - 1, -1, -1):
        x = _conv_block(torch.cat([x, downs[i]], 1), sd, f"upsampling_modules.{i}", transposed=i > 0)
    m1 = torch.sigmoid(F.conv2d(x, sd["combine_alpha_mask.0.weight"], padding=3))
    combined = m1 * first + (1 - m1) * second
    m2 = torch.sigmoid(F.conv2d(x, sd["retouch_alpha_mask.0.weight"], padding=3))
    retouch = torch.tanh(F.conv2d(x, sd["retouch_color_change.0.weight"], padding=3))
    return m2 * combined + (1 - m2) * retouch
