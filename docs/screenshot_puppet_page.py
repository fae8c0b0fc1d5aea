"""Take docs/puppet.md's screenshots of the puppet page: before a drawing, with a drawing, with an
error (headless Debian chromium through playwright; 256-colour PNGs under docs/).

    python docs/screenshot_puppet_page.py [WEIGHTS] [MODEL]
    python docs/screenshot_puppet_page.py tha3 [WEIGHTS] [MODEL]     # puppet-tha3.png only

WEIGHTS: a weights folder (default: seeded, untrained full-size networks in a temporary folder,
so the posed output is what untrained networks give; with `tha3`, networks of the tha3 pose
schema). MODEL: the MMD model whose rest-pose render is the drawing (default
../shared/models/animasa_miku_pmx_j3/index.pmx).
"""
from __future__ import annotations

import contextlib
import io
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
MODEL = HERE.parent.parent / "shared" / "models" / "animasa_miku_pmx_j3" / "index.pmx"


def untrained_weights(folder: Path, schema: str | None = None) -> Path:
    """Seeded untrained full-size networks; for `schema` (a pose schema name) with its pose sizes,
    recorded in the files as `thactl train` records it."""
    import torch

    from core.poseschema import load_schema
    from models import Combiner, FaceMorpher, TwoAlgoFaceRotator
    from models.io import save_weights, schema_metadata

    torch.manual_seed(0)
    if schema is None:
        nets, meta = (FaceMorpher(), TwoAlgoFaceRotator(), Combiner()), {}
    else:
        s = load_schema(schema)
        face, rotation = len(s.indices("face")), len(s.indices("rotation"))
        nets = (FaceMorpher(pose_size=face), TwoAlgoFaceRotator(pose_size=rotation), Combiner(pose_size=rotation))
        meta = schema_metadata(s)
    for net in nets:
        save_weights(net, folder / f"{net.kind}.safetensors", meta)
    return folder


def drawing(model: Path, folder: Path) -> Path:
    from PIL import Image

    from core.pose import REST_POSE
    from renderer.preview import render_preview

    res = render_preview(model, [("rest", REST_POSE)], size=256)
    out = folder / "miku.png"
    Image.fromarray(res.images[0]).save(out)
    return out


def shoot(page, name: str) -> None:
    from PIL import Image

    out = HERE / name
    Image.open(io.BytesIO(page.screenshot())).convert("RGB").quantize(256).save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


def main(weights: str | None = None, model: str | None = None) -> None:
    with puppet_page(weights, model) as page:
        page.wait_for_selector("#drawings option[value='file:miku.png']", state="attached")
        shoot(page, "puppet-empty.png")
        page.select_option("#drawings", "file:miku.png")
        page.wait_for_function("document.getElementById('output').naturalWidth > 0 && "
                               "document.getElementById('input').naturalWidth > 0", timeout=120_000)
        with page.expect_response(lambda r: r.url.endswith("/api/puppet/pose"), timeout=120_000):
            page.eval_on_selector("#s-head_x", "el => { el.value = 0.4; el.dispatchEvent(new Event('input')); }")
        page.wait_for_function("document.getElementById('pose-values').textContent.startsWith('0.400')",
                               timeout=120_000)
        shoot(page, "puppet-drawing.png")
        page.set_input_files("#upload", files=[{"name": "notes.png", "mimeType": "image/png",
                                                "buffer": b"these are my notes, not a drawing"}])
        page.wait_for_selector("#error li[data-source='drawing']")
        shoot(page, "puppet-error.png")


@contextlib.contextmanager
def puppet_page(weights: str | None, model: str | None, schema: str | None = None):
    """A headless Chromium page on the puppet page of a real server (port 0) serving `weights` (default:
    untrained networks of `schema`) and MODEL's rest render as the drawing miku.png."""
    from playwright.sync_api import sync_playwright

    from app.config import ServeConfig
    from app.server import make_server

    tmp = Path(tempfile.mkdtemp(prefix="thactl-shot-"))
    (tmp / "weights").mkdir()
    (tmp / "drawings").mkdir()
    weights_dir = Path(weights) if weights else untrained_weights(tmp / "weights", schema)
    drawing(Path(model) if model else MODEL, tmp / "drawings")
    srv = make_server(ServeConfig(port=0, weights=weights_dir.resolve(), drawings=tmp / "drawings", device="cpu"))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1180, "height": 720})
            page.goto(f"http://127.0.0.1:{srv.server_address[1]}/puppet/")
            yield page
            browser.close()
    finally:
        srv.shutdown()
        srv.server_close()


def main_tha3(weights: str | None = None, model: str | None = None) -> None:
    """puppet-tha3.png: the page with tha3 networks, a wink set and the eyebrow group folded."""
    with puppet_page(weights, model, "tha3") as page:
        page.set_default_timeout(120_000)
        page.wait_for_selector("#drawings option[value='file:miku.png']", state="attached")
        with page.expect_response(lambda r: r.url.endswith("/api/puppet/pose")):
            page.select_option("#drawings", "file:miku.png")
        with page.expect_response(lambda r: r.url.endswith("/api/puppet/pose")):
            page.eval_on_selector("#s-eye_wink_left",
                                  "el => { el.value = 1; el.dispatchEvent(new Event('input')); }")
        page.wait_for_function("document.getElementById('output').complete")
        page.click("details[data-group='eyebrow'] > summary")
        out = HERE / "puppet-tha3.png"
        from PIL import Image

        shot = Image.open(io.BytesIO(page.screenshot(full_page=True)))
        shot.convert("RGB").quantize(256).save(out, optimize=True)
        print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["tha3"]:
        main_tha3(*sys.argv[2:])
    else:
        main(*sys.argv[1:])
