"""Morph evaluation and the face rig: which morphs close which eye, open the mouth, which
bones are the neck.

* `flatten_morph_weights(model, weights)`: group and flip morphs expand into their
  members with multiplied weights (nested groups recurse; a morph already on the
  current path is skipped, which cuts loops; depth is capped); impulse morphs are
  dropped; the result maps leaf morphs (vertex, UV, bone, material) to weights.
* `resolve_face_rig(model, override)`: candidates are found by name through an alias
  table (names are NFKC-normalised first, so half-width ｳｨﾝｸ and full-width ２/Ｌ
  match, and ウインク is read as ウィンク; English names in `name_en` count too), but
  WHICH eye a morph closes is decided by geometry: each candidate is evaluated at
  weight 1 through the real poser (so group and bone morphs count), and the side is
  the displacement-weighted share of moved vertices on +x (the character's LEFT) vs
  -x, measured from the head bone's x. A candidate with more than 75 % of its
  displacement on one side is a one-eye morph for that side; otherwise it is not.
  Plain winks are preferred to "2" variants, which are preferred to smile winks
  (笑/smile in the name). The rig uses one-eye morphs only when both sides are found;
  otherwise the both-eyes morph (まばたき/blink) closes both eyes at max(left, right).
* `load_override(model_path, overrides_file)`: the per-model JSON override.
"""
from __future__ import annotations

import json
import logging
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from renderer.errors import ModelLoadError
from renderer.model import MMDModel, MorphKind

log = logging.getLogger("thactl.loader")

MAX_GROUP_DEPTH = 32
SIDE_THRESHOLD = 0.75          # share of displacement on one side for a one-eye morph


def flatten_morph_weights(model: MMDModel, weights: dict[int, float]) -> dict[int, float]:
    """Expand group/flip morphs; returns {leaf morph index: total weight} (zeros dropped)."""
    morphs = model.morphs
    n = len(morphs)
    out: dict[int, float] = {}

    def visit(i: int, w: float, path: tuple[int, ...]) -> None:
        if w == 0.0 or not 0 <= i < n:
            return
        m = morphs[i]
        if m.kind in (MorphKind.GROUP, MorphKind.FLIP):
            if i in path or len(path) >= MAX_GROUP_DEPTH:
                return                       # loop (or absurd nesting): cut here
            for j, cw in zip(m.indices.tolist(), m.weights.tolist()):
                visit(j, w * cw, path + (i,))
        elif m.kind == MorphKind.IMPULSE:
            return
        else:
            out[i] = out.get(i, 0.0) + w

    for i, w in weights.items():
        visit(int(i), float(w), ())
    return {i: w for i, w in out.items() if w != 0.0}


# ---------------------------------------------------------------- names

def normalise_name(name: str) -> str:
    """NFKC, lower case, ウインク→ウィンク, no spaces/underscores/dots."""
    s = unicodedata.normalize("NFKC", name or "").lower()
    s = s.replace("ウインク", "ウィンク").replace("ういんく", "ウィンク").replace("うぃんく", "ウィンク")
    for ch in " _-.・\u3000":
        s = s.replace(ch, "")
    return s


_SMILE_MARKS = ("笑", "smile", "にこ", "ニコ", "happy")
BOTH_EYES_NAMES = ("まばたき", "瞬き", "blink", "目閉じ", "目とじ", "eyeclose", "eyesclosed",
                   "まばたき2")
MOUTH_NAMES = ("あ", "ア", "a", "aa", "mouth_a", "mouth a", "あ2", "口あけ", "口開け",
               "mouthopen")
NECK_ROOT_NAMES = ("首", "neck")
NECK_TIP_NAMES = ("頭", "head")


def _is_wink(n: str) -> bool:
    return "ウィンク" in n or "wink" in n


def _wink_rank(n: str) -> int:
    """0 = plain wink, 1 = '2' variant, 2 = smile wink."""
    if any(s in n for s in _SMILE_MARKS):
        return 2
    if "2" in n:
        return 1
    return 0


def _names(model_obj) -> tuple[str, str]:
    return normalise_name(model_obj.name), normalise_name(model_obj.name_en)


# ---------------------------------------------------------------- rig

