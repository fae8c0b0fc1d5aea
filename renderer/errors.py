"""Errors the renderer package raises for bad input; cli.py turns them into one-line messages."""


class RendererError(Exception):
    """Base for every input/environment problem reported to the user without a traceback."""


class ModelLoadError(RendererError):
    """A model file cannot be read; the message names the file and the problem."""


class RenderError(RendererError):
    """A model cannot be rendered (GL failure, absurd texture, ...)."""


class ContextError(RendererError):
    """No OpenGL context could be created (missing Mesa EGL, no GPU driver)."""


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of `exc`'s message, cut to `limit` characters; the exception's type
    name when the message is empty."""
    text = str(exc)
    if not text:
        return type(exc).__name__
    line = text.splitlines()[0]
    return line if limit is None else line[:limit]


def typed_first_line(exc: BaseException, limit: int | None = None) -> str:
    """`<TypeName>: <first line of the message>` (nothing after the colon when the message
    is empty)."""
    return f"{type(exc).__name__}: {first_line(exc, limit) if str(exc) else ''}"
