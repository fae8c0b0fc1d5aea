"""Per-model override files: face-rig names and camera values that win over the estimates.

An override is a JSON object with keys from `OVERRIDE_KEYS`: `left_eye`, `right_eye`,
`both_eyes`, `mouth` (morph names or null), `neck_root`, `neck_tip` (bone names or null),
`chin_y`, `head_top_y` (numbers, model units), `frame` ([cx, cy, half], half > 0),
`exclude` (a reason to leave the model out, or null), `parameters` ({pose schema parameter:
morph name or null}: the morph a schema parameter drives, null for none; renderer.schema_rig).
`load_override` reads and checks them (renderer.errors.ModelLoadError, one line naming
the file, for anything else); renderer.face_rig applies the name keys and
renderer.framing the camera keys.
"""
from __future__ import annotations

import json
from pathlib import Path

from renderer.errors import ModelLoadError

OVERRIDE_KEYS = ("left_eye", "right_eye", "both_eyes", "mouth", "neck_root", "neck_tip",
                 "chin_y", "head_top_y", "frame", "exclude", "parameters")


def check_override(d, where: str) -> dict:
    if not isinstance(d, dict):
        raise ModelLoadError(f"{where}: override must be a JSON object")
    unknown = sorted(set(d) - set(OVERRIDE_KEYS))
    if unknown:
        raise ModelLoadError(f"{where}: unknown override key(s) {', '.join(unknown)} "
                             f"(allowed: {', '.join(OVERRIDE_KEYS)})")
    for k in ("left_eye", "right_eye", "both_eyes", "mouth", "neck_root", "neck_tip"):
        if k in d and d[k] is not None and not isinstance(d[k], str):
            raise ModelLoadError(f"{where}: {k} must be a name (string) or null")
    for k in ("chin_y", "head_top_y"):
        if k in d and not isinstance(d[k], (int, float)):
            raise ModelLoadError(f"{where}: {k} must be a number")
    if "exclude" in d and d["exclude"] is not None and not (isinstance(d["exclude"], str) and d["exclude"].strip()):
        raise ModelLoadError(f"{where}: exclude must be a reason (a non-empty string) or null")
    if "parameters" in d and not (isinstance(d["parameters"], dict) and all(
            isinstance(v, str) or v is None for v in d["parameters"].values())):
        raise ModelLoadError(f"{where}: parameters must map schema parameter names to morph names or null")
    if "frame" in d:
        f = d["frame"]
        if (not isinstance(f, list) or len(f) != 3
                or not all(isinstance(v, (int, float)) for v in f) or f[2] <= 0):
            raise ModelLoadError(f"{where}: frame must be [cx, cy, half] with half > 0")
    return dict(d)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ModelLoadError(f"{path}: cannot read override file ({e.strerror or e})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{path}: not valid JSON ({e})") from None


def load_override(model_path, overrides_file=None, models_root=None) -> dict | None:
    """The override for one model, or None.

    Sources, merged in this order (later keys win): `<model file>.thactl.json` beside the
    model; the entry for this model in `overrides_file`, a JSON object mapping model paths
    (relative to the models folder `models_root`, '/' separators; without `models_root`,
    an entry matches when the model path ends with it) to override objects.
    """
    model_path = Path(model_path)
    out: dict = {}
    found = False
    beside = model_path.with_name(model_path.name + ".thactl.json")
    if beside.is_file():
        out.update(check_override(_read_json(beside), str(beside)))
        found = True
    if overrides_file is not None:
        of = Path(overrides_file)
        table = _read_json(of)
        if not isinstance(table, dict):
            raise ModelLoadError(f"{of}: must be a JSON object mapping model paths to overrides")
        mp = model_path.as_posix()
        rel = None
        if models_root is not None:
            try:
                rel = model_path.resolve().relative_to(Path(models_root).resolve()).as_posix()
            except ValueError:
                rel = None
        for key, val in table.items():
            k = str(key).replace("\\", "/")
            while k.startswith("./"):
                k = k[2:]
            hit = (rel == k) if rel is not None else (mp == k or mp.endswith("/" + k))
            if hit:
                out.update(check_override(val, f"{of} [{key}]"))
                found = True
                break
    return out if found else None
