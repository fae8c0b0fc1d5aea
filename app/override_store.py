"""Writing a model's override from the model page: exactly the files `thactl render` and
`thactl preview` read (renderer.overrides.load_override).

Without `--overrides`, a model's override is `<model file>.thactl.json` beside the model; with
it, the entry for the model's path relative to the models folder in that JSON file. Edits are
merged into what the file already holds (a null value removes a key; an empty override removes
the entry or the file), checked with the loader's own rules, and written atomically.

Under a pose schema, `parameters` edits map schema parameters to morphs, merged name by name into the
override's `"parameters"` map (the format renderer.schema_rig reads): a morph name maps it to that
morph, null to none (the parameter is missing on purpose), "" removes the entry (found
automatically again). Only morph parameters of the page's schema, and only the model's own morphs.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .http import HttpError

EDITABLE_KEYS = ("left_eye", "right_eye", "both_eyes", "mouth", "chin_y", "head_top_y", "exclude",
                 "parameters")


def beside_file(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + ".thactl.json")


def _read_object(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise HttpError(409, f"{path.name}: not a readable JSON file ({e}); fix or remove it first") from None
    if not isinstance(data, dict):
        raise HttpError(409, f"{path.name}: must hold a JSON object; fix or remove it first")
    return data


def _clean_edits(edits) -> dict:
    if not isinstance(edits, dict) or not edits:
        raise HttpError(400, "'set' must be an object of override keys to values")
    unknown = sorted(set(edits) - set(EDITABLE_KEYS))
    if unknown:
        raise HttpError(400, f"not editable here: {', '.join(unknown)} (editable: {', '.join(EDITABLE_KEYS)})")
    for k, v in edits.items():
        if k in ("chin_y", "head_top_y"):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not abs(float(v)) < 1e6):
                raise HttpError(400, f"{k} must be a number (model units) or null")
        elif k == "parameters":
            continue                       # checked against the schema and the model: check_parameters
        elif v is not None and (not isinstance(v, str) or len(v) > 500):
            raise HttpError(400, f"{k} must be a string of at most 500 characters or null")
    return edits


def check_parameters(edits, schema, morphs: list[str] | None) -> dict:
    """The `parameters` edits {name: morph | null | ""} if every name is a morph parameter of
    `schema` and every morph one of the model's `morphs`; HttpError(400) naming the first that is not."""
    if schema is None:
        raise HttpError(400, "parameters: the page has no pose schema (start `thactl serve --schema NAME`)")
    if not isinstance(edits, dict) or not edits:
        raise HttpError(400, "parameters must be an object of schema parameter names to a morph name, "
                             "null (none) or \"\" (automatic)")
    kinds = {p.name: p.kind for p in schema.parameters}
    for name, morph in edits.items():
        if name not in kinds:
            raise HttpError(400, f"parameters: {schema.name} has no parameter {name[:80]!r}")
        if kinds[name] != "morph":
            raise HttpError(400, f"parameters: {name} is a {kinds[name]} parameter (it turns bones; "
                                 "only morph parameters take a morph)")
        if morph is not None and not isinstance(morph, str):
            raise HttpError(400, f"parameters: {name} must map to a morph name, null (none) or \"\" (automatic)")
        if morph and morph not in (morphs or ()):
            raise HttpError(400, f"parameters: {name}: the model has no morph named {morph[:80]!r}")
    return edits


def apply_edits(entry: dict, edits: dict) -> dict:
    out = dict(entry)
    for k, v in edits.items():
        if k == "parameters":
            _apply_parameters(out, v)
        elif v is None or (k == "exclude" and not str(v).strip()):
            out.pop(k, None)
        else:
            out[k] = float(v) if k in ("chin_y", "head_top_y") else v
    if "frame" in out and ("chin_y" in edits or "head_top_y" in edits):
        out.pop("frame")          # an explicit box would win over the new chin/top lines
    return out


def _apply_parameters(out: dict, edits: dict) -> None:
    """Merge parameter edits into `out["parameters"]` ("" removes an entry; an empty map goes)."""
    table = dict(out.get("parameters") or {})
    for name, morph in edits.items():
        if morph == "":
            table.pop(name, None)
        else:
            table[name] = morph
    if table:
        out["parameters"] = table
    else:
        out.pop("parameters", None)


def save_override(models_root: Path, overrides: Path | None, rel: str, model_path: Path,
                  edits, in_zip: bool = False, schema=None, morphs: list[str] | None = None) -> dict:
    """Merge `edits` into the model's override and write it atomically; returns
    {"file", "before", "after", "changed": {key: [old, new]}}. HttpError for a bad edit.
    `parameters` edits need the page's pose `schema` and the model's morph names (`morphs`)."""
    from renderer.errors import RendererError
    from renderer.overrides import check_override

    edits = _clean_edits(edits)
    if "parameters" in edits:
        check_parameters(edits["parameters"], schema, morphs)
    if in_zip:
        raise HttpError(400, "a model inside a zip archive cannot get an override (render looks "
                             "overrides up by the model's own file); unpack the archive to edit it")
    if overrides is not None:
        target, table = overrides, _read_object(overrides)
        before = table.get(rel) or {}
    else:
        target = beside_file(model_path)
        if not _inside(target, models_root):
            raise HttpError(403, "the override file would land outside the models folder")
        table, before = None, _read_object(target)
    if not isinstance(before, dict):
        raise HttpError(409, f"{target.name}: the entry for {rel} is not an object; fix it first")
    after = apply_edits(before, edits)
    try:
        check_override(after, str(target))
    except RendererError as e:
        raise HttpError(400, str(e)) from None
    try:
        _write(target, table, rel, after)
    except OSError as e:
        hint = "" if overrides is not None else "; start `thactl serve` with --overrides FILE instead"
        raise HttpError(409, f"cannot write {target.name} ({e.strerror or e}){hint}") from None
    changed = {k: [before.get(k), after.get(k)] for k in sorted(set(before) | set(after))
               if before.get(k) != after.get(k)}
    return {"file": str(target), "before": before, "after": after, "changed": changed}


def _write(target: Path, table: dict | None, rel: str, after: dict) -> None:
    """Write the override: the whole table (override-file mode) or the beside file, which is
    removed when the override became empty."""
    from core.atomicfile import write_json

    if table is not None:
        if after:
            table[rel] = after
        else:
            table.pop(rel, None)
        write_json(target, table)
    elif after:
        write_json(target, after)
    elif target.is_file():
        os.unlink(target)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.parent.resolve().relative_to(Path(root).resolve())
    except ValueError:
        return False
    return True
