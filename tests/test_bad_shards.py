"""Defensive shard reading (issue 7): damaged shards give a clear ShardError naming the file,
in ShardReader, ShardDataset, `thactl inspect` and `thactl train`; training can leave them
out with --skip-bad-shards and says so; no damaged byte ever reaches a network.

Damage done to real HDF5 shards written by ShardWriter: truncation (several lengths), a
flipped byte inside an image chunk, inside the pose chunk, a deleted dataset,
complete=false, model_index / pose values out of range, an empty file, random bytes.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from cli import main as cli_main
from dataset.errors import DatasetError, ShardError
from dataset.shards import ShardReader, ShardWriter, shard_name, verify_shard

S = 16
N = 12
TINY = ["--base-channels", "8", "--num-downsample", "2", "--num-res-blocks", "1"]


def _images(rng, n):
    """Structured but distinct images (noise over gradients), so chunks differ and compress."""
    yy, xx = np.mgrid[0:S, 0:S]
    out = np.zeros((n, S, S, 4), np.uint8)
    for k in range(n):
        out[k, ..., 0] = (xx * 16 + k * 7) % 256
        out[k, ..., 1] = (yy * 16 + k * 13) % 256
        out[k, ..., 2] = rng.integers(0, 256, (S, S))
        out[k, ..., 3] = 255
    return out


def write_shard(path: Path, seed: int, split: str = "train") -> dict:
    """A valid shard of N examples over 2 model rows; returns what was written."""
    rng = np.random.default_rng(seed)
    rest = _images(rng, 2)
    morphed, posed = _images(rng, N), _images(rng, N)
    pose = np.concatenate([rng.uniform(-1, 1, (N, 3)), rng.uniform(0, 1, (N, 3))], 1).astype(np.float32)
    with ShardWriter(path, S, split, seed, {"test": True}) as w:
        rows = [w.add_model(f"m{seed}_{r}.pmx", f"{seed:02d}" * 32, (0, 1, 0.5), rest[r]) for r in range(2)]
        for i in range(N):
            w.add_example(rows[i % 2], pose[i], morphed[i], posed[i], 0.7)
        w.finish()
    return dict(rest=rest, morphed=morphed, posed=posed, pose=pose)


def chunk_location(path: Path, name: str, coord: tuple) -> tuple[int, int]:
    with h5py.File(path, "r") as f:
        info = f[name].id.get_chunk_info_by_coord(coord)
        return int(info.byte_offset), int(info.size)


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x5A]))


# each: (name, function(path) that damages a good shard, whether ShardReader() itself must fail)
def _truncate(frac):
    def f(p):
        n = p.stat().st_size
        with open(p, "r+b") as fh:
            fh.truncate(int(n * frac))
    return f


def _image_chunk_flip(p):
    off, size = chunk_location(p, "morphed_image", (3, 0, 0, 0))
    flip_byte(p, off + size // 2)


def _pose_chunk_flip(p):
    off, size = chunk_location(p, "pose", (0, 0))
    flip_byte(p, off + 5)            # inside pose[0]: the fletcher32 checksum catches it


def _delete_dataset(p):
    with h5py.File(p, "r+") as f:
        del f["posed_image"]


def _incomplete(p):
    with h5py.File(p, "r+") as f:
        f.attrs["complete"] = False


def _bad_model_index(p):
    with h5py.File(p, "r+") as f:
        f["model_index"][5] = 7


def _bad_pose(p):
    with h5py.File(p, "r+") as f:
        f["pose"][2, 0] = 40.0


def _nan_pose(p):
    with h5py.File(p, "r+") as f:
        f["pose"][2, 4] = np.nan


def _empty(p):
    p.write_bytes(b"")


def _garbage(p):
    p.write_bytes(os.urandom(5000))


DAMAGE = [("truncated-half", _truncate(0.5), True), ("truncated-tiny", _truncate(0.02), True),
          ("truncated-90pct", _truncate(0.9), None), ("image-chunk-flip", _image_chunk_flip, False),
          ("pose-chunk-flip", _pose_chunk_flip, True), ("dataset-deleted", _delete_dataset, True),
          ("complete-false", _incomplete, True), ("model-index-range", _bad_model_index, True),
          ("pose-out-of-range", _bad_pose, True), ("pose-nan", _nan_pose, True), ("empty-file", _empty, True),
          ("random-bytes", _garbage, True)]


@pytest.fixture
def good(tmp_path):
    p = tmp_path / "train" / shard_name(0)
    return p, write_shard(p, 1)


def _read_everything(r: ShardReader) -> None:
    for i in range(r.num_examples):
        r.example(i)


@pytest.mark.parametrize("name,damage,fails_on_open", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_damaged_shard_gives_shard_error_naming_the_file(good, name, damage, fails_on_open):
    path, orig = good
    damage(path)
    err = None
    try:
        r = ShardReader(path)
    except ShardError as e:
        err = e
    else:
        assert fails_on_open is not True, f"{name}: opened without error"
        with r:
            # what can be read must be exactly what was written; the damage must surface
            for i in range(r.num_examples):
                try:
                    e = r.example(i)
                except ShardError as ex:
                    err = ex
                    continue
                assert np.array_equal(e["morphed_image"], orig["morphed"][i]), f"{name}: garbage image {i}"
                assert np.array_equal(e["posed_image"], orig["posed"][i])
                assert np.array_equal(e["pose"], orig["pose"][i])
    assert err is not None, f"{name}: damage went unnoticed"
    msg = str(err)
    assert str(path) in msg and "\n" not in msg, msg
    problems = verify_shard(path)
    assert problems and all(str(path) in p for p in problems), problems


def test_verify_shard_finds_a_bad_chunk_deep_only(good):
    path, _ = good
    _image_chunk_flip(path)
    assert verify_shard(path, deep=False) == []
    probs = verify_shard(path, deep=True)
    assert len(probs) == 1 and "morphed_image[3] unreadable" in probs[0]


# ---------------------------------------------------------------- ShardDataset

def _three_shards(root: Path):
    data = [write_shard(root / "train" / shard_name(k), 10 + k) for k in range(3)]
    write_shard(root / "validation" / shard_name(0), 20, "validation")
    return data


def _matches_written(item, data) -> bool:
    """The item (THA convention tensors) is exactly one written example of a good shard."""
    from dataset.imageconv import tensor_to_uint8

    posed = tensor_to_uint8(item["posed_image"])
    pose = item["pose"].numpy()
    for d in data:
        for i in range(N):
            if np.array_equal(pose, d["pose"][i]):
                return np.array_equal(posed, d["posed"][i])
    return False


@pytest.mark.parametrize("damage", [_truncate(0.5), _delete_dataset, _incomplete, _garbage],
                         ids=["truncated", "dataset-deleted", "incomplete", "garbage"])
def test_dataset_refuses_or_skips_a_bad_shard(tmp_path, caplog, damage):
    from dataset.torchdata import ShardDataset

    data = _three_shards(tmp_path)
    bad = tmp_path / "train" / shard_name(1)
    damage(bad)
    with pytest.raises(ShardError, match=str(bad)):
        ShardDataset(tmp_path, split="train")
    with caplog.at_level(logging.WARNING, logger="thactl.dataset"):
        ds = ShardDataset(tmp_path, split="train", skip_bad_shards=True)
    assert len(ds) == 2 * N and bad not in ds.files and len(ds.skipped) == 1
    assert any(str(bad) in r.getMessage() and "skipping" in r.getMessage() for r in caplog.records)
    good_data = [data[0], data[2]]
    assert all(_matches_written(ds[i], good_data) for i in range(len(ds)))


def test_dataset_meets_a_bad_chunk_while_reading(tmp_path, caplog):
    """A corrupt image chunk is only seen when read: error naming the file, or (skip) a
    substitute example from a good shard - never the damaged bytes."""
    from dataset.torchdata import ShardDataset

    data = _three_shards(tmp_path)
    bad = tmp_path / "train" / shard_name(1)
    off, size = chunk_location(bad, "posed_image", (4, 0, 0, 0))
    flip_byte(bad, off + size // 2)
    ds = ShardDataset(tmp_path, split="train")          # construction reads no image chunk
    assert len(ds) == 3 * N
    with pytest.raises(ShardError, match=str(bad)):
        for i in range(len(ds)):
            ds[i]
    with caplog.at_level(logging.WARNING, logger="thactl.dataset"):
        ds = ShardDataset(tmp_path, split="train", skip_bad_shards=True)
        items = [ds[i] for i in range(len(ds))]
    assert len(items) == 3 * N
    assert all(_matches_written(it, data) for it in items)
    # once found bad, the whole shard is left out (its other examples are substituted too)
    assert all(not any(np.array_equal(it["pose"].numpy(), p) for p in data[1]["pose"][4:]) for it in items)
    assert ds.skipped and str(bad) in ds.skipped[0]
    assert any(str(bad) in r.getMessage() for r in caplog.records)


def test_dataset_with_every_shard_bad(tmp_path):
    from dataset.torchdata import ShardDataset

    _three_shards(tmp_path)
    for k in range(3):
        _truncate(0.3)(tmp_path / "train" / shard_name(k))
    with pytest.raises(DatasetError, match="no usable examples"):
        ShardDataset(tmp_path, split="train", skip_bad_shards=True)


# ---------------------------------------------------------------- commands

def test_inspect_names_the_bad_shard_in_one_line(tmp_path, capsys):
    _three_shards(tmp_path)
    bad = tmp_path / "train" / shard_name(2)
    _truncate(0.5)(bad)
    assert cli_main(["inspect", str(bad)]) == 1
    out, err = capsys.readouterr()
    assert str(bad) in out + err and "Traceback" not in out + err
    assert err.startswith("thactl: error:") and len(err.strip().splitlines()) == 1
    # a bad chunk, seen by --verify on the folder
    _three_shards(tmp_path)
    off, size = chunk_location(tmp_path / "train" / shard_name(0), "rest_image", (1, 0, 0, 0))
    flip_byte(tmp_path / "train" / shard_name(0), off + size // 2)
    assert cli_main(["inspect", str(tmp_path), "--verify"]) == 1
    out, err = capsys.readouterr()
    assert f"{tmp_path / 'train' / shard_name(0)}: rest_image[1] unreadable" in out
    assert "Traceback" not in out + err and len(err.strip().splitlines()) == 1


def _train(data, out, *extra):
    return cli_main(["train", "morpher", "--data", str(data), "--out", str(out), *TINY, "--batch-size", "4",
                     "--examples", "48", "--val-every", "48", "--val-examples", "4", "--samples", "2",
                     "--checkpoint-every", "48", "--log-every", "16", "--quiet", *extra])


def test_train_stops_on_a_bad_shard_or_skips_it_when_asked(tmp_path, capsys, caplog):
    _three_shards(tmp_path)
    truncated = tmp_path / "train" / shard_name(1)
    _truncate(0.5)(truncated)
    flipped = tmp_path / "train" / shard_name(2)
    off, size = chunk_location(flipped, "morphed_image", (0, 0, 0, 0))
    flip_byte(flipped, off + size // 2)

    assert _train(tmp_path, tmp_path / "run-a") == 1
    err = capsys.readouterr().err
    assert str(truncated) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1

    # the truncated shard is skipped at the start; the flipped chunk is found while training
    # (48 examples = every example of the 24 left, twice) and that shard is skipped from then on
    with caplog.at_level(logging.WARNING):
        assert _train(tmp_path, tmp_path / "run-b", "--skip-bad-shards") == 0
    msgs = [r.getMessage() for r in caplog.records]
    assert any(str(truncated) in m and "skipping" in m for m in msgs), msgs
    assert any("--skip-bad-shards" in m for m in msgs), msgs
    assert any(str(flipped) in m and "unreadable" in m for m in msgs), msgs
    assert (tmp_path / "run-b" / "morpher.safetensors").is_file()


@pytest.mark.parametrize("workers", [0, 2])
def test_train_without_the_flag_stops_at_a_bad_chunk(tmp_path, capsys, workers):
    """Also from DataLoader worker processes, whose errors come back with a traceback text:
    still one line naming the file."""
    _three_shards(tmp_path)
    flipped = tmp_path / "train" / shard_name(0)
    off, size = chunk_location(flipped, "posed_image", (2, 0, 0, 0))
    flip_byte(flipped, off + size // 2)
    assert _train(tmp_path, tmp_path / "run", "--workers", str(workers)) == 1
    err = capsys.readouterr().err
    assert str(flipped) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
