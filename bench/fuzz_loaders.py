"""Long fuzz run over the model loaders (PMX, PMD) and the zip reader of dataset/discover.py
(extract_zip, then load_model on what it extracted): mutated and truncated real models and
archives of them.

    .venv/bin/python bench/fuzz_loaders.py [--seconds 300] [--seed 0] [--models DIR]
                                          [--timeout 5] [--mem-limit-mb 1024] [--no-downstream]

Every input must end in `ModelLoadError` (or the zip reader's own error type) or a
valid `MMDModel`. Anything else is UNEXPECTED and is saved under --repro-dir:

  * another exception type (a parser bug that leaks out),
  * a hang: no answer within --timeout seconds (the worker is killed and restarted),
  * a crash of the worker process (segfault, killed),
  * an unbounded allocation: the worker runs under RLIMIT_AS = its start size +
    --mem-limit-mb, so an allocation driven by a bogus count surfaces as MemoryError,
    which the loader turns into "... out of memory" - counted as unexpected here,
  * a "valid" model that breaks the MMDModel invariants (face index >= vertex count,
    material ranges outside the index buffer, bone/morph references out of range, ...),
  * (downstream, on by default) a loaded model that makes face-rig resolution, posing or
    framing raise something other than a RendererError.

Mutations are structure-aware: a survey parse of each corpus file records where every
integer field and element count sits (by wrapping the reader's integer reads), so counts
can be set to huge / negative / off-by-one values, besides bit flips, byte overwrites,
header overwrites, truncations, insertions, deletions and duplicated spans. Each input is
a pure function of (--seed, input number), so an unexpected case can be re-created with
`--replay N`.

Prints: inputs tried (per format and mutation), outcomes, distinct error types, distinct
error messages (numbers and names normalised), unexpected cases, and the peak RSS of the
worker (resource.getrusage) with its RSS after the first and the last input.
"""
from __future__ import annotations

import argparse
import collections
import io
import multiprocessing as mp
import os
import re
import resource
import struct
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_MODELS = Path(os.environ.get("THACTL_TEST_MODELS", REPO.parent / "shared" / "models"))

# ------------------------------------------------------------------ corpus + survey


def corpus_files(models_dir: Path) -> list[Path]:
    if not models_dir.is_dir():
        return []
    return sorted(p for p in models_dir.rglob("*") if p.suffix.lower() in (".pmx", ".pmd"))


def survey(path: Path, data: bytes) -> dict:
    """Offsets of the integer fields and counts the loader reads from a valid file.

    Returns {"ints": [(offset, size, signed)], "counts": [(offset, size, signed)],
    "arrays": [(offset, itemsize, n)], "texts": [(offset, 4, True)]} (texts = PMX text
    length fields). Found by wrapping the reader's integer reads
    during one parse (the loader itself is not changed).
    """
    from pymeshio import common as pm_common

    from renderer import modelfile as mf

    ints: list[tuple[int, int, bool]] = []
    counts: list[tuple[int, int, bool]] = []
    arrays: list[tuple[int, int, int]] = []
    texts: list[tuple[int, int, bool]] = []
    orig_int, orig_uint = pm_common.BinaryReader.read_int, pm_common.BinaryReader.read_uint
    orig_count, orig_array = mf._ArrayMixin.count, mf._ArrayMixin.array
    orig_text = mf._PmxReader.get_read_text

    def read_int(self, size):
        ints.append((self.ios.tell(), size, True))
        return orig_int(self, size)

    def read_uint(self, size):
        ints.append((self.ios.tell(), size, False))
        return orig_uint(self, size)

    def count(self, fmt, min_item, what):
        counts.append((self.ios.tell(), struct.calcsize(fmt), fmt[-1].islower()))
        return orig_count(self, fmt, min_item, what)

    def array(self, dtype, n, what):
        arrays.append((self.ios.tell(), np.dtype(dtype).itemsize, n))
        return orig_array(self, dtype, n, what)

    def get_read_text(self, enc):
        inner = orig_text(self, enc)

        def read_text():
            texts.append((self.ios.tell(), 4, True))
            return inner()
        return read_text

    pm_common.BinaryReader.read_int, pm_common.BinaryReader.read_uint = read_int, read_uint
    mf._ArrayMixin.count, mf._ArrayMixin.array = count, array
    mf._PmxReader.get_read_text = get_read_text
    try:
        mf.load_model(path, data=data)
    finally:
        pm_common.BinaryReader.read_int, pm_common.BinaryReader.read_uint = orig_int, orig_uint
        mf._ArrayMixin.count, mf._ArrayMixin.array = orig_count, orig_array
        mf._PmxReader.get_read_text = orig_text
    return {"ints": sorted(set(ints)), "counts": sorted(set(counts)), "arrays": arrays,
            "texts": sorted(set(texts))}


