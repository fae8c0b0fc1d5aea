"""The model page over HTTP: listing, rendering, override files that render/preview read, and its
security: no path parameter leaves the models folder, bounded requests, a model that breaks or
kills the renderer costs one request, non-local binds only with --allow-remote."""
from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from app.config import ServeConfig
from app.server import make_server
from cli import main
from conftest import REPO


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    from renderer.samples import write_samples

    base = tmp_path_factory.mktemp("page")
    env = pytest.MonkeyPatch()
    env.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg")))   # the collection's cache
    root = base / "pmx"
    write_samples(root, count=2, seed=0)
    good = next(root.rglob("*.pmx"))
    (root / "broken").mkdir()
    (root / "broken" / "half.pmx").write_bytes(good.read_bytes()[:5000])
    (base / "outside.txt").write_text("secret")
    import zipfile

    with zipfile.ZipFile(root / "pack.zip", "w") as z:
        z.write(good, "inner/" + good.name)
        for tex in good.parent.rglob("*.png"):
            z.write(tex, "inner/" + tex.relative_to(good.parent).as_posix())
    yield base, root
    env.undo()


def start(cfg: ServeConfig):
    srv = make_server(cfg)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    page = srv.pages[0]
    assert page.view.wait(300) and page.view.state == "done", page.view.error
    return srv, page


def stop(srv) -> None:
    srv.shutdown()
    srv.server_close()
    for p in srv.pages:
        p.close()


@pytest.fixture(scope="module")
def server(collection):
    base, root = collection
    srv, page = start(ServeConfig(port=0, models=root, max_body=64 * 1024))
    yield srv, page, base, root
    stop(srv)


def request(srv, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=600)
    conn.request(method, path, body=body,
                 headers=headers if headers is not None else {"Content-Type": "application/json"} if body else {})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, data, dict(r.getheaders())


def post(srv, path: str, obj) -> tuple[int, dict]:
    status, data, _ = request(srv, "POST", path, json.dumps(obj).encode())
    return status, json.loads(data)


GOOD = ["sample-01/sample-01.pmx", "sample-02/sample-02.pmx"]
ZIPPED = "pack.zip/inner/sample-01.pmx"


