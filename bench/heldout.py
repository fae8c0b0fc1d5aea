"""The learning check's held-out characters: bench/learning_split.json names the validation and test
characters (model folders or files under the models folder); every other usable model trains.

`full_split` turns that short file into a complete split table for `thactl render --split-file`, for
whatever the folder holds: a model not named there trains, except a copy of a held-out character's
mesh found anywhere in the folder (dataset.discover.mesh_groups: a .pmd and its .pmx conversion, a
re-textured or edited copy), which joins that character's split. So a test character never reaches
training, whatever is added to the folder.
"""
from __future__ import annotations

import json
from pathlib import Path

HELD_OUT_FILE = Path(__file__).resolve().parent / "learning_split.json"


def load_held_out(path: Path = HELD_OUT_FILE) -> dict[str, str]:
    """{name: "validation" | "test"} from a held-out file (the split-file format, without train)."""
    from dataset.discover import load_split_file
    from dataset.errors import DatasetError

    table = load_split_file(path)
    if "train" in table.values():
        raise DatasetError(f"{path}: list only validation and test characters; every other model trains")
    return table


def full_split(checks: list[dict], held_out: dict[str, str]) -> dict[str, list[str]]:
    """{"train": [...], "validation": [...], "test": [...]} of the usable models among `checks`
    (records of `thactl models check --json`: path, ok, mesh). A held-out name covers the models
    under it; a model sharing a mesh with a held-out one takes its split (test before validation)."""
    from dataset.discover import mesh_groups, split_from_table

    usable = {c["path"]: c.get("mesh") for c in checks if c.get("ok")}
    split = {rel: split_from_table(rel, held_out) or "train" for rel in usable}
    for group in mesh_groups(usable):
        held = {split[rel] for rel in group} - {"train"}
        if held:
            keep = "test" if "test" in held else "validation"
            for rel in group:
                split[rel] = keep
    out: dict[str, list[str]] = {"train": [], "validation": [], "test": []}
    for rel in sorted(split):
        out[split[rel]].append(rel)
    return out


def write_split_file(models: Path, check_json: Path, out: Path, held_out_file: Path = HELD_OUT_FILE) -> dict:
    """The complete split table for `models` (from its `models check --json` records) written to
    `out`; returns it. Fails with a one-line DatasetError when a held-out name matches no usable model."""
    from dataset.errors import DatasetError

    held_out = load_held_out(held_out_file)
    checks = json.loads(check_json.read_text(encoding="utf-8"))
    table = full_split(checks, held_out)
    held = set(table["validation"]) | set(table["test"])
    missing = [n for n in held_out if not any(rel == n or rel.startswith(n + "/") for rel in held)]
    if missing:
        raise DatasetError(f"{held_out_file}: no usable model in {models} for {', '.join(missing)}")
    out.write_text(json.dumps(table, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return table