# ------------------------------------------------------------------ mutations

_HUGE = [0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 30, 1 << 28, 1 << 24, 0x10000, 0xFFFF, 0x7FFF,
         0x8000, 0xFF, 0x7F, 0x80]


def _set_int(buf: bytearray, off: int, size: int, value: int) -> None:
    if off + size <= len(buf):
        buf[off:off + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


def _interesting(rng: np.random.Generator, orig: int, size: int) -> int:
    choices = [0, -1, 1, orig + 1, orig - 1, orig * 2, orig * 1000 + 7, -orig, -(1 << (8 * size - 1)),
               int(rng.integers(0, 1 << min(8 * size, 62)))] + _HUGE
    return int(choices[int(rng.integers(len(choices)))])


MUTATIONS = ("bitflip", "overwrite", "header", "int_field", "count_field", "array_elem", "truncate",
             "insert", "delete", "duplicate", "multi")


def mutate(data: bytes, fields: dict, rng: np.random.Generator, kind: str | None = None) -> tuple[bytes, str]:
    """One mutated copy of `data` and the name of the mutation applied."""
    kind = kind or MUTATIONS[int(rng.integers(len(MUTATIONS)))]
    buf = bytearray(data)
    n = len(buf)
    if kind == "multi":
        out = bytes(buf)
        names = []
        for _ in range(int(rng.integers(2, 5))):
            sub = MUTATIONS[int(rng.integers(len(MUTATIONS) - 1))]
            out, _ = mutate(out, fields, rng, sub)
            names.append(sub)
        return out, "multi"
    if n == 0:
        return bytes(rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8)), kind
    if kind == "bitflip":
        for _ in range(int(rng.integers(1, 9))):
            i = int(rng.integers(n))
            buf[i] ^= 1 << int(rng.integers(8))
    elif kind == "overwrite":
        i = int(rng.integers(n))
        k = int(rng.integers(1, 17))
        buf[i:i + k] = rng.integers(0, 256, k, dtype=np.uint8).tobytes()
        del buf[n:]
    elif kind == "header":
        lim = min(n, 300)
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(lim))
            buf[i] = int(rng.choice([0, 1, 2, 3, 4, 5, 8, 0x7F, 0x80, 0xFF, int(rng.integers(256))]))
    elif kind in ("int_field", "count_field"):
        pool = (fields.get("ints", []) if kind == "int_field"
                else fields.get("counts", []) + fields.get("texts", [])[::4])
        if not pool:
            return mutate(data, fields, rng, "overwrite")
        off, size, _signed = pool[int(rng.integers(len(pool)))]
        orig = int.from_bytes(bytes(buf[off:off + size]), "little")
        _set_int(buf, off, size, _interesting(rng, orig, size))
    elif kind == "array_elem":
        pool = [a for a in fields.get("arrays", []) if a[2] > 0]
        if not pool:
            return mutate(data, fields, rng, "overwrite")
        off, item, cnt = pool[int(rng.integers(len(pool)))]
        j = off + item * int(rng.integers(cnt))
        size = int(rng.choice([1, 2, 4]))
        size = min(size, item)
        _set_int(buf, j, size, _interesting(rng, int.from_bytes(bytes(buf[j:j + size]), "little"), size))
    elif kind == "truncate":
        cuts = [f[0] for f in fields.get("counts", [])]
        if cuts and rng.random() < 0.5:
            cut = cuts[int(rng.integers(len(cuts)))] + int(rng.integers(0, 5))
        else:
            cut = int(rng.integers(n))
        del buf[min(cut, n):]
    elif kind == "insert":
        i = int(rng.integers(n + 1))
        buf[i:i] = rng.integers(0, 256, int(rng.integers(1, 65)), dtype=np.uint8).tobytes()
    elif kind == "delete":
        i = int(rng.integers(n))
        del buf[i:i + int(rng.integers(1, 65))]
    elif kind == "duplicate":
        i = int(rng.integers(n))
        k = int(rng.integers(1, 257))
        buf[i:i] = buf[i:i + k]
    else:
        raise ValueError(kind)
    return bytes(buf), kind


