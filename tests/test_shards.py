"""HDF5 shard writer/reader/verify (dataset/shards.py), on synthetic shards written here."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from dataset.errors import ShardError
from core.pose import POSE_NAMES
from dataset.poses import sample_poses
from dataset.shards import ShardReader, ShardWriter, verify_shard

S = 32


def _img(rng, s=S):
    a = np.zeros((s, s, 4), np.uint8)
    a[s // 4: 3 * s // 4, s // 4: 3 * s // 4] = rng.integers(1, 256, (s // 2, s // 2, 4), dtype=np.uint8)
    return a


def write_synthetic(path: Path, n=7, models=2, seed=3, split="train", s=S, prefix="folder") -> dict:
    rng = np.random.default_rng(seed)
    poses = sample_poses(rng, n)
    rec = dict(rest=[], morphed=[], posed=[], poses=poses, rows=[], ambient=[])
    with ShardWriter(path, s, split, seed, {"size": s, "aa": 4}) as w:
        for m in range(models):
            rest = _img(rng, s)
            rec["rest"].append(rest)
            assert w.add_model(f"{prefix}/m{m}.pmx", f"{m:064x}", (0.1 * m, 15.0, 1.2), rest) == m
        for i in range(n):
            mo, po = _img(rng, s), _img(rng, s)
            row = i % models
            amb = 0.5 + 0.1 * i
            rec["morphed"].append(mo), rec["posed"].append(po), rec["rows"].append(row)
            rec["ambient"].append(amb)
            assert w.add_example(row, poses[i], mo, po, amb) == i
        w.finish()
    return rec


def test_layout_matches_spec(tmp_path):
    p = tmp_path / "train" / "shard-00000.h5"
    rec = write_synthetic(p)
    assert p.is_file() and not list(p.parent.glob(".*.tmp"))
    with h5py.File(p, "r") as f:
        want = {
            "rest_image": ((2, S, S, 4), np.uint8), "model_frame": ((2, 3), np.float32),
            "model_index": ((7,), np.int32), "pose": ((7, 6), np.float32),
            "morphed_image": ((7, S, S, 4), np.uint8), "posed_image": ((7, S, S, 4), np.uint8),
            "ambient": ((7,), np.float32),
        }
        for name, (shape, dtype) in want.items():
            assert f[name].shape == shape and f[name].dtype == dtype, name
        assert set(f.keys()) == set(want) | {"model_path", "model_sha256"}
        assert f["model_path"].asstr()[...].tolist() == ["folder/m0.pmx", "folder/m1.pmx"]
        assert h5py.check_string_dtype(f["model_path"].dtype).encoding == "utf-8"
        assert f["model_sha256"].asstr()[1] == f"{1:064x}"
        for name in ("rest_image", "morphed_image", "posed_image"):
            assert f[name].chunks == (1, S, S, 4) and f[name].compression is not None
        a = f.attrs
        assert a["format"] == "thactl-shard" and int(a["format_version"]) >= 1
        assert int(a["image_size"]) == S and a["split"] == "train"
        assert tuple(a["pose_names"]) == POSE_NAMES
        assert float(a["angle_degrees"]) == 15.0 and int(a["seed"]) == 3
        assert bool(a["complete"]) is True
        assert json.loads(a["settings"]) == {"size": S, "aa": 4}
        assert np.array_equal(f["pose"][...], rec["poses"])
        assert np.array_equal(f["morphed_image"][4], rec["morphed"][4])
        assert np.array_equal(f["rest_image"][1], rec["rest"][1])
        assert f["model_index"][...].tolist() == rec["rows"]
        assert np.allclose(f["ambient"][...], rec["ambient"])
    assert verify_shard(p) == []


def test_reader(tmp_path):
    p = tmp_path / "s.h5"
    rec = write_synthetic(p, n=5, models=3)
    with ShardReader(p) as r:
        assert (r.num_examples, r.num_models, r.image_size, r.split, r.seed) == (5, 3, S, "train", 3)
        assert r.settings == {"size": S, "aa": 4}
        e = r.example(4)
        assert e["model_row"] == 1 and e["model_path"] == "folder/m1.pmx"
        assert np.array_equal(e["posed_image"], rec["posed"][4])
        assert np.array_equal(e["rest_image"], rec["rest"][1])
        assert np.allclose(e["model_frame"], (0.1, 15.0, 1.2))
        assert len(list(r.iter_examples())) == 5
        with pytest.raises(IndexError):
            r.example(5)


def test_error_leaves_no_file(tmp_path):
    p = tmp_path / "shard-00001.h5"
    with pytest.raises(RuntimeError):
        with ShardWriter(p, S, "train", 0, {}) as w:
            w.add_model("a.pmx", "0" * 64, (0, 0, 1), np.zeros((S, S, 4), np.uint8))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    # leaving the block without finish() also leaves nothing
    with ShardWriter(p, S, "train", 0, {}) as w:
        w.add_model("a.pmx", "0" * 64, (0, 0, 1), np.zeros((S, S, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_bad_input(tmp_path):
    with ShardWriter(tmp_path / "x.h5", S, "train", 0, {}) as w:
        with pytest.raises(ValueError):
            w.add_model("a", "0", (0, 0, 1), np.zeros((S, S, 3), np.uint8))
        with pytest.raises(ValueError):
            w.add_example(0, np.zeros(6), np.zeros((S, S, 4), np.uint8), np.zeros((S, S, 4), np.uint8), 1)


def test_incomplete_and_corrupt_shards_are_reported(tmp_path):
    # a temporary (incomplete) file found by someone under a final name
    p = tmp_path / "shard-00000.h5"
    w = ShardWriter(p, S, "train", 0, {})
    w.add_model("a.pmx", "0" * 64, (0, 0, 1), np.zeros((S, S, 4), np.uint8))
    w._file.flush()
    inc = tmp_path / "incomplete.h5"
    inc.write_bytes(w.tmp_path.read_bytes())
    w.abort()
    with pytest.raises(ShardError, match="incomplete"):
        ShardReader(inc)
    assert any("incomplete" in s for s in verify_shard(inc))
    # truncated file
    good = tmp_path / "good.h5"
    write_synthetic(good)
    data = good.read_bytes()
    bad = tmp_path / "trunc.h5"
    bad.write_bytes(data[: len(data) // 2])
    probs = verify_shard(bad)
    assert probs and str(bad) in probs[0]
    with pytest.raises(ShardError):
        ShardReader(bad)
    # garbage and missing
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all" * 100)
    assert verify_shard(junk) and verify_shard(tmp_path / "nope.h5")
    # a plain HDF5 file that is not a shard
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    with pytest.raises(ShardError, match="not a thactl shard"):
        ShardReader(other)


def test_verify_expectations_and_corrupt_chunk(tmp_path):
    p = tmp_path / "s.h5"
    write_synthetic(p, n=4)
    assert verify_shard(p, expected_examples=4, expected={"seed": 3, "split": "train"}) == []
    assert verify_shard(p, expected_examples=5)
    assert verify_shard(p, expected={"seed": 4})
    # flip bytes inside the last compressed image chunk: deep verify catches it
    with h5py.File(p, "r") as f:
        ds = f["posed_image"]
        off = ds.id.get_chunk_info(3).byte_offset
        size = ds.id.get_chunk_info(3).size
    raw = bytearray(p.read_bytes())
    for j in range(off + size // 3, off + size // 3 + 64):
        raw[j] ^= 0xFF
    p.write_bytes(bytes(raw))
    assert verify_shard(p, deep=False) == []
    assert any("posed_image[3]" in s for s in verify_shard(p, deep=True))


def test_precompressed_chunks_read_back_identically(tmp_path):
    from dataset.shards import compress_image

    rng = np.random.default_rng(0)
    imgs = [_img(rng) for _ in range(3)]
    p = tmp_path / "c.h5"
    with ShardWriter(p, S, "test", 1, {}) as w:
        w.add_model("m.pmx", "0" * 64, (0, 0, 1), compress_image(imgs[0]))
        w.add_example(0, np.zeros(6), compress_image(imgs[1]), imgs[2], 0.7)
        w.finish()
    with ShardReader(p) as r:
        assert np.array_equal(r.rest_image(0), imgs[0])
        assert np.array_equal(r.morphed_image(0), imgs[1])
        assert np.array_equal(r.posed_image(0), imgs[2])
    assert verify_shard(p) == []
