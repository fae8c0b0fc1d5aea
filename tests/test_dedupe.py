"""Same mesh in several folders -> one split: fingerprints, the union rule, real models."""
from __future__ import annotations

import json

import numpy as np
import pytest

from cli import main
from dataset.collection import collection_cache_dir
from dataset.discover import assign_splits, mesh_groups, merge_units, same_mesh, split_units
from dataset.modelcheck import VALIDATION_VERSION, mesh_fingerprint


def _mesh(seed: int = 0, n: int = 2000):
    rng = np.random.default_rng(seed)
    pos = rng.normal(size=(n, 3)).astype(np.float32) * [4, 10, 3]
    tri = rng.integers(0, n, size=(3 * n, 3)).astype(np.uint32)
    return pos.astype(np.float32), tri


# ------------------------------------------------------------------------------ fingerprint

def test_fingerprint_ignores_order_duplicates_scale_and_translation():
    pos, tri = _mesh()
    fp = mesh_fingerprint(pos, tri)
    assert fp["vertices"] == 2000 and fp["triangles"] == 6000 and len(fp["probe"]) == 64
    # faces reordered and rotated (a material split / re-sorted material order)
    perm = np.random.default_rng(1).permutation(len(tri))
    fp2 = mesh_fingerprint(pos, np.roll(tri[perm], 1, axis=1))
    assert fp2["shape"] == fp["shape"] and fp2["topology"] == fp["topology"]
    # vertices reordered and some duplicated (a split at a UV seam): same shape
    vperm = np.random.default_rng(2).permutation(len(pos))
    pos3 = np.concatenate([pos[vperm], pos[:50]])
    fp3 = mesh_fingerprint(pos3, tri)
    assert fp3["shape"] == fp["shape"] and fp3["topology"] != fp["topology"]
    assert same_mesh(fp, fp3)
    # the whole model scaled (a unit conversion) and moved: same shape
    fp4 = mesh_fingerprint(pos * np.float32(0.5) + np.float32(3.0), tri)
    assert fp4["shape"] == fp["shape"] and same_mesh(fp, fp4)
    # JSON round trip (the validation cache) keeps it comparable
    assert same_mesh(json.loads(json.dumps(fp)), fp)
    # degenerate input gives empty hashes, never a match
    empty = mesh_fingerprint(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint32))
    assert empty["shape"] == "" and not same_mesh(empty, empty) and not same_mesh(None, fp)


def test_edited_variant_is_same_mesh_but_another_character_is_not():
    pos, tri = _mesh()
    fp = mesh_fingerprint(pos, tri)
    edited = pos.copy()
    edited[:60] += np.float32(2.0)          # 3 % of the vertices moved (a different skirt, say)
    fe = mesh_fingerprint(edited, tri)
    assert fe["shape"] != fp["shape"] and fe["topology"] == fp["topology"]
    assert same_mesh(fp, fe)
    # same topology, every vertex somewhere else (a generator's other character)
    other = pos * np.float32([1.2, 0.9, 1.1])
    fo = mesh_fingerprint(other, tri)
    assert fo["topology"] == fp["topology"] and not same_mesh(fp, fo)
    # a different mesh altogether
    assert not same_mesh(fp, mesh_fingerprint(*_mesh(5)))


# ------------------------------------------------------------------------------ union rule

def test_mesh_groups_are_transitive_and_cheap_keys_only():
    pos, tri = _mesh()
    a = mesh_fingerprint(pos, tri)
    moved = pos.copy()
    moved[:40] += np.float32(1.5)
    b = mesh_fingerprint(moved, tri)                      # edited variant of a
    c = mesh_fingerprint(moved[::-1].copy(), tri)         # b with vertices reversed: b's shape
    d = mesh_fingerprint(*_mesh(9))                       # unrelated
    groups = mesh_groups({"X/a.pmd": a, "Y/b.pmx": b, "Z/c.pmx": c, "W/d.pmx": d, "V/e.pmx": None})
    assert groups == [["X/a.pmd", "Y/b.pmx", "Z/c.pmx"]]


