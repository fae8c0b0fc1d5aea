"""`thactl render` throughput per pose schema on the same models, in one run: tha1 (THA1's six numbers)
against tha3 (the 45; includes each model's availability probe, one render per parameter per worker).

    python bench/bench_schema_render.py [--count 48] [--size 256] [--rounds 2] [MODEL.pmx ...]

Default models: mmd_default_pmd/miku_v2.pmd and animasa_miku_pmx_j3/index.pmx from ../shared/models
(THACTL_TEST_MODELS). Rounds alternate the schemas, so a loaded machine slows both alike; prints
examples/s of the render phase (shards and manifest; validation verdicts come from the cache after
the first round) per round and the median per schema.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataset.generate import run_render  # noqa: E402
from dataset.request import RenderRequest  # noqa: E402

SHARED = Path(os.environ.get("THACTL_TEST_MODELS", Path(__file__).resolve().parents[2] / "shared" / "models"))
DEFAULT = [SHARED / "mmd_default_pmd" / "miku_v2.pmd", SHARED / "animasa_miku_pmx_j3" / "index.pmx"]


def copy_models(models: list[Path], to: Path) -> None:
    """Each model's folder (textures beside it) as its own source folder."""
    for i, m in enumerate(models):
        dst = to / f"m{i}"
        dst.mkdir(parents=True)
        for f in m.parent.iterdir():
            if f.is_file() and (f == m or f.suffix.lower() not in (".pmx", ".pmd")):
                shutil.copy(f, dst / f.name)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*", type=Path)
    ap.add_argument("--count", type=int, default=48)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    models = a.models or DEFAULT
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "models"
        copy_models(models, root)
        rates: dict[str, list[float]] = {"tha1": [], "tha3": []}
        for k in range(a.rounds):
            for schema in ("tha1", "tha3"):
                out = Path(tmp) / f"{schema}-{k}"
                r = RenderRequest(out=out, models=root, count=a.count, val_count=0, test_count=0,
                                  size=a.size, workers=a.workers, progress=False, split_ratios="1,0,0",
                                  schema=schema)
                res = run_render(r)
                rate = res.stats.rendered_examples / res.stats.render_s
                rates[schema].append(rate)
                print(f"round {k} {schema}: {res.stats.rendered_examples} examples in "
                      f"{res.stats.render_s:.1f} s = {rate:.2f} examples/s", flush=True)
    print(f"models: {', '.join(str(m.relative_to(SHARED)) if m.is_relative_to(SHARED) else str(m) for m in models)}; "
          f"{a.count} examples, {a.size} px, {a.workers} worker(s)")
    for schema, v in rates.items():
        print(f"{schema}: median {statistics.median(v):.2f} examples/s over {len(v)} rounds")
    print(f"tha3 / tha1: {statistics.median(rates['tha3']) / statistics.median(rates['tha1']):.2f}")


if __name__ == "__main__":
    main()
