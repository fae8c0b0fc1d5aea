"""Per-model checks before any data is written; a failed check is a rejection with a reason.

A model is accepted when:
  1. it loads (renderer.modelfile.load_model) and its override (if any) is valid and does
     not exclude it (`"exclude": "reason"`);
  2. its face rig is complete (FaceRig.problems() empty: neck root and tip bones,
     eye-closing morphs (a wink pair or a both-eyes morph), a mouth-open morph);
  3. a camera box can be estimated (or is given by the override);
  4. a quick low-resolution probe render (PROBE_SIZE px, no AA) shows that
     - the head is visible in the middle strip,
     - each eye morph changes pixels inside the head strip, above the pixels the
       mouth morph changes, and a one-eye morph changes mostly the correct half of
       the face (the character's left eye is on the image's right),
     - the mouth morph changes pixels inside the head strip,
     - rotating the head (head_y = 1) changes pixels.
A morph that moves nothing visible would silently produce wrong examples, so
it is a rejection, not a warning.

Every model that loads also gets a geometry fingerprint (`mesh_fingerprint`, stored as
`ModelCheck.mesh`), used to keep copies of one mesh in different folders in one split
(see dataset.discover.mesh_groups for what counts as "the same mesh").
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger("thactl.dataset")

PROBE_SIZE = 128
#: a pixel "changed" when some channel moved by more than this (uint8 units)
DIFF_THRESHOLD = 8
#: minimum changed pixels inside the head strip, as a fraction of the image
MIN_CHANGED_FRACTION = 2.0 / (128 * 128)
#: one-eye morphs: reject when more than this share of the change is on the wrong half
WRONG_SIDE_SHARE = 0.8
VALIDATION_VERSION = 4          # 4: ModelCheck.format/neck/decided, override "exclude"
#: vertices kept (by index, evenly spaced) to compare two meshes of identical topology
MESH_PROBE_VERTICES = 64
#: rest positions are quantised to this fraction of the largest bounding-box side
MESH_QUANTUM = 1e-3


def _digest(*arrays: np.ndarray) -> str:
    import hashlib

    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:20]


def mesh_fingerprint(positions: np.ndarray, indices: np.ndarray) -> dict:
    """A cheap geometry fingerprint of a model's rest mesh (vectorised; a few ms).

    - `shape`: hash of the SET of rest positions, each quantised to MESH_QUANTUM of the
      largest bounding-box side after moving the box corner to the origin, so it ignores
      vertex and face order, duplicated vertices (material splits), textures, materials,
      bones and morphs, and a uniform scale or translation of the whole model;
    - `topology`: hash of the vertex count and the SET of triangles (each as its sorted
      vertex indices): equal for a model whose vertices were moved but not re-indexed
      (an edited variant);
    - `probe`: MESH_PROBE_VERTICES rest positions (evenly spaced vertex indices),
      centred on the median position and divided by the median distance from it, so
      two meshes of equal topology can be
      compared (dataset.discover.same_mesh).
    """
    p = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    f = np.asarray(indices, dtype=np.int64).reshape(-1, 3)
    out = dict(vertices=int(len(p)), triangles=int(len(f)), shape="", topology="", probe=[])
    if len(p) == 0 or not np.isfinite(p).all():
        return out
    lo = p.min(axis=0)
    side = float((p.max(axis=0) - lo).max())
    step = side * MESH_QUANTUM if side > 0 else 1.0
    q = np.unique(np.rint((p - lo) / step).astype(np.int64), axis=0)
    out["shape"] = _digest(q)
    tri = np.unique(np.sort(f, axis=1), axis=0) if len(f) else np.zeros((0, 3), np.int64)
    out["topology"] = _digest(np.array([len(p)], np.int64), tri)
    c = p - np.median(p, axis=0)            # medians: a few edited vertices barely move them
    r = float(np.median(np.linalg.norm(c, axis=1))) or 1.0
    pick = np.unique(np.linspace(0, len(p) - 1, MESH_PROBE_VERTICES).round().astype(np.int64))
    out["probe"] = np.round(c[pick] / r, 4).tolist()
    return out


@dataclass
class ModelCheck:
    rel_path: str
    ok: bool
    reason: str = ""
    sha256: str = ""
    frame: list[float] | None = None
    one_eye_morphs: bool = False
    morphs: dict = field(default_factory=dict)     # which morph names were used
    notes: list[str] = field(default_factory=list)
    mesh: dict | None = None                        # mesh_fingerprint(); None if it did not load
    format: str = ""                                # "PMX 2.0", "PMD 1.0"; "" if it did not load
    neck: dict = field(default_factory=dict)        # {"root": bone name, "tip": bone name}
    decided: dict = field(default_factory=dict)     # morph/bone key -> "override" | "geometry" | "name"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "ModelCheck":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (np.abs(a.astype(np.int16) - b.astype(np.int16)) > DIFF_THRESHOLD).any(axis=-1)


def _strip(mask: np.ndarray) -> np.ndarray:
    """The mask restricted to the head strip (rows S/4 .. 3S/4, a little margin)."""
    s = mask.shape[0]
    out = np.zeros_like(mask)
    lo, hi = s // 4 - s // 16, 3 * s // 4 + s // 16
    out[max(lo, 0):min(hi, s)] = mask[max(lo, 0):min(hi, s)]
    return out


def probe_images(scene, poser, frame, poses: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: scene.render(poser.pose(p), frame, ambient=1.0) for k, p in poses.items()}


def check_probe(imgs: dict[str, np.ndarray], one_eye: bool, frame_cx_col: float | None = None) -> list[str]:
    """Problems found in probe renders (keys: rest, left_eye, right_eye, both_eyes, mouth, head_y)."""
    rest = imgs["rest"]
    s = rest.shape[0]
    problems = []
    visible = _strip(rest[..., 3] > 0).sum()
    if visible < 0.05 * s * s:
        return ["probe render: the head is not visible in the middle of the image (framing failed?)"]
    need = max(2, int(MIN_CHANGED_FRACTION * s * s))
    centre = s / 2.0 if frame_cx_col is None else frame_cx_col
    keys = ["left_eye", "right_eye"] if one_eye else ["both_eyes"]
    rows: dict[str, float] = {}
    for key in ["mouth"] + keys:
        m = _strip(_changed(rest, imgs[key]))
        n = int(m.sum())
        what = key.replace("_", " ")
        if n < need:
            problems.append(f"the {what} morph changes no pixels of the face in a probe render "
                            f"({n} px changed)")
            continue
        rows[key] = float(np.nonzero(m)[0].mean())
        if key != "mouth" and "mouth" in rows and rows[key] >= rows["mouth"]:
            problems.append(f"the {what} morph changes the face at or below the mouth "
                            "(not an eye morph?)")
            continue
        if key in ("left_eye", "right_eye"):
            cols = np.nonzero(m)[1] + 0.5
            # character's left eye (+x) is on the image's right (larger column)
            wrong = (cols < centre).mean() if key == "left_eye" else (cols > centre).mean()
            if wrong > WRONG_SIDE_SHARE:
                problems.append(f"the {what} morph changes mostly the other eye "
                                f"({wrong:.0%} of the change on the wrong side)")
    if int(_changed(rest, imgs["head_y"]).sum()) < 4 * need:
        problems.append("rotating the neck (head_y = 1) barely changes the image; neck bones do not move the head")
    return problems


def validate_model(path: Path, rel_path: str, probe_rc, overrides_file=None, models_root=None,
                   sha256: str = "") -> ModelCheck:
    """Run every check on one model (needs a GL RenderContext `probe_rc`); never raises for a
    bad model, returns a rejection instead."""
    from renderer.assembly import assemble_model
    from core.errors import typed_first_line
    from renderer.errors import RendererError

    res = ModelCheck(rel_path, False, sha256=sha256)
    model = _load_for_check(path, res)
    if model is None:
        return res
    try:
        assembled = assemble_model(path, overrides_file, models_root, model=model)
        _record_rig(res, model, assembled)
        override, probs = assembled.override, assembled.rig.problems()
        if override and override.get("exclude"):
            res.reason = f"excluded: {override['exclude']}"
            return res
        if probs:
            res.reason = "; ".join(probs)
            return res
        probs = _probe(res, probe_rc, model, assembled)
        if probs:
            res.reason = "; ".join(probs)
            return res
    except RendererError as e:
        res.reason = _strip_path(str(e), path)
        return res
    except Exception as e:  # noqa: BLE001
        log.debug("validation of %s failed", rel_path, exc_info=True)
        res.reason = typed_first_line(e)
        return res
    res.ok = True
    return res


def _load_for_check(path: Path, res: ModelCheck):
    """The model at `path`, with its format and mesh fingerprint recorded in `res`; None (and
    `res.reason` set) when it cannot be loaded."""
    from core.errors import typed_first_line
    from renderer.errors import RendererError
    from renderer.modelfile import load_model

    try:
        model = load_model(path)
    except RendererError as e:
        res.reason = "cannot load: " + _strip_path(str(e), path)
        return None
    except Exception as e:  # noqa: BLE001 - any failure on a user's file is a rejection
        res.reason = f"cannot load: {typed_first_line(e)}"
        return None
    res.format = f"{model.format.value.upper()} {model.version:.1f}"
    try:
        res.mesh = mesh_fingerprint(model.positions, model.indices)
    except Exception:  # noqa: BLE001 - a fingerprint is never a reason to reject
        log.debug("mesh fingerprint of %s failed", res.rel_path, exc_info=True)
    return model


def _record_rig(res: ModelCheck, model, assembled) -> None:
    """Notes, the chosen morphs' names and how the rig was chosen, into `res`."""
    rig = assembled.rig
    res.notes = [str(n) for n in (rig.notes or [])] + [str(w) for w in model.warnings]
    res.one_eye_morphs = bool(rig.has_one_eye_morphs)
    res.morphs = {key: (model.morphs[i].name if i is not None else None)
                  for key in ("left_eye", "right_eye", "both_eyes", "mouth")
                  for i in [getattr(rig, key)]}
    _describe_rig(res, model, rig, assembled.override or {})


