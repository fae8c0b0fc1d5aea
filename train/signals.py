"""Ctrl-C / SIGTERM during training: the first asks the loop to stop after this step (it then saves a
checkpoint), the second stops at once. DataLoader workers ignore SIGINT (the main process handles it)."""
from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger("thactl.train")


def ignore_sigint(_worker_id: int) -> None:
    """DataLoader worker_init_fn: Ctrl-C reaches the whole process group; only the main process acts."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class StopRequest:
    """Context manager: while inside, SIGINT/SIGTERM set `requested` (a second one raises KeyboardInterrupt).

    Outside the main thread no handler can be installed and `requested` stays False.
    """

    def __init__(self):
        self.requested = False
        self._old = None

    def _handler(self, signum, _frame) -> None:
        if self.requested:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True
        log.warning("signal %d: finishing this step, then saving a checkpoint", signum)

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for s, h in (self._old or {}).items():
            signal.signal(s, h)
        self._old = None
