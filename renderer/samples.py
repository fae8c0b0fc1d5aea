"""Built-in sample characters: small procedurally generated PMX models.

Real MMD models cannot ship with the project, so `thactl samples` (and
`thactl render` without `--models`) uses these. Each character is made with
numpy from a seed and written with `renderer.pmxwriter` as an ordinary PMX 2.0
file plus PNG textures, so it goes through exactly the same loading path as a
real model.

A character has: a skull with a pointed anime chin; a hair cap, bangs over the
forehead, side locks and back hair hanging below the chin and (mostly) an
ahoge sticking up; a neck and an upper body with clothes, a collar and a tie;
two textured eyes on the front of the face (-z) with upper lashes and eyelids
that close through vertex morphs; brows; a mouth opened by あ.

Morphs are named as on the Animasa Miku family: ウィンク closes the character's
RIGHT eye (x < 0) and ウィンク右 the character's LEFT eye (x > 0); まばたき closes
both (a vertex morph in sample-01, -03, ..., a group morph of the two winks in
sample-02, -04, ...); あ / い / お move the mouth. sample-02, -05, -08, ... spell
the winks ウインク / ウインク右, as many real models do. sample-01 always has an
ahoge, sample-02 always twin tails.

Bones: センター → 上半身 → 首 (neck base) → 頭 (head/neck joint) → 両目, 左目, 右目
(the eye bones take 両目's rotation through an append transform, as on real
models). Skin weights: the head, hair, face parts to 頭 (the irises to 左目 /
右目), the neck blended (BDEF2) 首↔頭 at the top and 首↔上半身 at the bottom, the
body to 上半身.

Output is byte-identical for the same (seed, index): positions, normals, UVs
and offsets are rounded to binary fractions so that last-bit differences of
the maths library do not reach the file.
"""
from __future__ import annotations

import colorsys
import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .model import (
    Bone,
    BoneFlag,
    Material,
    MaterialFlag,
    MMDModel,
    ModelFormat,
    Morph,
    MorphKind,
    MorphPanel,
    SkinningType,
    SphereMode,
)
from core.atomicfile import write_bytes
from .errors import RendererError
from .pmxwriter import DisplayFrame, pmx_bytes

log = logging.getLogger("thactl.renderer")

__all__ = ["SampleCharacter", "build_sample", "write_samples"]

TWO_PI = 2.0 * np.pi
FACE_TEXTURE = "face.png"
HAIR_TEXTURE = "tex\\hair.png"          # written with a backslash, as Windows tools do


# ------------------------------------------------------------------------------------ params

@dataclass
class _Params:
    # head: ellipsoid radii, centre, jaw narrowing, chin drop
    rx: float
    ry: float
    rz: float
    cy: float
    jaw: float
    chin: float
    # face parts in head-surface parameters (theta: azimuth, 0 = front, + = character's left;
    # phi: latitude)
    eye_th: float
    eye_ph: float
    eye_a_th: float
    eye_a_ph: float
    eye_tilt: float
    mouth_ph: float
    mouth_a_th: float
    mouth_a_ph: float
    # neck / body
    neck_r: float
    neck_len: float
    shoulder_w: float
    body_depth: float
    # hair
    n_bangs: int
    bang_tip_ph: np.ndarray
    hairline_front: float
    side_len: float
    back_len: float
    ahoge: bool
    # colours (linear 0..1 RGB)
    skin: tuple
    hair: tuple
    eye: tuple
    clothes: tuple
    accent: tuple
    wink_names: tuple = ("ウィンク", "ウィンク右")
    blink_group: bool = False
    twin_tails: bool = False


def _hsv(h: float, s: float, v: float) -> tuple:
    return tuple(float(c) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


# typical anime hair colours (h, s, v): black-blue, brown, blonde, pink, teal, silver, red, purple,
# blue, green
_HAIR_PALETTE = ((0.62, 0.35, 0.22), (0.07, 0.6, 0.45), (0.13, 0.5, 0.95), (0.93, 0.4, 0.95),
                 (0.48, 0.65, 0.72), (0.6, 0.07, 0.85), (0.01, 0.75, 0.7), (0.78, 0.5, 0.6),
                 (0.6, 0.6, 0.8), (0.3, 0.45, 0.6))


def _params(index: int, seed: int) -> _Params:
    rng = np.random.default_rng([int(seed), int(index), 0x7A1])
    u = rng.uniform
    n_bangs = int(rng.integers(7, 11))
    skin_h = u(0.03, 0.08)
    hair_hsv = _HAIR_PALETTE[int(rng.integers(len(_HAIR_PALETTE)))]
    eye_h = u(0, 1)
    return _Params(
        rx=u(1.38, 1.52), ry=u(1.55, 1.7), rz=u(1.42, 1.56), cy=18.6 + u(-0.3, 0.3),
        jaw=u(0.28, 0.38), chin=u(0.45, 0.7),
        eye_th=u(0.4, 0.46), eye_ph=u(-0.2, -0.12), eye_a_th=u(0.22, 0.26),
        eye_a_ph=u(0.18, 0.23), eye_tilt=u(-0.1, 0.06),
        mouth_ph=u(-0.7, -0.64), mouth_a_th=u(0.13, 0.16), mouth_a_ph=u(0.15, 0.17),
        neck_r=u(0.33, 0.4), neck_len=u(0.35, 0.5), shoulder_w=u(1.9, 2.3), body_depth=u(0.8, 1.0),
        n_bangs=n_bangs, bang_tip_ph=u(0.02, 0.22, n_bangs), hairline_front=u(0.45, 0.6),
        side_len=u(0.3, 1.8), back_len=u(0.8, 2.6), ahoge=bool(index == 0 or u() < 0.6),
        skin=_hsv(skin_h, u(0.12, 0.22), u(0.95, 1.0)),
        hair=_hsv(hair_hsv[0] + u(-0.03, 0.03), hair_hsv[1] * u(0.85, 1.1), hair_hsv[2] * u(0.85, 1.05)),
        eye=_hsv(eye_h, u(0.5, 0.9), u(0.45, 0.8)),
        clothes=_hsv(u(0, 1), u(0.2, 0.7), u(0.3, 0.9)),
        accent=_hsv(u(0, 1), u(0.5, 0.9), u(0.6, 0.9)),
        wink_names=("ウインク", "ウインク右") if index % 3 == 1 else ("ウィンク", "ウィンク右"),
        blink_group=bool(index % 2 == 1),
        twin_tails=bool(index == 1 or (index > 2 and u() < 0.35)),
    )


# ------------------------------------------------------------------------------- geometry

def _head(th, ph, p: _Params, scale=1.0):
    """Point on the head surface for parameters (theta, phi), scaled about the head centre."""
    th = np.asarray(th, np.float64)
    ph = np.asarray(ph, np.float64)
    cp, sp = np.cos(ph), np.sin(ph)
    dx, dy, dz = cp * np.sin(th), sp, -cp * np.cos(th)
    lower = np.clip(-dy, 0.0, 1.0)
    front = np.clip(-dz, 0.0, 1.0)
    x = p.rx * dx * (1.0 - p.jaw * lower ** 1.5)
    y = p.ry * dy - p.chin * p.ry * lower ** 1.3 * front ** 1.5
    z = p.rz * dz * (1.0 - 0.18 * lower * front)
    pts = np.stack([x, y, z], -1) * np.asarray(scale, np.float64)[..., None]
    return pts + np.array([0.0, p.cy, 0.0])


def _head_normal(th, ph, p: _Params):
    e = 1e-4
    d_ph = _head(th, ph + e, p) - _head(th, ph - e, p)
    d_th = _head(th + e, ph, p) - _head(th - e, ph, p)
    n = np.cross(d_ph, d_th)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def _on_face(th, ph, p: _Params, lift: float):
    """Point lifted `lift` model units off the head surface along its normal."""
    return _head(th, ph, p) + lift * _head_normal(th, ph, p)


def _grid_tris(rows: int, cols: int) -> np.ndarray:
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols - 1), indexing="ij")
    a = (r * cols + c).ravel()
    b = a + cols
    return np.concatenate([np.stack([a, b, b + 1], 1), np.stack([a, b + 1, a + 1], 1)])


