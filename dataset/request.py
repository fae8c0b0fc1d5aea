"""What `thactl render` was asked (`RenderRequest`), its checks, and the settings that must match
between runs writing into the same output folder (`request_settings`)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dataset.discover import file_hash, parse_ratios, read_json
from dataset.errors import DatasetError


SAMPLE_MODELS = 6


SAMPLE_COUNT = 200


@dataclass
class RenderRequest:
    out: Path
    models: Path | None = None
    count: int | None = None
    val_count: int | None = None
    test_count: int | None = None
    seed: int = 0
    size: int = 256
    aa: int = 4
    shading: str = "phong"
    shard_size: int = 1000
    group_size: int = 16
    ambient: tuple[float, float] = (0.5, 1.2)
    split_ratios: str = "0.9,0.05,0.05"
    split_file: Path | None = None
    overrides: Path | None = None
    workers: int | None = None
    part: str | None = None
    force: bool = False
    progress: bool = True
    dedupe: bool = False          # keep only the first model (by path) of each same-mesh group
    schema: str | None = None     # pose schema: a built-in name or a file (None: tha1)

    def pose_schema(self):
        """The loaded pose schema (core.poseschema), or None for THA1's (rendered as before)."""
        from core.poseschema import load_schema

        s = load_schema(self.schema)
        return None if s.is_tha1 else s


def check_request(r: RenderRequest) -> None:
    if r.size < 16 or r.size > 4096:
        raise DatasetError(f"--size must be between 16 and 4096, got {r.size}")
    if r.aa not in (0, 1, 2, 4, 8, 16):
        raise DatasetError(f"--aa must be 0, 1, 2, 4, 8 or 16, got {r.aa}")
    if r.count is not None and r.count < 1:
        raise DatasetError(f"--count must be >= 1, got {r.count}")
    for name, v in (("--val-count", r.val_count), ("--test-count", r.test_count)):
        if v is not None and v < 0:
            raise DatasetError(f"{name} must be >= 0, got {v}")
    if r.shard_size < 1:
        raise DatasetError(f"--shard-size must be >= 1, got {r.shard_size}")
    if r.group_size < 1:
        raise DatasetError(f"--group-size must be >= 1, got {r.group_size}")
    lo, hi = r.ambient
    if not (0 <= lo <= hi <= 10):
        raise DatasetError(f"--ambient must be LOW,HIGH with 0 <= LOW <= HIGH, got {lo},{hi}")
    if r.workers is not None and r.workers < 1:
        raise DatasetError(f"--workers must be >= 1, got {r.workers}")


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover
        return max(1, os.cpu_count() or 1)


def request_settings(r: RenderRequest, models_label: str) -> dict:
    """What must match between runs writing into the same OUT."""
    out = dict(
        models=models_label, count=r.count, val_count=r.val_count, test_count=r.test_count,
        seed=r.seed, size=r.size, aa=r.aa, shading=r.shading, shard_size=r.shard_size,
        group_size=r.group_size, ambient=[float(r.ambient[0]), float(r.ambient[1])],
        split_ratios=list(parse_ratios(r.split_ratios)) if r.split_file is None else None,
        split_file_sha256=file_hash(r.split_file), overrides_sha256=file_hash(r.overrides),
    )
    if r.dedupe:   # only when set, so data made before the option existed still resumes
        out["dedupe"] = True
    schema = r.pose_schema()
    if schema is not None:   # the schema in full and its sampling law; absent for THA1, whose data is unchanged
        from core.poseschema import SAMPLING_LAW

        out["schema"] = schema.to_json()
        out["schema_sampling_law"] = SAMPLING_LAW
    return out


def parse_part(text: str | None) -> tuple[int, int] | None:
    if text in (None, ""):
        return None
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        i = n = 0
    if n < 1 or not 1 <= i <= n:
        raise DatasetError(f"--part must be i/n with 1 <= i <= n (e.g. 1/4), got {text!r}")
    return i, n


def models_source(r: RenderRequest) -> tuple[Path | None, str]:
    """(models folder or None for the built-in samples, its label in the settings); sets the
    default --count of a samples run; checks --models, --count and the overrides table."""
    if r.models is None:
        models_root, models_label = None, "(built-in samples)"
        if r.count is None:
            r.count = SAMPLE_COUNT
    else:
        models_root = Path(r.models)
        if not models_root.is_dir():
            raise DatasetError(f"{models_root}: models folder does not exist"
                               if not models_root.exists() else f"{models_root}: not a folder")
        models_label = str(models_root.resolve())
        if r.count is None:
            raise DatasetError("--count is required with --models (the number of training "
                               "examples; THA1 used 500000)")
    if r.overrides is not None:
        table = read_json(r.overrides, "overrides file not found", "not a readable JSON file")
        if not isinstance(table, dict):
            raise DatasetError(f"{r.overrides}: must be a JSON object mapping model paths to overrides")
    return models_root, models_label
