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
from core.pose import POSE_INDEX, REST_POSE, pose_problem


def _rest_with(**values: float) -> tuple[float, ...]:
    """The rest pose with some values changed (by name)."""
    pose = REST_POSE.tolist()
    for name, v in values.items():
        pose[POSE_INDEX[name]] = float(v)
    return tuple(pose)


SHEET_POSES: tuple[tuple[str, tuple[float, ...]], ...] = (
    ("rest", _rest_with()),
    ("left eye closed", _rest_with(left_eye=1)),
    ("right eye closed", _rest_with(right_eye=1)),
    ("mouth closed", _rest_with(mouth=0)),
    ("both eyes closed", _rest_with(left_eye=1, right_eye=1)),
    ("head_x +1 (up)", _rest_with(head_x=1)),
    ("head_x -1 (down)", _rest_with(head_x=-1)),
    ("head_y +1", _rest_with(head_y=1)),
    ("head_y -1", _rest_with(head_y=-1)),
    ("neck_z +1", _rest_with(neck_z=1)),
    ("neck_z -1", _rest_with(neck_z=-1)),
)


def check_pose(pose) -> np.ndarray:
    """A validated (6,) float32 pose vector, or RenderError saying what is wrong
    (core.pose.pose_problem)."""
    problem = pose_problem(pose)
    if problem:
        raise RenderError(f"bad pose: {problem}")
    return np.asarray(pose, np.float32)


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



def schema_sheet_poses(schema) -> list[tuple[str, np.ndarray]]:
    """The cells of `thactl preview --schema NAME --sheet`: the schema's rest pose, then each
    parameter alone at its extreme (renderer.schema_rig.extreme), labelled with its name and value."""
    from renderer.schema_rig import extreme

    cells = [("rest", schema.rest.copy())]
    for i, name in enumerate(schema.names):
        pose = schema.rest.copy()
        pose[i] = extreme(schema, i)
        cells.append((f"{name} {pose[i]:+g}", pose))
    return cells


def render_schema_preview(model_path, schema, poses, size: int = 256, shading: str = "phong", frame=None,
                          aa: int = 4, ambient: float = 0.5, overrides_file=None) -> PreviewResult:
    """As render_preview for poses of a pose schema (core.poseschema): each parameter drives what
    renderer.schema_rig bound it to; a parameter the model lacks stays at rest, its label says
    "(missing)", and the notes say how every parameter was decided."""
    from renderer.assembly import assemble_model
    from renderer.schema_rig import resolve_schema_rig

    for label, p in poses:
        problem = schema.problem(p)
        if problem:
            raise RenderError(f"bad pose: {problem}")
    assembled = assemble_model(model_path, overrides_file or None)
    rig = resolve_schema_rig(assembled.model, schema, assembled.override, assembled.rig)
    notes = [f"{b.name}: {b.how} {b.detail}".rstrip() for b in rig.bindings]
    frame = assembled.rest_frame(notes=notes) if frame is None else Frame(*(float(v) for v in frame))
    missing = {b.name for b in rig.bindings if not b.found}
    labels = [label + (" (missing)" if label.split(" ")[0] in missing else "") for label, _ in poses]
    images = []
    with RenderContext(size=size, aa=aa) as rc, rc.prepare(assembled.model, shading) as scene:
        for _, p in poses:
            images.append(scene.render(rig.pose(assembled.poser, p), frame, ambient=ambient))
    return PreviewResult(images, labels, frame, notes)
