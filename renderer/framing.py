"""THA framing: the orthographic camera box, estimated from the rest-pose head.

SPEC: the head from chin to top of skull fills rows 64..191 of the image and is
centred horizontally. With `Frame(cx, cy, half)` (box centre and half-height
in model units, half-width equal) that means

    half = head_top_y - chin_y          (128 px of 256 = half the image height)
    cy   = (head_top_y + chin_y) / 2
    cx   = horizontal centre of the head

`estimate_head(model, rig, rest_positions)` -> HeadEstimate, in model units:

1. Head vertices: skinning weights on the head bone (the rig's neck tip, else 頭)
   and its descendant bones sum to >= 0.5; fewer than 8 is a RenderError.
2. Eye line: the mean of the eye bones 左目/右目 (else 両目's height, else the head
   vertices' median height; the median also when the eyes sit outside the head);
   `cx` is the eye bones' mean x, the head bone's x without them.
3. Top of skull: the head vertices above the eyes in `TOP_SLICES` horizontal slices;
   from the highest slice at least `TOP_WIDTH_FRACTION` as wide (2nd..98th
   percentile of x) as the widest, climb while slices stay `DOME_TAIL_FRACTION` as
   wide (a slice with fewer than `SPARSE_SLICE_VERTICES` vertices is judged by the
   mesh's cross-section at its middle); the top is the last such slice's upper edge.
   Accessories are left out of the slice widths: mesh pieces (connected triangles,
   coincident vertices welded) whose lowest vertex is above the eyes and that reach
   more than `ACCESSORY_RISE` x eye-to-chin above the top found without them, unless
   leaving them out puts the top less than `ACCESSORY_MIN_TOP_RATIO` x eye-to-chin
   above the eyes.
4. Chin: the lowest vertex weighted >= `CHIN_MIN_WEIGHT` to the head bones in a
   column around `cx` (half width: `CHIN_COLUMN_EYE_FRACTION` x the eye-bone spacing,
   at least `CHIN_COLUMN_HEAD_FRACTION` x the head width), in front of the head bone
   and below the eyes, counting only pieces that reach the eye line when they give
   at least 3 such vertices. No such vertex, or eye-to-chin outside
   `CHIN_RATIO_RANGE` x eye-to-top: the chin is `CHIN_FALLBACK_RATIO` x eye-to-top
   below the eyes. Chin and top on the wrong side of the eyes: both from proportions
   around the eyes.
Every fallback adds a line to `HeadEstimate.notes`.

`estimate_frame(model, rig, rest_positions, override)`: the override's `frame`
([cx, cy, half]) wins; its `chin_y` / `head_top_y` replace the estimate's (either
or both); the result is checked (finite, half > 0, top above chin; RenderError
naming the model otherwise). README (thactl preview, Camera) explains the rules
with measurements on real models.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from renderer.errors import RenderError
from renderer.skeleton import Skeleton

log = logging.getLogger("thactl.renderer")

TOP_WIDTH_FRACTION = 0.45
TOP_SLICES = 64
DOME_TAIL_FRACTION = 0.2
# accessories (module doc, step 3)
ACCESSORY_RISE = 0.3
ACCESSORY_MIN_TOP_RATIO = 1.3
WELD_FRACTION = 1e-5
# a slice with fewer vertices than this is judged by its cross-section (coarse meshes)
SPARSE_SLICE_VERTICES = 10
# chin fallback and plausibility, as (eye - chin) / (top - eye) (module doc, step 4)
CHIN_FALLBACK_RATIO = 0.55
CHIN_RATIO_RANGE = (0.25, 1.1)
CHIN_COLUMN_EYE_FRACTION = 0.3
CHIN_COLUMN_HEAD_FRACTION = 0.04
CHIN_MIN_WEIGHT = 0.75
HEAD_BONE_NAMES = ("頭",)
EYE_BONE_NAMES = (("左目", "右目"),)
BOTH_EYES_BONE = "両目"


@dataclass
class Frame:
    """Camera box: centre x, centre y and half-height in model units (half-width equal).

    Values are rounded to float32 on creation: that is what the GPU and the shard's
    `model_frame` dataset hold, so a box read back from either reproduces the camera
    bit for bit.
    """
    cx: float
    cy: float
    half: float

    def __post_init__(self) -> None:
        self.cx, self.cy, self.half = (float(np.float32(v)) for v in (self.cx, self.cy, self.half))

    def as_tuple(self) -> tuple[float, float, float]:
        return (float(self.cx), float(self.cy), float(self.half))

    @classmethod
    def from_head(cls, cx: float, chin_y: float, head_top_y: float) -> "Frame":
        if not head_top_y > chin_y:
            raise RenderError(f"head top y {head_top_y} must be above chin y {chin_y}")
        return cls(float(cx), float((head_top_y + chin_y) / 2.0), float(head_top_y - chin_y))

    def __str__(self) -> str:
        return f"{float(self.cx)!r} {float(self.cy)!r} {float(self.half)!r}"


@dataclass
class HeadEstimate:
    cx: float
    chin_y: float
    head_top_y: float
    eye_y: float
    notes: list[str]


def _descendants(model, root: int) -> np.ndarray:
    """(B,) bool: bone `root` and every bone below it (Skeleton.descendants as a mask)."""
    inside = np.zeros(len(model.bones), bool)
    inside[sorted(Skeleton(model).descendants([root]))] = True
    return inside


def _head_bone(model, rig) -> int:
    idx = getattr(rig, "neck_tip", None) if rig is not None else None
    if idx is not None and 0 <= int(idx) < len(model.bones):
        return int(idx)
    for name in HEAD_BONE_NAMES:
        i = model.bone_index(name)
        if i >= 0:
            return i
    raise RenderError(f"{model.path}: no head bone (頭) to frame the face; give 'frame' in the model's override file")


def _mesh_pieces(model, pos: np.ndarray) -> np.ndarray:
    """Connected-component label per vertex, vertices at the same position welded
    (UV and normal seams split one surface into several vertices)."""
    tri = np.asarray(model.indices, np.int64).reshape(-1, 3)
    n = len(pos)
    if len(tri) == 0:
        return np.arange(n)
    eps = WELD_FRACTION * max(float(np.ptp(pos, axis=0).max()), 1e-6)
    _, weld = np.unique(np.round(pos / eps).astype(np.int64), axis=0, return_inverse=True)
    weld = np.asarray(weld).ravel()
    t = weld[tri]
    a = np.concatenate([t[:, 0], t[:, 1]])
    b = np.concatenate([t[:, 1], t[:, 2]])
    lab = np.arange(int(weld.max()) + 1)
    # hook the larger root onto the smaller across every edge, then jump pointers
    while True:
        la, lb = lab[a], lab[b]
        diff = la != lb
        if not diff.any():
            break
        lo, hi = np.minimum(la[diff], lb[diff]), np.maximum(la[diff], lb[diff])
        np.minimum.at(lab, hi, lo)
        while True:
            nxt = lab[lab]
            if np.array_equal(nxt, lab):
                break
            lab = nxt
    return lab[weld]


def _section_widths(pos: np.ndarray, edges_ab: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Width in x of the mesh's cross-section (edges cut by the plane) at each height ys."""
    out = np.zeros(len(ys))
    if not len(edges_ab):
        return out
    p0, p1 = pos[edges_ab[:, 0]], pos[edges_ab[:, 1]]
    ylo, yhi = np.minimum(p0[:, 1], p1[:, 1]), np.maximum(p0[:, 1], p1[:, 1])
    for j, y in enumerate(ys):
        cut = (ylo <= y) & (yhi >= y) & (yhi > ylo)
        if cut.sum() >= 2:
            a, b = p0[cut], p1[cut]
            t = (y - a[:, 1]) / (b[:, 1] - a[:, 1])
            x = a[:, 0] + t * (b[:, 0] - a[:, 0])
            out[j] = float(x.max() - x.min())
    return out


