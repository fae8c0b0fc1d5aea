"""The run folder's state: the one owner of config.json, checkpoint.pt and the exported weights.

Run folder (OUT):
  config.json              the resolved settings (written once; a re-run must match it)
  checkpoint.pt            model, optimizer, GradScaler, RNG states, examples seen (atomic writes)
  <kind>.safetensors       exported weights (models.io format), refreshed at every checkpoint; the
                           metadata records the examples trained (those of --init's weights, when
                           recorded, plus this run's) and whether they started from released weights

A run resumes from checkpoint.pt at the saved position with the saved RNG states, so an
interrupted run ends with the same weights as an uninterrupted one (CPU, same thread count).
"""
from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core import atomicfile
from core.errors import first_line

from models.io import TrainingRecord

from .config import TrainConfig, resolve_grid_convention, resolve_morpher_options, resume_conflicts
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


def load_init_state(path: str, kind: str) -> tuple[dict, dict, TrainingRecord]:
    """Weights to start from (--init), the network config they were trained with and their training
    record: a run folder, a thactl checkpoint.pt, a .safetensors file, or THA1's released file (or a
    folder of them)."""
    from models.io import WeightsError, find_in_folder, load_weights, training_record

    p = Path(path)
    if p.is_dir() and (p / "checkpoint.pt").is_file() and find_in_folder(p, kind) is None:
        p = p / "checkpoint.pt"
    if p.name == "checkpoint.pt" or (p.suffix == ".pt" and p.is_file() and _is_thactl_checkpoint(p)):
        if not p.is_file():
            raise TrainError(f"{p}: --init checkpoint not found")
        ck = torch.load(p, map_location="cpu", weights_only=False)
        if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT or ck.get("kind") != kind:
            raise TrainError(f"{p}: not a thactl {kind} checkpoint")
        record = _start_record(ck).after(int(ck.get("examples_seen", 0)))
        if kind == "rotator":
            return ck["model"], {"grid_convention": ck.get("config", {}).get("grid_convention") or "thactl"}, record
        return ck["model"], (morpher_options_of(ck["model"]) if kind == "morpher" else {}), record
    try:
        net = load_weights(p, kind)
        record = training_record(p, kind)
    except WeightsError as e:
        raise TrainError(str(e)) from None
    return net.state_dict(), dict(net.config), record


def _start_record(ck: dict) -> TrainingRecord:
    """The training record of the weights a checkpoint's run started from (runs written before
    the record: none, i.e. from scratch)."""
    return TrainingRecord(**ck.get("start_training", {"examples": 0}))


def morpher_options_of(state: dict) -> dict[str, bool]:
    """pose_film and unet of the morpher whose parameters `state` holds, read from their names
    (checkpoints written before these options were in config.json lack them)."""
    keys = list(state)
    return {"pose_film": any(".film." in k for k in keys), "unet": any(k.startswith("body.downs.") for k in keys)}


def _is_thactl_checkpoint(path: Path) -> bool:
    """True unless the .pt file is a plain state_dict of tensors (THA1's released files are)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - holds more than tensors: a thactl checkpoint (or not a weight file)
        return True
    return not all(isinstance(v, torch.Tensor) for v in state.values()) if isinstance(state, dict) else True


class RunState:
    """Creates, resumes and saves one run folder. `resume` is the checkpoint found there (None: fresh)."""

    def __init__(self, cfg: TrainConfig, dev):
        self.cfg, self.dev = cfg, dev
        self.out = Path(cfg.out)
        self.ckpt_path = self.out / "checkpoint.pt"
        self.weights_path = self.out / f"{cfg.kind}.safetensors"
        self.resume = self._load_checkpoint()
        self.init_state = None
        self.start_training = TrainingRecord(examples=0)  # of the weights this run started from
        self.schema = None  # the data's pose schema (core.poseschema), recorded in the weight file
        self.seen = 0
        if self.resume is None:
            init_config = None
            if cfg.init:
                self.init_state, init_config, self.start_training = load_init_state(cfg.init, cfg.kind)
            resolve_grid_convention(cfg, None, init_config)
            resolve_morpher_options(cfg, init_config)
        else:
            self.start_training = _start_record(self.resume)

    def _load_checkpoint(self) -> dict | None:
        if not self.ckpt_path.is_file():
            return None
        try:
            ck = torch.load(self.ckpt_path, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001
            raise TrainError(f"{self.ckpt_path}: unreadable checkpoint ({e}); delete it to start over") from None
        if ck.get("format") != CHECKPOINT_FORMAT or ck.get("kind") != self.cfg.kind:
            raise TrainError(f"{self.ckpt_path}: not a thactl {self.cfg.kind} checkpoint")
        resolve_grid_convention(self.cfg, ck["config"], None)
        if self.cfg.kind == "morpher":  # options left out continue the checkpoint's network
            for key, value in morpher_options_of(ck["model"]).items():
                if ck["config"].get(key) is None:
                    ck["config"][key] = value
            resolve_morpher_options(self.cfg, ck["config"])
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
        if self.init_state is None:
            return
        try:
            model.load_state_dict(self.init_state)
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
        self.seen = int(ck["examples_seen"])
        return self.seen, int(ck["step"])

    def save(self, model: nn.Module, optimizer, seen: int, step: int) -> None:
        """Checkpoint (atomic) and exported weights at `seen` examples (rank 0; all ranks meet after)."""
        if self.dev.is_main:
            from models.io import unwrap

            state = {"format": CHECKPOINT_FORMAT, "version": 1, "kind": self.cfg.kind,
                     "config": self.cfg.as_dict(), "model": unwrap(model).state_dict(),
                     "optimizer": optimizer.state_dict(),
                     "scaler": self.dev.scaler.state_dict() if self.dev.scaler is not None else None,
                     "rng": _rng_state(), "examples_seen": seen, "step": step,
                     "order": {"seed": self.cfg.seed, "position": seen},
                     "start_training": asdict(self.start_training)}
            with atomicfile.atomic_path(self.ckpt_path) as tmp:
                torch.save(state, tmp)
            self.seen = seen
            self.export(model)
            log.info("checkpoint at %d examples", seen)
        self.dev.barrier()

    def export(self, model: nn.Module) -> None:
        """OUT/<kind>.safetensors with the training record at the last checkpoint's examples seen."""
        if self.dev.is_main:
            from models.io import save_weights, schema_metadata
            meta = self.start_training.after(self.seen).metadata() | schema_metadata(self.schema)
            save_weights(model, self.weights_path, extra_metadata=meta)

    def summary(self, seen: int, step: int) -> dict:
        return {"examples": seen, "steps": step, "out": str(self.out), "weights": str(self.weights_path)}
