"""Loader and poser speed on the real models.

    .venv/bin/python bench/bench_load_pose.py [--models DIR] [--repeat 5] [--poses 200]

Per model it prints:
  load       ms for renderer.modelfile.load_model (best of --repeat)
  pymeshio   ms for pymeshio's own reader alone on the same bytes (best of --repeat;
             '-' where pymeshio cannot read the file at all)
  rig        ms for resolve_face_rig (geometry of every wink candidate)
  pose       ms per ModelPoser.pose() over --poses random poses (median, and 95th pct)
  posed V    vertices the neck rotation actually re-skins
Targets (issue 2): a 22k-vertex PMX loads in well under 0.6 s (a 50k-vertex one, made
synthetically here, in under 0.6 s); one pose < 5 ms.
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


def synthetic_pmx(n_vertices: int, seed: int = 0) -> bytes:
    """A PMX 2.0 of `n_vertices` random BDEF1/BDEF2/BDEF4/SDEF vertices, as many triangles,
    two bones and one vertex morph: a size test for models bigger than the real ones here."""
    import struct

    rng = np.random.default_rng(seed)

    def text(t: str) -> bytes:
        b = t.encode("utf-16-le")
        return struct.pack("<i", len(b)) + b

    out = [b"PMX ", struct.pack("<fB8B", 2.0, 8, 0, 0, 4, 1, 1, 2, 1, 1)]
    out += [text("synthetic"), text("synthetic"), text(""), text("")]
    out.append(struct.pack("<i", n_vertices))
    head = np.zeros(n_vertices, [("p", "<f4", 8)])
    head["p"] = rng.normal(size=(n_vertices, 8))
    kinds = rng.integers(0, 4, n_vertices)
    size = {0: 2, 1: 8, 2: 24, 3: 44}
    for i in range(n_vertices):
        k = int(kinds[i])
        out.append(head[i].tobytes() + bytes([k]) + bytes(size[k]) + struct.pack("<f", 1.0))
    out.append(struct.pack("<i", 3 * n_vertices))
    out.append(rng.integers(0, n_vertices, 3 * n_vertices).astype("<i4").tobytes())
    out.append(struct.pack("<i", 0))                                   # textures
    out.append(struct.pack("<i", 1) + text("m") + text("m") + struct.pack("<11f", *[1] * 11)
               + b"\x00" + struct.pack("<5f", 0, 0, 0, 1, 1) + struct.pack("<bbBBb", -1, -1, 0, 1, 0)
               + text("") + struct.pack("<i", 3 * n_vertices))
    out.append(struct.pack("<i", 2))
    for name, parent in (("センター", -1), ("頭", 0)):
        out.append(text(name) + text(name) + struct.pack("<3fhiH3f", 0, 0, 0, parent, 0, 0x1A,
                                                         0, 1, 0))
    k = n_vertices // 10
    out.append(struct.pack("<i", 1) + text("あ") + text("a") + struct.pack("<BBi", 3, 1, k))
    rec = np.zeros(k, [("i", "<i4"), ("o", "<f4", 3)])
    rec["i"] = np.arange(k)
    out.append(rec.tobytes())
    out.append(struct.pack("<iii", 0, 0, 0))                           # slots, bodies, joints
    return b"".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=str(REPO.parent / "shared" / "models"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--poses", type=int, default=200)
    ap.add_argument("--synthetic", type=int, nargs="*", default=[50_000],
                    help="also time synthetic PMX files of these vertex counts")
    args = ap.parse_args(argv)

    from renderer.errors import ModelLoadError
    from renderer.modelfile import load_model
    from renderer.face_rig import resolve_face_rig
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
        posed_v = max((len(v[0]) + len(v[3]) for v in poser._subset_cache.values()),
                      default=0)
        print(f"{name:48s} {model.vertex_count:6d} {t_load * 1e3:7.1f} {pm} {t_rig * 1e3:6.1f} "
              f"{np.median(times):8.2f} {np.percentile(times, 95):7.2f} {posed_v:8d}  {note}")
    for n in args.synthetic:
        data = synthetic_pmx(n)
        t_load, model = _best(lambda: load_model(f"synthetic-{n}.pmx", data), args.repeat)
        t_pm, _ = _best(lambda: _pymeshio_alone(data), max(1, args.repeat // 2))
        print(f"{'synthetic PMX (BDEF1/2/4, SDEF)':48s} {model.vertex_count:6d} "
              f"{t_load * 1e3:7.1f} {t_pm * 1e3:8.1f}")
    print("(ms; load/pymeshio best of %d, pose over %d random poses)" % (args.repeat, args.poses))
    return 0


if __name__ == "__main__":
    sys.exit(main())
