"""Finding models under --models (folders and .zip archives) and assigning splits.

Every model gets a stable relative name (`rel_path`, '/' separators): the file's
path relative to --models, or for a zip member `<zip path>/<member path>`
(member names decoded as UTF-8 when the archive says so, else as Shift-JIS
(cp932), the encoding of Japanese Windows zips, else cp437).  Zip archives are
extracted once, safely (absolute paths, drive letters and `..` members are
refused), into a cache folder keyed by the archive's hash, so the loader finds
the textures beside the model as usual.

Symlinks follow one rule (`link_outside`, the only place it is decided; render,
`thactl models check` and the model page of `thactl serve` all list models through
discover_models): a symlinked file or folder under --models is followed only when it
resolves inside the --models folder (both with every symlink resolved).  One that
leads outside is skipped and listed as an entry with `error` set ("skipped: a symlink
that leads outside the models folder (to …)"), so render's manifest, `models check`
and the page each show a line for it.  A file or folder reached twice (a symlink
inside the folder to another part of it, or back to a folder above it) is read once,
under its path without symlinks when it has one; nothing is lost, so the other names
get no line.

Splits are by model *source*: the first path component under --models (a
top-level folder or archive; one level deeper while that gives fewer than
three sources, see split_units); every model of one source lands in the same
split, so variants of one character never straddle train and test.  The
default rule hashes the source name to a number u in [0, 1) and cuts at the
cumulative --split-ratios; with three or more sources, validation and test are
guaranteed at least one source each (taken from train, the ones whose u is
closest to the cut).  With fewer than FEW_SOURCES (20) sources, hashing cannot
honour the ratios, so test and validation take one source each, the smallest
(ties by hash), and training keeps the rest.  A --split-file JSON fixes the assignment explicitly.

Splits also follow content: sources holding the same mesh (mesh_groups: a .pmd and
its .pmx conversion in two folders, an edited copy) are united into one split unit
(union-find, named "a + b") before the rule above, so a character never leaks from
training into test through a copy in another folder.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from dataset.errors import DatasetError
from dataset.shards import SPLITS, sha256_file
from core.atomicfile import temp_path

log = logging.getLogger("thactl.dataset")

MODEL_SUFFIXES = (".pmx", ".pmd")
MAX_ZIP_BYTES = 4 << 30          # refuse archives that would extract to more than this


@dataclass
class ModelSource:
    rel_path: str                 # relative name, '/' separators (zip members: "a.zip/x/y.pmx")
    path: Path | None             # file on disk (extracted for zip members); None if unusable
    source: str                   # first component of rel_path: the split unit
    error: str | None = None      # discovery problem (corrupt zip, unsafe member, ...)
    sha256: str = ""


def decode_member_name(info: zipfile.ZipInfo) -> str:
    """The member's real name: UTF-8 if flagged, else try cp932 (Shift-JIS), else cp437."""
    name = info.filename
    if info.flag_bits & 0x800:
        return name
    try:
        raw = name.encode("cp437")
    except UnicodeEncodeError:
        return name
    for enc in ("utf-8", "cp932"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    return name


def safe_member_path(name: str) -> PurePosixPath | None:
    """Relative, normalised member path, or None when unsafe (absolute, drive, '..')."""
    n = name.replace("\\", "/")
    if n.startswith("/") or (len(n) >= 2 and n[1] == ":"):
        return None
    parts = [p for p in n.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        return None
    return PurePosixPath(*parts)


def extract_zip(zip_path: Path, cache_root: Path) -> tuple[Path, list[str], list[str]]:
    """Extract `zip_path` into `cache_root/<name>-<hash12>/`; returns (folder, model members,
    skipped unsafe names).  Raises DatasetError for a corrupt or absurd archive."""
    digest = sha256_file(zip_path)
    dest = cache_root / f"{zip_path.stem[:40]}-{digest[:12]}"
    done = dest / ".thactl-extracted"
    try:
        zf = zipfile.ZipFile(zip_path)
    except Exception as e:  # noqa: BLE001 - untrusted bytes: zipfile also raises NotImplementedError, ...
        raise DatasetError(f"{zip_path}: corrupt or unreadable zip archive ({e})") from None
    with zf:
        members, unsafe = [], []
        total = 0
        for info in zf.infolist():
            if info.filename.endswith("/"):     # a folder (ZipInfo.is_dir() fails on an empty name)
                continue
            real = decode_member_name(info)
            rel = safe_member_path(real)
            if rel is None:
                unsafe.append(real)
                continue
            members.append((info, rel))
            total += info.file_size
        if total > MAX_ZIP_BYTES:
            raise DatasetError(f"{zip_path}: archive would extract to {total >> 20} MiB; refused")
        models = sorted(str(rel) for _, rel in members if rel.suffix.lower() in MODEL_SUFFIXES)
        if done.is_file():
            return dest, models, unsafe
        tmp = temp_path(dest)
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir(parents=True, exist_ok=True)       # also when no member is extractable
            for info, rel in members:
                target = tmp.joinpath(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        except Exception as e:  # noqa: BLE001 - BadZipFile, zlib.error, OSError, EOFError, ValueError, ...
            shutil.rmtree(tmp, ignore_errors=True)
            raise DatasetError(f"{zip_path}: corrupt zip archive ({e})") from None
        (tmp / ".thactl-extracted").write_text(digest)
        if done.is_file():  # another process (--part on a shared disk) finished first
            shutil.rmtree(tmp, ignore_errors=True)
            return dest, models, unsafe
        shutil.rmtree(dest, ignore_errors=True)  # a half-extracted leftover
        try:
            os.replace(tmp, dest)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not done.is_file():
                raise
    return dest, models, unsafe


def zlib_error():
    import zlib
    return zlib.error


def link_outside(path: str | Path, root: str | Path) -> str | None:
    """The symlink rule (see the module doc): None when `path`, a file or folder found under
    `root`, may be read (its real path lies inside `root`'s real path), else the one-line reason
    it is skipped.  A dangling symlink is judged by where it points."""
    real_root, real = os.path.realpath(root), os.path.realpath(path)
    try:
        inside = os.path.commonpath([real_root, real]) == real_root
    except ValueError:      # different drives (Windows)
        inside = False
    return None if inside else f"skipped: a symlink that leads outside the models folder (to {real})"


@dataclass
class _Found:
    rel: str                # relative name as walked (through symlinked folders' names)
    path: Path
    real: str               # os.path.realpath(path): one entry per real file
    via_link: bool          # reached through a symlink (the file itself or a folder on the way)


def _walk(root: Path, excl: list[Path]) -> tuple[list[_Found], list[tuple[str, str]]]:
    """Model files and .zip archives under `root` (hidden and `excl` folders left out), symlinks
    followed by `link_outside`'s rule; and (rel, reason) for every symlink skipped."""
    found: list[_Found] = []
    skipped: list[tuple[str, str]] = []
    via = {os.fspath(root): False}
    seen_dirs = {os.path.realpath(root)}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        d = Path(dirpath)
        keep = []
        for name in sorted(dirnames):
            full, key = d / name, os.path.join(dirpath, name)     # key: how os.walk names it
            if name.startswith(".") or any(full.resolve() == e for e in excl):
                continue
            real, link = os.path.realpath(full), full.is_symlink()
            if link and (why := link_outside(full, root)):
                skipped.append((full.relative_to(root).as_posix(), why))
                continue
            if link and real in seen_dirs:      # a loop, or a folder walked already
                log.info("%s: symlink to a folder listed already; not walked again", full)
                continue
            seen_dirs.add(real)
            via[key] = via[dirpath] or link
            keep.append(name)
        dirnames[:] = keep
        for name in sorted(filenames):
            if not name.lower().endswith(MODEL_SUFFIXES + (".zip",)):
                continue
            p = d / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink() and (why := link_outside(p, root)):
                skipped.append((rel, why))
                continue
            found.append(_Found(rel, p, os.path.realpath(p), via[dirpath] or p.is_symlink()))
    return _once_per_file(found), skipped


def _once_per_file(found: list[_Found]) -> list[_Found]:
    """One entry per real file: the one reached without symlinks if any, else the first by name."""
    best: dict[str, _Found] = {}
    for f in sorted(found, key=lambda f: (f.via_link, f.rel)):
        if best.setdefault(f.real, f) is not f:
            log.info("%s: the same file as %s; listed once", f.rel, best[f.real].rel)
    return sorted(best.values(), key=lambda f: f.rel)


def discover_models(models_dir: str | Path, cache_dir: str | Path | None = None,
                    exclude: list[Path] | None = None) -> list[ModelSource]:
    """Every .pmx/.pmd under `models_dir` (recursively, and inside .zip archives), sorted by
    rel_path.  Unusable archives and skipped symlinks (link_outside's rule) appear as entries
    with `error` set (the run goes on).  Hidden folders (".name") and `exclude` folders are
    skipped.  Raises DatasetError if the folder is missing or holds no model at all."""
    root = Path(models_dir)
    if not root.exists():
        raise DatasetError(f"{root}: models folder does not exist")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder (give the folder holding .pmx/.pmd files or .zip archives)")
    cache = Path(cache_dir) if cache_dir else root / ".thactl-cache"
    files, skipped = _walk(root, [Path(e).resolve() for e in (exclude or [])])
    found = [ModelSource(rel, None, rel.split("/")[0], error=why) for rel, why in skipped]
    for f in files:
        found += _sources_of(f, cache)
    found.sort(key=lambda m: m.rel_path)
    if not found:
        raise DatasetError(f"{root}: no .pmx/.pmd models (or .zip archives of them) found")
    return found


def _sources_of(f: _Found, cache: Path) -> list[ModelSource]:
    """The model a file is, or the models inside a .zip archive (an entry with `error` when the
    archive is unusable)."""
    source = f.rel.split("/")[0]
    if f.rel.lower().endswith(MODEL_SUFFIXES):
        return [ModelSource(f.rel, f.path, source)]
    try:
        dest, models, unsafe = extract_zip(f.path, cache / "zips")
    except DatasetError as e:
        return [ModelSource(f.rel, None, source, error=str(e).split(": ", 1)[-1])]
    for u in unsafe:
        log.warning("%s: skipped unsafe member name %r", f.path, u)
    out = [ModelSource(f"{f.rel}/{m}", dest.joinpath(*m.split("/")), source) for m in models]
    if not models and unsafe:
        out.append(ModelSource(f.rel, None, source, error=f"only unsafe member paths ({unsafe[0]!r})"))
    return out


def resolve_models(models_root: Path, cache: Path, exclude: list[Path] | None = None) -> list[ModelSource]:
    """Every model under `models_root` (folders and .zip archives, discover_models), sorted by
    rel_path, with its sha256; a model that cannot be unpacked or read has `error` set.
    Archives are extracted under `cache`; `exclude` folders are skipped."""
    found = discover_models(models_root, cache, exclude=exclude)
    for m in found:
        if not m.error:
            try:
                m.sha256 = sha256_file(m.path)
            except OSError as e:
                m.error = f"cannot read file ({e.strerror or e})"
    return found


# ------------------------------------------------------------------------------ splits

def parse_ratios(text: str) -> tuple[float, float, float]:
    try:
        vals = [float(v) for v in str(text).replace(" ", "").split(",")]
    except ValueError:
        vals = []
    if len(vals) != 3 or any(v < 0 for v in vals) or sum(vals) <= 0 or vals[0] <= 0:
        raise DatasetError(f"--split-ratios must be three non-negative numbers train,validation,test "
                           f"with train > 0 (e.g. 0.9,0.05,0.05), got {text!r}")
    s = sum(vals)
    return (vals[0] / s, vals[1] / s, vals[2] / s)


def source_hash(source: str) -> float:
    """A stable number in [0, 1) for a source name."""
    h = hashlib.sha256(("thactl-split:" + source).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / 2.0 ** 64


class _UnionFind:
    def __init__(self, items):
        self.parent = {x: x for x in items}

    def find(self, x):
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)     # deterministic root: the smallest name

    def groups(self) -> list[list]:
        out: dict = {}
        for x in sorted(self.parent):
            out.setdefault(self.find(x), []).append(x)
        return sorted(out.values())


#: two meshes of identical topology are the same mesh when at least this share of
#: their probe vertices lie within SAME_MESH_TOLERANCE (in median radii) of each other
SAME_MESH_SHARE = 0.75
SAME_MESH_TOLERANCE = 0.01


def same_mesh(a: dict | None, b: dict | None) -> bool:
    """Whether two fingerprints (dataset.modelcheck.mesh_fingerprint) are "the same mesh":

    1. the same rest shape: equal `shape` hashes (the set of rest positions quantised to
       1e-3 of the bounding box: a .pmd and its .pmx conversion, a re-textured copy, a
       material split, a reordered or uniformly rescaled copy); or
    2. an edit of the same mesh: equal `topology` (same vertex count, same triangles) and
       at least SAME_MESH_SHARE of the probe vertices in place within SAME_MESH_TOLERANCE
       of the model's median radius (a variant with a few parts moved; different characters
       that merely share a generator's topology differ almost everywhere)."""
    if not a or not b:
        return False
    if a.get("shape") and a.get("shape") == b.get("shape"):
        return True
    if not a.get("topology") or a.get("topology") != b.get("topology"):
        return False
    pa, pb = a.get("probe") or [], b.get("probe") or []
    if not pa or len(pa) != len(pb):
        return False
    import numpy as np

    diff = np.asarray(pa, np.float64) - np.asarray(pb, np.float64)
    diff -= np.median(diff, axis=0)      # align: the edit may have moved the centre a little
    d = np.linalg.norm(diff, axis=1)
    return float((d <= SAME_MESH_TOLERANCE).mean()) >= SAME_MESH_SHARE


def mesh_groups(meshes: dict[str, dict | None]) -> list[list[str]]:
    """Groups (sorted lists of rel_paths, two or more models each, sorted) of models
    with the same mesh (same_mesh, closed transitively).  Only models with equal
    `shape` or equal `topology` hashes are compared, so this stays cheap."""
    uf = _UnionFind(meshes)
    by_key: dict[tuple[str, str], list[str]] = {}
    for rel in sorted(meshes):
        m = meshes[rel] or {}
        for k in ("shape", "topology"):
            if m.get(k):
                by_key.setdefault((k, m[k]), []).append(rel)
    for (kind, _), rels in sorted(by_key.items()):
        for i, a in enumerate(rels):
            for b in rels[i + 1:]:
                if kind == "shape" or same_mesh(meshes[a], meshes[b]):
                    uf.union(a, b)
    return [g for g in uf.groups() if len(g) > 1]


def merge_units(units: dict[str, str], groups: list[list[str]]) -> dict[str, str]:
    """rel_path -> split unit, with the units of each same-mesh group united (union-find
    over units); a merged unit is named by its member units, sorted, joined with " + "."""
    uf = _UnionFind(set(units.values()))
    for g in groups:
        us = [units[r] for r in g if r in units]
        for u in us[1:]:
            uf.union(us[0], u)
    name = {}
    for members in uf.groups():
        for u in members:
            name[u] = " + ".join(members)
    return {r: name[u] for r, u in units.items()}


def split_units(rel_paths: list[str], want: int = 3,
                groups: list[list[str]] | None = None) -> dict[str, str]:
    """rel_path -> its source (the unit kept within one split).

    The source is the first path component (a top-level folder or archive, or the
    model file itself when it sits directly under --models).  Sources sharing a mesh
    (`groups`, from mesh_groups) are united (merge_units).  When that gives fewer
    than `want` distinct units (say every model lives under one folder), one level
    deeper is used, and so on down to single models, so that validation and test can
    get models of their own."""
    parts = {r: r.split("/") for r in rel_paths}
    depth = max((len(p) for p in parts.values()), default=1)
    groups = groups or []

    def key(r: str, d: int) -> str:
        p = parts[r]
        return "/".join(p[:d]) if d < len(p) else r

    for d in range(1, depth + 1):
        units = merge_units({r: key(r, d) for r in rel_paths}, groups)
        if len(set(units.values())) >= want:
            return units
    return merge_units({r: r for r in rel_paths}, groups)


# Below this many sources, hashing cannot honour the ratios (one large folder may
# land in validation and leave training a handful of models): see assign_splits.
FEW_SOURCES = 20


def assign_splits(sources: list[str], ratios=(0.9, 0.05, 0.05),
                  sizes: dict[str, int] | None = None) -> dict[str, str]:
    """source -> split by hashing (see module doc).

    With `sizes` (models per source) and 3 <= sources < FEW_SOURCES, the split is
    by size instead: test and then validation each take ONE source, the smallest
    ones (ties broken by the source hash), and training keeps all the others, so
    a small collection still trains on most of its models."""
    uniq = sorted(set(sources))
    r_train, r_val, r_test = ratios
    if sizes is not None and 3 <= len(uniq) < FEW_SOURCES:
        order = sorted(uniq, key=lambda s: (sizes.get(s, 1), source_hash(s)))
        out = {s: "train" for s in uniq}
        for split, ratio in (("test", r_test), ("validation", r_val)):
            if ratio > 0:
                out[order.pop(0)] = split
        return out
    u = {s: source_hash(s) for s in uniq}
    out = {}
    for s in uniq:
        out[s] = "train" if u[s] < r_train else ("validation" if u[s] < r_train + r_val else "test")
    if uniq and "train" not in out.values():
        out[min(uniq, key=lambda s: u[s])] = "train"   # training data comes first
    if len(uniq) >= 3:
        for split, ratio in (("test", r_test), ("validation", r_val)):
            if ratio <= 0 or any(v == split for v in out.values()):
                continue
            train = [s for s in uniq if out[s] == "train"]
            if len(train) <= 1:
                continue
            # the train source nearest the cut (highest u) moves
            out[max(train, key=lambda s: u[s])] = split
    return out


def read_json(path: str | Path, missing: str, unreadable: str) -> Any:
    """The parsed JSON file `path`; a DatasetError "<path>: <missing>" when it does not
    exist, "<path>: <unreadable> (<why>)" when it cannot be read or parsed."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path}: {missing}") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DatasetError(f"{path}: {unreadable} ({e})") from None


def load_split_file(path: str | Path) -> dict[str, str]:
    """A split file: {"train": [names...], "validation": [...], "test": [...]} or
    {"name": "train", ...}; names are model rel_paths or source names."""
    p = Path(path)
    data = read_json(p, "split file not found", "not a readable JSON split file")
    if not isinstance(data, dict):
        raise DatasetError(f"{p}: split file must be a JSON object")
    table: dict[str, str] = {}
    if data and all(k in SPLITS for k in data):
        for split, names in data.items():
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise DatasetError(f"{p}: {split!r} must be a list of model paths or folders")
            for n in names:
                n = n.replace("\\", "/").strip("/")
                if n in table and table[n] != split:
                    raise DatasetError(f"{p}: {n!r} is listed in both {table[n]} and {split}")
                table[n] = split
    else:
        bad = [k for k, v in data.items() if isinstance(v, list) and k not in SPLITS]
        if bad:  # the {split: [names]} form with a misspelt split name
            raise DatasetError(f"{p}: unknown split {', '.join(map(repr, bad))}; expected {', '.join(SPLITS)}")
        for n, split in data.items():
            if split not in SPLITS:
                raise DatasetError(f"{p}: {n!r} has split {split!r}; expected one of {', '.join(SPLITS)}")
            table[n.replace("\\", "/").strip("/")] = split
    return table


def split_from_table(rel_path: str, table: dict[str, str]) -> str | None:
    """Longest matching entry: the model's rel_path itself or one of its parent folders."""
    parts = rel_path.split("/")
    for i in range(len(parts), 0, -1):
        key = "/".join(parts[:i])
        if key in table:
            return table[key]
    return None


def file_hash(path: str | Path | None) -> str | None:
    """The sha256 of a file the user named (None for None); DatasetError when it is missing."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"{p}: file not found")
    return sha256_file(p)
