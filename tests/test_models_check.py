"""`thactl models check`: every file of a collection with broken files gets its line, the verdicts
are those of `thactl render`, results are cached, and parallel workers agree with one."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, SHARED_MODELS, real_model_paths, real_model_verdict

sys.path.insert(0, str(REPO / "bench"))
from fuzz_loaders import survey  # noqa: E402

RUN_WITH_PEAK = ("import resource, sys, cli; rc = cli.main(sys.argv[1:]); "
                 "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); "
                 "sys.exit(rc)")
MAX_RSS_KB = 1_500_000


def thactl(args: list[str], cache: Path, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, XDG_CACHE_HOME=str(cache), PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", RUN_WITH_PEAK, *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=600, **kw)


def broken_collection(root: Path, shared: Path) -> dict[str, str]:
    """Write a collection of broken files made from real models; returns rel path -> what
    the check must say about it (a substring of its line)."""
    from renderer.samples import write_samples

    raw = (shared / "mmd_default_pmd" / "miku.pmd").read_bytes()
    pmx = (shared / "animasa_miku_pmx_j3" / "index.pmx").read_bytes()
    expect: dict[str, str] = {}
    (root / "trunc").mkdir(parents=True)
    for off in (0, 3, 10, 100, 283, 1000, len(raw) // 4, len(raw) // 2, len(raw) - 100, len(raw) - 1):
        (root / "trunc" / f"miku_{off}.pmd").write_bytes(raw[:off])
        expect[f"trunc/miku_{off}.pmd"] = "REJECTED"
    (root / "flip").mkdir()
    for off in (1, 7, 300, len(raw) // 3):
        buf = bytearray(raw)
        buf[off] ^= 0xFF
        (root / "flip" / f"miku_{off}.pmd").write_bytes(bytes(buf))
        expect[f"flip/miku_{off}.pmd"] = ""          # loads or not: a line either way
    huge = bytearray(pmx)
    off, _, _ = survey(shared / "animasa_miku_pmx_j3" / "index.pmx", pmx)["counts"][0]
    huge[off:off + 4] = struct.pack("<I", 0x7FFFFFFF)
    (root / "huge").mkdir()
    (root / "huge" / "claims_2g.pmx").write_bytes(bytes(huge))
    expect["huge/claims_2g.pmx"] = "vertex count 2147483647"
    version = bytearray(pmx)
    version[4:8] = struct.pack("<f", 9.0)
    (root / "huge" / "version9.pmx").write_bytes(bytes(version))
    expect["huge/version9.pmx"] = "REJECTED"
    # a working model whose hair texture path leaves the model's folder
    sample = write_samples(root / "escape", count=1, seed=0)[0]
    data = sample.read_bytes()
    old, new = "tex\\hair.png".encode("utf-16-le"), "../../x1.png".encode("utf-16-le")
    assert data.count(old) == 1
    sample.write_bytes(data.replace(old, new))
    (root / "x1.png").write_bytes((sample.parent / "tex" / "hair.png").read_bytes())
    expect[f"escape/{sample.parent.name}/{sample.name}"] = "../../x1.png (refused"
    good = zipfile.ZipFile(root / "ok.zip", "w")
    good.writestr("m/miku.pmd", raw[:500])
    good.close()
    expect["ok.zip/m/miku.pmd"] = "REJECTED"
    zdata = (root / "ok.zip").read_bytes()
    (root / "corrupt.zip").write_bytes(zdata[:30] + b"\x00" * 40 + zdata[70:])
    expect["corrupt.zip"] = "REJECTED"
    return expect


@pytest.fixture(scope="module")
def broken(shared_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("broken") / "pmx"
    expect = broken_collection(root, shared_models)
    cache = tmp_path_factory.mktemp("cache")
    out = root.parent / "check.json"
    res = thactl(["models", "check", str(root), "--json", str(out), "-q"], cache)
    return root, expect, res, json.loads(out.read_text()) if out.is_file() else None, cache


def test_every_broken_file_gets_a_line_and_a_nonzero_exit(broken):
    root, expect, res, records, _ = broken
    assert res.returncode == 1, res.stderr[-2000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    lines = res.stdout.splitlines()
    for rel, want in expect.items():
        mine = [ln for ln in lines if ln.split(None, 1)[-1].startswith(rel + "  ")]
        assert len(mine) == 1, (rel, res.stdout)
        assert want in mine[0], mine[0]
    assert {r["path"] for r in records} == set(expect)
    escape = next(r for r in records if r["path"].startswith("escape/"))
    assert escape["ok"] and any("refused" in n for n in escape["notes"]), escape
    corrupt = next(r for r in records if r["path"] == "corrupt.zip")
    assert not corrupt["ok"] and "zip" in corrupt["reason"]


@pytest.mark.slow
def test_a_file_claiming_2g_vertices_costs_no_memory(broken):
    """A memory figure, so slow-marked (the default suite holds none; tests/test_modelfile.py checks
    deterministically, with tracemalloc, that the loader refuses such counts before allocating)."""
    res = broken[2]
    peak = int(res.stderr.split("PEAK_RSS_KB")[1].split()[0])
    assert peak < MAX_RSS_KB, f"peak RSS {peak} kB"


def test_rerun_uses_the_cache(broken):
    from dataset.collection import CheckSettings, check_collection

    root, expect, _, records, cache = broken
    todo = []
    env = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(cache)
    try:
        again = [c.to_json() for c in check_collection(CheckSettings(root), on_todo=todo.append)]
    finally:
        if env is None:
            del os.environ["XDG_CACHE_HOME"]
        else:
            os.environ["XDG_CACHE_HOME"] = env
    assert todo == [0]
    assert [(c["rel_path"], c["ok"], c["reason"]) for c in again] == \
        [(r["path"], r["ok"], r["reason"]) for r in records]


def test_two_workers_agree_with_one(broken, tmp_path):
    root, _, _, records, _ = broken
    out = tmp_path / "w2.json"
    res = thactl(["models", "check", str(root), "--workers", "2", "--json", str(out), "-q"], tmp_path / "c")
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    two = json.loads(out.read_text())
    drop = ("notes",)     # texture warnings are per-process log details; verdicts must agree
    assert [{k: v for k, v in r.items() if k not in drop} for r in two] == \
        [{k: v for k, v in r.items() if k not in drop} for r in records]


@pytest.mark.parametrize("path", real_model_paths(), ids=lambda p: p.relative_to(SHARED_MODELS).as_posix())
def test_every_real_model_is_usable_or_says_why(path):
    """What holds for any real model: accepted with a camera box and the morphs it uses, or
    rejected with a one-line reason that does not repeat the file's path."""
    v = real_model_verdict(path)
    assert v.rel_path == path.relative_to(SHARED_MODELS).as_posix()
    if v.ok:
        assert v.reason == "" and v.format
        cx, cy, half = v.frame
        assert half > 0 and all(np.isfinite([cx, cy, half]))
        assert v.morphs["mouth"] and (v.morphs["both_eyes"] or (v.morphs["left_eye"] and v.morphs["right_eye"]))
    else:
        assert v.reason.strip() and "\n" not in v.reason and str(path) not in v.reason


