"""The verdict cache shared by `thactl render`, `thactl models check` and the model page: one
model's verdict (dataset.modelcheck.ModelCheck) is computed once per model file, override file,
overrides table, checks version and shading, and kept in `<cache>/validation.json`
(the collection's cache folder, dataset.collection.collection_cache_dir).

`iter_checks` yields the verdicts of a list of discovered models, reading the cache and validating
the others in the render workers (dataset.workers); `store_verdicts` merges new verdicts into the
cache file; `validation_key` is a model's key in it.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from core.atomicfile import write_json
from dataset.discover import ModelSource, file_hash
from dataset.modelcheck import PROBE_SIZE, VALIDATION_VERSION, ModelCheck
from dataset.shards import sha256_file
from dataset.workers import progress_bar, running, validate_task, worker_args


@dataclass
class CheckOptions:
    """What a model's verdict depends on besides the model's own files."""
    models_root: Path                      # the folder rel_paths are relative to
    overrides: Path | None = None          # --overrides table (JSON)
    shading: str = "phong"


def check_models(found: list[ModelSource], cache: Path, opts: CheckOptions, workers: int = 1,
                 progress: bool = False) -> dict[str, ModelCheck]:
    """The verdict (dataset.modelcheck.ModelCheck) of every model of `found` without a discovery
    error, by rel_path in `found`'s order (iter_checks, collected)."""
    return {c.rel_path: c for c in iter_checks(found, cache, opts, workers, progress)}


#: a long validation writes its finished verdicts to the cache at least this often
CACHE_WRITE_SECONDS = 10.0


def validation_key(m: ModelSource, overrides_hash: str, shading: str) -> str:
    """The validation cache key of one model: what its verdict depends on (its path, its file,
    its override file, the overrides table's hash, the checks' version, the shading)."""
    return "|".join([m.rel_path, m.sha256, _override_fingerprint(m.path), overrides_hash,
                     str(VALIDATION_VERSION), str(shading)])


def iter_checks(found: list[ModelSource], cache: Path, opts: CheckOptions, workers: int = 1,
                progress: bool = False, processes: bool = False,
                on_todo: Callable[[int], None] | None = None) -> Iterator[ModelCheck]:
    """The verdict of every model of `found` without a discovery error, in `found`'s order, each
    as soon as it is known.  Verdicts come from `cache`/validation.json when the model file, its
    override file, the overrides table, the checks and the shading are unchanged; the others are
    computed in up to `workers` processes (in this process when workers is 1, unless `processes`)
    and added to the cache, which is written every CACHE_WRITE_SECONDS and at the end.  `on_todo`
    is told how many models need validating before the first one starts."""
    usable = [m for m in found if not m.error]
    ov_hash = file_hash(opts.overrides) or ""
    vcache = _read_cache(cache / "validation.json")
    keys = {m.rel_path: validation_key(m, ov_hash, opts.shading) for m in usable}
    todo = [m for m in usable if keys[m.rel_path] not in vcache]
    if on_todo is not None:
        on_todo(len(todo))
    if not todo:
        yield from (ModelCheck.from_json(vcache[keys[m.rel_path]]) for m in usable)
        return
    fresh: dict[str, dict] = {}
    written = time.monotonic()
    n_bad = len(found) - len(usable)
    init_args = worker_args(PROBE_SIZE, 0, opts.shading, opts.overrides, opts.models_root, workers)
    with running(min(workers, len(todo)), init_args, processes) as runner:
        bar = progress_bar(len(todo), "validate", progress, unit="model")
        results = runner.imap(validate_task, ((str(m.path), m.rel_path, m.sha256) for m in todo))
        try:
            for m in usable:
                res = vcache.get(keys[m.rel_path])
                if res is None:
                    res = fresh[keys[m.rel_path]] = vcache[keys[m.rel_path]] = next(results)
                    n_bad += not res["ok"]
                    bar.set_postfix(rejected=n_bad, refresh=False)
                    bar.update(1)
                    if time.monotonic() - written > CACHE_WRITE_SECONDS:
                        fresh, written = store_verdicts(cache, fresh), time.monotonic()
                yield ModelCheck.from_json(res)
        finally:
            bar.close()
            store_verdicts(cache, fresh)


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def store_verdicts(cache: Path, fresh: dict) -> dict:
    """Merge `fresh` verdicts (validation_key -> ModelCheck JSON) into `cache`/validation.json
    (another run may have added others meanwhile); returns an empty dict for the next batch."""
    if fresh:
        path = cache / "validation.json"
        merged = _read_cache(path)
        merged.update(fresh)
        cache.mkdir(parents=True, exist_ok=True)
        write_json(path, merged, durable=True)
    return {}


def _override_fingerprint(path: Path) -> str:
    beside = path.with_name(path.name + ".thactl.json")
    return sha256_file(beside) if beside.is_file() else ""
