"""The puppet page with networks trained on tha3 data (45 parameters): tiny morpher and rotator
trained for a few steps on a tiny real tha3 render, served by the real server. Over HTTP: the info
carries the schema's facts and the slider groups, a pose is the schema's 45 numbers (one with
eye_wink_left = 1 differs from rest; a bad value is a 400 naming it), presets, the GIF and the webcam
give 45-number poses. In headless Chromium: 45 sliders by name in collapsible groups, moving one
re-renders, "rest" puts the rest pose back. The THA1 page is tests/test_puppet_page.py."""
from __future__ import annotations

import http.client
import io
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.config import ServeConfig
from app.puppet import slider_groups
from app.server import make_server
from cli import main as cli_main
from conftest import BROWSER_WAIT_MS, image_rgba, render_tha3_mikus
from core.poseschema import load_schema, parse_schema
from tiny_networks import write_disc_drawing

SIZE = 64
CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
THA3 = load_schema("tha3")


def run_cli(*args) -> int:
    return cli_main([str(a) for a in args])


@pytest.fixture(scope="module")
def tha3_weights(shared_models, tmp_path_factory) -> Path:
    """morpher.safetensors and rotator.safetensors (tiny, 8 examples each) trained on 16 tha3
    examples of miku_v2 and 4 of miku at 64 px; no combiner, so the page runs the pumarola path."""
    data = render_tha3_mikus(shared_models, tmp_path_factory, count=16, val_count=4, size=SIZE)
    runs, weights = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("weights")
    tiny = ["--base-channels", 8, "--num-downsample", 2, "--num-res-blocks", 1, "--batch-size", 4,
            "--examples", 8, "--val-every", 8, "--val-examples", 4, "--quiet"]
    for kind in ("morpher", "rotator"):
        assert run_cli("train", kind, "--data", data, "--out", runs / kind, *tiny) == 0
        shutil.copy(runs / kind / f"{kind}.safetensors", weights / f"{kind}.safetensors")
    return weights


