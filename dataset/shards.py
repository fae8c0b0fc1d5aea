"""HDF5 shards (docs/data-format.md, "Shards"): writer, reader, verification.

Layout of one shard, readable with plain h5py:

    rest_image     (M, S, S, 4) uint8    rest-pose render, one per model row
    model_path     (M,) UTF-8 string     model path relative to --models
    model_sha256   (M,) string           hash of the model file
    model_frame    (M, 3) float32        camera box cx, cy, half-height (model units)
    model_index    (N,) int32            row into the three above, per example
    pose           (N, 6) float32        head_x, head_y, neck_z, left_eye, right_eye, mouth
    morphed_image  (N, S, S, 4) uint8    expression only
    posed_image    (N, S, S, 4) uint8    expression and rotation
    ambient        (N,) float32          ambient light magnitude of the example (extra)

Root attributes: format="thactl-shard", format_version, image_size, split,
pose_names, angle_degrees=15, seed, complete, settings (JSON), num_examples,
num_models.  Image datasets are chunked one image per chunk and compressed
(IMAGE_COMPRESSION below; chosen by measurement).

A shard is written under core.atomicfile's temporary name (`.<name>.<host>-<pid>.tmp`
in the same folder) and renamed to its final name only by `finish()`, after `complete`
is set and the file is flushed, so a reader never sees a half-written shard under the
final name.  This module imports only numpy, h5py and core/.
"""
from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from dataset.errors import ShardError
from core.atomicfile import commit, discard, temp_path
from core.errors import first_line
from core.pose import ANGLE_DEGREES, POSE_NAMES, pose_problem
from core.poseschema import PoseSchema, SchemaError, parse_schema

FORMAT = "thactl-shard"
#: the newest version this module reads; THA1 shards are written as version 1 (unchanged), shards of
#: another pose schema as version 2 (attribute `pose_schema`, `pose` (N, P), dataset `model_available`)
FORMAT_VERSION = 2
THA1_FORMAT_VERSION = 1
SPLITS = ("train", "validation", "test")
#: (filter, options) for image datasets.  Measured on real 256x256 renders of the
#: test models: gzip level 1 stores 15-20 % fewer bytes than lzf (about 62 vs 73 KB
#: per image) and reads as fast (~0.6 ms per image); gzip 6 costs 2-3x the write
#: time for under 10 % less.  Render workers pre-compress chunks (compress_image).
IMAGE_COMPRESSION: tuple[str, int | None] = ("gzip", 1)

IMAGE_DATASETS = ("rest_image", "morphed_image", "posed_image")
EXAMPLE_DATASETS = ("model_index", "pose", "morphed_image", "posed_image", "ambient")
MODEL_DATASETS = ("rest_image", "model_path", "model_sha256", "model_frame")
#: dataset -> (dtype kind, trailing shape with S for the image size)
LAYOUT: dict[str, tuple[str, tuple]] = {
    "rest_image": ("u1", ("S", "S", 4)),
    "model_path": ("str", ()),
    "model_sha256": ("str", ()),
    "model_frame": ("f4", (3,)),
    "model_index": ("i4", ()),
    "pose": ("f4", (6,)),
    "morphed_image": ("u1", ("S", "S", 4)),
    "posed_image": ("u1", ("S", "S", 4)),
    "ambient": ("f4", ()),
}
#: schema shards (version 2): per model row, 1 where the model can show the parameter (its morph or
#: bones were found and change pixels in the probe render), else 0 (its examples keep it at rest)
AVAILABLE_DATASET = "model_available"


def shard_layout(schema: PoseSchema | None = None) -> dict[str, tuple[str, tuple]]:
    """LAYOUT for THA1 (None), or for a pose schema's shards: `pose` (N, P), `model_available` (M, P)."""
    if schema is None:
        return dict(LAYOUT)
    out = {k: (v if k != "pose" else ("f4", (schema.size,))) for k, v in LAYOUT.items()}
    out[AVAILABLE_DATASET] = ("u1", (schema.size,))
    return out


REQUIRED_ATTRS = ("format", "format_version", "image_size", "split", "pose_names",
                  "angle_degrees", "seed", "complete", "settings")

