"""The render worker processes of `thactl render` and `thactl models check`: each owns one OpenGL
context and runs validation tasks (`validate_task`: a model's verdict) or render tasks
(`render_task`: one model row of a shard, images returned as compressed HDF5 chunks).

`Runner` runs tasks in this process (one worker) or in a spawn pool (`RestartingPool`) that
survives a worker's death; results come back in task order.  `running` is a Runner closed on exit
and terminated when the body raises.  The OpenGL parts of renderer/ are imported inside the task
functions, so importing this module loads no OpenGL.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import sys
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from core.pose import REST_POSE
from dataset.errors import DatasetError
from dataset.modelcheck import ModelCheck
from dataset.shards import compress_image

log = logging.getLogger("thactl.dataset")


#: this process's worker state: settings, GL contexts, the last model's poser and scene
_W: dict[str, Any] = {}


def worker_init(size: int, aa: int, shading: str, overrides: str | None, models_root: str,
                lp_threads: int | None, log_level: int) -> None:
    """Set this process up as a render worker (`worker_args` makes the arguments); in a child
    process Ctrl-C is left to the main process."""
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


def validate_task(task: tuple[str, str, str]) -> dict:
    """(path, rel_path, sha256) -> the model's verdict (ModelCheck JSON), with the probe context."""
    from renderer.offscreen import RenderContext

    from dataset.modelcheck import PROBE_SIZE, validate_model

    path, rel, sha = task
    if _W.get("probe") is None:
        _W["probe"] = RenderContext(size=PROBE_SIZE, aa=0)
    return validate_model(Path(path), rel, _W["probe"], _W["overrides"], _W["models_root"],
                          sha256=sha).to_json()


def render_task(task: dict) -> dict:
    """One model row: {path, frame, ambient, poses} -> {rest, morphed, posed} as compressed chunks;
    with `schema` (a pose schema's JSON) see schema_render_task."""
    from renderer.framing import Frame

    if task.get("schema") is not None:
        return schema_render_task(task)
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


#: ambient light of the availability probe (fixed, so a model's record is the same in every row)
PROBE_AMBIENT = 0.85


def _schema_state(path: str, schema_json: dict, frame):
    """(schema rig, available (P,) bools) of a model under a schema in this process: the rig binds
    each parameter (renderer.schema_rig; kept for the last model only), the probe renders each found
    parameter at its extreme at the run's size and frame and keeps those that change pixels (kept
    per model: a model's record is the same in every row)."""
    import json

    from core.poseschema import parse_schema
    from renderer.assembly import assemble_model
    from renderer.schema_rig import probe_available, resolve_schema_rig

    key = (path, json.dumps(schema_json, sort_keys=True))
    poser, scene = _model_state(path)
    last = _W.get("schema_rig")
    if last is None or last[0] != key:
        assembled = assemble_model(path, _W["overrides"], _W["models_root"], model=poser.model)
        rig = resolve_schema_rig(poser.model, parse_schema(schema_json, "schema"), assembled.override,
                                 assembled.rig)
        _W["schema_rig"] = last = (key, rig)
    rig = last[1]
    known = _W.setdefault("schema_available", {})
    if key not in known:
        known[key] = probe_available(rig, poser, lambda m: scene.render(m, frame, ambient=PROBE_AMBIENT))
    return rig, known[key]


def schema_render_task(task: dict) -> dict:
    """One model row of a pose schema's data ({path, frame, ambient, schema, draw}): the poses are
    drawn here, by dataset.renderplan.schema_poses from the row's `draw` and what the model can show
    (renderer.schema_rig.probe_available; the schema's law among those, unavailable parameters at
    rest), so the poses returned (`poses`) are true of the images; the rest image is the schema's rest
    pose, `morphed` the example's face parameters (rotation inputs at rest), `posed` the whole pose;
    `available` (P,) is the model's record."""
    from dataset.renderplan import schema_poses
    from renderer.framing import Frame

    poser, scene = _model_state(task["path"])
    frame = Frame(*task["frame"])
    rig, available = _schema_state(task["path"], task["schema"], frame)
    rest_pose = rig.schema.rest
    rotation = rig.schema.indices("rotation")
    amb = task["ambient"]
    poses = schema_poses(task["draw"], rig.schema, available)
    rest = compress_image(scene.render(rig.pose(poser, rest_pose), frame, ambient=amb))
    morphed, posed = [], []
    for p in poses:
        expr = p.copy()
        expr[rotation] = rest_pose[rotation]
        morphed.append(compress_image(scene.render(rig.pose(poser, expr), frame, ambient=amb)))
        posed.append(compress_image(scene.render(rig.pose(poser, p), frame, ambient=amb)))
    return dict(rest=rest, morphed=morphed, posed=posed, poses=poses, available=available)


class Runner:
    """Runs tasks in-process (workers <= 1, unless `processes`) or in a spawn pool; ordered results."""

    def __init__(self, workers: int, init_args: tuple, processes: bool = False):
        self.pool = None
        if workers > 1 or processes:
            self.pool = RestartingPool(workers, init_args)
        else:
            args = list(init_args)
            args[5] = None  # keep llvmpipe's own thread count in-process
            worker_init(*args)

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
        _W.pop("schema_rig", None)
        for key in ("rc", "probe"):  # in-process runs leave no GL objects behind
            rc = _W.get(key)
            if rc is not None:
                try:
                    rc.release()
                except Exception:
                    pass
                _W[key] = None


class RestartingPool:
    """Spawn worker processes that survive the death of a worker (issue 7, robustness).

    multiprocessing.Pool loses the task of a worker killed by a signal (a segfault in a GL
    driver, the OOM killer, SIGKILL) and then waits for it forever.  Here a dead worker
    breaks the pool; it is restarted and the lost tasks run again (results stay in task
    order, so the shard in progress goes on).  The lost tasks are first re-run one at a
    time, so a task that kills its worker again on its own is identified: a validation
    task then yields a rejected-model result; a render task stops the run with a
    DatasetError naming the model (a re-run resumes).  Same interface as the part of
    multiprocessing.Pool that Runner uses (imap, close, terminate, join).
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
                                      initializer=worker_init, initargs=self.init_args)

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
        if fn is validate_task:
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


def worker_args(size: int, aa: int, shading: str, overrides: Path | None, models_root: Path,
                workers: int) -> tuple:
    """worker_init's arguments (llvmpipe gets one thread per worker process when several run)."""
    return (size, aa, shading, str(overrides) if overrides else None, str(models_root),
            1 if workers > 1 else None, logging.getLogger("thactl").level)


@contextmanager
def running(workers: int, init_args: tuple, processes: bool = False) -> Iterator["Runner"]:
    """A Runner closed on exit; terminated (workers killed) when the body raises."""
    runner = Runner(workers, init_args, processes)
    try:
        yield runner
    except BaseException:
        runner.close(terminate=True)
        raise
    runner.close()


def progress_bar(total: int, desc: str, enabled: bool, unit: str = "ex"):
    """The tqdm bar (on stderr) of work the workers do: validation and rendering."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True,
                smoothing=0.1, file=sys.stderr)
