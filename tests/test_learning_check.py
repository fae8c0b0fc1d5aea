"""bench/learning_check.py end to end at a tiny budget on the real models: it renders, trains the
three stages through thactl's loop, evaluates and writes its report (the figures are meaningless at
this budget; the README's come from the full run)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def learning_check():
    """The script as a module; the torch thread count it sets is put back afterwards."""
    threads = torch.get_num_threads()
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import learning_check
        yield learning_check
    finally:
        sys.path.remove(str(REPO / "bench"))
        torch.set_num_threads(threads)


def test_a_tiny_learning_check_writes_its_whole_report(learning_check, shared_models, tmp_path):
    out = tmp_path / "report"
    status = learning_check.main(["--models", str(shared_models), "--out", str(out), "--count", "160",
                                  "--budget-scale", "0.01"])
    assert status == 1  # 160 examples and ~100 training examples per stage do not pass the checks
    report = json.loads((out / "report.json").read_text())
    assert len(report["checks"]) == 5 and not all(report["checks"].values())
    # the ratio by split: training characters and held-out ones; the test figure is the table's
    ratios = report["morpher_region_ratio"]
    assert set(ratios) == {"train", "validation", "test"}
    rows = {r["row"]: r for r in report["table"]}
    assert ratios["test"] == pytest.approx(rows["morpher"]["region_l1"] / rows["identity/morphed"]["region_l1"],
                                           rel=1e-4)
    assert all(0.0 < r < 3.0 for r in ratios.values())
    md = (out / "report.md").read_text()
    assert "## Morpher changed-region ratio by split" in md and f"test {ratios['test']:.3f}" in md
    for name in ("curves.png", "samples.png"):
        assert (out / name).stat().st_size > 1000
    assert set(report["centroids"]) == {"left_eye", "right_eye", "mouth"}
