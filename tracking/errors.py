"""The one error type of face tracking: bad input, shown to the user as one line."""
from __future__ import annotations


class TrackError(ValueError):
    """A video, image folder, option or tracker set-up that cannot be used (message names which)."""
