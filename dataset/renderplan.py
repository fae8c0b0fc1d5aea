"""The plan of a `thactl render` run, decided before the first image (`plan_render`): which models
are accepted, their splits (by source, a mesh group kept together, or a split file), each split's
example count and shards, and inside a shard the model rows (`shard_groups`) with their poses and
ambient light.  Every example's pose and every row's ambient follow from the seed and the example's
position alone (`pose_for`, `ambient_for`; see dataset.generate's docstring for the whole law); under
a pose schema also from what the example's model can show, which only the render worker knows (its
probe), so a schema row carries how to draw its poses (`Group.draw`) and the worker draws them
(`schema_poses`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dataset.discover import (ModelSource, assign_splits, load_split_file, mesh_groups, parse_ratios,
                              split_from_table, split_units)
from dataset.errors import DatasetError
from dataset.modelcheck import ModelCheck
from dataset.poses import sample_poses
from dataset.request import RenderRequest
from dataset.shards import SPLITS, shard_name

log = logging.getLogger("thactl.dataset")


SPLIT_IDS = {"train": 0, "validation": 1, "test": 2}


THA1_EVAL_COUNT = 10_000


def default_eval_count(count: int, n_models: int) -> int:
    """Default --val-count / --test-count: THA1's 10,000, scaled down for small runs.

    min(10000, count, max(ceil(count / 50), 10 per model of the split)); 0 without models.
    THA1 (500,000 training examples) gets exactly 10,000."""
    if n_models <= 0 or count <= 0:
        return 0
    return int(min(THA1_EVAL_COUNT, count, max(math.ceil(count / 50), 10 * n_models)))


def _json_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


@dataclass
class Group:
    """One model row of one shard: a model, its ambient, a run of examples."""
    split: str
    shard: int
    model: int                    # index into the split's model list
    first: int                    # first example index (over the split)
    poses: np.ndarray | None      # (g, 6) float32; None for a pose schema's row (see draw)
    ambient: float
    last_of_shard: bool = False
    draw: dict | None = None      # a schema's row: {seed, split, first, count} for schema_poses

    @property
    def count(self) -> int:
        """The row's number of examples."""
        return len(self.poses) if self.poses is not None else int(self.draw["count"])


@dataclass
class ShardPlan:
    split: str
    index: int
    first: int
    count: int
    global_index: int = 0

    @property
    def rel(self) -> str:
        return f"{self.split}/{shard_name(self.index)}"


@dataclass
class SplitPlan:
    split: str
    count: int
    models: list[ModelCheck] = field(default_factory=list)

    def model_of(self, j: np.ndarray | int):
        return (np.asarray(j, dtype=np.int64) * len(self.models)) // self.count


def pose_for(seed: int, split: str, j: int, one_eye: bool, schema=None, available=None) -> np.ndarray:
    """Example j's pose: THA1's law, or with a pose schema (core.poseschema) the schema's law among
    what the model can show (`available`, (P,) bools; None: all), from a generator seeded with
    (seed, split, 0, j) alone."""
    rng = np.random.default_rng([int(seed), SPLIT_IDS[split], 0, int(j)])
    if schema is not None:
        return schema.sample(rng, 1, available)[0]
    return sample_poses(rng, 1, one_eye_morphs=one_eye)[0]


def schema_poses(draw: dict, schema, available) -> np.ndarray:
    """(count, P) float32: the poses of a schema row (`Group.draw`: examples first .. first + count - 1
    of a split) for a model that can show `available` ((P,) bools): each pose_for its example alone,
    so a re-run or a resumed run draws the same poses."""
    js = range(int(draw["first"]), int(draw["first"]) + int(draw["count"]))
    return np.stack([pose_for(draw["seed"], draw["split"], j, False, schema, available) for j in js])


def ambient_for(seed: int, split: str, first: int, lo: float, hi: float) -> float:
    if hi <= lo:
        return float(lo)
    rng = np.random.default_rng([int(seed), SPLIT_IDS[split], 1, int(first)])
    return float(np.float32(rng.uniform(lo, hi)))


def shard_groups(sp: SplitPlan, shard: ShardPlan, seed: int, group_size: int,
                 ambient: tuple[float, float], schema=None) -> list[Group]:
    js = np.arange(shard.first, shard.first + shard.count)
    owners = sp.model_of(js)
    groups: list[Group] = []
    start = 0
    while start < len(js):
        m = int(owners[start])
        end = start
        while end < len(js) and owners[end] == m and end - start < group_size:
            end += 1
        amb = ambient_for(seed, sp.split, int(js[start]), *ambient)
        if schema is None:
            one_eye = sp.models[m].one_eye_morphs
            poses = np.stack([pose_for(seed, sp.split, int(j), one_eye) for j in js[start:end]])
            groups.append(Group(sp.split, shard.index, m, int(js[start]), poses, amb))
        else:   # drawn by the worker, which knows what the model can show (schema_poses)
            draw = dict(seed=int(seed), split=sp.split, first=int(js[start]), count=int(end - start))
            groups.append(Group(sp.split, shard.index, m, int(js[start]), None, amb, draw=draw))
        start = end
    if groups:
        groups[-1].last_of_shard = True
    return groups


@dataclass
class RenderPlan:
    """Everything a run renders and records, decided before the first image."""
    seed: int
    settings: dict                         # request settings (the manifest's "request")
    splits: dict[str, SplitPlan]
    shards: list[ShardPlan]
    shard_settings: dict[str, dict]        # split -> settings stored in its shards
    model_list: dict[str, list]            # split -> [[rel_path, sha256], ...]
    sources: dict[str, str]                # rel_path -> split unit
    paths: dict[str, Path]                 # rel_path -> model file on disk
    rejected: list[dict]
    mesh_groups: list[dict]


