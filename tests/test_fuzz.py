"""Fuzzing the model loaders (and path handling) with mutated real models.

Contract checked (issue 7): every input ends in `ModelLoadError` naming the file or in a
valid, self-consistent `MMDModel` - never a hang (each input runs under a 3 s alarm),
never an unrelated exception, never an unbounded allocation (a count claiming 2^31
elements is refused before memory is allocated: measured with tracemalloc, which sees
numpy's buffers), and never "out of memory" from the loader (that would mean it tried).
The zip reader of `thactl render` (dataset.discover.extract_zip) gets the same treatment:
DatasetError naming the archive or a clean extraction that never writes outside its folder;
member paths that escape (.., absolute, drive letters) are refused.

The hypothesis runs are derandomised with no example database, so the default suite is
deterministic; together they take about a minute. bench/fuzz_loaders.py is the long run
(structure-aware mutations in a memory-limited worker process, minutes).
"""
from __future__ import annotations

import os
import signal
import struct
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from renderer.errors import ModelLoadError
from renderer.modelfile import load_model

from conftest import REPO, SHARED_MODELS

sys.path.insert(0, str(REPO / "bench"))
from fuzz_loaders import (MUTATIONS, SJIS_NAME, downstream, make_zip, model_problems, mutate,  # noqa: E402
                          run_zip_one, survey, zip_corpus)

PER_INPUT_SECONDS = 3

# a few real models of each format (small and large), plus the project's own PMX writer output
REAL = ["animasa_miku_pmx_j3/index.pmx", "appearance_miku_pmx/Appearance Miku_BDEF.pmx",
        "mmd_default_pmd/miku.pmd", "lowpoly_miku_gumi_pmd/gumi.pmd", "mokou_pmd/mokou_A.pmd"]


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def _corpus(tmp_root: Path) -> list[tuple[str, bytes, dict]]:
    out = []
    for rel in REAL:
        p = SHARED_MODELS / rel
        if p.is_file():
            data = p.read_bytes()
            out.append((rel, data, survey(p, data)))
    from renderer.samples import write_samples

    for p in write_samples(tmp_root / "samples", count=1, seed=3):
        data = Path(p).read_bytes()
        out.append((f"samples/{Path(p).name}", data, survey(Path(p), data)))
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _corpus(tmp_path_factory.mktemp("fuzz"))


