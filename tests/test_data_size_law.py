"""bench/data_size_law.py: the power-law fit, the seeds per K, and the plot, on constructed runs."""
from __future__ import annotations

import json
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from data_size_law import fit_power, load_runs, main, predict  # noqa: E402


def test_the_fit_recovers_a_power_law():
    ks = [3, 6, 13, 26, 39]
    c, b = fit_power(ks, [0.9 * k ** -0.2 for k in ks])
    assert c == pytest.approx(0.9) and b == pytest.approx(-0.2)
    assert predict((c, b), 7881) == pytest.approx(0.9 * 7881 ** -0.2)


def _run(path, k, test, train_files=39):
    path.write_text(json.dumps(dict(args=dict(characters=k), train_files=train_files if not k else k,
                                    curve=[dict(step=1, train=1.0, validation=1.0, test=1.0),
                                           dict(step=2, train=0.4, validation=test + 0.05, test=test)])))
    return path


def test_runs_by_k_with_all_files_named_by_their_count(tmp_path, capsys):
    files = [_run(tmp_path / "a.json", 3, 0.9), _run(tmp_path / "b.json", 3, 0.8), _run(tmp_path / "c.json", 0, 0.6)]
    runs = load_runs(files)
    assert list(runs) == [3, 39] and len(runs[3]) == 2 and runs[39][0]["test"] == 0.6
    assert main([*map(str, files), "--out", str(tmp_path / "law.png")]) == 0
    out = capsys.readouterr().out
    assert "| 3 | 2 | 0.400 | 0.900 | 0.850 (0.900 / 0.800) |" in out
    assert "extrapolation (beyond the data): K = 7881" in out and (tmp_path / "law.png").stat().st_size > 1000
