"""`thactl render`: training data (HDF5 shards + manifest.json) from MMD models.

Phases, one function each (run_render runs them in order):
  resolve_models     discover (folders, zips) and hash every model file;
  check_models       verdicts (load, face rig, probe render, mesh fingerprint;
                     dataset.modelcheck), cached in the collection's cache
                     (dataset.collection.collection_cache_dir: shared with
                     `thactl models check` and the model page);
  plan_render        select, assign splits by source (sources sharing a mesh
                     united, dataset.discover), plan every split and shard;
  render_missing     render the shards that are not complete yet;
  write_manifest     the final manifest.json.
resolve_models and check_models also serve on their own (a folder -> its models
-> their verdicts).  The run's figures come back separately (RenderStats).

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

import hashlib
import json
import logging
import math
import multiprocessing as mp
import os
import re
import sys
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from dataset.discover import (ModelSource, assign_splits, discover_models, load_split_file,
                              mesh_groups, parse_ratios, read_json, split_from_table, split_units)
from dataset.errors import DatasetError
from dataset.poses import sample_poses
from dataset.shards import SPLITS, ShardWriter, compress_image, shard_name, sha256_file, verify_shard
from dataset.modelcheck import PROBE_SIZE, VALIDATION_VERSION, ModelCheck
from core.atomicfile import temp_glob, write_json
from core.pose import REST_POSE

log = logging.getLogger("thactl.dataset")

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "thactl-manifest"
MANIFEST_VERSION = 1
SPLIT_IDS = {"train": 0, "validation": 1, "test": 2}
THA1_EVAL_COUNT = 10_000
SAMPLE_MODELS = 6
SAMPLE_COUNT = 200


def default_eval_count(count: int, n_models: int) -> int:
    """Default --val-count / --test-count: THA1's 10,000, scaled down for small runs.

    min(10000, count, max(ceil(count / 50), 10 per model of the split)); 0 without models.
    THA1 (500,000 training examples) gets exactly 10,000."""
    if n_models <= 0 or count <= 0:
        return 0
    return int(min(THA1_EVAL_COUNT, count, max(math.ceil(count / 50), 10 * n_models)))


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


def _json_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _file_hash(path: str | Path | None) -> str | None:
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"{p}: file not found")
    return sha256_file(p)


# ------------------------------------------------------------------------------ plan

@dataclass
class Group:
    """One model row of one shard: a model, its ambient, a run of examples."""
    split: str
    shard: int
    model: int                    # index into the split's model list
    first: int                    # first example index (over the split)
    poses: np.ndarray             # (g, 6) float32
    ambient: float
    last_of_shard: bool = False


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


def pose_for(seed: int, split: str, j: int, one_eye: bool) -> np.ndarray:
    rng = np.random.default_rng([int(seed), SPLIT_IDS[split], 0, int(j)])
    return sample_poses(rng, 1, one_eye_morphs=one_eye)[0]


def ambient_for(seed: int, split: str, first: int, lo: float, hi: float) -> float:
    if hi <= lo:
        return float(lo)
    rng = np.random.default_rng([int(seed), SPLIT_IDS[split], 1, int(first)])
    return float(np.float32(rng.uniform(lo, hi)))


def shard_groups(sp: SplitPlan, shard: ShardPlan, seed: int, group_size: int,
                 ambient: tuple[float, float]) -> list[Group]:
    js = np.arange(shard.first, shard.first + shard.count)
    owners = sp.model_of(js)
    groups: list[Group] = []
    start = 0
    while start < len(js):
        m = int(owners[start])
        end = start
        while end < len(js) and owners[end] == m and end - start < group_size:
            end += 1
        one_eye = sp.models[m].one_eye_morphs
        poses = np.stack([pose_for(seed, sp.split, int(j), one_eye) for j in js[start:end]])
        groups.append(Group(sp.split, shard.index, m, int(js[start]), poses,
                            ambient_for(seed, sp.split, int(js[start]), *ambient)))
        start = end
    if groups:
        groups[-1].last_of_shard = True
    return groups


# ------------------------------------------------------------------------------ workers

_W: dict[str, Any] = {}


def _worker_init(size: int, aa: int, shading: str, overrides: str | None, models_root: str,
                 lp_threads: int | None, log_level: int) -> None:
    if lp_threads:
        os.environ.setdefault("LP_NUM_THREADS", str(lp_threads))
    if mp.current_process().name != "MainProcess":
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's business
    logging.getLogger("thactl").setLevel(log_level)
    _W.clear()
    _W.update(size=size, aa=aa, shading=shading, overrides=overrides, models_root=models_root,
              rc=None, probe=None, cache=None)


def _render_ctx():
    if _W.get("rc") is None:
        from renderer.offscreen import RenderContext
        _W["rc"] = RenderContext(size=_W["size"], aa=_W["aa"])
    return _W["rc"]


def _model_state(path: str):
    """(poser, scene) for a model, cached for the last model used by this process."""
    cached = _W.get("cache")
    if cached is not None and cached[0] == path:
        return cached[1], cached[2]
    if cached is not None:
        cached[2].release()
        _W["cache"] = None
    from renderer.assembly import assemble_model

    assembled = assemble_model(path, _W["overrides"], _W["models_root"])
    poser = assembled.poser
    scene = _render_ctx().prepare(assembled.model, _W["shading"])
    _W["cache"] = (path, poser, scene)
    return poser, scene


def _validate_task(task: tuple[str, str, str]) -> dict:
    from renderer.offscreen import RenderContext

    from dataset.modelcheck import PROBE_SIZE, validate_model

    path, rel, sha = task
    if _W.get("probe") is None:
        _W["probe"] = RenderContext(size=PROBE_SIZE, aa=0)
    return validate_model(Path(path), rel, _W["probe"], _W["overrides"], _W["models_root"],
                          sha256=sha).to_json()


def _render_task(task: dict) -> dict:
    from renderer.framing import Frame

    poser, scene = _model_state(task["path"])
    frame = Frame(*task["frame"])
    amb = task["ambient"]
    # images leave the worker already compressed into their final HDF5 chunk bytes
    rest = compress_image(scene.render(poser.pose(REST_POSE), frame, ambient=amb))
    morphed, posed = [], []
    for p in task["poses"]:
        expr = p.copy()
        expr[:3] = 0.0
        morphed.append(compress_image(scene.render(poser.pose(expr), frame, ambient=amb)))
        posed.append(compress_image(scene.render(poser.pose(p), frame, ambient=amb)))
    return dict(rest=rest, morphed=morphed, posed=posed)


class _Runner:
    """Runs tasks in-process (workers <= 1, unless `processes`) or in a spawn pool; ordered results."""

    def __init__(self, workers: int, init_args: tuple, processes: bool = False):
        self.pool = None
        if workers > 1 or processes:
            self.pool = _RestartingPool(workers, init_args)
        else:
            args = list(init_args)
            args[5] = None  # keep llvmpipe's own thread count in-process
            _worker_init(*args)

    def imap(self, fn, tasks) -> Iterator:
        if self.pool is None:
            for t in tasks:
                yield fn(t)
        else:
            yield from self.pool.imap(fn, tasks, chunksize=1)

    def close(self, terminate: bool = False) -> None:
        if self.pool is not None:
            if terminate:
                self.pool.terminate()
            else:
                self.pool.close()
            self.pool.join()
            self.pool = None
        cached = _W.get("cache")
        if cached is not None:
            try:
                cached[2].release()
            except Exception:
                pass
            _W["cache"] = None
        for key in ("rc", "probe"):  # in-process runs leave no GL objects behind
            rc = _W.get(key)
            if rc is not None:
                try:
                    rc.release()
                except Exception:
                    pass
                _W[key] = None


class _RestartingPool:
    """Spawn worker processes that survive the death of a worker (issue 7, robustness).

    multiprocessing.Pool loses the task of a worker killed by a signal (a segfault in a GL
    driver, the OOM killer, SIGKILL) and then waits for it forever.  Here a dead worker
    breaks the pool; it is restarted and the lost tasks run again (results stay in task
    order, so the shard in progress goes on).  The lost tasks are first re-run one at a
    time, so a task that kills its worker again on its own is identified: a validation
    task then yields a rejected-model result; a render task stops the run with a
    DatasetError naming the model (a re-run resumes).  Same interface as the part of
    multiprocessing.Pool that _Runner uses (imap, close, terminate, join).
    """

    MAX_TRIES = 2

    def __init__(self, workers: int, init_args: tuple):
        self.workers = workers
        self.init_args = init_args
        self.ex = None
        self.restarts = 0
        self._start()

    def _start(self) -> None:
        from concurrent.futures import ProcessPoolExecutor

        self.ex = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                      initializer=_worker_init, initargs=self.init_args)

    def _kill(self) -> None:
        ex, self.ex = self.ex, None
        if ex is None:
            return
        procs = list((getattr(ex, "_processes", None) or {}).values())
        ex.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            if p.is_alive():
                p.kill()
        for p in procs:
            p.join(5)

    @staticmethod
    def _crash_result(fn, task):
        if fn is _validate_task:
            return ModelCheck(rel_path=task[1], ok=False, sha256=task[2],
                              reason="the renderer crashed on this model (its worker process "
                                     "died)").to_json()
        where = task.get("path") if isinstance(task, dict) else task
        raise DatasetError(f"{where}: a render worker process died twice while rendering this "
                           "model; exclude it, then re-run the same command to resume")

    def imap(self, fn, tasks, chunksize: int = 1) -> Iterator:
        from concurrent.futures.process import BrokenProcessPool

        it = iter(tasks)
        order: deque = deque()          # [task, future | None, solo runs that crashed]
        exhausted = False
        solo = 0                        # head entries still to be re-run one at a time
        window = 2 * self.workers
        while True:
            limit = 1 if solo else window
            while not exhausted and len(order) < window:
                try:
                    order.append([next(it), None, 0])
                except StopIteration:
                    exhausted = True
            if not order:
                return
            if self.ex is None:
                self._start()
            head = order[0]
            try:
                for e in list(order)[:limit]:
                    if e[1] is None:
                        e[1] = self.ex.submit(fn, e[0])      # raises too if the pool just broke
                res = head[1].result()
            except BrokenProcessPool:
                self.restarts += 1
                lost = [e for e in order if e[1] is not None
                        and not (e[1].done() and not e[1].cancelled() and e[1].exception() is None)]
                self._kill()
                for e in lost:
                    e[1] = None
                if solo:
                    head[2] += any(e is head for e in lost)   # it was running, alone
                    if head[2] >= self.MAX_TRIES:
                        log.warning("render worker died again on its own with %s", head[0])
                        order.popleft()
                        solo -= 1
                        yield self._crash_result(fn, head[0])
                        continue
                else:   # run every entry up to the last lost one alone
                    solo = max((i + 1 for i, e in enumerate(order) if any(e is x for x in lost)),
                               default=0)
                log.warning("a render worker process died (killed or crashed); restarting the "
                            "workers and re-running %d task(s)", len(lost))
                continue
            order.popleft()
            if solo:
                solo -= 1
            yield res

    def close(self) -> None:
        if self.ex is not None:
            self.ex.shutdown(wait=True)
            self.ex = None

    def terminate(self) -> None:
        self._kill()

    def join(self) -> None:
        pass


# ------------------------------------------------------------------------------ main entry

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


def _check_request(r: RenderRequest) -> None:
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


def _default_workers() -> int:
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
        split_file_sha256=_file_hash(r.split_file), overrides_sha256=_file_hash(r.overrides),
    )
    if r.dedupe:   # only when set, so data made before the option existed still resumes
        out["dedupe"] = True
    return out


def _diff(old: dict, new: dict) -> str:
    keys = sorted(set(old) | set(new))
    return ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k))


def _clear_outputs(out: Path) -> None:
    for split in SPLITS:
        d = out / split
        if d.is_dir():
            for f in list(d.glob("shard-*.h5")) + list(d.glob(".shard-*.tmp")):
                f.unlink()
    m = out / MANIFEST
    if m.exists():
        m.unlink()


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


def _override_fingerprint(path: Path) -> str:
    beside = path.with_name(path.name + ".thactl.json")
    return sha256_file(beside) if beside.is_file() else ""


def _progress(total: int, desc: str, enabled: bool, unit: str = "ex"):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True,
                smoothing=0.1, file=sys.stderr)


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
    _check_request(r)
    out = Path(r.out)
    part = parse_part(r.part)
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out}: exists and is not a folder")
    models_root, models_label = _models_source(r)
    settings = request_settings(r, models_label)
    old = _previous_manifest(out, settings, r.force)
    out.mkdir(parents=True, exist_ok=True)
    if r.models is None:
        from renderer.samples import write_samples

        models_root = out / "samples"
        write_samples(models_root, count=SAMPLE_MODELS, seed=0)
    workers = r.workers or _default_workers()
    t_start = time.time()
    from dataset.collection import collection_cache_dir   # the verdicts `models check` shares

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
            _clear_outputs(out)
        t_validated = time.time()
        done, rendered = render_missing(plan, r, out, part, workers, models_root)
        man = write_manifest(out, plan, done)
    except OSError as e:
        raise DatasetError(f"{out}: cannot write the data ({_oserror_text(e)})") from None
    now = time.time()
    return RenderResult(man, RenderStats(now - t_start, now - t_validated, workers, rendered))


def _models_source(r: RenderRequest) -> tuple[Path | None, str]:
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


def _comparable(req: dict | None) -> dict:
    """Request settings without the models folder: it may be moved or named differently; its
    content (model paths and hashes) is compared separately."""
    return {k: v for k, v in (req or {}).items() if k != "models"}


def _previous_manifest(out: Path, settings: dict, force: bool) -> dict | None:
    """The manifest of an earlier run into `out` made with the same settings, or None;
    different settings are refused, or with --force their shards and manifest removed."""
    old = _load_manifest(out)
    if old is not None and _comparable(old.get("request")) != _comparable(settings):
        if not force:
            raise DatasetError(f"{out}: holds data made with different settings "
                               f"({_diff(_comparable(old.get('request')), _comparable(settings))}); "
                               "use --force to replace it, or another --out")
        log.warning("--force: removing the old shards and manifest in %s", out)
        _clear_outputs(out)
        old = None
    return old


# ------------------------------------------------------------------------------ phase: resolve models

def resolve_models(models_root: Path, cache: Path, exclude: list[Path] | None = None) -> list[ModelSource]:
    """Every model under `models_root` (folders and .zip archives, dataset.discover), sorted by
    rel_path, with its sha256; a model that cannot be unpacked or read has `error` set.
    Archives are extracted under `cache`; `exclude` folders are skipped."""
    found = discover_models(models_root, cache, exclude=exclude)
    for m in found:
        if not m.error:
            try:
                m.sha256 = sha256_file(m.path)
            except OSError as e:
                m.error = f"cannot read file ({e.strerror or e})"
    return found


# ------------------------------------------------------------------------------ phase: validate

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
    ov_hash = _file_hash(opts.overrides) or ""
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
    init_args = _init_args(PROBE_SIZE, 0, opts, workers)
    with _running(min(workers, len(todo)), init_args, processes) as runner:
        bar = _progress(len(todo), "validate", progress, unit="model")
        results = runner.imap(_validate_task, ((str(m.path), m.rel_path, m.sha256) for m in todo))
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


def _init_args(size: int, aa: int, opts: CheckOptions, workers: int) -> tuple:
    """_worker_init's arguments (llvmpipe gets one thread per worker process when several run)."""
    return (size, aa, opts.shading, str(opts.overrides) if opts.overrides else None,
            str(opts.models_root), 1 if workers > 1 else None, logging.getLogger("thactl").level)


