"""`thactl inspect` on synthetic shards: summary, pose statistics, contact sheet, --verify."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from cli import main
from dataset.shardinfo import pose_stat_lines
from dataset.poses import sample_poses
from dataset.shards import ShardWriter

from test_shards import S, write_synthetic


def test_pose_stat_lines_flag_a_wrong_distribution():
    good = pose_stat_lines(sample_poses(np.random.default_rng(0), 20000))
    assert len(good) == 8 and all("%" in line for line in good[1:7])
    devs = [float(line.rsplit(" ", 1)[1].rstrip("%")) for line in good[1:7]]
    assert max(devs) < 1.5
    bad = np.random.default_rng(0).uniform(-1, 1, (20000, 6)).astype(np.float32)
    devs_bad = [float(line.rsplit(" ", 1)[1].rstrip("%")) for line in pose_stat_lines(bad)[1:4]]
    assert min(devs_bad) > 3


def test_inspect_folder_sheet_and_verify(tmp_path, capsys):
    write_synthetic(tmp_path / "train" / "shard-00000.h5", n=6, models=2, seed=1)
    write_synthetic(tmp_path / "test" / "shard-00000.h5", n=3, models=1, seed=2, split="test",
                    prefix="other")
    sheet = tmp_path / "sheet.png"
    assert main(["inspect", str(tmp_path), "--sheet", str(sheet), "--examples", "4", "--verify"]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "test" in out and "head_x" in out and "verify: OK" in out
    img = Image.open(sheet)
    # 32 px images are enlarged 4x (nearest) so that the pose caption under them fits
    assert img.size[0] == 3 * 128 + 16 and img.size[1] > 4 * 128
    cell = np.asarray(img.convert("RGB"))[16:16 + 128, 4:4 + 128].astype(int)
    assert (cell.reshape(S, 4, S, 4, 3) == cell[::4, ::4][:, None, :, None]).all()
    assert cell.std() > 0
    # a sheet name without extension was a Pillow traceback
    assert main(["inspect", str(tmp_path), "--sheet", str(tmp_path / "sheet"), "--examples", "2"]) == 1
    err = capsys.readouterr().err
    assert "cannot write the contact sheet" in err and "Traceback" not in err
    # one shard
    assert main(["inspect", str(tmp_path / "train" / "shard-00000.h5")]) == 0
    out = capsys.readouterr().out
    assert "folder/m0.pmx" in out and "ambient" in out


def test_verify_finds_duplicates_and_bad_shards(tmp_path, capsys):
    write_synthetic(tmp_path / "train" / "shard-00000.h5", n=4, seed=5)
    write_synthetic(tmp_path / "train" / "shard-00001.h5", n=4, seed=5)   # same poses, same models
    assert main(["inspect", str(tmp_path), "--verify"]) == 1
    out = capsys.readouterr().out
    assert "duplicate example" in out
    (tmp_path / "train" / "shard-00001.h5").write_bytes(b"junk")
    assert main(["inspect", str(tmp_path), "--verify"]) == 1
    assert "shard-00001.h5" in capsys.readouterr().out


def test_inspect_manifest_counts(tmp_path, capsys):
    write_synthetic(tmp_path / "train" / "shard-00000.h5", n=5)
    man = dict(format="thactl-manifest", seed=3, complete=True, request={"size": S},
               splits={"train": dict(examples=6, models=2, shards=[dict(file="train/shard-00000.h5",
                                                                         examples=6, complete=True)]),
                       "validation": dict(examples=0, models=0, shards=[]),
                       "test": dict(examples=0, models=0, shards=[])},
               models=[dict(path="folder/m0.pmx", split="train", examples=3, one_eye_morphs=True)],
               rejected=[dict(path="bad/x.pmx", reason="no mouth-open morph")])
    (tmp_path / "manifest.json").write_text(json.dumps(man))
    assert main(["inspect", str(tmp_path), "--verify"]) == 1
    out = capsys.readouterr().out
    assert "bad/x.pmx: no mouth-open morph" in out and "manifest: 6" in out
    assert "5 examples, expected 6" in out


def test_model_in_two_splits_reported(tmp_path, capsys):
    write_synthetic(tmp_path / "train" / "shard-00000.h5", n=2)
    rng = np.random.default_rng(0)
    with ShardWriter(tmp_path / "test" / "shard-00000.h5", S, "test", 0, {}) as w:
        w.add_model("folder/m0.pmx", "0" * 64, (0, 0, 1), np.zeros((S, S, 4), np.uint8))
        w.add_example(0, sample_poses(rng, 1)[0], np.zeros((S, S, 4), np.uint8),
                      np.zeros((S, S, 4), np.uint8), 1.0)
        w.finish()
    assert main(["inspect", str(tmp_path)]) == 1
    assert "appears in both" in capsys.readouterr().out
