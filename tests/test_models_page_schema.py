"""The model page under a pose schema (`thactl serve --models DIR --schema tha3`), over HTTP and in a
real browser, on real models: each of the 45 parameters with how it was found, a slider that renders
through the schema's rig, a parameter mapped to another morph through the override file (and refused
when the morph does not exist), each model's coverage in the list; with tha1 the page is unchanged."""
from __future__ import annotations

import io
import json
import shutil
import threading
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

from app.config import ServeConfig
from cli import main
from conftest import BROWSER_WAIT_MS, image_rgba
from core.poseschema import load_schema
from test_models_page import post, request, start, stop

FOLDER = "mmd_default_pmd"
MODEL = FOLDER + "/miku_v2.pmd"          # にやり (smirk), ∧, no mouth-corner morphs
OTHER = FOLDER + "/miku.pmd"
TEXTURES = ("*.bmp", "*.sph")


@pytest.fixture(scope="module")
def models(shared_models, tmp_path_factory):
    """A writable folder with two real models (and their textures) of the shared collection."""
    env = pytest.MonkeyPatch()
    env.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg")))    # the collection's cache
    root = tmp_path_factory.mktemp("schema-page") / "pmx"
    (root / FOLDER).mkdir(parents=True)
    src = shared_models / FOLDER
    for f in [src / Path(MODEL).name, src / Path(OTHER).name] + [t for g in TEXTURES for t in src.glob(g)]:
        shutil.copy(f, root / FOLDER / f.name)
    yield root
    env.undo()


@pytest.fixture(scope="module")
def tha3(models):
    srv, page = start(ServeConfig(port=0, models=models, schema="tha3"))
    yield srv, page, models
    stop(srv)


def get_json(srv, path: str):
    status, data, _ = request(srv, "GET", path)
    return status, json.loads(data)


def parameters(srv, rel: str = MODEL) -> dict[str, dict]:
    status, data = get_json(srv, "/api/models/parameters?path=" + quote(rel))
    assert status == 200, data
    return {p["name"]: p for p in data["parameters"]}


def render(srv, pose, rel: str = MODEL) -> np.ndarray:
    from PIL import Image

    status, data, _ = request(srv, "GET", "/api/models/render?path=" + quote(rel) + "&pose="
                              + ",".join(f"{v:g}" for v in pose))
    assert status == 200, data
    return np.asarray(Image.open(io.BytesIO(data)))


def beside(root: Path, rel: str = MODEL) -> Path:
    return root / (rel + ".thactl.json")


def test_the_schema_and_each_models_45_parameters_with_how_they_were_found(tha3):
    from renderer.assembly import assemble_model
    from renderer.schema_rig import HOWS, resolve_schema_rig

    srv, page, root = tha3
    schema = load_schema("tha3")
    status, facts = get_json(srv, "/api/models/schema")
    assert status == 200 and facts["schema"] == "tha3" and facts["names"] == list(schema.names)
    assert facts["rest"] == schema.rest.tolist() and facts["kind"][schema.index("head_x")] == "rotation"
    got = parameters(srv)
    assert list(got) == list(schema.names) and len(got) == 45
    assert {p["how"] for p in got.values()} <= set(HOWS)
    # what the page says is what schema_rig decides on the model (the code render --schema uses)
    a = assemble_model(root / MODEL)
    rig = resolve_schema_rig(a.model, schema, a.override, a.rig)
    assert [(p["how"], p["detail"]) for p in got.values()] == [(b.how, b.detail) for b in rig.bindings]
    assert got["eye_wink_left"]["how"] == "geometry" and got["eye_wink_left"]["morph"] == "ウィンク右"
    assert got["eyebrow_troubled_left"]["how"] == "split"
    assert (got["mouth_smirk"]["how"], got["mouth_smirk"]["morph"]) == ("name", "にやり")
    assert got["mouth_raised_corner_left"]["how"] == "missing"
    assert got["head_x"]["bones"] == ["頭"] and got["head_x"]["morph"] is None
    # the list's coverage per model: found / 45, as the parameters say
    status, listing = get_json(srv, "/api/models/list")
    coverage = {i["path"]: i["coverage"] for i in listing["items"]}
    for rel in (MODEL, OTHER):
        hows = [p["how"] for p in parameters(srv, rel).values()]
        assert coverage[rel] == {"found": sum(h != "missing" for h in hows), "size": 45}
    assert coverage[MODEL]["found"] == 39           # as docs/pose-schemas.md's table says


