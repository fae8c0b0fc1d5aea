"""The HTTP server of `thactl serve`: dispatches by URL prefix to the pages, bounds request sizes,
turns HttpError into its status and any other exception into a 500 with a one-line message, so
one bad model or request never stops the server.
"""
from __future__ import annotations

import importlib
import json
import sys
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

from core.errors import typed_first_line
from core.pose import pose_facts

from .config import ServeConfig
from .http import HttpError, Page, Request, Response

# page modules, each exposing make_page(cfg) -> Page | None (None: not configured)
PAGE_MODULES = ("app.models_page", "app.puppet_page")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def build_pages(cfg: ServeConfig) -> list[Page]:
    pages = []
    for name in PAGE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        page = module.make_page(cfg)
        if page is not None:
            pages.append(page)
    return pages


def dispatch(pages: list[Page], req: Request) -> Response:
    """The response of the first page that answers; 404 otherwise; never raises."""
    try:
        if req.path in ("/", "/index.html"):
            return _index(pages)
        if req.path == "/api/pose" and req.method == "GET":    # the pages' sliders: names, bounds, rest
            return Response.json(pose_facts())
        for page in pages:
            if _owns(page.prefix, req.path):
                resp = page.handle(req)
                if resp is not None:
                    return resp
        return Response.error(404, f"no such page: {req.path}")
    except HttpError as e:
        return Response.error(e.status, e.message)
    except Exception as e:  # noqa: BLE001 - a page failure is reported, the server keeps serving
        traceback.print_exc(file=sys.stderr)
        return Response.error(500, typed_first_line(e))


def _owns(prefix: str, path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in (prefix, "/api" + prefix))


def _index(pages: list[Page]) -> Response:
    links = "".join(f'<li><a href="{p.prefix}/">{p.prefix.strip("/")}</a></li>' for p in pages)
    if len(pages) == 1:
        return Response(302, b"", "text/plain", {"Location": pages[0].prefix + "/"})
    return Response.html(f"<!doctype html><title>thactl</title><h1>thactl</h1><ul>{links}</ul>")


def make_handler(pages: list[Page], max_body: int):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0 or length > max_body:
                self._send(Response.error(413, f"request body over {max_body} bytes"), close=True)
                return
            body = self.rfile.read(length) if length else b""
            req = Request(self.command, unquote(parts.path), dict(parse_qsl(parts.query)),
                          {k.lower(): v for k, v in self.headers.items()}, body)
            self._send(dispatch(pages, req))

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def _send(self, resp: Response, close: bool = False) -> None:
            self.send_response(resp.status)
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Content-Length", str(len(resp.body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            for k, v in resp.headers.items():
                self.send_header(k, v)
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(resp.body)

        def log_message(self, fmt, *args) -> None:  # quiet: the CLI prints what matters
            pass

    return Handler


def make_server(cfg: ServeConfig, pages: list[Page] | None = None) -> ThreadingHTTPServer:
    """A server bound to cfg.host:cfg.port (port 0 picks a free one) serving `pages`
    (default: every configured page module)."""
    pages = build_pages(cfg) if pages is None else pages
    server = ThreadingHTTPServer((cfg.host, cfg.port), make_handler(pages, cfg.max_body))
    server.daemon_threads = True
    server.pages = pages
    return server


def is_local(host: str) -> bool:
    return host in LOCAL_HOSTS or host.startswith("127.")


def describe(pages: list[Page]) -> str:
    return json.dumps([p.prefix for p in pages])