def rels(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*.pmx"))}


def test_listing_statuses_filters_and_paging(server):
    srv, page, base, root = server
    status, data, _ = request(srv, "GET", "/api/models/status")
    s = json.loads(data)
    assert (s["state"], s["total"], s["usable"], s["rejected"]) == ("done", 4, 3, 1)
    every = json.loads(request(srv, "GET", "/api/models/list")[1])
    assert [i["path"] for i in every["items"]] == sorted([*rels(root), ZIPPED])
    bad = json.loads(request(srv, "GET", "/api/models/list?status=rejected")[1])
    assert [i["path"] for i in bad["items"]] == ["broken/half.pmx"]
    assert bad["items"][0]["reason"].startswith("cannot load")
    kind = bad["items"][0]["reason_kind"]
    by_reason = json.loads(request(srv, "GET", "/api/models/list?reason=" + quote(kind))[1])
    assert by_reason["total"] == 1
    paged = json.loads(request(srv, "GET", "/api/models/list?limit=1&offset=1&q=SAMPLE")[1])
    assert paged["total"] == 3 and len(paged["items"]) == 1 and paged["items"][0]["path"] == GOOD[0]
    assert request(srv, "GET", "/api/models/list?status=nonsense")[0] == 400


def test_render_changes_with_the_pose_and_thumbnails(server):
    import io

    import numpy as np
    from PIL import Image

    srv, page, base, root = server
    rel = quote(GOOD[1])
    st0, rest, h = request(srv, "GET", f"/api/models/render?path={rel}&pose=0,0,0,0,0,1")
    st1, turned, _ = request(srv, "GET", f"/api/models/render?path={rel}&pose=0,1,0,0,0,1")
    assert st0 == st1 == 200 and h["Content-Type"] == "image/png"
    a, b = (np.asarray(Image.open(io.BytesIO(x))) for x in (rest, turned))
    assert a.shape == (256, 256, 4) and a[..., 3].mean() > 10
    assert (np.abs(a.astype(int) - b.astype(int)).max(axis=-1) > 8).sum() > 500
    assert len(h["X-Frame"].split(",")) == 3 and float(h["X-Render-Ms"]) > 0
    st, thumb, _ = request(srv, "GET", f"/api/models/thumb?path={rel}")
    assert st == 200 and Image.open(io.BytesIO(thumb)).size == (128, 128)
    st, sheet, _ = request(srv, "GET", f"/api/models/sheet?path={rel}")
    assert st == 200 and Image.open(io.BytesIO(sheet)).size[0] == 4 * 128
    assert request(srv, "GET", f"/api/models/render?path={rel}&pose=0,9,0")[0] == 400


ESCAPES = ["../outside.txt", "../../etc/passwd", "/etc/passwd", "sample-01/../../outside.txt", "..",
           ".", "./sample-01/sample-01.pmx", "sample-01//sample-01.pmx", "C:/Windows/win.ini",
           "sample-01\\..\\..\\outside.txt", "a\x00b", "", "x" * 2000]


def test_every_parameter_refuses_paths_leaving_the_folder(server):
    srv, page, base, root = server
    before = sorted(p for p in base.rglob("*"))
    absolute = str(next(root.rglob("*.pmx")))
    for value in ESCAPES + [absolute]:
        for api in ("model", "render", "sheet", "thumb"):
            status, data, _ = request(srv, "GET", f"/api/models/{api}?path={quote(value)}")
            assert status == 400, (api, value, data)
        status, body = post(srv, "/api/models/override", {"path": value, "set": {"chin_y": 1.0}})
        assert status == 400, (value, body)
    # a well-formed path the scan did not find is unknown, never looked up on disk
    assert request(srv, "GET", "/api/models/render?path=outside.pmx")[0] == 404
    for name in ("../server.py", "..%2Fserver.py", "%2e%2e/config.py", "app.js/../../cli.py", "/etc/passwd"):
        assert request(srv, "GET", "/models/static/" + name)[0] == 404, name
    # override keys are checked: nothing but the editable ones, of the right types
    good = GOOD[0]
    for bad in ({"frame": [0, 0, 1]}, {"path": "x"}, {"chin_y": "1"}, {"mouth": 3}, {}, None,
                {"exclude": "x" * 600}):
        assert post(srv, "/api/models/override", {"path": good, "set": bad})[0] == 400, bad
    assert sorted(p for p in base.rglob("*")) == before


def test_writes_from_other_sites_are_refused(server):
    srv, page, base, root = server
    body = json.dumps({"path": GOOD[0], "set": {"chin_y": 1.0}}).encode()
    port = srv.server_address[1]
    assert request(srv, "POST", "/api/models/override", body, {"Content-Type": "text/plain"})[0] == 415
    assert request(srv, "POST", "/api/models/override", body,
                   {"Content-Type": "application/json", "Origin": "http://evil.example"})[0] == 403
    assert request(srv, "POST", "/api/models/override", body,
                   {"Content-Type": "application/json", "Origin": f"http://localhost:{port + 1}"})[0] == 403
    assert not any(root.rglob("*.thactl.json"))


def test_a_zipped_model_renders_but_gets_no_override(server):
    srv, page, base, root = server
    assert request(srv, "GET", f"/api/models/render?path={quote(ZIPPED)}")[0] == 200
    assert json.loads(request(srv, "GET", f"/api/models/model?path={quote(ZIPPED)}")[1])["editable"] is False
    status, body = post(srv, "/api/models/override", {"path": ZIPPED, "set": {"chin_y": 1.0}})
    assert status == 400 and "zip" in body["error"]
    assert not any(root.rglob("*.thactl.json"))


def test_request_size_is_bounded(server):
    srv, page, base, root = server
    status, data, _ = request(srv, "POST", "/api/models/override", b"{" + b" " * (64 * 1024) + b"}")
    assert status == 413
    assert request(srv, "GET", "/api/models/status")[0] == 200


def test_a_broken_model_shows_its_error_and_the_server_keeps_serving(server):
    srv, page, base, root = server
    good = quote(GOOD[1])
    for api in ("model", "render", "sheet", "thumb"):
        status, data, _ = request(srv, "GET", f"/api/models/{api}?path=broken/half.pmx")
        assert status == 422 and "truncated" in json.loads(data)["error"], data
    assert request(srv, "GET", f"/api/models/render?path={good}")[0] == 200


def test_a_renderer_that_dies_costs_one_request(server):
    srv, page, base, root = server
    good = quote(GOOD[0])
    assert request(srv, "GET", f"/api/models/render?path={good}")[0] == 200
    old_pid = page.worker.pid
    page.worker.timeout = 0.001                          # the child is killed mid-request
    try:
        status, data, _ = request(srv, "GET", f"/api/models/sheet?path={good}")
    finally:
        page.worker.timeout = 120
    assert status == 500 and "crashed or timed out" in json.loads(data)["error"]
    assert request(srv, "GET", f"/api/models/render?path={good}")[0] == 200
    pid = page.worker.pid
    assert pid not in (None, old_pid)
    os.kill(pid, signal.SIGKILL)                         # a crash between two requests
    deadline = time.monotonic() + 600                     # until the death is visible, however loaded the box
    while page.worker.pid is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert request(srv, "GET", f"/api/models/render?path={good}")[0] == 200


def _preview_frame(model: Path, out: Path, capsys, *extra) -> list[float]:
    assert main(["preview", str(model), "-o", str(out), "--size", "64", "--aa", "0", *extra]) == 0
    text = capsys.readouterr().out
    return [float(v) for v in re.search(r"frame: \(?([-\d.e]+),? ([-\d.e]+),? ([-\d.e]+)", text).groups()]


def test_saved_override_is_what_preview_and_models_check_read(server, capsys, tmp_path):
    srv, page, base, root = server
    rel = GOOD[0]
    model = root / rel
    cx, cy, half = _preview_frame(model, tmp_path / "a.png", capsys)
    chin, top = cy - half / 2 - 0.25, cy + half / 2 + 0.5
    status, res = post(srv, "/api/models/override", {"path": rel, "set": {"chin_y": chin, "head_top_y": top}})
    assert status == 200, res
    beside = model.with_name(model.name + ".thactl.json")
    assert json.loads(beside.read_text()) == {"chin_y": chin, "head_top_y": top}
    assert res["changed"] == {"chin_y": [None, chin], "head_top_y": [None, top]} and res["check"]["ok"]
    assert res["check"]["decided"]["frame"] == "override"
    f = _preview_frame(model, tmp_path / "b.png", capsys)
    assert f == pytest.approx([cx, (chin + top) / 2, top - chin], abs=1e-6)

    rejected = json.loads(request(srv, "GET", "/api/models/status")[1])["rejected"]
    status, res = post(srv, "/api/models/override", {"path": rel, "set": {"exclude": "hair clips through the face"}})
    assert status == 200 and not res["check"]["ok"]
    assert json.loads(request(srv, "GET", "/api/models/status")[1])["rejected"] == rejected + 1
    assert res["check"]["reason"] == "excluded: hair clips through the face"
    listed = json.loads(request(srv, "GET", "/api/models/list?status=overridden")[1])
    assert [i["path"] for i in listed["items"]] == [rel]
    assert main(["models", "check", str(root), "-q"]) == 1
    line = next(ln for ln in capsys.readouterr().out.splitlines() if rel in ln)
    assert line.startswith("REJECTED") and "excluded: hair clips through the face" in line

    status, res = post(srv, "/api/models/override", {"path": rel, "set": {"exclude": None, "chin_y": None,
                                                                          "head_top_y": None}})
    assert status == 200 and res["check"]["ok"] and not beside.exists()


def test_override_file_mode_writes_the_entry_render_reads(collection, tmp_path):
    from renderer.overrides import load_override

    base, root = collection
    ov = tmp_path / "overrides.json"
    srv, page = start(ServeConfig(port=0, models=root, overrides=ov))
    try:
        rel = GOOD[1]
        status, res = post(srv, "/api/models/override", {"path": rel, "set": {"mouth": "い", "chin_y": 17.5}})
        assert status == 200, res
        assert json.loads(ov.read_text()) == {rel: {"mouth": "い", "chin_y": 17.5}}
        assert load_override(root / rel, ov, root) == {"mouth": "い", "chin_y": 17.5}
        assert res["check"]["morphs"]["mouth"] == "い" and res["check"]["decided"]["mouth"] == "override"
        assert not any(root.rglob("*.thactl.json"))
        status, res = post(srv, "/api/models/override", {"path": rel, "set": {"mouth": "no such morph"}})
        assert status == 200 and "no morph named" in res["check"]["reason"]
    finally:
        stop(srv)


def test_serve_says_what_to_give(server, tmp_path, capsys):
    assert main(["serve", "--port", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "give --models FOLDER" in err and "--weights FOLDER" in err, err
    assert main(["serve", "--port", "0", "--drawings", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--drawings is for the puppet page" in err and "--weights" in err, err
    srv, *_ = server                                   # --models only: /puppet/ says what to give
    status, body, headers = request(srv, "GET", "/puppet/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"needs network weights" in body and b"thactl serve --weights" in body
    status, body, _ = request(srv, "GET", "/api/puppet/info")
    assert status == 404 and "--weights FOLDER" in json.loads(body)["error"]
    status, body, _ = request(srv, "GET", "/")
    assert status == 200 and b'href="/models/"' in body and b'href="/puppet/"' in body


def test_non_local_bind_only_with_the_flag(collection, tmp_path):
    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", "import sys, cli; sys.exit(cli.main())", "serve",
                             "--host", "0.0.0.0", "--port", "0", "--allow-remote", "--models", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("thactl serve: http://0.0.0.0:"), (line, proc.stderr.read() if proc.poll() else "")
        port = int(line.split(":")[3].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        conn.request("GET", "/")
        assert conn.getresponse().status in (200, 302)
    finally:
        proc.terminate()
        proc.wait(10)
