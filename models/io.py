"""Network weights as safetensors, with the architecture in the metadata.

Metadata: {"kind": "morpher"|"rotator"|"combiner", "config": json of the constructor keywords,
"format": "thactl-weights"}. `load_weights` rebuilds the network from that alone.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from renderer.atomicfile import atomic_path
from renderer.errors import first_line

KINDS = ("morpher", "rotator", "combiner")


class WeightsError(ValueError):
    """A weight file or run folder is missing or unusable (message names the file)."""


def _network_classes():
    from . import NETWORKS
    return NETWORKS


def unwrap(module: nn.Module) -> nn.Module:
    """The network inside a torch.compile and/or DistributedDataParallel wrapper."""
    module = getattr(module, "_orig_mod", module)  # torch.compile
    return getattr(module, "module", module)  # DistributedDataParallel


def save_weights(module: nn.Module, path: str | Path) -> Path:
    """Write `module`'s weights (fp32, contiguous) to `path` atomically; returns the path."""
    from safetensors.torch import save_file

    module = unwrap(module)
    kind = getattr(module, "kind", None)
    if kind not in KINDS:
        raise WeightsError(f"{path}: cannot save a {type(module).__name__} (not a THA network)")
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in module.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "thactl-weights", "kind": kind,
                                             "config": json.dumps(module.config, sort_keys=True)})
    return path


def resolve_weights_path(path_or_run_dir: str | Path, kind: str | None = None) -> Path:
    p = Path(path_or_run_dir)
    if p.is_dir():
        if kind is None:
            found = [p / f"{k}.safetensors" for k in KINDS if (p / f"{k}.safetensors").is_file()]
            if len(found) != 1:
                raise WeightsError(f"{p}: expected exactly one of {', '.join(k + '.safetensors' for k in KINDS)}"
                                   f", found {len(found)}; say which network")
            return found[0]
        p = p / f"{kind}.safetensors"
    if not p.is_file():
        raise WeightsError(f"{p}: weight file not found")
    return p


def read_metadata(path: str | Path) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # noqa: BLE001
        raise WeightsError(f"{path}: not a safetensors file ({e})") from None
    if meta.get("kind") not in KINDS or "config" not in meta:
        raise WeightsError(f"{path}: no thactl metadata (kind/config); not written by thactl")
    return {"kind": meta["kind"], "config": json.loads(meta["config"])}


def load_weights(path_or_run_dir: str | Path, kind: str | None = None, map_location: str = "cpu") -> nn.Module:
    """The network stored in a .safetensors file, or `RUN/<kind>.safetensors` for a run folder."""
    from safetensors.torch import load_file

    path = resolve_weights_path(path_or_run_dir, kind)
    meta = read_metadata(path)
    if kind is not None and meta["kind"] != kind:
        raise WeightsError(f"{path}: holds a {meta['kind']}, expected a {kind}")
    net = _network_classes()[meta["kind"]](**meta["config"])
    state = load_file(str(path), device=map_location)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise WeightsError(f"{path}: weights do not fit a {meta['kind']} {meta['config']}: "
                           f"{first_line(e)}") from None
    return net.to(map_location)
