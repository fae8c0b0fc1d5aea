"""Speed of `thactl models check` and of the model page's live render.

    python bench/bench_models_check.py [MODELS_DIR] [--workers 1,2] [--renders 40]

Prints models/s of a cold `models check` (fresh cache) per worker count, then, for the model
page of `thactl serve`, the latency of one slider change (HTTP request to PNG received) over
`--renders` poses on one model, with the render worker's own time beside it. Also prints the
load average, since the figures depend on what else runs.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def bench_check(models: Path, workers: int) -> tuple[int, float]:
    from dataset.collection import CheckSettings, check_collection

    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="thactl-bench-")
    t = time.perf_counter()
    n = sum(1 for _ in check_collection(CheckSettings(models, workers=workers)))
    return n, time.perf_counter() - t


def bench_slider(models: Path, model: str, renders: int) -> tuple[list[float], list[float]]:
    from app.config import ServeConfig
    from app.server import make_server

    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="thactl-bench-")
    srv = make_server(ServeConfig(port=0, models=models))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    page = srv.pages[0]
    page.view.wait()
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=120)

    def get(path: str):
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        assert r.status == 200, body[:200]
        return r

    get(f"/api/models/model?path={model}")                 # assembles the model once
    wall, worker = [], []
    try:
        for i in range(renders + 2):
            v = (i % 21) / 10.0 - 1.0                        # a slider dragged across its range
            t = time.perf_counter()
            r = get(f"/api/models/render?path={model}&pose=0,{v:.2f},0,0,0,1")
            if i >= 2:                                       # the first renders warm the scene
                wall.append((time.perf_counter() - t) * 1000.0)
                worker.append(float(r.getheader("X-Render-Ms")))
    finally:
        conn.close()
        srv.shutdown()
        for p in srv.pages:
            p.close()
    return wall, worker


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="?", default=os.environ.get("THACTL_TEST_MODELS", str(REPO.parent / "shared" / "models")))
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--renders", type=int, default=40)
    ap.add_argument("--model", default="animasa_miku_pmx_j3/index.pmx")
    a = ap.parse_args()
    models = Path(a.models).resolve()
    print(f"load average before: {os.getloadavg()[0]:.1f}, cpus: {os.cpu_count()}")
    rows = {}
    for w in (int(x) for x in a.workers.split(",")):
        n, dt = bench_check(models, w)
        rows[w] = dict(models=n, seconds=round(dt, 1), models_per_s=round(n / dt, 2))
        print(f"models check, {w} worker(s): {n} models in {dt:.1f} s = {n / dt:.2f} models/s "
              f"(load {os.getloadavg()[0]:.1f})")
    wall, worker = bench_slider(models, a.model, a.renders)
    q = statistics.quantiles(wall, n=10)
    print(f"slider change on {a.model} (256 px, 4x AA, PNG over HTTP): median {statistics.median(wall):.1f} ms, "
          f"p90 {q[-1]:.1f} ms; render worker alone median {statistics.median(worker):.1f} ms "
          f"(load {os.getloadavg()[0]:.1f})")
    print(json.dumps(dict(check=rows, slider_ms=dict(median=statistics.median(wall), p90=q[-1],
                                                     worker_median=statistics.median(worker)))))


if __name__ == "__main__":
    main()
