"""Renderer throughput on the real models: images/s with and without AA, next to the raw
rasterisation cost of the same triangles, and where the rest of the frame time goes.

    .venv/bin/python bench/bench_render.py [--models DIR] [--size 256] [--frames 60] [--only NAME]

For every usable model it prints:
  aa4 / aa0      full ModelScene.render() (upload + draw + AA resolve + readback +
                 un-premultiply), images/s, with 4x MSAA and without
  raster4/raster0  the same triangles, one draw call, trivial shader, no readback
                 (bare rasterisation of this model at this size), images/s
  upload, read, unprem  ms per frame spent on vertex upload, AA resolve + readback,
                 and un-premultiplying (numpy)
  pose           ms per ModelPoser.pose() (the loader's part)
  +pose/s        images/s of pose + render (aa4), what the data generator gets per process
  nonrast%       (pose + upload + read) / (pose + full aa4 render): everything that is not
                 rasterisation, as a share of the frame time
Posing is done before the timed loops (a small set of random poses is reused), so
the render figures are the renderer's own cost. The machine may be shared: the
figures are best-of-3 repetitions.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _best(fn, n: int, reps: int = 3) -> float:
    """Best-of-`reps` seconds per call of fn over n calls."""
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        for i in range(n):
            fn(i)
        best = min(best, (time.perf_counter() - t) / n)
    return best


HEADER = (f"{'model':44s} {'tris':>6s} {'aa4/s':>7s} {'aa0/s':>7s} {'raster4/s':>9s} {'raster0/s':>9s} "
          f"{'upload':>7s} {'read':>6s} {'unprem':>6s} {'pose':>6s} {'+pose/s':>7s} {'nonrast%':>8s}")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=str(REPO.parent / "shared" / "models"))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--only", default=None, help="substring of the model path to keep")
    ap.add_argument("--shading", default="phong", choices=["phong", "toon"])
    return ap.parse_args(argv)


def load_posable(path: Path, rel: str):
    """(model, face rig, poser) of a usable model, or None (said why)."""
    from renderer.errors import RendererError
    from renderer.face_rig import resolve_face_rig
    from renderer.modelfile import load_model
    from renderer.posing import ModelPoser

    try:
        model = load_model(path)
        rig = resolve_face_rig(model)
        if rig.problems():
            print(f"{rel:44s} skipped: {'; '.join(rig.problems())[:60]}")
            return None
        return model, rig, ModelPoser(model, rig)
    except RendererError as e:
        print(f"{rel:44s} skipped: {e}")
        return None


def time_model(model, rig, poser, rc4, rc0, args: argparse.Namespace, rng: np.random.Generator) -> tuple:
    """(triangles, aa4/s, aa0/s, raster4/s, raster0/s, upload s, read s, unprem s, pose s, +pose/s,
    non-raster share) of one model."""
    from core.pose import REST_POSE
    from renderer.framing import estimate_frame
    from renderer.offscreen import unpremultiply

    frame = estimate_frame(model, rig, poser.pose(REST_POSE).positions)
    poses = np.concatenate([rng.uniform(-1, 1, (8, 3)), rng.uniform(0, 1, (8, 3))], axis=1).astype(np.float32)
    t_pose = _best(lambda i: poser.pose(poses[i % 8]), 16)
    meshes = [poser.pose(p) for p in poses]
    s4, s0 = rc4.prepare(model, args.shading), rc0.prepare(model, args.shading)
    n = args.frames
    for s in (s4, s0):                          # warm up (shader/texture first use)
        s.render(meshes[0], frame)
        s.raster_baseline(frame)
    t4 = _best(lambda i: s4.render(meshes[i % 8], frame), n)
    t0 = _best(lambda i: s0.render(meshes[i % 8], frame), n)
    r4 = _best(lambda i: s4.raster_baseline(frame), n)
    r0 = _best(lambda i: s0.raster_baseline(frame), n)

    def upload(i):
        s4.upload(meshes[i % 8])
        rc4.ctx.finish()
    t_up = _best(upload, n)
    rc4.begin()
    s4.draw(frame)
    rc4.ctx.finish()
    t_read = _best(lambda i: rc4.finish(), n)
    premul = rc4.finish()
    t_unp = _best(lambda i: unpremultiply(premul.copy()), n)
    s4.release()
    s0.release()
    nonraster = (t_pose + t_up + t_read) / (t_pose + t4)
    return (model.triangle_count, 1 / t4, 1 / t0, 1 / r4, 1 / r0, t_up, t_read, t_unp, t_pose,
            1 / (t_pose + t4), nonraster)


def print_row(label: str, r, tris_format: str = "6d") -> None:
    print(f"{label:44s} {r[0]:{tris_format}} {r[1]:7.1f} {r[2]:7.1f} {r[3]:9.1f} {r[4]:9.1f} "
          f"{r[5] * 1e3:6.2f}m {r[6] * 1e3:5.2f}m {r[7] * 1e3:5.2f}m {r[8] * 1e3:5.2f}m "
          f"{r[9]:7.1f} {r[10] * 100:7.1f}%", flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    from renderer.offscreen import RenderContext

    root = Path(args.models)
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".pmx", ".pmd"))
    if args.only:
        paths = [p for p in paths if args.only in str(p)]
    if not paths:
        print(f"no models under {root}", file=sys.stderr)
        return 1
    rng = np.random.default_rng(0)
    rc4 = RenderContext(size=args.size, aa=4)
    rc0 = RenderContext(size=args.size, aa=0)
    gl = rc4.ctx.info
    print(f"renderer: {gl.get('GL_RENDERER')} | size {args.size} | shading {args.shading} | "
          f"{args.frames} frames x best of 3")
    print(HEADER)
    print("-" * len(HEADER))
    rows = []
    for path in paths:
        rel = str(path.relative_to(root))
        posable = load_posable(path, rel)
        if posable is not None:
            rows.append(time_model(*posable, rc4, rc0, args, rng))
            print_row(rel, rows[-1])
    if rows:
        print("-" * len(HEADER))
        print_row("mean", np.array(rows, float).mean(axis=0), tris_format="6.0f")
        print("read = AA resolve + readback + un-premultiply (unprem also shown alone); "
              "nonrast% = (pose + upload + read) / (pose + full aa4 render)")
    rc4.release()
    rc0.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
