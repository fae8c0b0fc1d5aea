"""Take the screenshot of the model page (docs/models-page.md): `python docs/screenshot_models_page.py MODELS_DIR`
(headless Debian chromium through playwright; writes docs/models-page.png, 256-colour PNG).
`python docs/screenshot_models_page.py MODELS_DIR tha3` takes the page under the tha3 pose schema
(serve --schema tha3: the parameter table, one slider moved) as docs/models-page-tha3.png."""
from __future__ import annotations

import io
import os
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


MODEL = "animasa_miku_pmx_j3/index.pmx"
# the sliders moved before the shot: THA1's page, and the schema page's parameter table
# (a schema's slider shows its parameter alone, the others at rest: one is moved)
MOVES = {"tha1": ("#s-head_y", "#s-left_eye"), "tha3": ("#p-eye_wink_left",)}


def main(models: str, schema: str = "tha1") -> None:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from app.config import ServeConfig
    from app.server import make_server

    os.environ.setdefault("XDG_CACHE_HOME", tempfile.mkdtemp(prefix="thactl-shot-"))
    out = HERE / ("models-page.png" if schema == "tha1" else f"models-page-{schema}.png")
    srv = make_server(ServeConfig(port=0, models=Path(models).resolve(), schema=schema))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 860 if schema == "tha1" else 1400})
            page.goto(f"http://127.0.0.1:{srv.server_address[1]}/models/")
            page.wait_for_function("document.getElementById('scan-text').textContent.startsWith('scan done')",
                                   timeout=600_000)
            page.click(f"#items .item[data-path='{MODEL}']")
            if schema != "tha1":
                page.wait_for_function("+(document.getElementById('params').dataset.loaded || 0) > 0",
                                       timeout=600_000)
            for slider in MOVES[schema]:
                page.focus(slider)
                for _ in range(35 if schema == "tha1" else 100):
                    page.keyboard.press("ArrowRight")
            page.evaluate("window.scrollTo(0, 0)")
            page.wait_for_timeout(3000)
            page.evaluate("document.querySelectorAll('#items img').forEach(i => i.loading = 'eager')")
            page.wait_for_timeout(4000)
            png = page.screenshot()
            browser.close()
    finally:
        srv.shutdown()
        for p in srv.pages:
            p.close()
    Image.open(io.BytesIO(png)).convert("RGB").quantize(256).save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main(*sys.argv[1:])