def _tube(path, width, thick, side, nseg=10, tip=True):
    """A flattened tube along `path` (n,3): width along `side`, thickness across it.

    Returns positions, triangles, outward reference directions and UVs (u around,
    v along). With `tip`, the last ring is a single point.
    """
    path = np.asarray(path, np.float64)
    n = len(path)
    T = np.gradient(path, axis=0)
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    W = side - (side * T).sum(1, keepdims=True) * T
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    N = np.cross(T, W)
    a = np.linspace(0.0, TWO_PI, nseg + 1)
    ca, sa = np.cos(a)[None, :, None], np.sin(a)[None, :, None]
    w = np.asarray(width, np.float64)[:, None, None]
    t = np.asarray(thick, np.float64)[:, None, None]
    ring = path[:, None] + W[:, None] * w * ca + N[:, None] * t * sa
    ref = W[:, None] * ca * t + N[:, None] * sa * w + 1e-9 * T[:, None]
    v = np.linspace(0.0, 1.0, n)
    uv = np.stack(np.broadcast_arrays(np.linspace(0, 1, nseg + 1)[None, :], v[:, None]), -1)
    cols = nseg + 1
    if tip:
        body = n - 1
        P = np.concatenate([ring[:body].reshape(-1, 3), path[-1:]])
        R = np.concatenate([ref[:body].reshape(-1, 3), T[-1:]])
        UV = np.concatenate([uv[:body].reshape(-1, 2), [[0.5, 1.0]]])
        F = _grid_tris(body, cols)
        last = (body - 1) * cols + np.arange(nseg)
        fan = np.stack([last, np.full(nseg, body * cols), last + 1], 1)
        F = np.concatenate([F, fan])
    else:
        P, R, UV = ring.reshape(-1, 3), ref.reshape(-1, 3), uv.reshape(-1, 2)
        F = _grid_tris(n, cols)
    return P, F, R, UV


def _face_normals(P, F):
    return np.cross(P[F[:, 1]] - P[F[:, 0]], P[F[:, 2]] - P[F[:, 0]])


def _smooth_normals(P, F):
    """Area-weighted vertex normals, vertices at the same position sharing one normal."""
    key = np.round(P * 1e5).astype(np.int64)
    _, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    fn = _face_normals(P, F)
    acc = np.zeros((inv.max() + 1, 3))
    for k in range(3):
        np.add.at(acc, inv[F[:, k]], fn)
    n = acc[inv]
    ln = np.linalg.norm(n, axis=1, keepdims=True)
    return n / np.where(ln > 0, ln, 1.0)


def _q(a, bits=16):
    """Round to a binary fraction so tiny floating-point differences do not reach the file."""
    s = float(1 << bits)
    return (np.round(np.asarray(a, np.float64) * s) / s).astype(np.float32)


@dataclass
class _Part:
    P: np.ndarray
    F: np.ndarray
    N: np.ndarray
    UV: np.ndarray
    material: str
    bones: np.ndarray      # (V,2) int
    w0: np.ndarray         # (V,) weight of bones[:,0]
    name: str
    start: int = 0


class _Builder:
    def __init__(self):
        self.parts: list[_Part] = []
        self.count = 0
        self.by_name: dict[str, _Part] = {}

    def add(self, name, P, F, material, bone, *, ref=None, normals=None, uv=None,
            drop_degenerate=True, bones=None, w0=None):
        P = np.asarray(P, np.float64).reshape(-1, 3)
        F = np.asarray(F, np.int64).reshape(-1, 3)
        if drop_degenerate:
            area = np.linalg.norm(_face_normals(P, F), axis=1)
            F = F[area > 1e-10]
        # consistent winding: cross(p1-p0, p2-p0) along the outward direction (as MMD models do)
        if ref is not None:
            ref = np.asarray(ref, np.float64).reshape(-1, 3)
            s = (_face_normals(P, F) * ref[F].sum(1)).sum(1)
            flip = s < 0
            F[flip] = F[flip][:, [0, 2, 1]]
        N = _smooth_normals(P, F) if normals is None else np.asarray(normals).reshape(-1, 3)
        V = len(P)
        uv = np.zeros((V, 2)) if uv is None else np.asarray(uv, np.float64).reshape(-1, 2)
        if bones is None:
            bones = np.tile([bone, 0], (V, 1))
            w0 = np.ones(V)
        bones, w0 = np.asarray(bones), np.asarray(w0, np.float64)
        if drop_degenerate:                  # drop vertices only degenerate triangles used (poles)
            used = np.zeros(V, bool)
            used[F.ravel()] = True
            if not used.all():
                remap = np.cumsum(used) - 1
                P, N, uv, bones, w0 = P[used], N[used], uv[used], bones[used], w0[used]
                F = remap[F]
                V = len(P)
        part = _Part(P, F, N, uv, material, bones, w0, name, self.count)
        self.count += V
        self.parts.append(part)
        self.by_name[name] = part
        return part


# ----------------------------------------------------------------------------- the character

B_CENTER, B_UPPER, B_NECK, B_HEAD, B_EYES, B_LEYE, B_REYE = range(7)
MATERIALS = ("肌", "服", "襟", "目", "まぶた", "睫毛", "眉", "口", "髪")


