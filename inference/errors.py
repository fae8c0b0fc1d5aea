"""The error base of inference/: bad input shown to the user as one line."""
from __future__ import annotations

from core.errors import ThactlError


class InferenceError(ThactlError):
    """Input to inference is unusable (message names the file and the problem)."""


class ImageInputError(InferenceError):
    """The input drawing cannot be used as it is (message names the file and the problem)."""


class WeightsInputError(InferenceError):
    """Weights folder/files missing or inconsistent."""


class MotionError(InferenceError):
    """A motion name or pose CSV file is unusable (message names the file and line)."""
