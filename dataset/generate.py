"""`thactl render`: training data (HDF5 shards + manifest.json) from MMD models.

`run_render` runs the phases in order, each owned by its module:
  check_request, models_source   the request (dataset.request);
  resolve_models     discover (folders, zips) and hash every model file (dataset.discover);
  check_models       verdicts (load, face rig, probe render, mesh fingerprint;
                     dataset.modelcheck), cached in the collection's cache
                     (dataset.verdicts, in dataset.collection.collection_cache_dir: shared
                     with `thactl models check` and the model page);
  plan_render        select, assign splits by source (sources sharing a mesh
                     united, dataset.discover), plan every split and shard (dataset.renderplan);
  render_missing     render the shards that are not complete yet (here, with the
                     worker processes of dataset.workers);
  write_manifest     the final manifest.json (dataset.manifest).
The run's figures come back separately (RenderStats).

Determinism.  Everything derives from --seed and the list of accepted models
of a split (rel_path + sha256, sorted):
  * example j of a split (0-based, over the whole split) belongs to model
    floor(j * n_models / count): models get contiguous, equal-sized blocks;
  * shard k holds examples [k * shard_size, (k + 1) * shard_size);
  * inside a shard, the consecutive examples of one model are cut into groups of
    at most --group-size examples; each group is one model row of the shard
    (rest image + model path + frame) with its own ambient light magnitude,
    drawn uniformly from --ambient (default [0.5, 1.2]) by a generator seeded
    with (seed, split, "ambient", first example of the group).  The rest image
    and every example of the row are rendered with that same ambient, so the
    network input (rest) and its targets (morphed, posed) are lit alike; the
    per-example `ambient` dataset records it.
  * the pose of example j comes from a generator seeded with (seed, split,
    "pose", j): eyes and mouth uniform on [0, 1], head values with density
    |v| (dataset.poses.sample_poses); models without one-eye morphs get
    right_eye = left_eye.
So shard k is a pure function of (settings, seed, k, model list): shards can be
rendered in any order, on any machine (--part i/n), and a resumed run equals an
uninterrupted one.

Images: rest = REST_POSE (0,0,0,0,0,1); morphed = the example's eyes/mouth with
head 0,0,0; posed = the full pose.  Rendering happens in --workers processes
(spawn, one GL context each); the main process writes shards (temporary name,
renamed when complete) and the manifest (atomically).
"""
from __future__ import annotations

import logging
import re
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from core.atomicfile import temp_glob, write_json
from dataset.collection import collection_cache_dir   # the verdicts `models check` shares
from dataset.discover import resolve_models
from dataset.errors import DatasetError
from dataset.manifest import MANIFEST, build_manifest, clear_outputs, previous_manifest, write_manifest
from dataset.renderplan import Group, RenderPlan, ShardPlan, SplitPlan, plan_render, shard_groups
from dataset.request import (SAMPLE_MODELS, RenderRequest, check_request, default_workers, models_source,
                             parse_part, request_settings)
from dataset.shards import ShardWriter, shard_name, verify_shard
from dataset.verdicts import CheckOptions, check_models
from dataset.workers import Runner, progress_bar, render_task, running, worker_args

log = logging.getLogger("thactl.dataset")


@dataclass
class RenderStats:
    """What a run took, for the command's last line and benchmarks (not part of the data)."""
    elapsed_s: float              # discovery to final manifest
    render_s: float               # shard checks, rendering and manifests
    workers: int
    rendered_examples: int        # examples rendered by this run (0 when all shards existed)


@dataclass
class RenderResult:
    manifest: dict                # exactly what manifest.json holds
    stats: RenderStats


def run_render(r: RenderRequest) -> RenderResult:
    """Do the whole `thactl render`; returns the manifest written and the run's figures.
    Every input problem (and a failing disk) is a DatasetError/RendererError with a
    one-line message."""
    try:
        return _run_render(r)
    except OSError as e:
        where = e.filename or r.out
        raise DatasetError(f"{where}: {_oserror_text(e)}") from None


def _oserror_text(e: OSError) -> str:
    """A one-line reason for an OSError (HDF5's messages span several lines)."""
    text = " ".join(str(e.strerror or e).split())
    m = re.findall(r"error message = '([^']+)'", text)
    if m:
        return m[-1]
    return text[:200] or type(e).__name__


def _run_render(r: RenderRequest) -> RenderResult:
    check_request(r)
    out = Path(r.out)
    part = parse_part(r.part)
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out}: exists and is not a folder")
    models_root, models_label = models_source(r)
    settings = request_settings(r, models_label)
    old = previous_manifest(out, settings, r.force)
    out.mkdir(parents=True, exist_ok=True)
    if r.models is None:
        from renderer.samples import write_samples

        models_root = out / "samples"
        write_samples(models_root, count=SAMPLE_MODELS, seed=0)
    workers = r.workers or default_workers()
    t_start = time.time()
    try:
        found = resolve_models(models_root, out / ".cache", exclude=[out])
        opts = CheckOptions(models_root, r.overrides, r.shading)
        checks = check_models(found, collection_cache_dir(models_root), opts, workers, r.progress)
        plan = plan_render(r, settings, found, checks, models_root)
        if old is not None and old.get("model_list") not in (None, plan.model_list):
            if not r.force:
                raise DatasetError(f"{out}: was rendered from a different set of models (models "
                                   "added, removed, changed or re-assigned); use --force to "
                                   "replace it, or another --out")
            clear_outputs(out)
        t_validated = time.time()
        done, rendered = render_missing(plan, r, out, part, workers, models_root)
        man = write_manifest(out, plan, done)
    except OSError as e:
        raise DatasetError(f"{out}: cannot write the data ({_oserror_text(e)})") from None
    now = time.time()
    return RenderResult(man, RenderStats(now - t_start, now - t_validated, workers, rendered))


