"""A PyTorch Dataset over thactl shards (h5py + numpy + torch and core/; no OpenGL, nothing of
renderer/).

    ds = ShardDataset("./data", split="train")
    item = ds[0]   # dict(rest_image, morphed_image, posed_image: float32 (4,S,S) THA1
                   #      convention, pose: float32 (6,), index: int)

Random access across all shards of a split.  At construction every shard is
opened once (in the calling process) to validate it and read its small arrays
(poses, model_index), then closed; the image data is read through HDF5 handles
opened lazily in whichever process calls __getitem__, so the object is safe to
hand to DataLoader workers with fork or spawn: handles are never pickled, and a
process that finds handles inherited from another pid discards them and opens
its own.  At most `max_open_files` shards are held open per process (LRU).
Converted rest images are cached per process (one per model row).
"""
from __future__ import annotations

import bisect
import logging
import os
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from dataset.errors import DatasetError, ShardError
from dataset.imageconv import uint8_to_numpy
from dataset.shards import SPLITS, ShardReader
from core.errors import first_line

log = logging.getLogger("thactl.dataset")


def find_shards(root_or_files: str | Path | Iterable[str | Path], split: str | None = "train") -> list[Path]:
    """Shard files for a data folder (OUT/<split>/shard-*.h5), a split folder, one file or a list.

    `split` picks the sub-folder of a data folder (None = every split, in the order
    train, validation, test); it is ignored for explicit files or a folder of shards.
    """
    if isinstance(root_or_files, (str, Path)):
        p = Path(root_or_files)
        if p.is_file():
            return [p]
        if not p.exists():
            raise DatasetError(f"{p}: no such file or folder")
        if not p.is_dir():
            raise DatasetError(f"{p}: not a shard file or a data folder")
        direct = sorted(p.glob("shard-*.h5"))
        if direct:
            return direct
        if split is not None and split not in SPLITS:
            raise DatasetError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
        splits = SPLITS if split is None else (split,)
        files = [f for s in splits for f in sorted((p / s).glob("shard-*.h5"))]
        if not files:
            where = p if split is None else p / split
            raise DatasetError(f"{where}: no shards (shard-*.h5) found; give the --out folder of `thactl render`")
        return files
    files = [Path(f) for f in root_or_files]
    if not files:
        raise DatasetError("no shard files given")
    return files


