"""Ctrl-C / SIGTERM during training: the first asks the loop to stop after this step (it then saves a
checkpoint and exits), a second Ctrl-C stops at once.

Who sends what: Ctrl-C, `timeout` and `kill -- -PGID` signal the whole process group, so the
DataLoader workers get the signal as well; torchrun forwards SIGTERM (or SIGINT) with
`os.killpg` to each rank's own process group, which again holds that rank's loader workers. A
worker that died of it would make the main process fail with "DataLoader worker ... killed by
signal" before it could save anything, so workers ignore both signals (`ignore_stop_signals`)
and only the main process acts. Repeated SIGTERMs (a launcher and a process manager both
forwarding one) do not cut the checkpoint short; a process manager's SIGKILL still does.
"""
from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger("thactl.train")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def ignore_stop_signals(_worker_id: int) -> None:
    """DataLoader worker_init_fn: SIGINT and SIGTERM are the main process's to handle (see above).

    Until it runs, a forked worker carries the main process's StopRequest handler, which only sets
    a flag in the worker's own copy: a signal in that window is harmless too. A worker whose main
    process is gone exits by itself (torch's watchdog), so nothing is left running.
    """
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)


class StopRequest:
    """Context manager: while inside, SIGINT/SIGTERM set `requested`; a second SIGINT raises
    KeyboardInterrupt (stop now), a second SIGTERM is only logged.

    Outside the main thread no handler can be installed and `requested` stays False.
    """

    def __init__(self):
        self.requested = False
        self._old = None

    def _handler(self, signum, _frame) -> None:
        if self.requested:
            if signum == signal.SIGINT:  # second Ctrl-C: stop now
                raise KeyboardInterrupt
            log.warning("signal %d again: still finishing the step and saving the checkpoint", signum)
            return
        self.requested = True
        log.warning("signal %d: finishing this step, then saving a checkpoint", signum)

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handler) for s in STOP_SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, h in (self._old or {}).items():
            signal.signal(s, h)
        self._old = None
