"""THA1's released files through the commands: pose, animate, import-tha1, export --onnx, eval, train --init.

The files are built from the author's list of keys and shapes (tests/tha1_files.py), at the released
layout (256 px, 3 downsamplings, 6 residual blocks) and 4 channels wide so the commands run in seconds."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cli
from tha1_files import FILE_NAMES, tha1_combiner, tha1_morpher, tha1_rotator, write_tha1_folder


WIDTH = 4
ARCH = ["--base-channels", WIDTH, "--num-downsample", 3, "--num-res-blocks", 6]  # the files' layout


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Path:
    """THA1's three files with the author's keys, released layout, 4 channels wide."""
    return write_tha1_folder(tmp_path_factory.mktemp("tha1"), width=WIDTH)


def _states(folder: Path) -> dict:
    return {k: torch.load(folder / name, map_location="cpu", weights_only=True) for k, name in FILE_NAMES.items()}


def _tha1_poser(states, image, pose):
    rot, expr = pose[:, :3], pose[:, 3:]
    morphed = tha1_morpher(states["morpher"], image, expr)
    pu, zh = tha1_rotator(states["rotator"], morphed, rot)
    return tha1_combiner(states["combiner"], pu, zh, rot)


def _drawing(s=256) -> np.ndarray:
    yy, xx = np.mgrid[0:s, 0:s]
    img = np.zeros((s, s, 4), np.uint8)
    disc = (yy - s / 2) ** 2 + (xx - s / 2) ** 2 < (s / 4) ** 2
    img[disc] = (230, 180, 160, 255)
    img[disc & (yy < s / 2)] = (60, 90, 200, 255)
    return img


def test_pose_with_a_folder_of_tha1_files(released, tmp_path, capsys):
    from dataset.imageconv import tensor_to_uint8, uint8_to_tensor

    src = tmp_path / "drawing.png"
    Image.fromarray(_drawing(), "RGBA").save(src)
    pose = [0.4, -0.3, 0.2, 1.0, 0.0, 0.5]
    out = tmp_path / "out.png"
    rc = cli.main(["pose", str(src), "--weights", str(released), "--pose", *map(str, pose), "-o", str(out),
                   "--device", "cpu", "--precision", "fp32"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "full path" in cap.out and "warning" not in cap.err  # THA1's released weights count as trained
    with Image.open(out) as im:
        assert im.mode == "RGBA" and im.size == (256, 256)
        got = np.asarray(im).astype(int)
    with torch.no_grad():
        ref = tensor_to_uint8(_tha1_poser(_states(released), uint8_to_tensor(_drawing())[None],
                                          torch.tensor([pose])))[0].astype(int)
    assert np.abs(got - ref).max() <= 1


def test_import_tha1_writes_safetensors_with_provenance(released, tmp_path, capsys):
    import hashlib

    from safetensors import safe_open

    from models.io import load_weights

    out = tmp_path / "w"
    assert cli.main(["import-tha1", str(released), "-o", str(out)]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["combiner.safetensors", "morpher.safetensors",
                                                     "rotator.safetensors"]
    with safe_open(str(out / "rotator.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["source"] == "two_algo_face_rotator.pt"
    assert meta["source_sha256"] == hashlib.sha256((released / "two_algo_face_rotator.pt").read_bytes()).hexdigest()
    assert "Pramook Khungurn" in meta["licence"] and "CC BY 4.0" in meta["licence"]
    assert json.loads(meta["config"])["grid_convention"] == "tha1"
    for kind in FILE_NAMES:
        a, b = load_weights(released, kind), load_weights(out, kind)
        assert a.config == b.config
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert ka == kb and torch.equal(va, vb)
    before = (out / "morpher.safetensors").read_bytes()
    rc = cli.main(["import-tha1", str(released), "-o", str(out)])
    assert rc == 1 and "already exists; pass --force" in capsys.readouterr().err
    assert (out / "morpher.safetensors").read_bytes() == before
    rc = cli.main(["import-tha1", str(tmp_path), "-o", str(tmp_path / "x")])
    assert rc == 1 and "none of THA1's files" in capsys.readouterr().err


def test_pose_rejects_fp16_on_the_cpu(released, tmp_path, capsys):
    src = tmp_path / "d.png"
    Image.fromarray(_drawing(), "RGBA").save(src)
    rc = cli.main(["pose", str(src), "--weights", str(released), "--pose", "0", "0", "0", "0", "0", "0",
                   "-o", str(tmp_path / "o.png"), "--device", "cpu", "--precision", "fp16"])
    assert rc == 1 and "half precision is only used on CUDA" in capsys.readouterr().err


def test_wrong_file_as_a_network_is_one_line(released, tmp_path, capsys):
    src = tmp_path / "d.png"
    Image.fromarray(_drawing(), "RGBA").save(src)
    rc = cli.main(["pose", str(src), "--weights", str(released), "--morpher", str(released / "combiner.pt"),
                   "--pose", "0", "0", "0", "0", "0", "0", "-o", str(tmp_path / "o.png"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "combiner.pt: holds THA1's combiner, expected the morpher" in err


def test_export_onnx_of_imported_weights_matches_torch(released, tmp_path, capsys):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "tha1.onnx"
    rc = cli.main(["export", "--weights", str(released), "--onnx", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "onnxruntime matches torch" in cap.out
    g = torch.Generator().manual_seed(4)
    image = torch.rand(2, 4, 256, 256, generator=g) * 2 - 1
    pose = torch.tensor([[0.5, -0.7, 0.3, 0.2, 1.0, 0.6], [-1.0, 1.0, -0.4, 0.0, 0.0, 1.0]])
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"image": image.numpy(), "pose": pose.numpy()})[0]
    with torch.no_grad():
        ref = _tha1_poser(_states(released), image, pose).numpy()
    assert np.abs(got - ref).max() < 1e-3


def test_eval_scores_tha1s_networks_with_the_same_table(released, tmp_path, capsys):
    from test_evaluate import _write_tiny_shard

    from dataset.torchdata import ShardDataset
    from train import evaluate as ev

    data = _write_tiny_shard(tmp_path / "data", n_models=1, per_model=2, s=256)
    out = tmp_path / "ev"
    rc = cli.main(["eval", "--weights", str(released), "--data", str(data), "--split", "test", "--device", "cpu",
                   "--out", str(out), "--no-stages"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    rows = {r["row"]: r for r in json.loads((out / "eval-test.json").read_text())["rows"]}
    assert set(rows) == {"FU"} and "THA1 config" in cap.out
    ds = ShardDataset(str(data), split="test")
    items = [ds[i] for i in range(len(ds))]
    rest = torch.stack([torch.as_tensor(it["rest_image"]) for it in items])
    posed = torch.stack([torch.as_tensor(it["posed_image"]) for it in items])
    pose = torch.stack([torch.as_tensor(it["pose"]) for it in items])
    with torch.no_grad():
        fu = _tha1_poser(_states(released), rest, pose)
    sc = ev.score_images(fu, posed)
    assert rows["FU"]["rmse_tha"] == pytest.approx(sc["rmse_tha"].double().mean().item(), rel=1e-4)


def test_train_rotator_from_tha1_keeps_its_weights_and_convention(released, tmp_path, capsys):
    from test_train import write_synthetic_data

    from models.io import TrainingRecord, load_weights, read_metadata, training_record

    data = write_synthetic_data(tmp_path / "data", s=256, n_train=4, n_val=2)
    common = ["--data", data, "--examples", 2, "--batch-size", 2, "--device", "cpu", "--quiet",
              "--val-examples", 2, "--samples", 2, *ARCH]
    run = tmp_path / "ft"
    rc = cli.main([str(a) for a in ["train", "rotator", "--out", run, "--init", released, "--lr", "0", *common]])
    assert rc == 0, capsys.readouterr().err
    assert read_metadata(run / "rotator.safetensors")["config"]["grid_convention"] == "tha1"
    tuned, start = load_weights(run, "rotator"), load_weights(released, "rotator")
    for (k, a), (_, b) in zip(tuned.state_dict().items(), start.state_dict().items()):
        assert torch.equal(a, b), k  # lr 0: the run started from exactly the released tensors
    rc = cli.main([str(a) for a in ["train", "rotator", "--out", run, "--lr", "0", "--data", data, "--examples", 4,
                                     *common[4:]]])
    assert rc == 0, capsys.readouterr().err  # resumes without --init, keeping the run's convention
    assert json.loads((run / "config.json").read_text())["grid_convention"] == "tha1"
    assert read_metadata(run / "rotator.safetensors")["config"]["grid_convention"] == "tha1"
    assert cli.main([str(a) for a in ["train", "rotator", "--out", tmp_path / "ft2", "--init",
                                       released / "two_algo_face_rotator.pt", "--grid-convention", "thactl",
                                       *common]]) == 1
    assert "trained with the tha1 convention" in capsys.readouterr().err
    # the morpher: THA1's layers come from the file (no --no-unet --no-pose-film needed), also on resume
    mrun = tmp_path / "morpher"
    rc = cli.main([str(a) for a in ["train", "morpher", "--out", mrun, "--init", released, "--lr", "0", *common]])
    assert rc == 0, capsys.readouterr().err
    tuned, start = load_weights(mrun, "morpher"), load_weights(released, "morpher")
    assert tuned.config["unet"] is False and tuned.config["pose_film"] is False
    assert training_record(mrun, "morpher") == TrainingRecord(2, released="THA1")  # trained: no warning later
    assert all(torch.equal(a, b) for a, b in zip(tuned.state_dict().values(), start.state_dict().values()))
    rc = cli.main([str(a) for a in ["train", "morpher", "--out", mrun, "--lr", "0", "--data", data, "--examples", 4,
                                     *common[4:]]])
    assert rc == 0, capsys.readouterr().err
    comb = tmp_path / "comb"
    rc = cli.main([str(a) for a in ["train", "combiner", "--out", comb, "--rotator", released, "--init", released,
                                     *common]])
    assert rc == 0, capsys.readouterr().err
    assert load_weights(comb, "combiner").config["num_downsample"] == 3


def test_animate_with_tha1_files(released, tmp_path, capsys):
    src = tmp_path / "d.png"
    Image.fromarray(_drawing(), "RGBA").save(src)
    out = tmp_path / "a.gif"
    rc = cli.main(["animate", str(src), "--morpher", str(released / "face_morpher.pt"), "--rotator",
                   str(released / "two_algo_face_rotator.pt"), "--combiner", str(released / "combiner.pt"),
                   "-o", str(out), "--motion", "blink", "--seconds", "0.3", "--fps", "10", "--device", "cpu",
                   "--precision", "fp32"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "3 frames, 256x256" in cap.out and "morpher ran" in cap.out and "(fp16)" not in cap.out
    with Image.open(out) as im:
        assert im.size == (256, 256)
