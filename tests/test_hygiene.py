"""Resource hygiene of long renders (issue 7): one RenderContext, many models in turn.

* 60 load -> prepare -> render -> release cycles over the real models at 64 px: every GL
  object a ModelScene creates is released with it (counted by tracking what the context
  hands out: buffers, textures, vertex arrays, programs, framebuffers, renderbuffers),
  while the first model renders to the same pixels at the start and at the end (no state
  leaks); a slow-marked twin also bounds the RSS growth after a warm-up pass.
* Models that make the renderer fail are rejected cleanly: a texture Pillow cannot
  decode falls back to the material colour with a warning, a texture whose header claims
  more than the cap rejects the model; a material outside the index buffer or a broken material
  flag raises RenderError naming the model, leaves no GL object behind, and the same
  context keeps rendering other models identically.
* `thactl render`'s worker pool survives a worker killed mid-task (re-runs the task, keeps
  result order) and names a task that kills its worker every time.
"""
from __future__ import annotations

import ctypes
import logging
import gc
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from renderer.errors import RenderError, RendererError

from conftest import real_model_verdict, usable_real_model_paths

SIZE = 64
CYCLES = 60


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _trim() -> None:
    gc.collect()
    try:  # give freed heap pages back so RSS reflects live memory
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class GLTracker:
    """Wraps the object factories of the shared moderngl context and tracks what they made."""

    FACTORIES = ("buffer", "texture", "vertex_array", "program", "framebuffer", "renderbuffer",
                 "depth_renderbuffer", "simple_vertex_array", "sampler")

    def __init__(self, ctx):
        self.ctx = ctx
        self.made: list = []
        self._saved = {}

    def __enter__(self):
        for name in self.FACTORIES:
            orig = getattr(self.ctx, name)
            self._saved[name] = orig

            def wrapped(*a, _orig=orig, _name=name, **kw):
                obj = _orig(*a, **kw)
                self.made.append((_name, obj))
                return obj
            setattr(self.ctx, name, wrapped)       # instance attribute shadows the method
        return self

    def __exit__(self, *exc):
        for name in self._saved:
            delattr(self.ctx, name)

    def live(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for name, obj in self.made:
            if type(obj.mglo).__name__ != "InvalidObject":
                out[name] = out.get(name, 0) + 1
        return out


def _prepared_models():
    """(path, frame) for every real model the product's check accepts (the cycle test loads
    them again itself); rejected models are left out by their verdict, not by a count."""
    from renderer.framing import Frame

    out = []
    for p in usable_real_model_paths():
        cx, cy, half = real_model_verdict(p).frame
        out.append((p, Frame(cx, cy, half)))
    return out


@pytest.fixture(scope="module")
def models(shared_models):
    got = _prepared_models()
    if len(got) < 3:
        pytest.skip("need at least 3 usable real models")
    return got


@pytest.fixture(scope="module")
def rc():
    from renderer.errors import ContextError
    from renderer.offscreen import RenderContext

    try:
        ctx = RenderContext(size=SIZE, aa=4)
    except ContextError as e:
        pytest.skip(str(e))
    yield ctx
    ctx.release()


def _cycle(rc, path, frame, pose):
    """One full model lifetime: load, rig, pose, prepare, render twice, release."""
    from renderer.modelfile import load_model
    from renderer.face_rig import resolve_face_rig
    from core.pose import REST_POSE
    from renderer.posing import ModelPoser

    m = load_model(path)
    poser = ModelPoser(m, resolve_face_rig(m))
    with rc.prepare(m, "toon" if hash(path.name) % 2 else "phong") as scene:
        a = scene.render(poser.pose(REST_POSE), frame)
        b = scene.render(poser.pose(pose), frame, ambient=0.8)
    return a, b


def _run_cycles(rc, models) -> list[float]:
    """CYCLES model lifetimes over `models` in one context; asserts after each that every GL
    object made for the scene is released, and at the end that the first model renders to the
    same pixels again. Returns the process RSS (MB) after each cycle."""
    rng = np.random.default_rng(0)
    order = [models[i % len(models)] for i in range(CYCLES)]
    poses = np.concatenate([rng.uniform(-1, 1, (CYCLES, 3)), rng.uniform(0, 1, (CYCLES, 3))], 1)
    first_img = None
    rss: list[float] = []
    with GLTracker(rc.ctx) as tr:
        base_live = tr.live()
        for i, ((path, frame), pose) in enumerate(zip(order, poses)):
            a, b = _cycle(rc, path, frame, pose.astype(np.float32))
            assert a[..., 3].any() and b[..., 3].any(), f"{path}: nothing rendered"
            if i == 0:
                first_img = a
            live = tr.live()
            # everything made for the scene is gone; at most the context's cached programs remain
            extra = {k: v for k, v in live.items() if k != "program" and v != base_live.get(k, 0)}
            assert not extra, f"cycle {i} ({path.name}): GL objects still alive after release: {extra}"
            assert live.get("program", 0) <= 4, live
            _trim()
            rss.append(_rss_mb())
        made = len(tr.made)
    # same model, same pose, same context, 60 models later: identical pixels
    again, _ = _cycle(rc, order[0][0], order[0][1], poses[0].astype(np.float32))
    assert np.array_equal(again, first_img)
    assert made > CYCLES * 5            # the tracker did see the scenes' objects
    return rss


def test_many_model_cycles_release_gl_objects(rc, models):
    _run_cycles(rc, models)


@pytest.mark.slow
def test_many_model_cycles_keep_rss_flat(rc, models):
    """Memory figures depend on what else the machine runs, so this one is slow-marked (the
    default suite holds no memory threshold); `bench/soak_render.py` measures RSS too."""
    rss = _run_cycles(rc, models)
    warm = min(len(models), CYCLES // 2)      # after one pass over the models (or half the run)
    after_warmup = rss[warm - 1]
    growth = max(rss[warm:]) - after_warmup
    print(f"RSS MB: start {rss[0]:.0f}, after warm-up {after_warmup:.0f}, end {rss[-1]:.0f}, "
          f"max growth after warm-up {growth:.1f}")
    # transient plateaus of ~20 MB (allocator / llvmpipe caches) come and go; a leak of one
    # model's data per cycle would add up to hundreds of MB over the run
    assert growth < 128, f"RSS grew {growth:.1f} MB after warm-up: {[round(r) for r in rss]}"


# ---------------------------------------------------------------- models that make rendering fail

def _copy_model(tmp_path: Path, shared_models: Path) -> Path:
    """A private copy of a real PMD model folder (its textures can then be broken)."""
    src = shared_models / "mokou_pmd"
    dst = tmp_path / "m"
    dst.mkdir()
    for f in src.iterdir():
        if f.suffix.lower() in (".bmp", ".tga") or f.name == "mokou_A.pmd":
            shutil.copy(f, dst / f.name)
    return dst / "mokou_A.pmd"


def _png_header(w: int, h: int) -> bytes:
    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b""))


