"""bench/gpu_check.sh --cpu-smoke: every step of the GPU check runs end to end at tiny sizes."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_cpu_smoke_runs_every_step(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path / "out"), PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--cpu-smoke",
                           "--work", str(tmp_path / "work")],
                          env=env, capture_output=True, text=True, timeout=2400)
    summary = (tmp_path / "out" / "gpu_check" / "summary.txt").read_text()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    steps = ["install", "gl", "render", "train", "poser-batch1", "poser-batch8", "torchrun",
             "bench-fp32-eager", "bench-bf16-eager", "bench-fp32-compile", "bench-bf16-compile"]
    for name in steps:
        assert f"[{name}] ok" in summary, f"step {name} not ok:\n{summary}"
    lines = summary.splitlines()
    # (c) one throughput line per worker count, (d) fp32 frames/s at both batch sizes
    assert sum(line.strip().startswith(("workers 1:", "workers 2:")) for line in lines) == 2
    assert sum("fp32, batch 1: full poser" in line for line in lines) == 1
    assert sum("fp32, batch 8: full poser" in line for line in lines) == 1
    # (b) the loss curve is summarised; (e) torchrun trained and wrote weights
    assert any(line.strip().startswith("train loss") for line in lines)
    assert any("torchrun:" in line and "weights written: True" in line for line in lines)
    # (a) examples/s and memory for each network in each configuration
    for label in ("fp32 eager", "bf16 eager", "fp32 compile", "bf16 compile"):
        for net in ("morpher", "rotator", "combiner"):
            assert any(line.strip().startswith(f"{label} {net}") and "examples/s" in line and "MiB" in line
                       for line in lines), (label, net, summary)
    assert (tmp_path / "out" / "gpu_check" / "logs" / "train.log").is_file()