def test_a_slider_renders_the_schema_pose(tha3):
    srv, page, root = tha3
    schema = load_schema("tha3")
    rest = render(srv, schema.rest)
    assert (rest[..., 3] > 0).sum() > 1000

    def alone(name: str, value: float) -> np.ndarray:
        pose = schema.rest.copy()
        pose[schema.index(name)] = value
        return render(srv, pose)

    changed = lambda img: int((np.abs(img.astype(int) - rest).max(axis=2) > 8).sum())    # noqa: E731
    assert changed(alone("mouth_aaa", 1)) > 20
    assert changed(alone("head_y", 1)) > 200
    assert changed(alone("mouth_raised_corner_left", 1)) == 0       # missing on this model: at rest
    # the contact sheet is preview --schema --sheet's: rest and 45 cells, 8 to a row (6 rows)
    from PIL import Image

    status, data, _ = request(srv, "GET", "/api/models/sheet?path=" + quote(MODEL))
    assert status == 200
    w, h = Image.open(io.BytesIO(data)).size
    assert w >= 8 * 128 and 6 * 128 <= h < 7 * 160
    # a pose that is not the schema's is one line naming it
    status, data, _ = request(srv, "GET", "/api/models/render?path=" + quote(MODEL) + "&pose=0,0,0,0,0,0")
    err = json.loads(data)["error"]
    assert status == 400 and "tha3 pose must be 45 numbers" in err and "\n" not in err
    bad = ",".join(["0"] * 26 + ["2"] + ["0"] * 18)
    status, data, _ = request(srv, "GET", "/api/models/render?path=" + quote(MODEL) + "&pose=" + bad)
    assert status == 400 and "mouth_aaa = 2 is outside [0, 1]" in json.loads(data)["error"]


def test_mapping_a_parameter_to_another_morph_writes_the_override(tha3):
    srv, page, root = tha3
    schema = load_schema("tha3")
    smirk = schema.rest.copy()
    smirk[schema.index("mouth_smirk")] = 1
    before = render(srv, smirk)
    status, out = post(srv, "/api/models/override", {"path": MODEL, "set": {"parameters": {"mouth_smirk": "∧"}}})
    try:
        assert status == 200, out
        assert json.loads(beside(root).read_text(encoding="utf-8")) == {"parameters": {"mouth_smirk": "∧"}}
        assert out["changed"] == {"parameters": [None, {"mouth_smirk": "∧"}]}
        got = parameters(srv)
        assert (got["mouth_smirk"]["how"], got["mouth_smirk"]["morph"]) == ("override", "∧")
        assert got["mouth_aaa"]["how"] == "name"                       # the others as before
        assert not np.array_equal(render(srv, smirk), before)          # the slider drives the new morph
        # render --schema and models check read the same file: `o` for mouth_smirk
        from dataset.schemacheck import schema_coverage
        from dataset.discover import ModelSource

        rec = next(schema_coverage([ModelSource(rel_path=MODEL, path=root / MODEL, source=FOLDER)], schema, None, root))
        assert rec["bindings"][schema.index("mouth_smirk")]["how"] == "override"
        # null: none (missing on purpose); "": found automatically again, and the empty file goes
        assert post(srv, "/api/models/override", {"path": MODEL, "set": {"parameters": {"mouth_smirk": None}}})[0] == 200
        assert json.loads(beside(root).read_text(encoding="utf-8")) == {"parameters": {"mouth_smirk": None}}
        assert parameters(srv)["mouth_smirk"]["how"] == "missing"
        status, listing = get_json(srv, "/api/models/list")
        assert {i["path"]: i["coverage"]["found"] for i in listing["items"]}[MODEL] == 38
        assert post(srv, "/api/models/override", {"path": MODEL, "set": {"parameters": {"mouth_smirk": ""}}})[0] == 200
        assert not beside(root).exists()
        assert parameters(srv)["mouth_smirk"]["how"] == "name"
    finally:
        beside(root).unlink(missing_ok=True)