def _render(rc, path):
    from renderer.framing import estimate_frame
    from renderer.modelfile import load_model
    from renderer.face_rig import resolve_face_rig
    from core.pose import REST_POSE
    from renderer.posing import ModelPoser

    m = load_model(path)
    rig = resolve_face_rig(m)
    poser = ModelPoser(m, rig)
    rest = poser.pose(REST_POSE)
    frame = estimate_frame(m, rig, rest.positions)
    with rc.prepare(m, "toon") as scene:
        return scene.render(rest, frame), list(scene.textures.missing)


def test_an_undecodable_texture_falls_back_and_an_absurd_one_rejects_the_model(rc, shared_models, tmp_path, caplog):
    """A texture Pillow cannot decode falls back to the material colour with a warning; one whose
    header claims more than the texture cap (docs/security.md) is a RenderError naming the file, so
    the model is rejected; either way no GL object is left behind and the context keeps rendering."""
    path = _copy_model(tmp_path, shared_models)
    good, missing = _render(rc, path)
    assert not missing
    from renderer.modelfile import load_model
    texs = [m.texture for m in load_model(path).materials if m.texture and (path.parent / m.texture).is_file()]
    texs = list(dict.fromkeys(texs))
    assert len(texs) >= 2, texs
    (path.parent / texs[0]).write_bytes(b"BM" + os.urandom(200))        # Pillow cannot decode it
    with GLTracker(rc.ctx) as tr:
        caplog.clear()
        img, missing = _render(rc, path)
        assert not {k: v for k, v in tr.live().items() if k != "program"}
    assert img[..., 3].any()
    assert len(missing) == 1 and "unreadable" in missing[0], missing
    assert any("texture(s) missing or unreadable" in r.getMessage() for r in caplog.records)
    # only the textured parts differ; the silhouette is the same
    assert np.array_equal(img[..., 3] > 0, good[..., 3] > 0)
    (path.parent / texs[1]).write_bytes(_png_header(9000, 9000))          # claims 81 M pixels
    with GLTracker(rc.ctx) as tr:
        with pytest.raises(RenderError, match="9000x9000 pixels refused before decoding") as ei:
            _render(rc, path)
        assert not {k: v for k, v in tr.live().items() if k != "program"}
    assert "\n" not in str(ei.value) and texs[1].replace("\\", "/").split("/")[-1] in str(ei.value)
    (tmp_path / "again").mkdir()
    again, _ = _render(rc, _copy_model(tmp_path / "again", shared_models))
    assert np.array_equal(again, good)


