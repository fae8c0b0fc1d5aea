"""The live puppet page (`thactl serve --weights W [--drawings D]`): choose a drawing (upload, or a
file inside --drawings), pose it with one slider per parameter of the weights' pose schema (THA1:
six), play motion presets, save PNG/GIF, and drive it from the webcam (frames are tracked here, on
the server). Each browser tab has its own drawing
and webcam calibration (app.puppet); without --weights, /puppet/ says what to give.

URLs: /puppet/ (the page), /puppet/static/NAME, and under /api/puppet: GET info (with the networks'
pose schema: its facts and the page's slider groups), POST drawing (?name=REL inside --drawings, or a
PNG body with ?upload=NAME), GET input (the tab's drawing as the networks take it), POST pose {pose},
GET motion?name=, POST gif {motion, fps, pose}, POST track {image: base64 JPEG/PNG, calibrate, gain,
mirror}. Requests name their tab in the X-Puppet-Tab header. A pose is a list of the schema's P
numbers in its order (THA1: six); presets and the webcam give poses of the schema (app.puppet).
"""
from __future__ import annotations

import base64
from pathlib import Path

import numpy as np

from .config import ServeConfig
from .guard import image_size, open_image
from .http import HttpError, Request, Response

PREFIX = "/puppet"
STATIC = Path(__file__).resolve().parent / "static" / "puppet"
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8"}
DRAWING_SUFFIXES = (".png", ".webp", ".tga", ".tif", ".tiff")


NEEDS_WEIGHTS = ("the puppet page needs network weights: start thactl serve with --weights FOLDER "
                 "(.safetensors from thactl train, or THA1's released .pt files), and --drawings FOLDER "
                 "to choose drawings from a folder")


def make_page(cfg: ServeConfig) -> "PuppetPage | NeedsWeightsPage":
    """The page when `thactl serve` was given --weights; otherwise one that says what to give."""
    return PuppetPage(cfg) if cfg.weights is not None else NeedsWeightsPage()


class NeedsWeightsPage:
    """/puppet/ without --weights: an HTML page (and JSON errors under /api/puppet) saying what to give."""
    prefix = PREFIX

    def handle(self, req: Request) -> Response | None:
        if req.method == "GET" and req.path in (PREFIX, PREFIX + "/", PREFIX + "/index.html"):
            return _static("needs-weights.html")
        if req.method == "GET" and req.path.startswith(PREFIX + "/static/"):
            return _static(req.path[len(PREFIX + "/static/"):])
        if req.path.startswith("/api" + PREFIX):
            raise HttpError(404, NEEDS_WEIGHTS)
        return None

    def close(self) -> None:
        pass