def _top_of_skull(pos: np.ndarray, keep: np.ndarray, tri: np.ndarray, eye_y: float,
                  span: np.ndarray | None = None):
    """(top y, widest slice width) from the vertices `keep` by the slice rule, or None.

    The slices run from the eyes up to the highest vertex of `span` (default `keep`)."""
    ys = pos[keep if span is None else span, 1]
    if not (ys > eye_y).any():
        return None
    above = pos[keep & (pos[:, 1] > eye_y)]
    if not len(above):
        return None
    ytop_all = float(ys.max())
    edges = np.linspace(eye_y, ytop_all, TOP_SLICES + 1)
    widths = np.zeros(TOP_SLICES)
    slot = np.clip(np.searchsorted(edges, above[:, 1], side="right") - 1, 0, TOP_SLICES - 1)
    order = np.argsort(slot, kind="stable")
    xs_sorted = above[order, 0]
    bounds = np.searchsorted(slot[order], np.arange(TOP_SLICES + 1))
    for k in range(TOP_SLICES):
        xs = xs_sorted[bounds[k]:bounds[k + 1]]
        if xs.size >= 2:
            lo, hi = np.percentile(xs, [2, 98]) if xs.size >= 20 else (xs.min(), xs.max())
            widths[k] = hi - lo
    if not widths.max() > 0:
        return None
    head_w = float(widths.max())
    wide = np.flatnonzero(widths >= TOP_WIDTH_FRACTION * head_w)
    # the cap is a dome whose width shrinks toward its top, so the last wide slice
    # sits below the real top: keep climbing while the slices stay at least
    # DOME_TAIL_FRACTION as wide as the widest (an ahoge is thinner than that).
    # A slice of a coarse mesh may hold too few vertices to show its width: then the
    # width of the surface's cross-section at the slice's middle (triangle edges cut
    # there) decides.
    k = int(wide[-1])
    section = None
    while k + 1 < TOP_SLICES:
        if widths[k + 1] < DOME_TAIL_FRACTION * head_w:
            if bounds[k + 2] - bounds[k + 1] >= SPARSE_SLICE_VERTICES:
                break
            if section is None:
                t = tri[keep[tri].all(axis=1)]
                ab = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
                ab = ab[np.maximum(pos[ab[:, 0], 1], pos[ab[:, 1], 1]) > edges[k + 1]]
                section = _section_widths(pos, ab, (edges[:-1] + edges[1:]) / 2)
            if section[k + 1] < DOME_TAIL_FRACTION * head_w:
                break
        k += 1
    return float(edges[k + 1]), head_w