# ------------------------------------------------------------------ checks on a loaded model

def model_problems(m) -> list[str]:
    """Broken MMDModel invariants (empty = consistent)."""
    p: list[str] = []
    V = m.positions.shape[0] if m.positions.ndim == 2 else -1
    for name, shape in (("positions", (V, 3)), ("normals", (V, 3)), ("uvs", (V, 2)), ("bone_indices", (V, 4)),
                        ("bone_weights", (V, 4)), ("skin_type", (V,)), ("edge_scale", (V,)),
                        ("sdef_c", (V, 3))):
        a = getattr(m, name)
        if a.shape != shape:
            p.append(f"{name} shape {a.shape} != {shape}")
    if m.extra_uvs.ndim != 3 or m.extra_uvs.shape[1:] != (V, 4) or m.extra_uvs.shape[0] > 4:
        p.append(f"extra_uvs shape {m.extra_uvs.shape}")
    if m.indices.ndim != 2 or m.indices.shape[1] != 3:
        p.append(f"indices shape {m.indices.shape}")
    elif m.indices.size and int(m.indices.max()) >= V:
        p.append(f"face index {int(m.indices.max())} >= V={V}")
    total = int(m.indices.size)
    for mat in m.materials:
        if mat.index_start < 0 or mat.index_count < 0 or mat.index_start + mat.index_count > total:
            p.append(f"material {mat.name!r} range {mat.index_start}+{mat.index_count} outside {total}")
    B = len(m.bones)
    if V > 0 and (m.bone_indices.min() < 0 or m.bone_indices.max() >= max(B, 1)):
        p.append("bone index out of range")
    for i, b in enumerate(m.bones):
        if not -1 <= b.parent < B or b.parent == i:
            p.append(f"bone {i} parent {b.parent}")
        if not -1 <= b.append_parent < B:
            p.append(f"bone {i} append parent {b.append_parent}")
    nM = len(m.morphs)
    for mo in m.morphs:
        idx = np.asarray(mo.indices)
        if idx.size == 0:
            continue
        k = int(mo.kind)
        hi = {1: V, 3: V, 4: V, 5: V, 6: V, 7: V, 2: B, 0: nM, 9: nM, 8: len(m.materials)}.get(k)
        lo = -1 if k == 8 else 0
        if hi is not None and (idx.min() < lo or idx.max() >= hi):
            p.append(f"morph {mo.name!r} kind {k} index out of range")
    return p


def downstream(m) -> str | None:
    """Run face rig / posing / framing on a loaded model; return the non-RendererError, if any."""
    from core.errors import typed_first_line
    from renderer.errors import RendererError

    try:
        from renderer.framing import estimate_frame
        from renderer.face_rig import resolve_face_rig
        from core.pose import REST_POSE
        from renderer.posing import ModelPoser

        rig = resolve_face_rig(m)
        if rig.problems():
            return None
        poser = ModelPoser(m, rig)
        rest = poser.pose(REST_POSE)
        estimate_frame(m, rig, rest.positions)
        poser.pose(np.array([0.7, -0.4, 0.3, 1, 0, 0.5], np.float32))
    except RendererError:
        return None
    except Exception as e:  # noqa: BLE001 - that is what we are looking for
        return typed_first_line(e, 150)
    return None


# ------------------------------------------------------------------ zip reader (dataset/discover.py)

SJIS_NAME = "初音ミク"


def make_zip(files: dict[str, bytes], sjis_placeholder: str | None = None) -> bytes:
    """A deflated zip of `files`. Member names containing `sjis_placeholder` get it replaced by
    SJIS_NAME encoded as Shift-JIS *without* the UTF-8 flag (as Japanese Windows zips do)."""
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    out = b.getvalue()
    if sjis_placeholder:
        raw = SJIS_NAME.encode("cp932")
        assert len(raw) == len(sjis_placeholder)
        out = out.replace(sjis_placeholder.encode("ascii"), raw)
    return out