# models with a property that must make them rejected, and what the reason must name
KNOWN_REJECTIONS = {
    "lowpoly_miku_gumi_pmd/gumi.pmd": "no eye-closing morph",
    "ruri_natsuyuki": "too few vertices follow the head bone",
    "genshin_kaeya": "right eye",                 # an eyepatch: its right-eye wink changes no pixel
}


@pytest.mark.parametrize("where", sorted(KNOWN_REJECTIONS))
def test_models_with_a_known_flaw_are_rejected_for_it(shared_models, where):
    hits = [p for p in real_model_paths() if p.relative_to(shared_models).as_posix().startswith(where)]
    if not hits:
        pytest.skip(f"{where} not in {shared_models}")
    v = real_model_verdict(hits[0])
    assert not v.ok and KNOWN_REJECTIONS[where] in v.reason, v.reason


def test_same_verdicts_as_render_and_one_cache(shared_models, tmp_path):
    check_json = tmp_path / "check.json"
    res = thactl(["models", "check", str(shared_models), "--json", str(check_json), "-q"], tmp_path / "c")
    assert res.returncode == 1, res.stderr[-2000:]       # two lowpoly models have no morphs
    from dataset.collection import collection_cache_dir

    cache_file = (tmp_path / "c" / "thactl" / "collections" /
                  collection_cache_dir(shared_models).name / "validation.json")
    verdicts = cache_file.read_bytes()
    stamp = cache_file.stat().st_mtime_ns
    out = tmp_path / "data"
    res = thactl(["render", "--models", str(shared_models), "--out", str(out), "--count", "3",
                  "--val-count", "1", "--test-count", "1", "--size", "32", "--aa", "0",
                  "--workers", "1", "-q"], tmp_path / "c")
    assert res.returncode == 0, res.stderr[-2000:]
    # one cache: render found every verdict of `models check` and validated nothing again
    assert cache_file.stat().st_mtime_ns == stamp and cache_file.read_bytes() == verdicts
    man = json.loads((out / "manifest.json").read_text())
    checks = {r["path"]: r for r in json.loads(check_json.read_text())}
    rendered = {m["path"]: m for m in man["models"]}
    assert {d["path"]: d["reason"] for d in man["rejected"]} == \
        {p: r["reason"] for p, r in checks.items() if not r["ok"]}
    assert set(rendered) == {p for p, r in checks.items() if r["ok"]}
    for p, m in rendered.items():
        assert m["frame"] == checks[p]["frame"] and m["morphs"] == checks[p]["morphs"], p


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS")) / 1024


@pytest.mark.slow
def test_memory_stays_flat_over_a_large_collection(tmp_path, monkeypatch):
    """120 models (hard links of one sample under many names) checked in this process: the
    resident memory after the 20th and after the last model differ by little."""
    from dataset.collection import CheckSettings, check_collection
    from renderer.samples import write_samples

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src = write_samples(tmp_path / "src", count=1, seed=2)[0].parent
    root = tmp_path / "many"
    for i in range(120):
        for f in src.rglob("*"):
            if f.is_file():
                dest = root / f"m{i:03d}" / f.relative_to(src)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.link(f, dest)
    rss = []
    for n, c in enumerate(check_collection(CheckSettings(root)), 1):
        assert c.ok, c.reason
        if n in (20, 120):
            rss.append(_rss_mb())
    assert len(rss) == 2 and rss[1] - rss[0] < 60, rss
