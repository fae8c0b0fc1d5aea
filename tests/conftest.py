"""Shared test fixtures: where the real third-party MMD models are.

The real models live in ../shared/models beside the repository (or wherever
THACTL_TEST_MODELS points). They never ship with the project; tests that need
them skip with a clear reason on a user's clone.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: how long a browser test waits for the page (ms): generous, so a loaded 2-core machine never misses it
#: (playwright's own default is 30 s); a page that is broken still fails, only later
BROWSER_WAIT_MS = 600_000
SHARED_MODELS = Path(os.environ.get("THACTL_TEST_MODELS", REPO.parent / "shared" / "models"))


def real_model_paths() -> list[Path]:
    """Every .pmd/.pmx under the shared models folder (empty list when absent)."""
    if not SHARED_MODELS.is_dir():
        return []
    return sorted(p for p in SHARED_MODELS.rglob("*") if p.suffix.lower() in (".pmd", ".pmx"))


@lru_cache(maxsize=None)
def real_model_verdict(path: Path):
    """The product's own verdict (dataset.modelcheck.validate_model: loads, rig, framing, probe
    render) on one real model, computed once per test session. Tests that need usable models take
    them from here instead of from a count, so any real collection can sit in the folder."""
    from dataset.modelcheck import PROBE_SIZE, validate_model
    from renderer.offscreen import RenderContext

    global _PROBE_RC
    if _PROBE_RC is None:
        _PROBE_RC = RenderContext(size=PROBE_SIZE, aa=0)
    return validate_model(path, path.relative_to(SHARED_MODELS).as_posix(), _PROBE_RC,
                          models_root=SHARED_MODELS)


_PROBE_RC = None


def usable_real_model_paths() -> list[Path]:
    """The real models whose verdict is usable (see real_model_verdict)."""
    return [p for p in real_model_paths() if real_model_verdict(p).ok]


@pytest.fixture(scope="session")
def shared_models() -> Path:
    if not SHARED_MODELS.is_dir():
        pytest.skip(f"real MMD models not found at {SHARED_MODELS} (set THACTL_TEST_MODELS)")
    return SHARED_MODELS


@pytest.fixture(scope="session", autouse=True)
def _private_cache_home(tmp_path_factory):
    """Collection caches (validation verdicts, zip extractions, thumbnails) of this session go
    to a temporary folder, not the user's ~/.cache."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


def render_tha3_mikus(shared_models: Path, tmp_path_factory, count: int, val_count: int, size: int) -> Path:
    """A tiny tha3 data folder: `count` training examples of mmd_default_pmd/miku_v2.pmd (which lacks
    口角上げ / 口角下げ / 下瞼上げ) and `val_count` validation examples of miku.pmd, at `size` px, rendered
    by `thactl render --schema tha3` in this process; returns the folder."""
    import json
    import shutil

    from cli import main as cli_main

    src = shared_models / "mmd_default_pmd"
    models = tmp_path_factory.mktemp("tha3-models")
    for f in list(src.glob("*.bmp")) + list(src.glob("*.sph")) + [src / "miku_v2.pmd", src / "miku.pmd"]:
        shutil.copy(f, models / f.name)
    split = models / "split.json"
    split.write_text(json.dumps({"train": ["miku_v2.pmd"], "validation": ["miku.pmd"], "test": []}))
    out = tmp_path_factory.mktemp("tha3-data") / "d3"
    args = ["render", "--models", models, "--out", out, "--count", count, "--val-count", val_count,
            "--test-count", 0, "--size", size, "--workers", 1, "--schema", "tha3", "-q", "--split-file", split]
    assert cli_main([str(a) for a in args]) == 0
    return out


def image_rgba(page, element_id: str):
    """The RGBA pixels (H, W, 4) uint8 of the <img id=element_id> a playwright page shows, read back
    through a canvas (what the user sees)."""
    import numpy as np

    w, h, data = page.evaluate("""(id) => { const img = document.getElementById(id);
        const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
        const g = c.getContext('2d'); g.drawImage(img, 0, 0);
        return [c.width, c.height, Array.from(g.getImageData(0, 0, c.width, c.height).data)]; }""", element_id)
    return np.array(data, np.uint8).reshape(h, w, 4)