def test_union_of_sources_sharing_a_mesh():
    rels = ["A/1.pmx", "A/2.pmx", "B/1.pmd", "C/x.pmx", "D/y.pmx", "D/z.pmx", "E/q.pmx", "F/r.pmx"]
    groups = [["A/1.pmx", "B/1.pmd"], ["B/1.pmd", "D/z.pmx"], ["E/q.pmx", "F/r.pmx"]]
    units = split_units(rels, groups=groups)
    assert units == {"A/1.pmx": "A + B + D", "A/2.pmx": "A + B + D", "B/1.pmd": "A + B + D",
                     "D/y.pmx": "A + B + D", "D/z.pmx": "A + B + D", "C/x.pmx": "C",
                     "E/q.pmx": "E + F", "F/r.pmx": "E + F"}
    # the order of groups and of their members does not matter
    assert split_units(rels[::-1], groups=[g[::-1] for g in groups[::-1]]) == units
    # without groups: one unit per folder, as before
    assert set(split_units(rels).values()) == set("ABCDEF")
    sizes: dict[str, int] = {}
    for u in units.values():
        sizes[u] = sizes.get(u, 0) + 1
    by_unit = assign_splits(list(units.values()), (0.9, 0.05, 0.05), sizes)
    split_of = {r: by_unit[u] for r, u in units.items()}
    for g in groups:
        assert len({split_of[r] for r in g}) == 1
    assert set(split_of.values()) == {"train", "validation", "test"}
    assert split_of["A/1.pmx"] == "train"               # the big merged unit trains
    # merging may leave too few units: split_units goes one level deeper
    few = ["P/a/1.pmx", "P/b/1.pmx", "Q/c/1.pmx", "R/d/1.pmx"]
    deep = split_units(few, groups=[["P/a/1.pmx", "Q/c/1.pmx"], ["P/b/1.pmx", "R/d/1.pmx"]])
    assert len(set(deep.values())) < 3                   # cannot be helped: all one mesh family
    deep2 = split_units(few + ["S/e/1.pmx"], groups=[["P/a/1.pmx", "Q/c/1.pmx"]])
    assert deep2["P/a/1.pmx"] == deep2["Q/c/1.pmx"] and len(set(deep2.values())) == 3
    assert merge_units({"a": "u", "b": "v"}, [["a", "b"], ["c", "a"]]) == {"a": "u + v", "b": "u + v"}


# ------------------------------------------------------------------------------ real models

SAME = ("mmd_default_pmd/miku_v2.pmd", "mmd_default_pmd/miku_m.pmd", "animasa_miku_pmx_j3/index.pmx")


def test_real_models_same_mesh_one_split(shared_models, tmp_path, capsys):
    for rel in SAME:
        if not (shared_models / rel).is_file():
            pytest.skip(f"{rel} not in the shared models")
    out = tmp_path / "data"
    args = ["render", "--models", str(shared_models), "--out", str(out), "--count", "4",
            "--val-count", "2", "--test-count", "2", "--size", "16", "--aa", "0",
            "--shard-size", "8", "--group-size", "4", "--workers", "1", "-q"]
    assert main(args) == 0
    text = capsys.readouterr().out
    man = json.loads((out / "manifest.json").read_text())
    split_of = {m["path"]: m["split"] for m in man["models"]}
    assert len({split_of[r] for r in SAME}) == 1
    assert {m["split"] for m in man["models"]} == {"train", "validation", "test"}
    groups = [g["models"] for g in man["mesh_groups"]]
    assert sorted(SAME) in groups
    assert all(len(g["splits"]) == 1 for g in man["mesh_groups"])
    for g in groups:                                   # every group lies within one split
        assert len({split_of[r] for r in g}) == 1
    assert "mmd_default_pmd/miku.pmd" not in {r for g in groups for r in g}   # another mesh
    mesh = {m["path"]: m["mesh"] for m in man["models"]}
    assert mesh[SAME[0]]["shape"] == mesh[SAME[2]]["shape"]        # PMD and its PMX conversion
    assert mesh[SAME[0]]["topology"] == mesh[SAME[1]]["topology"]  # the edited variant
    assert "probe" not in mesh[SAME[0]]
    line = "same mesh: " + ", ".join(sorted(SAME))
    assert line in text
    # the validation cache holds the fingerprints under the current version
    vcache = json.loads((collection_cache_dir(shared_models) / "validation.json").read_text())
    assert all(f"|{VALIDATION_VERSION}|" in k and v.get("mesh") for k, v in vcache.items()
               if v.get("ok"))
    # inspect reports the groups
    assert main(["inspect", str(out), "--verify"]) == 0
    text = capsys.readouterr().out
    assert line in text and "verify: OK" in text
    # resume: the same command renders nothing, also over a manifest written before
    # mesh groups existed (an older thactl): the settings comparison ignores them
    assert main(args) == 0
    assert "rendered 0 examples" in capsys.readouterr().out
    old = json.loads((out / "manifest.json").read_text())
    old.pop("mesh_groups")
    for m in old["models"]:
        m.pop("mesh")
    (out / "manifest.json").write_text(json.dumps(old))
    (collection_cache_dir(shared_models) / "validation.json").unlink()    # recomputed, same result
    assert main(args) == 0
    assert "rendered 0 examples" in capsys.readouterr().out
    assert json.loads((out / "manifest.json").read_text())["mesh_groups"] == man["mesh_groups"]


