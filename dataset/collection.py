"""A whole model collection checked the way `thactl render` checks it (`thactl models check`, the
model page of `thactl serve`): render's own phases, dataset.discover.resolve_models (folders,
zips, hashes) and dataset.verdicts.iter_checks (verdicts, its workers, its cache and cache key),
so a model gets the same verdict here as there.

The cache (zip extractions and verdicts) lives outside the models folder, in
`$XDG_CACHE_HOME/thactl/collections/<hash of the folder's path>/` (~/.cache when unset), so a
read-only or shared collection is never written to.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from dataset.discover import ModelSource, file_hash, resolve_models
from dataset.modelcheck import ModelCheck
from dataset.verdicts import CheckOptions, iter_checks
from dataset.verdicts import validation_key as render_key

MORPH_KEYS = ("left_eye", "right_eye", "both_eyes", "mouth")


def collection_cache_dir(models_root: Path) -> Path:
    """Where the zip extractions and the validation cache of a collection live (see module doc)."""
    root = Path(models_root).resolve()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "thactl" / "collections" / hashlib.sha256(str(root).encode()).hexdigest()[:16]


@dataclass
class CheckSettings:
    models: Path
    overrides: Path | None = None
    workers: int = 1
    shading: str = "phong"
    cache_dir: Path | None = None     # default: collection_cache_dir(models)
    processes: bool = False           # validate in worker processes even with one worker

    @property
    def cache(self) -> Path:
        return self.cache_dir or collection_cache_dir(self.models)

    def options(self) -> CheckOptions:
        return CheckOptions(Path(self.models), self.overrides, self.shading)


def discover_with_hashes(cfg: CheckSettings) -> list[ModelSource]:
    """Every model of the collection with its sha256 (render's resolve_models)."""
    return resolve_models(Path(cfg.models), cfg.cache, exclude=[cfg.cache])


def check_collection(cfg: CheckSettings, found: list[ModelSource] | None = None,
                     on_todo: Callable[[int], None] | None = None,
                     progress: bool = False) -> Iterator[ModelCheck]:
    """One ModelCheck per discovered model, in discovery order, models that could not be
    unpacked or read included (as rejections); never raises for a bad model."""
    found = discover_with_hashes(cfg) if found is None else found
    checks = iter_checks(found, cache=cfg.cache, opts=cfg.options(), workers=cfg.workers,
                         progress=progress, processes=cfg.processes, on_todo=on_todo)
    for m in found:
        yield ModelCheck(m.rel_path, False, reason=m.error, sha256=m.sha256) if m.error else next(checks)


def validation_key(cfg: CheckSettings, m: ModelSource) -> str:
    """The model's key in the validation cache, as it is now (render's key)."""
    return render_key(m, file_hash(cfg.overrides) or "", cfg.shading)


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
    """`thactl models check`: one line per model through `echo` (as soon as its verdict is known),
    render's progress bar on stderr while models are validated, the records as a JSON list in
    `json_path` (atomically) at the end. Returns (usable, not usable)."""
    from tqdm import tqdm

    from core.atomicfile import write_json

    records, n_ok, n_bad = [], 0, 0
    for c in check_collection(cfg, progress=progress):
        n_ok, n_bad = n_ok + c.ok, n_bad + (not c.ok)
        if progress:
            tqdm.write(check_line(c))         # above render's progress bar
        else:
            echo(check_line(c))
        if json_path is not None:
            records.append(check_record(c))
    echo(f"{n_ok + n_bad} models: {n_ok} usable, {n_bad} not usable")
    if json_path is not None:
        write_json(Path(json_path), records)
    return n_ok, n_bad
