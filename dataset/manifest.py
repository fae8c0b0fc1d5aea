"""`manifest.json` of a rendered data folder: its content (`build_manifest`; keys in
docs/data-format.md), writing it atomically, reading an earlier run's manifest to resume or refuse
(`previous_manifest`), and the run summary's lines (`summary_lines`)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from core.atomicfile import write_json
from dataset.errors import DatasetError
from dataset.renderplan import RenderPlan
from dataset.shards import SPLITS

log = logging.getLogger("thactl.dataset")


MANIFEST = "manifest.json"


MANIFEST_FORMAT = "thactl-manifest"


MANIFEST_VERSION = 1


def build_manifest(plan: RenderPlan, done: set[str]) -> dict:
    """manifest.json's content when the shards named in `done` are complete."""
    models = []
    for split in SPLITS:
        sp = plan.splits[split]
        owners = sp.model_of(np.arange(sp.count)) if sp.count else np.zeros(0, int)
        per = np.bincount(owners, minlength=len(sp.models)) if sp.models else []
        for i, c in enumerate(sp.models):
            models.append(dict(path=c.rel_path, sha256=c.sha256, split=split,
                               source=plan.sources[c.rel_path], examples=int(per[i]),
                               frame=c.frame, one_eye_morphs=c.one_eye_morphs,
                               morphs=c.morphs, mesh=_mesh_record(c.mesh)))
    shards = plan.shards
    return dict(
        format=MANIFEST_FORMAT, format_version=MANIFEST_VERSION, seed=plan.seed,
        request=plan.settings, model_list=plan.model_list,
        settings={s: plan.shard_settings[s] for s in SPLITS},
        complete=all(sh.rel in done for sh in shards),
        splits={s: dict(examples=plan.splits[s].count, models=len(plan.splits[s].models),
                        shards=[dict(file=sh.rel, examples=sh.count, complete=sh.rel in done)
                                for sh in shards if sh.split == s]) for s in SPLITS},
        models=models, rejected=plan.rejected, mesh_groups=plan.mesh_groups,
    )


def write_manifest(out: Path, plan: RenderPlan, done: set[str]) -> dict:
    """Write `out`/manifest.json atomically; returns its content."""
    man = build_manifest(plan, done)
    write_json(out / MANIFEST, man, durable=True)
    return man


def _mesh_record(mesh: dict | None) -> dict | None:
    """The manifest's copy of a fingerprint (without the probe vertices)."""
    if not mesh:
        return None
    return {k: mesh.get(k) for k in ("vertices", "triangles", "shape", "topology")}


def mesh_group_lines(man: dict) -> list[str]:
    """One line per group of models sharing a mesh ("same mesh: a, b, c")."""
    lines = []
    for g in man.get("mesh_groups") or []:
        splits = g.get("splits") or []
        where = (f"  (WARNING: in {' and '.join(splits)})" if len(splits) > 1
                 else f"  ({splits[0]})" if splits else "")
        lines.append("same mesh: " + ", ".join(g.get("models", [])) + where)
    return lines


def summary_lines(man: dict) -> list[str]:
    lines = []
    for s in SPLITS:
        sp = man["splits"][s]
        done = sum(1 for x in sp["shards"] if x["complete"])
        lines.append(f"{s:10s} {sp['examples']:>8d} examples  {sp['models']:>4d} models  "
                     f"{done}/{len(sp['shards'])} shards complete")
    lines += mesh_group_lines(man)
    rej = man.get("rejected", [])
    if rej:
        lines.append(f"rejected {len(rej)} model(s) (all listed in manifest.json):")
        lines += [f"  {d['path']}: {d['reason']}" for d in rej[:30]]
        if len(rej) > 30:
            from collections import Counter

            lines.append(f"  ... and {len(rej) - 30} more; most common reasons:")
            lines += [f"  {n:>6d} x {reason}"
                      for reason, n in Counter(d["reason"] for d in rej).most_common(8)]
    if not man.get("complete"):
        lines.append("not complete yet: re-run the same command (without --part) to finish")
    return lines


def _load_manifest(out: Path) -> dict | None:
    p = out / MANIFEST
    if not p.exists():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DatasetError(f"{p}: unreadable manifest ({e}); use --force to start over") from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise DatasetError(f"{p}: not a thactl render manifest; use --force to replace it "
                           "or choose another --out")
    return data


def clear_outputs(out: Path) -> None:
    for split in SPLITS:
        d = out / split
        if d.is_dir():
            for f in list(d.glob("shard-*.h5")) + list(d.glob(".shard-*.tmp")):
                f.unlink()
    m = out / MANIFEST
    if m.exists():
        m.unlink()


def _comparable(req: dict | None) -> dict:
    """Request settings without the models folder: it may be moved or named differently; its
    content (model paths and hashes) is compared separately."""
    return {k: v for k, v in (req or {}).items() if k != "models"}


def _diff(old: dict, new: dict) -> str:
    keys = sorted(set(old) | set(new))
    return ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k))


def previous_manifest(out: Path, settings: dict, force: bool) -> dict | None:
    """The manifest of an earlier run into `out` made with the same settings, or None;
    different settings are refused, or with --force their shards and manifest removed."""
    old = _load_manifest(out)
    if old is not None and _comparable(old.get("request")) != _comparable(settings):
        if not force:
            raise DatasetError(f"{out}: holds data made with different settings "
                               f"({_diff(_comparable(old.get('request')), _comparable(settings))}); "
                               "use --force to replace it, or another --out")
        log.warning("--force: removing the old shards and manifest in %s", out)
        clear_outputs(out)
        old = None
    return old
