"""Take the screenshot of the model page (docs/models-page.md): `python docs/screenshot_models_page.py MODELS_DIR`
(headless Debian chromium through playwright; writes docs/models-page.png, 256-colour PNG)."""
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


def main(models: str, model: str = "animasa_miku_pmx_j3/index.pmx", out: Path = HERE / "models-page.png") -> None:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from app.config import ServeConfig
    from app.server import make_server

    os.environ.setdefault("XDG_CACHE_HOME", tempfile.mkdtemp(prefix="thactl-shot-"))
    srv = make_server(ServeConfig(port=0, models=Path(models).resolve()))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(f"http://127.0.0.1:{srv.server_address[1]}/models/")
            page.wait_for_function("document.getElementById('scan-text').textContent.startsWith('scan done')",
                                   timeout=600_000)
            page.click(f"#items .item[data-path='{model}']")
            for slider, key in (("#s-head_y", "ArrowRight"), ("#s-left_eye", "ArrowRight")):
                page.focus(slider)
                for _ in range(35):
                    page.keyboard.press(key)
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
