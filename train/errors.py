"""Errors the training/eval code raises for bad input; cli.py turns them into one-line messages."""
from core.errors import ThactlError


class TrainError(ThactlError):
    """Base for every training/evaluation input problem (bad run folder, missing weights, ...)."""
