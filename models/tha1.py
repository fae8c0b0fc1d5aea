"""THA1's released weight files (face_morpher.pt, two_algo_face_rotator.pt, combiner.pt) as thactl networks.

The author's files are plain PyTorch state_dicts of his own module tree. Every tensor maps one to
one, shapes equal, onto a thactl network of the same architecture; `tha1_key` is that map.
Loading is strict (every key present, nothing extra, every shape equal) and never runs a pickle
(`torch.load(weights_only=True)`, tensors mapped to the CPU: the released files were saved on CUDA).
The rotator is built with grid_convention "tha1", the sampling THA1's flow was trained with.

Key layout of the author's modules:
  morpher, rotator  main_body.module_list.{i}: 0 = conv7 block, 1..n = downsampling, then the
                    residual blocks (conv1/norm1/conv2/norm2), then n upsampling blocks; each block
                    a Sequential whose .0 is the conv and .1 the InstanceNorm.
                    heads: color_change.0, alpha_mask.0 (morpher); pumarola_color_change.0,
                    pumarola_alpha_mask.0, zhou_grid_change (rotator).
  combiner          U-Net under main_body: main_body.downward_modules.{0..n},
                    main_body.bottleneck_modules.{k} (residual), main_body.upsampling_modules.{0..n}
                    held in REVERSE order of use (index n runs first, index 0 is the final conv7
                    block); heads combine_alpha_mask.0, retouch_alpha_mask.0, retouch_color_change.0.
The released files hold 59 (morpher), 60 (rotator) and 63 (combiner) tensors; the tests check the
map against the author's list of keys and shapes (../shared/THA1_STATE_DICT_KEYS.json).
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
from torch import nn

from core.errors import first_line

from .io import WeightsError

FILE_NAMES = {"morpher": "face_morpher.pt", "rotator": "two_algo_face_rotator.pt", "combiner": "combiner.pt"}
LICENCE_NOTE = ("THA1 network weights by Pramook Khungurn, released under CC BY 4.0 "
                "(https://creativecommons.org/licenses/by/4.0/); converted to thactl's format by thactl")
TILE_SIZE_AT_BOTTLENECK = 32  # THA1's bottleneck_image_size: the image side is 32 * 2**num_downsample

_RES_PARTS = {"0": "conv1", "1": "norm1", "3": "conv2", "4": "norm2"}  # thactl ResBlock.body index -> THA1
_HEADS = {
    "morpher": {"heads.change.weight": "color_change.0.weight", "heads.alpha.weight": "alpha_mask.0.weight"},
    "rotator": {"heads.change.weight": "pumarola_color_change.0.weight",
                "heads.alpha.weight": "pumarola_alpha_mask.0.weight", "flow.weight": "zhou_grid_change.weight"},
    "combiner": {"combine_alpha.weight": "combine_alpha_mask.0.weight",
                 "retouch_alpha.weight": "retouch_alpha_mask.0.weight",
                 "retouch.weight": "retouch_color_change.0.weight"},
}
_UNET = "main_body"  # where the combiner's U-Net sits in the author's module tree
# a key only the given network's THA1 state_dict has
_SIGNATURES = {"morpher": "color_change.0.weight", "rotator": "zhou_grid_change.weight",
               "combiner": "combine_alpha_mask.0.weight"}


def tha1_key(kind: str, key: str, num_downsample: int) -> str:
    """The THA1 state_dict key of thactl's `key` in a network of `kind` (KeyError if none)."""
    if key in _HEADS[kind]:
        return _HEADS[kind][key]
    if kind in ("morpher", "rotator"):
        m = re.fullmatch(r"body\.body\.(\d+)\.body\.([0134])\.(\w+)", key)
        if m:
            return f"main_body.module_list.{m[1]}.{_RES_PARTS[m[2]]}.{m[3]}"
        m = re.fullmatch(r"body\.body\.(\d+)\.([01])\.(\w+)", key)
        if m:
            return f"main_body.module_list.{m[1]}.{m[2]}.{m[3]}"
        raise KeyError(key)
    m = re.fullmatch(r"body\.res\.(\d+)\.body\.([0134])\.(\w+)", key)
    if m:
        return f"{_UNET}.bottleneck_modules.{m[1]}.{_RES_PARTS[m[2]]}.{m[3]}"
    m = re.fullmatch(r"body\.(first|last|downs\.\d+|ups\.\d+)\.([01]\.\w+)", key)
    if not m:
        raise KeyError(key)
    where, rest = m[1], m[2]
    if where == "first":
        return f"{_UNET}.downward_modules.0.{rest}"
    if where == "last":
        return f"{_UNET}.upsampling_modules.0.{rest}"
    j = int(where.split(".")[1])
    if where.startswith("downs"):
        return f"{_UNET}.downward_modules.{j + 1}.{rest}"
    return f"{_UNET}.upsampling_modules.{num_downsample - j}.{rest}"  # ups[0] (deepest) is THA1's last


def detect_kind(state: dict) -> str | None:
    """'morpher' | 'rotator' | 'combiner' when `state` has a THA1 network's signature key, else None."""
    found = [k for k, sig in _SIGNATURES.items() if sig in state]
    return found[0] if len(found) == 1 else None


def _indices(state: dict, pattern: str) -> set[int]:
    return {int(m[1]) for k in state if (m := re.fullmatch(pattern, k))}


