"""The local server obeys only its own pages (docs/security.md): raw HTTP against a real
`thactl serve` (model page + puppet page) for the Host allow-list (DNS rebinding), Origin and
Sec-Fetch-Site, body content types, garbage Content-Length and bodies, a PNG whose header claims
20000x20000 pixels, and the symlink rule of render, `models check` and the model page; then a page
on another origin in headless Chromium that tries `fetch(..., {mode: 'no-cors'})` against the
puppet and override APIs while the server's state is watched."""
from __future__ import annotations

import http.client
import http.server
import json
import shutil
import socket
import struct
import threading
import zlib
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from conftest import BROWSER_WAIT_MS
from PIL import Image

from app.config import ServeConfig
from app.server import make_server
from cli import main
from tiny_networks import S, write_tiny_weights

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
MODEL = "sample-01/sample-01.pmx"
OUTSIDE_FILE, OUTSIDE_DIR = "linked.pmx", "linked_dir"


def png_claiming(w: int, h: int) -> bytes:
    """A valid-looking RGBA PNG whose IHDR says w x h: a few dozen bytes on disk."""
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))


def drawing(colour) -> Image.Image:
    yy, xx = np.mgrid[0:S, 0:S]
    img = np.zeros((S, S, 4), np.uint8)
    img[(yy - S / 2) ** 2 + (xx - S / 2) ** 2 < (S / 4) ** 2] = (*colour, 255)
    return Image.fromarray(img, "RGBA")


def with_symlinks(root: Path, outside: Path) -> None:
    """Beside the models under `root`: a model file and a folder of models outside it, linked in;
    a link to a model in a hidden folder inside it (followed); a link to `root` itself (a loop)."""
    pmx = root / MODEL
    (outside / "dir").mkdir(parents=True)
    shutil.copy(pmx, outside / "secret.pmx")
    shutil.copy(pmx, outside / "dir" / "other.pmx")
    (root / OUTSIDE_FILE).symlink_to(outside / "secret.pmx")
    (root / OUTSIDE_DIR).symlink_to(outside / "dir", target_is_directory=True)
    shutil.copytree(pmx.parent, root / ".store" / "kept")
    (root / "kept.pmx").symlink_to(root / ".store" / "kept" / "sample-01.pmx")
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "alias.pmx").symlink_to(pmx)                 # the same file as MODEL: listed once


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from renderer.samples import write_samples

    base = tmp_path_factory.mktemp("security")
    env = pytest.MonkeyPatch()
    env.setenv("XDG_CACHE_HOME", str(base / "xdg"))
    root = base / "pmx"
    write_samples(root, count=1, seed=0)
    with_symlinks(root, base / "outside")
    drawings = base / "drawings"
    drawings.mkdir()
    drawing((230, 180, 160)).save(drawings / "head.png")
    drawing((60, 90, 200)).save(drawings / "other.png")
    (drawings / "bomb.png").write_bytes(png_claiming(20000, 20000))
    weights = write_tiny_weights(base / "weights", 5)
    srv = make_server(ServeConfig(port=0, models=root, drawings=drawings, weights=weights, device="cpu",
                                  max_body=1 << 20))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    models_page = next(p for p in srv.pages if p.prefix == "/models")
    assert models_page.view.wait(300) and models_page.view.state == "done", models_page.view.error
    app = Client(srv, root)
    assert app.post("/api/puppet/drawing?name=head.png", b"")[0] == 200
    yield app
    srv.shutdown()
    srv.server_close()
    for p in srv.pages:
        getattr(p, "close", lambda: None)()
    env.undo()


