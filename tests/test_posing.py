"""Posing: rotation signs on real models (SPEC.md), exact rotations, only the neck chain moves,
append (付与) transforms, speed."""
from __future__ import annotations

import copy
import math
import time

import numpy as np
import pytest

from renderer.model import BoneFlag
from renderer.modelfile import load_model
from renderer.face_rig import resolve_face_rig
from core.pose import ANGLE_DEGREES, POSE_NAMES, REST_POSE
from renderer.posing import ModelPoser, PosedMesh

MODELS = ["mmd_default_pmd/miku_v2.pmd", "appearance_miku_pmx/index.pmx",
          "mmd_default_pmd/MEIKO.pmd", "mokou_pmd/mokou_A.pmd"]
_cache: dict = {}


def _setup(shared_models, rel):
    p = shared_models / rel
    if not p.is_file():
        pytest.skip(f"{rel} missing")
    if rel not in _cache:
        m = load_model(p)
        rig = resolve_face_rig(m)
        _cache[rel] = (m, rig, ModelPoser(m, rig))
    return _cache[rel]


def Rx(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def Ry(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def Rz(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _chain_weight(model, poser, rig):
    chain = np.array(sorted(poser.skeleton.descendants([rig.neck_root])))
    return np.where(np.isin(model.bone_indices, chain), model.bone_weights, 0).sum(axis=1)


def _face_front(model, poser, rig):
    """Vertices of the front of the face: fully on the head chain, above the head bone,
    near the middle, the front-most (most negative z) of those."""
    head = model.bones[rig.neck_tip].position
    P = model.positions
    on = _chain_weight(model, poser, rig) > 0.999
    sel = on & (P[:, 1] > head[1]) & (P[:, 1] < head[1] + 2.5) & (np.abs(P[:, 0] - head[0]) < 0.6)
    zcut = np.percentile(P[sel, 2], 5)
    front = sel & (P[:, 2] <= zcut)
    assert front.sum() >= 5 and P[front, 2].mean() < head[2]     # in front: z < 0 side
    return front


@pytest.mark.parametrize("rel", MODELS)
def test_rotation_signs(shared_models, rel):
    m, rig, P = _setup(shared_models, rel)
    front = _face_front(m, P, rig)
    rest = P.pose([0, 0, 0, 0, 0, 0]).positions
    c0 = rest[front].mean(axis=0)

    def centroid(pose, mask=front):
        return P.pose(pose).positions[mask].mean(axis=0)

    # +head_x: the face (points in front of the head) moves UP
    assert centroid([1, 0, 0, 0, 0, 0])[1] > c0[1] + 0.05
    assert centroid([-1, 0, 0, 0, 0, 0])[1] < c0[1] - 0.05
    # +head_y: the nose moves toward -x (character's right, image left)
    assert centroid([0, 1, 0, 0, 0, 0])[0] < c0[0] - 0.05
    assert centroid([0, -1, 0, 0, 0, 0])[0] > c0[0] + 0.05
    # +neck_z: the top of the head moves toward -x
    on = _chain_weight(m, P, rig) > 0.999
    top = on & (rest[:, 1] >= np.percentile(rest[on, 1], 98))
    t0 = rest[top].mean(axis=0)
    assert centroid([0, 0, 1, 0, 0, 0], top)[0] < t0[0] - 0.1
    assert centroid([0, 0, -1, 0, 0, 0], top)[0] > t0[0] + 0.1


@pytest.mark.parametrize("rel", MODELS[:2])
def test_exact_rotations_about_the_bones(shared_models, rel):
    m, rig, P = _setup(shared_models, rel)
    k = math.radians(ANGLE_DEGREES)
    tip, root = m.bones[rig.neck_tip].position, m.bones[rig.neck_root].position
    on_tip = np.where(m.bone_indices == rig.neck_tip, m.bone_weights, 0).sum(axis=1) > 0.9999
    assert on_tip.sum() > 10
    x = m.positions[on_tip].astype(float)
    hx, hy, nz = 0.6, -0.8, 0.7
    got = P.pose([hx, hy, 0, 0, 0, 0]).positions[on_tip]
    want = (x - tip) @ (Ry(k * hy) @ Rx(k * hx)).T + tip           # R = Ry · Rx (x first)
    assert np.abs(got - want).max() < 1e-4
    # neck root about z, head then rotated in the root's frame
    got = P.pose([hx, hy, nz, 0, 0, 0]).positions[on_tip]
    Rr = Rz(k * nz)
    tip_w = Rr @ (tip - root) + root
    want = (x - tip) @ (Rr @ Ry(k * hy) @ Rx(k * hx)).T + tip_w
    assert np.abs(got - want).max() < 1e-4


@pytest.mark.parametrize("rel", MODELS)
def test_only_the_neck_chain_moves(shared_models, rel):
    m, rig, P = _setup(shared_models, rel)
    w = _chain_weight(m, P, rig)
    for pose in ([1, 0, 0, 0, 0, 0], [0.3, -0.7, 0.9, 0, 0, 0]):
        mesh = P.pose(pose)
        free = w == 0
        assert np.array_equal(mesh.positions[free], m.positions[free])
        assert np.array_equal(mesh.normals[free], m.normals[free])
        d = np.linalg.norm(mesh.positions - m.positions, axis=1)
        assert (d[w > 0.999] > 1e-4).mean() > 0.99        # (points on the axis may stay)
        assert np.allclose(np.linalg.norm(mesh.normals[w > 0], axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("rel", MODELS[:2])
def test_expression_only_moves_morph_vertices(shared_models, rel):
    m, rig, P = _setup(shared_models, rel)
    mesh = P.pose([0, 0, 0, 0, 0, 0])
    assert np.array_equal(mesh.positions, m.positions)
    assert np.array_equal(mesh.normals, m.normals) and np.array_equal(mesh.uvs, m.uvs)
    mesh = P.pose(REST_POSE)
    mouth = m.morphs[rig.mouth]
    changed = np.nonzero(np.any(mesh.positions != m.positions, axis=1))[0]
    assert set(changed.tolist()) <= set(mouth.indices.tolist()) and changed.size > 0
    assert np.allclose(mesh.positions[mouth.indices], m.positions[mouth.indices] + mouth.offsets,
                       atol=1e-6)


def test_posed_mesh_contract(shared_models):
    m, rig, P = _setup(shared_models, MODELS[0])
    assert POSE_NAMES == ("head_x", "head_y", "neck_z", "left_eye", "right_eye", "mouth")
    mesh = P.pose(np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], np.float32))
    assert isinstance(mesh, PosedMesh)
    for a, shape in ((mesh.positions, (m.vertex_count, 3)), (mesh.normals, (m.vertex_count, 3)),
                     (mesh.uvs, (m.vertex_count, 2))):
        assert a.shape == shape and a.dtype == np.float32
    assert mesh.material_morph is None
    # pose() == pose_parts() with the same weights and quaternions
    from renderer.posing import neck_quaternions
    pose = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    q_root, q_tip = neck_quaternions(pose)
    again = P.pose_parts(rig.morph_weights(pose), q_root, q_tip)
    assert np.array_equal(again.positions, P.pose(pose).positions)
    # the model's arrays are never modified
    before = m.positions.copy()
    P.pose([1, 1, 1, 1, 1, 1])
    assert np.array_equal(before, m.positions)


def _ancestors(model, i):
    out = set()
    while 0 <= i < len(model.bones) and i not in out:
        out.add(i)
        i = model.bones[i].parent
    return out


def test_append_rotation_follows_the_append_parent(shared_models):
    base, rig, _ = _setup(shared_models, MODELS[0])
    m = copy.copy(base)
    m.bones = [copy.copy(b) for b in base.bones]
    # the bone outside the neck chain (and not above it) with the most vertices fully on it
    skip = _ancestors(m, rig.neck_root) | _setup(shared_models, MODELS[0])[2].skeleton.descendants(
        [rig.neck_root])
    full = np.where(m.bone_weights[:, 0] > 0.9999, m.bone_indices[:, 0], -1)
    counts = np.bincount(full[full >= 0], minlength=len(m.bones))
    counts[list(skip)] = 0
    arm = int(np.argmax(counts))
    assert m.bones[arm].append_parent < 0
    m.bones[arm].append_parent = rig.neck_tip
    m.bones[arm].append_weight = 0.5
    m.bones[arm].flags |= BoneFlag.APPEND_ROTATION
    P = ModelPoser(m, rig)
    on_arm = np.where(m.bone_indices == arm, m.bone_weights, 0).sum(axis=1) > 0.9999
    assert on_arm.sum() > 10
    x = m.positions[on_arm].astype(float)
    got = P.pose([0, 1, 0, 0, 0, 0]).positions[on_arm]
    p = m.bones[arm].position
    want = (x - p) @ Ry(math.radians(ANGLE_DEGREES) * 0.5).T + p   # half the head's turn
    assert np.abs(got - want).max() < 1e-4


@pytest.mark.slow
def test_pose_speed(shared_models):
    m, rig, P = _setup(shared_models, "appearance_miku_pmx/index.pmx")
    rng = np.random.default_rng(0)
    poses = rng.uniform(-1, 1, (30, 6))
    poses[:, 3:] = np.abs(poses[:, 3:])
    P.pose(poses[0])
    times = []
    for p in poses:
        t = time.perf_counter()
        P.pose(p)
        times.append(time.perf_counter() - t)
    # target: < 5 ms per pose on an idle machine (bench/bench_load_pose.py); a wall-clock
    # figure, so slow-marked: the default suite holds no timing threshold
    assert np.median(times) < 0.015, f"median {np.median(times) * 1e3:.2f} ms"


def test_rotating_a_missing_neck_is_a_render_error(shared_models):
    from renderer.errors import RenderError

    m, rig, _ = _setup(shared_models, MODELS[0])
    broken = copy.copy(rig)
    broken.neck_tip = -1
    P = ModelPoser(m, broken)
    P.pose([0, 0, 0.5, 1, 1, 1])                   # the neck root still works
    with pytest.raises(RenderError, match="neck tip"):
        P.pose([0.5, 0, 0, 0, 0, 0])


def test_sdef_rotates_about_its_centre():
    """An SDEF vertex split 50/50 between 頭 (turned 15°) and 首 (still), centred on the 頭
    joint, turns by exactly half the angle about C and keeps its distance from C, where the
    linear blend would pull it inward."""
    from test_modelfile import build_pmx

    from renderer.model import SkinningType
    from renderer.face_rig import FaceRig

    m = load_model("s.pmx", data=build_pmx())
    v = 3
    assert m.skin_type[v] == SkinningType.SDEF
    head = m.bones[2].position.astype(float)
    m.bone_indices[v, :2] = [2, 1]
    m.bone_weights[v, :2] = [0.5, 0.5]
    m.sdef_c[v] = m.sdef_r0[v] = m.sdef_r1[v] = head
    m.positions[v] = head + np.array([0.0, 0.5, -1.0])
    rig = FaceRig(None, None, None, None, neck_root=1, neck_tip=2, notes=[])
    got = ModelPoser(m, rig).pose([1, 0, 0, 0, 0, 0]).positions[v]
    want = head + Rx(math.radians(ANGLE_DEGREES) / 2) @ np.array([0.0, 0.5, -1.0])
    assert np.abs(got - want).max() < 1e-5
    lbs = ModelPoser(m, rig, sdef=False).pose([1, 0, 0, 0, 0, 0]).positions[v]
    assert np.linalg.norm(lbs - head) < np.linalg.norm(got - head) - 1e-4


def test_evaluation_order_layers_parents_and_append_parents():
    from test_modelfile import build_pmx

    from renderer.skeleton import evaluation_order

    m = load_model("s.pmx", data=build_pmx())
    # layers: センター 0, 首 0, 頭 0, 付与 1 (appends from 頭), IK 2
    assert evaluation_order(m) == [0, 1, 2, 3, 4]
    m.bones[1].deform_layer = 5           # 首 deforms late: its child 頭 must wait for it
    m.bones[3].append_parent = 2
    order = evaluation_order(m)
    assert order.index(1) < order.index(2) and order.index(2) < order.index(3)
    assert order[0] == 0
    m.bones[0].parent, m.bones[1].parent = 1, 0      # a parent loop (corrupt file): no hang
    assert sorted(evaluation_order(m)) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("n_bones", [2, 12])
def test_fast_skinning_matches_a_plain_linear_blend(shared_models, n_bones):
    """The class-grouped skinning equals Σ w·S[bone] evaluated naively over every vertex,
    with a few (≤ 8 classes) or many (> 8 classes) independently moving bones."""
    from renderer.model import Morph, MorphKind, MorphPanel
    from renderer.posing import neck_quaternions
    from renderer.skeleton import quat_axis_angle

    base, rig, _ = _setup(shared_models, MODELS[0])
    m = copy.copy(base)
    rng = np.random.default_rng(n_bones)
    bones = rng.choice(len(m.bones), n_bones, replace=False).astype(np.int32)
    rots = np.array([quat_axis_angle(rng.normal(size=3), 0.3) for _ in bones], np.float32)
    m.morphs = list(base.morphs) + [Morph(
        "bones", "", MorphPanel.OTHER, MorphKind.BONE, bones,
        translations=rng.normal(0, 0.1, (n_bones, 3)).astype(np.float32), rotations=rots)]
    P = ModelPoser(m, rig, sdef=False)
    k = len(m.morphs) - 1
    for pose in rng.uniform(-1, 1, (3, 6)):
        q_root, q_tip = neck_quaternions(pose)
        mesh = P.pose_parts({k: 0.8}, q_root, q_tip)
        # reference: same local transforms, naive blend over all vertices
        lr, lt = {}, {}
        from renderer.skeleton import quat_mul, quat_pow
        for b, t, q in zip(bones.tolist(), m.morphs[k].translations, m.morphs[k].rotations):
            lr[b] = quat_pow(q, 0.8)
            if np.any(t):
                lt[b] = 0.8 * t.astype(float)
        for b, q in ((rig.neck_root, q_root), (rig.neck_tip, q_tip)):
            lr[b] = quat_mul(q, lr[b]) if b in lr else q
        S, _ = P.skeleton.skin_matrices(lr, lt)
        M = np.einsum("vk,vkij->vij", m.bone_weights, S[m.bone_indices])
        want = np.einsum("vij,vj->vi", M[:, :, :3], m.positions) + M[:, :, 3]
        assert np.abs(mesh.positions - want).max() < 1e-4