def infer_arch(kind: str, state: dict) -> dict:
    """Constructor keywords of the thactl network with the same layout as THA1 `state`."""
    if kind == "combiner":
        first = state.get(f"{_UNET}.downward_modules.0.0.weight")
        n = len(_indices(state, rf"{_UNET}\.downward_modules\.(\d+)\..*")) - 1
        k = len(_indices(state, rf"{_UNET}\.bottleneck_modules\.(\d+)\..*"))
    else:
        first = state.get("main_body.module_list.0.0.weight")
        k = len(_indices(state, r"main_body\.module_list\.(\d+)\.(?:conv|norm)[12]\..*"))
        n = (len(_indices(state, r"main_body\.module_list\.(\d+)\..*")) - 1 - k) // 2
    if first is None or first.dim() != 4 or n < 1:
        raise ValueError("its first convolution or downsampling blocks are missing")
    return dict(image_size=TILE_SIZE_AT_BOTTLENECK * 2 ** n, base_channels=int(first.shape[0]),
                num_downsample=n, num_res_blocks=k)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a PyTorch state_dict file, on the CPU, without running any pickled code."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"{path}: weight file not found") from None
    except pickle.UnpicklingError as e:
        if "weights_only" not in str(e).lower():
            raise WeightsError(f"{path}: not a readable PyTorch file (truncated?): {str(e)[:120]}") from None
        raise WeightsError(f"{path}: holds Python objects besides tensors; not loaded (thactl never runs "
                           "code from a weight file)") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user error
        why = first_line(e, 120)
        raise WeightsError(f"{path}: neither a safetensors file nor a readable PyTorch file (truncated or "
                           f"another format?): {why}") from None
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise WeightsError(f"{path}: not a state_dict (expected a dict of named tensors, "
                           f"found {type(state).__name__})")
    return state


def _fit_problems(net: nn.Module, kind: str, state: dict) -> tuple[dict, list[str]]:
    """(thactl state_dict, problems) for loading THA1 `state` into `net`."""
    n = net.config["num_downsample"]
    wanted = {tha1_key(kind, k, n): (k, v.shape) for k, v in net.state_dict().items()}
    missing = sorted(set(wanted) - set(state))
    unexpected = sorted(set(state) - set(wanted))
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} key(s) ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} key(s) ({', '.join(unexpected[:3])}"
                        f"{', ...' if len(unexpected) > 3 else ''})")
    converted = {}
    for t_key, (key, shape) in wanted.items():
        if t_key in state:
            if tuple(state[t_key].shape) != tuple(shape):
                problems.append(f"'{t_key}' has shape {tuple(state[t_key].shape)}, expected {tuple(shape)}")
            converted[key] = state[t_key].float()
    return converted, problems


def network_from_state(state: dict, kind: str | None = None, name: str = "state_dict") -> nn.Module:
    """The thactl network holding THA1 `state` (strict); `kind` checks which network it must be."""
    from . import NETWORKS

    found = detect_kind(state)
    if found is None:
        raise WeightsError(f"{name}: not a THA1 network's state_dict (none of "
                           f"{', '.join(_SIGNATURES.values())}; first key {next(iter(state))!r})")
    if kind is not None and found != kind:
        raise WeightsError(f"{name}: holds THA1's {found}, expected the {kind}")
    try:
        arch = infer_arch(found, state)
    except ValueError as e:
        raise WeightsError(f"{name}: not a complete THA1 {found}: {e}") from None
    if found == "rotator":
        arch["grid_convention"] = "tha1"
    net = NETWORKS[found](**arch)
    converted, problems = _fit_problems(net, found, state)
    if problems:
        raise WeightsError(f"{name}: does not fit THA1's {found} layout: {'; '.join(problems[:3])}")
    net.load_state_dict(converted, strict=True)
    return net


def load_tha1(path: str | Path, kind: str | None = None) -> nn.Module:
    """The thactl network (on the CPU) holding THA1 weight file `path`."""
    return network_from_state(read_state_dict(path), kind, name=str(path))


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def import_folder(src: str | Path, out: str | Path, force: bool = False) -> list[Path]:
    """Convert THA1's files in folder `src` to OUT/<kind>.safetensors (thactl's format).

    Every file found is loaded (strictly) before anything is written; existing outputs are kept
    unless `force`. The metadata records the source file's name and sha256, the licence note and
    that these are THA1's released (trained) weights.
    Returns the files written.
    """
    from .io import TrainingRecord, save_weights

    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise WeightsError(f"{src}: folder not found")
    found = {k: src / name for k, name in FILE_NAMES.items() if (src / name).is_file()}
    if not found:
        raise WeightsError(f"{src}: none of THA1's files ({', '.join(FILE_NAMES.values())}) in this folder")
    targets = {k: out / f"{k}.safetensors" for k in found}
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not force:
        raise WeightsError(f"{existing[0]}: already exists; pass --force to replace it")
    nets = {k: load_tha1(p, k) for k, p in found.items()}
    written = []
    for k, net in nets.items():
        meta = {"source": found[k].name, "source_sha256": _sha256(found[k]), "licence": LICENCE_NOTE,
                **TrainingRecord(released="THA1").metadata()}
        written.append(save_weights(net, targets[k], extra_metadata=meta))
    return written
