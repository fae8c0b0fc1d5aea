"""End-to-end `thactl render` throughput on the real models: examples/s with 1 and 2 workers.

An example = three images (rest amortised over --group-size examples: one rest
render per model row), posed + rendered + compressed + written into shards.
Prints, per worker count: wall time of the whole command (discovery,
validation, worker start-up included), the render phase alone (examples/s),
bytes per example on disk, and the CPU time spent per example (this process
and its workers), which gives the rate on an idle machine when the machine
is shared with other work.

    .venv/bin/python bench/bench_render_dataset.py [--models DIR] [--count 120] [--size 256] [--aa 4]
        [--workers 1,2] [--keep DATA]    # --keep: the last run's data folder is kept as DATA
"""
from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataset.generate import run_render  # noqa: E402
from dataset.request import RenderRequest
from dataset.shards import SPLITS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_models = os.environ.get("THACTL_TEST_MODELS",
                                    str(Path(__file__).resolve().parents[2] / "shared" / "models"))
    ap.add_argument("--models", default=default_models)
    ap.add_argument("--count", type=int, default=120)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--aa", type=int, default=4)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--keep", default=None, help="move the data of the last worker count here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(f"models {args.models}, {args.count} train examples (+ val/test defaults), "
          f"{args.size}x{args.size}, {args.aa}x AA, cpus {os.cpu_count()}")
    for w in (int(x) for x in args.workers.split(",")):
        tmp = Path(tempfile.mkdtemp(prefix="thactl-bench-"))
        ru0 = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        try:
            st = run_render(RenderRequest(out=tmp / "data", models=Path(args.models), count=args.count,
                                          val_count=args.count // 10, test_count=args.count // 10,
                                          size=args.size, aa=args.aa, workers=w, progress=False)).stats
            n = st.rendered_examples
            files = [p for s in SPLITS for p in (tmp / "data" / s).glob("shard-*.h5")]
            nbytes = sum(p.stat().st_size for p in files)
            print(f"workers {w}: {n} examples; whole command {st.elapsed_s:.1f} s "
                  f"({n / st.elapsed_s:.1f} ex/s); render phase {st.render_s:.1f} s "
                  f"({n / st.render_s:.1f} ex/s); {nbytes / n / 1024:.1f} KB/example on disk "
                  f"({len(files)} shards)")
            ru1 = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
            cpu = sum(b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime for a, b in zip(ru0, ru1))
            ncpu = os.cpu_count() or 1
            print(f"           CPU time {cpu:.1f} s = {cpu / n * 1e3:.0f} ms per example (whole command); "
                  f"a machine with {ncpu} idle cores would do about {ncpu * n / cpu:.1f} ex/s")
            if args.keep:
                shutil.rmtree(args.keep, ignore_errors=True)
                shutil.move(str(tmp / "data"), args.keep)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