@pytest.mark.parametrize("mapping, says", [
    ({"mouth_smirk": "no such morph"}, "parameters: mouth_smirk: the model has no morph named 'no such morph'"),
    ({"mouth_grin": "∧"}, "parameters: tha3 has no parameter 'mouth_grin'"),
    ({"head_x": "∧"}, "parameters: head_x is a rotation parameter"),
    ({"mouth_smirk": 3}, "parameters: mouth_smirk must map to a morph name"),
    ({}, "parameters must be an object"),
])
def test_a_bad_mapping_is_a_400_that_names_it_and_writes_nothing(tha3, mapping, says):
    srv, page, root = tha3
    status, out = post(srv, "/api/models/override", {"path": MODEL, "set": {"parameters": mapping}})
    assert status == 400 and out["error"].startswith(says) and "\n" not in out["error"], out
    assert not beside(root).exists()


def test_the_new_requests_keep_the_guard(tha3):
    srv, page, root = tha3
    port = srv.server_address[1]
    other = {"Origin": "http://evil.example", "Host": f"127.0.0.1:{port}"}
    for path in ("/api/models/parameters?path=" + quote(MODEL), "/api/models/schema"):
        assert request(srv, "GET", path, headers=other)[0] == 403
        assert request(srv, "GET", path, headers={"Host": f"rebound.example:{port}"})[0] == 403
        assert request(srv, "GET", path, headers={"Sec-Fetch-Site": "cross-site"})[0] == 403
    body = json.dumps({"path": MODEL, "set": {"parameters": {"mouth_smirk": "∧"}}}).encode()
    assert request(srv, "POST", "/api/models/override", body, {**other, "Content-Type": "application/json"})[0] == 403
    assert request(srv, "POST", "/api/models/override", body, {"Content-Type": "text/plain"})[0] == 415
    assert request(srv, "GET", "/api/models/parameters?path=" + quote("../" + MODEL))[0] == 400
    assert not beside(root).exists()


def test_with_tha1_the_page_is_as_before(models):
    srv, page = start(ServeConfig(port=0, models=models))
    try:
        assert page.schema is None and page.worker.schema is None
        assert get_json(srv, "/api/models/schema") == (200, {"schema": None})
        status, data = get_json(srv, "/api/models/parameters?path=" + quote(MODEL))
        assert status == 404 and "--schema" in data["error"]
        status, listing = get_json(srv, "/api/models/list")
        assert status == 200 and all("coverage" not in i for i in listing["items"])
        assert request(srv, "GET", "/api/models/render?path=" + quote(MODEL) + "&pose=0,0.5,0,1,0,1")[0] == 200
        status, data, _ = request(srv, "GET", "/api/models/render?path=" + quote(MODEL) + "&pose=" + ",".join(["0"] * 45))
        assert status == 400
        status, out = post(srv, "/api/models/override", {"path": MODEL, "set": {"parameters": {"mouth_smirk": "∧"}}})
        assert status == 400 and "no pose schema" in out["error"] and not beside(models).exists()
    finally:
        stop(srv)