@contextmanager
def _running(workers: int, init_args: tuple, processes: bool = False) -> Iterator["_Runner"]:
    """A _Runner closed on exit; terminated (workers killed) when the body raises."""
    runner = _Runner(workers, init_args, processes)
    try:
        yield runner
    except BaseException:
        runner.close(terminate=True)
        raise
    runner.close()


# ------------------------------------------------------------------------------ phase: assign splits

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


# ------------------------------------------------------------------------------ phase: plan

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


# ------------------------------------------------------------------------------ phase: render

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
    init_args = _init_args(r.size, r.aa, CheckOptions(models_root, r.overrides, r.shading), workers)
    with _running(workers, init_args) as runner:
        bar = _progress(total, "render", r.progress)
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


# ------------------------------------------------------------------------------ phase: write manifest

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


def _render_shards(runner: _Runner, out: Path, plans: dict[str, SplitPlan],
                   todo: list[ShardPlan], r: RenderRequest, shard_settings: dict,
                   done: set[str], bar, c_path: dict[str, Path]) -> None:
    # tasks are planned lazily (a THA1-sized run has ~30,000 groups); the runner yields
    # results in task order, so the plan of each result is the oldest one not yet used
    planned: deque[tuple[ShardPlan, Group]] = deque()

    def tasks() -> Iterator[dict]:
        for sh in todo:
            sp = plans[sh.split]
            for grp in shard_groups(sp, sh, r.seed, r.group_size, r.ambient):
                c = sp.models[grp.model]
                planned.append((sh, grp))
                yield dict(path=str(c_path[c.rel_path]), frame=c.frame, ambient=grp.ambient,
                           poses=grp.poses)

    writer: ShardWriter | None = None
    current: ShardPlan | None = None
    try:
        for res in runner.imap(_render_task, tasks()):
            sh, grp = planned.popleft()
            if current is not sh:
                for stale in (out / sh.split).glob(temp_glob(shard_name(sh.index))):
                    stale.unlink()
                writer = ShardWriter(out / sh.rel, r.size, sh.split, r.seed, shard_settings[sh.split])
                current = sh
            sp = plans[sh.split]
            c = sp.models[grp.model]
            row = writer.add_model(c.rel_path, c.sha256, c.frame, res["rest"])
            for p, mo, po in zip(grp.poses, res["morphed"], res["posed"]):
                writer.add_example(row, p, mo, po, grp.ambient)
            bar.update(len(grp.poses))
            if grp.last_of_shard:
                writer.finish()
                done.add(sh.rel)
                writer = None
                current = None
    finally:
        if writer is not None:
            writer.abort()


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
