"""Preview renders: one model, a few poses, the camera box it used (`thactl preview`; the labelled
contact sheet of such renders is core.imagegrid.contact_sheet).

`render_preview(model_path, [(label, pose6), ...])` loads the model, applies its
override, resolves the face rig, estimates the camera box from the rest pose (unless
`frame` is given) and renders each pose; `PreviewResult.notes` holds the face rig's
notes and problems and the framing's fallbacks. `SHEET_POSES` are the poses of
`thactl preview --sheet`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from renderer.errors import RenderError
from renderer.framing import Frame
from renderer.offscreen import RenderContext
from core.pose import out_of_range

SHEET_POSES: tuple[tuple[str, tuple[float, ...]], ...] = (
    ("rest", (0, 0, 0, 0, 0, 1)),
    ("left eye closed", (0, 0, 0, 1, 0, 1)),
    ("right eye closed", (0, 0, 0, 0, 1, 1)),
    ("mouth closed", (0, 0, 0, 0, 0, 0)),
    ("both eyes closed", (0, 0, 0, 1, 1, 1)),
    ("head_x +1 (up)", (1, 0, 0, 0, 0, 1)),
    ("head_x -1 (down)", (-1, 0, 0, 0, 0, 1)),
    ("head_y +1", (0, 1, 0, 0, 0, 1)),
    ("head_y -1", (0, -1, 0, 0, 0, 1)),
    ("neck_z +1", (0, 0, 1, 0, 0, 1)),
    ("neck_z -1", (0, 0, -1, 0, 0, 1)),
)


def check_pose(pose) -> np.ndarray:
    """A validated (6,) float32 pose vector (SPEC ranges), or RenderError."""
    p = np.asarray(pose, np.float32).reshape(-1)
    if p.shape != (6,) or not np.isfinite(p).all():
        raise RenderError(f"pose must be 6 finite numbers (head_x head_y neck_z left_eye right_eye mouth), got {list(p)}")
    if out_of_range(p).any():
        raise RenderError(f"pose out of range: head values must be in [-1, 1], eye/mouth values in [0, 1]; got {' '.join(f'{v:g}' for v in p)}")
    return p


@dataclass
class PreviewResult:
    images: list[np.ndarray]
    labels: list[str]
    frame: Frame
    notes: list[str]


def render_preview(model_path, poses, size: int = 256, shading: str = "phong", frame=None, aa: int = 4,
                   ambient: float = 0.5, overrides_file=None, supersample: int = 1) -> PreviewResult:
    """Load a model, resolve its face rig and camera box, render each (label, pose6)."""
    from renderer.assembly import assemble_model

    poses = [(label, check_pose(p)) for label, p in poses]
    assembled = assemble_model(model_path, overrides_file or None)
    model, rig, poser = assembled.model, assembled.rig, assembled.poser
    notes = list(rig.notes) + list(rig.problems())
    if frame is None:
        frame = assembled.rest_frame(notes=notes)
    else:
        frame = Frame(*(float(v) for v in frame))
        if not frame.half > 0:
            raise RenderError(f"--frame half-height must be > 0, got {frame.half}")
    images = []
    with RenderContext(size=size, aa=aa, supersample=supersample) as rc, rc.prepare(model, shading) as scene:
        for _, p in poses:
            images.append(scene.render(poser.pose(p), frame, ambient=ambient))
    return PreviewResult(images, [label for label, _ in poses], frame, notes)