def estimate_head(model, rig, rest_positions: np.ndarray) -> HeadEstimate:
    """Chin y, top-of-skull y, eye y and centre x of the rest-pose head (see module doc);
    RenderError when too few vertices follow the head bone."""
    pos = np.asarray(rest_positions, np.float64)
    notes: list[str] = []
    h = _head_bone(model, rig)
    head_pos = np.asarray(model.bones[h].position, np.float64)
    in_head = _descendants(model, h)
    bi = np.asarray(model.bone_indices)
    bw = np.asarray(model.bone_weights, np.float64)
    w = (bw * in_head[np.clip(bi, 0, len(in_head) - 1)]).sum(axis=1)
    H = pos[w >= 0.5]
    if len(H) < 8:
        raise RenderError(f"{model.path}: too few vertices follow the head bone to frame the face; "
                          "give 'frame' or 'chin_y'/'head_top_y' in the model's override file")
    eye_y, cx, eye_sep = _eye_line(model, head_pos, H, notes)
    got = _HeadSearch(model, pos, w, head_pos, eye_y, cx, eye_sep).top_and_chin(notes)
    if got is not None:
        top, head_w, chin = got
    else:
        top = float(H[:, 1].max())
        head_w = float(np.ptp(H[:, 0])) or 1.0
        chin = None
        notes.append("head top from the highest head vertex")
    chin, top = _plausible_chin_and_top(chin, top, eye_y, head_w, notes)
    return HeadEstimate(cx=cx, chin_y=chin, head_top_y=top, eye_y=eye_y, notes=notes)