def test_broken_model_rejected_without_leaking_and_context_survives(rc, models):
    from renderer.model import MaterialFlag
    from renderer.modelfile import load_model

    path, frame = models[0]
    before, _ = _cycle(rc, path, frame, np.array([0, 0, 0, 0, 0, 1], np.float32))

    bad_range = load_model(path)
    last = bad_range.materials[-1]
    last.index_count = int(bad_range.indices.size) + 3       # runs past the index buffer
    bad_flag = load_model(path)
    bad_flag.materials[0].flags = "not a flag"                 # breaks half-way through preparing
    bad_empty = load_model(path)
    bad_empty.indices = np.zeros((0, 3), np.uint32)

    with GLTracker(rc.ctx) as tr:
        for m, what in ((bad_range, "outside the index buffer"), (bad_flag, "cannot prepare"),
                        (bad_empty, "no triangles")):
            with pytest.raises(RenderError, match=what) as ei:
                rc.prepare(m, "toon")
            assert str(path) in str(ei.value) and "\n" not in str(ei.value)
            leaked = {k: v for k, v in tr.live().items() if k != "program"}
            assert not leaked, f"{what}: GL objects left behind: {leaked}"
    assert issubclass(RenderError, RendererError)
    del MaterialFlag
    after, _ = _cycle(rc, path, frame, np.array([0, 0, 0, 0, 0, 1], np.float32))
    assert np.array_equal(before, after)


# ---------------------------------------------------------------- render workers that die

def _square_or_die(task: dict) -> int:
    """Test task: kills its own worker process (like a driver segfault) when told to."""
    marker = Path(task["marker"])
    if task["i"] == task["die_at"] and (task["always"] or not marker.exists()):
        marker.touch()
        os.kill(os.getpid(), 9)
    return task["i"] ** 2


def _pool_tasks(tmp_path, die_at, always):
    return [dict(path=f"model-{i}.pmx", i=i, die_at=die_at, always=always, marker=str(tmp_path / "died"))
            for i in range(8)]


def test_render_pool_survives_a_killed_worker(tmp_path, caplog):
    """`thactl render`'s worker pool: a worker killed mid-task is replaced and its task re-run;
    results keep their order (multiprocessing.Pool would wait forever here)."""
    from dataset.workers import RestartingPool

    pool = RestartingPool(2, (32, 0, "phong", None, str(tmp_path), 1, logging.WARNING))
    try:
        with caplog.at_level(logging.WARNING, logger="thactl.dataset"):
            got = list(pool.imap(_square_or_die, _pool_tasks(tmp_path, 3, always=False)))
    finally:
        pool.terminate()
    assert got == [i * i for i in range(8)]
    assert (tmp_path / "died").exists() and pool.restarts == 1
    assert any("worker process died" in r.getMessage() for r in caplog.records)


def test_render_pool_names_a_task_that_always_kills_its_worker(tmp_path):
    from dataset.errors import DatasetError
    from dataset.workers import RestartingPool

    pool = RestartingPool(2, (32, 0, "phong", None, str(tmp_path), 1, logging.WARNING))
    got = []
    try:
        with pytest.raises(DatasetError, match="model-5.pmx: a render worker process died twice"):
            for r in pool.imap(_square_or_die, _pool_tasks(tmp_path, 5, always=True)):
                got.append(r)
    finally:
        pool.terminate()
    assert got == [i * i for i in range(5)]


def test_a_model_that_kills_its_validation_worker_is_rejected():
    """During validation the culprit becomes a rejected model (the run goes on without it)."""
    from dataset.workers import RestartingPool, validate_task
    from dataset.modelcheck import ModelCheck

    res = ModelCheck.from_json(RestartingPool._crash_result(validate_task, ("/m/x.pmx", "x.pmx", "ab" * 32)))
    assert not res.ok and res.rel_path == "x.pmx" and "crashed" in res.reason and res.sha256 == "ab" * 32