def render_missing(plan: RenderPlan, r: RenderRequest, out: Path, part: tuple[int, int] | None,
                   workers: int, models_root: Path) -> tuple[set[str], int]:
    """Render the shards of `plan` (of this --part) not already complete in `out`, keeping the
    manifest up to date; returns (rel names of the complete shards, examples rendered)."""
    done = {sh.rel for sh in plan.shards if _shard_ok(plan, sh, out, r)}
    for sh in plan.shards:  # temporary files of complete shards can only be leftovers
        if sh.rel in done:
            for stale in (out / sh.split).glob(temp_glob(shard_name(sh.index))):
                stale.unlink(missing_ok=True)
    todo = [sh for sh in plan.shards if sh.rel not in done
            and (part is None or sh.global_index % part[1] == part[0] - 1)]
    write_json(out / MANIFEST, build_manifest(plan, done), durable=True)
    done_before = set(done)
    total = sum(sh.count for sh in todo)
    if not todo:
        return done, total
    log.info("rendering %d shards (%d examples) with %d workers", len(todo), total, workers)
    init_args = worker_args(r.size, r.aa, r.shading, r.overrides, models_root, workers)
    with running(workers, init_args) as runner:
        bar = progress_bar(total, "render", r.progress)
        bar.set_postfix(rejected=len(plan.rejected))
        try:
            _render_shards(runner, out, plan.splits, todo, r, plan.shard_settings, done, bar, plan.paths)
        finally:
            if done != done_before:  # record the shards finished so far, even on Ctrl-C
                try:
                    write_json(out / MANIFEST, build_manifest(plan, done), durable=True)
                except OSError:
                    pass
        bar.close()
    return done, total


def _shard_ok(plan: RenderPlan, sh: ShardPlan, out: Path, r: RenderRequest) -> bool:
    """Whether shard `sh` already exists complete and made with this plan's settings."""
    path = out / sh.rel
    if not path.is_file():
        return False
    probs = verify_shard(path, deep=False, expected_examples=sh.count,
                         expected={"seed": r.seed, "split": sh.split, "image_size": r.size,
                                   "settings": plan.shard_settings[sh.split]})
    if probs:
        log.warning("re-rendering %s: %s", path, probs[0])
    return not probs


def _render_shards(runner: Runner, out: Path, plans: dict[str, SplitPlan],
                   todo: list[ShardPlan], r: RenderRequest, shard_settings: dict,
                   done: set[str], bar, c_path: dict[str, Path]) -> None:
    # tasks are planned lazily (a THA1-sized run has ~30,000 groups); the runner yields
    # results in task order, so the plan of each result is the oldest one not yet used
    planned: deque[tuple[ShardPlan, Group]] = deque()
    schema = r.pose_schema()
    schema_json = None if schema is None else schema.to_json()

    def tasks() -> Iterator[dict]:
        for sh in todo:
            sp = plans[sh.split]
            for grp in shard_groups(sp, sh, r.seed, r.group_size, r.ambient, schema):
                c = sp.models[grp.model]
                planned.append((sh, grp))
                task = dict(path=str(c_path[c.rel_path]), frame=c.frame, ambient=grp.ambient,
                            poses=grp.poses)
                if schema_json is not None:
                    task.update(schema=schema_json, draw=grp.draw)   # the worker draws the poses
                yield task

    writer: ShardWriter | None = None
    current: ShardPlan | None = None
    try:
        for res in runner.imap(render_task, tasks()):
            sh, grp = planned.popleft()
            if current is not sh:
                for stale in (out / sh.split).glob(temp_glob(shard_name(sh.index))):
                    stale.unlink()
                writer = ShardWriter(out / sh.rel, r.size, sh.split, r.seed, shard_settings[sh.split],
                                     schema=schema)
                current = sh
            sp = plans[sh.split]
            c = sp.models[grp.model]
            if schema is None:
                row = writer.add_model(c.rel_path, c.sha256, c.frame, res["rest"])
            else:
                row = writer.add_model(c.rel_path, c.sha256, c.frame, res["rest"], res["available"])
            for p, mo, po in zip(res.get("poses", grp.poses), res["morphed"], res["posed"]):
                writer.add_example(row, p, mo, po, grp.ambient)
            bar.update(grp.count)
            if grp.last_of_shard:
                writer.finish()
                done.add(sh.rel)
                writer = None
                current = None
    finally:
        if writer is not None:
            writer.abort()