def check_input(name: str, data: bytes, run_downstream: bool = True) -> str:
    """Load one input under a time limit; assert the contract; return 'ok' or 'error'."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, PER_INPUT_SECONDS)
    try:
        try:
            model = load_model(name, data=data)
        except ModelLoadError as e:
            msg = str(e)
            assert msg.startswith(name), f"error does not name the file: {msg}"
            assert "out of memory" not in msg, f"loader tried an absurd allocation: {msg}"
            assert "\n" not in msg, f"error is not one line: {msg!r}"
            return "error"
        except _Timeout:
            pytest.fail(f"{name}: loading took more than {PER_INPUT_SECONDS} s ({len(data)} bytes)")
        probs = model_problems(model)
        assert not probs, f"{name}: loaded an inconsistent model: {probs}"
        if run_downstream:
            bad = downstream(model)
            assert bad is None, f"{name}: loaded model breaks rig/posing/framing: {bad}"
        return "ok"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------- hypothesis: generic mutations

_FUZZ = settings(max_examples=700, deadline=None, derandomize=True, database=None, print_blob=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                        HealthCheck.function_scoped_fixture])


@_FUZZ
@given(data=st.data())
def test_mutated_models(corpus, data):
    """Bit flips, byte overwrites, header bytes, counts, truncations, insertions, ... (seeded)."""
    name, raw, fields = data.draw(st.sampled_from(corpus), label="file")
    kind = data.draw(st.sampled_from(MUTATIONS), label="mutation")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    mutated, _ = mutate(raw, fields, np.random.default_rng(seed), kind)
    check_input(name, mutated)


_VALUES = st.one_of(st.sampled_from([0, 1, 2, 3, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 1 << 24,
                                     1 << 28, 1 << 30, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]),
                    st.integers(0, 2**32 - 1))


@settings(_FUZZ, max_examples=500)
@given(data=st.data())
def test_count_and_index_fields(corpus, data):
    """Every integer field the loader reads (counts, text lengths, indices) set to odd values."""
    name, raw, fields = data.draw(st.sampled_from(corpus), label="file")
    pool = fields["counts"] + fields["texts"] + fields["ints"]
    off, size, _ = data.draw(st.sampled_from(pool), label="field")
    value = data.draw(_VALUES, label="value") & ((1 << (8 * size)) - 1)
    buf = bytearray(raw)
    buf[off:off + size] = value.to_bytes(size, "little")
    check_input(name, bytes(buf))


@settings(_FUZZ, max_examples=300)
@given(data=st.data())
def test_truncations_and_spliced_bytes(corpus, data):
    name, raw, _ = data.draw(st.sampled_from(corpus), label="file")
    cut = data.draw(st.integers(0, len(raw)), label="cut")
    junk = data.draw(st.binary(max_size=64), label="junk")
    check_input(name, raw[:cut] + junk)


@settings(_FUZZ, max_examples=200)
@given(data=st.data())
def test_header_bytes(corpus, data):
    """The PMX/PMD header (version, index sizes, encoding, name lengths) overwritten."""
    name, raw, _ = data.draw(st.sampled_from(corpus), label="file")
    edits = data.draw(st.lists(st.tuples(st.integers(0, min(300, len(raw)) - 1), st.integers(0, 255)),
                               min_size=1, max_size=4), label="edits")
    buf = bytearray(raw)
    for off, v in edits:
        buf[off] = v
    check_input(name, bytes(buf))


@settings(_FUZZ, max_examples=100)
@given(blob=st.binary(max_size=400), magic=st.sampled_from([b"PMX ", b"Pmd", b"", b"PMX \x00\x00\x00@"]))
def test_random_bytes_after_magic(blob, magic):
    check_input("random.pmx", magic + blob)


# ---------------------------------------------------------------- deterministic: huge counts

def _peak_alloc(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


def test_every_count_field_huge_is_refused_without_allocating(corpus):
    """Element counts / text lengths of each corpus file set to 2^31-1, 2^31 or 2^32-1.

    Every count field of the files is tried (cheap); a spread-out subset is also run
    under tracemalloc to show the refusal happens before any large allocation.
    """
    values = (0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
    n_checked = n_traced = 0
    for name, raw, fields in corpus:
        counts = fields["counts"] + fields["texts"][::20]
        step = max(1, len(counts) // 12)
        for k, (off, size, _) in enumerate(counts):
            value = values[k % 3]
            buf = bytearray(raw)
            buf[off:off + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
            data = bytes(buf)
            if k % step:
                check_input(name, data, run_downstream=False)
            else:
                peak = _peak_alloc(lambda: check_input(name, data, run_downstream=False))
                # the file is copied once or twice; 2^31 elements of anything would be GBs
                assert peak < 4 * len(raw) + (64 << 20), \
                    f"{name}: field at {off} = {value:#x}: peak {peak} bytes"
                n_traced += 1
            n_checked += 1
    # a user's clone has no real models: the sample character alone has ~23 count fields
    with_real = any(not name.startswith("samples/") for name, _, _ in corpus)
    assert (n_checked > 100 and n_traced > 20) if with_real else (n_checked > 15 and n_traced > 8), \
        (n_checked, n_traced)


def test_header_claiming_2_31_vertices(shared_models):
    """Explicit: the vertex count field of a PMX and of a PMD set to 2^31 - 1."""
    for rel in ("animasa_miku_pmx_j3/index.pmx", "mmd_default_pmd/miku.pmd"):
        p = shared_models / rel
        raw = p.read_bytes()
        fields = survey(p, raw)
        # the first element count the loader reads (after the names) is the vertex count
        off, size, _ = fields["counts"][0]
        buf = bytearray(raw)
        buf[off:off + 4] = struct.pack("<I", 0x7FFFFFFF)
        errs = []

        def load():
            try:
                load_model(p, data=bytes(buf))
            except ModelLoadError as e:
                errs.append(str(e))

        peak = _peak_alloc(load)
        assert errs and "vertex count 2147483647" in errs[0], errs
        assert peak < 4 * len(raw) + (16 << 20), peak


# ---------------------------------------------------------------- texture path escapes

def test_texture_paths_never_leave_the_model_folder(tmp_path):
    from renderer.textures import TextureSet, resolve_texture

    from PIL import Image

    outside = tmp_path / "secret.png"
    Image.new("RGBA", (4, 4), (255, 0, 0, 255)).save(outside)
    model_dir = tmp_path / "models" / "m"
    (model_dir / "tex").mkdir(parents=True)
    Image.new("RGBA", (4, 4), (0, 255, 0, 255)).save(model_dir / "tex" / "ok.png")
    os.symlink(outside, model_dir / "link_out.png")                    # symlink leaving the folder
    os.symlink(model_dir / "tex" / "ok.png", model_dir / "link_in.png")  # symlink staying inside
    os.symlink(tmp_path, model_dir / "updir")                          # folder symlink leaving it
    (tmp_path / "models" / "m2").mkdir()
    Image.new("RGBA", (4, 4)).save(tmp_path / "models" / "m2" / "sib.png")

    refused = ["../../secret.png", "..\\..\\secret.png", "tex/../../../secret.png", str(outside),
               "/etc/passwd", "C:\\Windows\\win.ini", "c:secret.png", "\\\\server\\share\\a.png",
               "link_out.png", "LINK_OUT.PNG", "updir/secret.png", "updir\\Secret.png",
               "../m2/sib.png", "tex\\..\\..\\m2\\sib.png", "", "..", "\x00"]
    for name in refused:
        assert resolve_texture(model_dir, name) is None, name
    assert resolve_texture(model_dir, "tex\\OK.PNG") == model_dir / "tex" / "ok.png"
    assert resolve_texture(model_dir, "tex/sub/../ok.png") == model_dir / "tex" / "ok.png"
    assert resolve_texture(model_dir, "link_in.png") is not None

    # a model folder that is itself a symlink (how the soak test duplicates models) is fine
    alias = tmp_path / "alias"
    os.symlink(model_dir, alias)
    assert resolve_texture(alias, "tex/ok.png") is not None

    ts = TextureSet(model_dir, "m.pmx")
    assert ts.get("../../secret.png") is None and ts.get("link_out.png") is None
    assert ts.get("tex/ok.png").shape == (4, 4, 4)
    assert any("refused" in m for m in ts.missing)


def test_absurd_texture_size_refused_before_decoding(tmp_path):
    """A PNG header claiming 9000x9000 pixels (81 M, under Pillow's own bomb limit) is refused
    without decoding it: a one-line RenderError naming the file, which rejects the model."""
    import zlib

    from renderer.errors import RenderError
    from renderer.textures import TextureSet, load_image

    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 9000, 9000, 8, 6, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))
    (tmp_path / "huge.png").write_bytes(png)
    with pytest.raises(RenderError, match="huge.png: texture of 9000x9000 pixels refused"):
        load_image(tmp_path / "huge.png")
    ts = TextureSet(tmp_path, "m.pmx")

    def get():
        with pytest.raises(RenderError, match="refused before decoding"):
            ts.get("huge.png")
    assert _peak_alloc(get) < (32 << 20)


# ---------------------------------------------------------------- zip reader

@pytest.fixture(scope="module")
def zips(shared_models):
    return zip_corpus(shared_models)


@settings(_FUZZ, max_examples=150)
@given(data=st.data())
def test_mutated_zip_archives(zips, tmp_path_factory, data):
    name, raw, fields = data.draw(st.sampled_from(zips), label="archive")
    kind = data.draw(st.sampled_from(MUTATIONS), label="mutation")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    mutated, _ = mutate(raw, fields, np.random.default_rng(seed), kind)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, 10)
    try:
        outcome, etype, msg = run_zip_one(name, mutated, tmp_path_factory.mktemp("zip"))
    except _Timeout:
        pytest.fail(f"{name} [{kind}]: extraction took more than 10 s")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert outcome in ("ok", "error"), f"{name} [{kind}, seed {seed}]: {etype}: {msg}"


def test_zip_members_escaping_the_folder_are_refused(shared_models, tmp_path, caplog):
    from dataset.discover import discover_models, extract_zip

    good = (shared_models / "mmd_default_pmd" / "miku.pmd").read_bytes()
    evil = {"ok/m.pmd": good, "../escape.pmd": b"Pmd", "../../escape2.txt": b"x", "/abs/x.pmd": b"Pmd",
            "C:/win/y.pmd": b"Pmd", "c:z.pmd": b"Pmd", "a/../../z.pmd": b"Pmd", "..\\back.pmd": b"Pmd",
            "ok/sub/../fine.txt": b"fine", "XXXXXXXX/k.pmd": good}
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / "pack.zip").write_bytes(make_zip(evil, sjis_placeholder="XXXXXXXX"))
    (models_dir / "bad.zip").write_bytes(make_zip({"../only.pmd": b"Pmd", "/etc/x.pmd": b"Pmd"}))
    cache = tmp_path / "cache"
    dest, models, unsafe = extract_zip(models_dir / "pack.zip", cache)
    assert models == sorted(["ok/m.pmd", f"{SJIS_NAME}/k.pmd"])          # Shift-JIS name decoded
    assert len(unsafe) == 8, unsafe                     # any '..' component is refused
    assert (dest / "ok" / "m.pmd").read_bytes() == good
    # nothing landed outside the extraction folder
    inside = {p.relative_to(tmp_path).parts[0] for p in tmp_path.rglob("*")}
    assert inside == {"models", "cache"}
    real_cache = os.path.realpath(cache)
    assert all(os.path.realpath(p).startswith(real_cache + os.sep) for p in cache.rglob("*"))
    assert not list(tmp_path.rglob("escape*")) and not list(tmp_path.rglob("back.pmd"))

    with caplog.at_level("WARNING", logger="thactl.dataset"):
        found = discover_models(models_dir, tmp_path / "cache2")
    by = {m.rel_path: m for m in found}
    assert by["bad.zip"].path is None and "unsafe" in by["bad.zip"].error
    assert "pack.zip/ok/m.pmd" in by and by["pack.zip/ok/m.pmd"].path.is_file()
    assert any("unsafe member" in r.getMessage() for r in caplog.records)


def test_zip_member_with_an_empty_name(tmp_path):
    """Found by fuzzing: a member whose name is empty (NUL bytes) crashed ZipInfo.is_dir()."""
    import io
    import zipfile

    from dataset.discover import extract_zip

    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        z.writestr("a.pmd", b"Pmd")
        z.writestr("ok.txt", b"ok")
    (tmp_path / "e.zip").write_bytes(b.getvalue().replace(b"a.pmd", b"\x00" * 5))
    dest, models, unsafe = extract_zip(tmp_path / "e.zip", tmp_path / "cache")
    assert models == [] and unsafe == [""] and (dest / "ok.txt").read_bytes() == b"ok"