def _eye_line(model, head_pos: np.ndarray, H: np.ndarray, notes: list[str]):
    """(eye y, centre x, eye-bone spacing) from the eye bones, else 両目 or the head
    vertices `H`; the head vertices' median height when the eyes sit outside the head."""
    eyes = []
    for left, right in EYE_BONE_NAMES:
        li, ri = model.bone_index(left), model.bone_index(right)
        if li >= 0 and ri >= 0:
            eyes = [np.asarray(model.bones[li].position, np.float64), np.asarray(model.bones[ri].position, np.float64)]
            break
    if eyes:
        eye_y = float((eyes[0][1] + eyes[1][1]) / 2)
        cx = float((eyes[0][0] + eyes[1][0]) / 2)
        eye_sep = float(abs(eyes[0][0] - eyes[1][0]))
    else:
        b = model.bone_index(BOTH_EYES_BONE)
        eye_y = float(model.bones[b].position[1]) if b >= 0 else float(np.median(H[:, 1]))
        cx = float(head_pos[0])
        eye_sep = 0.0
        notes.append("no eye bones: eye height from " + ("両目" if b >= 0 else "the head vertices' median"))
    if eye_y < head_pos[1] - 1e-6 or eye_y >= H[:, 1].max():
        notes.append("eye bones not inside the head; using the head vertices' median height")
        eye_y = float(np.median(H[:, 1]))
    return eye_y, cx, eye_sep


class _HeadSearch:
    """Top of skull and chin of one rest-pose mesh, given its head weights `w` and eye line."""

    def __init__(self, model, pos, w, head_pos, eye_y: float, cx: float, eye_sep: float):
        self.pos, self.head_pos, self.eye_y, self.cx, self.eye_sep = pos, head_pos, eye_y, cx, eye_sep
        self.piece = piece = _mesh_pieces(model, pos)
        npieces = int(piece.max()) + 1
        piece_low = np.full(npieces, np.inf)
        np.minimum.at(piece_low, piece, pos[:, 1])
        self.piece_high = np.full(npieces, -np.inf)
        np.maximum.at(self.piece_high, piece, pos[:, 1])
        self.head = w >= 0.5
        self.floating = self.head & (piece_low[piece] > eye_y)      # pieces starting above the eyes
        self.F = pos[w >= CHIN_MIN_WEIGHT]
        # the face's own mesh reaches the eyes; small pieces below them (a headset's
        # microphone in front of the mouth) are not the chin
        self.face_piece = (self.piece_high[piece] >= eye_y)[w >= CHIN_MIN_WEIGHT]
        self.tri = np.asarray(model.indices, np.int64).reshape(-1, 3)

    def top_and_chin(self, notes: list[str]):
        """(top, widest slice width, chin or None) with accessories left out, or None."""
        got = self._top_and_chin(self.head)
        if got is None or not self.floating.any():
            return got
        base = self._top_and_chin(self.head & ~self.floating)   # the head without such pieces
        if base is None:
            return got
        chin_ref = base[2] if base[2] is not None else got[2]
        if chin_ref is None or not chin_ref < self.eye_y:
            return got
        rise = ACCESSORY_RISE * (self.eye_y - chin_ref)
        accessory = self.floating & (self.piece_high[self.piece] > base[0] + rise)
        # the slices still reach the highest head vertex; accessory vertices leave their widths
        alt = self._top_and_chin(self.head & ~accessory, self.head) if accessory.any() else None
        if alt is not None and alt[0] < got[0] - 1e-9 and alt[2] is not None \
                and alt[0] - self.eye_y >= ACCESSORY_MIN_TOP_RATIO * (self.eye_y - alt[2]):
            notes.append(f"top of skull {alt[0]:.4g} leaves out {int(accessory.sum())} vertices of "
                         f"pieces above the eyes (accessories) that reach {got[0]:.4g}")
            return alt
        return got

    def _top_and_chin(self, keep, span=None):
        """(top, widest slice width, chin or None) from the vertices `keep`, or None."""
        got = _top_of_skull(self.pos, keep, self.tri, self.eye_y, span)
        if got is None:
            return None
        top, head_w = got
        F, eye_y = self.F, self.eye_y
        col = max(CHIN_COLUMN_EYE_FRACTION * self.eye_sep, CHIN_COLUMN_HEAD_FRACTION * head_w)
        sel = (np.abs(F[:, 0] - self.cx) <= col) & (F[:, 2] <= self.head_pos[2]) & (F[:, 1] < eye_y)
        if (sel & self.face_piece).sum() >= 3:
            sel &= self.face_piece
        chin = float(F[sel, 1].min()) if sel.sum() >= 3 else None
        return top, head_w, chin