def _probe_poses(one_eye_morphs: bool) -> dict[str, np.ndarray]:
    """The poses rendered to check that each morph and the head rotation change the image."""
    from core.pose import REST_POSE

    poses = {"rest": REST_POSE}
    if one_eye_morphs:
        poses["left_eye"] = np.array([0, 0, 0, 1, 0, 1], np.float32)
        poses["right_eye"] = np.array([0, 0, 0, 0, 1, 1], np.float32)
    else:
        poses["both_eyes"] = np.array([0, 0, 0, 1, 1, 1], np.float32)
    poses["mouth"] = np.array([0, 0, 0, 0, 0, 0], np.float32)
    poses["head_y"] = np.array([0, 1, 0, 0, 0, 1], np.float32)
    return poses


def _probe(res: ModelCheck, probe_rc, model, assembled) -> list[str]:
    """Frame the model (recorded in `res`), render the probe poses and return the problems."""
    frame = assembled.rest_frame(notes=res.notes)
    res.frame = [float(frame.cx), float(frame.cy), float(frame.half)]
    with probe_rc.prepare(model, "phong") as scene:
        imgs = probe_images(scene, assembled.poser, frame, _probe_poses(res.one_eye_morphs))
        if scene.textures.missing:
            res.notes.append(f"{len(scene.textures.missing)} texture(s) missing or refused "
                             f"(material colour used): {', '.join(scene.textures.missing[:4])}")
    return check_probe(imgs, res.one_eye_morphs)


def _describe_rig(res: ModelCheck, model, rig, override: dict) -> None:
    """Record the neck bones and how each morph and bone of the rig was chosen: "override"
    (named in the override), "geometry" (a wink whose side was measured) or "name"."""
    res.neck = {k: (model.bones[i].name if i is not None and i >= 0 else None)
                for k, i in (("root", rig.neck_root), ("tip", rig.neck_tip))}
    for key in ("left_eye", "right_eye", "both_eyes", "mouth", "neck_root", "neck_tip"):
        if key in override:
            res.decided[key] = "override"
        elif key in ("left_eye", "right_eye"):
            res.decided[key] = "geometry" if getattr(rig, key) is not None else "name"
        else:
            res.decided[key] = "name"
    if "frame" in override or "chin_y" in override or "head_top_y" in override:
        res.decided["frame"] = "override"
    else:
        res.decided["frame"] = "geometry"


def _strip_path(msg: str, path: Path) -> str:
    """Drop a leading '<path>: ' from an error message (the manifest names the model already)."""
    for p in (str(path), path.as_posix()):
        if msg.startswith(p + ": "):
            return msg[len(p) + 2:]
    return msg
