"""Weights record how many examples they were trained on; THA1's released files count as trained;
`pose`, `animate` and the puppet page's API say so in one line when weights look untrained.
Also `serve --precision`, passed to the puppet's networks."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import cli
from models.io import UNTRAINED_BELOW, TrainingRecord, save_weights, training_record
from tiny_networks import S, write_tiny_weights, write_disc_drawing

ARCH = ["--base-channels", 4, "--num-downsample", 1, "--num-res-blocks", 1]


def _train(*args) -> int:
    return cli.main([str(a) for a in ["train", *args, "--device", "cpu", "--quiet", "--batch-size", 4,
                                      "--val-examples", 4, "--samples", 2, *ARCH]])


def _drawing(path: Path, size: int = S) -> Path:
    return write_disc_drawing(path, size)


def _recorded(folder: Path, examples: int | None) -> Path:
    """Tiny networks whose files record `examples` (None: no record, as files written before it)."""
    from models.io import load_weights

    write_tiny_weights(folder, seed=1)
    if examples is not None:
        for kind in ("morpher", "rotator", "combiner"):
            net = load_weights(folder, kind)
            save_weights(net, folder / f"{kind}.safetensors", TrainingRecord(examples).metadata())
    return folder


# ------------------------------------------------------------------ the record

def test_what_looks_untrained():
    assert TrainingRecord().looks_untrained  # no record
    assert TrainingRecord(0).looks_untrained and TrainingRecord(UNTRAINED_BELOW - 1).looks_untrained
    assert not TrainingRecord(UNTRAINED_BELOW).looks_untrained
    assert not TrainingRecord(released="THA1").looks_untrained
    assert not TrainingRecord(4, released="THA1").looks_untrained  # fine-tuned from THA1's weights
    assert TrainingRecord(released="THA1").after(8) == TrainingRecord(8, "THA1")
    assert TrainingRecord().after(8) == TrainingRecord(8)


def test_a_training_run_records_its_examples_and_those_it_started_from(tmp_path):
    from test_train import write_synthetic_data

    data = write_synthetic_data(tmp_path / "data", s=16, n_train=8, n_val=4)
    run = tmp_path / "run"
    assert _train("morpher", "--data", data, "--out", run, "--examples", 8) == 0
    assert training_record(run, "morpher") == TrainingRecord(8)
    assert _train("morpher", "--data", data, "--out", run, "--examples", 16) == 0  # resumed
    assert training_record(run / "morpher.safetensors") == TrainingRecord(16)
    more = tmp_path / "more"
    assert _train("morpher", "--data", data, "--out", more, "--examples", 4, "--init", run) == 0
    assert training_record(more, "morpher") == TrainingRecord(20)
    assert _train("morpher", "--data", data, "--out", more, "--examples", 8) == 0  # resumed: still counts the init
    assert training_record(more, "morpher") == TrainingRecord(24)
    ck = tmp_path / "from-checkpoint"
    assert _train("morpher", "--data", data, "--out", ck, "--examples", 4, "--init", run / "checkpoint.pt") == 0
    assert training_record(ck, "morpher") == TrainingRecord(20)


def test_tha1s_files_and_their_imports_count_as_trained(tmp_path, capsys):
    from tha1_files import write_tha1_folder

    from models.tha1 import LICENCE_NOTE

    tha1 = write_tha1_folder(tmp_path / "tha1", width=4)
    for kind in ("morpher", "rotator", "combiner"):
        assert training_record(tha1, kind) == TrainingRecord(released="THA1")
    out = tmp_path / "imported"
    assert cli.main(["import-tha1", str(tha1), "-o", str(out)]) == 0, capsys.readouterr().err
    assert training_record(out, "rotator") == TrainingRecord(released="THA1")
    from models.io import load_weights  # imported before the record existed: the licence note says THA1

    save_weights(load_weights(out, "morpher"), out / "morpher.safetensors", {"licence": LICENCE_NOTE})
    assert training_record(out, "morpher") == TrainingRecord(released="THA1")


# ------------------------------------------------------------------ the warnings

def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if "warning" in line]


@pytest.mark.parametrize("examples,why", [(None, "no training record"), (0, "trained on 0 examples"),
                                          (UNTRAINED_BELOW - 1, f"trained on {UNTRAINED_BELOW - 1:,} examples")])
def test_pose_and_animate_warn_in_one_line_when_weights_look_untrained(tmp_path, capsys, examples, why):
    w = _recorded(tmp_path / "w", examples)
    src = _drawing(tmp_path / "d.png")
    rc = cli.main(["pose", str(src), "--weights", str(w), "--pose", "0", "0", "0", "0", "0", "0",
                   "-o", str(tmp_path / "o.png"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 0, err
    (line,) = _warnings(err)
    files = ", ".join(str(w / f"{kind}.safetensors") for kind in ("morpher", "rotator", "combiner"))
    assert line.startswith(f"thactl: warning: weights look untrained ({why}: {files}); expect noise")
    rc = cli.main(["animate", str(src), "--weights", str(w), "-o", str(tmp_path / "a.gif"), "--motion", "blink",
                   "--seconds", "0.2", "--fps", "10", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert len(_warnings(err)) == 1 and "weights look untrained" in err


def test_trained_weights_give_no_warning_and_only_the_untrained_network_is_named(tmp_path, capsys):
    w = _recorded(tmp_path / "w", UNTRAINED_BELOW)
    src = _drawing(tmp_path / "d.png")
    args = ["pose", str(src), "--pose", "0", "0", "0", "0", "0", "0", "-o", str(tmp_path / "o.png"), "--device", "cpu"]
    assert cli.main([*args, "--weights", str(w)]) == 0
    assert _warnings(capsys.readouterr().err) == []
    fresh = write_tiny_weights(tmp_path / "fresh", seed=2)
    assert cli.main([*args, "--weights", str(w), "--rotator", str(fresh / "rotator.safetensors")]) == 0
    (line,) = _warnings(capsys.readouterr().err)
    assert f"(no training record: {fresh / 'rotator.safetensors'});" in line
    assert "morpher" not in line and "combiner" not in line


# ------------------------------------------------------------------ the puppet page and serve --precision

def _info(weights: Path, **cfg) -> dict:
    from app.config import ServeConfig
    from app.http import Request
    from app.puppet_page import make_page

    page = make_page(ServeConfig(weights=weights, device="cpu", **cfg))
    return json.loads(page.handle(Request("GET", "/api/puppet/info")).body)


def test_the_puppet_api_says_when_weights_look_untrained(tmp_path):
    untrained = _info(_recorded(tmp_path / "u", 0))
    assert "weights look untrained" in untrained["weights_warning"] and "\n" not in untrained["weights_warning"]
    assert "morpher.safetensors" in untrained["weights_warning"] and str(tmp_path) not in untrained["weights_warning"]
    assert _info(_recorded(tmp_path / "t", UNTRAINED_BELOW))["weights_warning"] is None


def test_serve_precision_reaches_the_puppets_networks(tmp_path, capsys):
    w = write_tiny_weights(tmp_path / "w", seed=3)
    assert _info(w, precision="fp32")["precision"] == "fp32"
    assert cli.main(["serve", "--help"]) == 0 and "--precision [auto|fp32|fp16]" in capsys.readouterr().out
    rc = cli.main(["serve", "--weights", str(w), "--device", "cpu", "--precision", "fp16", "--port", "0"])
    assert rc == 1 and "half precision is only used on CUDA" in capsys.readouterr().err
