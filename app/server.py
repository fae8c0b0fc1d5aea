"""The HTTP server of `thactl serve`: reads each request (a bad Content-Length, a body over the
limit, a truncated or chunked body, a client that stalls for REQUEST_TIMEOUT seconds: a 4xx with a
JSON error, then the connection is closed), lets app.guard.Guard refuse what the server must not
serve (Host, other sites, body types, image sizes), dispatches by URL prefix to the pages, and
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
from .guard import Guard
from .http import HttpError, Page, Request, Response

# page modules, each exposing make_page(cfg) -> Page | None (None: not configured)
PAGE_MODULES = ("app.models_page", "app.puppet_page")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
#: seconds a client may take to send a request line, its headers or its body
REQUEST_TIMEOUT = 30


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


def dispatch(pages: list[Page], req: Request, guard: Guard | None = None) -> Response:
    """The response of the first page that answers, once `guard` (when given) let the request
    through; 404 otherwise; never raises."""
    try:
        if guard is not None:
            guard.check(req)
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


def make_handler(pages: list[Page], max_body: int, guard: Guard | None = None):
    """The request handler class; `guard` (None: no checks, for tests of the pages alone)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        default_request_version = "HTTP/1.1"    # an unreadable request line still gets headers
        timeout = REQUEST_TIMEOUT

        def _serve(self) -> None:
            try:
                body = self._read_body()
            except HttpError as e:          # the rest of the stream cannot be trusted: close
                self._send(Response.error(e.status, e.message), close=True)
                return
            parts = urlsplit(self.path)
            req = Request(self.command, unquote(parts.path), dict(parse_qsl(parts.query)),
                          {k.lower(): v for k, v in self.headers.items()}, body)
            self._send(dispatch(pages, req, guard))

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding"):
                raise HttpError(411, "send the body with a Content-Length (chunked bodies are not read)")
            values = {v.strip() for v in self.headers.get_all("Content-Length") or []}
            if not values:
                return b""
            text = values.pop()
            if values or not (text.isascii() and text.isdigit()):
                raise HttpError(400, f"bad Content-Length {text[:40]!r}: give one number of bytes")
            length = int(text)
            if length > max_body:
                raise HttpError(413, f"request body over {max_body} bytes")
            try:
                body = self.rfile.read(length) if length else b""
            except TimeoutError:
                raise HttpError(408, f"the body did not arrive within {REQUEST_TIMEOUT} s") from None
            if len(body) < length:
                raise HttpError(400, f"the body ended after {len(body)} of {length} bytes")
            return body

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """http.server's own refusals (a malformed request line or header, an unknown method)
            as JSON like every other error."""
            text = message or self.responses.get(code, ("error",))[0]
            self._send(Response.error(code, text), close=True)

        def _send(self, resp: Response, close: bool = False) -> None:
            self.send_response(resp.status)
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Content-Length", str(len(resp.body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("X-Frame-Options", "DENY")
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


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A client that left mid-answer is no news; anything else gets one line, no traceback."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, TimeoutError)):
            print(f"thactl serve: request from {client_address[0]} failed: {typed_first_line(exc)}",
                  file=sys.stderr)


def make_server(cfg: ServeConfig, pages: list[Page] | None = None) -> ThreadingHTTPServer:
    """A server bound to cfg.host:cfg.port (port 0 picks a free one) serving `pages`
    (default: every configured page module), every request checked by app.guard.Guard."""
    pages = build_pages(cfg) if pages is None else pages
    server = Server((cfg.host, cfg.port), BaseHTTPRequestHandler)   # its handler needs the port
    server.RequestHandlerClass = make_handler(pages, cfg.max_body, Guard(cfg.host, server.server_address[1]))
    server.pages = pages
    return server


def is_local(host: str) -> bool:
    return host in LOCAL_HOSTS or host.startswith("127.")


def describe(pages: list[Page]) -> str:
    return json.dumps([p.prefix for p in pages])
