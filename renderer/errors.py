"""Errors the renderer package raises for bad input; cli.py turns them into one-line messages."""
from core.errors import ThactlError


class RendererError(ThactlError):
    """Base for every input/environment problem reported to the user without a traceback."""


class ModelLoadError(RendererError):
    """A model file cannot be read; the message names the file and the problem."""


class RenderError(RendererError):
    """A model cannot be rendered (GL failure, absurd texture, ...)."""


class ContextError(RendererError):
    """No OpenGL context could be created (missing Mesa EGL, no GPU driver)."""
