"""The model page in a real browser (Debian's chromium driven by playwright): the list shows the
shared models with their statuses (doubtful ones say why), a model that cannot be loaded shows its
reason and no editor, a slider changes the live render, dragging the chin line and saving writes
the override file that `thactl preview` then uses and the header's counts follow."""
from __future__ import annotations

import json
import re
import shutil
import threading

import numpy as np
import pytest

from app.config import ServeConfig
from app.server import make_server
from cli import main
from conftest import BROWSER_WAIT_MS, image_rgba, real_model_verdict

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
MODEL = "mmd_default_pmd/miku.pmd"
BROKEN = "broken/half.pmx"        # added to the copy: the first 5000 bytes of a real model


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


@pytest.fixture(scope="module")
def app(shared_models, tmp_path_factory):
    if not shutil.which(CHROMIUM):
        pytest.skip(f"chromium not found ({CHROMIUM}); install Debian's chromium (see README, System packages)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e '.[test]')")
    env = pytest.MonkeyPatch()
    env.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg")))
    root = tmp_path_factory.mktemp("browser") / "pmx"
    shutil.copytree(shared_models, root)          # overrides land beside the models: make it writable
    for p in [root, *root.rglob("*")]:
        p.chmod(p.stat().st_mode | 0o200)
    (root / BROKEN).parent.mkdir()
    (root / BROKEN).write_bytes((root / "animasa_miku_pmx_j3/index.pmx").read_bytes()[:5000])
    srv = make_server(ServeConfig(port=0, models=root))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    with sync_api.sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.set_default_timeout(BROWSER_WAIT_MS)
        page.goto(f"http://127.0.0.1:{srv.server_address[1]}/models/")
        page.wait_for_function("document.getElementById('scan-text').textContent.startsWith('scan done')",
                               timeout=BROWSER_WAIT_MS)
        yield page, root, srv
        browser.close()
    srv.shutdown()
    srv.server_close()
    for p in srv.pages:
        p.close()
    env.undo()


def _counts(page) -> dict[str, int]:
    """The header's counts: {"usable": n, "rejected": n, "doubtful": n, "overridden": n}."""
    return {k: int(v) for k, v in re.findall(r"(\w+) (\d+)", page.text_content("#counts"))}


def test_the_list_shows_the_shared_models_with_their_statuses(app, shared_models):
    page, root, srv = app
    every = sorted([BROKEN] + [p.relative_to(shared_models).as_posix() for p in shared_models.rglob("*")
                               if p.suffix.lower() in (".pmx", ".pmd")])
    page.wait_for_function(f"document.querySelectorAll('#items .item').length === {len(every)} && "
                           "!document.querySelector('#items .status.pending')")
    shown = page.eval_on_selector_all(
        "#items .item", "rows => rows.map(r => [r.dataset.path, r.querySelector('.status').textContent, "
                        "!!r.querySelector('.status.doubtful'), r.textContent])")
    assert sorted(p for p, *_ in shown) == every
    status = {p: s for p, s, *_ in shown}
    # the real models' statuses are the product's verdicts (the same check `thactl render` runs)
    real = [rel for rel in every if (shared_models / rel).is_file()]
    assert {rel: status[rel] for rel in real} == \
        {rel: "usable" if real_model_verdict(shared_models / rel).ok else "rejected" for rel in real}
    assert status["lowpoly_miku_gumi_pmd/gumi.pmd"] == status["lowpoly_miku_gumi_pmd/miku.pmd"] == "rejected"
    assert status[BROKEN] == "rejected" and status[MODEL] == "usable"
    counts = _counts(page)
    assert (counts["usable"], counts["rejected"]) == (sum(s == "usable" for s in status.values()),
                                                      sum(s == "rejected" for s in status.values()))
    doubtful = {p: text for p, _, d, text in shown if d}
    assert counts["doubtful"] == len(doubtful) > 0
    assert all("doubtful: " in text for text in doubtful.values())            # each says why
    assert "doubtful: only one side's wink found" in doubtful[MODEL]


