"""Errors the dataset package raises for bad input; cli.py turns them into one-line messages."""
from core.errors import ThactlError


class DatasetError(ThactlError):
    """Base for every dataset input problem reported to the user without a traceback."""


class ShardError(DatasetError):
    """A shard is missing, truncated, corrupt or of the wrong format; names the file."""
