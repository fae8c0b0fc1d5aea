"""Pose schemas as data (core/poseschema.py): the built-ins, file validation with one-line errors,
the exclusive-group sampling law and the mirror of a schema's pose."""
import json

import numpy as np
import pytest

from core.pose import MIRROR_ORDER, MIRROR_SIGN, POSE_HIGH, POSE_LOW, POSE_NAMES, REST_POSE
from core.poseschema import SchemaError, builtin_json, load_schema


def test_tha1_is_core_pose():
    s = load_schema()
    assert s.name == "tha1" and s.is_tha1 and s.names == POSE_NAMES
    assert np.array_equal(s.low, POSE_LOW) and np.array_equal(s.high, POSE_HIGH)
    assert np.array_equal(s.rest, REST_POSE)
    assert s.indices("face") == [3, 4, 5] and s.indices("rotation") == [0, 1, 2]
    assert s.mirror_order() == list(MIRROR_ORDER) and np.array_equal(s.mirror_sign(), MIRROR_SIGN)


def test_tha3_has_the_45_in_order():
    s = load_schema("tha3")
    assert s.size == 45 and not s.is_tha1
    assert s.names[0] == "eyebrow_troubled_left" and s.names[11] == "eyebrow_serious_right"
    assert s.names[12] == "eye_wink_left" and s.names[23] == "eye_raised_lower_eyelid_right"
    assert s.names[24:26] == ("iris_small_left", "iris_small_right")
    assert s.names[26] == "mouth_aaa" and s.names[36] == "mouth_smirk"
    assert s.names[37:] == ("iris_rotation_x", "iris_rotation_y", "head_x", "head_y", "neck_z",
                            "body_y", "body_z", "breathing")
    assert s.indices("face") == list(range(39)) and s.indices("rotation") == list(range(39, 45))


def _write(tmp_path, mutate):
    data = builtin_json("tha3")
    mutate(data)
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d["parameters"][3].update(kind="wiggle"), "unknown kind 'wiggle'"),
    (lambda d: d["parameters"][40].update(range=[1, -1]), "bad range [1, -1]"),
    (lambda d: d["parameters"][40].update(rest=2), "rest 2 is outside"),
    (lambda d: d["parameters"][2].update(name="eyebrow_troubled_left"), "duplicate name 'eyebrow_troubled_left'"),
    (lambda d: d["parameters"][5].update(sampling={"group": "nose"}), "unknown group 'nose'"),
    (lambda d: d["groups"]["eye"].update(choose=[0.5, 0.6]), "choose must sum to 1"),
    (lambda d: d["parameters"][40]["bones"][0].update(axis="w"), "axis must be one of x, y, z"),
    (lambda d: d.update(format="other"), "not a pose schema"),
])
def test_bad_schema_files_are_one_line_errors(tmp_path, mutate, words):
    path = _write(tmp_path, mutate)
    with pytest.raises(SchemaError) as e:
        load_schema(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path)) and words in msg, msg


