"""Loader and poser speed on the real models.

    .venv/bin/python bench/bench_load_pose.py [--models DIR] [--repeat 5] [--poses 200]

Per model it prints:
  load       ms for renderer.modelfile.load_model (best of --repeat)
  pymeshio   ms for pymeshio's own reader alone on the same bytes (best of --repeat;
             '-' where pymeshio cannot read the file at all)
  rig        ms for resolve_face_rig (geometry of every wink candidate)
  pose       ms per ModelPoser.pose() over --poses random poses (median, and 95th pct)
  posed V    vertices the neck rotation actually re-skins
Targets (issue 2): a 22k-vertex PMX loads in well under 0.6 s; one pose < 5 ms.
The machine may be shared with other jobs: figures are best-of / medians.
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _best(fn, repeat):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _pymeshio_alone(data: bytes):
    from pymeshio.pmd import reader as pmd_reader
    from pymeshio.pmx import reader as pmx_reader

    if data[:4] == b"PMX ":
        return pmx_reader.read(io.BytesIO(data))
    return pmd_reader.read(io.BytesIO(data))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=str(REPO.parent / "shared" / "models"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--poses", type=int, default=200)
    args = ap.parse_args(argv)

    from renderer.errors import ModelLoadError
    from renderer.modelfile import load_model
    from renderer.morphs import resolve_face_rig
    from renderer.posing import ModelPoser

    paths = sorted(p for p in Path(args.models).rglob("*") if p.suffix.lower() in (".pmx", ".pmd"))
    if not paths:
        print(f"no .pmx/.pmd under {args.models}")
        return 1
    rng = np.random.default_rng(0)
    poses = rng.uniform(-1, 1, (args.poses, 6))
    poses[:, 3:] = np.abs(poses[:, 3:])
    print(f"{'model':48s} {'V':>6s} {'load':>8s} {'pymeshio':>9s} {'rig':>7s} "
          f"{'pose med':>9s} {'p95':>7s} {'posed V':>8s}")
    for p in paths:
        data = p.read_bytes()
        name = str(p.relative_to(args.models))
        try:
            t_load, model = _best(lambda: load_model(p, data), args.repeat)
        except ModelLoadError as e:
            print(f"{name:48s} load error: {e}")
            continue
        try:
            t_pm, _ = _best(lambda: _pymeshio_alone(data), args.repeat)
            pm = f"{t_pm * 1e3:8.1f}"
        except Exception as e:  # noqa: BLE001 - pymeshio alone rejects some files
            pm = "       -"
            note = f"pymeshio alone: {type(e).__name__}"
        else:
            note = ""
        t_rig, rig = _best(lambda: resolve_face_rig(model), 1)
        poser = ModelPoser(model, rig)
        if rig.neck_root < 0 or rig.neck_tip < 0:
            print(f"{name:48s} {model.vertex_count:6d} {t_load * 1e3:7.1f} {pm} "
                  f"{t_rig * 1e3:6.1f}  (no neck bones: not posed)")
            continue
        poser.pose(poses[0])
        times = []
        for q in poses:
            t = time.perf_counter()
            poser.pose(q)
            times.append(time.perf_counter() - t)
        times = np.array(times) * 1e3
        posed_v = max((len(v) for v in poser._subset_cache.values()), default=0)
        print(f"{name:48s} {model.vertex_count:6d} {t_load * 1e3:7.1f} {pm} {t_rig * 1e3:6.1f} "
              f"{np.median(times):8.2f} {np.percentile(times, 95):7.2f} {posed_v:8d}  {note}")
    print("(ms; load/pymeshio best of %d, pose over %d random poses)" % (args.repeat, args.poses))
    return 0


if __name__ == "__main__":
    sys.exit(main())
