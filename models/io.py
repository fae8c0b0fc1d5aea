"""Network weights as safetensors, with the architecture in the metadata.

Metadata: {"kind": "morpher"|"rotator"|"combiner", "config": json of the constructor keywords,
"format": "thactl-weights"} (+ any extra string entries, e.g. where imported weights came from).
`load_weights` rebuilds the network from that alone. It also takes THA1's released PyTorch files
(models/tha1.py), told apart by content: a safetensors file starts with its header's length then '{'.

The training record (`TrainingRecord`, `training_record`) says whether weights were trained:
"examples_trained" (decimal: examples thactl trained them on, counting the run they started from)
and "released_weights" (e.g. "THA1": they are, or started from, published trained weights).
THA1's .pt files and their imports count as released; a file with neither entry has no record.

"pose_schema" (JSON, `read_pose_schema`): the pose schema of the data the network was trained on
(core.poseschema, docs/pose-schemas.md); absent for THA1's six numbers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from core.atomicfile import atomic_path
from core.errors import first_line

KINDS = ("morpher", "rotator", "combiner")
EXAMPLES_KEY, RELEASED_KEY, SCHEMA_KEY = "examples_trained", "released_weights", "pose_schema"
UNTRAINED_BELOW = 1000  # fewer examples than this (and not released weights): the output is noise


class WeightsError(ValueError):
    """A weight file or run folder is missing or unusable (message names the file)."""


def _network_classes():
    from . import NETWORKS
    return NETWORKS


def unwrap(module: nn.Module) -> nn.Module:
    """The network inside a torch.compile and/or DistributedDataParallel wrapper."""
    module = getattr(module, "_orig_mod", module)  # torch.compile
    return getattr(module, "module", module)  # DistributedDataParallel


def save_weights(module: nn.Module, path: str | Path, extra_metadata: dict[str, str] | None = None) -> Path:
    """Write `module`'s weights (fp32, contiguous) to `path` atomically; returns the path.

    `extra_metadata`: more string entries for the header (cannot replace kind/config/format)."""
    from safetensors.torch import save_file

    module = unwrap(module)
    kind = getattr(module, "kind", None)
    if kind not in KINDS:
        raise WeightsError(f"{path}: cannot save a {type(module).__name__} (not a THA network)")
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in module.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {str(k): str(v) for k, v in (extra_metadata or {}).items()}
    meta.update({"format": "thactl-weights", "kind": kind, "config": json.dumps(module.config, sort_keys=True)})
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path


def file_names(kind: str) -> tuple[str, str]:
    """The names a folder may hold `kind`'s weights under: thactl's, then THA1's released file."""
    from .tha1 import FILE_NAMES

    return f"{kind}.safetensors", FILE_NAMES[kind]


def find_in_folder(folder: Path, kind: str) -> Path | None:
    """FOLDER/<kind>.safetensors, else FOLDER/<THA1's file name>, else None."""
    return next((folder / n for n in file_names(kind) if (folder / n).is_file()), None)


def resolve_weights_path(path_or_run_dir: str | Path, kind: str | None = None) -> Path:
    """A weight file, or the one for `kind` in a folder (a run folder or a folder of THA1's files)."""
    p = Path(path_or_run_dir)
    if p.is_dir():
        if kind is None:
            found = [f for k in KINDS if (f := find_in_folder(p, k)) is not None]
            if len(found) != 1:
                raise WeightsError(f"{p}: expected exactly one of {', '.join(k + '.safetensors' for k in KINDS)}"
                                   f" (or THA1's file), found {len(found)}; say which network")
            return found[0]
        found = find_in_folder(p, kind)
        if found is None:
            raise WeightsError(f"{p}: {' / '.join(file_names(kind))} not found in this folder")
        p = found
    if not p.is_file():
        raise WeightsError(f"{p}: weight file not found")
    return p


