"""The one model-assembly step: model file -> override -> face rig -> poser -> camera box.

Everything that turns a model file into something posable goes through
`assemble_model`: `thactl preview` (renderer.preview), model validation, the render
worker and `thactl info`. The steps run in that order, so a file that does not load
fails before its override is read, and an override that does not parse fails before
the rig is resolved; errors are the steps' own (renderer.errors.ModelLoadError and
friends, one line naming the file).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from renderer.face_rig import FaceRig, resolve_face_rig
from renderer.framing import Frame, estimate_frame
from renderer.model import MMDModel
from renderer.modelfile import load_model
from renderer.overrides import load_override
from core.pose import REST_POSE
from renderer.posing import ModelPoser


@dataclass
class AssembledModel:
    """A loaded model with its override (None when it has none) and face rig; the poser is
    created on first use."""
    model: MMDModel
    override: dict | None
    rig: FaceRig
    _poser: ModelPoser | None = field(default=None, repr=False)

    @property
    def poser(self) -> ModelPoser:
        if self._poser is None:
            self._poser = ModelPoser(self.model, self.rig)
        return self._poser

    def rest_frame(self, notes: list | None = None) -> Frame:
        """The camera box estimated from the rest pose, override keys winning
        (renderer.framing.estimate_frame; `notes` receives the framing's remarks)."""
        rest = self.poser.pose(REST_POSE)
        return estimate_frame(self.model, self.rig, rest.positions, self.override, notes=notes)


def assemble_model(model_path, overrides_file=None, models_root=None,
                   model: MMDModel | None = None) -> AssembledModel:
    """Load `model_path` (unless `model`, already loaded from it, is given), read its
    override (renderer.overrides.load_override with `overrides_file` and `models_root`)
    and resolve its face rig."""
    if model is None:
        model = load_model(model_path)
    override = load_override(model_path, overrides_file, models_root)
    return AssembledModel(model, override, resolve_face_rig(model, override))