_STR = h5py.string_dtype(encoding="utf-8")


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.h5"


def sha256_file(path: str | Path, data: bytes | None = None) -> str:
    h = hashlib.sha256()
    if data is not None:
        h.update(data)
    else:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def compress_image(img: np.ndarray, compression=IMAGE_COMPRESSION) -> bytes | np.ndarray:
    """Pre-compress one (S, S, 4) uint8 image into the exact chunk bytes the shard's gzip
    filter would store (a zlib stream), so render workers can do the compression in
    parallel and the writer only copies bytes.  Other filters: the array is returned."""
    a = np.ascontiguousarray(img, dtype=np.uint8)
    if compression and compression[0] == "gzip":
        return zlib.compress(a.tobytes(), int(compression[1] if compression[1] is not None else 4))
    return a


def _shape(trailing: tuple, size: int) -> tuple:
    return tuple(size if d == "S" else d for d in trailing)


class ShardWriter:
    """Write one shard; use as a context manager (the temporary file is deleted on error).

        with ShardWriter(out / "train" / "shard-00000.h5", 256, "train", seed, settings) as w:
            row = w.add_model("miku/miku.pmx", sha, frame, rest_rgba)
            w.add_example(row, pose6, morphed_rgba, posed_rgba, ambient)
            w.finish()
    """

    def __init__(self, final_path: str | Path, image_size: int, split: str, seed: int,
                 settings: dict[str, Any] | None = None, compression=IMAGE_COMPRESSION,
                 schema: PoseSchema | None = None):
        self.schema = schema
        self.layout = shard_layout(schema)
        self.final_path = Path(final_path)
        self.image_size = int(image_size)
        if self.image_size <= 0:
            raise ValueError("image_size must be positive")
        self.split = str(split)
        self.final_path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp_path = temp_path(self.final_path)
        self._file = h5py.File(self.tmp_path, "w", libver="latest")
        self._n = 0
        self._m = 0
        self._finished = False
        f = self._file
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = THA1_FORMAT_VERSION if schema is None else FORMAT_VERSION
        f.attrs["image_size"] = self.image_size
        f.attrs["split"] = self.split
        names = POSE_NAMES if schema is None else schema.names
        f.attrs.create("pose_names", np.array(names, dtype=object), dtype=_STR)
        if schema is not None:
            f.attrs["pose_schema"] = json.dumps(schema.to_json(), sort_keys=True, ensure_ascii=False)
        f.attrs["angle_degrees"] = float(ANGLE_DEGREES)
        f.attrs["seed"] = int(seed)
        f.attrs["complete"] = False
        f.attrs["settings"] = json.dumps(settings or {}, sort_keys=True)
        comp, opts = compression if compression else (None, None)
        self._comp = (comp, opts)
        s = self.image_size
        for name, (kind, trailing) in self.layout.items():
            shape = _shape(trailing, s)
            dtype = _STR if kind == "str" else np.dtype(kind)
            kw: dict[str, Any] = {}
            if name in IMAGE_DATASETS:
                kw = dict(chunks=(1,) + shape, compression=comp, compression_opts=opts)
            else:
                # checksummed (fletcher32): a flipped byte in poses/indices/frames is an error
                # on read, never a silently wrong value (image chunks are zlib streams, whose
                # adler32 already catches corruption)
                kw = dict(chunks=(256,) + shape, fletcher32=kind != "str")
            f.create_dataset(name, shape=(0,) + shape, maxshape=(None,) + shape, dtype=dtype, **kw)

    # -- writing -------------------------------------------------------------------------
    def _check_image(self, img, what: str):
        if isinstance(img, (bytes, bytearray, memoryview)):
            if self._comp[0] != "gzip":
                raise ValueError(f"{what}: pre-compressed bytes need gzip compression")
            return bytes(img)
        a = np.asarray(img)
        s = self.image_size
        if a.dtype != np.uint8 or a.shape != (s, s, 4):
            raise ValueError(f"{what} must be uint8 ({s}, {s}, 4), got {a.dtype} {a.shape}")
        return a

    def _append(self, name: str, index: int, value) -> None:
        ds = self._file[name]
        if ds.shape[0] <= index:
            ds.resize(max(index + 1, ds.shape[0] * 2, 16), axis=0)
        if isinstance(value, bytes):  # a pre-compressed image chunk (compress_image)
            ds.id.write_direct_chunk((index, 0, 0, 0), value)
        else:
            ds[index] = value

    def add_model(self, rel_path: str, sha256: str, frame, rest_image: np.ndarray, available=None) -> int:
        """Add one model row (its rest image and camera box; for a schema shard, `available`: (P,)
        bools, the parameters the model can show); returns the row index.
        Images may be uint8 (S, S, 4) arrays or bytes from compress_image()."""
        rest = self._check_image(rest_image, "rest_image")
        frame = np.asarray(frame, dtype=np.float32).reshape(3)
        row = self._m
        self._append("rest_image", row, rest)
        self._append("model_path", row, str(rel_path))
        self._append("model_sha256", row, str(sha256))
        self._append("model_frame", row, frame)
        if self.schema is not None:
            flags = np.ones(self.schema.size, bool) if available is None else np.asarray(available, bool)
            self._append(AVAILABLE_DATASET, row, flags.reshape(self.schema.size).astype(np.uint8))
        self._m += 1
        return row

    def add_example(self, row: int, pose6, morphed: np.ndarray, posed: np.ndarray,
                    ambient: float) -> int:
        """Add one example of model `row`; returns the example index."""
        if not 0 <= int(row) < self._m:
            raise ValueError(f"model row {row} not added yet")
        pose = np.asarray(pose6, dtype=np.float32).reshape(-1 if self.schema is None else self.schema.size)
        if self.schema is None and pose.shape != (6,):
            raise ValueError(f"a THA1 pose has 6 numbers, got {pose.shape}")
        i = self._n
        self._append("model_index", i, int(row))
        self._append("pose", i, pose)
        self._append("morphed_image", i, self._check_image(morphed, "morphed_image"))
        self._append("posed_image", i, self._check_image(posed, "posed_image"))
        self._append("ambient", i, float(ambient))
        self._n += 1
        return i

    @property
    def num_examples(self) -> int:
        return self._n

    @property
    def num_models(self) -> int:
        return self._m

    def finish(self) -> Path:
        """Trim, mark complete, flush to disk, rename to the final name; returns it."""
        f = self._file
        for name in self.layout:
            n = self._m if name in MODEL_DATASETS + (AVAILABLE_DATASET,) else self._n
            f[name].resize(n, axis=0)
        f.attrs["num_examples"] = self._n
        f.attrs["num_models"] = self._m
        f.attrs["complete"] = True
        f.flush()
        f.close()
        commit(self.tmp_path, self.final_path, durable=True)
        self._finished = True
        return self.final_path

    def abort(self) -> None:
        """Close and delete the temporary file (nothing appears under the final name)."""
        try:
            if self._file.id.valid:
                self._file.close()
        finally:
            if not self._finished:
                discard(self.tmp_path)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or not self._finished:
            self.abort()


