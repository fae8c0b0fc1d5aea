"""bench/gpu_check.sh: the plan fits its budget; the gl step fails on a software renderer and training
gets synthetic shards; the NVIDIA vendor file is looked for; at most 8 files come back; and the CPU smoke
run (slow) takes every step end to end at tiny sizes, loader workers, SIGTERM stops and inductor included."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "gpu_check.sh"
DEVICE_FILE_LIMIT = 8  # what the device tool brings back from $OUT


def run(tmp_path: Path, *args: str, env: dict | None = None, timeout: int = 300) -> tuple[subprocess.CompletedProcess, str]:
    env = dict(os.environ, OUT=str(tmp_path / "out"), PYTHON=sys.executable, **(env or {}))
    proc = subprocess.run(["bash", str(SCRIPT), *args, "--work", str(tmp_path / "work")], env=env,
                          capture_output=True, text=True, timeout=timeout)
    summary = tmp_path / "out" / "gpu_check" / "summary.txt"
    return proc, summary.read_text() if summary.is_file() else ""


def out_files(tmp_path: Path) -> list[Path]:
    return sorted(p for p in (tmp_path / "out").rglob("*") if p.is_file())


@pytest.mark.parametrize("smoke", [False, True])
def test_plan_lists_every_step_within_the_budget(smoke):
    args = ["--plan"] + (["--cpu-smoke"] if smoke else [])
    proc = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [re.match(r"(\S+)\s+(\d+)s\s+(\d+)s\s+\S", line) for line in proc.stdout.splitlines()[1:-1]]
    assert all(rows), proc.stdout
    names = [r[1] for r in rows]
    assert names[:2] == ["bench-bf16-eager", "bench-bf16-compile"]  # the target figures first
    assert set(names) == {"bench-bf16-eager", "bench-bf16-compile", "install", "gl", "render", "train", "poser",
                          "torchrun", "bench-fp32-eager"}
    limits, kills = [int(r[2]) for r in rows], [int(r[3]) for r in rows]
    assert all(k > 0 for k in kills)
    budget = 1800 if smoke else 480
    last = proc.stdout.splitlines()[-1]
    assert f"sum of the limits {sum(limits)} s; with every kill delay {sum(limits) + sum(kills)} s; " \
           f"budget {budget} s: within budget" == last
    assert sum(limits) + sum(kills) <= budget
    over = subprocess.run(["bash", str(SCRIPT), *args, "--budget", "100"], capture_output=True, text=True, timeout=30)
    assert over.returncode != 0 and "OVER BUDGET" in over.stdout


def test_gl_fails_on_a_software_renderer_and_training_gets_synthetic_shards(tmp_path):
    """GPU mode on this CPU machine, the two steps that need no GPU: EGL gives llvmpipe (or nothing)."""
    proc, summary = run(tmp_path, "--steps", "gl,render")
    if "[gl] ok" in summary:
        pytest.skip("this machine's EGL gives a hardware renderer")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "[gl] FAILED" in summary and "GL FAILED" in summary
    if "GL device 0: llvmpipe" in summary:  # the renderer string is reported
        assert re.search(r"GL FAILED: EGL gave a software renderer \(llvmpipe[^)]*\)", summary)
    assert "[render] ok" in summary and "synthetic shards: 256 train / 16 validation examples at 256 px" in summary
    assert sorted((tmp_path / "work" / "data" / "train").glob("*.h5"))
    files = out_files(tmp_path)
    assert [p.name for p in files] == ["logs.tar.gz", "summary.txt"]
    with tarfile.open(files[0]) as tar:
        assert sorted(tar.getnames()) == ["logs", "logs/gl.log", "logs/render.log"]


def test_nvidia_vendor_file_is_found_and_a_missing_driver_named(tmp_path):
    vendor = tmp_path / "vendor"
    vendor.mkdir()
    (vendor / "10_nvidia.json").write_text('{"file_format_version": "1.0.0", '
                                           '"ICD": {"library_path": "libEGL_nvidia_absent.so.0"}}\n')
    env = {"THACTL_EGL_VENDOR_DIRS": str(vendor)}
    for name in ("__EGL_VENDOR_LIBRARY_FILENAMES", "__EGL_VENDOR_LIBRARY_DIRS", "GLCONTEXT_DEVICE_INDEX"):
        env[name] = ""
    proc, summary = run(tmp_path, "--steps", "gl", env=env)
    assert proc.returncode == 1
    assert f"EGL vendor file: __EGL_VENDOR_LIBRARY_FILENAMES={vendor / '10_nvidia.json'}" in summary
    assert "EGL vendor library: libEGL_nvidia_absent.so.0" in summary and "neither in the linker cache" in summary
    assert "GL FAILED: no EGL device gives an OpenGL 3.3 context" in summary  # glvnd loaded no vendor


@pytest.mark.slow
def test_gpu_check_cpu_smoke_runs_every_step(tmp_path):
    proc, summary = run(tmp_path, "--cpu-smoke", timeout=2400)
    assert proc.returncode == 0, summary + proc.stderr[-3000:]
    for name in ("bench-bf16-eager", "bench-bf16-compile", "install", "gl", "render", "train", "poser", "torchrun",
                 "bench-fp32-eager"):
        assert f"[{name}] ok" in summary, f"step {name} not ok:\n{summary}"
    lines = [line.strip() for line in summary.splitlines()]
    # at most 8 files come back from $OUT: the summary and one archive of the logs
    assert [p.name for p in out_files(tmp_path)] == ["logs.tar.gz", "summary.txt"]
    assert len(out_files(tmp_path)) <= DEVICE_FILE_LIMIT
    # (a) every network in every layout eager, the morpher compiled by inductor, fp32 eager
    for net in ("morpher", "rotator", "combiner"):
        for layout in ("nchw", "cl", "cl-kept"):
            assert any(re.match(rf"bf16 eager {net}\s+\[{layout}\]\s+[\d.]+ examples/s .* MiB", x) for x in lines)
        assert any(x.startswith(f"bf16 eager {net}") and "layouts against nchw: cl " in x for x in lines)
        assert any(re.match(rf"fp32 eager {net}\s+[\d.]+ examples/s .* MiB", x) for x in lines)
    assert any(re.match(r"bf16 compile morpher\s+[\d.]+ examples/s", x) for x in lines)
    assert any(x.startswith("device cpu") and "torch.compile (inductor)" in x for x in lines)
    # (c) render with 1 and 2 workers; (d) the poser at both batch sizes
    assert sum(x.startswith(("workers 1:", "workers 2:")) for x in lines) == 2
    assert sum("fp32, batch 1: full poser" in x for x in lines) == 1
    assert sum("fp32, batch 8: full poser" in x for x in lines) == 1
    # (b) stopped by its time limit with 2 loader workers: checkpoint, falling loss
    assert any(re.match(r"train stopped by the time limit \(SIGTERM\): checkpoint at \d+ examples", x) for x in lines)
    assert any(x.startswith("train loss") and "FALLING" in x and "NOT FALLING" not in x for x in lines)
    # (e) two gloo processes under torchrun: both stop cleanly on SIGTERM, and the run resumes
    assert "torchrun: DDP, 2 processes (gloo, CPU)" in lines
    assert any(re.match(r"torchrun SIGTERM: 2 of 2 processes stopped cleanly; checkpoint at \d+ examples; "
                        r"loader workers killed: False", x) for x in lines)
    assert any(x.startswith("torchrun resume: trained morpher") for x in lines)
    with tarfile.open(tmp_path / "out" / "gpu_check" / "logs.tar.gz") as tar:
        assert "logs/train.log" in tar.getnames() and "logs/torchrun.log" in tar.getnames()