def zip_fields(data: bytes) -> dict:
    """Offsets of the integer fields of a (well-formed) zip: local headers, central directory,
    end record - the same shape as survey() gives for models."""
    ints: list[tuple[int, int, bool]] = []
    counts: list[tuple[int, int, bool]] = []
    eocd = data.rfind(b"PK\x05\x06")
    if eocd < 0:
        return {"ints": [], "counts": [], "arrays": [], "texts": []}
    counts += [(eocd + 8, 2, False), (eocd + 10, 2, False), (eocd + 12, 4, False), (eocd + 16, 4, False),
               (eocd + 20, 2, False)]
    cd = struct.unpack_from("<I", data, eocd + 16)[0]
    n = struct.unpack_from("<H", data, eocd + 10)[0]
    p = cd
    for _ in range(n):
        if data[p:p + 4] != b"PK\x01\x02":
            break
        ints += [(p + 8, 2, False), (p + 10, 2, False), (p + 16, 4, False), (p + 38, 4, False)]
        counts += [(p + 20, 4, False), (p + 24, 4, False), (p + 28, 2, False), (p + 30, 2, False),
                   (p + 32, 2, False), (p + 42, 4, False)]
        nlen, xlen, clen = struct.unpack_from("<HHH", data, p + 28)
        lh = struct.unpack_from("<I", data, p + 42)[0]
        if data[lh:lh + 4] == b"PK\x03\x04":
            ints += [(lh + 6, 2, False), (lh + 8, 2, False), (lh + 14, 4, False)]
            counts += [(lh + 18, 4, False), (lh + 22, 4, False), (lh + 26, 2, False), (lh + 28, 2, False)]
        p += 46 + nlen + xlen + clen
    return {"ints": ints, "counts": counts, "arrays": [], "texts": []}


def zip_corpus(models_dir: Path) -> list[tuple[str, bytes, dict]]:
    """Zips built from real model files: a PMD with textures in a sub-folder and a Shift-JIS
    member name, and one holding unsafe member names beside a good model."""
    pmd = models_dir / "lowpoly_miku_gumi_pmd" / "gumi.pmd"
    tex = models_dir / "mmd_default_pmd"
    if not pmd.is_file() or not tex.is_dir():
        return []
    files = {"gumi/gumi.pmd": pmd.read_bytes(), "gumi/tex/eye2.bmp": (tex / "eye2.bmp").read_bytes(),
             "gumi/toon01.bmp": (tex / "toon01.bmp").read_bytes(), "gumi/readme.txt": b"hello",
             "gumi/XXXXXXXX.pmd": (models_dir / "mmd_default_pmd" / "miku.pmd").read_bytes()[:20000]}
    a = make_zip(files, sjis_placeholder="XXXXXXXX")
    evil = {"ok/m.pmd": pmd.read_bytes(), "../escape.pmd": b"Pmd", "/abs/x.pmd": b"Pmd",
            "C:/win/y.pmd": b"Pmd", "a/../../z.pmd": b"Pmd", "..\\back.pmd": b"Pmd"}
    b = make_zip(evil)
    return [("archive.zip", a, zip_fields(a)), ("evil.zip", b, zip_fields(b))]


