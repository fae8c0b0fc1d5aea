"""Data for a pose schema on real models (`thactl render --schema tha3`): shards whose pose_names are
the schema's, the per-row record of what a model can show (a missing morph is unavailable and kept at
rest), the schema in the manifest, the schema's preview sheet and coverage report, and a tiny
morpher trained on such data."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cli import main as cli_main
from conftest import render_tha3_mikus
from core.poseschema import load_schema
from dataset.shards import ShardReader, verify_shard

MODEL = Path("mmd_default_pmd") / "miku_v2.pmd"


def run_cli(*args) -> int:
    return cli_main([str(a) for a in args])


@pytest.fixture(scope="module")
def tha3_data(shared_models, tmp_path_factory):
    """24 training examples of miku_v2 (which has no 口角上げ / 口角下げ / 下瞼上げ) and 8 validation
    examples of miku at 64 px under tha3."""
    return render_tha3_mikus(shared_models, tmp_path_factory, count=24, val_count=8, size=64)


def test_tha3_shards_have_the_schema_and_the_availability_record(tha3_data):
    schema = load_schema("tha3")
    path = tha3_data / "train" / "shard-00000.h5"
    assert verify_shard(path) == []
    with ShardReader(path) as r:
        assert r.pose_names == schema.names and r.pose.shape == (24, 45)
        assert r.schema.to_json() == schema.to_json() and int(r.file.attrs["format_version"]) == 2
        avail = r.model_available
        assert avail.shape == (r.num_models, 45) and (avail == avail[0]).all()
        missing = {n for n, a in zip(schema.names, avail[0]) if not a}
        # miku_v2 has no mouth-corner or lower-eyelid morphs: unavailable, and always at rest
        assert {"mouth_raised_corner_left", "mouth_lowered_corner_right",
                "eye_raised_lower_eyelid_left"} <= missing
        assert "eye_wink_left" not in missing and "mouth_aaa" not in missing and "head_y" not in missing
        off = [schema.index(n) for n in missing]
        assert (r.pose[:, off] == schema.rest[off]).all()
        assert (r.pose[:, schema.index("head_y")] != 0).all()
        rest_row, ex = r.rest_image(0), r.example(0)
        assert (ex["morphed_image"] != rest_row).any() and (ex["posed_image"] != ex["morphed_image"]).any()
    man = json.loads((tha3_data / "manifest.json").read_text(encoding="utf-8"))
    assert man["request"]["schema"] == schema.to_json() and man["complete"]


def test_tiny_morpher_and_rotator_train_on_tha3_data(tha3_data, tmp_path):
    from models.io import load_weights

    tiny = ["--base-channels", 8, "--num-downsample", 2, "--num-res-blocks", 1, "--batch-size", 4,
            "--examples", 16, "--val-every", 8, "--val-examples", 4, "--quiet"]
    assert run_cli("train", "morpher", "--data", tha3_data, "--out", tmp_path / "m", *tiny) == 0
    net = load_weights(tmp_path / "m", "morpher")
    assert net.config["pose_size"] == 39 and net.config["image_size"] == 64
    metrics = [json.loads(x) for x in (tmp_path / "m" / "metrics.jsonl").read_text().splitlines()]
    assert any(np.isfinite(m.get("loss", np.nan)) for m in metrics)
    assert run_cli("train", "rotator", "--data", tha3_data, "--out", tmp_path / "r", *tiny) == 0
    rotator = load_weights(tmp_path / "r", "rotator")
    assert rotator.config["pose_size"] == 6


def test_weights_record_their_schema_and_the_poser_splits_by_it(tha3_data, tmp_path):
    import torch

    from models.io import load_weights, read_pose_schema
    from models.poser import Poser

    tiny = ["--base-channels", 8, "--num-downsample", 2, "--num-res-blocks", 1, "--batch-size", 4,
            "--examples", 8, "--val-every", 8, "--val-examples", 4, "--quiet"]
    for kind in ("morpher", "rotator"):
        assert run_cli("train", kind, "--data", tha3_data, "--out", tmp_path / kind, *tiny) == 0
    schema = read_pose_schema(tmp_path / "morpher", "morpher")
    assert schema is not None and schema.names == load_schema("tha3").names
    assert read_pose_schema(tmp_path / "rotator", "rotator").to_json() == schema.to_json()
    morpher, rotator = load_weights(tmp_path / "morpher", "morpher"), load_weights(tmp_path / "rotator", "rotator")
    poser = Poser(morpher, rotator, schema=schema).eval()
    pose = torch.from_numpy(schema.rest)[None].repeat(2, 1)
    pose[1, schema.index("head_y")] = 1.0
    face, rotation = poser.split(pose)
    assert face.shape == (2, 39) and rotation.shape == (2, 6)
    assert float(rotation[1, schema.indices("rotation").index(schema.index("head_y"))]) == 1.0
    with torch.no_grad():
        final = poser(torch.zeros(2, 4, 64, 64), pose)[0]
    assert final.shape == (2, 4, 64, 64)
    with pytest.raises(ValueError, match=r"\(B, 45\)"):
        poser(torch.zeros(1, 4, 64, 64), torch.zeros(1, 6))


def test_preview_sheet_and_coverage_under_tha3(shared_models, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "sheet.png"
    assert run_cli("preview", shared_models / MODEL, "--schema", "tha3", "--sheet", "--size", 32,
                   "-o", out) == 0
    assert Image.open(out).size[0] == 8 * 128        # 8 cells a row, enlarged (x4) for their labels
    folder = tmp_path / "c"
    folder.mkdir()
    shutil.copy(shared_models / MODEL, folder / MODEL.name)
    capsys.readouterr()
    assert run_cli("models", "check", folder, "--schema", "tha3", "--table", tmp_path / "t.md") == 0
    text = capsys.readouterr().out
    assert "miku_v2.pmd: 39/45 parameters" in text
    assert "mouth_raised_corner_left" in text and "0/1" in text
    assert "| miku_v2.pmd | 12 | 10 | 4 | 7 |" in (tmp_path / "t.md").read_text()


def test_a_bad_schema_is_one_line(tmp_path, capsys):
    bad = tmp_path / "s.json"
    bad.write_text('{"format": "thactl-pose-schema", "version": 1, "name": "x", "parameters": '
                   '[{"name": "a", "kind": "spin", "range": [0, 1], "rest": 0, "input": "face"}]}')
    assert run_cli("render", "--out", tmp_path / "o", "--schema", bad, "-q") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown kind 'spin'" in err[0] and str(bad) in err[0]


def test_the_runner_follows_the_weights_schema(tha3_data, tmp_path):
    from inference.errors import InferenceError, WeightsInputError
    from inference.runner import PoserRunner

    tiny = ["--base-channels", 8, "--num-downsample", 2, "--num-res-blocks", 1, "--batch-size", 4,
            "--examples", 8, "--val-every", 8, "--val-examples", 4, "--quiet"]
    for kind in ("morpher", "rotator"):
        assert run_cli("train", kind, "--data", tha3_data, "--out", tmp_path / kind, *tiny) == 0
    runner = PoserRunner.from_weights(None, morpher=tmp_path / "morpher", rotator=tmp_path / "rotator",
                                      path="pumarola", device="cpu")
    schema = load_schema("tha3")
    assert runner.schema.names == schema.names and runner.pose_size == 45
    runner.set_image(np.zeros((64, 64, 4), np.uint8))
    poses = np.repeat(schema.rest[None], 3, 0)
    poses[1, schema.index("eye_wink_left")] = 1.0
    poses[2, schema.index("head_y")] = 1.0
    assert runner.run(poses).shape == (3, 64, 64, 4)
    assert runner.morpher_runs == 2          # rows 0 and 2 share their face part
    with pytest.raises(InferenceError, match=r"\(N, 45\)"):
        runner.run(np.zeros((1, 6), np.float32))
    # a THA1 rotator beside a tha3 morpher is refused in one line
    from models.io import save_weights
    from models.rotator import TwoAlgoFaceRotator

    save_weights(TwoAlgoFaceRotator(image_size=64, base_channels=8, num_downsample=2, num_res_blocks=1),
                 tmp_path / "tha1_rotator.safetensors")
    with pytest.raises(WeightsInputError, match="different pose schemas"):
        PoserRunner.from_weights(None, morpher=tmp_path / "morpher", rotator=tmp_path / "tha1_rotator.safetensors",
                                 path="pumarola", device="cpu")


# ---------------------------------------------------------------- groups drawn among what the model can show

AVAIL_COUNT = 320


def binomial_tolerance(p: float, n: int, z: float = 5.0) -> float:
    """How far an observed share of n independent draws may be from p: z binomial standard deviations
    (z = 5: a correct law fails with probability below 1e-6)."""
    return z * (p * (1.0 - p) / n) ** 0.5


def _render_v2(models: Path, out: Path) -> None:
    assert run_cli("render", "--models", models, "--out", out, "--count", AVAIL_COUNT, "--val-count", 0,
                   "--test-count", 0, "--size", 32, "--workers", 1, "--schema", "tha3", "-q",
                   "--shard-size", 128, "--seed", 5) == 0


@pytest.fixture(scope="module")
def v2_models(shared_models, tmp_path_factory):
    """A folder with miku_v2 alone (it lacks the mouth corners and the lower eyelid)."""
    src = shared_models / MODEL.parent
    models = tmp_path_factory.mktemp("v2")
    for f in list(src.glob("*.bmp")) + list(src.glob("*.sph")) + [src / MODEL.name]:
        shutil.copy(f, models / f.name)
    return models


@pytest.fixture(scope="module")
def v2_data(v2_models, tmp_path_factory):
    """320 training examples of miku_v2 at 32 px under tha3, in 3 shards."""
    out = tmp_path_factory.mktemp("v2d") / "d"
    _render_v2(v2_models, out)
    return out


def _poses_and_available(out: Path):
    poses, avail = [], []
    for path in sorted((out / "train").glob("shard-*.h5")):
        with ShardReader(path) as r:
            poses.append(r.pose)
            avail.append(r.model_available[r.model_index])
    return np.concatenate(poses), np.concatenate(avail)


def test_render_draws_the_groups_among_what_the_model_can_show(v2_data):
    from dataset.renderplan import pose_for
    from dataset.shardinfo import group_active_shares

    schema = load_schema("tha3")
    poses, avail = _poses_and_available(v2_data)
    n = len(poses)
    assert n == AVAIL_COUNT and (avail == avail[0]).all()
    mask = avail[0]
    assert not mask[[schema.index("mouth_raised_corner_left"), schema.index("eye_raised_lower_eyelid_right")]].any()
    # every stored pose is example j's own draw given the model's record, and true of its images
    for j in range(n):
        assert np.array_equal(poses[j], pose_for(5, "train", j, False, schema, mask)), j
    assert (poses[:, ~mask] == schema.rest[~mask]).all()
    shares = group_active_shares(poses, schema)
    for group in ("eye", "mouth"):          # THA2's law: never at rest; 1 semantic 25 %, 2 semantics 75 %
        observed, intended = shares[group]
        assert observed[0] == 0.0, group
        for k in (1, 2):
            assert abs(observed[k] - intended[k]) <= binomial_tolerance(intended[k], n), (group, k, observed)


def test_a_schema_render_is_the_same_twice_and_after_a_resume(v2_models, v2_data, tmp_path):
    again = tmp_path / "again"
    _render_v2(v2_models, again)
    shards = sorted(p.name for p in (v2_data / "train").glob("shard-*.h5"))
    assert shards == sorted(p.name for p in (again / "train").glob("shard-*.h5")) and len(shards) == 3
    for name in shards:
        assert (v2_data / "train" / name).read_bytes() == (again / "train" / name).read_bytes(), name
    (again / "train" / shards[1]).unlink()              # a resumed run renders the missing shard alike
    _render_v2(v2_models, again)
    assert (v2_data / "train" / shards[1]).read_bytes() == (again / "train" / shards[1]).read_bytes()


def test_tha3_data_of_an_older_sampling_law_is_not_resumed(shared_models, tmp_path_factory, capsys):
    """A folder whose request lacks this sampler's law (data drawn before groups followed availability)
    is refused with one line naming the setting, not silently continued under another law."""
    from core.poseschema import SAMPLING_LAW

    out = render_tha3_mikus(shared_models, tmp_path_factory, count=4, val_count=0, size=32)
    manifest = out / "manifest.json"
    man = json.loads(manifest.read_text(encoding="utf-8"))
    assert man["request"]["schema_sampling_law"] == SAMPLING_LAW
    del man["request"]["schema_sampling_law"]
    manifest.write_text(json.dumps(man), encoding="utf-8")
    models = Path(man["request"]["models"])
    capsys.readouterr()
    assert run_cli("render", "--models", models, "--out", out, "--count", 4, "--val-count", 0, "--test-count", 0,
                   "--size", 32, "--workers", 1, "--schema", "tha3", "-q",
                   "--split-file", models / "split.json") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different settings" in err[0] and "schema_sampling_law None -> 2" in err[0]


def test_schema_tha1_writes_the_data_render_wrote_without_a_schema(shared_models, tmp_path):
    """`--schema tha1` is THA1's own path: the same shards (every dataset and attribute) and the same
    request as a render without --schema; no schema entries appear."""
    import h5py

    models = tmp_path / "m"
    models.mkdir()
    src = shared_models / MODEL.parent
    for f in list(src.glob("*.bmp")) + list(src.glob("*.sph")) + [src / MODEL.name]:
        shutil.copy(f, models / f.name)
    common = ["--models", models, "--count", 6, "--val-count", 0, "--test-count", 0, "--size", 32,
              "--workers", 1, "-q"]
    assert run_cli("render", "--out", tmp_path / "plain", *common) == 0
    assert run_cli("render", "--out", tmp_path / "tha1", *common, "--schema", "tha1") == 0
    requests = [json.loads((tmp_path / d / "manifest.json").read_text(encoding="utf-8"))["request"]
                for d in ("plain", "tha1")]
    assert requests[0] == requests[1] and "schema" not in requests[0]
    shards = [sorted((tmp_path / d).rglob("*.h5")) for d in ("plain", "tha1")]
    assert [p.name for p in shards[0]] == [p.name for p in shards[1]] and shards[0]
    for a_path, b_path in zip(*shards):
        with h5py.File(a_path, "r") as a, h5py.File(b_path, "r") as b:
            assert sorted(a.keys()) == sorted(b.keys()) and "model_available" not in a
            for key in a:
                assert np.array_equal(a[key][()], b[key][()]), key
            assert {k: str(v) for k, v in a.attrs.items()} == {k: str(v) for k, v in b.attrs.items()}
