"""The learning check's held-out characters (bench/heldout.py, bench/learning_split.json) and its
per-character table (bench/per_character.py): a test character never reaches training, whatever is
added to the folder; the shipped split names usable characters of several families; the pooled
figures and the table are what the rows say."""
from __future__ import annotations

import json
import sys

import pytest

from conftest import REPO, real_model_paths, real_model_verdict

sys.path.insert(0, str(REPO / "bench"))
from heldout import HELD_OUT_FILE, full_split, load_held_out, write_split_file  # noqa: E402
from per_character import markdown_table, pooled  # noqa: E402


def _mesh(shape: str, topology: str = "") -> dict:
    return dict(vertices=10, triangles=5, shape=shape, topology=topology or shape + "-t", probe=[])


def test_unlisted_models_train_and_copies_of_a_held_out_mesh_follow_it():
    held = {"char_a": "test", "char_b": "validation"}
    checks = [dict(path="char_a/a.pmx", ok=True, mesh=_mesh("A")),
              dict(path="char_b/b.pmd", ok=True, mesh=_mesh("B")),
              dict(path="other/x.pmx", ok=True, mesh=_mesh("X")),
              dict(path="new_folder/a_copy.pmx", ok=True, mesh=_mesh("A")),      # same mesh as the test one
              dict(path="new_folder/b_edit.pmx", ok=True, mesh=_mesh("B")),
              dict(path="broken/z.pmx", ok=False, mesh=None)]
    table = full_split(checks, held)
    assert table == {"train": ["other/x.pmx"], "validation": ["char_b/b.pmd", "new_folder/b_edit.pmx"],
                     "test": ["char_a/a.pmx", "new_folder/a_copy.pmx"]}
    # a mesh held out as both: test wins, so no test character can be validated on or trained on
    checks.append(dict(path="char_b/a_again.pmx", ok=True, mesh=_mesh("A")))
    assert "char_b/a_again.pmx" in full_split(checks, held)["test"]


def test_a_held_out_file_lists_no_training_and_names_only_usable_models(tmp_path):
    from dataset.errors import DatasetError

    bad = tmp_path / "held.json"
    bad.write_text(json.dumps({"train": ["x"], "test": ["y"]}))
    with pytest.raises(DatasetError, match="every other model trains"):
        load_held_out(bad)
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps({"test": ["gone"]}))
    check = tmp_path / "check.json"
    check.write_text(json.dumps([dict(path="here/m.pmx", ok=True, mesh=_mesh("M"))]))
    with pytest.raises(DatasetError, match="no usable model .* for gone"):
        write_split_file(tmp_path, check, tmp_path / "split.json", ok)


def test_the_shipped_held_out_characters_on_the_real_collection(shared_models):
    """bench/learning_split.json on ../shared/models: at least 6 test characters and 2 validation
    ones, each a usable model; PMD and PMX among the test ones; no training model shares a mesh with
    a held-out one (the split file's table, made from the real verdicts)."""
    held = load_held_out(HELD_OUT_FILE)
    checks = [dict(path=v.rel_path, ok=v.ok, mesh=v.mesh) for v in map(real_model_verdict, real_model_paths())]
    table = full_split(checks, held)
    names = {split: {n for n, s in held.items() if s == split} for split in ("validation", "test")}
    assert len(names["test"]) >= 6 and len(names["validation"]) >= 2
    for split, wanted in names.items():
        for n in wanted:
            assert any(rel == n or rel.startswith(n + "/") for rel in table[split]), (n, split)
    assert {rel.rsplit(".", 1)[-1].lower() for rel in table["test"]} == {"pmd", "pmx"}
    from dataset.discover import mesh_groups

    usable = {c["path"]: c["mesh"] for c in checks if c["ok"]}
    for group in mesh_groups(usable):
        splits = {s for s, rels in table.items() for rel in group if rel in rels}
        assert len(splits) == 1, group
    assert len(table["train"]) >= 20


def _row(split, model, n, m_l1, i_l1, rmse, irmse, ssim, issim, eyes):
    return dict(split=split, model=model, examples=n, morpher_region_l1=m_l1, identity_region_l1=i_l1,
                morpher_ratio=m_l1 / i_l1, poser_rmse=rmse, identity_rmse=irmse, poser_ssim=ssim,
                identity_ssim=issim, eye_side_share=eyes)


def test_pooled_figures_weigh_characters_by_examples_and_name_each_check():
    rows = [_row("test", "a/a.pmx", 30, 0.02, 0.10, 0.10, 0.20, 0.7, 0.5, 1.0),
            _row("test", "b/b.pmd", 10, 0.08, 0.10, 0.30, 0.20, 0.4, 0.5, 0.8)]
    total = pooled(rows)
    assert total["characters"] == 2 and total["examples"] == 40
    # (0.75 * 0.02 + 0.25 * 0.08) / 0.10
    assert total["morpher_ratio"] == pytest.approx(0.35)
    assert total["poser_rmse"] == pytest.approx(0.15) and total["eye_side_share"] == pytest.approx(0.95)
    checks = total["checks"]
    assert checks["pooled morpher ratio <= 0.5"]
    assert not checks["no character's morpher ratio above 0.7"]                      # b: 0.8
    assert not checks["full poser below the identity on RMSE and above it on SSIM for every character"]
    assert checks["each eye's change on its own side in >= 95% of rest images"]
    table = markdown_table(rows, total)
    assert len(table) == 2 + 2 + 1
    assert "| test | b/b.pmd | 10 | 0.800 |" in table[3] and "**0.350**" in table[-1]
