"""What `thactl serve` accepts, decided in one place (`Guard.check`, called by the server for
every request before any page sees it), and the image size cap its pages apply before decoding.

1. Host: the Host header must name this server: `localhost`, `127.0.0.1`, `[::1]` or the address
   it is bound to, with its port (the bare name only on port 80). A web page whose own host name
   an attacker re-pointed at 127.0.0.1 (DNS rebinding) sends its own name and gets 403. Bound to
   every address (--host 0.0.0.0 or ::), any IP address with the port is accepted as well: a name
   is needed to rebind, an address cannot be rebound.
2. Other sites: a request naming another origin (`Origin` not http://<Host>, "null" included) or
   sent by the browser for another site's page (`Sec-Fetch-Site: cross-site` or `same-site`) is
   refused with 403, for every request that changes state or costs CPU (every method but GET and
   HEAD) and for every GET under /api/ (renders, sheets, thumbnails, ...). A request without
   these headers (curl, scripts) passes.
3. Bodies: every method but GET and HEAD must say `Content-Type: application/json`, `image/...`
   or `application/octet-stream` (415 otherwise). A page on another site cannot send any of these
   without the browser first asking the server (a CORS preflight, which this server never grants),
   so a `fetch(..., {mode: "no-cors"})` or a form, which can only send text/plain, form data or
   nothing, is refused even from a browser that sends no Origin.
4. Image bodies (an image or octet-stream type) are read from their header only, before any
   page decodes them: more than MAX_DRAWING_SIDE pixels a side is 413, not an image is 400.
   Pages apply the same cap (`image_size`, `open_image`) to drawings they read from disk and to
   camera frames.
"""
from __future__ import annotations

import io
import ipaddress
import warnings
from pathlib import Path

from .http import HttpError, Request

#: the largest drawing (and camera frame) the server decodes, in pixels a side: THA works on
#: 256 x 256, so this leaves room for any real drawing while bounding a decoded RGBA image, and
#: the square it is padded to, at 64 MiB
MAX_DRAWING_SIDE = 4096
LOCAL_NAMES = ("localhost", "127.0.0.1", "[::1]")
SAFE_METHODS = ("GET", "HEAD")
BODY_TYPES = ("application/json", "application/octet-stream")
SAME_SITE_FETCH = ("same-origin", "none")      # Sec-Fetch-Site values of this server's own pages

# Pillow warns on stderr about an image over its own limit (89 M pixels) while opening it; every
# such image is then refused here (the cap is far below), so the warning would only repeat that.
warnings.filterwarnings("ignore", message="Image size .* could be decompression bomb")


class Guard:
    """The checks above for a server bound to `bound_host`:`port` (the port it really got)."""

    def __init__(self, bound_host: str, port: int):
        self.port = port
        self.any_address = bound_host in ("", "0.0.0.0", "::")
        names = set(LOCAL_NAMES)
        if not self.any_address:
            names.add(f"[{bound_host}]" if ":" in bound_host else bound_host)
        self.hosts = {f"{n.lower()}:{port}" for n in names} | ({n.lower() for n in names} if port == 80 else set())

    def check(self, req: Request) -> None:
        """Raise HttpError (400, 403, 413 or 415) for a request the server must not serve."""
        host = self._host(req)
        if req.method not in SAFE_METHODS or req.path.startswith("/api/"):
            _same_origin(req, host)
        if req.method not in SAFE_METHODS:
            kind = _body_kind(req)
            if kind != "application/json" and req.body:
                upload = Path(req.query.get("upload", "")).name      # the puppet page names its uploads
                image_size(req.body, upload or "the request body")

    def _host(self, req: Request) -> str:
        host = req.headers.get("host", "").strip().lower()
        if not host:
            raise HttpError(400, "the request has no Host header")
        if host in self.hosts or (self.any_address and _is_address_with_port(host, self.port)):
            return host
        raise HttpError(403, f"refused Host {host[:80]!r}: this server answers only to "
                             f"{', '.join(sorted(self.hosts))}")


def _same_origin(req: Request, host: str) -> None:
    origin = req.headers.get("origin")
    if origin is not None and origin.strip().lower() != f"http://{host}":
        raise HttpError(403, f"refused a request from another site (Origin {origin[:80]!r})")
    site = req.headers.get("sec-fetch-site")
    if site is not None and site.strip().lower() not in SAME_SITE_FETCH:
        raise HttpError(403, f"refused a request from another site (Sec-Fetch-Site {site[:40]!r})")


def _body_kind(req: Request) -> str:
    kind = req.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in BODY_TYPES or kind.startswith("image/"):
        return kind
    raise HttpError(415, f"refused Content-Type {kind[:60]!r}: send application/json, or an image "
                         "as image/... or application/octet-stream")


def _is_address_with_port(host: str, port: int) -> bool:
    name, sep, got = host.rpartition(":")
    if not sep or got != str(port):
        return False
    try:
        ipaddress.ip_address(name[1:-1] if name.startswith("[") and name.endswith("]") else name)
    except ValueError:
        return False
    return True


def open_image(source: bytes | Path, name: str, max_side: int = MAX_DRAWING_SIDE):
    """The image (bytes or a file) opened lazily, its header read and nothing decoded, once its
    size passed the cap: HttpError 413 when a side is over `max_side` (Pillow's own
    decompression-bomb refusal included). Pillow's errors for what it cannot read pass through."""
    from PIL import Image

    cap = f"drawings and camera frames may be at most {max_side}x{max_side}"
    try:
        im = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):     # the latter under -W error
        raise HttpError(413, f"{name}: image of more than {2 * Image.MAX_IMAGE_PIXELS} pixels "
                             f"refused before decoding; {cap}") from None
    w, h = im.size
    if w > max_side or h > max_side:
        im.close()
        raise HttpError(413, f"{name}: image of {w}x{h} pixels refused before decoding; {cap}")
    return im


def image_size(source: bytes | Path, name: str, max_side: int = MAX_DRAWING_SIDE) -> tuple[int, int]:
    """(width, height) of an image read from its header (open_image's cap, 413); 400 when it is
    not an image Pillow reads."""
    from PIL import UnidentifiedImageError

    try:
        with open_image(source, name, max_side) as im:
            return im.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        why = "not an image format Pillow reads" if isinstance(e, UnidentifiedImageError) else str(e)[:120]
        raise HttpError(400, f"{name}: not a readable image ({why})") from None