@dataclass
class SampleCharacter:
    """One generated character and the ground truth a framing test can check against.

    `chin_y` is the lowest point of the face, `head_top_y` the top of the hair cap
    (skull plus flat hair, the ahoge excluded: what THA1's author annotated by hand),
    `skull_top_y` the top of the bare skull; all in model units at the rest pose
    (mouth open does not move the chin).
    """
    model: MMDModel
    display_frames: list[DisplayFrame]
    textures: dict[str, np.ndarray] = field(default_factory=dict)   # relative path -> RGB uint8
    chin_y: float = 0.0
    head_top_y: float = 0.0
    skull_top_y: float = 0.0


def _eye_outline(u, p: _Params, side: float):
    top = 1.0 - 0.35 * u ** 2 + p.eye_tilt * u * side
    bottom = -0.9 + 0.4 * u ** 4
    return top, bottom


def _eye_map(u, v, p: _Params, side: float, lift: float):
    th = side * p.eye_th + u * p.eye_a_th
    ph = p.eye_ph + v * p.eye_a_ph
    return _on_face(th, ph, p, lift), _head_normal(th, ph, p)


def _mouth_map(u, v, p: _Params, lift: float):
    th = u * p.mouth_a_th
    ph = p.mouth_ph + v * p.mouth_a_ph
    return _on_face(th, ph, p, lift), _head_normal(th, ph, p)


def _torso_profile(y, p: _Params, y_top: float):
    """(x radius, z radius) of the body at height y (y <= y_top)."""
    d = np.clip(y_top - y, 0.0, None)
    n, W = p.neck_r * 1.12, p.shoulder_w
    t1 = np.clip(d / 0.35, 0.0, 1.0)                  # sloping from the neck ...
    t2 = np.clip((d - 0.35) / 0.6, 0.0, 1.0)          # ... to round shoulders
    rx = n + (0.7 * W - n) * t1 + 0.3 * W * np.sin(t2 * np.pi / 2) ** 0.8 - 0.15 * np.clip(d - 1.2, 0, None)
    grow = np.sin(np.clip(d / 0.6, 0.0, 1.0) * np.pi / 2) ** 0.6
    rz = p.neck_r * 1.05 + (p.body_depth - p.neck_r * 1.05) * grow
    return rx, rz


def _superellipse(a, e=2.6):
    c, s = np.cos(a), np.sin(a)
    return np.sign(c) * np.abs(c) ** (2 / e), np.sign(s) * np.abs(s) ** (2 / e)


@dataclass
class _Anchors:
    """Rest-pose landmarks the parts and bones are placed around (model units)."""
    chin_y: float              # lowest point of the bare head
    skull_top: float           # top of the bare skull
    z_neck: float              # depth of the neck's axis
    head_joint: np.ndarray     # (3,) 頭
    neck_base: np.ndarray      # (3,) 首
    upper: np.ndarray          # (3,) 上半身
    center: np.ndarray         # (3,) センター
    eye_c: np.ndarray          # (3,3) eye centres on the face: right, left, middle
    eyes_pos: np.ndarray       # (3,) 両目
    y_top: float               # top of the body (where the collar sits)


def _anchors(p: _Params, chin_y: float) -> _Anchors:
    z_neck = 0.12 * p.rz
    head_joint = np.array([0.0, chin_y + 0.12, z_neck])
    neck_base = head_joint - [0.0, p.neck_len, 0.0]
    eye_c = _on_face(np.array([-p.eye_th, p.eye_th, 0.0]), np.full(3, p.eye_ph), p, 0.0)
    return _Anchors(chin_y=chin_y, skull_top=p.cy + p.ry, z_neck=z_neck, head_joint=head_joint,
                    neck_base=neck_base, upper=neck_base - [0.0, 3.0, 0.0],
                    center=neck_base - [0.0, 8.2, 0.0], eye_c=eye_c,
                    eyes_pos=np.array([0.0, eye_c[0, 1], eye_c[0, 2]]) + [0, 0.9, -0.6],
                    y_top=neck_base[1] + 0.05)


def _add_head(b: _Builder, p: _Params) -> float:
    """The head's skin (an ellipsoid with a pointed chin); returns the chin's height."""
    th = np.linspace(-np.pi, np.pi, 61)
    ph = np.linspace(-np.pi / 2, np.pi / 2, 41)
    TH, PH = np.meshgrid(th, ph, indexing="ij")
    TH, PH = TH.T, PH.T                        # rows = latitude, cols = azimuth
    P = _head(TH, PH, p)
    b.add("head", P, _grid_tris(*TH.shape), "肌", B_HEAD, ref=P - [0, p.cy, 0],
          uv=np.stack([(TH + np.pi) / TWO_PI, 0.5 - PH / np.pi], -1))
    return float(P[..., 1].min())


def _add_neck(b: _Builder, p: _Params, a: _Anchors) -> None:
    """The neck: BDEF2 首↔頭 above the middle, 首↔上半身 below."""
    n_y = np.linspace(a.neck_base[1] - 0.45, a.head_joint[1] + 0.55, 10)
    path = np.stack([np.zeros_like(n_y), n_y, np.full_like(n_y, a.z_neck)], 1)
    P, F, R, UV = _tube(path, np.full(10, p.neck_r), np.full(10, p.neck_r * 0.92),
                        np.tile([1.0, 0, 0], (10, 1)), nseg=24, tip=False)
    t = (P[:, 1] - a.neck_base[1]) / (a.head_joint[1] - a.neck_base[1])
    upper_half = t >= 0.5
    bones = np.where(upper_half[:, None], [B_HEAD, B_NECK], [B_UPPER, B_NECK])
    w0 = np.where(upper_half, np.clip(2 * t - 1, 0, 1), np.clip(1 - 2 * t, 0, 1))
    b.add("neck", P, F, "肌", B_NECK, ref=R, uv=UV, bones=bones, w0=w0)


def _add_body(b: _Builder, p: _Params, a: _Anchors) -> None:
    """The upper body in its clothes."""
    y_top, z_neck = a.y_top, a.z_neck
    ys = y_top - np.concatenate([np.linspace(0, 0.95, 11)[:-1], np.linspace(0.95, 3.0, 8)])
    ang = np.linspace(0, TWO_PI, 49)
    sx, sz = _superellipse(ang)
    rxs, rzs = _torso_profile(ys, p, y_top)
    P = np.stack(np.broadcast_arrays(rxs[:, None] * sx[None], ys[:, None] + 0 * sx[None],
                                     rzs[:, None] * sz[None] + z_neck), -1)
    axis = np.stack(np.broadcast_arrays(0 * P[..., 0], P[..., 1], z_neck + 0 * P[..., 0]), -1)
    ref = P - axis + [0, 0.3, 0] * (np.arange(len(ys)) < 8)[:, None, None]
    b.add("body", P, _grid_tris(len(ys), len(ang)), "服", B_UPPER, ref=ref,
          uv=np.stack(np.broadcast_arrays(ang[None] / TWO_PI, np.linspace(0, 1, len(ys))[:, None]),
                      -1))