# ------------------------------------------------------------------------------ reading

def _attr_str(v) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8")
    return str(v)


def _check_layout(f: h5py.File, path: Path, require_complete: bool = True) -> list[str]:
    """Cheap structural checks (attributes, dataset names, shapes, dtypes); no image reads."""
    problems: list[str] = []
    attrs = f.attrs
    if _attr_str(attrs.get("format", "")) != FORMAT:
        return [f"{path}: not a thactl shard (format attribute is {attrs.get('format')!r})"]
    missing = [a for a in REQUIRED_ATTRS if a not in attrs]
    if missing:
        problems.append(f"{path}: missing attributes {', '.join(missing)}")
        return problems
    if int(attrs["format_version"]) > FORMAT_VERSION:
        problems.append(f"{path}: format_version {int(attrs['format_version'])} is newer than "
                        f"this thactl understands ({FORMAT_VERSION})")
    if require_complete and not bool(attrs["complete"]):
        problems.append(f"{path}: shard is incomplete (complete=false)")
    names = tuple(_attr_str(x) for x in attrs["pose_names"])
    try:
        schema = shard_schema(f, path)
    except SchemaError as e:
        return [str(e)]
    want_names = POSE_NAMES if schema is None else schema.names
    if names != want_names:
        problems.append(f"{path}: pose_names {names} differ from {want_names}")
    try:
        json.loads(_attr_str(attrs["settings"]))
    except ValueError:
        problems.append(f"{path}: settings attribute is not JSON")
    s = int(attrs["image_size"])
    n = m = None
    for name, (kind, trailing) in shard_layout(schema).items():
        if name not in f:
            if name == "ambient":  # optional extra
                continue
            problems.append(f"{path}: dataset {name!r} missing")
            continue
        ds = f[name]
        want = _shape(trailing, s)
        if ds.shape[1:] != want:
            problems.append(f"{path}: {name} has shape {ds.shape}, expected (*, {', '.join(map(str, want))})")
        if kind == "str":
            if ds.dtype.kind not in ("O", "S", "U"):
                problems.append(f"{path}: {name} is {ds.dtype}, expected strings")
        elif ds.dtype != np.dtype(kind):
            problems.append(f"{path}: {name} is {ds.dtype}, expected {np.dtype(kind)}")
        if name in MODEL_DATASETS + (AVAILABLE_DATASET,):
            if m is None:
                m = ds.shape[0]
            elif ds.shape[0] != m:
                problems.append(f"{path}: {name} has {ds.shape[0]} rows, other model datasets {m}")
        else:
            if n is None:
                n = ds.shape[0]
            elif ds.shape[0] != n:
                problems.append(f"{path}: {name} has {ds.shape[0]} rows, other example datasets {n}")
    if "num_examples" in attrs and n is not None and int(attrs["num_examples"]) != n:
        problems.append(f"{path}: num_examples attribute {int(attrs['num_examples'])} != {n} rows")
    return problems