@dataclass
class FaceRig:
    left_eye: int | None               # morph closing the character's LEFT eye (+x side)
    right_eye: int | None              # morph closing the character's RIGHT eye (-x side)
    both_eyes: int | None              # morph closing both eyes (fallback)
    mouth: int | None                  # morph opening the mouth (あ)
    neck_root: int                     # bone 首 (rotated about z), -1 = missing
    neck_tip: int                      # bone 頭 (rotated about x and y), -1 = missing
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)   # e.g. override names not found
    override: dict | None = None       # the override used (chin_y, head_top_y, frame, ...)
    sides: dict[int, float] = field(default_factory=dict)  # morph → share on +x (left)

    @property
    def has_one_eye_morphs(self) -> bool:
        return self.left_eye is not None and self.right_eye is not None

    def problems(self) -> list[str]:
        """Why this model cannot be used for data; empty = usable."""
        out = list(self.errors)
        if self.neck_root < 0:
            out.append("no neck root bone (首 / neck)")
        if self.neck_tip < 0:
            out.append("no neck tip bone (頭 / head)")
        if not self.has_one_eye_morphs and self.both_eyes is None:
            out.append("no eye-closing morph (no wink pair, no まばたき / blink)")
        if self.mouth is None:
            out.append("no mouth-open morph (あ)")
        return out

    def morph_weights(self, pose6) -> dict[int, float]:
        p = np.asarray(pose6, float).reshape(-1)
        le, re, mo = float(p[3]), float(p[4]), float(p[5])
        out: dict[int, float] = {}

        def add(i, w):
            if i is not None and w != 0.0:
                out[i] = out.get(i, 0.0) + w

        if self.has_one_eye_morphs:
            add(self.left_eye, le)
            add(self.right_eye, re)
        else:
            add(self.both_eyes, max(le, re))
        add(self.mouth, mo)
        return out


def morph_side(model: MMDModel, index: int, poser=None, x_ref: float = 0.0):
    """(share of displacement on +x, total displacement) of morph `index` at weight 1."""
    if poser is None:
        from renderer.posing import ModelPoser
        poser = ModelPoser(model, None)
    mesh = poser.pose_parts({index: 1.0})
    with np.errstate(all="ignore"):
        d = np.linalg.norm(mesh.positions.astype(np.float64) - poser.rest_positions, axis=1)
    total = float(d.sum())
    if not np.isfinite(total) or total <= 1e-9:     # moves nothing (or absurdly: odd file)
        return 0.5, 0.0
    x = poser.rest_positions[:, 0] - x_ref
    left = float(d[x > 0].sum()) + 0.5 * float(d[x == 0].sum())
    return left / total, total


def _find_alias(names: list, names_en: list, aliases) -> int | None:
    """Index of the first entry named like the first alias that matches (Japanese names
    first, then English names); entries are already normalised, None never matches."""
    al = [normalise_name(a) for a in aliases]
    for table in (names, names_en):
        for a in al:
            if a in table:
                return table.index(a)
    return None


def _find_bone(model: MMDModel, aliases) -> int:
    i = _find_alias([normalise_name(b.name) for b in model.bones],
                    [normalise_name(b.name_en) for b in model.bones], aliases)
    return -1 if i is None else i


def _find_morph(model: MMDModel, aliases) -> int | None:
    keep = [m.kind != MorphKind.IMPULSE for m in model.morphs]
    return _find_alias([normalise_name(m.name) if k else None for m, k in zip(model.morphs, keep)],
                       [normalise_name(m.name_en) if k else None for m, k in zip(model.morphs, keep)],
                       aliases)


def resolve_face_rig(model: MMDModel, override: dict | None = None) -> FaceRig:
    """Find the eye/mouth morphs and the neck bones of `model` (see module docstring)."""
    from renderer.posing import ModelPoser

    override = dict(override or {})
    notes: list[str] = []
    errors: list[str] = []

    def morph_by_name(key):
        name = override[key]
        if name is None:
            return None
        i = model.morph_index(str(name))
        if i < 0:
            hits = [j for j, m in enumerate(model.morphs) if m.name_en == name]
            i = hits[0] if hits else -1
        if i < 0:
            errors.append(f"override {key}: no morph named {name!r}")
            return None
        return i

    def bone_by_name(key, aliases):
        if key in override and override[key] is not None:
            i = model.bone_index(str(override[key]))
            if i < 0:
                errors.append(f"override {key}: no bone named {override[key]!r}")
            return i
        return _find_bone(model, aliases)

    neck_root = bone_by_name("neck_root", NECK_ROOT_NAMES)
    neck_tip = bone_by_name("neck_tip", NECK_TIP_NAMES)
    x_ref = float(model.bones[neck_tip].position[0]) if neck_tip >= 0 else 0.0

    poser = ModelPoser(model, None)
    sides: dict[int, float] = {}

    def side_of(i):
        if i not in sides:
            share, total = morph_side(model, i, poser, x_ref)
            sides[i] = share if total > 0 else float("nan")
        return sides[i]

    # ---- winks: candidates by name, side by geometry
    cands = []
    for i, m in enumerate(model.morphs):
        if m.kind == MorphKind.IMPULSE:
            continue
        n, ne = _names(m)
        if _is_wink(n) or _is_wink(ne):
            rank = _wink_rank(n if _is_wink(n) else ne)
            cands.append((rank, i))
    cands.sort()
    left = right = None
    for rank, i in cands:
        share = side_of(i)
        mname = model.morphs[i].name
        if np.isnan(share):
            notes.append(f"wink candidate {mname!r} moves nothing (skipped)")
            continue
        if share >= SIDE_THRESHOLD:
            if left is None:
                left = i
        elif share <= 1.0 - SIDE_THRESHOLD:
            if right is None:
                right = i
        else:
            notes.append(f"wink candidate {mname!r} moves both sides ({share:.0%} on +x; "
                         "not a one-eye morph)")
    both = _find_morph(model, BOTH_EYES_NAMES)
    mouth = _find_morph(model, MOUTH_NAMES)

    # ---- override wins
    for key in ("left_eye", "right_eye", "both_eyes", "mouth"):
        if key in override:
            val = morph_by_name(key)
            if key == "left_eye":
                left = val
            elif key == "right_eye":
                right = val
            elif key == "both_eyes":
                both = val
            else:
                mouth = val
            if val is not None and key in ("left_eye", "right_eye"):
                share = side_of(val)
                want_left = key == "left_eye"
                if not np.isnan(share) and (share > 0.5) != want_left:
                    notes.append(f"override {key}={model.morphs[val].name!r} moves mostly the "
                                 f"{'left' if share > 0.5 else 'right'} side (+x share "
                                 f"{share:.0%}); kept as given")

    if (left is None) != (right is None):
        found = left if left is not None else right
        notes.append(f"only one side's wink found ({model.morphs[found].name!r}); "
                     "using the both-eyes morph instead")
        left = right = None
    if left is not None and left == right:
        left = right = None
    if both is not None and both_name_is_one_sided(side_of(both)):
        notes.append(f"both-eyes morph {model.morphs[both].name!r} moves mostly one side")
    if left is not None:
        notes.append(f"left eye: {model.morphs[left].name!r} ({side_of(left):.0%} of its "
                     "displacement on +x)")
        notes.append(f"right eye: {model.morphs[right].name!r} ({1 - side_of(right):.0%} of "
                     "its displacement on -x)")
    rig = FaceRig(left_eye=left, right_eye=right, both_eyes=both, mouth=mouth,
                  neck_root=neck_root, neck_tip=neck_tip, notes=notes, errors=errors,
                  override=override or None, sides=sides)
    return rig