def _add_collar_and_tie(b: _Builder, p: _Params, a: _Anchors) -> None:
    """A collar ring round the neck and a tie down the front of the body."""
    y_top, z_neck = a.y_top, a.z_neck
    ang = np.linspace(0, TWO_PI, 33)
    ring_y = y_top - 0.03
    path = np.stack([np.sin(ang) * p.neck_r * 1.28, np.full_like(ang, ring_y),
                     z_neck - np.cos(ang) * p.neck_r * 1.2], 1)
    path_c = np.concatenate([path[-2:-1], path, path[1:2]])          # periodic tangent
    P, F, R, UV = _tube(path_c, np.full(35, 0.1), np.full(35, 0.07),
                        np.tile([0, 1.0, 0], (35, 1)), nseg=8, tip=False)
    keep = np.arange(1, 34)
    P, R, UV = (x.reshape(35, 9, -1)[keep].reshape(-1, x.shape[-1]) for x in (P, R, UV))
    F = _grid_tris(33, 9)
    b.add("collar", P, F, "襟", B_UPPER, ref=R, uv=UV)
    tie_y = np.linspace(ring_y - 0.05, ring_y - 1.4, 10)
    rx_t, rz_t = _torso_profile(tie_y, p, y_top)
    tie = np.stack([np.zeros(10), tie_y, z_neck - rz_t - 0.05], 1)
    tie[:, 2] = np.minimum(tie[:, 2], z_neck - p.neck_r * 1.2 - 0.05)
    width = 0.1 + 0.12 * np.sin(np.linspace(0, 1, 10) * np.pi * 0.85)
    P, F, R, UV = _tube(tie, width, np.full(10, 0.035), np.tile([1.0, 0, 0], (10, 1)), nseg=8)
    b.add("tie", P, F, "襟", B_UPPER, ref=R, uv=UV)


def _add_closable(b: _Builder, p: _Params, name, mat, side, U, v_open, v_closed, lift):
    """Add a head-bone grid in its open shape (eye-map lifted by `lift`); return its closed
    positions (the eye-close morph target)."""
    P, N = _eye_map(U, v_open, p, side, lift)
    Pc, _ = _eye_map(U, v_closed, p, side, lift)
    b.add(name, P, _grid_tris(*U.shape), mat, B_HEAD, ref=N, normals=N, drop_degenerate=False)
    return Pc


def _add_eyeball(b: _Builder, p: _Params, side: float, tag: str, bone: int) -> None:
    """The textured eye (left half of the face atlas), weighted to its eye bone."""
    u = np.linspace(-1, 1, 17)
    top, bot = _eye_outline(u, p, side)
    r = np.linspace(0, 1, 13)[:, None]
    V = top[None] + (bot - top)[None] * r
    U = np.broadcast_to(u[None], V.shape)
    P, N = _eye_map(U, V, p, side, 0.012)
    uv = np.stack([0.25 + 0.24 * U, 0.5 - 0.26 * V], -1)                # atlas: left half
    b.add("eye" + tag, P, _grid_tris(*V.shape), "目", bone, ref=N, normals=N, uv=uv,
          drop_degenerate=False)


def _add_lid(b: _Builder, p: _Params, side: float, tag: str) -> np.ndarray:
    """Skin patch folded under the lash when open, covering the eye when closed; returns
    its closed positions."""
    u = np.linspace(-1.1, 1.1, 19)
    top, bot = _eye_outline(np.clip(u, -1, 1), p, side)
    r = np.linspace(0, 1, 7)[:, None]
    U = np.broadcast_to(u[None], (7, 19))
    v_open = top[None] + 0.02 - 0.06 * r
    v_closed = top[None] + 0.05 + (bot[None] - 0.12 - top[None] - 0.05) * r
    return _add_closable(b, p, "lid" + tag, "まぶた", side, U, v_open, v_closed, 0.02)


def _add_lash(b: _Builder, p: _Params, side: float, tag: str) -> np.ndarray:
    """Upper lash: a dark band along the top of the eye, closed a curve low on the lid;
    returns its closed positions."""
    u = np.linspace(-1.15, 1.15, 19)
    top, _ = _eye_outline(np.clip(u, -1, 1), p, side)
    outer = np.clip(u * side, 0, None)
    thick = 0.16 + 0.12 * outer
    r = np.linspace(0, 1, 3)[:, None]
    U = np.broadcast_to(u[None], (3, 19))
    v_open = top[None] - 0.1 + thick[None] * r + 0.05 * outer[None] ** 2
    centre = -0.5 - 0.22 * (1 - np.clip(u, -1, 1) ** 2)
    v_closed = centre[None] + (0.09 + 0.06 * outer[None]) * (r - 0.5)
    return _add_closable(b, p, "lash" + tag, "睫毛", side, U, v_open, v_closed, 0.03)


def _add_brow(b: _Builder, p: _Params, side: float, tag: str) -> None:
    """An arched brow above the eye, thinner at its outer end."""
    u = np.linspace(-0.95, 0.95, 13)
    us = u * side                                                    # + = outer end
    r = np.linspace(0, 1, 3)[:, None]
    arc = 1.75 + 0.2 * (1 - ((us + 0.1) / 1.1) ** 2)
    w = 0.16 * (1 - 0.6 * np.clip(us, 0, 1))
    V = arc[None] + w[None] * (r - 0.5)
    U = np.broadcast_to(u[None], V.shape)
    P, N = _eye_map(U, V, p, side, 0.015)
    b.add("brow" + tag, P, _grid_tris(*V.shape), "眉", B_HEAD, ref=N, normals=N)


def _add_eyes(b: _Builder, p: _Params) -> tuple[dict, dict]:
    """Both eyes with lids, lashes and brows, left (L, x > 0) first; returns the closed
    positions of the lids and of the lashes, by side tag."""
    lid_closed, lash_closed = {}, {}
    for side, bone in ((1.0, B_LEYE), (-1.0, B_REYE)):
        tag = "L" if side > 0 else "R"
        _add_eyeball(b, p, side, tag, bone)
        lid_closed[tag] = _add_lid(b, p, side, tag)
        lash_closed[tag] = _add_lash(b, p, side, tag)
        _add_brow(b, p, side, tag)
    return lid_closed, lash_closed