def _plausible_chin_and_top(chin, top: float, eye_y: float, head_w: float, notes: list[str]):
    """(chin, top) with the fallbacks: no chin, chin/top on the wrong side of the eyes, or
    eye-to-chin outside CHIN_RATIO_RANGE x eye-to-top."""
    if chin is None:
        chin = eye_y - CHIN_FALLBACK_RATIO * (top - eye_y)
        notes.append("chin from the eye height (no face vertices in front below the eyes)")
    if not (chin < eye_y < top):
        notes.append("implausible chin/top estimate; using proportions around the eyes")
        span = max(top - eye_y, head_w * 0.5, 1e-3)
        top = eye_y + span
        chin = eye_y - CHIN_FALLBACK_RATIO * span
    else:
        ratio = (eye_y - chin) / (top - eye_y)
        if not CHIN_RATIO_RANGE[0] <= ratio <= CHIN_RATIO_RANGE[1]:
            # e.g. a neck skinned entirely to the head bone drags the "chin" down to the collar
            notes.append(f"chin estimate implausible (eye-to-chin {ratio:.2f} x eye-to-top); "
                         f"using {CHIN_FALLBACK_RATIO} x eye-to-top below the eyes — set chin_y in the override")
            chin = eye_y - CHIN_FALLBACK_RATIO * (top - eye_y)
    return chin, top


def estimate_frame(model, rig, rest_positions: np.ndarray, override: dict | None = None,
                   notes: list | None = None) -> Frame:
    """Camera box for `model` from its REST-pose vertices; override keys win (see module doc).

    `notes`, when given, receives human-readable remarks about fallbacks the estimate used.
    """
    override = override or {}
    fr = override.get("frame")
    if fr is not None:
        try:
            cx, cy, half = (float(v) for v in fr)
        except (TypeError, ValueError) as e:
            raise RenderError(f"{model.path}: override 'frame' must be [cx, cy, half], got {fr!r}") from e
        if not half > 0:
            raise RenderError(f"{model.path}: override 'frame' half-height must be > 0, got {half}")
        return Frame(cx, cy, half)
    chin_o, top_o = override.get("chin_y"), override.get("head_top_y")
    if chin_o is not None and top_o is not None:
        try:
            est_cx = estimate_head(model, rig, rest_positions).cx
        except RenderError:
            est_cx = 0.0
        return _checked(model, _from_head(model, est_cx, chin_o, top_o))
    est = estimate_head(model, rig, rest_positions)
    for n in est.notes:
        log.info("%s: framing: %s", model.path, n)
        if notes is not None:
            notes.append(f"framing: {n}")
    chin = chin_o if chin_o is not None else est.chin_y
    top = top_o if top_o is not None else est.head_top_y
    return _checked(model, _from_head(model, est.cx, chin, top))


def _from_head(model, cx, chin, top) -> Frame:
    try:
        chin, top = float(chin), float(top)
    except (TypeError, ValueError) as e:
        raise RenderError(f"{model.path}: override chin_y/head_top_y must be numbers, got {chin!r}/{top!r}") from e
    if not top > chin:
        raise RenderError(f"{model.path}: head top y {top:g} must be above chin y {chin:g} "
                          "(check chin_y / head_top_y in the model's override)")
    return Frame.from_head(cx, chin, top)


def _checked(model, frame: Frame) -> Frame:
    if not (np.isfinite([frame.cx, frame.cy, frame.half]).all() and frame.half > 0):
        raise RenderError(f"{model.path}: bad camera box {frame}")
    return frame