class PuppetPage:
    prefix = PREFIX

    def __init__(self, cfg: ServeConfig):
        from .puppet import Puppet

        self.cfg = cfg
        self.puppet = Puppet(cfg.weights, cfg.device, precision=cfg.precision)
        self.routes = {
            ("GET", "/api/puppet/info"): self.info, ("POST", "/api/puppet/drawing"): self.drawing,
            ("GET", "/api/puppet/input"): self.input, ("POST", "/api/puppet/pose"): self.pose,
            ("GET", "/api/puppet/motion"): self.motion, ("POST", "/api/puppet/gif"): self.gif,
            ("POST", "/api/puppet/track"): self.track,
        }

    def handle(self, req: Request) -> Response | None:
        if req.method == "GET" and req.path in (PREFIX, PREFIX + "/", PREFIX + "/index.html"):
            return _static("index.html")
        if req.method == "GET" and req.path.startswith(PREFIX + "/static/"):
            return _static(req.path[len(PREFIX + "/static/"):])
        route = self.routes.get((req.method, req.path))
        return route(req) if route else None

    def close(self) -> None:
        pass

    # -- API
    def info(self, req: Request) -> Response:
        from inference.motion import BUILTIN

        from .puppet import slider_groups

        p = self.puppet
        tab = p.tab(_tab(req))
        return Response.json({"image_size": p.image_size, "device": str(p.runner.device), "path": p.runner.path,
                              "weights": self.cfg.weights.name, "drawing": tab.drawing_name, "warnings": tab.warnings,
                              "drawings": self.drawing_names(), "presets": list(BUILTIN),
                              "precision": "fp16" if p.runner.half else "fp32",
                              "weights_warning": p.weights_warning, "schema": p.schema.facts(),
                              "groups": slider_groups(p.schema), "driven": p.driven()})

    def drawing_names(self) -> list[str]:
        root = self.cfg.drawings
        if root is None:
            return []
        return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                      if p.suffix.lower() in DRAWING_SUFFIXES and p.is_file() and _inside(root, p))

    def drawing(self, req: Request) -> Response:
        fit = req.query.get("fit", "1") != "0"
        tab = _tab(req)
        if "upload" in req.query:
            if not req.body:
                raise HttpError(400, "the upload is empty")
            name = Path(req.query["upload"]).name or "upload.png"
            warnings = self.puppet.set_drawing(tab, name, data=req.body, fit=fit)
        else:
            path = self.resolve_drawing(req.query.get("name", ""))
            image_size(path, path.name)         # the size cap, before decoding
            name = str(path.relative_to(self.cfg.drawings))
            warnings = self.puppet.set_drawing(tab, name, path=path, fit=fit)
        return Response.json({"drawing": name, "warnings": warnings, "uploaded": "upload" in req.query})

    def input(self, req: Request) -> Response:
        return Response.png(self.puppet.input_png(_tab(req)))

    def resolve_drawing(self, name: str) -> Path:
        """A drawing file inside --drawings; 403 for anything outside it, 404 when missing."""
        root = self.cfg.drawings
        if root is None:
            raise HttpError(404, "no --drawings folder was given; upload a drawing instead")
        path = (root / name).resolve()
        if not name or Path(name).is_absolute() or not _inside(root, path):
            raise HttpError(403, f"{name!r} is not inside the drawings folder")
        if not path.is_file() or path.suffix.lower() not in DRAWING_SUFFIXES:
            raise HttpError(404, f"no drawing {name!r}")
        return path

    def pose(self, req: Request) -> Response:
        png, ms = self.puppet.pose_png(_tab(req), _body(req).get("pose"))
        resp = Response.png(png)
        resp.headers["X-Net-Ms"] = f"{ms:.1f}"
        return resp

    def motion(self, req: Request) -> Response:
        poses = self.puppet.from_tha1(_preset(req.query.get("name", ""), _fps(req.query.get("fps", 20))))
        return Response.json({"poses": poses.tolist()})

    def gif(self, req: Request) -> Response:
        """The preset as a GIF; `pose` (optional): the values of the parameters the preset does not set."""
        body = _body(req)
        fps = _fps(body.get("fps", 20))
        poses = self.puppet.from_tha1(_preset(str(body.get("motion", "")), fps), body.get("pose"))
        data = self.puppet.animation_gif(_tab(req), poses, fps)
        return Response(200, data, "image/gif", {"Content-Disposition": 'attachment; filename="puppet.gif"'})

    def track(self, req: Request) -> Response:
        from tracking.errors import TrackError
        from tracking.posemap import PoseMapping

        body = _body(req)
        rgb = _decode_frame(body.get("image"))
        try:
            mapping = PoseMapping(gain=float(body.get("gain", 1.0)), mirror=bool(body.get("mirror", True))).check()
        except (TypeError, ValueError, TrackError) as e:
            raise HttpError(400, f"bad tracking settings: {e}") from None
        reply = self.puppet.track(_tab(req), rgb, bool(body.get("calibrate", False)), mapping)
        return Response.json({"seq": body.get("seq"), "face": reply.face, "pose": reply.pose,
                              "angles": reply.angles, "track_ms": round(reply.track_ms, 2),
                              "calibrated": bool(body.get("calibrate", False)) and reply.face})


def _tab(req: Request) -> str:
    from .puppet import check_tab_id

    return check_tab_id(req.headers.get("x-puppet-tab"))


def _inside(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _static(name: str) -> Response:
    path = (STATIC / name).resolve()
    if not _inside(STATIC, path) or path.suffix not in STATIC_TYPES or not path.is_file():
        raise HttpError(404, f"no such file: {name}")
    return Response(200, path.read_bytes(), STATIC_TYPES[path.suffix], {"Cache-Control": "no-store"})


def _body(req: Request) -> dict:
    body = req.json()
    if not isinstance(body, dict):
        raise HttpError(400, "the request body must be a JSON object")
    return body


def _fps(value) -> float:
    try:
        fps = float(value)
    except (TypeError, ValueError):
        raise HttpError(400, "fps must be a number") from None
    if not 1 <= fps <= 60:
        raise HttpError(400, "fps must be between 1 and 60")
    return fps


def _preset(name: str, fps: float) -> np.ndarray:
    from inference.motion import BUILTIN, get_motion

    if name not in BUILTIN:     # never a path: get_motion would read a CSV file
        raise HttpError(400, f"unknown motion {name!r}: use {', '.join(BUILTIN)}")
    return get_motion(name, fps=fps)


def _decode_frame(data) -> np.ndarray:
    """A base64 JPEG/PNG (optionally a data: URL) -> (H, W, 3) uint8 RGB."""
    from PIL import UnidentifiedImageError

    if not isinstance(data, str) or not data:
        raise HttpError(400, "image must be a base64 JPEG or PNG")
    try:
        raw = base64.b64decode(data.split(",", 1)[-1], validate=False)
        with open_image(raw, "camera frame") as im:     # the size cap, before decoding
            return np.asarray(im.convert("RGB"))
    except (ValueError, UnidentifiedImageError, OSError) as e:
        raise HttpError(400, f"image is not a readable JPEG or PNG ({e})") from None
