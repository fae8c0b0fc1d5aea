"""What a run writes as it goes (rank 0 only): train.log, metrics.jsonl and, when installed, TensorBoard.

metrics.jsonl holds one JSON object per line: {"split": "train"|"validation", "examples": N, ...}.
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

from .errors import TrainError


class RunLog:
    def __init__(self, out: Path, is_main: bool):
        self.out, self.is_main = Path(out), is_main
        self.metrics_file = None
        self.tb = None
        self._log_handler = None

    def attach_log_file(self) -> None:
        """Copy the thactl log lines to OUT/train.log (INFO and up)."""
        handler = logging.FileHandler(self.out / "train.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        root = logging.getLogger("thactl")
        root.addHandler(handler)
        if root.level == logging.NOTSET or root.level > logging.INFO:
            root.setLevel(logging.INFO)
        self._log_handler = handler

    def truncate_metrics(self, seen: int) -> None:
        """Drop metric lines written after the checkpoint we resume from (they will be redone)."""
        path = self.out / "metrics.jsonl"
        if not path.is_file():
            return
        keep = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("examples", 0) <= seen:
                    keep.append(line)
            except json.JSONDecodeError:
                pass  # a line cut by a hard kill
        path.write_text("".join(k + "\n" for k in keep), encoding="utf-8")

    def open_metrics(self, resuming: bool) -> None:
        """Append when resuming; a fresh run drops lines of an earlier attempt killed before its first checkpoint."""
        self.metrics_file = open(self.out / "metrics.jsonl", "a" if resuming else "w", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # noqa: BLE001 - tensorboard is optional
            return
        self.tb = SummaryWriter(str(self.out / "tensorboard"))

    def write(self, rec: dict) -> None:
        """One metrics record (floats rounded to 7 digits, a time stamp added); scalars to TensorBoard."""
        if not self.is_main:
            return
        rec = {k: (round(v, 7) if isinstance(v, float) else v) for k, v in rec.items()}
        rec["time"] = round(time.time(), 3)
        self.metrics_file.write(json.dumps(rec) + "\n")
        self.metrics_file.flush()
        if self.tb is not None:
            for k, v in rec.items():
                if isinstance(v, float) and k != "time":
                    self.tb.add_scalar(f"{rec['split']}/{k}", v, rec["examples"])

    def close(self) -> None:
        if self.metrics_file is not None:
            self.metrics_file.close()
            self.metrics_file = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self._log_handler is not None:
            logging.getLogger("thactl").removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None


class TrainMeter:
    """Loss sums over one log interval, kept on the device (one host sync per record, not per step)."""

    def __init__(self, seen: int):
        self.loss, self.parts, self.n = 0.0, {}, 0
        self.t0, self.seen0 = time.perf_counter(), seen

    def add(self, loss, parts: dict) -> None:
        self.loss = self.loss + loss.detach()
        for k, v in parts.items():
            self.parts[k] = self.parts.get(k, 0.0) + v
        self.n += 1

    def record(self, seen: int, step: int, lr: float, dev) -> dict:
        """The interval's train record (means over ranks); starts the next interval."""
        now = time.perf_counter()
        mean_loss = float(self.loss) / self.n
        if not math.isfinite(mean_loss):
            raise TrainError(f"the loss became {mean_loss} before {seen} examples; lower --lr or "
                             "use --precision fp32 (the last checkpoint is intact)")
        rec = {"split": "train", "examples": seen, "step": step, "loss": dev.mean(mean_loss),
               **{k: dev.mean(float(v) / self.n) for k, v in self.parts.items()},
               "examples_per_s": (seen - self.seen0) / max(now - self.t0, 1e-9), "lr": lr}
        self.loss, self.parts, self.n, self.t0, self.seen0 = 0.0, {}, 0, now, seen
        return rec