@pytest.fixture(scope="module")
def drawings(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("drawings")
    write_disc_drawing(d / "disc.png", SIZE)
    return d


@pytest.fixture(scope="module")
def server(tha3_weights, drawings):
    """The real server (guard included) on a free port, serving the tha3 networks."""
    srv = make_server(ServeConfig(port=0, weights=tha3_weights, drawings=drawings, device="cpu"))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def call(port: int, method: str, path: str, body=None, tab: str = "t1"):
    """(status, content type, body bytes) of one request, as a script would send it."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    headers = {"X-Puppet-Tab": tab}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    out = (resp.status, resp.getheader("Content-Type"), resp.read())
    conn.close()
    return out


def posed(port: int, pose) -> np.ndarray:
    status, kind, body = call(port, "POST", "/api/puppet/pose", {"pose": [float(v) for v in pose]})
    assert status == 200 and kind == "image/png", body
    return np.asarray(Image.open(io.BytesIO(body)))


# ------------------------------------------------------------------------------ slider groups


def test_sliders_are_grouped_by_name_prefix_tha1_flat_and_other_schemas_by_input():
    groups = slider_groups(THA3)
    assert [(g["name"], len(g["indices"])) for g in groups] == [
        ("eyebrow", 12), ("eye", 12), ("iris", 4), ("mouth", 11), ("head", 3), ("body & breathing", 3)]
    assert sorted(i for g in groups for i in g["indices"]) == list(range(45))
    iris = next(g for g in groups if g["name"] == "iris")["indices"]
    assert [THA3.names[i] for i in iris] == ["iris_small_left", "iris_small_right", "iris_rotation_x",
                                            "iris_rotation_y"]
    assert slider_groups(load_schema("tha1")) == [{"name": "", "indices": list(range(6))}]
    own = parse_schema({"format": "thactl-pose-schema", "version": 1, "name": "mine", "parameters": [
        {"name": "smile", "kind": "morph", "morphs": ["笑い"], "range": [0, 1], "rest": 0, "input": "face"},
        {"name": "head_y", "kind": "rotation", "bones": [{"bone": "頭", "axis": "y", "degrees": 15}],
         "range": [-1, 1], "rest": 0, "input": "rotation"},
        {"name": "eye_wink_left", "kind": "morph", "morphs": ["ウィンク"], "side": "left", "range": [0, 1],
         "rest": 0, "input": "face"}]}, "mine.json")
    assert slider_groups(own) == [{"name": "face", "indices": [0, 2]}, {"name": "rotation", "indices": [1]}]


# ------------------------------------------------------------------------------ over HTTP


def test_info_pose_and_bad_values_follow_the_schema(server):
    port = server
    status, _, body = call(port, "GET", "/api/puppet/info")
    info = json.loads(body)
    assert status == 200 and info["image_size"] == SIZE and info["path"] == "pumarola"
    assert info["schema"]["schema"] == "tha3" and info["schema"]["names"] == list(THA3.names)
    assert len(info["schema"]["low"]) == len(info["schema"]["rest"]) == 45
    assert [g["name"] for g in info["groups"]][0] == "eyebrow"
    assert [THA3.names[i] for i in info["driven"]] == ["eye_wink_left", "eye_wink_right", "mouth_aaa",
                                                       "head_x", "head_y", "neck_z"]
    assert call(port, "POST", "/api/puppet/drawing?name=disc.png", {})[0] == 200
    rest = posed(port, THA3.rest)
    wink = THA3.rest.copy()
    wink[THA3.index("eye_wink_left")] = 1.0
    assert rest.shape == (SIZE, SIZE, 4) and not np.array_equal(posed(port, wink), rest)
    np.testing.assert_array_equal(posed(port, THA3.rest), rest)          # the same pose, the same image
    bad = THA3.rest.tolist()
    bad[THA3.index("mouth_smirk")] = 1.5
    for pose, words in ((bad, "mouth_smirk = 1.5 is outside [0, 1]"), ([0, 0, 0, 0, 0, 1], "45 numbers"),
                        ("x", "45 numbers")):
        status, _, body = call(port, "POST", "/api/puppet/pose", {"pose": pose})
        assert status == 400 and words in json.loads(body)["error"], body


def test_presets_gif_and_webcam_give_the_schemas_poses(server):
    port = server
    assert call(port, "POST", "/api/puppet/drawing?name=disc.png", {})[0] == 200
    status, _, body = call(port, "GET", "/api/puppet/motion?name=talk&fps=10")
    from inference.motion import get_motion

    poses, talk = np.array(json.loads(body)["poses"], np.float32), get_motion("talk", fps=10)
    assert status == 200 and poses.shape == (len(talk), 45)
    for i, tha1_name in enumerate(("head_x", "head_y", "neck_z", "eye_wink_left", "eye_wink_right", "mouth_aaa")):
        np.testing.assert_array_equal(poses[:, THA3.index(tha1_name)], talk[:, i])
    others = [i for i in range(45) if i not in THA3.tha1_positions().values()]
    np.testing.assert_array_equal(poses[:, others], np.tile(THA3.rest[others], (len(poses), 1)))
    base = THA3.rest.tolist()
    base[THA3.index("eyebrow_angry_left")] = 0.7
    status, kind, gif = call(port, "POST", "/api/puppet/gif", {"motion": "blink", "fps": 10, "pose": base})
    assert status == 200 and gif[:6] == b"GIF89a"
    base[THA3.index("eyebrow_angry_left")] = 2.0
    status, _, body = call(port, "POST", "/api/puppet/gif", {"motion": "blink", "fps": 10, "pose": base})
    assert status == 400 and "pose: eyebrow_angry_left = 2 is outside [0, 1]" in json.loads(body)["error"]
    pytest.importorskip("mediapipe", reason='webcam tracking needs the [track] extra: pip install -e ".[track]"')
    import base64

    from faces import astronaut_face, rolled_frame

    for degrees, calibrate in ((0.0, True), (12.0, False)):
        jpeg = io.BytesIO()
        Image.fromarray(rolled_frame(astronaut_face(), degrees, canvas=(480, 360), scale=1.1)).save(jpeg, "JPEG")
        status, _, body = call(port, "POST", "/api/puppet/track", {
            "seq": 1, "image": base64.b64encode(jpeg.getvalue()).decode(), "calibrate": calibrate})
    reply = json.loads(body)
    assert status == 200 and reply["face"] and len(reply["pose"]) == 45
    assert abs(-reply["pose"][THA3.index("neck_z")] * 15 - 12.0) < 1.5          # mirror: neck_z = −tilt
    assert reply["pose"][THA3.index("body_y")] == 0 and reply["pose"][THA3.index("breathing")] == 0


# ------------------------------------------------------------------------------ the browser


@pytest.fixture(scope="module")
def page(server):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright (the test extra)")
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            tab = browser.new_page()
            tab.set_default_timeout(BROWSER_WAIT_MS)
            tab.goto(f"http://127.0.0.1:{server}/puppet/")
            tab.wait_for_selector("#drawings option[value='file:disc.png']", state="attached")
            yield tab
        finally:
            browser.close()


def _output(page) -> np.ndarray:
    return image_rgba(page, "output").reshape(-1)


def _after(page, action) -> np.ndarray:
    """Run `action`; the output image once the next pose response has loaded."""
    old = page.get_attribute("#output", "src") or ""
    with page.expect_response(lambda r: r.url.endswith("/api/puppet/pose") and r.status == 200):
        action()
    page.wait_for_function("(old) => { const img = document.getElementById('output'); "
                           "return img.src && img.src !== old && img.complete && img.naturalWidth > 0; }", arg=old)
    return _output(page)


def test_the_page_shows_the_schemas_sliders_and_moving_one_reposes(page):
    in_groups = [THA3.names[i] for g in slider_groups(THA3) for i in g["indices"]]   # iris: 24-25, 37-38
    names = page.eval_on_selector_all("#sliders input[type=range]", "els => els.map(e => e.id.slice(2))")
    labels = page.eval_on_selector_all("#sliders label > span:first-child", "els => els.map(e => e.textContent)")
    assert names == labels == in_groups and sorted(names) == sorted(THA3.names) and len(names) == 45
    groups = page.eval_on_selector_all("#sliders details.group", "els => els.map(e => e.dataset.group)")
    assert groups == ["eyebrow", "eye", "iris", "mouth", "head", "body & breathing"]
    assert page.get_attribute("#s-head_y", "min") == "-1" and page.get_attribute("#s-mouth_aaa", "min") == "0"
    assert "tha3 pose (45 parameters)" in page.text_content("#weights-info")
    rest = _after(page, lambda: page.select_option("#drawings", "file:disc.png"))
    assert page.text_content("#pose-values") == "(rest)"
    page.click("details[data-group='eyebrow'] > summary")                 # a group folds and opens
    assert page.is_hidden("#s-eyebrow_angry_left")
    page.click("details[data-group='eyebrow'] > summary")
    assert page.is_visible("#s-eyebrow_angry_left")
    winked = _after(page, lambda: page.eval_on_selector(
        "#s-eye_wink_left", "el => { el.value = 1; el.dispatchEvent(new Event('input')); }"))
    assert not np.array_equal(winked, rest)
    assert page.text_content("#pose-values") == "eye_wink_left 1.000"
    assert page.text_content("details[data-group='eye'] .moved") == " · 1 moved"
    back = _after(page, lambda: page.click("#reset"))
    np.testing.assert_array_equal(back, rest)
    assert page.input_value("#s-eye_wink_left") == "0" and page.text_content("#pose-values") == "(rest)"
    assert page.text_content("#error") == ""


def test_a_preset_drives_its_parameters_and_leaves_the_sliders_others(page):
    """Play "blink" with an eyebrow set: every frame keeps the eyebrow, the winks move; the GIF of the
    motion is asked with the same eyebrow."""
    sent = []
    page.on("request", lambda r: r.url.endswith("/api/puppet/pose") and sent.append(r.post_data_json["pose"]))
    _after(page, lambda: page.select_option("#drawings", "file:disc.png"))
    _after(page, lambda: page.eval_on_selector(
        "#s-eyebrow_angry_left", "el => { el.value = 0.5; el.dispatchEvent(new Event('input')); }"))
    del sent[:]
    page.select_option("#preset", "blink")
    page.click("#play")
    page.wait_for_function("document.getElementById('play').disabled")
    page.wait_for_function("!document.getElementById('play').disabled")          # the preset has played
    page.wait_for_function("document.getElementById('error').textContent === ''")
    poses = np.array(sent)
    assert len(poses) >= 2 and poses.shape[1] == 45
    assert np.all(poses[:, THA3.index("eyebrow_angry_left")] == 0.5)
    assert poses[:, THA3.index("eye_wink_left")].max() > 0.5
    assert page.input_value("#s-eyebrow_angry_left") == "0.5"
    with page.expect_request(lambda r: r.url.endswith("/api/puppet/gif")) as gif:
        with page.expect_response(lambda r: r.url.endswith("/api/puppet/gif") and r.status == 200):
            page.click("#save-gif")
    assert gif.value.post_data_json["pose"][THA3.index("eyebrow_angry_left")] == 0.5
