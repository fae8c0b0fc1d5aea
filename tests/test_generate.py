"""`thactl render` end to end: real models, determinism/resume (incl. SIGKILL), --part, bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from cli import main
from dataset.discover import (assign_splits, decode_member_name, discover_models,
                              safe_member_path, split_from_table)
from dataset.renderplan import default_eval_count
from dataset.shards import SPLITS
from dataset.torchdata import ShardDataset

REPO = Path(__file__).resolve().parents[1]
THACTL = [sys.executable, "-c", "import sys, cli; sys.exit(cli.main())"]
SPEC_DATASETS = {
    "rest_image": np.uint8, "model_path": object, "model_sha256": object, "model_frame": np.float32,
    "model_index": np.int32, "pose": np.float32, "morphed_image": np.uint8, "posed_image": np.uint8,
    "ambient": np.float32,
}


def _shards(out: Path) -> list[Path]:
    return [p for s in SPLITS for p in sorted((out / s).glob("shard-*.h5"))]


def _content(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        d = {k: f[k][...] for k in f}
        d["attrs"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
    return d


def assert_same_data(a: Path, b: Path) -> None:
    sa, sb = _shards(a), _shards(b)
    assert [p.relative_to(a) for p in sa] == [p.relative_to(b) for p in sb]
    assert sa
    for pa, pb in zip(sa, sb):
        ca, cb = _content(pa), _content(pb)
        assert ca.keys() == cb.keys()
        for k in ca:
            if k == "attrs":
                assert ca[k] == cb[k], pa
            else:
                assert np.array_equal(ca[k], cb[k]), (pa, k)


# ------------------------------------------------------------------------------ units

def test_split_assignment_rules():
    srcs = ["a", "b", "c"]
    out = assign_splits(srcs)
    assert set(out.values()) == {"train", "validation", "test"}
    many = [f"src{i:03d}" for i in range(400)]
    out = assign_splits(many, (0.8, 0.1, 0.1))
    frac = {s: sum(v == s for v in out.values()) / 400 for s in SPLITS}
    assert 0.72 < frac["train"] < 0.88 and 0.05 < frac["validation"] < 0.15
    assert assign_splits(many, (0.8, 0.1, 0.1)) == out  # deterministic
    two = assign_splits(["x", "y"])
    assert set(two) == {"x", "y"} and "train" in two.values()   # training always gets a source
    # few sources: the smallest go to test and validation, training keeps the big folder
    sizes = {"big": 11, "one": 1, "two_a": 2, "two_b": 2}
    few = assign_splits(list(sizes), (0.9, 0.05, 0.05), sizes)
    assert few["big"] == "train" and few["one"] == "test"
    assert sorted(few.values()) == ["test", "train", "train", "validation"]
    assert assign_splits(list(sizes), (0.9, 0.05, 0.05), sizes) == few
    assert "validation" not in assign_splits(list(sizes), (0.9, 0.0, 0.1), sizes).values()
    assert split_from_table("a/b/c.pmx", {"a": "test"}) == "test"
    assert split_from_table("a/b/c.pmx", {"a": "test", "a/b/c.pmx": "train"}) == "train"
    assert split_from_table("z/c.pmx", {"a": "test"}) is None


def test_default_eval_count():
    assert default_eval_count(500_000, 79) == 10_000
    assert default_eval_count(200, 1) == 10
    assert default_eval_count(64, 11) == 64
    assert default_eval_count(100, 0) == 0


def test_zip_member_names():
    assert safe_member_path("../evil.pmx") is None
    assert safe_member_path("/abs/x.pmx") is None
    assert safe_member_path("C:/x.pmx") is None
    assert safe_member_path("a\\b\\c.pmx").as_posix() == "a/b/c.pmx"
    assert safe_member_path("a/./b/../c") is None
    info = zipfile.ZipInfo("ミク/ミク.pmx".encode("cp932").decode("cp437"))
    assert decode_member_name(info) == "ミク/ミク.pmx"


# ------------------------------------------------------------------------------ real models

@pytest.fixture(scope="module")
def real_run(shared_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("real") / "data"
    args = ["render", "--models", str(shared_models), "--out", str(out), "--count", "40",
            "--val-count", "12", "--test-count", "8", "--size", "64", "--shard-size", "16",
            "--group-size", "5", "--workers", "1", "-q", "--seed", "7"]
    t = time.time()
    assert main(args) == 0
    return out, args, time.time() - t


def test_real_manifest(real_run, shared_models):
    out, _, _ = real_run
    man = json.loads((out / "manifest.json").read_text())
    assert man["complete"] is True and man["seed"] == 7
    listed = {m["path"]: m["split"] for m in man["models"]}
    rejected = {d["path"]: d["reason"] for d in man["rejected"]}
    every = {p.relative_to(shared_models).as_posix() for p in shared_models.rglob("*")
             if p.suffix.lower() in (".pmx", ".pmd")}
    assert set(listed) | set(rejected) == every
    assert not set(listed) & set(rejected)
    for name in ("lowpoly_miku_gumi_pmd/miku.pmd", "lowpoly_miku_gumi_pmd/gumi.pmd"):
        assert "morph" in rejected[name]
    # splits by source folder: one folder never in two splits; all splits used
    by_source = {}
    for m in man["models"]:
        by_source.setdefault(m["source"], set()).add(m["split"])
    assert all(len(v) == 1 for v in by_source.values())
    assert {m["split"] for m in man["models"]} == set(SPLITS)
    assert {s: man["splits"][s]["examples"] for s in SPLITS} == {"train": 40, "validation": 12, "test": 8}
    for s in SPLITS:
        assert sum(sh["examples"] for sh in man["splits"][s]["shards"]) == man["splits"][s]["examples"]
        per_model = [m["examples"] for m in man["models"] if m["split"] == s]
        assert sum(per_model) == man["splits"][s]["examples"]
        assert max(per_model) - min(per_model) <= 1          # spread evenly over the models


def test_real_shards_layout_and_pixels(real_run):
    out, _, _ = real_run
    man = json.loads((out / "manifest.json").read_text())
    split_of = {m["path"]: m["split"] for m in man["models"]}
    no_one_eye = {m["path"] for m in man["models"] if not m["one_eye_morphs"]}
    total = {s: 0 for s in SPLITS}
    checked_morph = checked_rot = 0
    for path in _shards(out):
        split = path.parent.name
        with h5py.File(path, "r") as f:
            assert set(f.keys()) == set(SPEC_DATASETS)
            for k, dt in SPEC_DATASETS.items():
                if dt is object:
                    assert h5py.check_string_dtype(f[k].dtype) is not None
                else:
                    assert f[k].dtype == dt, k
            n, m = len(f["pose"]), len(f["model_path"])
            assert f["rest_image"].shape == (m, 64, 64, 4) and f["posed_image"].shape == (n, 64, 64, 4)
            assert f["model_frame"].shape == (m, 3) and f["model_index"].shape == (n,)
            a = f.attrs
            assert a["format"] == "thactl-shard" and a["split"] == split and int(a["image_size"]) == 64
            assert list(a["pose_names"]) == ["head_x", "head_y", "neck_z", "left_eye", "right_eye", "mouth"]
            assert float(a["angle_degrees"]) == 15 and int(a["seed"]) == 7 and bool(a["complete"])
            assert json.loads(a["settings"])["size"] == 64
            paths = f["model_path"].asstr()[...]
            assert all(split_of[p] == split for p in paths)
            total[split] += n
            rest, morphed, posed = f["rest_image"][...], f["morphed_image"][...], f["posed_image"][...]
            pose, rows, amb = f["pose"][...], f["model_index"][...], f["ambient"][...]
            assert np.all((amb >= 0.5) & (amb <= 1.2))
            for img in (rest, morphed, posed):
                corners = img[:, [0, 0], [0, -1]]            # top corners: above the head
                assert np.all(corners == 0)
                assert np.all((img.reshape(len(img), -1, 4) == 0).all(-1).mean(1) > 0.1)
                assert np.all(img[..., :3][img[..., 3] == 0] == 0)
                assert np.all((img[..., 3] > 0).mean(axis=(1, 2)) > 0.1)
            for i in range(n):
                r = rows[i]
                assert amb[i] == amb[rows == r][0]          # one ambient per model row
                if paths[r] in no_one_eye:
                    assert pose[i, 3] == pose[i, 4]
                d_rot = (np.abs(posed[i].astype(int) - morphed[i]).max(-1) > 8).mean()
                d_exp = (np.abs(morphed[i].astype(int) - rest[r]).max(-1) > 8).mean()
                if np.abs(pose[i, :3]).max() > 0.3:
                    assert d_rot > 0.002, (path, i, pose[i])
                    checked_rot += 1
                if np.abs(pose[i, 3:] - [0, 0, 1]).max() > 0.3:
                    assert d_exp > 0.0005, (path, i, pose[i])
                    checked_morph += 1
    assert checked_rot > 20 and checked_morph > 20
    assert total == {"train": 40, "validation": 12, "test": 8}
    ds = ShardDataset(out, split="train")
    assert len(ds) == 40 and ds[39]["posed_image"].shape == (4, 64, 64)


def test_real_rerun_is_noop_and_inspect(real_run, capsys):
    out, args, _ = real_run
    before = {p: p.stat().st_mtime_ns for p in _shards(out)}
    assert main(args) == 0
    assert "rendered 0 examples" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in _shards(out)} == before
    assert main(["inspect", str(out), "--verify", "--sheet", str(out / "sheet.png"), "--examples", "3"]) == 0
    text = capsys.readouterr().out
    assert "verify: OK" in text and "lowpoly_miku_gumi_pmd/miku.pmd" in text and "head_x" in text
    assert (out / "sheet.png").stat().st_size > 1000


# ------------------------------------------------------------------------------ samples

SMALL = ["--size", "32", "--aa", "0", "--count", "30", "--val-count", "6", "--test-count", "6",
         "--shard-size", "8", "--group-size", "4", "-q"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "data"
    assert main(["render", "--out", str(out), "--workers", "1", *SMALL]) == 0
    return out


def test_samples_parts_equal_single_run(reference, tmp_path, capsys):
    out = tmp_path / "parts"
    assert main(["render", "--out", str(out), "--workers", "1", "--part", "2/2", *SMALL]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["complete"] is False and "not complete" in capsys.readouterr().out
    assert main(["render", "--out", str(out), "--workers", "2", "--part", "1/2", *SMALL]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["complete"] is True
    assert_same_data(reference, out)
    assert main(["inspect", str(out / "train" / "shard-00000.h5")]) == 0


def test_sigkill_and_resume(reference, tmp_path):
    out = tmp_path / "killed"
    cmd = THACTL + ["render", "--out", str(out), "--workers", "2", *SMALL]
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600      # waits for progress; generous so a loaded machine never misses it
    try:
        while time.time() < deadline and not (out / "train" / "shard-00001.h5").exists():
            time.sleep(0.05)
        assert (out / "train" / "shard-00001.h5").exists(), "render made no progress"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    man = json.loads((out / "manifest.json").read_text())
    assert man["complete"] is False
    # nothing half-written under a final name
    for p in _shards(out):
        with h5py.File(p, "r") as f:
            assert bool(f.attrs["complete"])
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert not list(out.rglob(".shard-*.tmp"))
    assert_same_data(reference, out)
    assert json.loads((out / "manifest.json").read_text())["complete"] is True


def test_different_settings_refused_unless_force(reference, tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["render", "--out", str(out), "--workers", "1", *SMALL]) == 0
    capsys.readouterr()
    changed = [a if a != "32" else "48" for a in SMALL]
    assert main(["render", "--out", str(out), "--workers", "1", *changed]) == 1
    err = capsys.readouterr().err
    assert err.startswith("thactl: error:") and "--force" in err and "Traceback" not in err
    assert err.count("\n") == 1
    assert main(["render", "--out", str(out), "--workers", "1", "--force", *changed]) == 0
    with h5py.File(out / "train" / "shard-00000.h5", "r") as f:
        assert int(f.attrs["image_size"]) == 48


# ------------------------------------------------------------------------------ bad input

def _one_line_error(capsys, argv, *needles):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 1, err
    assert err.startswith("thactl: error:") and err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


def test_bad_folders(tmp_path, capsys):
    _one_line_error(capsys, ["render", "--models", str(tmp_path / "nope"), "--out", str(tmp_path / "o"),
                             "--count", "5"], "does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(capsys, ["render", "--models", str(empty), "--out", str(tmp_path / "o"),
                             "--count", "5"], "no .pmx/.pmd")
    txt = tmp_path / "texts"
    txt.mkdir()
    (txt / "readme.txt").write_text("hello")
    _one_line_error(capsys, ["render", "--models", str(txt), "--out", str(tmp_path / "o"),
                             "--count", "5"], "no .pmx/.pmd")
    bad = tmp_path / "bad"
    (bad / "x").mkdir(parents=True)
    (bad / "x" / "broken.pmx").write_bytes(b"PMX \x00\x00garbage")
    (bad / "corrupt.zip").write_bytes(b"PK\x03\x04 not really a zip")
    _one_line_error(capsys, ["render", "--models", str(bad), "--out", str(tmp_path / "o2"),
                             "--count", "5", "-q"], "no usable model")
    assert not _shards(tmp_path / "o2")
    _one_line_error(capsys, ["render", "--out", str(tmp_path / "o3"), "--part", "3/2"], "--part")
    _one_line_error(capsys, ["render", "--models", str(bad), "--out", str(tmp_path / "o4")], "--count")
    _one_line_error(capsys, ["inspect", str(tmp_path / "nope")], "no such")
    _one_line_error(capsys, ["inspect", str(empty)], "no manifest")


class _Cp932Info(zipfile.ZipInfo):
    """Writes the member name in Shift-JIS without the UTF-8 flag, like Japanese zip tools."""

    def _encodeFilenameFlags(self):
        return self.filename.encode("cp932"), self.flag_bits & ~0x800


def test_zips_and_rejections(tmp_path, capsys):
    from renderer.samples import write_samples

    models = tmp_path / "models"
    paths = write_samples(tmp_path / "gen", count=4, seed=0)
    for p in paths[:3]:  # three plain folders
        dst = models / p.parent.name
        dst.mkdir(parents=True)
        for f in p.parent.rglob("*"):
            if f.is_file():
                (dst / f.relative_to(p.parent)).parent.mkdir(parents=True, exist_ok=True)
                (dst / f.relative_to(p.parent)).write_bytes(f.read_bytes())
    src = paths[3].parent
    with zipfile.ZipFile(models / "ミク配布.zip", "w") as z:
        for f in sorted(src.rglob("*")):
            if f.is_file():
                rel = f.relative_to(src).as_posix().replace(src.name, "ミク")
                z.writestr(_Cp932Info("モデル/" + rel), f.read_bytes())
        z.writestr("../../escape.pmx", b"PMX nope")
    (models / "broken.zip").write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    (models / "junk").mkdir()
    (models / "junk" / "junk.pmd").write_bytes(b"Pmd" + b"\x01" * 10)
    found = {m.rel_path: m for m in discover_models(models, tmp_path / "cache")}
    assert "ミク配布.zip/モデル/ミク.pmx" in found
    assert found["ミク配布.zip/モデル/ミク.pmx"].path.is_file()
    assert found["broken.zip"].error and "zip" in found["broken.zip"].error
    assert not (tmp_path / "escape.pmx").exists() and not list(tmp_path.parent.glob("escape.pmx"))
    out = tmp_path / "out"
    assert main(["render", "--models", str(models), "--out", str(out), "--count", "8",
                 "--size", "32", "--aa", "0", "--workers", "1", "-q"]) == 0
    man = json.loads((out / "manifest.json").read_text())
    rejected = {d["path"]: d["reason"] for d in man["rejected"]}
    assert set(rejected) == {"broken.zip", "junk/junk.pmd"}
    assert "cannot load" in rejected["junk/junk.pmd"]
    used = {m["path"] for m in man["models"]}
    assert "ミク配布.zip/モデル/ミク.pmx" in used and len(used) == 4
    with h5py.File(_shards(out)[0], "r") as f:
        assert all(p in used for p in f["model_path"].asstr()[...])


def test_disk_full_leaves_no_final_shard(tmp_path):
    """A file-size limit (like a full disk) hits while a shard is written."""
    from renderer.samples import write_samples

    write_samples(tmp_path / "models", count=3, seed=0)
    out = tmp_path / "full"
    code = (
        "import resource, signal, sys, cli\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))\n"
        f"sys.exit(cli.main(['render', '--models', {str(tmp_path / 'models')!r}, '--out', {str(out)!r}, "
        "'--workers', '1', '--size', '64', '--count', '60', '--shard-size', '60', '-q']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("thactl: error:") and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "cannot write" in r.stderr, r.stderr
    assert (out / "manifest.json").is_file()      # written before the failing shard
    assert not _shards(out)
    assert not list(out.rglob(".shard-*.tmp"))


def test_unreadable_model_is_a_rejection(tmp_path, capsys):
    from renderer.samples import write_samples

    write_samples(tmp_path / "m", count=1, seed=0)
    (tmp_path / "m" / "gone").mkdir()
    (tmp_path / "m" / "gone" / "dangling.pmx").symlink_to(tmp_path / "m" / "nowhere.pmx")
    assert main(["render", "--models", str(tmp_path / "m"), "--out", str(tmp_path / "o"),
                 "--count", "4", "--size", "32", "--aa", "0", "--workers", "1", "-q"]) == 0
    man = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert man["rejected"] == [{"path": "gone/dangling.pmx",
                                "reason": man["rejected"][0]["reason"]}]
    assert "cannot read" in man["rejected"][0]["reason"]


def test_split_file(tmp_path, capsys):
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["sample-01", "sample-02/sample-02.pmx"],
                                 "validation": ["sample-03"], "test": ["sample-04"]}))
    out = tmp_path / "o"
    assert main(["render", "--out", str(out), "--split-file", str(split), "--workers", "1", *SMALL]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert {m["path"].split("/")[0]: m["split"] for m in man["models"]} == {
        "sample-01": "train", "sample-02": "train", "sample-03": "validation", "sample-04": "test"}
    assert {d["path"] for d in man["rejected"]} == {"sample-05/sample-05.pmx", "sample-06/sample-06.pmx"}
    assert all("split file" in d["reason"] for d in man["rejected"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train": ["sample-01"], "test": ["sample-01"]}))
    capsys.readouterr()
    _one_line_error(capsys, ["render", "--out", str(tmp_path / "o2"), "--split-file", str(bad),
                             "--workers", "1", *SMALL], "both")
    bad.write_text(json.dumps({"train": ["sample-01"], "validaton": ["sample-03"]}))  # misspelt split
    _one_line_error(capsys, ["render", "--out", str(tmp_path / "o3"), "--split-file", str(bad),
                             "--workers", "1", *SMALL], "unknown split 'validaton'")


def test_probe_rejects_morphs_that_do_not_act_as_named(reference, tmp_path):
    """Overrides that point the face rig at the wrong morphs are caught by the probe render."""
    man = json.loads((reference / "manifest.json").read_text())
    morphs = {m["path"]: m["morphs"] for m in man["models"]}
    a = morphs["sample-02/sample-02.pmx"]
    assert a["left_eye"] and a["right_eye"] and a["mouth"]
    overrides = tmp_path / "ov.json"
    overrides.write_text(json.dumps({
        "sample-02/sample-02.pmx": {"left_eye": a["right_eye"], "right_eye": a["left_eye"]},
        "sample-03/sample-03.pmx": {"mouth": morphs["sample-03/sample-03.pmx"]["left_eye"]},
    }, ensure_ascii=False))
    out = tmp_path / "o"
    assert main(["render", "--out", str(out), "--overrides", str(overrides), "--workers", "1", *SMALL]) == 0
    rejected = {d["path"]: d["reason"] for d in json.loads((out / "manifest.json").read_text())["rejected"]}
    assert "other eye" in rejected["sample-02/sample-02.pmx"]
    assert "below the mouth" in rejected["sample-03/sample-03.pmx"]
    assert len(rejected) == 2


def test_check_probe_synthetic():
    from dataset.modelcheck import check_probe

    s = 64
    rest = np.zeros((s, s, 4), np.uint8)
    rest[8:60, 12:52] = 200
    def changed(rows, cols):
        img = rest.copy()
        img[rows, cols] = 0
        return img
    imgs = dict(rest=rest, mouth=changed(slice(40, 44), slice(28, 36)),
                left_eye=changed(slice(26, 29), slice(36, 44)),     # image right = character's left
                right_eye=changed(slice(26, 29), slice(20, 28)),
                head_y=changed(slice(10, 60), slice(12, 30)))
    assert check_probe(imgs, one_eye=True) == []
    swapped = dict(imgs, left_eye=imgs["right_eye"], right_eye=imgs["left_eye"])
    assert any("other eye" in p for p in check_probe(swapped, one_eye=True))
    dead = dict(imgs, mouth=rest.copy())
    assert any("mouth morph changes no pixels" in p for p in check_probe(dead, one_eye=True))
    assert any("neck" in p for p in check_probe(dict(imgs, head_y=rest.copy()), one_eye=True))
    assert "not visible" in check_probe(dict(imgs, rest=np.zeros_like(rest)), one_eye=True)[0]


def test_split_units_go_deeper_when_few_sources():
    from dataset.discover import split_units

    flat = ["a/x.pmx", "b/y.pmx", "c/z.pmx", "c/w.pmx"]
    assert split_units(flat) == {"a/x.pmx": "a", "b/y.pmx": "b", "c/z.pmx": "c", "c/w.pmx": "c"}
    nested = ["pmx/all/a/m.pmx", "pmx/all/b/m.pmx", "pmx/all/c/m.pmx", "pmx/all/c/n.pmx"]
    assert split_units(nested) == {"pmx/all/a/m.pmx": "pmx/all/a", "pmx/all/b/m.pmx": "pmx/all/b",
                                   "pmx/all/c/m.pmx": "pmx/all/c", "pmx/all/c/n.pmx": "pmx/all/c"}
    one = ["only/one.pmx", "only/two.pmx", "only/three.pmx"]
    assert split_units(one) == {r: r for r in one}
    assert split_units(["x.pmx", "y.pmx"]) == {"x.pmx": "x.pmx", "y.pmx": "y.pmx"}
    # whatever the hash says, a single source or two sources always give training data
    for names in (["s"], ["p", "q"], ["only/one.pmx"]):
        assert "train" in assign_splits(names).values()


def test_damaged_shard_is_rendered_again(reference, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    victim = out / "train" / "shard-00001.h5"
    victim.write_bytes(victim.read_bytes()[:5000])                   # truncated
    (out / "train" / ".shard-00002.h5.otherhost-1.tmp").write_bytes(b"left by a killed run")
    assert main(["render", "--out", str(out), "--workers", "1", *SMALL]) == 0
    assert_same_data(reference, out)
    assert not list(out.rglob(".shard-*.tmp"))


def test_moved_models_folder_resumes(tmp_path, capsys):
    from renderer.samples import write_samples

    write_samples(tmp_path / "a" / "models", count=3, seed=0)
    out = tmp_path / "out"
    args = ["--out", str(out), "--count", "6", "--size", "32", "--aa", "0", "--workers", "1", "-q"]
    assert main(["render", "--models", str(tmp_path / "a" / "models"), *args]) == 0
    (tmp_path / "a").rename(tmp_path / "b")
    capsys.readouterr()
    assert main(["render", "--models", str(tmp_path / "b" / "models"), *args]) == 0
    assert "rendered 0 examples" in capsys.readouterr().out
