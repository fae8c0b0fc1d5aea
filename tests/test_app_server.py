"""The browser app's server: prefix dispatch, errors as JSON, body limit, localhost by default."""
from __future__ import annotations

import http.client
import json
import threading

import pytest

from app.config import ServeConfig
from app.http import HttpError, Request, Response
from app.server import dispatch, make_server
from cli import main


class EchoPage:
    prefix = "/echo"

    def handle(self, req: Request):
        if req.path == "/api/echo/boom":
            raise RuntimeError("renderer crashed\nsecond line")
        if req.path == "/api/echo/bad":
            raise HttpError(400, "bad parameter")
        if req.path.startswith("/api/echo"):
            return Response.json({"path": req.path, "q": req.query, "n": len(req.body)})
        return None


def test_dispatch_routes_by_prefix_and_reports_errors():
    pages = [EchoPage()]
    ok = dispatch(pages, Request("GET", "/api/echo/x", {"a": "1"}))
    assert ok.status == 200 and json.loads(ok.body) == {"path": "/api/echo/x", "q": {"a": "1"}, "n": 0}
    assert dispatch(pages, Request("GET", "/elsewhere")).status == 404
    facts = dispatch(pages, Request("GET", "/api/pose"))                 # the pages' pose facts
    assert facts.status == 200 and json.loads(facts.body)["rest"] == [0, 0, 0, 0, 0, 1]
    assert dispatch(pages, Request("GET", "/echo")).status == 404        # the page declined it
    assert dispatch(pages, Request("GET", "/echoes/x")).status == 404    # not under the prefix
    bad = dispatch(pages, Request("GET", "/api/echo/bad"))
    assert bad.status == 400 and json.loads(bad.body) == {"error": "bad parameter"}
    boom = dispatch(pages, Request("GET", "/api/echo/boom"))
    assert boom.status == 500 and json.loads(boom.body)["error"] == "RuntimeError: renderer crashed"


@pytest.fixture
def server():
    srv = make_server(ServeConfig(port=0, max_body=1000), pages=[EchoPage()])
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _request(srv, method, path, body=b""):
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=600)
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
    r = conn.getresponse()
    return r.status, r.read()


def test_server_answers_keeps_serving_after_a_crash_and_bounds_bodies(server):
    assert server.server_address[0] == "127.0.0.1"
    assert _request(server, "GET", "/api/echo/boom")[0] == 500
    status, body = _request(server, "POST", "/api/echo/x?b=%2E%2E", b"x" * 1000)
    assert status == 200 and json.loads(body) == {"path": "/api/echo/x", "q": {"b": ".."}, "n": 1000}
    assert _request(server, "POST", "/api/echo/x", b"x" * 1001)[0] == 413
    assert _request(server, "GET", "/api/echo/y")[0] == 200


def test_serve_refuses_a_non_local_host_without_the_flag(capsys):
    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "--allow-remote" in capsys.readouterr().err
