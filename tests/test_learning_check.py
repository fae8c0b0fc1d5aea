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


# a small copy of the collection: four training sources, one validation and one test character
TINY = {"mokou_pmd": "train", "genshin_amber": "train", "animasa_miku_pmx_j3": "train", "genshin_xiao": "train",
        "miku_dot_v3": "validation", "mei_mmdagent": "test"}


def test_a_tiny_learning_check_writes_its_whole_report(learning_check, shared_models, tmp_path):
    import shutil

    models = tmp_path / "models"
    for name in TINY:
        if not (shared_models / name).is_dir():
            pytest.skip(f"{name} not in {shared_models}")
        shutil.copytree(shared_models / name, models / name)
    held = tmp_path / "held.json"
    held.write_text(json.dumps({s: [n for n, v in TINY.items() if v == s] for s in ("validation", "test")}))
    out = tmp_path / "report"
    status = learning_check.main(["--models", str(models), "--out", str(out), "--count", "160",
                                  "--budget-scale", "0.01", "--held-out", str(held)])
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
    # the split file render got: the held-out characters and every other usable model training
    split = json.loads((out / "split.json").read_text())
    assert split["test"] == ["mei_mmdagent/mei.pmd"] and split["validation"] == ["miku_dot_v3/どっと式初音ミク_V3.pmx"]
    assert sorted(p.split("/")[0] for p in split["train"]) == ["animasa_miku_pmx_j3", "genshin_amber", "genshin_xiao",
                                                              "mokou_pmd", "mokou_pmd"]
    # one row per held-out character, pooled figures and their checks, in the report and its table
    held_out = report["held_out"]
    assert [(r["split"], r["model"]) for r in held_out["characters"]] == [
        ("validation", split["validation"][0]), ("test", split["test"][0])]
    for r in held_out["characters"]:
        assert r["examples"] > 0 and 0.0 < r["morpher_ratio"] < 3.0 and 0.0 <= r["eye_side_share"] <= 1.0
        assert r["identity_rmse"] > 0 and -1.0 <= r["poser_ssim"] <= 1.0
    assert held_out["pooled"]["characters"] == 2 and len(held_out["pooled"]["checks"]) == 4
    assert "| test | mei_mmdagent/mei.pmd |" in md and "| **pooled** | 2 characters |" in md
    assert (out / "characters.png").stat().st_size > 1000


# a tha3 check on four small sources: two training, one validation and one test character
TINY_THA3 = {"mokou_pmd": "train", "animasa_miku_pmx_j3": "train", "miku_dot_v3": "validation",
             "mei_mmdagent": "test"}


def test_a_tiny_tha3_learning_check_follows_the_schema(learning_check, shared_models, tmp_path):
    """--schema tha3 --small at a one-batch budget: the data is the schema's, the networks get its parts
    (39 face, 6 rotation inputs), and the report names the schema and its eye and mouth probes."""
    import shutil

    from core.poseschema import load_schema
    from models.io import load_weights

    models = tmp_path / "models"
    for name in TINY_THA3:
        if not (shared_models / name).is_dir():
            pytest.skip(f"{name} not in {shared_models}")
        shutil.copytree(shared_models / name, models / name)
    held = tmp_path / "held.json"
    held.write_text(json.dumps({s: [n for n, v in TINY_THA3.items() if v == s] for s in ("validation", "test")}))
    out = tmp_path / "report"
    status = learning_check.main(["--models", str(models), "--out", str(out), "--count", "48", "--schema", "tha3",
                                  "--small", "--budget-scale", "0.001", "--held-out", str(held)])
    assert status in (0, 1)
    schema = load_schema("tha3")
    report = json.loads((out / "report.json").read_text())
    assert report["small"] is True and report["config"] == json.loads(json.dumps(learning_check.SMALL))
    assert report["schema"]["name"] == "tha3" and report["schema"]["names"] == list(schema.names)
    assert (report["schema"]["face"], report["schema"]["rotation"]) == (39, 6)
    assert report["schema"]["probes"] == {"left_eye": "eye_wink_left", "right_eye": "eye_wink_right",
                                          "mouth": "mouth_aaa"}
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    assert manifest["request"]["schema"]["name"] == "tha3"
    assert load_weights(out / "morpher", "morpher").config["pose_size"] == 39
    assert load_weights(out / "rotator", "rotator").config["pose_size"] == 6
    # the same checks as THA1's, the semantic one on the probed parameters
    assert len(report["checks"]) == 5
    assert "semantics: eye_wink_left right half, eye_wink_right left half, mouth_aaa below the eyes" in report["checks"]
    assert set(report["centroids"]) == {"left_eye", "right_eye", "mouth"}
    rows = {r["row"]: r for r in report["table"]}
    assert {"morpher", "identity/morphed", "rotator/pumarola", "FU", "identity/posed"} <= set(rows)
    ratios = report["morpher_region_ratio"]
    assert set(ratios) == {"train", "validation", "test"} and all(0.0 < r < 100.0 for r in ratios.values())
    held_out = report["held_out"]
    assert [(r["split"], r["model"].split("/")[0]) for r in held_out["characters"]] == [
        ("validation", "miku_dot_v3"), ("test", "mei_mmdagent")]
    for r in held_out["characters"]:
        assert r["examples"] > 0 and 0.0 <= r["eye_side_share"] <= 1.0 and -1.0 <= r["poser_ssim"] <= 1.0
    assert len(held_out["pooled"]["checks"]) == 4
    md = (out / "report.md").read_text()
    assert "pose schema: tha3 (45 parameters)" in md and "left_eye = eye_wink_left" in md
    assert "size: small (--small" in md
    for name in ("curves.png", "samples.png", "characters.png"):
        assert (out / name).stat().st_size > 1000
