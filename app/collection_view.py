"""The model page's view of the collection: a background scan with `thactl models check`'s code
(dataset.collection.check_collection in worker processes), the results as they arrive, and the
filtered, paged listing the page shows. Given a pose schema, the scan then finds each loadable model's
parameters (dataset.schemacheck.schema_coverage: geometry only, no rendering) and the listing gives
its coverage {"found": n, "size": P}.
"""
from __future__ import annotations

import logging
import os
import re
import threading
from collections import Counter
from pathlib import Path

from dataset.collection import CheckSettings, check_collection, check_record, discover_with_hashes
from dataset.modelcheck import ModelCheck
from core.errors import first_line

log = logging.getLogger("thactl.app")

STATUSES = ("all", "usable", "rejected", "doubtful", "overridden")
MAX_PAGE = 200
#: rig notes that only say which morph was chosen (not a doubt)
INFO_NOTE_PREFIXES = ("left eye:", "right eye:")


def reason_kind(reason: str) -> str:
    """The kind of a rejection reason, for the by-reason filter: its first clause without
    counts and quoted names ("cannot load", "excluded", "the mouth morph changes no pixels...")."""
    if not reason:
        return ""
    for prefix in ("cannot load", "excluded"):
        if reason.startswith(prefix):
            return prefix
    first = reason.split(";")[0]
    first = re.sub(r"\s*\([^)]*\)", "", first)
    first = re.sub(r"'[^']*'|\"[^\"]*\"", "…", first)
    return first.strip()[:120]


def doubts(c: ModelCheck) -> list[str]:
    """Why a usable model is doubtful: its remarks worth a look (a framing fallback, a one-sided
    blink morph, missing textures, a loader warning); [] for a rejected model."""
    return [n for n in c.notes if not n.startswith(INFO_NOTE_PREFIXES)] if c.ok else []


def is_doubtful(c: ModelCheck) -> bool:
    """Usable, but with a remark worth a look (see doubts)."""
    return bool(doubts(c))


def record(c: ModelCheck) -> dict:
    """A check as the page shows it: check_record plus status, doubtful (and why), overridden
    and the reason's kind."""
    rec = check_record(c)
    rec.update(status="usable" if c.ok else "rejected", doubtful=is_doubtful(c), doubts=doubts(c),
               overridden=is_overridden(c), reason_kind=reason_kind(c.reason))
    return rec


def is_overridden(c: ModelCheck) -> bool:
    return "override" in c.decided.values() or c.reason.startswith("excluded")


def default_scan_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 2) - 1))


class CollectionView:
    def __init__(self, models: Path, overrides: Path | None, workers: int | None = None, schema=None):
        self.cfg = CheckSettings(Path(models), overrides, workers=workers or default_scan_workers(),
                                 processes=True)
        self.schema = schema                # a core.poseschema.PoseSchema, or None (tha1: no coverage)
        self.coverage: dict[str, dict] = {}     # rel_path -> {"found": n, "size": P}
        self._lock = threading.Lock()
        self.sources: dict = {}             # rel_path -> ModelSource (discovery order)
        self.checks: dict[str, ModelCheck] = {}
        self.state = "starting"
        self.error = ""
        self.todo = 0
        self._thread: threading.Thread | None = None

    # -- scanning
    def start(self) -> None:
        self._thread = threading.Thread(target=self._scan, name="thactl-scan", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.state in ("done", "failed")

    def _scan(self) -> None:
        try:
            with self._lock:
                self.state = "discovering"
            found = discover_with_hashes(self.cfg)
            with self._lock:
                self.sources = {m.rel_path: m for m in found}
                self.state = "checking"

            def todo(n: int) -> None:
                self.todo = n

            for c in check_collection(self.cfg, found, on_todo=todo):
                with self._lock:
                    self.checks[c.rel_path] = c
            if self.schema is not None:
                self._cover(found)
            with self._lock:
                self.state = "done"
        except Exception as e:  # noqa: BLE001 - shown on the page; the server keeps serving
            log.warning("model scan failed: %s", e)
            with self._lock:
                self.state, self.error = "failed", first_line(e)

    def _cover(self, found: list) -> None:
        from dataset.schemacheck import schema_coverage

        with self._lock:
            self.state = "finding parameters"
        for rec in schema_coverage(found, self.schema, self.cfg.overrides, self.cfg.models):
            if "bindings" in rec:
                self.set_coverage(rec["path"], [b["how"] for b in rec["bindings"]])

    def set_coverage(self, rel: str, hows: list[str]) -> None:
        """Record a model's coverage from how each schema parameter was found (renderer.schema_rig)."""
        with self._lock:
            self.coverage[rel] = {"found": sum(h != "missing" for h in hows), "size": len(hows)}

    def update(self, c: ModelCheck) -> None:
        with self._lock:
            self.checks[c.rel_path] = c

    # -- queries
    def source(self, rel: str):
        with self._lock:
            return self.sources.get(rel)

    def status(self) -> dict:
        with self._lock:
            checks = list(self.checks.values())
            total = len(self.sources)
        n_ok = sum(c.ok for c in checks)
        return {"state": self.state, "error": self.error, "total": total, "checked": len(checks),
                "usable": n_ok, "rejected": len(checks) - n_ok, "to_validate": self.todo,
                "doubtful": sum(is_doubtful(c) for c in checks),
                "overridden": sum(is_overridden(c) for c in checks),
                "reasons": Counter(reason_kind(c.reason) for c in checks if not c.ok).most_common(50)}

    def listing(self, status: str = "all", reason: str = "", q: str = "", offset: int = 0,
                limit: int = 50) -> dict:
        """One page of models (discovery order) matching the filters; models not checked yet
        are listed as "pending" under "all" only."""
        limit = max(1, min(MAX_PAGE, limit))
        q = q.lower()
        with self._lock:
            rels = list(self.sources)
            checks = dict(self.checks)
            coverage = dict(self.coverage)
        keep = []
        for rel in rels:
            c = checks.get(rel)
            if q and q not in rel.lower():
                continue
            if not _matches(c, status, reason):
                continue
            keep.append(rel)
        items = []
        for rel in keep[offset:offset + limit]:
            c = checks.get(rel)
            item = {"path": rel, "status": "pending"} if c is None else record(c)
            if self.schema is not None:
                item["coverage"] = coverage.get(rel)
            items.append(item)
        return {"total": len(keep), "offset": offset, "limit": limit, "items": items}


def _matches(c: ModelCheck | None, status: str, reason: str) -> bool:
    if c is None:
        return status == "all" and not reason
    if reason and reason_kind(c.reason) != reason:
        return False
    return (status == "all" or (status == "usable" and c.ok) or (status == "rejected" and not c.ok)
            or (status == "doubtful" and is_doubtful(c)) or (status == "overridden" and is_overridden(c)))
