"""The one error type of face tracking: bad input, shown to the user as one line."""
from __future__ import annotations

from core.errors import ThactlError


class TrackError(ThactlError, ValueError):
    """A video, image folder, option or tracker set-up that cannot be used (message names which)."""
