"""The face rig: which morphs close which eye, open the mouth, which bones are the neck.

`resolve_face_rig(model, override)`: candidates are found by name through an alias
table (names are NFKC-normalised first, so half-width ｳｨﾝｸ and full-width ２/Ｌ match,
and ウインク is read as ウィンク; English names in `name_en` count too), but WHICH eye
a morph closes is decided by geometry: each candidate is evaluated at weight 1
through the real poser (so group and bone morphs count), and the side is the
displacement-weighted share of moved vertices on +x (the character's LEFT) vs -x,
measured from the head bone's x. A candidate with more than `SIDE_THRESHOLD` of its
displacement on one side is a one-eye morph for that side; otherwise it is not.
Plain winks are preferred to "2" variants, which are preferred to smile winks
(笑/smile in the name). The rig uses one-eye morphs only when both sides are found;
otherwise the both-eyes morph (まばたき/blink) closes both eyes at max(left, right).
Override keys (renderer.overrides) name morphs and bones and win over the search.

`info_lines(model, rig)` is the human-readable report of `thactl info`.
"""
from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from renderer.model import MMDModel, MorphKind, SkinningType
from renderer.posing import ModelPoser

SIDE_THRESHOLD = 0.75          # share of displacement on one side for a one-eye morph

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
_MORPH_OVERRIDE_KEYS = ("left_eye", "right_eye", "both_eyes", "mouth")


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


def find_morph(model: MMDModel, aliases) -> int | None:
    """The first morph (impulse morphs aside) named like the first alias that matches, or None."""
    return _find_morph(model, aliases)


def find_bone(model: MMDModel, aliases) -> int:
    """The first bone named like the first alias that matches, or -1."""
    return _find_bone(model, aliases)


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
        """{morph index: weight} for a pose vector's eye and mouth values."""
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


def both_name_is_one_sided(share: float) -> bool:
    return not np.isnan(share) and (share >= SIDE_THRESHOLD or share <= 1 - SIDE_THRESHOLD)


class _Sides:
    """Share of each morph's displacement on +x (from the head bone's x), computed once
    per morph; NaN for a morph that moves nothing."""

    def __init__(self, model: MMDModel, x_ref: float):
        self.model, self.x_ref = model, x_ref
        self.poser = ModelPoser(model, None)
        self.shares: dict[int, float] = {}

    def __call__(self, i: int) -> float:
        if i not in self.shares:
            share, total = morph_side(self.model, i, self.poser, self.x_ref)
            self.shares[i] = share if total > 0 else float("nan")
        return self.shares[i]


def resolve_face_rig(model: MMDModel, override: dict | None = None) -> FaceRig:
    """Find the eye/mouth morphs and the neck bones of `model` (see module docstring)."""
    override = dict(override or {})
    notes: list[str] = []
    errors: list[str] = []
    neck_root = _override_or_find_bone(model, override, "neck_root", NECK_ROOT_NAMES, errors)
    neck_tip = _override_or_find_bone(model, override, "neck_tip", NECK_TIP_NAMES, errors)
    side_of = _Sides(model, float(model.bones[neck_tip].position[0]) if neck_tip >= 0 else 0.0)
    left, right = _winks_by_geometry(model, side_of, notes)
    chosen = {"left_eye": left, "right_eye": right,
              "both_eyes": _find_morph(model, BOTH_EYES_NAMES),
              "mouth": _find_morph(model, MOUTH_NAMES)}
    _apply_morph_overrides(model, override, chosen, side_of, notes, errors)
    left, right = _wink_pair(model, chosen["left_eye"], chosen["right_eye"], notes)
    both = chosen["both_eyes"]
    if both is not None and both_name_is_one_sided(side_of(both)):
        notes.append(f"both-eyes morph {model.morphs[both].name!r} moves mostly one side")
    if left is not None:
        notes.append(f"left eye: {model.morphs[left].name!r} ({side_of(left):.0%} of its "
                     "displacement on +x)")
        notes.append(f"right eye: {model.morphs[right].name!r} ({1 - side_of(right):.0%} of "
                     "its displacement on -x)")
    return FaceRig(left_eye=left, right_eye=right, both_eyes=both, mouth=chosen["mouth"],
                   neck_root=neck_root, neck_tip=neck_tip, notes=notes, errors=errors,
                   override=override or None, sides=side_of.shares)


