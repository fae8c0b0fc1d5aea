"""The run folder's state: the one owner of config.json, checkpoint.pt and the exported weights.

Run folder (OUT):
  config.json              the resolved settings (written once; a re-run must match it)
  checkpoint.pt            model, optimizer, GradScaler, RNG states, examples seen (atomic writes)
  <kind>.safetensors       exported weights (models.io format), refreshed at every checkpoint

A run resumes from checkpoint.pt at the saved position with the saved RNG states, so an
interrupted run ends with the same weights as an uninterrupted one (CPU, same thread count).
"""
from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from renderer import atomicfile
from renderer.errors import first_line

from .config import TrainConfig, resume_conflicts
from .errors import TrainError

log = logging.getLogger("thactl.train")

CHECKPOINT_FORMAT = "thactl-checkpoint"
CONFIG_FILE = "config.json"


def read_run_config(run_dir: str | Path) -> dict | None:
    """The settings a run folder was started with (its config.json), or None when absent or unreadable."""
    try:
        data = json.loads((Path(run_dir) / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def recorded_loss(sources: list[str | Path], kind: str) -> str:
    """The loss ("l1", "perceptual") recorded by the first run folder among `sources` (folders or files
    in them) that trained a `kind`; "l1" when none says."""
    for src in sources:
        p = Path(src)
        data = read_run_config(p if p.is_dir() else p.parent)
        if data is not None and data.get("kind") in (None, kind):
            return str(data.get("loss", "l1"))
    return "l1"


def _rng_state() -> dict:
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(st["cuda"])
        except RuntimeError:  # a different number of GPUs than when saved
            pass


def load_init_state(path: str, kind: str) -> dict:
    """Weights to start from (--init): a run folder, a checkpoint.pt or a .safetensors file."""
    from models.io import WeightsError, load_weights

    p = Path(path)
    if p.is_dir() and (p / "checkpoint.pt").is_file() and not (p / f"{kind}.safetensors").is_file():
        p = p / "checkpoint.pt"
    if p.suffix == ".pt":
        if not p.is_file():
            raise TrainError(f"{p}: --init checkpoint not found")
        ck = torch.load(p, map_location="cpu", weights_only=False)
        if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT or ck.get("kind") != kind:
            raise TrainError(f"{p}: not a thactl {kind} checkpoint")
        return ck["model"]
    try:
        return load_weights(p, kind).state_dict()
    except WeightsError as e:
        raise TrainError(str(e)) from None


class RunState:
    """Creates, resumes and saves one run folder. `resume` is the checkpoint found there (None: fresh)."""

    def __init__(self, cfg: TrainConfig, dev):
        self.cfg, self.dev = cfg, dev
        self.out = Path(cfg.out)
        self.ckpt_path = self.out / "checkpoint.pt"
        self.weights_path = self.out / f"{cfg.kind}.safetensors"
        self.resume = self._load_checkpoint()

    def _load_checkpoint(self) -> dict | None:
        if not self.ckpt_path.is_file():
            return None
        try:
            ck = torch.load(self.ckpt_path, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001
            raise TrainError(f"{self.ckpt_path}: unreadable checkpoint ({e}); delete it to start over") from None
        if ck.get("format") != CHECKPOINT_FORMAT or ck.get("kind") != self.cfg.kind:
            raise TrainError(f"{self.ckpt_path}: not a thactl {self.cfg.kind} checkpoint")
        diffs = resume_conflicts(ck["config"], self.cfg)
        if diffs:
            raise TrainError(f"{self.ckpt_path}: the run was started with other settings ({'; '.join(diffs)}); "
                             "use the same options or a new --out folder")
        return ck

    def create_folder(self) -> None:
        """OUT and OUT/samples; config.json for a fresh run (rank 0 only)."""
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "samples").mkdir(exist_ok=True)
        if self.resume is None:
            atomicfile.write_text(self.out / CONFIG_FILE, json.dumps(self.cfg.as_dict(), indent=2) + "\n")

    def init_weights(self, model: nn.Module) -> None:
        """A fresh run with --init starts from those weights."""
        cfg = self.cfg
        if self.resume is not None or not cfg.init:
            return
        try:
            model.load_state_dict(load_init_state(cfg.init, cfg.kind))
        except RuntimeError as e:
            raise TrainError(f"{cfg.init}: weights do not fit this {cfg.kind}: {first_line(e)}") from None
        log.info("initialised from %s", cfg.init)

    def restore(self, model: nn.Module, optimizer) -> tuple[int, int]:
        """Load the checkpoint's model, optimizer, GradScaler and RNG states; (examples seen, step), (0, 0) when fresh."""
        ck = self.resume
        if ck is None:
            return 0, 0
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        if self.dev.scaler is not None and ck.get("scaler"):
            self.dev.scaler.load_state_dict(ck["scaler"])
        _set_rng_state(ck["rng"])
        return int(ck["examples_seen"]), int(ck["step"])

    def save(self, model: nn.Module, optimizer, seen: int, step: int) -> None:
        """Checkpoint (atomic) and exported weights at `seen` examples (rank 0; all ranks meet after)."""
        if self.dev.is_main:
            from models.io import unwrap

            state = {"format": CHECKPOINT_FORMAT, "version": 1, "kind": self.cfg.kind,
                     "config": self.cfg.as_dict(), "model": unwrap(model).state_dict(),
                     "optimizer": optimizer.state_dict(),
                     "scaler": self.dev.scaler.state_dict() if self.dev.scaler is not None else None,
                     "rng": _rng_state(), "examples_seen": seen, "step": step,
                     "order": {"seed": self.cfg.seed, "position": seen}}
            with atomicfile.atomic_path(self.ckpt_path) as tmp:
                torch.save(state, tmp)
            self.export(model)
            log.info("checkpoint at %d examples", seen)
        self.dev.barrier()

    def export(self, model: nn.Module) -> None:
        if self.dev.is_main:
            from models.io import save_weights
            save_weights(model, self.weights_path)

    def summary(self, seen: int, step: int) -> dict:
        return {"examples": seen, "steps": step, "out": str(self.out), "weights": str(self.weights_path)}