def run_zip_one(name: str, data: bytes, workdir: Path) -> tuple[str, str, str]:
    """extract_zip on one (mutated) archive: DatasetError or a clean extraction that stays inside
    its folder; extracted models then go through load_model."""
    from dataset.discover import extract_zip
    from dataset.errors import DatasetError
    from renderer.errors import ModelLoadError
    from renderer.modelfile import load_model

    import shutil as _sh

    root = workdir / "z"
    _sh.rmtree(root, ignore_errors=True)
    (root / "in").mkdir(parents=True)
    zp = root / "in" / name
    zp.write_bytes(data)
    cache = root / "cache"
    try:
        try:
            dest, models, unsafe = extract_zip(zp, cache)
        except DatasetError as e:
            msg = str(e)
            if str(zp) not in msg:
                return "unexpected", "DatasetError", f"message does not name the archive: {msg[:200]}"
            return "error", "DatasetError", "zip: " + normalise(msg)
        except BaseException as e:  # noqa: BLE001
            return "unexpected", type(e).__name__, "".join(traceback.format_exception(e))[-1500:]
        real_cache = os.path.realpath(cache)
        for p in cache.rglob("*"):
            if p.is_symlink():
                return "unexpected", "ZipEscape", f"symlink extracted: {p}"
            if os.path.commonpath([real_cache, os.path.realpath(p)]) != real_cache:
                return "unexpected", "ZipEscape", f"file outside the cache: {p}"
        if any(not (dest / m).is_file() for m in models):
            return "unexpected", "ZipModels", "listed model not extracted"
        for m in models:
            try:
                load_model(dest / m)
            except ModelLoadError:
                pass
            except BaseException as e:  # noqa: BLE001
                return "unexpected", type(e).__name__, f"load_model on extracted {m}: {e}"[:300]
        return "ok", "zip", ""
    finally:
        _sh.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------ worker

_NORMALISE = [(re.compile(r"'[^']*'"), "'…'"), (re.compile(r'"[^"]*"'), '"…"'),
              (re.compile(r"b'\\?[^']*'"), "b'…'"), (re.compile(r"-?\d+(\.\d+)?(e[-+]?\d+)?"), "N")]


def normalise(msg: str) -> str:
    msg = msg.split(": ", 1)[1] if ": " in msg else msg   # drop the path
    for rx, rep in _NORMALISE:
        msg = rx.sub(rep, msg)
    return msg[:160]


def rss_kb() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except OSError:
        return -1


def make_input(corpus, i: int, seed: int):
    rng = np.random.default_rng([seed, i])
    groups: dict[str, list[int]] = {}
    for j, (n, d, _) in enumerate(corpus):
        groups.setdefault("zip" if n.endswith(".zip") else d[:3].decode("latin-1"), []).append(j)
    keys = sorted(groups)
    g = groups[keys[int(rng.integers(len(keys)))]]          # PMX, PMD, zip: equal shares
    k = g[int(rng.integers(len(g)))]
    name, data, fields = corpus[k]
    out, kind = mutate(data, fields, rng)
    return name, out, kind


def run_one(name: str, data: bytes, do_downstream: bool, workdir: Path | None = None) -> tuple[str, str, str]:
    """(outcome, error type, message) for one input; outcome in ok/error/unexpected/oom."""
    if name.endswith(".zip"):
        return run_zip_one(name, data, workdir or Path(tempfile.mkdtemp()))
    from renderer.errors import ModelLoadError
    from renderer.modelfile import load_model

    try:
        m = load_model(name, data=data)
    except ModelLoadError as e:
        msg = str(e)
        if not msg.startswith(str(Path(name))):
            return "unexpected", "ModelLoadError", f"message does not name the file: {msg[:200]}"
        if "out of memory" in msg:
            return "oom", "ModelLoadError", msg[:300]
        return "error", "ModelLoadError", normalise(msg)
    except BaseException as e:  # noqa: BLE001
        return "unexpected", type(e).__name__, "".join(traceback.format_exception(e))[-1500:]
    probs = model_problems(m)
    if probs:
        return "unexpected", "InvalidModel", "; ".join(probs[:5])
    if do_downstream:
        d = downstream(m)
        if d:
            return "unexpected", "Downstream", d
    nonfinite = not (np.isfinite(m.positions).all() and np.isfinite(m.bone_weights).all())
    return "ok", "nonfinite" if nonfinite else "", ""


