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


def test_page_is_absent_without_weights_and_serves_its_files(page_obj):
    from app.puppet_page import make_page

    assert make_page(ServeConfig()) is None
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


# ------------------------------------------------------------------------------ the browser


@pytest.fixture
def browser_page(weights, drawings, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright (the test extra)")
    pytest.importorskip("mediapipe", reason='webcam tracking needs the [track] extra: pip install -e ".[track]"')
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    clip = _write_y4m(tmp_path / "camera.y4m")
    server = make_server(ServeConfig(port=0, weights=weights, drawings=drawings, device="cpu"))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={clip}"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        try:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/puppet/")
            yield page
        finally:
            browser.close()
            server.shutdown()
            server.server_close()


def _output_pixels(page) -> np.ndarray:
    data = page.evaluate("""() => { const img = document.getElementById('output');
        const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
        const g = c.getContext('2d'); g.drawImage(img, 0, 0);
        return Array.from(g.getImageData(0, 0, c.width, c.height).data); }""")
    return np.array(data, np.uint8)


def test_sliders_repose_and_webcam_follows_the_roll(browser_page):
    page = browser_page
    page.wait_for_selector("#drawings option[value='head.png']", state="attached")
    with page.expect_response(lambda r: r.url.endswith("/api/puppet/pose")):
        page.select_option("#drawings", "head.png")
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
    page.wait_for_function("window.puppetLog.length > 0", timeout=60_000)
    calibrated_seq = _calibrate_on_a_neutral_frame(page, sent)
    checked: dict[float, list[float]] = {}
    deadline = time.monotonic() + 90
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
            page.wait_for_function(f"window.puppetLog.filter(e => e.calibrated).length > {done}", timeout=30_000)
            seq = page.evaluate("window.puppetLog.filter(e => e.calibrated).pop().seq")
            if 0 < sent[seq] % N_FRAMES < 15:
                return seq
        page.wait_for_timeout(250)
    pytest.fail(f"could not calibrate on a zero-roll frame; frames sent: {sorted(sent.values())[:20]}")