def _override_or_find_bone(model: MMDModel, override: dict, key: str, aliases,
                           errors: list[str]) -> int:
    """The bone the override names under `key` (-1 and an error when missing), else the
    first bone named like `aliases`."""
    if key in override and override[key] is not None:
        i = model.bone_index(str(override[key]))
        if i < 0:
            errors.append(f"override {key}: no bone named {override[key]!r}")
        return i
    return _find_bone(model, aliases)


def _winks_by_geometry(model: MMDModel, side_of: _Sides, notes: list[str]):
    """(left, right): the best-ranked wink candidate closing mostly each side, or None."""
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
    return left, right


def _override_morph(model: MMDModel, override: dict, key: str, errors: list[str]) -> int | None:
    """The morph the override names under `key` (by name, then by English name); None for
    null or (with an error) for a name no morph has."""
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


def _apply_morph_overrides(model: MMDModel, override: dict, chosen: dict, side_of: _Sides,
                           notes: list[str], errors: list[str]) -> None:
    """Replace `chosen[key]` by the override's morph for each morph key it has; a one-eye
    override that moves mostly the other side is kept, with a note."""
    for key in _MORPH_OVERRIDE_KEYS:
        if key not in override:
            continue
        val = chosen[key] = _override_morph(model, override, key, errors)
        if val is not None and key in ("left_eye", "right_eye"):
            share = side_of(val)
            want_left = key == "left_eye"
            if not np.isnan(share) and (share > 0.5) != want_left:
                notes.append(f"override {key}={model.morphs[val].name!r} moves mostly the "
                             f"{'left' if share > 0.5 else 'right'} side (+x share "
                             f"{share:.0%}); kept as given")


def _wink_pair(model: MMDModel, left, right, notes: list[str]):
    """(left, right) when both are set and differ, else (None, None) (one side alone is
    noted: the both-eyes morph is used instead)."""
    if (left is None) != (right is None):
        found = left if left is not None else right
        notes.append(f"only one side's wink found ({model.morphs[found].name!r}); "
                     "using the both-eyes morph instead")
        left = right = None
    if left is not None and left == right:
        left = right = None
    return left, right


# ---------------------------------------------------------------- report (thactl info)

def info_lines(model: MMDModel, rig: FaceRig) -> list[str]:
    """Human-readable summary of a loaded model and its face rig (for `thactl info`)."""
    lines = _model_summary_lines(model)

    def mname(i):
        return "-" if i is None else f"{model.morphs[i].name} (#{i})"

    def bname(i):
        return "MISSING" if i is None or i < 0 else f"{model.bones[i].name} (#{i})"

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


def _model_summary_lines(model: MMDModel) -> list[str]:
    """File, format, counts, skinning types and morph kinds of `model`."""
    kinds = Counter(MorphKind(m.kind).name.lower() for m in model.morphs)
    types, counts = np.unique(model.skin_type, return_counts=True)
    skins = {SkinningType(int(t)).name: int(c) for t, c in zip(types, counts)}
    return [
        f"file:      {model.path}",
        f"format:    {model.format.value.upper()} {model.version:.1f}   name: {model.name}"
        + (f" / {model.name_en}" if model.name_en else ""),
        f"counts:    {model.vertex_count} vertices, {model.triangle_count} triangles, "
        f"{len(model.materials)} materials, {len(model.bones)} bones, {len(model.morphs)} "
        f"morphs, {model.extra_uvs.shape[0]} additional UVs",
        "skinning:  " + ", ".join(f"{k} {v}" for k, v in sorted(skins.items())),
        "morphs:    " + (", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) or "none"),
    ]