def _add_mouth(b: _Builder, p: _Params) -> dict[str, np.ndarray]:
    """The mouth, a thin line when closed; returns the target positions of あ (opens it),
    い (widens it) and お (rounds it)."""
    cols, rows = 15, 9
    u = np.linspace(-1, 1, cols)[None]
    r = np.linspace(0, 1, rows)[:, None]
    U = np.broadcast_to(u, (rows, cols))
    rest_v = 0.18 * u ** 2 - 0.3 * r
    P, N = _mouth_map(U, rest_v, p, 0.012)
    uvm = np.stack(np.broadcast_arrays(0.75 + 0.22 * u, 0.04 + 0.9 * r), -1)
    b.add("mouth", P, _grid_tris(rows, cols), "口", B_HEAD, ref=N, normals=N, uv=uvm,
          drop_degenerate=False)
    prof = np.sqrt(np.clip(1 - u ** 2, 0, 1))
    mouth_shapes = {
        "あ": (U, (0.15 + 0.05 * u ** 2) + (-2.2 * prof ** 0.55 - 0.15 - 0.05 * u ** 2) * r),
        "い": (1.3 * U, (0.15 * u ** 2 + 0.05) + (-0.55 * prof - 0.05) * r),
        "お": (0.6 * U, 0.5 * prof + (-1.3 * prof - 0.5 * prof) * r),
    }
    return {k: _mouth_map(uu, vv, p, 0.012)[0] for k, (uu, vv) in mouth_shapes.items()}


def _add_hair_cap(b: _Builder, p: _Params) -> None:
    th = np.linspace(-np.pi, np.pi, 73)
    s_back = (1 - np.cos(th)) / 2
    hairline = p.hairline_front * (1 - s_back) - 0.95 * s_back ** 1.3
    rows = 22
    k = np.linspace(0, 1, rows)[:, None]
    k2 = np.concatenate([[0.0], 0.03 + 0.97 * np.linspace(0, 1, rows - 1) ** 0.9])[:, None]
    PH = hairline[None] + (np.pi / 2 - hairline[None]) * k2
    TH = np.broadcast_to(th[None], PH.shape)
    scale = np.where(k == 0, 0.985, 1.075 + 0.01 * k)
    P = _head(TH, PH, p, np.broadcast_to(scale, PH.shape))
    b.add("hair_cap", P, _grid_tris(*PH.shape), "髪", B_HEAD, ref=P - [0, p.cy, 0],
          uv=np.stack(np.broadcast_arrays(th[None] / TWO_PI * 6, 1 - k), -1))


def _add_strand(b: _Builder, p: _Params, rng: np.random.Generator, name, th_path, ph_path,
                scale_path, width, thick, extra=None, nseg=10) -> None:
    """A hair strand along the head surface (theta, phi, scale paths), continued by
    `extra(last point, last theta)` if given; draws its texture offset from `rng`."""
    Pp = _head(th_path, ph_path, p, scale_path)
    if extra is not None:
        Pp = np.concatenate([Pp, extra(Pp[-1], th_path[-1])])
    n = len(Pp)
    thp = np.concatenate([th_path, np.full(n - len(th_path), th_path[-1])])
    side_dir = np.stack([np.cos(thp), np.zeros(n), np.sin(thp)], 1)
    P, F, R, UV = _tube(Pp, width(np.linspace(0, 1, n)), thick(np.linspace(0, 1, n)),
                        side_dir, nseg=nseg)
    UV = UV * [0.3, 1.0] + [rng.uniform(0, 0.7), 0]
    b.add(name, P, F, "髪", B_HEAD, ref=R, uv=UV)


def _add_bangs(b: _Builder, p: _Params, rng: np.random.Generator) -> None:
    """Bangs over the forehead."""
    nb = p.n_bangs
    ths = np.linspace(-0.95, 0.95, nb) + rng.uniform(-0.04, 0.04, nb)
    spacing = 1.9 / (nb - 1) * p.rx
    for i in range(nb):
        s = np.linspace(0, 1, 14)
        tip = p.bang_tip_ph[i] + 0.25 * abs(ths[i]) ** 2 - 0.25 * (abs(ths[i]) > 0.8)
        th_path = ths[i] * (1 + 0.2 * s) + rng.uniform(-0.05, 0.05) * s ** 2
        ph_path = 1.15 + (tip - 1.15) * s
        sc = 1.04 + 0.07 * (1 - s ** 3)
        w0 = spacing * rng.uniform(0.55, 0.75)
        _add_strand(b, p, rng, f"bang{i}", th_path, ph_path, sc,
                    lambda v, w0=w0: w0 * (1 - v) ** 0.7 + 0.005, lambda v: 0.045 * (1 - v) + 0.01)


def _side_lock_hang(last, th_last, length, p: _Params, a: _Anchors):
    """The hanging end of a side lock: straight down to `length` below the chin, kept in
    front of the body where it passes over it."""
    y = np.linspace(last[1] - 0.25, a.chin_y - length, 9)
    out = np.stack([np.full(9, last[0]), y, np.full(9, last[2])], 1)
    out[:, 0] += np.sign(last[0]) * 0.08 * np.linspace(0, 1, 9)
    rx_b, rz_b = _torso_profile(y, p, a.y_top)
    front = a.z_neck - rz_b - 0.12
    on_body = np.abs(out[:, 0]) < rx_b + 0.1
    out[:, 2] = np.where(on_body, np.minimum(out[:, 2], front), out[:, 2])
    return out


def _add_side_locks(b: _Builder, p: _Params, rng: np.random.Generator, a: _Anchors) -> None:
    """Two locks per side over the temples, then hanging below the chin."""
    for side in (1.0, -1.0):
        for j, (th0, wl) in enumerate(((1.12, 0.28), (1.38, 0.32))):
            s = np.linspace(0, 1, 10)
            th_path = side * (th0 + 0.05 * s)
            ph_path = 1.0 + (-0.15 - 1.0) * s
            sc = 1.12 - 0.02 * s
            length = p.side_len * (1.0 if j == 0 else 0.8)
            _add_strand(b, p, rng, f"side{'LR'[side < 0]}{j}", th_path, ph_path, sc,
                        lambda v, wl=wl: wl * (1 - v) ** 0.5 + 0.01, lambda v: 0.06 * (1 - v) + 0.01,
                        extra=functools.partial(_side_lock_hang, length=length, p=p, a=a))


def _back_hair_hang(last, th_last, length, p: _Params, a: _Anchors):
    """The hanging end of a back strand: down to `length` below the chin, fanning out,
    kept behind the body."""
    y = np.linspace(last[1] - 0.3, a.chin_y - length, 9)
    out = np.stack([np.full(9, last[0]) * (1 + 0.25 * np.linspace(0, 1, 9)), y,
                    np.full(9, last[2])], 1)
    _, rz_b = _torso_profile(y, p, a.y_top)
    out[:, 2] = np.maximum(out[:, 2], a.z_neck + rz_b + 0.1)
    return out


