"""The error base of thactl and one-line messages from exceptions (standard library only).

Every package's bad-input error derives from `ThactlError` (renderer's `RendererError`, dataset's
`DatasetError`, train's `TrainError`, inference's `InferenceError`, tracking's `TrackError`); cli.py
shows any of them as one line, without a traceback.
"""


class ThactlError(Exception):
    """Base for every input or environment problem reported to the user as one line."""


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