def test_unreadable_or_missing_schema(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{nope", encoding="utf-8")
    with pytest.raises(SchemaError, match=r"x\.json: not valid JSON"):
        load_schema(bad)
    with pytest.raises(SchemaError, match="no such pose schema"):
        load_schema(tmp_path / "absent.json")


def test_a_user_schema_loads_and_keeps_its_content(tmp_path):
    path = _write(tmp_path, lambda d: d.update(name="mine"))
    s = load_schema(path)
    assert s.name == "mine" and s.size == 45 and s.to_json()["name"] == "mine"


def test_exclusive_group_sampling_statistics():
    s = load_schema("tha3")
    n = 20_000
    p = s.sample(np.random.default_rng(1), n)
    assert p.shape == (n, 45) and p.dtype == np.float32 and s.problem(p, batch=True) is None
    for group in ("eyebrow", "eye", "mouth"):
        idx = [i for i, q in enumerate(s.parameters) if q.group == group]
        sems = {}
        for i in idx:
            sems.setdefault(s.parameters[i].semantic, []).append(i)
        active = np.stack([(p[:, ii] > 0).any(axis=1) for ii in sems.values()], axis=1).sum(axis=1)
        # 1 semantic with probability 25 %, 2 with 75 % (never 0, never 3)
        assert set(np.unique(active)) <= {1, 2}
        assert abs((active == 1).mean() - 0.25) < 0.015
        for side in ("left", "right"):   # blendshapes on one feature never sum past 1
            cols = [i for i in idx if s.parameters[i].side in (side, None)]
            assert p[:, cols].sum(axis=1).max() <= 1.0 + 1e-6
    iris = [s.index("iris_small_left"), s.index("iris_small_right")]
    assert abs((p[:, iris] == 0).all(axis=1).mean() - 0.25) < 0.015
    head = p[:, s.index("head_y")]
    assert abs((np.abs(head) > 0.5).mean() - 0.75) < 0.015      # THA1's law: density ∝ |v|
    assert (p[:, s.index("eye_wink_left")] != p[:, s.index("eye_wink_right")]).mean() > 0.1


def test_sampling_is_a_function_of_the_generator_state():
    s = load_schema("tha3")
    a = s.sample(np.random.default_rng([3, 0, 0, 7]), 4)
    b = s.sample(np.random.default_rng([3, 0, 0, 7]), 4)
    assert np.array_equal(a, b)


def test_tha3_mirror_swaps_sides_and_negates_turns():
    s = load_schema("tha3")
    order, sign = s.mirror_order(), s.mirror_sign()
    i, j = s.index("mouth_raised_corner_left"), s.index("mouth_raised_corner_right")
    assert order[i] == j and order[j] == i and order[s.index("mouth_aaa")] == s.index("mouth_aaa")
    assert sign[s.index("head_y")] == -1 and sign[s.index("iris_rotation_x")] == 1
    assert sorted(order) == list(range(45))


def test_schema_pose_check():
    s = load_schema("tha3")
    pose = s.rest.copy()
    pose[s.index("head_x")] = 1.5
    assert s.problem(pose) == "head_x = 1.5 is outside [-1, 1]"
    assert "45 numbers" in s.problem(np.zeros(6))


def test_tha1_numbers_land_on_the_schema_names():
    tha1, tha3 = load_schema("tha1"), load_schema("tha3")
    six = np.array([[0.5, -0.25, 0.1, 1.0, 0.0, 0.75]], np.float32)
    assert np.array_equal(tha1.from_tha1(six), six)
    out = tha3.from_tha1(six)
    assert out.shape == (1, 45)
    for name, v in [("head_x", 0.5), ("head_y", -0.25), ("neck_z", 0.1), ("eye_wink_left", 1.0),
                    ("eye_wink_right", 0.0), ("mouth_aaa", 0.75)]:
        assert out[0, tha3.index(name)] == np.float32(v)
    others = [i for i, n in enumerate(tha3.names) if n not in
              ("head_x", "head_y", "neck_z", "eye_wink_left", "eye_wink_right", "mouth_aaa")]
    assert np.array_equal(out[0, others], tha3.rest[others])


# ---------------------------------------------------------------- sampling among what a model can show

#: tha3 without what a model like the default Miku v2 lacks, and more: every eyebrow (a group with no
#: available semantic), both mouth corners' raised sides and the left lowered one (one side left),
#: delta, the lower eyelid, the right side of surprised, the left iris_small, and head_x
UNAVAILABLE = ["eyebrow_troubled_left", "eyebrow_troubled_right", "eyebrow_angry_left", "eyebrow_angry_right",
               "eyebrow_lowered_left", "eyebrow_lowered_right", "eyebrow_raised_left", "eyebrow_raised_right",
               "eyebrow_happy_left", "eyebrow_happy_right", "eyebrow_serious_left", "eyebrow_serious_right",
               "mouth_raised_corner_left", "mouth_raised_corner_right", "mouth_lowered_corner_left",
               "mouth_delta", "eye_raised_lower_eyelid_left", "eye_raised_lower_eyelid_right",
               "eye_surprised_right", "iris_small_left", "head_x"]


def binomial_tolerance(p: float, n: int, z: float = 5.0) -> float:
    """How far an observed share of n independent draws may be from p: z binomial standard deviations
    (z = 5: a correct law fails with probability below 1e-6)."""
    return z * (p * (1.0 - p) / n) ** 0.5


def _masked(n: int = 20_000, seed: int = 11):
    s = load_schema("tha3")
    mask = np.ones(s.size, bool)
    mask[[s.index(name) for name in UNAVAILABLE]] = False
    return s, mask, s.sample(np.random.default_rng(seed), n, available=mask)


def test_sampling_without_a_mask_or_with_an_all_true_one_is_the_law_alone():
    import hashlib

    s = load_schema("tha3")
    a = s.sample(np.random.default_rng([3, 0, 0, 7]), 64)
    b = s.sample(np.random.default_rng([3, 0, 0, 7]), 64, available=None)
    c = s.sample(np.random.default_rng([3, 0, 0, 7]), 64, available=np.ones(45, bool))
    assert a.tobytes() == b.tobytes() == c.tobytes()
    # the bytes the law gave before availability existed (numpy 2.4's generators), so data drawn
    # without a mask stays what it was
    assert hashlib.sha256(a.tobytes()).hexdigest() == \
        "c955a9177e7c7e9932c833f233a0e5dec4bc41a1ae567b12508a7dbd50b8da9d"


def test_unavailable_parameters_are_always_at_rest_and_the_rest_is_drawn_alike():
    s, mask, p = _masked()
    assert s.problem(p, batch=True) is None
    assert (p[:, ~mask] == s.rest[~mask]).all()
    plain = s.sample(np.random.default_rng(11), len(p))
    independent = [i for i, q in enumerate(s.parameters) if q.group is None and mask[i]]
    assert np.array_equal(p[:, independent], plain[:, independent])   # the generator is used alike
    assert (p[:, s.index("iris_small_right")] != 0).mean() > 0.5


def test_groups_are_drawn_among_the_available_semantics():
    from dataset.shardinfo import group_active_shares

    s, mask, p = _masked()
    n = len(p)
    shares = group_active_shares(p, s)
    observed, _ = shares["eyebrow"]
    assert observed[0] == 1.0                                       # nothing available: at rest
    for group in ("eye", "mouth"):                                  # 5 and 7 semantics left: choose holds
        observed, intended = shares[group]
        assert observed[0] == 0.0
        for k in (1, 2):
            assert abs(observed[k] - intended[k]) <= binomial_tolerance(intended[k], n), (group, k)
        members = [i for i, q in enumerate(s.parameters) if q.group == group]
        for side in ("left", "right"):                              # still below 1 on a side
            cols = [i for i in members if s.parameters[i].side in (side, None)]
            assert p[:, cols].sum(axis=1).max() <= 1.0 + 1e-6
    # each available semantic is chosen uniformly: E[k] / semantics = (0.25 + 2 * 0.75) / 5 for eye
    for name in ("eye_wink_left", "eye_happy_wink_left", "eye_surprised_left", "eye_relaxed_left",
                 "eye_unimpressed_left"):
        share = float((p[:, s.index(name)] > 0).mean())
        assert abs(share - 0.35) <= binomial_tolerance(0.35, n), name
    # a semantic with one available side is chosen as often as the others and moves that side only
    share = float((p[:, s.index("mouth_lowered_corner_right")] > 0).mean())
    assert abs(share - 1.75 / 7) <= binomial_tolerance(1.75 / 7, n)


def test_a_group_with_one_available_semantic_always_shows_it():
    s = load_schema("tha3")
    mask = np.ones(s.size, bool)
    eye = [i for i, q in enumerate(s.parameters) if q.group == "eye"]
    mask[eye] = False
    mask[s.index("eye_wink_right")] = True
    p = s.sample(np.random.default_rng(5), 2000, available=mask)
    assert (p[:, s.index("eye_wink_right")] > 0).all()              # k capped at 1: never at rest
    assert (p[:, [i for i in eye if i != s.index("eye_wink_right")]] == 0).all()


def test_a_wrong_availability_mask_is_one_line():
    s = load_schema("tha3")
    with pytest.raises(SchemaError, match=r"tha3: availability must be 45 booleans, got shape \(6,\)"):
        s.sample(np.random.default_rng(0), 1, available=np.ones(6, bool))