def test_a_model_that_cannot_be_loaded_shows_why_and_no_editor(app):
    page, root, srv = app
    page.click(f"#items .item[data-path='{BROKEN}']")
    page.wait_for_selector("#load-error", state="visible")
    reason = page.text_content("#load-error")
    assert "cannot be loaded" in reason and "half.pmx: corrupt or truncated file" in reason, reason
    assert page.is_disabled("#save") and page.is_hidden("#top") and page.is_hidden("#live")
    page.click(f"#items .item[data-path='{MODEL}']")                          # a good model: all back
    page.wait_for_function("document.getElementById('summary').textContent.includes('vertices')")
    assert page.is_hidden("#load-error") and page.is_visible("#top") and page.is_enabled("#save")


def _pixels(page) -> list[int]:
    """Column sums of the live image's channels (what the user sees)."""
    return image_rgba(page, "live").astype(np.int64).sum(axis=(0, 2)).tolist()


def _renders(page) -> int:
    return int(page.get_attribute("#live", "data-renders") or 0)


def test_opening_a_model_and_moving_a_slider_changes_the_image(app):
    page, root, srv = app
    page.click(f"#items .item[data-path='{MODEL}']")
    page.wait_for_function("+(document.getElementById('live').dataset.renders || 0) >= 1")
    page.wait_for_function("document.getElementById('live').complete && document.getElementById('live').naturalWidth === 256")
    before, n = _pixels(page), _renders(page)
    assert sum(before) > 0
    page.focus("#s-head_y")
    page.keyboard.press("End")                      # head_y slider to +1
    # the image of that pose (an earlier render still in flight also counts as a render)
    page.wait_for_function("(document.getElementById('live').dataset.pose || '').split(',')[1] === '1'")
    page.wait_for_function("document.getElementById('live').complete")
    after = _pixels(page)
    assert page.input_value("#s-head_y") == "1"
    changed = sum(abs(a - b) > 50 for a, b in zip(before, after))
    assert changed > 20, changed
    assert re.match(r"render [\d.]+ ms", page.text_content("#render-ms"))


def test_dragging_the_chin_line_writes_the_override_that_preview_uses(app, tmp_path, capsys):
    page, root, srv = app
    page.click(f"#items .item[data-path='{MODEL}']")
    page.wait_for_function("document.getElementById('summary').textContent.includes('vertices')")
    frame = page.evaluate("state.frame")
    top_before = float(page.input_value("#top"))
    line = page.locator("#chin-line").bounding_box()
    stage = page.locator("#stage").bounding_box()
    x, y = line["x"] + 100, line["y"] + 1
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x, y + 15, steps=3)
    page.mouse.move(x, y + 30, steps=3)
    page.mouse.up()
    px = y + 30 - stage["y"]
    expected_chin = frame[1] + frame[2] * (1 - 2 * (px * 256 / 384) / 256)
    assert float(page.input_value("#chin")) == pytest.approx(expected_chin, abs=1e-3)
    overridden = _counts(page)["overridden"]
    page.click("#save")
    page.wait_for_function("+(document.getElementById('save-result').dataset.saved || 0) >= 1")
    assert _counts(page)["overridden"] == overridden + 1          # the header follows the save
    assert "chin_y" in page.text_content("#save-result")
    saved = json.loads((root / (MODEL + ".thactl.json")).read_text())
    assert saved["chin_y"] == pytest.approx(expected_chin, abs=1e-3)
    assert saved["head_top_y"] == pytest.approx(top_before, abs=1e-6)
    assert main(["preview", str(root / MODEL), "-o", str(tmp_path / "p.png"), "--size", "64", "--aa", "0"]) == 0
    cx, cy, half = (float(v) for v in re.search(r"frame: (\S+) (\S+) (\S+)", capsys.readouterr().out).groups())
    assert (cy, half) == pytest.approx(((saved["chin_y"] + saved["head_top_y"]) / 2,
                                        saved["head_top_y"] - saved["chin_y"]), abs=1e-5)
    # the page now shows the new box: the chin line is back on row 191's lower edge
    page.wait_for_function("document.getElementById('summary').textContent.includes('usable')")
    assert page.evaluate("state.frame[2]") == pytest.approx(half, abs=1e-5)
