"""ShardDataset (dataset/torchdata.py): random access, THA convention, DataLoader workers, no GL."""
from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dataset.errors import DatasetError, ShardError
from dataset.imageconv import uint8_to_tensor
from dataset.torchdata import ShardDataset

from test_shards import S, write_synthetic

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def data(tmp_path):
    recs = {}
    recs["train", 0] = write_synthetic(tmp_path / "train" / "shard-00000.h5", n=5, models=2, seed=1)
    recs["train", 1] = write_synthetic(tmp_path / "train" / "shard-00001.h5", n=3, models=1, seed=2)
    recs["validation", 0] = write_synthetic(tmp_path / "validation" / "shard-00000.h5", n=2,
                                            models=1, seed=9, split="validation")
    return tmp_path, recs


def test_random_access_across_shards(data):
    root, recs = data
    ds = ShardDataset(root, split="train")
    assert len(ds) == 8 and ds.image_size == S
    for index, (k, i) in [(0, (0, 0)), (4, (0, 4)), (5, (1, 0)), (7, (1, 2)), (-1, (1, 2))]:
        item = ds[index]
        rec = recs["train", k]
        assert set(item) == {"rest_image", "morphed_image", "posed_image", "pose", "index"}
        for key in ("rest_image", "morphed_image", "posed_image"):
            assert item[key].shape == (4, S, S) and item[key].dtype == torch.float32
        assert item["index"] == index % 8
        assert torch.equal(item["pose"], torch.from_numpy(rec["poses"][i]))
        assert torch.equal(item["morphed_image"], uint8_to_tensor(rec["morphed"][i]))
        assert torch.equal(item["posed_image"], uint8_to_tensor(rec["posed"][i]))
        assert torch.equal(item["rest_image"], uint8_to_tensor(rec["rest"][rec["rows"][i]]))
        assert float(item["posed_image"].min()) >= -1 and float(item["posed_image"].max()) <= 1
    with pytest.raises(IndexError):
        ds[8]
    info = ds.example_info(6)
    assert info["shard_index"] == 1 and info["model_path"] == "folder/m0.pmx"
    # other ways to name the shards
    assert len(ShardDataset(root, split="validation")) == 2
    assert len(ShardDataset(root, split=None)) == 10
    assert len(ShardDataset(root / "train" / "shard-00001.h5")) == 3
    assert len(ShardDataset([root / "train" / "shard-00001.h5", root / "validation" / "shard-00000.h5"])) == 5
    assert len(ShardDataset(root / "train")) == 8
    ds.close()


def test_cached_rest_is_not_shared(data):
    root, _ = data
    ds = ShardDataset(root)
    a = ds[0]["rest_image"]
    a.fill_(7)
    assert float(ds[2]["rest_image"].max()) <= 1


def test_bad_inputs(data, tmp_path_factory):
    root, _ = data
    with pytest.raises(DatasetError):
        ShardDataset(root, split="test")
    with pytest.raises(DatasetError):
        ShardDataset(root / "nope")
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(DatasetError, match=r"train: no shards .* the --out folder of `thactl render`"):
        ShardDataset(empty)
    (root / "train" / "shard-00002.h5").write_bytes(b"garbage")
    with pytest.raises(ShardError, match="shard-00002"):
        ShardDataset(root)
    ds = ShardDataset(root, skip_bad_shards=True)
    assert len(ds) == 8 and len(ds.skipped) == 1


@pytest.mark.parametrize("ctx", ["fork", "spawn"])
def test_dataloader_workers(data, ctx):
    root, _ = data
    ds = ShardDataset(root)
    ds[0]  # the parent holds an open handle before the workers start
    ref = torch.stack([ds[i]["posed_image"] for i in range(len(ds))])
    dl = DataLoader(ds, batch_size=3, shuffle=True, num_workers=2, multiprocessing_context=ctx,
                    generator=torch.Generator().manual_seed(0))
    seen = []
    for batch in dl:
        assert batch["posed_image"].shape[1:] == (4, S, S)
        for j, idx in enumerate(batch["index"].tolist()):
            assert torch.equal(batch["posed_image"][j], ref[idx])
            seen.append(idx)
    assert sorted(seen) == list(range(len(ds)))


def test_pickle_drops_handles(data):
    root, _ = data
    ds = ShardDataset(root)
    ds[3]
    ds2 = pickle.loads(pickle.dumps(ds))
    assert len(ds2._handles) == 0
    assert torch.equal(ds2[3]["morphed_image"], ds[3]["morphed_image"])


def test_reading_imports_no_gl_or_renderer(data):
    root, _ = data
    code = (
        "import sys\n"
        "from dataset.torchdata import ShardDataset\n"
        "import dataset.imageconv, dataset.shards, dataset.poses\n"
        f"ds = ShardDataset({str(root)!r})\n"
        "x = ds[0]\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('moderngl', 'renderer', 'glcontext', 'click'))\n"
        "print('BAD', bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "BAD []" in out.stdout, out.stdout


def test_few_open_files_alternating_shards(data):
    root, recs = data
    ds = ShardDataset(root, split=None, max_open_files=1)
    for index in [0, 5, 8, 1, 6, 9, 0]:
        k = 0 if index < 5 else (1 if index < 8 else 2)
        key = [("train", 0), ("train", 1), ("validation", 0)][k]
        i = index - [0, 5, 8][k]
        assert torch.equal(ds[index]["posed_image"], uint8_to_tensor(recs[key]["posed"][i]))
        assert len(ds._handles) == 1
