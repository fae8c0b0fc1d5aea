"""Face rig: eye/mouth morph resolution by name + geometry, morph evaluation, overrides."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from conftest import real_model_paths
from renderer.errors import ModelLoadError
from renderer.model import Morph, MorphKind, MorphPanel
from renderer.modelfile import load_model
from renderer.face_rig import FaceRig, info_lines, morph_side, normalise_name, resolve_face_rig
from renderer.morph_eval import flatten_morph_weights
from renderer.overrides import load_override
from renderer.posing import ModelPoser

_cache: dict = {}


def _load(shared_models, rel):
    p = shared_models / rel
    if not p.is_file():
        pytest.skip(f"{rel} missing")
    if rel not in _cache:
        _cache[rel] = load_model(p)
    return _cache[rel]


def _side_of_closed_eye(model, rig, which: str) -> float:
    """Mean x of the vertices that move when one eye closes, weighted by displacement."""
    pose = [0, 0, 0, 0, 0, 0]
    pose[3 if which == "left" else 4] = 1.0
    P = ModelPoser(model, rig)
    d = np.linalg.norm(P.pose(pose).positions - model.positions, axis=1)
    assert d.sum() > 0
    return float((model.positions[:, 0] * d).sum() / d.sum())


# Animasa-family models: ウィンク / ウインク closes the character's RIGHT eye.
ANIMASA_WINKS = {
    "mmd_default_pmd/miku_v2.pmd": ("ウィンク右", "ウィンク"),
    "mmd_default_pmd/miku_m.pmd": ("ウィンク右", "ウィンク"),
    "mmd_default_pmd/kaito.pmd": ("ウィンク右", "ウィンク"),
    "mmd_default_pmd/rin_act2.pmd": ("ウィンク右", "ウインク"),
    "mmd_default_pmd/MEIKO.pmd": ("ウインク右", "ウインク"),
    "mmd_default_pmd/meiko_sakine.pmd": ("ウィンクＬ", "ウィンク"),
    "animasa_miku_pmx_j3/index.pmx": ("ウィンク右", "ウィンク"),
    # another modeller: ウィンク２ is the other eye, found by geometry alone
    "mokou_pmd/mokou_A.pmd": ("ウィンク２", "ウィンク"),
}


@pytest.mark.parametrize("rel", sorted(ANIMASA_WINKS))
def test_wink_side_decided_by_geometry(shared_models, rel):
    m = _load(shared_models, rel)
    rig = resolve_face_rig(m)
    left_name, right_name = ANIMASA_WINKS[rel]
    assert rig.has_one_eye_morphs
    assert m.morphs[rig.left_eye].name == left_name       # closes the character's LEFT eye
    assert m.morphs[rig.right_eye].name == right_name     # ウィンク: the character's RIGHT eye
    # and the pose really closes that side: +x = character's left
    assert _side_of_closed_eye(m, rig, "left") > 0.2
    assert _side_of_closed_eye(m, rig, "right") < -0.2
    assert rig.problems() == []


def _is_ancestor(model, anc: int, bone: int) -> bool:
    seen = set()
    while bone >= 0 and bone not in seen:
        if bone == anc:
            return True
        seen.add(bone)
        bone = model.bones[bone].parent
    return False


@pytest.mark.parametrize("path", real_model_paths(), ids=lambda p: p.parent.name + "/" + p.name)
def test_every_model_resolves_or_reports(path):
    """What holds for ANY real model: its rig resolves (every chosen morph and bone exists and
    is of the right kind) or the rig names each missing part, and `thactl info` says the same."""
    m = load_model(path)
    rig = resolve_face_rig(m)
    lines = info_lines(m, rig)
    probs = rig.problems()
    if probs:
        assert all(isinstance(p, str) and p.strip() for p in probs)
        assert lines[-1] == "status:    NOT USABLE: " + "; ".join(probs)
        return
    assert lines[-1] == "status:    OK"
    assert m.bones[rig.neck_tip].name and _is_ancestor(m, rig.neck_root, rig.neck_tip)
    chosen = [rig.mouth] + ([rig.left_eye, rig.right_eye] if rig.has_one_eye_morphs else [rig.both_eyes])
    assert all(i is not None and 0 <= i < len(m.morphs) for i in chosen)
    assert len(set(chosen)) == len(chosen)
    if rig.has_one_eye_morphs:           # plain winks preferred over 笑い / smile winks
        for i in (rig.left_eye, rig.right_eye):
            assert "笑" not in m.morphs[i].name


# Models whose rig uses the standard names (the Animasa family and others that follow it)
STANDARD_NAMES = ["mmd_default_pmd/miku_v2.pmd", "mmd_default_pmd/kaito.pmd", "mmd_default_pmd/haku.pmd",
                  "animasa_miku_pmx_j3/index.pmx", "appearance_miku_pmx/index.pmx", "mokou_pmd/mokou_A.pmd"]


@pytest.mark.parametrize("rel", STANDARD_NAMES)
def test_standard_named_models_take_their_standard_morphs_and_bones(shared_models, rel):
    m = _load(shared_models, rel)
    rig = resolve_face_rig(m)
    assert rig.problems() == []
    assert m.bones[rig.neck_root].name == "首" and m.bones[rig.neck_tip].name == "頭"
    assert m.morphs[rig.mouth].name == "あ"
    assert m.morphs[rig.both_eyes].name == "まばたき"


def test_a_model_without_eye_and_mouth_morphs_names_both(shared_models):
    m = _load(shared_models, "lowpoly_miku_gumi_pmd/gumi.pmd")
    rig = resolve_face_rig(m)
    probs = rig.problems()
    assert any("eye" in p for p in probs) and any("mouth" in p for p in probs)
    assert rig.mouth is None and rig.both_eyes is None


GENSHIN_WINK_ONLY = ["genshin_amber", "genshin_lumine", "genshin_venti"]


@pytest.mark.parametrize("folder", GENSHIN_WINK_ONLY)
def test_a_model_with_winks_and_no_blink_uses_its_winks(shared_models, folder):
    """Models with a wink pair and no まばたき: the rig closes the eyes with the winks."""
    d = shared_models / folder
    files = sorted(d.glob("*.pm[dx]")) if d.is_dir() else []
    if not files:
        pytest.skip(f"{folder} missing")
    m = load_model(files[0])
    rig = resolve_face_rig(m)
    assert rig.problems() == []
    assert rig.has_one_eye_morphs and rig.both_eyes is None
    assert _side_of_closed_eye(m, rig, "left") > 0 > _side_of_closed_eye(m, rig, "right")


@pytest.mark.parametrize("rel", ["appearance_miku_pmx/index.pmx", "mmd_default_pmd/haku.pmd",
                                 "mmd_default_pmd/miku.pmd"])
def test_models_without_a_wink_pair_use_both_eyes(shared_models, rel):
    m = _load(shared_models, rel)
    rig = resolve_face_rig(m)
    assert not rig.has_one_eye_morphs and rig.left_eye is None and rig.right_eye is None
    assert m.morphs[rig.both_eyes].name == "まばたき"
    w = rig.morph_weights([0, 0, 0, 0.3, 0.8, 0.5])
    assert w == {rig.both_eyes: 0.8, rig.mouth: 0.5}


def test_morph_weights_one_eye(shared_models):
    m = _load(shared_models, "mmd_default_pmd/miku_v2.pmd")
    rig = resolve_face_rig(m)
    assert rig.morph_weights([0.5, 0.5, 0.5, 0.25, 1.0, 0.0]) == {rig.left_eye: 0.25,
                                                                   rig.right_eye: 1.0}
    assert rig.morph_weights([0, 0, 0, 0, 0, 1]) == {rig.mouth: 1.0}


def test_alias_normalisation():
    assert normalise_name("ｳｨﾝｸ２右") == normalise_name("ウィンク2右") == "ウィンク2右"
    assert normalise_name("ウインク") == normalise_name("ウィンク")
    assert normalise_name("ウィンクＬ") == "ウィンクl"
    assert normalise_name("Wink_R") == "winkr"


def _renamed(model, mapping: dict[str, tuple[str, str]]):
    """Copy of `model` with morphs renamed {old name: (new name, new name_en)}."""
    m = copy.copy(model)
    m.morphs = [copy.copy(x) for x in model.morphs]
    for x in m.morphs:
        if x.name in mapping:
            x.name, x.name_en = mapping[x.name]
    return m


def test_english_and_variant_names(shared_models):
    base = _load(shared_models, "mmd_default_pmd/miku_v2.pmd")
    m = _renamed(base, {"ウィンク": ("", "wink"), "ウィンク右": ("", "wink_r"),
                        "まばたき": ("", "blink"), "あ": ("", "a"),
                        "ウィンク２": ("", "wink2"), "ｳｨﾝｸ２右": ("", "wink2_r")})
    rig = resolve_face_rig(m)
    assert m.morphs[rig.left_eye].name_en == "wink_r"
    assert m.morphs[rig.right_eye].name_en == "wink"
    assert m.morphs[rig.both_eyes].name_en == "blink" and m.morphs[rig.mouth].name_en == "a"
    # only "2" variants present (spelt ウィンク右２ / ｳｨﾝｸ２): they are used, sides by geometry
    m = _renamed(base, {"ウィンク": ("ダミー1", ""), "ウィンク右": ("ダミー2", ""),
                        "ウィンク２": ("ｳｨﾝｸ２", ""), "ｳｨﾝｸ２右": ("ウィンク右２", "")})
    rig = resolve_face_rig(m)
    assert m.morphs[rig.left_eye].name == "ウィンク右２"
    assert m.morphs[rig.right_eye].name == "ｳｨﾝｸ２"
    # smile winks lose to plain winks even when they come first
    m = _renamed(base, {"ウィンク２": ("笑いウィンク", ""), "ｳｨﾝｸ２右": ("笑いウィンク右", "")})
    order = list(range(len(m.morphs)))
    i, j = m.morph_index("笑いウィンク"), m.morph_index("ウィンク")
    order[i], order[j] = order[j], order[i]
    m.morphs = [m.morphs[k] for k in order]
    rig = resolve_face_rig(m)
    assert m.morphs[rig.right_eye].name == "ウィンク"


def test_no_one_eye_morphs_when_only_one_side(shared_models):
    base = _load(shared_models, "mmd_default_pmd/miku_v2.pmd")
    m = _renamed(base, {"ウィンク右": ("x1", ""), "ｳｨﾝｸ２右": ("x2", "")})
    rig = resolve_face_rig(m)
    assert not rig.has_one_eye_morphs and rig.both_eyes is not None
    assert any("one side" in n for n in rig.notes)


def _with_extra_morphs(model, extra: list[Morph]):
    m = copy.copy(model)
    m.morphs = list(model.morphs) + extra
    return m


def test_group_morph_recursion_weights_and_loops(shared_models):
    base = _load(shared_models, "mmd_default_pmd/miku_v2.pmd")
    n = len(base.morphs)
    wink, mouth = base.morph_index("ウィンク"), base.morph_index("あ")
    g_a = Morph("GA", "", MorphPanel.OTHER, MorphKind.GROUP, np.array([wink, n + 1], np.int32),
                weights=np.array([0.5, 2.0], np.float32))
    g_b = Morph("GB", "", MorphPanel.OTHER, MorphKind.GROUP, np.array([n, mouth], np.int32),
                weights=np.array([1.0, 0.25], np.float32))          # GB → GA: a loop
    flip = Morph("F", "", MorphPanel.OTHER, MorphKind.FLIP, np.array([n], np.int32),
                 weights=np.array([1.0], np.float32))
    imp = Morph("I", "", MorphPanel.OTHER, MorphKind.IMPULSE, np.array([0], np.int32),
                operations=np.zeros(1, np.uint8), values=np.zeros((1, 6), np.float32))
    m = _with_extra_morphs(base, [g_a, g_b, flip, imp])
    assert flatten_morph_weights(m, {n: 1.0}) == {wink: 0.5, mouth: 0.5}
    assert flatten_morph_weights(m, {n + 1: 1.0}) == {mouth: 0.25, wink: 0.5}
    assert flatten_morph_weights(m, {n + 2: 0.5}) == {wink: 0.25, mouth: 0.25}
    assert flatten_morph_weights(m, {n + 3: 1.0}) == {}
    # a group wink is resolved (and its side found) through the recursion
    P = ModelPoser(m, None)
    share, total = morph_side(m, n, P)
    assert total > 0 and share < 0.2          # GA mostly = ウィンク: the character's right
    a = P.pose_parts({n: 1.0}).positions
    b = P.pose_parts({wink: 0.5, mouth: 0.5}).positions
    assert np.allclose(a, b)


def test_bone_uv_material_morphs_evaluated(shared_models):
    base = _load(shared_models, "mmd_default_pmd/miku_v2.pmd")
    n = len(base.morphs)
    le = base.bone_index("左目")
    bone = Morph("目ボーン", "", MorphPanel.EYE, MorphKind.BONE, np.array([le], np.int32),
                 translations=np.array([[0.0, -0.2, 0.0]], np.float32),
                 rotations=np.array([[0, 0, 0, 1]], np.float32))
    uv = Morph("uv", "", MorphPanel.OTHER, MorphKind.UV, np.array([0, 5], np.int32),
               offsets=np.array([[0.5, 0.25, 0, 0], [1, 1, 0, 0]], np.float32))
    mat = Morph("mat", "", MorphPanel.OTHER, MorphKind.MATERIAL, np.array([-1, 2], np.int32),
                operations=np.array([0, 1], np.uint8),
                values=np.stack([np.full(28, 0.5, np.float32), np.full(28, 0.1, np.float32)]))
    m = _with_extra_morphs(base, [bone, uv, mat])
    P = ModelPoser(m, None)
    # bone morph: vertices weighted to 左目 (and below) move down 0.2 × weight, on the +x side
    mesh = P.pose_parts({n: 0.5})
    d = mesh.positions - base.positions
    moved = np.linalg.norm(d, axis=1) > 1e-6
    assert moved.any()
    chain = np.array(sorted(P.skeleton.descendants([le])))     # 左目 and the bones below it
    w_le = np.where(np.isin(base.bone_indices, chain), base.bone_weights, 0).sum(axis=1)
    assert np.allclose(d[:, 1], -0.1 * w_le, atol=1e-5)
    share, _ = morph_side(m, n, P)
    assert share > 0.9                       # 左目 = character's left = +x
    mesh = P.pose_parts({n + 1: 0.5})
    assert np.allclose(mesh.uvs[0], base.uvs[0] + [0.25, 0.125])
    assert np.allclose(mesh.uvs[5], base.uvs[5] + [0.5, 0.5])
    assert mesh.material_morph is None
    mm = P.pose_parts({n + 2: 1.0}).material_morph
    assert mm.shape == (len(base.materials), 28)
    assert np.allclose(mm[0, :4], base.materials[0].diffuse * 0.5)
    assert np.allclose(mm[2, :4], base.materials[2].diffuse * 0.5 + 0.1)
    assert np.allclose(mm[1, 16:], 0.5) and np.allclose(mm[2, 16:], 0.6)


def test_missing_neck_reported_not_raised(shared_models):
    base = _load(shared_models, "mmd_default_pmd/haku.pmd")
    m = copy.copy(base)
    m.bones = [copy.copy(b) for b in base.bones]
    for b in m.bones:
        if b.name in ("首", "頭"):
            b.name, b.name_en = b.name + "x", ""
    rig = resolve_face_rig(m)
    assert rig.neck_root == -1 and rig.neck_tip == -1
    assert any("首" in p for p in rig.problems()) and any("頭" in p for p in rig.problems())
    # English bone names are aliases too
    for b in m.bones:
        if b.name == "首x":
            b.name_en = "neck"
        if b.name == "頭x":
            b.name_en = "Head"
    rig = resolve_face_rig(m)
    assert m.bones[rig.neck_root].name == "首x" and m.bones[rig.neck_tip].name == "頭x"


def test_override_beside_model_and_in_user_file(shared_models, tmp_path):
    src = shared_models / "mmd_default_pmd" / "haku.pmd"
    if not src.is_file():
        pytest.skip("haku missing")
    model_path = tmp_path / "models" / "haku" / "haku.pmd"
    model_path.parent.mkdir(parents=True)
    model_path.write_bytes(src.read_bytes())
    m = load_model(model_path)
    assert load_override(model_path) is None
    beside = model_path.with_name("haku.pmd.thactl.json")
    beside.write_text(json.dumps({"mouth": "い", "neck_tip": "首", "chin_y": 15.5}),
                      encoding="utf-8")
    ov = load_override(model_path)
    assert ov == {"mouth": "い", "neck_tip": "首", "chin_y": 15.5}
    rig = resolve_face_rig(m, ov)
    assert m.morphs[rig.mouth].name == "い" and m.bones[rig.neck_tip].name == "首"
    assert rig.override["chin_y"] == 15.5
    user = tmp_path / "overrides.json"
    user.write_text(json.dumps({"haku/haku.pmd": {"mouth": "お", "both_eyes": "笑い"},
                                "other.pmx": {"mouth": "x"}}), encoding="utf-8")
    ov = load_override(model_path, user, models_root=tmp_path / "models")
    assert ov["mouth"] == "お" and ov["neck_tip"] == "首"     # user file wins, beside kept
    rig = resolve_face_rig(m, ov)
    assert m.morphs[rig.both_eyes].name == "笑い" and m.morphs[rig.mouth].name == "お"
    assert load_override(model_path, user)["mouth"] == "お"  # suffix match without a root
    # unknown names are problems, not crashes
    rig = resolve_face_rig(m, {"mouth": "存在しない", "neck_root": "nope"})
    assert rig.mouth is None and any("存在しない" in p for p in rig.problems())
    assert any("nope" in p for p in rig.problems())
    # explicit null: no one-eye morphs even where a pair exists
    v2 = _load(shared_models, "mmd_default_pmd/miku_v2.pmd")
    rig = resolve_face_rig(v2, {"left_eye": None, "right_eye": None})
    assert not rig.has_one_eye_morphs
    # broken override files are one-line load errors
    beside.write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        load_override(model_path)
    beside.write_text(json.dumps({"mouht": "あ"}), encoding="utf-8")
    with pytest.raises(ModelLoadError, match="unknown override key"):
        load_override(model_path)
    beside.write_text(json.dumps({"frame": [0, 1]}), encoding="utf-8")
    with pytest.raises(ModelLoadError, match="frame"):
        load_override(model_path)


def test_facerig_fields_match_contract():
    rig = FaceRig(left_eye=None, right_eye=None, both_eyes=3, mouth=4, neck_root=1,
                  neck_tip=2, notes=[])
    assert not rig.has_one_eye_morphs and rig.problems() == []
    assert rig.morph_weights(np.array([0, 0, 0, 1, 0, 0.5], np.float32)) == {3: 1.0, 4: 0.5}


def test_cli_info(shared_models, capsys, tmp_path):
    import cli

    p = shared_models / "mmd_default_pmd" / "kaito.pmd"
    if not p.is_file():
        pytest.skip("kaito missing")
    assert cli.main(["info", str(p)]) == 0
    out = capsys.readouterr().out
    assert "format:    PMD 1.0" in out and "7133 vertices" in out
    assert "left eye:  ウィンク右" in out and "right eye: ウィンク " in out
    assert "neck root: 首" in out and "status:    OK" in out
    low = shared_models / "lowpoly_miku_gumi_pmd" / "gumi.pmd"
    assert cli.main(["info", str(low)]) == 0
    assert "NOT USABLE" in capsys.readouterr().out
    bad = tmp_path / "bad.pmx"
    bad.write_bytes(p.read_bytes()[:300].replace(b"Pmd", b"PMX ", 1))
    assert cli.main(["info", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"thactl: error: {bad}: ") and err.count("\n") == 1
    assert "Traceback" not in err
