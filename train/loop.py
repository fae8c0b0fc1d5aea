"""The training loop shared by the three networks: budget in examples seen, exact resume,
validation, metrics, progress bar, devices and DDP.

The pieces live beside it: config.py (settings), runstate.py (run folder, config.json,
checkpoints), data.py (splits, example order, each rank's batches), tasks.py (what differs per
network), validation.py (metrics and sample grids), runlog.py (train.log, metrics.jsonl),
signals.py (Ctrl-C, SIGTERM), device.py (device, precision, DDP collectives).
"""
from __future__ import annotations

import contextlib
import logging
import sys

import torch

from .config import TrainConfig, resolve
from .data import image_size_of, open_datasets, train_loader, worker_batches
from .device import Device, setup_device
from .runlog import RunLog, TrainMeter
from .runstate import RunState
from .signals import StopRequest
from .tasks import make_task
from .validation import Validator

log = logging.getLogger("thactl.train")

__all__ = ["TrainConfig", "Trainer", "train"]


def _crossed(prev: int, now: int, every: int) -> bool:
    return every > 0 and prev // every != now // every


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def set_postfix(self, **kw) -> None:
        pass


class Trainer:
    def __init__(self, cfg: TrainConfig, dev: Device, train_ds=None, val_ds=None):
        """`train_ds` / `val_ds`: datasets to use instead of opening `cfg.data` (items as ShardDataset's)."""
        self.cfg, self.dev = cfg, dev
        self._given = (train_ds, val_ds)
        self.runlog = RunLog(cfg.out, dev.is_main)

    def run(self) -> dict:
        """Set up, train, save. From here on SIGINT/SIGTERM ask for a stop (signals.py): the loop
        finishes its step (under DDP the ranks agree on it), the checkpoint is saved under the same
        handler, so a repeated SIGTERM cannot cut it short, and KeyboardInterrupt reports the stop."""
        try:
            with StopRequest() as self.stop:
                return self._run()
        finally:
            self.runlog.close()

    def _run(self) -> dict:
        cfg = self.cfg
        train_ds, seen, step = self._setup()
        if seen == 0 and self.state.resume is None:
            self.validate(self.model, seen)
        if seen >= cfg.examples:
            log.info("%s already holds %d of %d examples; nothing to train", self.state.out, seen, cfg.examples)
            self.state.export(self.model)
            return self.state.summary(seen, step)
        seen, step, stopped = self._train(train_ds, seen, step)
        self.state.save(self.model, self.optimizer, seen, step)
        if stopped:
            msg = f"stopped at {seen} of {cfg.examples} examples; checkpoint saved in {self.state.out}; " \
                  "re-run the same command to continue"
            log.warning(msg)
            raise KeyboardInterrupt(msg)
        self.validate(self.model, seen)
        return self.state.summary(seen, step)

    def _train(self, train_ds, seen: int, step: int) -> tuple[int, int, bool]:
        """Steps from `seen` until the budget or a stop request: (examples seen, step, stopped)."""
        cfg, dev, task, optimizer, model = self.cfg, self.dev, self.task, self.optimizer, self.train_model
        loader = train_loader(train_ds, cfg, dev, seen)
        meter = TrainMeter(seen)
        stop = self.stop
        with self._progress_bar(seen) as bar, worker_batches(loader) as batches:
            model.train()
            for batch in batches:
                loss, parts = task.step(model, batch, dev, seen)
                optimizer.zero_grad(set_to_none=True)
                dev.backward_step(loss, optimizer)
                prev, seen, step = seen, seen + cfg.batch_size, step + 1
                done = seen >= cfg.examples
                meter.add(loss, parts)
                bar.update(cfg.batch_size)
                if _crossed(prev, seen, cfg.log_every) or done:
                    rec = meter.record(seen, step, optimizer.param_groups[0]["lr"], dev)
                    self.runlog.write(rec)
                    bar.set_postfix(loss=f"{rec['loss']:.4f}", refresh=False)
                if _crossed(prev, seen, cfg.val_every) and not done:
                    self.validate(self.model, seen)
                    model.train()
                # a stop request is agreed on by all ranks (one tiny all-reduce every 8 steps under DDP)
                if (not dev.distributed or step % 8 == 0 or done) and dev.any(stop.requested):
                    return seen, step, True
                if _crossed(prev, seen, cfg.checkpoint_every) and not done:
                    self.state.save(self.model, optimizer, seen, step)
        return seen, step, False

    # -- set-up
    def _setup(self):
        """Data, settings, run folder, networks, optimizer, resume: (training set, examples seen, step)."""
        cfg, dev = self.cfg, self.dev
        given_train, given_val = self._given
        train_ds, val_ds = (given_train, given_val) if given_train is not None else \
            open_datasets(cfg.data, cfg.skip_bad_shards)
        resolve(cfg, image_size_of(train_ds), dev.world_size)
        self.state = state = RunState(cfg, dev)
        if dev.is_main:
            state.create_folder()
            self.runlog.attach_log_file()
        dev.barrier()
        self._build()
        seen, step = state.restore(self.model, self.optimizer)
        if state.resume is not None:
            if dev.is_main:
                self.runlog.truncate_metrics(seen)
            log.info("resuming %s at %d examples (step %d)", state.out, seen, step)
        self.train_model = dev.wrap_ddp(self.model)
        if cfg.compile:
            self.train_model = torch.compile(self.train_model)
        if dev.is_main:
            self.runlog.open_metrics(resuming=state.resume is not None)
            log.info("%s: %d parameters, %s, %s, %d train / %s validation examples, batch %d, budget %d",
                     cfg.kind, sum(p.numel() for p in self.model.parameters()), dev.device, dev.precision_label,
                     len(train_ds), len(val_ds) if val_ds is not None else 0, cfg.batch_size, cfg.examples)
        self.validate = Validator(self.task, val_ds, cfg, dev, self.runlog, state.out / "samples")
        return train_ds, seen, step

    def _build(self) -> None:
        """Task, network (identical initialisation on every rank from the seed) and optimizer."""
        cfg, dev = self.cfg, self.dev
        torch.manual_seed(cfg.seed)
        self.task = make_task(cfg)
        self.state.schema = self.task.schema
        torch.manual_seed(cfg.seed)
        model = self.task.build_model()
        self.task.to(dev)
        self.state.init_weights(model)
        self.model = dev.prepare_model(model)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))

    def _progress_bar(self, seen: int):
        if not self.dev.is_main or self.cfg.quiet:
            return contextlib.nullcontext(_NoBar())
        from tqdm import tqdm
        return tqdm(total=self.cfg.examples, initial=seen, unit="ex", unit_scale=True, dynamic_ncols=True,
                    desc=f"train {self.cfg.kind}", mininterval=1.0, file=sys.stderr)


def train(cfg: TrainConfig, train_ds=None, val_ds=None) -> dict:
    """Train (or continue training) one network as `cfg` says; returns a small summary dict."""
    dev = setup_device(cfg.device, cfg.precision, cfg.channels_last)
    try:
        return Trainer(cfg, dev, train_ds, val_ds).run()
    finally:
        dev.close()
