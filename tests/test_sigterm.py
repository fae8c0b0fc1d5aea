"""SIGTERM to the whole process group (what `timeout` does, and torchrun to each rank's group) while
DataLoader workers run: the run finishes its step, saves a checkpoint, exits, and resumes from it.

Before the workers left the main process's process group, they died of it and the main process failed
with "DataLoader worker ... killed by signal: Terminated" without saving anything.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from test_train import write_synthetic_data

VENV_BIN = Path(sys.executable).parent
TINY = ["--base-channels", "8", "--num-downsample", "2", "--num-res-blocks", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_synthetic_data(tmp_path_factory.mktemp("synth"))


def _train_args(data: Path, out: Path, budget: int, workers: int) -> list[str]:
    # no periodic checkpoint and no validation: the only checkpoint is the one the signal makes
    return ["train", "rotator", "--data", str(data), "--out", str(out), *TINY, "--batch-size", "4",
            "--examples", str(budget), "--checkpoint-every", "0", "--val-every", "0", "--val-examples", "0",
            "--log-every", "4", "--seed", "3", "--device", "cpu", "--quiet", "--workers", str(workers)]


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _train_records(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]  # whole lines
    return [r for r in recs if r.get("split") == "train"]


def _term_group_once_training(cmd: list[str], run: Path) -> tuple[int, str]:
    """Start `cmd` in its own process group, wait for two logged training steps, SIGTERM the group."""
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and len(_train_records(run)) < 2:
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it was signalled:\n" + proc.stdout.read()[-3000:]
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, out


def _check_stopped_then_resume(run: Path, out: str, resume_cmd) -> None:
    assert "killed by signal" not in out, out[-3000:]
    seen = torch.load(run / "checkpoint.pt", weights_only=False)["examples_seen"]
    assert 8 <= seen < 100_000
    assert (run / "rotator.safetensors").is_file()
    budget = seen + 16  # the budget may change on resume; the rest of the settings may not
    r = subprocess.run(resume_cmd(budget), env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert f"resuming {run} at {seen} examples" in r.stderr + r.stdout
    assert torch.load(run / "checkpoint.pt", weights_only=False)["examples_seen"] == budget
    examples = [rec["examples"] for rec in _train_records(run)]
    assert examples == list(range(4, budget + 1, 4))  # the resumed records continue the stopped ones


def test_sigterm_to_the_group_with_loader_workers_checkpoints_and_resumes(data, tmp_path):
    run = tmp_path / "run"
    thactl = [str(VENV_BIN / "thactl")]
    rc, out = _term_group_once_training(thactl + _train_args(data, run, 100_000, workers=2), run)
    assert rc == 130, out[-3000:]
    assert "Traceback" not in out and "re-run the same command to continue" in out, out[-3000:]
    _check_stopped_then_resume(run, out, lambda budget: thactl + _train_args(data, run, budget, workers=2))


def test_sigterm_to_torchrun_with_two_gloo_processes_and_workers(data, tmp_path):
    """`timeout torchrun ...`: torchrun forwards SIGTERM to both ranks (and their workers); they agree
    on the stop, rank 0 saves, both exit, and the same torchrun command resumes."""
    run = tmp_path / "run"

    def cmd(budget):
        return [str(VENV_BIN / "torchrun"), "--standalone", "--nproc_per_node", "2",
                str(VENV_BIN / "thactl"), *_train_args(data, run, budget, workers=1)]
    rc, out = _term_group_once_training(cmd(100_000), run)
    assert rc != 0  # torchrun itself reports the signal it got
    assert out.count("re-run the same command to continue") == 2, out[-3000:]  # both ranks stopped cleanly
    _check_stopped_then_resume(run, out, cmd)


class _FailsAtFive(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 64

    def __getitem__(self, i: int) -> torch.Tensor:
        if i == 5:
            raise ValueError("a bad chunk")
        return torch.zeros(2)


def test_loader_workers_leave_the_process_group_and_end_with_the_loop():
    """Workers sit in process groups of their own (a group's SIGTERM reaches only the main process), and an
    error from a batch, whose traceback pytest keeps, still shuts them down when the loop is left: at
    interpreter exit multiprocessing would SIGTERM them and join them without a timeout."""
    from train.data import worker_batches
    from train.signals import StopRequest, detach_worker

    loader = torch.utils.data.DataLoader(_FailsAtFive(), batch_size=1, num_workers=2, worker_init_fn=detach_worker)
    with StopRequest(), pytest.raises(ValueError, match="a bad chunk"):
        with worker_batches(loader) as batches:
            next(batches), next(batches)  # one batch from each worker (round robin): both have started
            workers = list(batches._workers)
            assert all(os.getpgid(w.pid) == w.pid != os.getpgid(0) for w in workers)
            for _ in batches:
                pass
    assert not any(w.is_alive() for w in workers)
