"""train/threads.py: the one rule for torch's CPU threads (thactl train, the learning check, the benches)."""
from __future__ import annotations

import pytest
import torch

from train.threads import default_threads, set_threads


@pytest.mark.parametrize("cores, load, procs, want", [
    (2, 0.0, 1, 2),      # a quiet 2-core box: both cores
    (2, 1.2, 1, 1),      # another busy job: one thread
    (2, 6.0, 1, 1),      # overloaded: never fewer than one
    (16, 0.0, 8, 2),     # torchrun, 8 processes on 16 cores: 2 each
    (16, 8.0, 8, 1),     # the same with 8 busy cores
    (1, 0.0, 4, 1),
])
def test_the_rule_takes_the_cores_not_busy(cores, load, procs, want):
    assert default_threads(cores, load, procs) == want


def test_requested_then_omp_num_threads_then_the_rule(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert set_threads(None) == 1 and torch.get_num_threads() == 1
        assert set_threads(2) == 2 and torch.get_num_threads() == 2
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert set_threads(None) == default_threads()
        with pytest.raises(ValueError, match="at least 1"):
            set_threads(0)
    finally:
        torch.set_num_threads(before)


def test_thactl_train_takes_threads(tmp_path, capsys):
    from cli import main

    assert main(["train", "morpher", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o"),
                 "--threads", "0"]) == 2                          # click's range check, before any work
    assert "--threads" in capsys.readouterr().err
    assert main(["train", "--help"]) == 0
    assert "--threads" in capsys.readouterr().out
