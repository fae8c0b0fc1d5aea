"""ShardDataset read speed in one process (random order), plus a DataLoader with 2 workers.

With no PATH, renders a small 256x256 data set from the built-in samples first
(needs OpenGL); with PATH (a data folder) reads that.

    .venv/bin/python bench/bench_read.py [PATH] [--reads 2000]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dataset.torchdata import ShardDataset  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", nargs="?")
    ap.add_argument("--reads", type=int, default=2000)
    args = ap.parse_args()
    tmp = None
    path = args.path
    if path is None:
        from dataset.generate import run_render
        from dataset.request import RenderRequest

        tmp = Path(tempfile.mkdtemp(prefix="thactl-bench-read-"))
        path = tmp / "data"
        print("rendering 300 examples from the built-in samples (256x256) ...")
        run_render(RenderRequest(out=path, count=300, val_count=0, test_count=0, shard_size=100,
                                 progress=False))
    try:
        ds = ShardDataset(path, split="train")
        n = len(ds)
        files = ds.files
        nbytes = sum(f.stat().st_size for f in files)
        print(f"{path}: {n} examples in {len(files)} shards, {nbytes / n / 1024:.1f} KB/example, "
              f"torch threads {torch.get_num_threads()}")
        rng = np.random.default_rng(0)
        order = rng.integers(0, n, args.reads)
        ds[0]
        t = time.perf_counter()
        c = time.process_time()
        for i in order:
            ds[int(i)]
        dt = time.perf_counter() - t
        dc = time.process_time() - c
        print(f"one process, random order: {args.reads / dt:.0f} reads/s "
              f"({dt / args.reads * 1e3:.2f} ms per example: 3 RGBA images -> float tensors); "
              f"CPU {dc / args.reads * 1e3:.2f} ms per example = {args.reads / dc:.0f} reads per "
              "CPU-second (the rate on an idle core)")
        dl = torch.utils.data.DataLoader(ds, batch_size=25, shuffle=True, num_workers=2,
                                         persistent_workers=False)
        t = time.perf_counter()
        k = 0
        for batch in dl:
            k += len(batch["index"])
            if k >= args.reads:
                break
        dt = time.perf_counter() - t
        print(f"DataLoader, 2 workers, batch 25 (incl. worker start): {k / dt:.0f} examples/s")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