def _add_back_hair(b: _Builder, p: _Params, rng: np.random.Generator, a: _Anchors) -> None:
    """A curtain of wide strands down the back."""
    nback = 7
    for i, t0 in enumerate(np.linspace(-1, 1, nback)):
        th0 = np.pi - t0 * 1.45
        s = np.linspace(0, 1, 10)
        th_path = np.full(10, th0)
        ph_path = 0.7 + (-0.75 - 0.7) * s
        sc = np.full(10, 1.1)
        length = p.back_len * (1 - 0.3 * abs(t0))
        _add_strand(b, p, rng, f"back{i}", th_path, ph_path, sc,
                    lambda v: 0.62 * (1 - v) ** 0.4 + 0.02, lambda v: 0.1 * (1 - v) + 0.02,
                    extra=functools.partial(_back_hair_hang, length=length, p=p, a=a), nseg=8)


def _add_twin_tails(b: _Builder, p: _Params) -> None:
    """Twin tails tied at the back of the head, hanging beside the body, with hair ties."""
    for side in (1.0, -1.0):
        root = _head(side * 1.95, 0.55, p, 1.0)
        out = np.array([side, 0.0, 0.35])
        tt = np.linspace(0, 1, 16)[:, None]
        c1 = root + out * 0.9 + [0, 0.5, 0]
        c2 = root + out * 1.1 + [0, -2.0, 0]
        end = root + out * 0.8 + [0, -3.4 - p.back_len, 0.2]
        path = ((1 - tt) ** 3 * root + 3 * (1 - tt) ** 2 * tt * c1 + 3 * (1 - tt) * tt ** 2 * c2
                + tt ** 3 * end)
        v = tt[:, 0]
        width = 0.22 + 0.3 * np.sin(np.clip(v * 2.2, 0, np.pi / 2)) * (1 - v) ** 0.8 + 0.2 * (1 - v) ** 8
        width = width * (1 - v) ** 0.5 + 0.01
        P, F, R, UV = _tube(path, width, width * 0.7, np.tile([0, 0, 1.0], (16, 1)), nseg=12)
        b.add(f"tail{'LR'[side < 0]}", P, F, "髪", B_HEAD, ref=R, uv=UV * [0.3, 1])
        # the hair tie
        ang = np.linspace(0, TWO_PI, 13)
        ring = root + out * 0.3 + np.stack([np.zeros(13), np.sin(ang) * 0.24, np.cos(ang) * 0.2], 1)
        ring_c = np.concatenate([ring[-2:-1], ring, ring[1:2]])
        P, F, R, UV = _tube(ring_c, np.full(15, 0.08), np.full(15, 0.08),
                            np.tile([0, 1.0, 0], (15, 1)), nseg=8, tip=False)
        keep = np.arange(1, 14)
        P, R = (x.reshape(15, 9, 3)[keep].reshape(-1, 3) for x in (P, R))
        b.add(f"tie{'LR'[side < 0]}", P, _grid_tris(13, 9), "襟", B_HEAD, ref=R)


def _add_ahoge(b: _Builder, p: _Params) -> None:
    """A strand sticking up from the crown."""
    root = _head(0.3, 1.3, p, 1.0)
    tt = np.linspace(0, 1, 14)[:, None]
    c1 = root + [0.05, 1.0, -0.25]
    c2 = root + [0.45, 1.15, -0.75]
    path = (1 - tt) ** 2 * root + 2 * (1 - tt) * tt * c1 + tt ** 2 * c2
    P, F, R, UV = _tube(path, 0.14 * (1 - tt[:, 0]) ** 0.6 + 0.005, 0.04 * (1 - tt[:, 0]) + 0.01,
                        np.tile([1.0, 0, 0.3], (14, 1)), nseg=8)
    b.add("ahoge", P, F, "髪", B_HEAD, ref=R, uv=UV * [0.3, 1])


@dataclass
class _Mesh:
    """The parts joined into the model's arrays (vertices in part order, triangles in
    material order)."""
    positions: np.ndarray      # (V,3) float32, quantised
    normals: np.ndarray        # (V,3) float64
    uvs: np.ndarray            # (V,2) float64
    faces: np.ndarray          # (F,3) uint32
    index_counts: dict         # material name -> face index count
    skin: np.ndarray           # (V,) uint8 SkinningType
    bone_indices: np.ndarray   # (V,4) int32
    bone_weights: np.ndarray   # (V,4) float32


def _join_parts(b: _Builder) -> _Mesh:
    order = {m: i for i, m in enumerate(MATERIALS)}
    pos = np.concatenate([pt.P for pt in b.parts])
    nor = np.concatenate([pt.N for pt in b.parts])
    uv = np.concatenate([pt.UV for pt in b.parts])
    bone2 = np.concatenate([pt.bones for pt in b.parts]).astype(np.int32)
    w0 = np.concatenate([pt.w0 for pt in b.parts])
    tri_parts = sorted(b.parts, key=lambda pt: order[pt.material])
    faces = np.concatenate([pt.F + pt.start for pt in tri_parts]).astype(np.uint32)
    counts = {m: 0 for m in MATERIALS}
    for pt in b.parts:
        counts[pt.material] += 3 * len(pt.F)

    V = len(pos)
    skin = np.where(w0 >= 1.0 - 1e-9, SkinningType.BDEF1, SkinningType.BDEF2).astype(np.uint8)
    bone_idx = np.zeros((V, 4), np.int32)
    bone_w = np.zeros((V, 4), np.float32)
    bone_idx[:, :2] = bone2
    bone_w[:, 0] = _q(w0)
    bone_w[:, 1] = 1 - bone_w[:, 0]
    bdef1 = skin == SkinningType.BDEF1
    bone_idx[bdef1, 1] = 0
    bone_w[bdef1, 1] = 0
    return _Mesh(_q(pos), nor, uv, faces, counts, skin, bone_idx, bone_w)


def _vertex_morph(b: _Builder, posq: np.ndarray, name, name_en, panel, parts_targets) -> Morph:
    """A vertex morph moving each named part to its target positions (unmoved vertices left out)."""
    idx, off = [], []
    for part_name, target in parts_targets:
        pt = b.by_name[part_name]
        d = _q(target.reshape(-1, 3)) - posq[pt.start:pt.start + len(pt.P)]
        moved = np.abs(d).max(1) > 0
        idx.append(np.nonzero(moved)[0] + pt.start)
        off.append(d[moved])
    return Morph(name, name_en, panel, MorphKind.VERTEX, np.concatenate(idx).astype(np.int32),
                 offsets=np.concatenate(off).astype(np.float32))


