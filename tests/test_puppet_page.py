"""The live puppet page in headless Chromium with a fake camera: the webcam path follows a clip
whose roll is known per frame (the frame index is drawn into each frame as a bar code), within 2°
after calibration; the slider path changes the output image. Plus the page's API without a browser:
drawings only from inside --drawings, uploads checked like `thactl pose`, bad requests answered in one line."""
from __future__ import annotations

import base64
import io
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import BROWSER_WAIT_MS, image_rgba
from PIL import Image

from app.config import ServeConfig
from app.http import Request
from app.server import dispatch, make_server
from faces import astronaut_face, rolled_frame
from tiny_networks import S, write_tiny_weights

CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
W, H, FPS = 480, 360, 8
BITS, BAR_W, BAR_H = 6, 40, 30
# the clip: (first frame, truth roll in degrees) per held segment; it loops
SEGMENTS = [(0, 0.0), (16, 12.0), (24, -12.0), (32, 6.0), (40, -6.0)]
N_FRAMES = 48


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return write_tiny_weights(tmp_path_factory.mktemp("weights"), 5, flow_std=0.05)


@pytest.fixture(scope="module")
def drawings(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("drawings")
    yy, xx = np.mgrid[0:S, 0:S]
    img = np.zeros((S, S, 4), np.uint8)
    img[(yy - S / 2) ** 2 + (xx - S / 2) ** 2 < (S / 4) ** 2] = (230, 180, 160, 255)
    img[(yy < S / 2) & (img[..., 3] > 0)] = (60, 90, 200, 255)
    Image.fromarray(img, "RGBA").save(d / "head.png")
    Image.fromarray(np.zeros((2 * S, 2 * S, 4), np.uint8) + 255, "RGBA").save(d / "big.png")
    return d


@pytest.fixture(scope="module")
def page_obj(weights, drawings):
    from app.puppet_page import make_page

    return make_page(ServeConfig(weights=weights, drawings=drawings, device="cpu"))


def _truth(index: int) -> float:
    return [roll for start, roll in SEGMENTS if start <= index % N_FRAMES][-1]


def _held(index: int) -> bool:
    """Not the first or last frame of a segment (the camera may blend neighbouring frames)."""
    starts = [s for s, _ in SEGMENTS] + [N_FRAMES]
    return all(index not in (s, s - 1) for s in starts)


def _frame(index: int) -> np.ndarray:
    img = rolled_frame(astronaut_face(), _truth(index), canvas=(W, H), scale=1.1).copy()
    for bit in range(BITS):
        img[0:BAR_H, bit * BAR_W:(bit + 1) * BAR_W] = 255 if (index >> bit) & 1 else 0
    return img


def _decode_index(rgb: np.ndarray) -> int:
    grey = rgb.astype(np.float32).mean(axis=2)
    return sum(1 << bit for bit in range(BITS)
               if grey[6:BAR_H - 6, bit * BAR_W + 8:(bit + 1) * BAR_W - 8].mean() > 128)


def _write_y4m(path: Path) -> Path:
    """The clip as Y4M 4:2:0 (JPEG/full-range YCbCr), the format Chromium's fake camera plays."""
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{W} H{H} F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(N_FRAMES):
            rgb = _frame(i).astype(np.float32)
            r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
            y = 0.299 * r + 0.587 * g + 0.114 * b
            cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
            cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
            half = lambda c: c.reshape(H // 2, 2, W // 2, 2).mean(axis=(1, 3))  # noqa: E731
            f.write(b"FRAME\n")
            for plane in (y, half(cb), half(cr)):
                f.write(np.clip(np.rint(plane), 0, 255).astype(np.uint8).tobytes())
    return path


def _jpeg_b64(rgb: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    return base64.b64encode(buf.getvalue()).decode()


# ------------------------------------------------------------------------------ API, no browser


def test_without_weights_the_page_says_what_to_give_and_serves_its_files(page_obj):
    from app.puppet_page import make_page

    needs = make_page(ServeConfig())
    html = dispatch([needs], Request("GET", "/puppet/"))
    assert html.status == 200 and html.content_type.startswith("text/html")
    assert b"needs network weights" in html.body and b"--weights" in html.body
    assert dispatch([needs], Request("GET", "/puppet/static/puppet.css")).status == 200
    api = dispatch([needs], Request("GET", "/api/puppet/info"))
    assert api.status == 404 and "--weights FOLDER" in json.loads(api.body)["error"]
    html = dispatch([page_obj], Request("GET", "/puppet/"))
    assert html.status == 200 and b"puppet.js" in html.body
    js = dispatch([page_obj], Request("GET", "/puppet/static/puppet.js"))
    assert js.status == 200 and js.content_type.startswith("text/javascript")
    for bad in ("/puppet/static/../puppet_page.py", "/puppet/static/../../cli.py", "/puppet/static/nope.js"):
        assert dispatch([page_obj], Request("GET", bad)).status == 404


def test_drawings_only_from_inside_the_folder_and_checked(page_obj, drawings, tmp_path):
    info = json.loads(dispatch([page_obj], Request("GET", "/api/puppet/info")).body)
    assert info["drawings"] == ["big.png", "head.png"] and info["image_size"] == S
    outside = tmp_path / "secret.png"
    Image.fromarray(np.zeros((S, S, 4), np.uint8), "RGBA").save(outside)
    for name, status in ((f"../{outside.parent.name}/secret.png", 403), (str(outside), 403), ("none.png", 404)):
        resp = dispatch([page_obj], Request("POST", "/api/puppet/drawing", {"name": name}))
        assert resp.status == status, resp.body
    resp = dispatch([page_obj], Request("POST", "/api/puppet/drawing", {"name": "big.png", "fit": "0"}))
    assert resp.status == 400 and b"the networks take 32x32" in resp.body
    rgb = io.BytesIO()
    Image.fromarray(np.zeros((S, S, 3), np.uint8)).save(rgb, format="PNG")
    resp = dispatch([page_obj], Request("POST", "/api/puppet/drawing", {"upload": "x.png"}, body=rgb.getvalue()))
    assert resp.status == 400 and b"no alpha channel" in resp.body
    ok = dispatch([page_obj], Request("POST", "/api/puppet/drawing", {"name": "head.png"}))
    assert ok.status == 200 and json.loads(ok.body)["drawing"] == "head.png"


def test_pose_gif_and_track_requests(page_obj):
    assert dispatch([page_obj], Request("POST", "/api/puppet/drawing", {"name": "head.png"})).status == 200
    pose = lambda p: dispatch([page_obj], Request("POST", "/api/puppet/pose", body=json.dumps({"pose": p}).encode()))  # noqa: E731
    a, b = pose([0, 0, 0, 0, 0, 1]), pose([0, 1, 0, 0, 0, 1])
    assert a.status == 200 and a.content_type == "image/png" and float(a.headers["X-Net-Ms"]) > 0
    img_a, img_b = (np.asarray(Image.open(io.BytesIO(r.body))) for r in (a, b))
    assert img_a.shape == (S, S, 4) and not np.array_equal(img_a, img_b)
    assert pose([0, 2, 0, 0, 0, 1]).status == 400 and pose("x").status == 400
    gif = dispatch([page_obj], Request("POST", "/api/puppet/gif", body=b'{"motion": "blink", "fps": 10}'))
    assert gif.status == 200 and gif.body[:6] == b"GIF89a"
    bad = dispatch([page_obj], Request("POST", "/api/puppet/gif", body=b'{"motion": "/etc/passwd", "fps": 10}'))
    assert bad.status == 400 and b"unknown motion" in bad.body
    pytest.importorskip("mediapipe", reason='webcam tracking needs the [track] extra: pip install -e ".[track]"')
    track = lambda img, cal: json.loads(dispatch([page_obj], Request("POST", "/api/puppet/track", body=json.dumps(  # noqa: E731
        {"seq": 1, "image": _jpeg_b64(img), "calibrate": cal}).encode())).body)
    assert track(_frame(0), True)["calibrated"]
    turned = track(_frame(17), False)
    assert turned["face"] and abs(-turned["pose"][2] * 15 - 12.0) < 1.5
    assert not track(np.full((H, W, 3), 128, np.uint8), False)["face"]
    junk = dispatch([page_obj], Request("POST", "/api/puppet/track", body=b'{"image": "bm90IGFuIGltYWdl"}'))
    assert junk.status == 400 and b"not a readable JPEG or PNG" in junk.body


def _call(page, method: str, path: str, query: dict | None = None, body: bytes = b"", tab: str | None = None):
    return dispatch([page], Request(method, path, query or {}, {"x-puppet-tab": tab} if tab else {}, body))


def _png(rgba: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    return buf.getvalue()


def _other_drawing() -> np.ndarray:
    """A drawing unlike head.png: a green square."""
    img = np.zeros((S, S, 4), np.uint8)
    img[S // 4:3 * S // 4, S // 4:3 * S // 4] = (40, 200, 60, 255)
    return img


def test_each_tab_keeps_its_own_drawing_and_the_last_tabs_used(weights, drawings):
    from app.puppet_page import make_page

    page = make_page(ServeConfig(weights=weights, drawings=drawings, device="cpu"))
    page.puppet.max_tabs = 3
    assert _call(page, "POST", "/api/puppet/drawing", {"name": "head.png"}, tab="tab-a").status == 200
    up = _call(page, "POST", "/api/puppet/drawing", {"upload": "mine.png"}, _png(_other_drawing()), tab="tab-b")
    assert up.status == 200 and json.loads(up.body)["drawing"] == "mine.png"
    info = lambda tab: json.loads(_call(page, "GET", "/api/puppet/info", tab=tab).body)["drawing"]  # noqa: E731
    assert (info("tab-a"), info("tab-b"), info(None)) == ("head.png", "mine.png", None)
    def shown(tab):
        return np.asarray(Image.open(io.BytesIO(_call(page, "GET", "/api/puppet/input", tab=tab).body)))
    np.testing.assert_array_equal(shown("tab-a"), np.asarray(Image.open(drawings / "head.png")))
    np.testing.assert_array_equal(shown("tab-b"), _other_drawing())
    body = json.dumps({"pose": [0, 0.5, 0, 0, 0, 1]}).encode()
    pose = lambda tab: _call(page, "POST", "/api/puppet/pose", body=body, tab=tab)  # noqa: E731
    a1, b1, a2 = pose("tab-a").body, pose("tab-b").body, pose("tab-a").body
    assert a1 == a2 and a1 != b1               # tab b's drawing never reaches tab a's frames
    no_drawing = pose(None)
    assert no_drawing.status == 409 and "no drawing chosen in this tab" in json.loads(no_drawing.body)["error"]
    for tab in ("tab-c", "tab-d", "tab-e"):    # three newer tabs: tab a and b are forgotten
        info(tab)
    assert page.puppet.tab_count() == 3
    forgotten = pose("tab-a")
    assert forgotten.status == 409 and "choose or upload one" in json.loads(forgotten.body)["error"]
    for bad in ("../x", "a" * 65, "tab a"):
        assert _call(page, "GET", "/api/puppet/info", tab=bad).status == 400


def test_an_upload_that_is_no_image_is_named_in_its_error(page_obj):
    resp = _call(page_obj, "POST", "/api/puppet/drawing", {"upload": "notes.png"}, b"these are my notes")
    message = json.loads(resp.body)["error"]
    assert resp.status == 400 and message.startswith("notes.png: not a readable image")
    assert "BytesIO" not in message and " 0x" not in message and "transparent background" in message


# ------------------------------------------------------------------------------ the browser


@pytest.fixture(scope="module")
def playwright():
    """One playwright driver for the module (the sync API allows one at a time)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright (the test extra)")
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def ui(playwright, weights, drawings):
    """A browser (no camera) and the puppet page's URL."""
    server = make_server(ServeConfig(port=0, weights=weights, drawings=drawings, device="cpu"))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                         args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
    try:
        yield browser, f"http://127.0.0.1:{server.server_address[1]}/puppet/"
    finally:
        browser.close()
        server.shutdown()
        server.server_close()


def _open(browser, url):
    page = browser.new_page()
    page.set_default_timeout(BROWSER_WAIT_MS)
    page.goto(url)
    page.wait_for_selector("#drawings option[value='file:head.png']", state="attached")
    return page


def _image(page, element: str = "output") -> np.ndarray:
    """The element's image once it has one loaded."""
    page.wait_for_function("(id) => { const img = document.getElementById(id); "
                           "return img.src && img.complete && img.naturalWidth > 0; }", arg=element)
    data = page.evaluate("""(id) => { const img = document.getElementById(id);
        const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
        const g = c.getContext('2d'); g.drawImage(img, 0, 0);
        return [c.width, c.height, Array.from(g.getImageData(0, 0, c.width, c.height).data)]; }""", element)
    return np.array(data[2], np.uint8).reshape(data[1], data[0], 4)


def _after(page, action, element: str = "output") -> np.ndarray:
    """Run `action`; the element's next image once it has loaded."""
    old = page.get_attribute("#" + element, "src") or ""
    action()
    page.wait_for_function("([id, old]) => { const img = document.getElementById(id); "
                           "return img.src && img.src !== old && img.complete && img.naturalWidth > 0; }",
                           arg=[element, old])
    return _image(page, element)


def _upload(page, name: str, data: bytes):
    page.set_input_files("#upload", files=[{"name": name, "mimeType": "image/png", "buffer": data}])


def test_the_empty_page_says_what_to_do(ui):
    browser, url = ui
    page = _open(browser, url)
    assert page.evaluate("document.body.classList.contains('empty')")
    assert page.is_visible("#empty") and "Choose a drawing" in page.text_content("#empty")
    assert f"fitted to {S}×{S}" in page.text_content("#empty")
    assert all(page.is_disabled(b) for b in ("#play", "#save-png", "#save-gif", "#reset"))
    # the tiny random test weights carry no training record: the page says so
    page.wait_for_selector("#weights-warning", state="visible")
    assert "untrained" in page.text_content("#weights-warning")
    page.select_option("#drawings", "file:head.png")
    page.wait_for_function("!document.body.classList.contains('empty')")
    assert page.is_hidden("#empty") and not page.is_disabled("#play")
    assert page.text_content("#drawing-name") == "head.png"
    page.close()


def test_two_tabs_pose_their_own_drawings(ui, drawings):
    browser, url = ui
    a, b = _open(browser, url), _open(browser, url)
    assert a.evaluate("window.puppetTab") != b.evaluate("window.puppetTab")
    _after(a, lambda: a.select_option("#drawings", "file:head.png"))
    b_rest = _after(b, lambda: _upload(b, "mine.png", _png(_other_drawing())))
    np.testing.assert_array_equal(_image(b, "input"), _other_drawing())
    a_turned = _after(a, lambda: a.eval_on_selector(
        "#s-head_y", "el => { el.value = 0.8; el.dispatchEvent(new Event('input')); }"))
    assert not np.array_equal(a_turned, b_rest)
    assert np.array_equal(_after(b, lambda: b.click("#reset")), b_rest)      # b still poses its own drawing
    np.testing.assert_array_equal(_image(a, "input"), np.asarray(Image.open(drawings / "head.png")))
    assert (a.text_content("#drawing-name"), b.text_content("#drawing-name")) == ("head.png", "mine.png")
    a.close()
    b.close()


def test_an_upload_error_stays_while_a_preset_plays_and_the_menu_shows_uploads(ui):
    browser, url = ui
    page = _open(browser, url)
    poses = []
    page.on("response", lambda r: r.url.endswith("/api/puppet/pose") and poses.append(r.status))
    _after(page, lambda: page.select_option("#drawings", "file:head.png"))
    page.select_option("#preset", "sweep")
    page.click("#play")
    page.wait_for_function("document.getElementById('play').disabled")         # the preset runs
    _upload(page, "notes.png", b"these are my notes")
    page.wait_for_selector("#error li[data-source='drawing']")
    for value in (0.2, 0.4, 0.6):       # three new frames after the error (besides the preset's own)
        _after(page, lambda: page.eval_on_selector(
            "#s-head_y", f"el => {{ el.value = {value}; el.dispatchEvent(new Event('input')); }}"))
    assert poses and all(s == 200 for s in poses)
    error = page.text_content("#error")                                            # the error stays
    assert "notes.png: not a readable image" in error and "BytesIO" not in error, error
    assert page.input_value("#drawings") == "file:head.png"                       # still the drawing in use
    rgb = io.BytesIO()
    Image.fromarray(np.zeros((S, S, 3), np.uint8)).save(rgb, format="PNG")
    _upload(page, "flat.png", rgb.getvalue())
    page.wait_for_function("document.getElementById('error').textContent.includes('flat.png: no alpha channel')")
    assert "notes.png" not in page.text_content("#error")     # the newer drawing error replaced it
    _after(page, lambda: _upload(page, "mine.png", _png(_other_drawing())), "input")
    page.wait_for_function("document.getElementById('drawings').value === 'upload:mine.png'")
    assert page.text_content("#error") == ""
    assert page.eval_on_selector("#drawings", "s => s.selectedOptions[0].textContent") == "mine.png (uploaded)"
    _after(page, lambda: page.select_option("#drawings", "file:head.png"), "input")
    back = _after(page, lambda: page.select_option("#drawings", "upload:mine.png"), "input")
    np.testing.assert_array_equal(back, _other_drawing())                     # chosen again from the menu
    page.close()


# ------------------------------------------------------------------------------ the browser, webcam


@pytest.fixture
def browser_page(playwright, weights, drawings, tmp_path):
    pytest.importorskip("mediapipe", reason='webcam tracking needs the [track] extra: pip install -e ".[track]"')
    clip = _write_y4m(tmp_path / "camera.y4m")
    server = make_server(ServeConfig(port=0, weights=weights, drawings=drawings, device="cpu"))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={clip}"]
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
    try:
        page = browser.new_page()
        page.set_default_timeout(BROWSER_WAIT_MS)
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/puppet/")
        yield page
    finally:
        browser.close()
        server.shutdown()
        server.server_close()


def _output_pixels(page) -> np.ndarray:
    return image_rgba(page, "output").reshape(-1)


def test_sliders_repose_and_webcam_follows_the_roll(browser_page):
    page = browser_page
    page.wait_for_selector("#drawings option[value='file:head.png']", state="attached")
    with page.expect_response(lambda r: r.url.endswith("/api/puppet/pose")):
        page.select_option("#drawings", "file:head.png")
    page.wait_for_function("document.getElementById('output').naturalWidth > 0")
    before = _output_pixels(page)
    with page.expect_response(lambda r: r.url.endswith("/api/puppet/pose")):
        page.eval_on_selector("#s-head_y", "el => { el.value = 0.9; el.dispatchEvent(new Event('input')); }")
    page.wait_for_function("document.getElementById('pose-values').textContent.startsWith('0.000 0.900')")
    assert not np.array_equal(before, _output_pixels(page))                     # the slider path

    sent: dict[int, int] = {}                                                   # seq -> frame index
    def on_request(req):
        if req.url.endswith("/api/puppet/track"):
            body = req.post_data_json
            rgb = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["image"].split(",", 1)[1]))).convert("RGB"))
            sent[body["seq"]] = _decode_index(rgb)
    page.on("request", on_request)
    page.click("#webcam")
    page.wait_for_function("window.puppetLog.length > 0", timeout=BROWSER_WAIT_MS)
    calibrated_seq = _calibrate_on_a_neutral_frame(page, sent)
    checked: dict[float, list[float]] = {}
    deadline = time.monotonic() + BROWSER_WAIT_MS / 1000
    while time.monotonic() < deadline and not all(len(checked.get(r, [])) >= 2 for _, r in SEGMENTS[1:]):
        page.wait_for_timeout(1000)
        checked = {}
        for entry in page.evaluate("window.puppetLog"):
            index = sent.get(entry["seq"])
            if entry["seq"] > calibrated_seq and index is not None and _held(index):
                checked.setdefault(_truth(index), []).append(-entry["pose"][2] * 15)   # mirror: neck_z = −tilt
    assert all(len(checked.get(r, [])) >= 2 for _, r in SEGMENTS[1:]), checked
    for truth, seen in checked.items():
        np.testing.assert_allclose(seen, truth, atol=2.0, err_msg=f"roll {truth}°")
    assert page.text_content("#face") == "yes"
    assert float(page.text_content("#track-fps")) > 0 and float(page.text_content("#net-fps")) > 0


def _calibrate_on_a_neutral_frame(page, sent: dict[int, int]) -> int:
    """Click Calibrate while the camera shows the zero-roll segment; the seq of the frame used."""
    for _ in range(20):
        latest = sent.get(max(sent)) if sent else None
        if latest is not None and 2 <= latest % N_FRAMES <= 9:
            done = page.evaluate("window.puppetLog.filter(e => e.calibrated).length")
            page.click("#calibrate")
            page.wait_for_function(f"window.puppetLog.filter(e => e.calibrated).length > {done}", timeout=BROWSER_WAIT_MS)
            seq = page.evaluate("window.puppetLog.filter(e => e.calibrated).pop().seq")
            if 0 < sent[seq] % N_FRAMES < 15:
                return seq
        page.wait_for_timeout(250)
    pytest.fail(f"could not calibrate on a zero-roll frame; frames sent: {sorted(sent.values())[:20]}")