def shard_schema(f: h5py.File, path: Path) -> PoseSchema | None:
    """The pose schema of a shard (None: THA1's six numbers, no `pose_schema` attribute)."""
    if "pose_schema" not in f.attrs:
        return None
    try:
        data = json.loads(_attr_str(f.attrs["pose_schema"]))
    except ValueError:
        raise SchemaError(f"{path}: pose_schema attribute is not JSON") from None
    return parse_schema(data, f"{path} (pose_schema)")


class ShardReader:
    """Read-only access to one complete shard; raises ShardError naming the file if unusable.

    Attributes/arrays: num_examples, num_models, image_size, split, seed, settings,
    pose (N,6), model_index (N,), ambient (N,), model_path [M], model_sha256 [M],
    model_frame (M,3); images through rest_image(row), morphed_image(i), posed_image(i)
    or example(i); the raw h5py.File as `.file`.
    """

    def __init__(self, path: str | Path, require_complete: bool = True):
        self.path = Path(path)
        if not self.path.is_file():
            raise ShardError(f"{self.path}: no such shard file")
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as e:
            raise ShardError(f"{self.path}: cannot open as HDF5 ({first_line(e, 200)})") from None
        try:
            problems = _check_layout(self.file, self.path, require_complete)
        except Exception as e:  # corrupt metadata raises all sorts of things inside h5py
            self.file.close()
            raise ShardError(f"{self.path}: unreadable shard ({first_line(e, 200)})") from None
        if problems:
            self.file.close()
            raise ShardError(problems[0])
        a = self.file.attrs
        self.image_size = int(a["image_size"])
        self.split = _attr_str(a["split"])
        self.seed = int(a["seed"])
        self.complete = bool(a["complete"])
        self.format_version = int(a["format_version"])
        self.settings: dict[str, Any] = json.loads(_attr_str(a["settings"]))
        self.schema: PoseSchema | None = shard_schema(self.file, self.path)
        self.pose_names = POSE_NAMES if self.schema is None else self.schema.names
        try:
            self.pose = self.file["pose"][...]
            self.model_index = self.file["model_index"][...]
            self.ambient = (self.file["ambient"][...] if "ambient" in self.file
                            else np.full(len(self.pose), np.nan, np.float32))
            self.model_path = [_attr_str(x) for x in self.file["model_path"][...]]
            self.model_sha256 = [_attr_str(x) for x in self.file["model_sha256"][...]]
            self.model_frame = self.file["model_frame"][...]
            self.model_available = (self.file[AVAILABLE_DATASET][...].astype(bool) if self.schema is not None
                                    else np.ones((len(self.model_path), 6), bool))
        except Exception as e:
            self.file.close()
            raise ShardError(f"{self.path}: unreadable shard ({first_line(e, 200)})") from None
        self.num_examples = int(len(self.pose))
        self.num_models = int(len(self.model_path))
        if self.num_examples and (self.model_index.min() < 0
                                  or self.model_index.max() >= self.num_models):
            self.file.close()
            raise ShardError(f"{self.path}: model_index out of range 0..{self.num_models - 1}")
        bad = (pose_problem(self.pose, batch=True) if self.schema is None
               else self.schema.problem(self.pose, batch=True))
        if bad:
            self.file.close()
            raise ShardError(f"{self.path}: {bad} (corrupt data)")

    def __len__(self) -> int:
        return self.num_examples

    def rest_image(self, row: int) -> np.ndarray:
        return self._image("rest_image", row)

    def morphed_image(self, i: int) -> np.ndarray:
        return self._image("morphed_image", i)

    def posed_image(self, i: int) -> np.ndarray:
        return self._image("posed_image", i)

    def _image(self, name: str, i: int) -> np.ndarray:
        """One image; a corrupt chunk (bad zlib stream, truncated file) is a ShardError."""
        try:
            return self.file[name][i]
        except (OSError, KeyError, RuntimeError) as e:
            raise ShardError(f"{self.path}: {name}[{i}] unreadable ({first_line(e, 200)})") from None

    def example(self, i: int) -> dict[str, Any]:
        """Everything about example i as numpy arrays (images uint8 (S,S,4))."""
        if not 0 <= i < self.num_examples:
            raise IndexError(i)
        row = int(self.model_index[i])
        return dict(index=i, model_row=row, model_path=self.model_path[row],
                    model_frame=self.model_frame[row], pose=self.pose[i],
                    ambient=float(self.ambient[i]), rest_image=self.rest_image(row),
                    morphed_image=self.morphed_image(i), posed_image=self.posed_image(i))

    def iter_examples(self) -> Iterator[dict[str, Any]]:
        for i in range(self.num_examples):
            yield self.example(i)

    def close(self) -> None:
        if self.file.id.valid:
            self.file.close()

    def __enter__(self) -> "ShardReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def verify_shard(path: str | Path, deep: bool = True, expected_examples: int | None = None,
                 expected: dict[str, Any] | None = None) -> list[str]:
    """Problems with a shard (empty list = good).

    Cheap checks: opens, format, complete, SPEC datasets/dtypes/shapes, row counts,
    model_index range, pose ranges (all by ShardReader), `expected_examples`, and attributes given in
    `expected` (e.g. {"seed": 1, "image_size": 256, "split": "train"}).  With
    `deep=True` every image chunk is also read back (catches truncation and
    corrupted compressed chunks).
    """
    path = Path(path)
    try:
        r = ShardReader(path)
    except ShardError as e:
        return [str(e)]
    problems: list[str] = []
    try:
        if expected_examples is not None and r.num_examples != expected_examples:
            problems.append(f"{path}: {r.num_examples} examples, expected {expected_examples}")
        for key, want in (expected or {}).items():
            got = r.file.attrs.get(key)
            got = _attr_str(got) if isinstance(got, (bytes, str)) else got
            if key == "settings":
                got = r.settings
            if got != want:
                problems.append(f"{path}: attribute {key} is {got!r}, expected {want!r}")
        if deep:
            for name in IMAGE_DATASETS:
                ds = r.file[name]
                for i in range(ds.shape[0]):
                    try:
                        ds[i]
                    except Exception as e:
                        problems.append(f"{path}: {name}[{i}] unreadable ({first_line(e, 200)})")
                        break
    except Exception as e:
        problems.append(f"{path}: unreadable shard ({first_line(e, 200)})")
    finally:
        r.close()
    return problems