def _morphs(b: _Builder, p: _Params, posq: np.ndarray, lid_closed: dict, lash_closed: dict,
            mouth_targets: dict) -> list[Morph]:
    """Winks, blink (vertex or group morph) and the mouth vowels あ い お."""
    wink_r, wink_l = p.wink_names
    right = [("lidR", lid_closed["R"]), ("lashR", lash_closed["R"])]
    left = [("lidL", lid_closed["L"]), ("lashL", lash_closed["L"])]
    morphs = [
        _vertex_morph(b, posq, wink_r, "wink", MorphPanel.EYE, right),
        _vertex_morph(b, posq, wink_l, "wink_R", MorphPanel.EYE, left),
    ]
    if p.blink_group:
        morphs.append(Morph("まばたき", "blink", MorphPanel.EYE, MorphKind.GROUP,
                            np.array([0, 1], np.int32), weights=np.ones(2, np.float32)))
    else:
        morphs.append(_vertex_morph(b, posq, "まばたき", "blink", MorphPanel.EYE, right + left))
    for name, en in (("あ", "a"), ("い", "i"), ("お", "o")):
        morphs.append(_vertex_morph(b, posq, name, en, MorphPanel.MOUTH, [("mouth", mouth_targets[name])]))
    return morphs


def _bone(name, en, pos_, parent, flags, layer=0, tail=None, tail_bone=-1, append=-1) -> Bone:
    return Bone(name, en, _q(pos_), parent, layer, BoneFlag(flags),
                append_parent=append, append_weight=1.0 if append >= 0 else 0.0,
                tail_bone=tail_bone, tail_offset=_q(tail if tail is not None else np.zeros(3)))


def _bones(a: _Anchors) -> list[Bone]:
    """センター → 上半身 → 首 → 頭 → 両目, 左目, 右目 (the eyes append 両目's rotation)."""
    std = BoneFlag.ROTATABLE | BoneFlag.VISIBLE | BoneFlag.ENABLED
    return [
        _bone("センター", "center", a.center, -1, std | BoneFlag.TRANSLATABLE, tail=[0, -0.8, 0]),
        _bone("上半身", "upper body", a.upper, B_CENTER, std, tail_bone=B_NECK),
        _bone("首", "neck", a.neck_base, B_UPPER, std, tail_bone=B_HEAD),
        _bone("頭", "head", a.head_joint, B_NECK, std, tail=[0, a.skull_top - a.head_joint[1], 0]),
        _bone("両目", "eyes", a.eyes_pos, B_HEAD, std, tail=[0, 0, -0.3]),
        _bone("左目", "eye_L", a.eye_c[1], B_HEAD, std | BoneFlag.APPEND_ROTATION, layer=2,
              tail=[0, 0, -0.3], append=B_EYES),
        _bone("右目", "eye_R", a.eye_c[0], B_HEAD, std | BoneFlag.APPEND_ROTATION, layer=2,
              tail=[0, 0, -0.3], append=B_EYES),
    ]


def _material(name, en, colour, index_count, tex=None, toon=1, edge=True) -> Material:
    # as on real models: diffuse = 0.8 and ambient = 0.5 of the intended colour, so that
    # MMD's light (0.6) gives 0.98 of it and THA's Phong (0.5 + 0.5 N.L) gives 0.8
    c = np.ones(3, np.float32) if tex else np.asarray(colour, np.float32)
    diffuse = np.append(0.8 * c, 1.0)
    flags = MaterialFlag.GROUND_SHADOW | MaterialFlag.SELF_SHADOW_MAP | MaterialFlag.SELF_SHADOW
    if edge:
        flags |= MaterialFlag.EDGE
    return Material(name, en, _q(diffuse), np.full(3, 0.1, np.float32), 8.0, _q(0.5 * c),
                    flags, np.array([0.15, 0.1, 0.1, 1.0], np.float32), 0.6 if edge else 0.0,
                    tex, None, SphereMode.NONE, None, toon, 0, index_count)


def _materials(p: _Params, counts: dict) -> list[Material]:
    """One material per entry of MATERIALS, in that order, owning `counts[name]` indices."""
    skin_c = np.array(p.skin)
    hair_c = np.array(p.hair)
    materials = [
        _material("肌", "skin", skin_c, counts["肌"], toon=1),
        _material("服", "clothes", p.clothes, counts["服"], toon=3),
        _material("襟", "collar", p.accent, counts["襟"], toon=3),
        _material("目", "eyes", (1, 1, 1), counts["目"], tex=FACE_TEXTURE, toon=0, edge=False),
        _material("まぶた", "eyelids", skin_c, counts["まぶた"], toon=1, edge=False),
        _material("睫毛", "lashes", hair_c * 0.15 + 0.02, counts["睫毛"], toon=0, edge=False),
        _material("眉", "brows", hair_c * 0.5, counts["眉"], toon=0, edge=False),
        _material("口", "mouth", (1, 1, 1), counts["口"], tex=FACE_TEXTURE, toon=0, edge=False),
        _material("髪", "hair", (1, 1, 1), counts["髪"], tex=HAIR_TEXTURE, toon=2),
    ]
    start = 0
    for m in materials:
        m.index_start = start
        start += m.index_count
    return materials


def _display_frames(n_morphs: int) -> list[DisplayFrame]:
    return [
        DisplayFrame("Root", "Root", 1, [(0, B_CENTER)]),
        DisplayFrame("表情", "Exp", 1, [(1, i) for i in range(n_morphs)]),
        DisplayFrame("体(上)", "Upper body", 0, [(0, B_UPPER), (0, B_NECK), (0, B_HEAD)]),
        DisplayFrame("目", "Eyes", 0, [(0, B_EYES), (0, B_LEYE), (0, B_REYE)]),
    ]


def _add_hair(b: _Builder, p: _Params, rng: np.random.Generator, a: _Anchors) -> None:
    """Everything on the hair material beyond the cap, in a fixed order (`rng` draws depend
    on it): bangs, side locks, back hair, then twin tails and ahoge where the character has them."""
    _add_bangs(b, p, rng)
    _add_side_locks(b, p, rng, a)
    _add_back_hair(b, p, rng, a)
    if p.twin_tails:
        _add_twin_tails(b, p)
    if p.ahoge:
        _add_ahoge(b, p)


