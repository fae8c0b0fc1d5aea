"""How many CPU threads torch uses in training, evaluation and the benches: one rule for all.

torch's default is one thread per core. On a machine that also runs other jobs those threads wait on
each other: on a 2-core box with one other busy process a morpher step took 5x longer with 2 threads
than with 1 (docs/train.md). So the default takes the cores that are not busy when the run starts:

    threads = max(1, cores // local processes - round(1-minute load average / local processes))

where cores are those this process may run on (its CPU affinity) and local processes the torchrun
processes on this machine (LOCAL_WORLD_SIZE, 1 without torchrun). `--threads N` overrides it, and so
does OMP_NUM_THREADS when set (the usual way to pin threads; a run resumed under the same setting then
repeats its arithmetic exactly, whatever the load).
"""
from __future__ import annotations

import os


def available_cores() -> int:
    """The cores this process may run on (its affinity; os.cpu_count() where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads(cores: int | None = None, load: float | None = None, local_processes: int | None = None) -> int:
    """The rule of the module docstring; the arguments default to this machine's figures."""
    cores = available_cores() if cores is None else cores
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = 0.0
    if local_processes is None:
        local_processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    share = max(1, cores // local_processes)
    return max(1, share - round(load / local_processes))


def set_threads(requested: int | None = None) -> int:
    """Set torch's intra-op thread count to `requested`, else OMP_NUM_THREADS when set, else
    default_threads(); returns it."""
    import torch

    if requested is None and os.environ.get("OMP_NUM_THREADS", "").strip().isdigit():
        requested = int(os.environ["OMP_NUM_THREADS"])
    n = default_threads() if requested is None else requested
    if n < 1:
        raise ValueError(f"--threads must be at least 1 (got {n})")
    torch.set_num_threads(n)
    return n