def both_name_is_one_sided(share: float) -> bool:
    return not np.isnan(share) and (share >= SIDE_THRESHOLD or share <= 1 - SIDE_THRESHOLD)


# ---------------------------------------------------------------- overrides

OVERRIDE_KEYS = ("left_eye", "right_eye", "both_eyes", "mouth", "neck_root", "neck_tip",
                 "chin_y", "head_top_y", "frame", "exclude")


def _check_override(d, where: str) -> dict:
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
        out.update(_check_override(_read_json(beside), str(beside)))
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
                out.update(_check_override(val, f"{of} [{key}]"))
                found = True
                break
    return out if found else None


# ---------------------------------------------------------------- report (thactl info)

def info_lines(model: MMDModel, rig: FaceRig) -> list[str]:
    """Human-readable summary of a loaded model and its face rig (for `thactl info`)."""
    from collections import Counter

    from renderer.model import SkinningType

    def mname(i):
        return "-" if i is None else f"{model.morphs[i].name} (#{i})"

    def bname(i):
        return "MISSING" if i is None or i < 0 else f"{model.bones[i].name} (#{i})"

    kinds = Counter(MorphKind(m.kind).name.lower() for m in model.morphs)
    types, counts = np.unique(model.skin_type, return_counts=True)
    skins = {SkinningType(int(t)).name: int(c) for t, c in zip(types, counts)}
    lines = [
        f"file:      {model.path}",
        f"format:    {model.format.value.upper()} {model.version:.1f}   name: {model.name}"
        + (f" / {model.name_en}" if model.name_en else ""),
        f"counts:    {model.vertex_count} vertices, {model.triangle_count} triangles, "
        f"{len(model.materials)} materials, {len(model.bones)} bones, {len(model.morphs)} "
        f"morphs, {model.extra_uvs.shape[0]} additional UVs",
        "skinning:  " + ", ".join(f"{k} {v}" for k, v in sorted(skins.items())),
        "morphs:    " + (", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) or "none"),
    ]

    def side(i):
        s = rig.sides.get(i)
        return "" if s is None or np.isnan(s) else f"  [{s:.0%} of displacement on +x]"

    if rig.has_one_eye_morphs:
        lines.append(f"left eye:  {mname(rig.left_eye)}  closes the character's LEFT eye"
                     f"{side(rig.left_eye)}")
        lines.append(f"right eye: {mname(rig.right_eye)}  closes the character's RIGHT eye"
                     f"{side(rig.right_eye)}")
    else:
        lines.append("one-eye:   none (both eyes close together; data uses left_eye = right_eye)")
    lines.append(f"both eyes: {mname(rig.both_eyes)}")
    lines.append(f"mouth:     {mname(rig.mouth)}")
    lines.append(f"neck root: {bname(rig.neck_root)}   neck tip: {bname(rig.neck_tip)}")
    for n in rig.notes:
        if not n.startswith(("left eye:", "right eye:")):      # already shown above
            lines.append(f"note:      {n}")
    for w in model.warnings:
        lines.append(f"warning:   {w}")
    probs = rig.problems()
    lines.append("status:    " + ("OK" if not probs else "NOT USABLE: " + "; ".join(probs)))
    return lines
