"""THA framing: the orthographic camera box, estimated from the rest-pose head.

SPEC: the head from chin to top of skull fills rows 64..191 of the image and is
centred horizontally. With `Frame(cx, cy, half)` (box centre and half-height
in model units, half-width equal) that means

    half = head_top_y - chin_y          (128 px of 256 = half the image height)
    cy   = (head_top_y + chin_y) / 2
    cx   = horizontal centre of the head

How the chin and the top of the skull are estimated (rest pose, model units):

1. Head vertices: vertices whose skinning weights on the head bone (頭, the
   rig's neck tip) and its descendant bones (eyes, hair, ahoge, ribbons...)
   sum to >= 0.5.
2. Eye height and centre: the eye bones (左目/右目, else 両目) when present,
   else the head bone; the centre x is the mean of the two eye bones' x (the
   head bone's x otherwise).
3. Top of skull: the head vertices above the eyes are cut into thin horizontal
   slices; a slice counts as skull/flat hair when its width (2nd..98th
   percentile of x) is at least `TOP_WIDTH_FRACTION` (45 %) of the widest
   slice. From the highest such slice the estimate climbs on through the
   slices that stay at least `DOME_TAIL_FRACTION` (20 %) as wide (the rounded
   top of the hair cap) and stops at the first thinner one; the top is that
   slice's upper edge. A thin ahoge (or any narrow strand pointing up) is
   ignored while a flat or rounded hair cap is kept.
4. Chin: the lowest vertex weighted >= 0.75 to the head bones in a narrow
   column around the centre x (half width = 0.3 x the eye-bone spacing, at
   least 4 % of the head width), in front of the head bone (z below it: the
   character faces -z) and below the eyes. The neck's top ring (blended
   between neck and head) and the jaw's sides stay out of that column. When
   eye-to-chin is not 0.25..1.1 times eye-to-top (0.35..0.71 on every test
   model), the chin is set to 0.55 x eye-to-top below the eyes and a note says so.
   Long hair hanging below the chin is either behind the head bone or outside
   the column, so it does not count. When the column holds nothing, the chin
   falls back to eye_y - 0.75·(top - eye_y).
5. The estimate is checked for sanity (the chin below the eyes, the top above);
   per-model override keys `chin_y`, `head_top_y` (either or both) or `frame`
   ([cx, cy, half]) replace it, and `thactl preview` prints the box used.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from renderer.errors import RenderError

log = logging.getLogger("thactl.renderer")

TOP_WIDTH_FRACTION = 0.45
TOP_SLICES = 64
DOME_TAIL_FRACTION = 0.2
# (eye - chin) / (top - eye): 0.35 .. 0.71 on the real test models and the samples.
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
    parents = np.array([b.parent for b in model.bones], np.int64)
    inside = np.zeros(len(parents), bool)
    inside[root] = True
    # parents may appear after children in the list: iterate to a fixed point
    for _ in range(len(parents)):
        valid = parents >= 0
        grow = valid & ~inside
        grow[valid] &= inside[parents[valid]]
        if not grow.any():
            break
        inside |= grow
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


def estimate_head(model, rig, rest_positions: np.ndarray) -> HeadEstimate:
    """Chin y, top-of-skull y, eye y and centre x of the rest-pose head (see module doc)."""
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

    # --- top of skull: highest wide slice above the eyes
    above = H[H[:, 1] > eye_y]
    ytop_all = float(above[:, 1].max()) if len(above) else float(H[:, 1].max())
    edges = np.linspace(eye_y, ytop_all, TOP_SLICES + 1)
    widths = np.zeros(TOP_SLICES)
    if len(above):
        slot = np.clip(np.searchsorted(edges, above[:, 1], side="right") - 1, 0, TOP_SLICES - 1)
        order = np.argsort(slot, kind="stable")
        xs_sorted = above[order, 0]
        bounds = np.searchsorted(slot[order], np.arange(TOP_SLICES + 1))
        for k in range(TOP_SLICES):
            xs = xs_sorted[bounds[k]:bounds[k + 1]]
            if xs.size >= 2:
                lo, hi = np.percentile(xs, [2, 98]) if xs.size >= 20 else (xs.min(), xs.max())
                widths[k] = hi - lo
    if widths.max() > 0:
        head_w = float(widths.max())
        wide = np.flatnonzero(widths >= TOP_WIDTH_FRACTION * head_w)
        top = float(edges[wide[-1] + 1])
        # the cap is a dome whose width shrinks toward its top, so the last wide slice
        # sits below the real top: keep climbing while the slices stay at least
        # DOME_TAIL_FRACTION as wide as the widest (an ahoge is thinner than that).
        k = int(wide[-1])
        while k + 1 < TOP_SLICES and widths[k + 1] >= DOME_TAIL_FRACTION * head_w:
            k += 1
        top = float(edges[k + 1])
    else:
        top = ytop_all
        head_w = float(np.ptp(H[:, 0])) or 1.0
        notes.append("head top from the highest head vertex")

    # --- chin: lowest head vertex in a narrow front column below the eyes
    col = max(CHIN_COLUMN_EYE_FRACTION * eye_sep, CHIN_COLUMN_HEAD_FRACTION * head_w)
    F = pos[w >= CHIN_MIN_WEIGHT]
    sel = (np.abs(F[:, 0] - cx) <= col) & (F[:, 2] <= head_pos[2]) & (F[:, 1] < eye_y)
    if sel.sum() >= 3:
        chin = float(F[sel, 1].min())
    else:
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
    return HeadEstimate(cx=cx, chin_y=chin, head_top_y=top, eye_y=eye_y, notes=notes)


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
