"""The training loop shared by the three networks: budget in examples seen, exact resume,
validation, sample grids, metrics, progress bar, devices and DDP.

Run folder (OUT):
  config.json              the resolved settings (written once; a re-run must match it)
  checkpoint.pt            model, optimizer, GradScaler, RNG states, examples seen (atomic writes)
  metrics.jsonl            one JSON object per line: {"split": "train"|"validation", "examples": N, ...}
  samples/ex-NNNNNNNNNN.png  validation grid: one row per example, columns input | outputs | target
  <kind>.safetensors       exported weights (models.io format), refreshed at every checkpoint
  train.log                the log lines of rank 0

Order of examples: epoch e visits the training split in the permutation
numpy.random.default_rng([seed, e]).permutation(N); global position p (= examples seen) maps to
epoch p // N, offset p % N. A batch is the next `batch_size` positions; under DDP rank r takes
the r-th contiguous chunk of that global batch. Resume restarts at the saved position, so an
interrupted run ends with the same weights as an uninterrupted one (CPU, same thread count).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .device import Device, setup_device
from .errors import TrainError
from .tasks import DEFAULT_BATCH, DEFAULT_EXAMPLES, TASKS

log = logging.getLogger("thactl.train")

CHECKPOINT_FORMAT = "thactl-checkpoint"
# settings a re-run may change without invalidating the checkpoint
_RESUMABLE_CHANGES = {"examples", "checkpoint_every", "val_every", "val_examples", "num_samples", "log_every",
                      "device", "precision", "channels_last", "compile", "workers", "quiet", "data",
                      "vgg_weights", "random_vgg", "init", "rotator", "skip_bad_shards"}


@dataclass
class TrainConfig:
    kind: str
    data: str
    out: str
    loss: str = "l1"
    batch_size: int | None = None  # THA1's per kind/loss when None
    examples: int | None = None  # budget in examples seen; THA1's when None
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    seed: int = 0
    checkpoint_every: int = 50_000
    val_every: int = 50_000
    val_examples: int = 500
    num_samples: int = 8
    log_every: int = 1_000
    image_size: int | None = None  # from the data when None
    base_channels: int = 64
    num_downsample: int = 3
    num_res_blocks: int = 6
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool | None = None
    compile: bool = False
    workers: int | None = None
    vgg_weights: str | None = None
    random_vgg: bool = False  # tests only: perceptual loss with a randomly initialised VGG16
    init: str | None = None
    rotator: str | None = None
    quiet: bool = False
    skip_bad_shards: bool = False  # leave out unreadable/corrupt shards (logged) instead of stopping

    def arch(self) -> dict:
        return dict(image_size=self.image_size, base_channels=self.base_channels,
                    num_downsample=self.num_downsample, num_res_blocks=self.num_res_blocks)


# ----------------------------------------------------------------------------- example order

class ExampleOrder:
    """Global position -> dataset index; epoch e is a seeded permutation of range(n)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        self._epoch, self._perm = -1, None

    def perm(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return self._perm

    def take(self, start: int, count: int) -> np.ndarray:
        out = np.empty(count, dtype=np.int64)
        pos, k = start, 0
        while k < count:
            epoch, off = divmod(pos, self.n)
            m = min(count - k, self.n - off)
            out[k:k + m] = self.perm(epoch)[off:off + m]
            k, pos = k + m, pos + m
        return out


class RankBatches:
    """Batch sampler: this rank's chunk of each global batch from `start` until `end` examples."""

    def __init__(self, order: ExampleOrder, start: int, end: int, batch: int, rank: int, world: int):
        self.order, self.start, self.end, self.batch, self.rank, self.world = order, start, end, batch, rank, world
        self.per = batch // world

    def __len__(self) -> int:
        return max(0, math.ceil((self.end - self.start) / self.batch))

    def __iter__(self):
        pos = self.start
        while pos < self.end:
            idx = self.order.take(pos, self.batch)
            yield idx[self.rank * self.per:(self.rank + 1) * self.per].tolist()
            pos += self.batch


def _ignore_sigint(_worker_id: int) -> None:
    # Ctrl-C reaches the whole process group; only the main process handles it (checkpoint, exit)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# ----------------------------------------------------------------------------- helpers

def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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


def _open_split(data: str, split: str, required: bool, skip_bad_shards: bool = False):
    from dataset.torchdata import ShardDataset
    from dataset.errors import DatasetError

    try:
        ds = ShardDataset(data, split=split, skip_bad_shards=skip_bad_shards)
        if ds.skipped:
            log.warning("%s: skipped %d bad %s shard(s) (--skip-bad-shards); training on the other %d",
                        data, len(ds.skipped), split, len(ds.files))
    except DatasetError:
        if required:
            raise
        return None
    if len(ds) == 0:
        if required:
            raise TrainError(f"{data}: no {split} examples")
        return None
    return ds


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


# ----------------------------------------------------------------------------- the trainer

class Trainer:
    def __init__(self, cfg: TrainConfig, dev: Device, train_ds=None, val_ds=None):
        """`train_ds` / `val_ds`: datasets to use instead of opening `cfg.data` (items as ShardDataset's)."""
        self.cfg, self.dev = cfg, dev
        self._given = (train_ds, val_ds)
        self.out = Path(cfg.out)
        self.ckpt_path = self.out / "checkpoint.pt"
        self.stop_requested = False
        self.metrics_file = None
        self.tb = None

    # -- configuration
    def _resolve(self, image_size: int) -> None:
        cfg = self.cfg
        if cfg.kind not in TASKS:
            raise TrainError(f"unknown network {cfg.kind!r} (morpher, rotator or combiner)")
        if cfg.image_size is not None and cfg.image_size != image_size:
            raise TrainError(f"{cfg.data}: the data is {image_size} px, --image-size says {cfg.image_size}")
        cfg.image_size = image_size
        if (cfg.kind, cfg.loss) not in DEFAULT_BATCH:
            raise TrainError(f"loss {cfg.loss!r} is not available for the {cfg.kind}")
        if cfg.batch_size is None:
            cfg.batch_size = DEFAULT_BATCH[(cfg.kind, cfg.loss)]
        if cfg.examples is None:
            cfg.examples = DEFAULT_EXAMPLES[cfg.kind]
        if cfg.batch_size < 1 or cfg.examples < 1:
            raise TrainError("--batch-size and --examples must be positive")
        if cfg.batch_size % self.dev.world_size:
            raise TrainError(f"--batch-size {cfg.batch_size} is not divisible by the {self.dev.world_size} "
                             "processes (the global batch is split evenly)")
        if image_size % (2 ** cfg.num_downsample):
            raise TrainError(f"image size {image_size} is not divisible by 2**{cfg.num_downsample}")

    def _check_resume(self, saved: dict) -> None:
        now = dataclasses.asdict(self.cfg)
        diffs = [f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in now
                 if k not in _RESUMABLE_CHANGES and saved.get(k) != now[k]]
        if diffs:
            raise TrainError(f"{self.ckpt_path}: the run was started with other settings ({'; '.join(diffs)}); "
                             "use the same options or a new --out folder")

    # -- run
    def run(self) -> dict:
        try:
            return self._run()
        finally:
            self._close()

    def _run(self) -> dict:
        cfg, dev = self.cfg, self.dev
        if self._given[0] is not None:
            train_ds, val_ds = self._given
        else:
            train_ds = _open_split(cfg.data, "train", required=True, skip_bad_shards=cfg.skip_bad_shards)
            val_ds = _open_split(cfg.data, "validation", required=False, skip_bad_shards=cfg.skip_bad_shards)
            if val_ds is not None and list(map(str, val_ds.files)) == list(map(str, train_ds.files)):
                log.warning("%s holds the shards itself (a split folder or a shard), so validation runs on the "
                            "training examples; give the data folder (with train/ and validation/) instead",
                            cfg.data)
        image_size = getattr(train_ds, "image_size", None) or int(train_ds[0]["rest_image"].shape[-1])
        self._resolve(image_size)

        resume = None
        if self.ckpt_path.is_file():
            try:
                resume = torch.load(self.ckpt_path, map_location="cpu", weights_only=False)
            except Exception as e:  # noqa: BLE001
                raise TrainError(f"{self.ckpt_path}: unreadable checkpoint ({e}); delete it to start over") from None
            if resume.get("format") != CHECKPOINT_FORMAT or resume.get("kind") != cfg.kind:
                raise TrainError(f"{self.ckpt_path}: not a thactl {cfg.kind} checkpoint")
            self._check_resume(resume["config"])
        if dev.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "samples").mkdir(exist_ok=True)
            self._setup_logging()
            if resume is None:
                (self.out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
        dev.barrier()

        # networks: identical initialisation on every rank from the seed
        torch.manual_seed(cfg.seed)
        vgg = None
        if cfg.loss == "perceptual":
            from models.vgg import VGGWeightsError, load_vgg16_features
            try:
                vgg = load_vgg16_features(cfg.vgg_weights, random_init=cfg.random_vgg, seed=cfg.seed)
            except VGGWeightsError as e:
                raise TrainError(str(e)) from None
        extra = {}
        if cfg.kind == "combiner":
            if not cfg.rotator:
                raise TrainError("training the combiner needs a trained rotator: --rotator RUN_DIR_OR_FILE")
            from models.io import WeightsError, load_weights
            try:
                extra["rotator"] = load_weights(cfg.rotator, "rotator")
            except WeightsError as e:
                raise TrainError(str(e)) from None
        task = TASKS[cfg.kind](cfg.arch(), cfg.loss, vgg, **extra)
        torch.manual_seed(cfg.seed)
        model = task.build_model()
        task.to(dev)
        if resume is None and cfg.init:
            try:
                model.load_state_dict(load_init_state(cfg.init, cfg.kind))
            except RuntimeError as e:
                raise TrainError(f"{cfg.init}: weights do not fit this {cfg.kind}: {str(e).splitlines()[0]}") from None
            log.info("initialised from %s", cfg.init)
        model = dev.prepare_model(model)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        seen, step = 0, 0
        if resume is not None:
            model.load_state_dict(resume["model"])
            optimizer.load_state_dict(resume["optimizer"])
            if dev.scaler is not None and resume.get("scaler"):
                dev.scaler.load_state_dict(resume["scaler"])
            _set_rng_state(resume["rng"])
            seen, step = int(resume["examples_seen"]), int(resume["step"])
            if dev.is_main:
                self._truncate_metrics(seen)
            log.info("resuming %s at %d examples (step %d)", self.out, seen, step)
        train_model = dev.wrap_ddp(model)
        if cfg.compile:
            train_model = torch.compile(train_model)
        self.model, self.task, self.optimizer = model, task, optimizer

        if dev.is_main:
            # a fresh run (no checkpoint) drops lines of an earlier attempt killed before its first checkpoint
            self.metrics_file = open(self.out / "metrics.jsonl", "a" if resume is not None else "w", encoding="utf-8")
            self._open_tensorboard()
            nparams = sum(p.numel() for p in model.parameters())
            log.info("%s: %d parameters, %s, %s, %d train / %s validation examples, batch %d, budget %d",
                     cfg.kind, nparams, dev.device, dev.precision, len(train_ds),
                     len(val_ds) if val_ds is not None else 0, cfg.batch_size, cfg.examples)
        self.val_indices = self._val_indices(val_ds)
        self.val_ds = val_ds

        if seen == 0 and resume is None:
            self._validate(seen, baseline=True)
        if seen >= cfg.examples:
            log.info("%s already holds %d of %d examples; nothing to train", self.out, seen, cfg.examples)
            self._export()
            self._close()
            return self._summary(seen, step)

        order = ExampleOrder(len(train_ds), cfg.seed)
        sampler = RankBatches(order, seen, cfg.examples, cfg.batch_size, dev.rank, dev.world_size)
        workers = cfg.workers if cfg.workers is not None else (min(8, os.cpu_count() or 1) if dev.type == "cuda" else 0)
        loader = torch.utils.data.DataLoader(
            train_ds, batch_sampler=sampler, num_workers=workers, pin_memory=dev.pin_memory,
            persistent_workers=False, worker_init_fn=_ignore_sigint if workers else None,
            prefetch_factor=4 if workers else None)

        old_handlers = self._install_signals()
        bar = None
        if dev.is_main and not cfg.quiet:
            from tqdm import tqdm
            bar = tqdm(total=cfg.examples, initial=seen, unit="ex", unit_scale=True, dynamic_ncols=True,
                       desc=f"train {cfg.kind}", mininterval=1.0, file=sys.stderr)
        train_model.train()
        run_loss, run_parts, run_n = 0.0, {}, 0
        t_log, seen_log = time.perf_counter(), seen
        interrupted = False
        try:
            for batch in loader:
                loss, parts = task.step(train_model, batch, dev)
                optimizer.zero_grad(set_to_none=True)
                dev.backward_step(loss, optimizer)
                prev, seen, step = seen, seen + cfg.batch_size, step + 1
                # accumulate on the device; one host sync per log interval, not per step
                run_loss = run_loss + loss.detach()
                for k, v in parts.items():
                    run_parts[k] = run_parts.get(k, 0.0) + v
                run_n += 1
                if bar is not None:
                    bar.update(cfg.batch_size)
                if self._crossed(prev, seen, cfg.log_every) or seen >= cfg.examples:
                    now = time.perf_counter()
                    mean_loss = float(run_loss) / run_n
                    if not math.isfinite(mean_loss):
                        raise TrainError(f"the loss became {mean_loss} before {seen} examples; lower --lr or "
                                         "use --precision fp32 (the last checkpoint is intact)")
                    rec = {"split": "train", "examples": seen, "step": step,
                           "loss": dev.mean(mean_loss),
                           **{k: dev.mean(float(v) / run_n) for k, v in run_parts.items()},
                           "examples_per_s": (seen - seen_log) / max(now - t_log, 1e-9),
                           "lr": optimizer.param_groups[0]["lr"]}
                    self._write_metrics(rec)
                    if bar is not None:
                        bar.set_postfix(loss=f"{rec['loss']:.4f}", refresh=False)
                    run_loss, run_parts, run_n, t_log, seen_log = 0.0, {}, 0, now, seen
                if self._crossed(prev, seen, cfg.val_every) and seen < cfg.examples:
                    self._validate(seen)
                    train_model.train()
                # a stop request is agreed on by all ranks (one tiny all-reduce every 8 steps under DDP)
                if (not dev.distributed or step % 8 == 0 or seen >= cfg.examples) and dev.any(self.stop_requested):
                    interrupted = True
                    break
                if self._crossed(prev, seen, cfg.checkpoint_every) and seen < cfg.examples:
                    self._checkpoint(seen, step)
        finally:
            if bar is not None:
                bar.close()
            self._restore_signals(old_handlers)
        self._checkpoint(seen, step)
        if interrupted:
            msg = f"stopped at {seen} of {cfg.examples} examples; checkpoint saved in {self.out}; " \
                  "re-run the same command to continue"
            log.warning(msg)
            self._close()
            raise KeyboardInterrupt(msg)
        self._validate(seen)
        self._close()
        return self._summary(seen, step)

    # -- pieces
    @staticmethod
    def _crossed(prev: int, now: int, every: int) -> bool:
        return every > 0 and prev // every != now // every

    def _summary(self, seen: int, step: int) -> dict:
        return {"examples": seen, "steps": step, "out": str(self.out),
                "weights": str(self.out / f"{self.cfg.kind}.safetensors")}

    def _setup_logging(self) -> None:
        handler = logging.FileHandler(self.out / "train.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        root = logging.getLogger("thactl")
        root.addHandler(handler)
        if root.level == logging.NOTSET or root.level > logging.INFO:
            root.setLevel(logging.INFO)
        self._log_handler = handler

    def _open_tensorboard(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # noqa: BLE001 - tensorboard is optional
            return
        self.tb = SummaryWriter(str(self.out / "tensorboard"))

    def _write_metrics(self, rec: dict) -> None:
        if not self.dev.is_main:
            return
        rec = {k: (round(v, 7) if isinstance(v, float) else v) for k, v in rec.items()}
        rec["time"] = round(time.time(), 3)
        self.metrics_file.write(json.dumps(rec) + "\n")
        self.metrics_file.flush()
        if self.tb is not None:
            for k, v in rec.items():
                if isinstance(v, float) and k != "time":
                    self.tb.add_scalar(f"{rec['split']}/{k}", v, rec["examples"])

    def _truncate_metrics(self, seen: int) -> None:
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

    def _install_signals(self):
        import threading
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, _frame):
            if self.stop_requested:  # second Ctrl-C: stop now
                raise KeyboardInterrupt
            self.stop_requested = True
            log.warning("signal %d: finishing this step, then saving a checkpoint", signum)

        return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    @staticmethod
    def _restore_signals(old) -> None:
        for s, h in (old or {}).items():
            signal.signal(s, h)

    def _checkpoint(self, seen: int, step: int) -> None:
        if self.dev.is_main:
            state = {"format": CHECKPOINT_FORMAT, "version": 1, "kind": self.cfg.kind,
                     "config": dataclasses.asdict(self.cfg), "model": _unwrap(self.model).state_dict(),
                     "optimizer": self.optimizer.state_dict(),
                     "scaler": self.dev.scaler.state_dict() if self.dev.scaler is not None else None,
                     "rng": _rng_state(), "examples_seen": seen, "step": step,
                     "order": {"seed": self.cfg.seed, "position": seen}}
            _atomic_torch_save(state, self.ckpt_path)
            self._export()
            log.info("checkpoint at %d examples", seen)
        self.dev.barrier()

    def _export(self) -> None:
        if self.dev.is_main:
            from models.io import save_weights
            save_weights(self.model, self.out / f"{self.cfg.kind}.safetensors")

    def _close(self) -> None:
        if self.metrics_file is not None:
            self.metrics_file.close()
            self.metrics_file = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        h = getattr(self, "_log_handler", None)
        if h is not None:
            logging.getLogger("thactl").removeHandler(h)
            h.close()
            self._log_handler = None

    def _val_indices(self, val_ds) -> list[int]:
        if val_ds is None:
            return []
        n, k = len(val_ds), min(self.cfg.val_examples, len(val_ds))
        if k <= 0:
            return []
        return sorted(set(np.linspace(0, n - 1, k).round().astype(int).tolist()))

    @torch.no_grad()
    def _validate(self, seen: int, baseline: bool = False) -> None:
        """Validation L1 of every output (and of the identity output = input) on a fixed subset; grid PNG."""
        if not self.val_indices:
            return
        if self.dev.is_main:
            model, task, dev = self.model, self.task, self.dev
            model.eval()
            sums = {name: 0.0 for name in task.output_names}
            ident, count, rows = 0.0, 0, []
            bs = self.cfg.batch_size
            for i in range(0, len(self.val_indices), bs):
                items = [self.val_ds[j] for j in self.val_indices[i:i + bs]]
                batch = torch.utils.data.default_collate(items)
                image, pose, target = task.inputs(batch, dev)
                with dev.autocast():
                    outs = task.outputs(model, image, pose)
                outs = [o.float() for o in outs]
                b = image.shape[0]
                for name, o in zip(task.output_names, outs):
                    sums[name] += (o - target.float()).abs().mean(dim=(1, 2, 3)).sum().item()
                ident += (image.float() - target.float()).abs().mean(dim=(1, 2, 3)).sum().item()
                count += b
            k = min(self.cfg.num_samples, len(self.val_indices))
            if k > 0:  # grid rows spread over the validation subset (several characters)
                picks = np.linspace(0, len(self.val_indices) - 1, k).round().astype(int)
                batch = torch.utils.data.default_collate([self.val_ds[self.val_indices[j]] for j in picks])
                image, pose, target = task.inputs(batch, dev)
                with dev.autocast():
                    outs = task.outputs(model, image, pose)
                rows.append([t.float().cpu() for t in (image, *outs, target)])
            rec = {"split": "validation", "examples": seen, "n": count,
                   "l1": sums[task.output_names[-1] if task.kind == "combiner" else task.output_names[0]] / count}
            rec.update({f"l1_{name}": v / count for name, v in sums.items()})
            rec["l1_identity"] = ident / count
            self._write_metrics(rec)
            log.info("validation at %d examples: %s", seen,
                     ", ".join(f"{k}={v:.5f}" for k, v in rec.items() if k.startswith("l1")))
            if rows and self.cfg.num_samples > 0:
                self._save_grid(rows, seen)
            model.train()
        self.dev.barrier()

    def _save_grid(self, rows: list[list[torch.Tensor]], seen: int) -> None:
        """PNG grid: one row per validation example, columns input | outputs... | target (RGBA)."""
        from PIL import Image
        from dataset.imageconv import tensor_to_uint8

        cols = [torch.cat([r[c] for r in rows], dim=0) for c in range(len(rows[0]))]
        imgs = [tensor_to_uint8(c.clamp(-1, 1)) for c in cols]  # each (n, S, S, 4)
        n, s = imgs[0].shape[0], imgs[0].shape[1]
        grid = np.zeros((n * s, len(imgs) * s, 4), dtype=np.uint8)
        for ci, im in enumerate(imgs):
            for ri in range(n):
                grid[ri * s:(ri + 1) * s, ci * s:(ci + 1) * s] = im[ri]
        Image.fromarray(grid, "RGBA").save(self.out / "samples" / f"ex-{seen:010d}.png")


def train(cfg: TrainConfig, train_ds=None, val_ds=None) -> dict:
    """Train (or continue training) one network as `cfg` says; returns a small summary dict."""
    dev = setup_device(cfg.device, cfg.precision, cfg.channels_last)
    try:
        return Trainer(cfg, dev, train_ds, val_ds).run()
    finally:
        dev.close()