class Client:
    def __init__(self, srv, root: Path):
        self.srv, self.root, self.port = srv, root, srv.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, body: bytes | None = None, **headers):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request(method, path, body=body, headers={k.replace("_", "-"): v for k, v in headers.items()})
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, data

    def post(self, path: str, body: bytes, content_type: str = "application/json", **headers):
        return self.request("POST", path, body, Content_Type=content_type, **headers)

    def drawing(self) -> str:
        return json.loads(self.request("GET", "/api/puppet/info")[1])["drawing"]

    def overrides(self) -> dict[str, bytes]:
        return {p.relative_to(self.root).as_posix(): p.read_bytes() for p in self.root.rglob("*.thactl.json")}

    def raw(self, data: bytes, half_close: bool = False) -> tuple[int, dict, bytes]:
        """Send `data` as it is; the status, headers and body of the one answer."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as s:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
            buf = b""
            while b"\r\n\r\n" not in buf:
                more = s.recv(65536)
                assert more, f"connection dropped without an answer to {data[:60]!r}"
                buf += more
            head, _, body = buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            hdrs = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
            while len(body) < int(hdrs["content-length"]):
                more = s.recv(65536)
                assert more, "connection dropped in the middle of the answer"
                body += more
            return int(lines[0].split()[1]), hdrs, body


JSON_POSE = json.dumps({"pose": [0, 0, 0, 0, 0, 1]}).encode()
EXCLUDE = json.dumps({"path": MODEL, "set": {"exclude": "spoiled by another web site"}}).encode()


# ------------------------------------------------------------------------------ Host


def test_only_this_servers_host_names_are_answered(app):
    """DNS rebinding: a page of evil.example re-pointed at 127.0.0.1 sends Host: evil.example and a
    matching Origin; neither its override write nor its read of the model list is served."""
    before = app.overrides()
    evil = f"evil.example:{app.port}"
    assert app.post("/api/models/override", EXCLUDE, Host=evil, Origin=f"http://{evil}")[0] == 403
    assert app.request("GET", "/api/models/list", Host=evil)[0] == 403
    assert app.post("/api/puppet/drawing?name=other.png", b"", Host=evil, Origin=f"http://{evil}")[0] == 403
    for host in (f"localhost.evil.example:{app.port}", f"127.0.0.1:{app.port + 1}", "127.0.0.1", f"127.0.0.1.:{app.port}"):
        assert app.request("GET", "/api/models/status", Host=host)[0] == 403, host
    for host in (f"127.0.0.1:{app.port}", f"localhost:{app.port}", f"LOCALHOST:{app.port}", f"[::1]:{app.port}"):
        assert app.request("GET", "/api/models/status", Host=host)[0] == 200, host
    status, _, body = app.raw(b"GET /api/models/status HTTP/1.1\r\n\r\n")
    assert status == 400 and "no Host header" in json.loads(body)["error"]
    assert app.overrides() == before and app.drawing() == "head.png"


def test_the_host_list_of_other_binds():
    """--host ADDRESS adds that address; every address (0.0.0.0) takes any IP address with the
    port, never a name (a name can be rebound, an address cannot)."""
    from app.guard import Guard
    from app.http import HttpError, Request

    def served(guard, host):
        try:
            guard.check(Request("GET", "/api/models/status", headers={"host": host}))
        except HttpError as e:
            assert e.status == 403, e.message
            return False
        return True

    lan = Guard("192.168.1.5", 8765)
    assert served(lan, "192.168.1.5:8765") and served(lan, "localhost:8765")
    assert not served(lan, "192.168.1.6:8765") and not served(lan, "192.168.1.5:8766")
    every = Guard("0.0.0.0", 8765)
    assert all(served(every, h) for h in ("10.0.0.7:8765", "[fe80::1]:8765", "127.0.0.1:8765"))
    assert not any(served(every, h) for h in ("evil.example:8765", "10.0.0.7:80", "0x7f.1:8765", "10.0.0.7"))
    web = Guard("127.0.0.1", 80)
    assert served(web, "localhost") and served(web, "localhost:80") and not served(web, "evil.example")


# ------------------------------------------------------------------------------ other sites


def test_requests_naming_another_origin_are_refused(app):
    before = app.overrides()
    for origin in ("http://evil.example", "null", f"http://localhost:{app.port + 1}",
                   f"https://127.0.0.1:{app.port}", f"http://127.0.0.1:{app.port}.evil.example"):
        assert app.post("/api/models/override", EXCLUDE, Origin=origin)[0] == 403, origin
        assert app.post("/api/puppet/drawing?name=other.png", b"", Origin=origin)[0] == 403, origin
        assert app.post("/api/puppet/pose", JSON_POSE, Origin=origin)[0] == 403, origin
        assert app.request("GET", f"/api/models/render?path={MODEL}", Origin=origin)[0] == 403, origin
    for site in ("cross-site", "same-site"):       # what Chromium sends for an <img> of another page
        assert app.request("GET", f"/api/models/render?path={MODEL}", Sec_Fetch_Site=site)[0] == 403
        assert app.post("/api/puppet/gif", b'{"motion": "blink", "fps": 10}', Sec_Fetch_Site=site)[0] == 403
    assert app.request("GET", "/models/", Sec_Fetch_Site="cross-site")[0] == 200   # a link to the page
    assert app.overrides() == before and app.drawing() == "head.png"
    # this server's own page, and command-line clients (no Origin) are served
    assert app.post("/api/puppet/pose", JSON_POSE, Origin=app.origin, Sec_Fetch_Site="same-origin")[0] == 200
    assert app.request("GET", f"/api/models/render?path={MODEL}", Sec_Fetch_Site="same-origin")[0] == 200
    assert app.post("/api/puppet/pose", JSON_POSE)[0] == 200


def test_bodies_must_be_json_or_an_image(app):
    """What a form or a no-cors fetch can send (text/plain, form data, nothing) is refused."""
    before = app.overrides()
    for kind in ("text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                 "multipart/form-data; boundary=x", "", "application/jsonx", "text/json"):
        assert app.post("/api/models/override", EXCLUDE, kind)[0] == 415, kind
        assert app.post("/api/puppet/drawing?name=other.png", b"", kind)[0] == 415, kind
        assert app.post("/api/puppet/pose", JSON_POSE, kind)[0] == 415, kind
    status, body = app.request("POST", "/api/puppet/gif", b'{"motion": "blink"}')      # no Content-Type
    assert status == 415 and "application/json" in json.loads(body)["error"]
    assert app.overrides() == before and app.drawing() == "head.png"
    assert app.post("/api/puppet/pose", JSON_POSE, "application/json; charset=utf-8")[0] == 200


# ------------------------------------------------------------------------------ malformed requests


GARBAGE_LENGTHS = [("abc", 400), ("-5", 400), ("1e3", 400), ("0x10", 400), (" ", 400),
                   ("99999999999999999999", 413), (str((1 << 20) + 1), 413)]


@pytest.mark.parametrize("length,status", GARBAGE_LENGTHS)
def test_a_garbage_content_length_gets_a_json_4xx(app, length, status, capfd):
    got, hdrs, body = app.raw(f"POST /api/puppet/pose HTTP/1.1\r\nHost: 127.0.0.1:{app.port}\r\n"
                              f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n".encode())
    assert got == status and hdrs["content-type"] == "application/json" and json.loads(body)["error"]
    assert app.request("GET", "/api/models/status")[0] == 200
    assert "Traceback" not in capfd.readouterr().err


def test_malformed_bodies_and_requests_get_a_json_4xx(app, capfd):
    host = f"Host: 127.0.0.1:{app.port}\r\n".encode()
    cases = [  # (raw request, expected status, words of the error)
        (b"POST /api/puppet/pose HTTP/1.1\r\n" + host + b"Content-Type: application/json\r\n"
         b"Content-Length: 100\r\n\r\n{\"pose\": [0,", 400, "ended after 12 of 100"),
        (b"POST /api/puppet/pose HTTP/1.1\r\n" + host + b"Content-Type: application/json\r\n"
         b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n{}", 400, "Content-Length"),
        (b"POST /api/puppet/pose HTTP/1.1\r\n" + host + b"Content-Type: application/json\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 411, "chunked"),
        (b"POST /api/puppet/pose HTTP/1.1\r\n" + host + b"Content-Type: application/json\r\n"
         b"Content-Length: 9\r\n\r\n{\"pose\": ", 400, "not JSON"),
        (b"POST /api/puppet/pose HTTP/1.1\r\n" + host + b"Content-Type: application/json\r\n"
         b"Content-Length: 200000\r\n\r\n" + b"[" * 100000 + b"]" * 100000, 400, "nested too deep"),
        (b"POST /api/puppet/pose HTTP/1.1\r\n" + host + b"Content-Type: application/json\r\n"
         b"Content-Length: 4\r\n\r\n\xff\xfe\x00\x01", 400, "not JSON"),
        (b"GARBAGE\r\n\r\n", 400, ""),
        (b"BREW /api/puppet/pose HTTP/1.1\r\n" + host + b"\r\n", 501, ""),
        (b"GET /api/puppet/info HTTP/1.1\r\n" + host + b"X-Long: " + b"x" * 70000 + b"\r\n\r\n", 431, ""),
        (b"GET /" + b"x" * 70000 + b" HTTP/1.1\r\n" + host + b"\r\n", 414, ""),
    ]
    for raw, status, words in cases:
        got, hdrs, body = app.raw(raw, half_close=True)
        assert got == status, (raw[:80], body)
        assert hdrs["content-type"] == "application/json" and words in json.loads(body)["error"], body
    assert app.drawing() == "head.png"
    assert "Traceback" not in capfd.readouterr().err


# ------------------------------------------------------------------------------ image sizes


def test_a_png_header_claiming_20000x20000_is_refused_before_decoding(app, capfd):
    bomb = png_claiming(20000, 20000)
    assert len(bomb) < 100
    for kind in ("image/png", "application/octet-stream"):
        status, body = app.post("/api/puppet/drawing?upload=bomb.png", bomb, kind)
        assert status == 413 and "refused before decoding" in json.loads(body)["error"], body
    status, body = app.post("/api/puppet/drawing?upload=big.png", png_claiming(12000, 12000), "image/png")
    assert status == 413 and "12000x12000" in json.loads(body)["error"] and "4096x4096" in json.loads(body)["error"]
    status, body = app.post("/api/puppet/drawing?name=bomb.png", b"")        # a file in --drawings
    assert status == 413 and "bomb.png" in json.loads(body)["error"]
    import base64
    frame = json.dumps({"image": base64.b64encode(bomb).decode()}).encode()
    status, body = app.post("/api/puppet/track", frame)                      # a camera frame
    assert status == 413 and "camera frame" in json.loads(body)["error"]
    status, body = app.post("/api/puppet/drawing?upload=x.png", b"not an image", "image/png")
    assert status == 400 and "not a readable image" in json.loads(body)["error"]
    assert app.drawing() == "head.png"
    assert "Traceback" not in capfd.readouterr().err


def test_an_over_cap_texture_rejects_its_model_in_one_line(tmp_path, monkeypatch, capsys):
    from renderer.samples import write_samples

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = tmp_path / "pmx"
    write_samples(root, count=1, seed=0)
    (root / "sample-01" / "face.png").write_bytes(png_claiming(20000, 20000))
    assert main(["models", "check", str(root), "-q"]) == 1
    out = capsys.readouterr().out.splitlines()
    line = next(l for l in out if MODEL in l)
    assert line.startswith("REJECTED") and "face.png: texture refused before decoding" in line, out
    assert len(out) == 2 and "Traceback" not in "\n".join(out)


# ------------------------------------------------------------------------------ symlinks


def test_the_symlink_rule_of_discovery(app):
    from dataset.discover import discover_models, link_outside

    root = app.root
    found = {m.rel_path: m for m in discover_models(root, root.parent / "cache")}
    assert sorted(found) == sorted(["kept.pmx", OUTSIDE_DIR, OUTSIDE_FILE, MODEL])
    assert found[MODEL].path == root / MODEL and found["kept.pmx"].error is None   # inside: followed
    for rel in (OUTSIDE_DIR, OUTSIDE_FILE):                                      # outside: skipped, said
        assert found[rel].path is None
        assert found[rel].error.startswith("skipped: a symlink that leads outside the models folder (to ")
    assert link_outside(root / "loop", root) is None and link_outside(root / OUTSIDE_FILE, root)


def test_render_models_check_and_the_page_say_what_was_skipped(app, tmp_path, monkeypatch, capsys):
    page = json.loads(app.request("GET", "/api/models/list?limit=200")[1])["items"]
    listed = {i["path"]: i for i in page}
    assert sorted(listed) == sorted(["kept.pmx", OUTSIDE_DIR, OUTSIDE_FILE, MODEL])
    for rel in (OUTSIDE_DIR, OUTSIDE_FILE):
        assert listed[rel]["status"] == "rejected"
        assert listed[rel]["reason_kind"] == "skipped: a symlink that leads outside the models folder"
        assert app.request("GET", f"/api/models/render?path={rel}")[0] == 422       # never read
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert main(["models", "check", str(app.root), "-q"]) == 1
    lines = capsys.readouterr().out.splitlines()
    skipped = sorted(l.split()[1] for l in lines if "outside the models folder" in l)
    assert skipped == sorted([OUTSIDE_DIR, OUTSIDE_FILE]), lines
    assert main(["render", "--models", str(app.root), "--out", str(tmp_path / "o"), "--count", "4",
                 "--size", "32", "--aa", "0", "--workers", "1", "-q"]) == 0
    man = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert sorted(m["path"] for m in man["models"]) == ["kept.pmx", MODEL]
    assert {d["path"] for d in man["rejected"] if "outside the models folder" in d["reason"]} == {
        OUTSIDE_DIR, OUTSIDE_FILE}


# ------------------------------------------------------------------------------ a real browser


EVIL_PAGE = """<!doctype html><title>attacking</title><script>
const app = "http://127.0.0.1:PORT";
const tries = [
  ["/api/puppet/drawing?name=other.png", ""],
  ["/api/puppet/drawing?name=other.png", "{}"],
  ["/api/puppet/drawing?upload=x.png", new Blob([PNG], {type: "image/png"})],
  ["/api/puppet/pose", JSON.stringify({pose: [0, 1, 0, 0, 0, 1]})],
  ["/api/puppet/gif", JSON.stringify({motion: "blink", fps: 60})],
  ["/api/puppet/track", JSON.stringify({image: "AAAA"})],
  ["/api/models/override", JSON.stringify({path: "MODEL", set: {exclude: "spoiled"}})],
  ["/api/models/override", new URLSearchParams({path: "MODEL"})],
];
(async () => {
  for (const [url, body] of tries) {
    try { await fetch(app + url, {mode: "no-cors", method: "POST", body}); } catch (e) {}
    try { await fetch(app + url, {mode: "no-cors", method: "POST", body,
                                  headers: {"Content-Type": "application/json"}}); } catch (e) {}
  }
  document.title = "done";
})();
</script>"""


@pytest.fixture
def evil_site(app, tmp_path):
    """A page on another origin (http://localhost:<another port>) that attacks the app."""
    buf = tmp_path / "d.png"
    drawing((10, 200, 10)).save(buf)
    page = (EVIL_PAGE.replace("PORT", str(app.port)).replace("MODEL", MODEL)
            .replace("PNG", "new Uint8Array(" + json.dumps(list(buf.read_bytes())) + ")"))
    (tmp_path / "evil.html").write_text(page)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://localhost:{srv.server_address[1]}/evil.html"
    srv.shutdown()
    srv.server_close()


def test_a_page_on_another_origin_cannot_change_the_server(app, evil_site):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright (the test extra)")
    before = app.overrides()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.set_default_timeout(BROWSER_WAIT_MS)
            answers: list[tuple[str, int]] = []
            page.on("response", lambda r: answers.append((r.url, r.status))
                    if r.url.startswith(app.origin) else None)
            page.goto(evil_site)
            page.wait_for_function("document.title === 'done'", timeout=BROWSER_WAIT_MS)
            assert len(answers) == 16 and all(s in (403, 415) for _, s in answers), answers
            assert app.overrides() == before and app.drawing() == "head.png"
            # the app's own page still works: choosing a drawing there changes it
            own = browser.new_page()
            own.set_default_timeout(BROWSER_WAIT_MS)
            own.goto(app.origin + "/puppet/")
            own.wait_for_selector("#drawings option[value='file:other.png']", state="attached")
            with own.expect_response(lambda r: "/api/puppet/drawing" in r.url) as resp:
                own.select_option("#drawings", "file:other.png")
            # the page's own tab now holds other.png (state is per tab; the cross-origin
            # requests above carried no tab id, so they aimed at the command-line tab)
            assert resp.value.status == 200 and resp.value.json()["drawing"] == "other.png"
        finally:
            browser.close()
    app.post("/api/puppet/drawing?name=head.png", b"")
