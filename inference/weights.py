"""Weights for inference, in one place: which files (--weights DIR and per-network sources), loading
them as eval-mode networks that agree on the image size, whether they look trained, and the device
and precision to run with."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .errors import InferenceError, WeightsInputError

WEIGHT_FILES = ("morpher", "rotator", "combiner")


def resolve_weights(weights: str | Path | None = None, morpher: str | Path | None = None,
                    rotator: str | Path | None = None, combiner: str | Path | None = None,
                    need_combiner: bool = False) -> dict[str, Path]:
    """Paths of the weight files: --weights DIR (morpher/rotator[/combiner].safetensors, or THA1's
    released .pt files) and/or per-network run folders or files (which win over DIR).
    Missing morpher/rotator -> error."""
    from models.io import WeightsError, find_in_folder, resolve_weights_path

    given = {"morpher": morpher, "rotator": rotator, "combiner": combiner}
    out: dict[str, Path] = {}
    if weights is not None:
        d = Path(weights)
        if not d.is_dir():
            raise WeightsInputError(f"{d}: weights folder not found")
        for k in WEIGHT_FILES:
            if (f := find_in_folder(d, k)) is not None:
                out[k] = f
    for k, p in given.items():
        if p is not None:
            try:
                out[k] = resolve_weights_path(p, k)
            except WeightsError as e:
                raise WeightsInputError(str(e)) from None
    for k in ("morpher", "rotator") + (("combiner",) if need_combiner else ()):
        if k not in out:
            from models.tha1 import FILE_NAMES

            where = (f"{weights}: no {k}.safetensors (nor THA1's {FILE_NAMES[k]})" if weights is not None
                     else f"no {k} weights given")
            why = "--path full needs a combiner: " if k == "combiner" else ""
            raise WeightsInputError(f"{why}{where} (give --weights DIR or --{k} RUN)")
    return out


def load_networks(paths: dict[str, Path], device: str | torch.device = "cpu") -> dict[str, nn.Module]:
    """Load each network named in `paths`, check their kinds and image sizes agree, eval mode."""
    from models.io import WeightsError, load_weights

    nets: dict[str, nn.Module] = {}
    for k, p in paths.items():
        try:
            net = load_weights(p, k)
        except WeightsError as e:
            raise WeightsInputError(str(e)) from None
        nets[k] = net.to(device).eval()
    sizes = {k: int(n.config["image_size"]) for k, n in nets.items()}
    if len(set(sizes.values())) > 1:
        raise WeightsInputError("networks disagree on image size: "
                                + ", ".join(f"{k} {s}" for k, s in sizes.items()))
    return nets


def weights_schema(paths: dict[str, Path]):
    """The pose schema the weight files were trained with (None: THA1's six numbers); all must agree."""
    from models.io import WeightsError, read_pose_schema

    try:
        schemas = {k: read_pose_schema(p, k) for k, p in paths.items()}
    except WeightsError as e:
        raise WeightsInputError(str(e)) from None
    if len({json.dumps(s.to_json() if s else None, sort_keys=True) for s in schemas.values()}) > 1:
        names = ", ".join(f"{k} {s.name if s else 'tha1'}" for k, s in schemas.items())
        raise WeightsInputError(f"weight files of different pose schemas: {names}")
    return next(iter(schemas.values()), None)


def untrained_warning(paths: dict[str, Path], names_only: bool = False) -> str | None:
    """One line naming the weight files that look untrained (models.io.TrainingRecord), or None;
    `names_only`: file names without their folders (a page shows no server paths)."""
    from models.io import UNTRAINED_BELOW, WeightsError, training_record

    doubtful: dict[str, list[str]] = {}  # description -> files
    for k, p in paths.items():
        try:
            record = training_record(p, k)
        except WeightsError:  # unreadable: loading says so
            continue
        if record.looks_untrained:
            doubtful.setdefault(record.describe(), []).append(Path(p).name if names_only else str(p))
    if not doubtful:
        return None
    which = "; ".join(f"{why}: {', '.join(files)}" for why, files in doubtful.items())
    return (f"weights look untrained ({which}); expect noise rather than a posed drawing: train on at least "
            f"{UNTRAINED_BELOW:,} examples or use THA1's released weights")


def half_of(precision: str) -> bool | None:
    """--precision auto | fp32 | fp16 -> PoserRunner's `half` (None: its default, fp16 on CUDA only)."""
    try:
        return {"auto": None, "fp32": False, "fp16": True}[precision]
    except KeyError:
        raise InferenceError(f"precision must be auto, fp32 or fp16, got {precision!r}") from None


def pick_device(name: str | None = None) -> torch.device:
    """'auto'/None -> cuda when available, else cpu; otherwise the named device (checked)."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InferenceError(f"--device {name}: CUDA is not available on this machine")
    return dev