def test_serve_refuses_a_bad_schema_in_one_line(models, tmp_path, capsys):
    bad = tmp_path / "mine.json"
    bad.write_text("{}")
    assert main(["serve", "--models", str(models), "--schema", str(bad), "--port", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("thactl: error: ") and "mine.json: not a pose schema" in err and "\n" not in err


# ---------------------------------------------------------------- in a real browser

@pytest.fixture(scope="module")
def browser_page(tha3):
    from test_models_browser import launch

    srv, page, root = tha3
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e '.[test]')")
    from test_models_browser import CHROMIUM

    if not shutil.which(CHROMIUM):
        pytest.skip(f"chromium not found ({CHROMIUM}); install Debian's chromium (see README, System packages)")
    with sync_api.sync_playwright() as pw:
        browser = launch(pw)
        tab = browser.new_page(viewport={"width": 1400, "height": 900})
        tab.set_default_timeout(BROWSER_WAIT_MS)
        tab.goto(f"http://127.0.0.1:{srv.server_address[1]}/models/")
        tab.wait_for_function("document.getElementById('scan-text').textContent.startsWith('scan done')")
        yield tab, root
        browser.close()


def _image(tab) -> list[int]:
    """Column sums of the live image's channels (what the user sees)."""
    return image_rgba(tab, "live").astype(np.int64).sum(axis=(0, 2)).tolist()


def test_in_the_browser_rows_sliders_and_a_saved_mapping(browser_page, tha3):
    tab, root = browser_page
    srv = tha3[0]
    schema = load_schema("tha3")
    expected = parameters(srv)
    # the list shows each model's coverage
    tab.wait_for_function(f"document.querySelector(\"#items .item[data-path='{MODEL}'] .coverage\")")
    assert tab.text_content(f"#items .item[data-path='{MODEL}'] .coverage") == "39/45"
    assert tab.is_hidden("#sliders label")                     # no THA1 sliders under a schema
    tab.click(f"#items .item[data-path='{MODEL}']")
    tab.wait_for_function("+(document.getElementById('params').dataset.loaded || 0) >= 1")
    rows = tab.eval_on_selector_all("#params .param", "rs => rs.map(r => [r.dataset.name, r.dataset.how])")
    assert rows == [[n, p["how"]] for n, p in expected.items()]
    assert "39/45 found" in tab.text_content("#params-title")
    assert tab.is_disabled("#p-mouth_raised_corner_left") and tab.is_enabled("#p-mouth_aaa")
    assert tab.input_value("#pm-mouth_smirk") == ""             # automatic: にやり
    assert "(automatic: にやり)" in tab.text_content("#pm-mouth_smirk option:first-child")
    # a slider: that parameter alone, the image changes
    tab.wait_for_function("+(document.getElementById('live').dataset.renders || 0) >= 1 && "
                          "document.getElementById('live').complete")
    rest = _image(tab)
    i = schema.index("head_y")
    tab.focus("#p-head_y")
    tab.keyboard.press("End")
    tab.wait_for_function(f"(document.getElementById('live').dataset.pose || '').split(',')[{i}] === '1'")
    tab.wait_for_function("document.getElementById('live').complete")
    sent = tab.get_attribute("#live", "data-pose").split(",")
    assert len(sent) == 45 and sum(float(v) != r for v, r in zip(sent, schema.rest)) == 1
    assert sum(abs(a - b) > 50 for a, b in zip(rest, _image(tab))) > 20
    # pick another morph for mouth_smirk and save: the file, and the row now says override
    tab.select_option("#pm-mouth_smirk", "∧")
    tab.click("#save-params")
    try:
        tab.wait_for_function("+(document.getElementById('params-result').dataset.saved || 0) >= 1")
        assert json.loads(beside(root).read_text(encoding="utf-8")) == {"parameters": {"mouth_smirk": "∧"}}
        assert "parameters" in tab.text_content("#params-result")
        tab.wait_for_function("document.querySelector(\"#params .param[data-name='mouth_smirk']\")"
                              "?.dataset.how === 'override'")
        assert tab.input_value("#pm-mouth_smirk") == "∧"
    finally:
        beside(root).unlink(missing_ok=True)
