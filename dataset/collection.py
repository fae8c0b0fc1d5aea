"""A whole model collection checked the way `thactl render` checks it (`thactl models check`, the
model page of `thactl serve`).

Discovery is dataset.discover.discover_models (folders, zips), validation is
dataset.validate.validate_model run by the render command's own workers, and results are cached
under the same key as render's (model path, file content, override files, validation version,
shading), so a model checked here gets the same verdict there.

The cache (zip extractions and validation results) lives outside the models folder, in
`$XDG_CACHE_HOME/thactl/collections/<hash of the folder's path>/` (~/.cache when unset), so a
read-only or shared collection is never written to.
Results stream model by model in discovery order; the cache is written every few seconds, so
an interrupted scan of thousands of models keeps what it did.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from dataset.discover import ModelSource, discover_models
from dataset.errors import DatasetError
from dataset.shards import sha256_file
from dataset.validate import VALIDATION_VERSION, ModelCheck

log = logging.getLogger("thactl.dataset")

CACHE_FILE = "validation.json"
CACHE_WRITE_SECONDS = 5.0
MORPH_KEYS = ("left_eye", "right_eye", "both_eyes", "mouth")


def collection_cache_dir(models_root: Path) -> Path:
    """Where the zip extractions and the validation cache of a collection live (see module doc)."""
    root = Path(models_root).resolve()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "thactl" / "collections" / hashlib.sha256(str(root).encode()).hexdigest()[:16]


def override_file_hash(overrides: Path | None) -> str:
    if overrides is None:
        return ""
    p = Path(overrides)
    if not p.is_file():
        raise DatasetError(f"{p}: overrides file not found")
    return sha256_file(p)


def validation_key(m: ModelSource, overrides_hash: str, shading: str = "phong") -> str:
    """The cache key of one model's validation: render's key (dataset.generate)."""
    from dataset.generate import _override_fingerprint

    return "|".join([m.rel_path, m.sha256, _override_fingerprint(m.path), overrides_hash,
                     str(VALIDATION_VERSION), str(shading)])


def read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_cache(path: Path, fresh: dict) -> None:
    """Merge `fresh` entries into the cache file (another scan may have written it meanwhile)."""
    from dataset.generate import write_json_atomic

    merged = read_cache(path)
    merged.update(fresh)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, merged)


@dataclass
class CheckSettings:
    models: Path
    overrides: Path | None = None
    workers: int = 1
    shading: str = "phong"
    cache_dir: Path | None = None     # default: collection_cache_dir(models)
    isolate: bool = False             # validate in worker processes even with one worker


def discover_with_hashes(cfg: CheckSettings) -> list[ModelSource]:
    """discover_models plus each file's sha256 (a read error becomes the model's `error`)."""
    cache_dir = cfg.cache_dir or collection_cache_dir(cfg.models)
    found = discover_models(cfg.models, cache_dir, exclude=[cache_dir])
    for m in found:
        if not m.error:
            try:
                m.sha256 = sha256_file(m.path)
            except OSError as e:
                m.error = f"cannot read file ({e.strerror or e})"
    return found


def check_collection(cfg: CheckSettings, found: list[ModelSource] | None = None,
                     on_todo: Callable[[int], None] | None = None) -> Iterator[ModelCheck]:
    """One ModelCheck per discovered model, in discovery order; cached verdicts are reused,
    the others are validated by render's workers (`cfg.workers` processes). `on_todo` is told
    how many models need validating before the first is started. Never raises for a bad model."""
    from dataset.generate import _RestartingPool, _Runner, _validate_task

    cache_dir = cfg.cache_dir or collection_cache_dir(cfg.models)
    found = discover_with_hashes(cfg) if found is None else found
    ov_hash = override_file_hash(cfg.overrides)
    cache_path = cache_dir / CACHE_FILE
    cache = read_cache(cache_path)
    keys = {m.rel_path: validation_key(m, ov_hash, cfg.shading) for m in found if not m.error}
    todo = [m for m in found if not m.error and keys[m.rel_path] not in cache]
    if on_todo is not None:
        on_todo(len(todo))
    init_args = (256, 4, cfg.shading, str(cfg.overrides) if cfg.overrides else None,
                 str(cfg.models), 1 if cfg.workers > 1 else None, logging.getLogger("thactl").level)
    runner = None
    if todo:
        n = max(1, min(cfg.workers, len(todo)))
        runner = _RestartingPool(n, init_args) if cfg.isolate else _Runner(n, init_args)
    fresh: dict = {}
    last_write = time.monotonic()
    try:
        results = runner.imap(_validate_task, ((str(m.path), m.rel_path, m.sha256) for m in todo)) \
            if runner else iter(())
        for m in found:
            if m.error:
                yield ModelCheck(m.rel_path, False, reason=m.error, sha256=m.sha256)
                continue
            rec = cache.get(keys[m.rel_path])
            if rec is None:
                rec = next(results)
                fresh[keys[m.rel_path]] = rec
            yield ModelCheck.from_json(rec)
            if fresh and time.monotonic() - last_write > CACHE_WRITE_SECONDS:
                write_cache(cache_path, fresh)
                cache.update(fresh)
                fresh = {}
                last_write = time.monotonic()
    finally:
        if runner is not None:
            runner.close()
        if fresh:
            try:
                write_cache(cache_path, fresh)
            except OSError as e:
                log.warning("%s: cannot write the validation cache (%s)", cache_path, e.strerror or e)


# ---------------------------------------------------------------- reports

def check_record(c: ModelCheck) -> dict:
    """The machine-readable record of one model (`models check --json`)."""
    mesh = c.mesh or {}
    return dict(path=c.rel_path, ok=c.ok, reason=c.reason, format=c.format,
                vertices=mesh.get("vertices"), triangles=mesh.get("triangles"),
                morphs={k: c.morphs.get(k) for k in MORPH_KEYS} if c.morphs else {},
                decided=c.decided, one_eye_morphs=c.one_eye_morphs, neck=c.neck, frame=c.frame,
                notes=c.notes, sha256=c.sha256)


def check_line(c: ModelCheck) -> str:
    """One human-readable line: status, path, format, counts, rig, camera box or reason."""
    mesh = c.mesh or {}
    parts = [("OK      " if c.ok else "REJECTED"), c.rel_path]
    if c.format:
        parts.append(f"{c.format}, {mesh.get('vertices', '?')} v, {mesh.get('triangles', '?')} t")
    if c.morphs:
        def morph(key: str, label: str) -> str:
            how = c.decided.get(key, "")
            name = c.morphs.get(key)
            return f"{label}={name or '-'}" + (f" ({how})" if name and how else "")
        parts.append(" ".join(morph(k, lab) for k, lab in
                              (("left_eye", "L"), ("right_eye", "R"), ("both_eyes", "both"), ("mouth", "mouth"))))
    if c.neck:
        parts.append(f"neck {c.neck.get('root') or '-'}/{c.neck.get('tip') or '-'}")
    if c.frame:
        parts.append("frame " + " ".join(f"{v:.3f}" for v in c.frame)
                     + (" (override)" if c.decided.get("frame") == "override" else ""))
    parts += [n for n in c.notes if "texture" in n]
    if not c.ok:
        parts.append(c.reason)
    return "  ".join(parts)


def run_check(cfg: CheckSettings, echo: Callable[[str], None], json_path: Path | None = None,
              progress: bool = True) -> tuple[int, int]:
    """`thactl models check`: one line per model through `echo`, a progress bar on stderr while
    models are validated, the records as a JSON list in `json_path` (atomically) at the end.
    Returns (usable, not usable)."""
    import sys

    from tqdm import tqdm

    from dataset.generate import write_json_atomic

    bar = None

    def start(todo: int) -> None:
        nonlocal bar
        bar = tqdm(total=todo, desc="check", unit="model", disable=not progress or not todo,
                   file=sys.stderr, dynamic_ncols=True)

    records, n_ok, n_bad = [], 0, 0
    found = discover_with_hashes(cfg)
    for c in check_collection(cfg, found, on_todo=start):
        n_ok, n_bad = n_ok + c.ok, n_bad + (not c.ok)
        if bar is not None and not bar.disable:
            bar.write(check_line(c), file=sys.stdout)
            bar.set_postfix(rejected=n_bad, refresh=False)
            bar.update(1)
        else:
            echo(check_line(c))
        if json_path is not None:
            records.append(check_record(c))
    if bar is not None:
        bar.close()
    echo(f"{n_ok + n_bad} models: {n_ok} usable, {n_bad} not usable")
    if json_path is not None:
        write_json_atomic(Path(json_path), records)
    return n_ok, n_bad