def build_sample(index: int = 0, seed: int = 0) -> SampleCharacter:
    """Build sample character `index` for `seed` (deterministic).

    Parts are added in a fixed order: it sets the vertex order and the order of the
    `rng` draws (hair strands, then the hair texture), so changing it changes the files."""
    p = _params(index, seed)
    rng = np.random.default_rng([int(seed), int(index), 0xB0B])
    b = _Builder()
    a = _anchors(p, _add_head(b, p))
    _add_neck(b, p, a)
    _add_body(b, p, a)
    _add_collar_and_tie(b, p, a)
    lid_closed, lash_closed = _add_eyes(b, p)
    mouth_targets = _add_mouth(b, p)
    _add_hair_cap(b, p)
    _add_hair(b, p, rng, a)

    mesh = _join_parts(b)
    V = len(mesh.positions)
    morphs = _morphs(b, p, mesh.positions, lid_closed, lash_closed, mouth_targets)
    model = MMDModel(
        path=Path(f"sample-{index + 1:02d}.pmx"), format=ModelFormat.PMX, version=2.0,
        name=f"サンプル{index + 1:02d}", name_en=f"thactl sample {index + 1:02d}",
        comment=f"thactl が生成したサンプルキャラクター (seed {seed}, index {index})\n"
                f"Generated by thactl (seed {seed}, index {index}); free to use.",
        positions=mesh.positions, normals=_q(mesh.normals, 20), uvs=_q(mesh.uvs, 20),
        extra_uvs=np.zeros((0, V, 4), np.float32),
        skin_type=mesh.skin, bone_indices=mesh.bone_indices, bone_weights=mesh.bone_weights,
        sdef_c=np.zeros((V, 3), np.float32), sdef_r0=np.zeros((V, 3), np.float32),
        sdef_r1=np.zeros((V, 3), np.float32), edge_scale=np.ones(V, np.float32),
        indices=mesh.faces, textures=[FACE_TEXTURE, HAIR_TEXTURE],
        materials=_materials(p, mesh.index_counts), bones=_bones(a), morphs=morphs,
    )
    textures = {FACE_TEXTURE: _face_texture(p), "tex/hair.png": _hair_texture(p, rng)}
    ys = mesh.positions[:, 1]
    head, cap = (ys[pt.start:pt.start + len(pt.P)] for pt in (b.by_name["head"], b.by_name["hair_cap"]))
    return SampleCharacter(model, _display_frames(len(morphs)), textures, chin_y=float(head.min()),
                           head_top_y=float(cap.max()), skull_top_y=float(head.max()))


# --------------------------------------------------------------------------------- textures

def _to_u8(img):
    return np.clip(np.round(np.asarray(img) * 255.0), 0, 255).astype(np.uint8)


def _face_texture(p: _Params) -> np.ndarray:
    """256x128 atlas: the eye (left half) and the inside of the mouth (right half)."""
    H, W = 128, 256
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    img = np.ones((H, W, 3))
    # eye: x in [0,128): u = (x+0.5)/128, v = (y+0.5)/128 (v=0 top)
    u = (x + 0.5) / 128.0
    v = (y + 0.5) / 128.0
    eye = np.array(p.eye)
    sclera = np.array([0.97, 0.97, 1.0]) - 0.25 * np.clip(1 - v / 0.3, 0, 1)[..., None]
    di = ((u - 0.5) / 0.37) ** 2 + ((v - 0.55) / 0.42) ** 2
    dp = ((u - 0.5) / 0.16) ** 2 + ((v - 0.57) / 0.2) ** 2
    grad = (0.45 + 0.75 * np.clip(v, 0, 1))[..., None]
    iris = np.clip(eye[None, None] * grad, 0, 1)
    iris = np.where((di > 0.78)[..., None], iris * 0.45, iris)
    pupil = eye * 0.18
    col = np.where((di <= 1)[..., None], iris, sclera)
    col = np.where((dp <= 1)[..., None], pupil, col)
    hl = ((u - 0.38) / 0.09) ** 2 + ((v - 0.36) / 0.1) ** 2 <= 1
    hl2 = ((u - 0.62) / 0.045) ** 2 + ((v - 0.72) / 0.045) ** 2 <= 1
    col = np.where((hl | hl2)[..., None], 1.0, col)
    left = x < 128
    img = np.where(left[..., None], col, img)
    # mouth: u in [128,256)
    um = (x - 128 + 0.5) / 128.0
    mouth = np.array([0.42, 0.08, 0.1]) * (0.75 + 0.35 * v)[..., None]
    tongue = ((um - 0.5) / 0.3) ** 2 + ((v - 1.0) / 0.28) ** 2 <= 1
    mouth = np.where(tongue[..., None], np.array([0.92, 0.45, 0.48]), mouth)
    img = np.where(left[..., None], img, mouth)
    return _to_u8(img)


def _hair_texture(p: _Params, rng: np.random.Generator) -> np.ndarray:
    """64x256 hair: the hair colour with streaks along v and a lighter band (angel ring)."""
    H, W = 256, 64
    v = (np.arange(H) + 0.5) / H
    u = (np.arange(W) + 0.5) / W
    phase = rng.uniform(0, TWO_PI, 3)
    streak = (0.06 * np.sin(TWO_PI * 3 * u + phase[0]) + 0.04 * np.sin(TWO_PI * 7 * u + phase[1])
              + 0.03 * np.sin(TWO_PI * 13 * u + phase[2]))
    ring = 0.22 * np.exp(-((v - 0.25) / 0.05) ** 2)
    shade = 0.92 + streak[None, :] + ring[:, None] - 0.12 * v[:, None]
    img = np.array(p.hair)[None, None] * shade[..., None] + 0.15 * ring[:, None, None]
    return _to_u8(img)


# ------------------------------------------------------------------------------------ write

def _png_bytes(rgb: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def _write_if_changed(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.read_bytes() == data:
        return
    write_bytes(path, data)


def write_samples(out_dir, count: int = 3, seed: int = 0) -> list[Path]:
    """Write `count` sample characters under `out_dir`; returns the .pmx paths.

    Layout: `out_dir/sample-NN/sample-NN.pmx` with `face.png` and `tex/hair.png`
    beside it. Files are byte-identical for the same seed; existing identical files
    are left untouched.
    """
    if count < 1:
        raise RendererError(f"sample count must be at least 1, got {count}")
    out_dir = Path(out_dir)
    paths = []
    for i in range(int(count)):
        ch = build_sample(i, seed)
        folder = out_dir / f"sample-{i + 1:02d}"
        pmx = folder / f"sample-{i + 1:02d}.pmx"
        try:
            for rel, img in ch.textures.items():
                _write_if_changed(folder / rel, _png_bytes(img))
            _write_if_changed(pmx, pmx_bytes(ch.model, ch.display_frames))
        except OSError as e:
            raise RendererError(f"{folder}: cannot write sample: {e.strerror or e}") from e
        log.info("sample %s: %d vertices, %d triangles", pmx, ch.model.vertex_count,
                 ch.model.triangle_count)
        paths.append(pmx)
    return paths
