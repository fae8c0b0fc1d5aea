"""The data side of training: opening the splits, the order of examples, each rank's batches, the loader.

Order of examples: epoch e visits the training split in the permutation
numpy.random.default_rng([seed, e]).permutation(N); global position p (= examples seen) maps to
epoch p // N, offset p % N. A batch is the next `batch_size` positions; under DDP rank r takes
the r-th contiguous chunk of that global batch. Resuming at a saved position therefore continues
the very same sequence of batches.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os

import numpy as np
import torch

from .errors import TrainError
from .signals import detach_worker

log = logging.getLogger("thactl.train")


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


def _open_split(data: str, split: str, required: bool, skip_bad_shards: bool = False):
    from dataset.errors import DatasetError
    from dataset.torchdata import ShardDataset

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


def open_datasets(data: str, skip_bad_shards: bool):
    """(train, validation or None) of a data folder; warns when validation would reuse the training shards."""
    train_ds = _open_split(data, "train", required=True, skip_bad_shards=skip_bad_shards)
    val_ds = _open_split(data, "validation", required=False, skip_bad_shards=skip_bad_shards)
    if val_ds is not None and list(map(str, val_ds.files)) == list(map(str, train_ds.files)):
        log.warning("%s holds the shards itself (a split folder or a shard), so validation runs on the "
                    "training examples; give the data folder (with train/ and validation/) instead", data)
    return train_ds, val_ds


def image_size_of(ds) -> int:
    return getattr(ds, "image_size", None) or int(ds[0]["rest_image"].shape[-1])


@contextlib.contextmanager
def worker_batches(loader: torch.utils.data.DataLoader):
    """`iter(loader)`, whose worker processes are shut down on leaving, on an error too.

    An error raised from a batch keeps the iterator (and with it the workers) alive for as long as
    its traceback lives; at interpreter exit multiprocessing would then terminate the workers and
    torch report them "killed by signal". Shut down here, they exit as after a finished epoch.
    """
    batches = iter(loader)
    try:
        yield batches
    finally:
        shutdown = getattr(batches, "_shutdown_workers", None)  # torch's multi-process iterator only
        if shutdown is not None:
            shutdown()


def train_loader(ds, cfg, dev, seen: int) -> torch.utils.data.DataLoader:
    """This rank's batches from position `seen` to the budget, in the seeded order."""
    sampler = RankBatches(ExampleOrder(len(ds), cfg.seed), seen, cfg.examples, cfg.batch_size,
                          dev.rank, dev.world_size)
    workers = cfg.workers if cfg.workers is not None else (min(8, os.cpu_count() or 1) if dev.type == "cuda" else 0)
    return torch.utils.data.DataLoader(
        ds, batch_sampler=sampler, num_workers=workers, pin_memory=dev.pin_memory,
        persistent_workers=False, worker_init_fn=detach_worker if workers else None,
        prefetch_factor=4 if workers else None)