class ShardDataset(Dataset):
    """Examples of one split (or of given shard files), as THA1-convention tensors."""

    def __init__(self, root_or_files, split: str | None = "train", skip_bad_shards: bool = False,
                 max_open_files: int = 32, rest_cache_size: int = 256):
        self.files: list[Path] = []
        self.skipped: list[str] = []
        self.skip_bad_shards = bool(skip_bad_shards)
        poses, rows, counts = [], [], []
        self.image_size: int | None = None
        for path in find_shards(root_or_files, split):
            try:
                with ShardReader(path) as r:
                    if self.image_size is None:
                        self.image_size = r.image_size
                    elif r.image_size != self.image_size:
                        raise ShardError(f"{path}: image size {r.image_size} differs from "
                                         f"{self.image_size} of the other shards")
                    if r.num_examples == 0:
                        continue
                    poses.append(r.pose.astype(np.float32))
                    rows.append(r.model_index.astype(np.int64))
                    counts.append(r.num_examples)
                    self.files.append(path)
            except ShardError as e:
                if not skip_bad_shards:
                    raise
                log.warning("skipping bad shard: %s", e)
                self.skipped.append(str(e))
        if not self.files:
            raise DatasetError(f"{root_or_files}: no usable examples in the shards found")
        self.poses = np.concatenate(poses)
        self.model_rows = np.concatenate(rows)
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.max_open_files = max(1, int(max_open_files))
        self.rest_cache_size = int(rest_cache_size)
        self._reset_handles()

    # -- per-process state -----------------------------------------------------------
    def _reset_handles(self) -> None:
        self._pid = os.getpid()
        self._handles: OrderedDict[int, h5py.File] = OrderedDict()
        self._rest_cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._ds_cache: dict[tuple[int, str], tuple] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = OrderedDict()
        state["_rest_cache"] = OrderedDict()
        state["_ds_cache"] = {}
        state["_pid"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset_handles()

    def _file(self, k: int) -> h5py.File:
        if self._pid != os.getpid():  # forked: never use the parent's HDF5 handles
            self._reset_handles()
        f = self._handles.get(k)
        if f is not None:
            self._handles.move_to_end(k)
            return f
        try:
            f = h5py.File(self.files[k], "r", rdcc_nbytes=0)
        except OSError as e:
            raise ShardError(f"{self.files[k]}: cannot open ({first_line(e)})") from None
        self._handles[k] = f
        while len(self._handles) > self.max_open_files:
            _, old = self._handles.popitem(last=False)
            for key in [key for key in self._ds_cache if key[0] == id(old)]:
                del self._ds_cache[key]
            old.close()
        return f

    def close(self) -> None:
        """Close this process's open shard files (they reopen on the next access)."""
        if getattr(self, "_pid", None) == os.getpid():
            for f in self._handles.values():
                try:
                    f.close()
                except Exception:
                    pass
        self._reset_handles()

    # -- Dataset -----------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """(shard number, example index inside that shard) of a global index."""
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} examples")
        k = bisect.bisect_right(self.offsets, index) - 1
        return k, int(index - self.offsets[k])

    def _rest(self, k: int, f: h5py.File, row: int) -> np.ndarray:
        key = (k, row)
        arr = self._rest_cache.get(key)
        if arr is None:
            arr = uint8_to_numpy(self._image(f, "rest_image", row))
            if self.rest_cache_size > 0:
                self._rest_cache[key] = arr
                while len(self._rest_cache) > self.rest_cache_size:
                    self._rest_cache.popitem(last=False)
        else:
            self._rest_cache.move_to_end(key)
        return arr.copy()

    def __getitem__(self, index: int) -> dict[str, Any]:
        bad = self.__dict__.get("_bad_shards")
        if bad and self.skip_bad_shards and self.locate(int(index))[0] in bad:
            return self._substitute(int(index), None)
        try:
            return self._load_item(index)
        except ShardError as e:
            if not self.skip_bad_shards:
                raise
            return self._substitute(int(index), e)

    def _substitute(self, index: int, err: ShardError | None) -> dict[str, Any]:
        """skip_bad_shards: a shard found corrupt while reading (a bad image chunk) is marked
        bad in this process, said once, and the example is replaced by the one at the same
        position in the next good shard (deterministic); never garbage."""
        bad = self.__dict__.setdefault("_bad_shards", set())
        k, i = self.locate(index)
        while True:
            if k not in bad:
                bad.add(k)
                self.skipped.append(str(err))
                log.warning("skipping bad shard from now on: %s", err)
            good = [s for s in range(len(self.files)) if s not in bad]
            if not good:
                raise ShardError(f"every shard is unreadable (last: {err})")
            k = next((s for s in good if s > k), good[0])
            j = int(self.offsets[k]) + i % int(self.offsets[k + 1] - self.offsets[k])
            try:
                return self._load_item(j)
            except ShardError as e:
                err = e

    def _raw(self, f: h5py.File, name: str, i: int):
        """One stored image: (zlib bytes, shape) for thactl's one-image gzip chunks (read
        raw, inflated by _decode: same result as h5py's filter pipeline, less overhead), or a
        uint8 array for any other layout."""
        key = (id(f), name)
        info = self._ds_cache.get(key)
        if info is None or info[0] is not f:
            ds = f[name]
            s = ds.shape[1:]
            fast = (ds.compression == "gzip" and not ds.shuffle and not ds.fletcher32
                    and ds.chunks == (1,) + s and ds.dtype == np.uint8 and not ds.scaleoffset)
            info = (f, ds, fast, s)
            self._ds_cache[key] = info
        _, ds, fast, shape = info
        if fast:
            if not 0 <= i < ds.shape[0]:
                raise IndexError(i)
            mask, raw = ds.id.read_direct_chunk((i,) + (0,) * len(shape))
            return (raw, mask == 0, shape)
        return ds[i]

    @staticmethod
    def _decode(raw) -> np.ndarray:
        if isinstance(raw, np.ndarray):
            return raw
        data, compressed, shape = raw
        return np.frombuffer(zlib.decompress(data) if compressed else data, np.uint8).reshape(shape)

    @classmethod
    def _tensor(cls, raw) -> torch.Tensor:
        return torch.from_numpy(uint8_to_numpy(cls._decode(raw)))

    def _image(self, f: h5py.File, name: str, i: int) -> np.ndarray:
        return self._decode(self._raw(f, name, i))

    def _load_item(self, index: int) -> dict[str, Any]:
        index = int(index)
        k, i = self.locate(index)
        if index < 0:
            index += len(self)
        f = self._file(k)
        row = int(self.model_rows[index])
        try:
            morphed = self._tensor(self._raw(f, "morphed_image", i))
            posed = self._tensor(self._raw(f, "posed_image", i))
            rest = self._rest(k, f, row)
        except (OSError, KeyError, ValueError, zlib.error) as e:
            raise ShardError(f"{self.files[k]}: example {i} unreadable ({first_line(e)})") from None
        return dict(
            rest_image=torch.from_numpy(rest),
            morphed_image=morphed,
            posed_image=posed,
            pose=torch.from_numpy(self.poses[index].copy()),
            index=index,
        )

    def example_info(self, index: int) -> dict[str, Any]:
        """Where an example lives: shard file, index inside it, model path (no images read)."""
        k, i = self.locate(index)
        f = self._file(k)
        row = int(self.model_rows[self.offsets[k] + i])
        mp = f["model_path"][row]
        return dict(shard=str(self.files[k]), shard_index=i, model_row=row,
                    model_path=mp.decode() if isinstance(mp, bytes) else str(mp),
                    pose=self.poses[self.offsets[k] + i].copy())

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
