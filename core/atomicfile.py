"""THE atomic file write: write under a temporary name in the same folder, then rename.

A file (or folder) is written as `.<name>.<host>-<pid>.tmp` beside its final
name and moved there with os.replace only once complete, so a reader never sees
a half-written file under the final name, and processes on different hosts
sharing a disk never write the same temporary name.  `temp_glob(name)` matches
the temporaries of `name` left by any process (a killed run's leftovers).
`durable=True` also fsyncs the file before the rename and, where the platform
allows, the folder after it.  Standard library only.
"""
from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def _host_tag() -> str:
    return socket.gethostname().replace(".", "_").replace("/", "_") or "host"


def temp_path(path: str | Path) -> Path:
    """The temporary name this process writes `path` under: `.<name>.<host>-<pid>.tmp`."""
    path = Path(path)
    return path.with_name(f".{path.name}.{_host_tag()}-{os.getpid()}.tmp")


def temp_glob(name: str) -> str:
    """Glob pattern matching the temporaries of the file `name` from any host and process."""
    return f".{name}.*.tmp"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp: str | Path, path: str | Path, durable: bool = False) -> Path:
    """Move the complete temporary `tmp` to `path` (replacing it); returns `path`."""
    tmp, path = Path(tmp), Path(path)
    if durable:
        _fsync(tmp)
    os.replace(tmp, path)
    if durable:
        try:  # make the rename itself durable
            _fsync(path.parent)
        except OSError:
            pass
    return path


def discard(tmp: str | Path) -> None:
    """Delete a temporary file if it exists."""
    Path(tmp).unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | Path, durable: bool = False) -> Iterator[Path]:
    """Yield the temporary name to write `path` under; on a clean exit it is moved to `path`,
    on an exception it is deleted (and `path` keeps what it held)."""
    tmp = temp_path(path)
    try:
        yield tmp
        commit(tmp, path, durable)
    finally:
        discard(tmp)


def write_bytes(path: str | Path, data: bytes, durable: bool = False) -> Path:
    """Atomically replace `path`'s content with `data`; returns `path`."""
    with atomic_path(path, durable) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str, durable: bool = False) -> Path:
    """Atomically replace `path`'s content with `text` encoded as UTF-8; returns `path`."""
    return write_bytes(path, text.encode("utf-8"), durable)


def write_json(path: str | Path, obj: Any, indent: int = 1, durable: bool = False) -> Path:
    """Atomically write `obj` as UTF-8 JSON (non-ASCII kept as is) ending in a newline."""
    return write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n", durable)