def worker(conn, corpus, seed, mem_limit_mb, do_downstream):
    if mem_limit_mb:
        with open("/proc/self/statm") as f:
            vm = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        lim = vm + mem_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    first_rss = None
    workdir = Path(tempfile.mkdtemp(prefix="thactl-fuzz-"))
    import warnings
    warnings.simplefilter("ignore", RuntimeWarning)      # numpy overflow chatter on absurd floats
    while True:
        i = conn.recv()
        if i is None:
            break
        name, data, kind = make_input(corpus, i, seed)
        res = run_one(name, data, do_downstream, workdir)
        r = rss_kb()
        if first_rss is None:
            first_rss = r
        conn.send((res, kind, r, first_rss, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


# ------------------------------------------------------------------ main

def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", type=Path, default=DEFAULT_MODELS)
    ap.add_argument("--timeout", type=float, default=5.0, help="per input, seconds")
    ap.add_argument("--mem-limit-mb", type=int, default=1024, help="RLIMIT_AS headroom of the worker")
    ap.add_argument("--no-downstream", action="store_true", help="skip face rig / posing / framing checks")
    ap.add_argument("--repro-dir", type=Path, default=Path(tempfile.gettempdir()) / "thactl-fuzz-repro")
    ap.add_argument("--replay", type=int, default=None, help="re-create input N, run it in-process, print")
    ap.add_argument("--max-inputs", type=int, default=None)
    return ap.parse_args(argv)


def build_corpus(models: Path, files: list[Path]) -> list[tuple[str, bytes, dict]]:
    """The model files with their surveys, two sample characters (the project's own PMX writer: another
    PMX dialect) and zips of the model folders."""
    corpus = []
    for p in files:
        data = p.read_bytes()
        corpus.append((str(p.relative_to(models)), data, survey(p, data)))
    try:
        from renderer.samples import write_samples

        with tempfile.TemporaryDirectory() as td:
            for p in write_samples(td, count=2, seed=0):
                data = Path(p).read_bytes()
                corpus.append((f"samples/{Path(p).name}", data, survey(Path(p), data)))
    except Exception as e:  # noqa: BLE001
        print(f"(samples not added: {e})")
    zips = zip_corpus(models)
    corpus += zips
    if not zips:
        print("(zip reader not fuzzed: models missing)")
    return corpus


class FuzzWorker:
    """The forked, memory-limited process that runs the inputs; replaced when it dies or hangs."""

    def __init__(self, corpus, args: argparse.Namespace):
        self.ctx = mp.get_context("fork")
        self.corpus, self.args = corpus, args
        self.restarts = 0
        self.start()

    def start(self) -> None:
        a, b = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=worker, args=(b, self.corpus, self.args.seed, self.args.mem_limit_mb,
                                                          not self.args.no_downstream), daemon=True)
        self.proc.start()
        self.conn = a

    def ask(self, i: int):
        """Run input `i`: the worker's reply (result, kind, rss, first rss, max rss), or None when it gave
        none within the time limit."""
        self.conn.send(i)
        if self.conn.poll(self.args.timeout):
            try:
                return self.conn.recv()
            except EOFError:
                return None
        return None

    def replace(self) -> tuple[str, str, str]:
        """Kill the worker that gave no answer, start another; the outcome to record for the input."""
        alive = self.proc.is_alive()
        self.proc.kill()
        self.proc.join()
        outcome = ("unexpected", "Hang" if alive else f"WorkerDied(exit {self.proc.exitcode})",
                   f"no answer in {self.args.timeout}s" if alive else "worker process died")
        self.restarts += 1
        self.start()
        return outcome

    def stop(self) -> None:
        self.conn.send(None)
        self.proc.join(5)


class Tally:
    """What a fuzzing run saw: inputs by format and mutation, outcomes, errors, the slowest input,
    the worker's memory, the unexpected outcomes (their inputs saved for --replay)."""

    def __init__(self):
        self.stats = collections.Counter()
        self.by_fmt = collections.Counter()
        self.by_kind = collections.Counter()
        self.types = collections.Counter()
        self.messages = collections.Counter()
        self.unexpected: list[tuple[int, str, str, str, str]] = []
        self.worst_s, self.worst_i = 0.0, -1
        self.rss_first = self.rss_last = self.maxrss = 0

    def count_input(self, name: str, data: bytes, kind: str) -> None:
        fmt = ("zip" if name.endswith(".zip") else "PMX" if data[:4] == b"PMX "
               else "PMD" if data[:3] == b"Pmd" else "other")
        self.by_fmt[fmt] += 1
        self.by_kind[kind] += 1

    def record(self, i: int, name: str, kind: str, data: bytes, res: tuple[str, str, str],
               repro_dir: Path, seed: int) -> None:
        outcome, etype, msg = res
        self.stats[outcome] += 1
        if outcome == "error":
            self.types[etype] += 1
            self.messages[msg] += 1
        elif outcome == "ok" and etype == "nonfinite":
            self.stats["ok (non-finite positions/weights)"] += 1
        elif outcome in ("unexpected", "oom"):
            self.types[etype] += 1
            f = repro_dir / f"input-{seed}-{i}{Path(name).suffix}"
            f.write_bytes(data)
            self.unexpected.append((i, name, kind, etype, msg))


def fuzz(args: argparse.Namespace, corpus) -> tuple[Tally, int, int, float]:
    """Run inputs 0, 1, ... in the worker until --seconds or --max-inputs; (tally, inputs, worker
    restarts, seconds)."""
    tally = Tally()
    w = FuzzWorker(corpus, args)
    t0 = time.monotonic()
    i = 0
    args.repro_dir.mkdir(parents=True, exist_ok=True)
    while time.monotonic() - t0 < args.seconds and (args.max_inputs is None or i < args.max_inputs):
        name, data, kind = make_input(corpus, i, args.seed)   # parent copy: for stats / repro
        tally.count_input(name, data, kind)
        ts = time.monotonic()
        reply = w.ask(i)
        res = None
        if reply is not None:
            res, _k, rss, first, mx = reply
            tally.rss_last, tally.rss_first = rss, tally.rss_first or first
            tally.maxrss = max(tally.maxrss, mx)
        dt = time.monotonic() - ts
        if dt > tally.worst_s:
            tally.worst_s, tally.worst_i = dt, i
        if res is None:
            res = w.replace()
        tally.record(i, name, kind, data, res, args.repro_dir, args.seed)
        i += 1
    w.stop()
    return tally, i, w.restarts, time.monotonic() - t0


def report(t: Tally, args: argparse.Namespace, corpus_size: int, inputs: int, restarts: int,
           elapsed: float) -> None:
    print(f"fuzz_loaders: {inputs} inputs in {elapsed:.0f} s ({inputs / max(elapsed, 1e-9):.0f}/s), seed {args.seed}, "
          f"corpus {corpus_size} files, per-input limit {args.timeout}s, RLIMIT_AS headroom {args.mem_limit_mb} MB")
    print("  by format:   " + ", ".join(f"{k} {v}" for k, v in t.by_fmt.most_common()))
    print("  by mutation: " + ", ".join(f"{k} {v}" for k, v in t.by_kind.most_common()))
    print("  outcomes:    " + ", ".join(f"{k} {v}" for k, v in t.stats.most_common()))
    print("  error types: " + ", ".join(f"{k} {v}" for k, v in t.types.most_common()))
    print(f"  distinct error messages (normalised): {len(t.messages)}")
    for msg, c in t.messages.most_common(40):
        print(f"    {c:6d}  {msg}")
    if len(t.messages) > 40:
        print(f"    ... and {len(t.messages) - 40} more")
    print(f"  slowest input: #{t.worst_i} {t.worst_s * 1000:.0f} ms; worker restarts {restarts}")
    print(f"  worker RSS: after first input {t.rss_first / 1024:.0f} MB, after last {t.rss_last / 1024:.0f} MB, "
          f"peak (ru_maxrss) {t.maxrss / 1024:.0f} MB")
    print(f"  UNEXPECTED: {len(t.unexpected)}")
    for j, name, kind, etype, msg in t.unexpected[:30]:
        print(f"    #{j} {name} [{kind}] {etype}: {msg.strip().splitlines()[-1][:200] if msg.strip() else ''}")
    if t.unexpected:
        print(f"  inputs saved in {args.repro_dir}; re-create one with --replay N --seed {args.seed}")


def main(argv=None) -> int:
    args = parse_args(argv)
    files = corpus_files(args.models)
    if not files:
        print(f"no models under {args.models}", file=sys.stderr)
        return 2
    corpus = build_corpus(args.models, files)
    if args.replay is not None:
        name, data, kind = make_input(corpus, args.replay, args.seed)
        print(f"input {args.replay}: {name} {kind} {len(data)} bytes")
        print(run_one(name, data, not args.no_downstream))
        return 0
    tally, inputs, restarts, elapsed = fuzz(args, corpus)
    report(tally, args, len(corpus), inputs, restarts, elapsed)
    return 1 if tally.unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