def is_safetensors(path: str | Path) -> bool:
    """True when the file starts like a safetensors file (8-byte header length, then '{')."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") < 100_000_000


def _header(path: str | Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except Exception as e:  # noqa: BLE001
        raise WeightsError(f"{path}: not a safetensors file ({e})") from None


def read_metadata(path: str | Path) -> dict:
    meta = _header(path)
    if meta.get("kind") not in KINDS or "config" not in meta:
        raise WeightsError(f"{path}: no thactl metadata (kind/config); not written by thactl")
    return {"kind": meta["kind"], "config": json.loads(meta["config"])}


def load_weights(path_or_run_dir: str | Path, kind: str | None = None, map_location: str = "cpu") -> nn.Module:
    """The network stored in a .safetensors file or a THA1 .pt file (told apart by content), or
    in a folder's `<kind>.safetensors` / THA1 file (see resolve_weights_path)."""
    from safetensors.torch import load_file

    path = resolve_weights_path(path_or_run_dir, kind)
    if not is_safetensors(path):
        from .tha1 import load_tha1

        return load_tha1(path, kind).to(map_location)
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


@dataclass(frozen=True)
class TrainingRecord:
    """How much training weights have had: `examples` thactl trained them on (None: not recorded),
    `released` the published weights they are or started from (None: none)."""
    examples: int | None = None
    released: str | None = None

    @property
    def looks_untrained(self) -> bool:
        """Neither released weights nor UNTRAINED_BELOW examples of training on record."""
        return self.released is None and (self.examples is None or self.examples < UNTRAINED_BELOW)

    def after(self, seen: int) -> "TrainingRecord":
        """The record of these weights trained on `seen` more examples."""
        return TrainingRecord((self.examples or 0) + int(seen), self.released)

    def metadata(self) -> dict[str, str]:
        """The safetensors metadata entries holding this record."""
        meta = {} if self.examples is None else {EXAMPLES_KEY: str(int(self.examples))}
        return meta | ({RELEASED_KEY: self.released} if self.released else {})

    @classmethod
    def from_metadata(cls, meta: dict) -> "TrainingRecord":
        from .tha1 import LICENCE_NOTE

        released = meta.get(RELEASED_KEY) or ("THA1" if meta.get("licence") == LICENCE_NOTE else None)
        examples = meta.get(EXAMPLES_KEY)
        try:
            examples = int(examples) if examples is not None else None
        except (TypeError, ValueError):
            examples = None
        return cls(examples if examples is None or examples >= 0 else None, released)

    def describe(self) -> str:
        if self.released:
            where = f" (+{self.examples:,} examples)" if self.examples else ""
            return f"{self.released}'s released weights{where}"
        return "no training record" if self.examples is None else f"trained on {self.examples:,} examples"


def training_record(path: str | Path, kind: str | None = None) -> TrainingRecord:
    """The training record of a weight file (or of `kind`'s file in a folder): THA1's .pt files are
    released weights; a .safetensors file's record is its metadata's."""
    path = resolve_weights_path(path, kind)
    if not is_safetensors(path):
        return TrainingRecord(released="THA1")
    return TrainingRecord.from_metadata(_header(path))


def schema_metadata(schema) -> dict[str, str]:
    """The metadata entry recording a pose schema (none for THA1's six numbers)."""
    if schema is None or schema.is_tha1:
        return {}
    return {SCHEMA_KEY: json.dumps(schema.to_json(), ensure_ascii=False, sort_keys=True)}


def read_pose_schema(path: str | Path, kind: str | None = None):
    """The pose schema a weight file was trained with (core.poseschema.PoseSchema), None for THA1's
    six numbers (THA1's files, and thactl's without the entry); WeightsError names a bad entry."""
    from core.poseschema import SchemaError, parse_schema

    path = resolve_weights_path(path, kind)
    if not is_safetensors(path):
        return None
    raw = _header(path).get(SCHEMA_KEY)
    if raw is None:
        return None
    try:
        return parse_schema(json.loads(raw), f"{path} (pose_schema)")
    except (json.JSONDecodeError, SchemaError) as e:
        raise WeightsError(f"{path}: unusable pose_schema entry ({first_line(e)})") from None