def plan_render(r: RenderRequest, settings: dict, found: list[ModelSource],
                checks: dict[str, ModelCheck], models_root: Path) -> RenderPlan:
    """Select the accepted models, assign their splits and plan every split and shard."""
    accepted, rejected, groups = _select(found, checks, r.dedupe)
    usable = [m for m in found if not m.error]
    sources = {m.rel_path: m.source for m in usable}
    split_of = assign_model_splits(accepted, groups, sources, r, rejected)
    rejected.sort(key=lambda d: d["path"])
    group_info = _mesh_group_info(groups, split_of)
    plans = _split_plans(r, accepted, split_of)
    if not plans["train"].models:
        detail = "; ".join(f"{d['path']}: {d['reason']}" for d in rejected[:5])
        raise DatasetError(f"{models_root}: no usable model for training "
                           f"({len(rejected)} rejected: {detail})")
    for split in ("validation", "test"):
        if not plans[split].models:
            log.warning("no model in the %s split: it gets no examples", split)
    model_list = {s: [[c.rel_path, c.sha256] for c in plans[s].models] for s in SPLITS}
    shard_settings = {s: dict(settings, split=s, split_count=plans[s].count,
                              models_sha256=_json_hash(model_list[s]), tool="thactl",
                              format="thactl-render/1")
                      for s in SPLITS}
    for s in shard_settings.values():
        s.pop("models", None)  # the models folder may move; its content is hashed above
    return RenderPlan(r.seed, settings, plans, _shard_plans(plans, r.shard_size), shard_settings,
                      model_list, sources, {m.rel_path: m.path for m in usable}, rejected, group_info)


def _select(found: list[ModelSource], checks: dict[str, ModelCheck], dedupe: bool):
    """(accepted checks, rejections [{path, reason}], same-mesh groups of accepted rel_paths)."""
    rejected: list[dict] = [dict(path=m.rel_path, reason=m.error) for m in found if m.error]
    for rel, c in checks.items():
        if not c.ok:
            rejected.append(dict(path=rel, reason=c.reason))
    accepted = [c for c in checks.values() if c.ok]
    # copies of one mesh (a .pmd and its .pmx, an edited variant) in several sources
    # are kept, but always in one split (see dataset.discover.same_mesh)
    groups = mesh_groups({c.rel_path: c.mesh for c in accepted})
    if dedupe:
        dropped = {rel: g[0] for g in groups for rel in g[1:]}
        for rel, keep in dropped.items():
            rejected.append(dict(path=rel, reason=f"same mesh as {keep} (--dedupe)"))
        accepted = [c for c in accepted if c.rel_path not in dropped]
    return accepted, rejected, groups


def assign_model_splits(accepted: list[ModelCheck], groups: list[list[str]], sources: dict[str, str],
                        r: RenderRequest, rejected: list[dict]) -> dict[str, str]:
    """rel_path -> split for the accepted models: from --split-file (a model it does not list
    is added to `rejected`) or by source with --split ratios, a mesh group kept together
    (`sources` gets each model's split unit)."""
    split_of: dict[str, str] = {}
    if r.split_file is not None:
        table = load_split_file(r.split_file)
        for c in accepted:
            s = split_from_table(c.rel_path, table)
            if s is None:
                rejected.append(dict(path=c.rel_path, reason=f"not listed in split file {r.split_file}"))
            else:
                split_of[c.rel_path] = s
        return split_of
    units = split_units([c.rel_path for c in accepted], groups=groups)
    sizes: dict[str, int] = {}
    for src in units.values():
        sizes[src] = sizes.get(src, 0) + 1
    by_source = assign_splits(list(units.values()), parse_ratios(r.split_ratios), sizes)
    for c in accepted:
        sources[c.rel_path] = units[c.rel_path]
        split_of[c.rel_path] = by_source[units[c.rel_path]]
    return split_of


def _mesh_group_info(groups: list[list[str]], split_of: dict[str, str]) -> list[dict]:
    """The manifest's mesh groups with their splits; a group split apart is warned about."""
    info = [dict(models=g, splits=sorted({split_of[r] for r in g if r in split_of}, key=SPLITS.index))
            for g in groups]
    for gi in info:
        if len(gi["splits"]) > 1:
            log.warning("same mesh in %s (split file): %s", " and ".join(gi["splits"]),
                        ", ".join(gi["models"]))
    return info


def _split_plans(r: RenderRequest, accepted: list[ModelCheck], split_of: dict[str, str]) -> dict[str, SplitPlan]:
    """Each split's models (sorted by rel_path) and example count."""
    plans: dict[str, SplitPlan] = {}
    for split in SPLITS:
        models = sorted((c for c in accepted if split_of.get(c.rel_path) == split),
                        key=lambda c: c.rel_path)
        if split == "train":
            count = r.count if models else 0
        else:
            given = r.val_count if split == "validation" else r.test_count
            count = default_eval_count(r.count, len(models)) if given is None else given
            count = count if models else 0
        plans[split] = SplitPlan(split, int(count), models)
    return plans


def _shard_plans(plans: dict[str, SplitPlan], shard_size: int) -> list[ShardPlan]:
    """Every shard of every split, numbered within its split and over the whole run."""
    shards: list[ShardPlan] = []
    for split in SPLITS:
        sp = plans[split]
        for k in range(math.ceil(sp.count / shard_size)):
            first = k * shard_size
            shards.append(ShardPlan(split, k, first, min(shard_size, sp.count - first), len(shards)))
    return shards
