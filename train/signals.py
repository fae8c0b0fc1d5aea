"""Ctrl-C / SIGTERM during training: the first asks the loop to stop after this step (it then saves a
checkpoint and exits), a second Ctrl-C stops at once.

Who sends what: Ctrl-C, `timeout` and `kill -- -PGID` signal the whole process group, and
torchrun forwards SIGTERM (or SIGINT) with `os.killpg` to each rank's own process group. A
DataLoader worker in that group would die of it and make the main process fail with
"DataLoader worker ... killed by signal" before it could save anything. So each worker moves to
a process group of its own (`detach_worker`): only the main process gets the group's signals.
Workers still end as torch designed: through the loader's shutdown, by SIGTERM addressed to them
(multiprocessing's terminate(), also at interpreter exit) or, if the main process dies, by
torch's watchdog within seconds. (Ignoring SIGTERM in the workers instead made exit hang: at
interpreter exit multiprocessing terminates daemonic workers and joins them without a timeout.)
Repeated SIGTERMs (a launcher and a process manager both forwarding one) do not cut the
checkpoint short; a process manager's SIGKILL still does.
"""
from __future__ import annotations

import logging
import os
import signal
import threading

log = logging.getLogger("thactl.train")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def detach_worker(_worker_id: int) -> None:
    """DataLoader worker_init_fn: leave the main process's process group (see above), ignore SIGINT,
    and die of a SIGTERM addressed to the worker, as multiprocessing expects.

    A forked worker starts with the main process's StopRequest handler, which only sets a flag in
    the worker's own copy: harmless for a group signal before this runs, but it would make the
    worker survive terminate(), so SIGTERM goes back to its default here.
    """
    try:
        os.setpgid(0, 0)
    except OSError as e:  # pragma: no cover - a session leader cannot; Linux workers never are
        log.debug("DataLoader worker stays in its parent's process group: %s", e)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


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