def test_samples_have_no_same_mesh_group(tmp_path, capsys):
    """The built-in samples share a generator (two have one topology) but are different
    characters: none is grouped, so the sample splits are unchanged."""
    out = tmp_path / "s"
    assert main(["render", "--out", str(out), "--size", "16", "--aa", "0", "--count", "6",
                 "--val-count", "1", "--test-count", "1", "--workers", "1", "-q"]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["mesh_groups"] == []
    assert "same mesh" not in capsys.readouterr().out
    topo = [m["mesh"]["topology"] for m in man["models"]]
    assert len(set(topo)) < len(topo)                     # the case same_mesh must tell apart


def test_split_file_that_splits_a_mesh_is_flagged(shared_models, tmp_path, capsys, caplog):
    """A split file is followed as written, but a mesh it puts in two splits is reported
    (summary, log) and makes `inspect --verify` fail."""
    for rel in SAME:
        if not (shared_models / rel).is_file():
            pytest.skip(f"{rel} not in the shared models")
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["mmd_default_pmd", "mokou_pmd"],
                                 "validation": ["appearance_miku_pmx"],
                                 "test": ["animasa_miku_pmx_j3", "lowpoly_miku_gumi_pmd"]}))
    out = tmp_path / "data"
    assert main(["render", "--models", str(shared_models), "--out", str(out), "--count", "4",
                 "--val-count", "1", "--test-count", "1", "--size", "16", "--aa", "0",
                 "--workers", "1", "-q", "--split-file", str(split)]) == 0
    text = capsys.readouterr().out
    assert "WARNING: in train and test" in text
    assert any("same mesh in train and test" in r.getMessage() for r in caplog.records)
    man = json.loads((out / "manifest.json").read_text())
    bad = [g for g in man["mesh_groups"] if len(g["splits"]) > 1]
    assert [g["models"] for g in bad] == [sorted(SAME)] and bad[0]["splits"] == ["train", "test"]
    assert main(["inspect", str(out), "--verify"]) == 1
    assert "same mesh in two splits" in capsys.readouterr().out


def test_dedupe_keeps_the_first_model_of_each_group(shared_models, tmp_path, capsys):
    for rel in SAME:
        if not (shared_models / rel).is_file():
            pytest.skip(f"{rel} not in the shared models")
    out = tmp_path / "data"
    args = ["render", "--models", str(shared_models), "--out", str(out), "--count", "4",
            "--val-count", "1", "--test-count", "1", "--size", "16", "--aa", "0",
            "--workers", "1", "-q"]
    assert main(args + ["--dedupe"]) == 0
    capsys.readouterr()
    man = json.loads((out / "manifest.json").read_text())
    used = {m["path"] for m in man["models"]}
    rejected = {d["path"]: d["reason"] for d in man["rejected"]}
    assert "animasa_miku_pmx_j3/index.pmx" in used            # first of its group by path
    for rel in ("mmd_default_pmd/miku_m.pmd", "mmd_default_pmd/miku_v2.pmd"):
        assert rejected[rel] == "same mesh as animasa_miku_pmx_j3/index.pmx (--dedupe)"
    for g in man["mesh_groups"]:
        assert len(set(g["models"]) & used) == 1
    assert man["request"]["dedupe"] is True
    # the option is a setting: the same OUT without it is refused
    assert main(args) == 1
    assert "dedupe" in capsys.readouterr().err
