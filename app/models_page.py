"""The model page of `thactl serve --models FOLDER`: the collection's check results (list, filters,
thumbnails, background scan progress), a model view (live render with six pose sliders, contact
sheet, camera box lines) and the override editor.

URLs: /models/ (the page), /models/static/NAME (its script and style), and under /api/models/:
status, list, model, render, sheet, thumb, schema, parameters (GET) and override (POST).

Under a pose schema other than tha1 (`thactl serve --schema tha3`): `schema` gives the schema's
parameters (names, bounds, rest, kinds; {"schema": null} under tha1, where the page is as it always
was), `parameters?path=` how each was found on the model (renderer.schema_rig: name / geometry /
split / override / missing), `render` takes the schema's P numbers and poses through its rig, the
list gives each model's coverage (found/P), and an override may map parameters to morphs
(`"parameters": {name: morph | null}`, app.override_store). A model is named by its
path relative to the models folder as the scan found it; any other path (absolute, "..", a
backslash, a NUL, or a model the scan did not find) is refused before touching the disk; writes
must be JSON from the page's own origin (app.guard checks that for every request). Besides
override files, the page writes only the collection's cache
(dataset.collection.collection_cache_dir: verdicts, zip extractions, thumbnails).
"""
from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

from .collection_view import STATUSES, CollectionView, record
from .config import ServeConfig
from .http import HttpError, Request, Response
from .render_worker import RenderWorker, WorkerCrashed, WorkerError

PREFIX = "/models"
API = "/api" + PREFIX
STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8",
          "index.html": "text/html; charset=utf-8"}
MAX_PARAM = 1024


def make_page(cfg: ServeConfig):
    if cfg.models is None:
        return None
    page = ModelsPage(cfg)
    page.view.start()
    return page


def check_rel_path(value) -> str:
    """A model path parameter as given, or HttpError(400) when it could leave the folder."""
    if not isinstance(value, str) or not value or len(value) > MAX_PARAM:
        raise HttpError(400, "missing or over-long model path")
    bad = ("\x00" in value or "\\" in value or value.startswith("/") or
           (len(value) > 1 and value[1] == ":") or any(p in ("..", ".", "") for p in value.split("/")))
    if bad:
        raise HttpError(400, f"refused model path {value[:80]!r}: give the path relative to the "
                             "models folder, without '..', '.', '\\\\' or a leading '/'")
    return value


class ModelsPage:
    prefix = PREFIX

    def __init__(self, cfg: ServeConfig, scan_workers: int | None = None):
        self.cfg = cfg
        self.root = Path(cfg.models).resolve()
        self.overrides = Path(cfg.overrides).resolve() if cfg.overrides else None
        if self.overrides is not None and not self.overrides.exists():
            from core.atomicfile import write_json

            write_json(self.overrides, {})     # what render and preview then read
        self.schema = page_schema(cfg.schema)
        self.view = CollectionView(self.root, self.overrides, scan_workers, schema=self.schema)
        self.worker = RenderWorker(self.root, self.overrides,          # live view, sheet, edits
                                   schema=cfg.schema if self.schema is not None else None)
        self.thumb_worker = RenderWorker(self.root, self.overrides)    # list thumbnails
        self.routes = {("GET", "status"): self.status, ("GET", "list"): self.listing,
                       ("GET", "model"): self.model, ("GET", "render"): self.render,
                       ("GET", "sheet"): self.sheet, ("GET", "thumb"): self.thumb,
                       ("GET", "schema"): self.schema_facts, ("GET", "parameters"): self.parameters,
                       ("POST", "override"): self.save}

    def close(self) -> None:
        self.worker.close()
        self.thumb_worker.close()

    def handle(self, req: Request) -> Response | None:
        if req.path in (PREFIX, PREFIX + "/"):
            return self._static("index.html")
        if req.path.startswith(PREFIX + "/static/"):
            return self._static(req.path[len(PREFIX + "/static/"):])
        if req.path.startswith(API + "/"):
            fn = self.routes.get((req.method, req.path[len(API) + 1:]))
            if fn is None:
                raise HttpError(404, f"no such request: {req.method} {req.path}")
            return fn(req)
        return None

    def _static(self, name: str) -> Response:
        if name not in STATIC:
            raise HttpError(404, "no such file")
        data = resources.files("app").joinpath("static", "models", name).read_bytes()
        return Response(200, data, STATIC[name], {"Cache-Control": "no-cache"})

    # -- the collection
    def status(self, req: Request) -> Response:
        return Response.json(self.view.status())

    def listing(self, req: Request) -> Response:
        status = req.query.get("status", "all")
        if status not in STATUSES:
            raise HttpError(400, f"status must be one of {', '.join(STATUSES)}")
        offset, limit = _int(req, "offset", 0, 0, 10**9), _int(req, "limit", 50, 1, 200)
        return Response.json(self.view.listing(status, req.query.get("reason", "")[:200],
                                               req.query.get("q", "")[:200], offset, limit))

    def _source(self, req: Request):
        return self._source_of(req.query.get("path"))

    def _source_of(self, value):
        rel = check_rel_path(value)
        src = self.view.source(rel)
        if src is None:
            raise HttpError(404, f"no model {rel!r} in the collection (yet)")
        if src.path is None:
            raise HttpError(422, f"{rel}: {src.error}")
        return rel, src

    def _in_zip(self, src) -> bool:
        """Whether the model was unpacked from a zip (its file lies in the cache, not the folder)."""
        return not Path(src.path).absolute().is_relative_to(self.root)

    def _call(self, op: str, worker: RenderWorker | None = None, **args) -> dict:
        try:
            return (worker or self.worker).call(op, **args)
        except WorkerError as e:
            raise HttpError(422, str(e)) from None
        except WorkerCrashed as e:
            raise HttpError(500, str(e)) from None

    # -- one model
    def model(self, req: Request) -> Response:
        rel, src = self._source(req)
        out = self._call("info", path=str(src.path))
        check = self.view.checks.get(rel)
        out["check"] = None if check is None else record(check)
        out["path"] = rel
        out["editable"] = not self._in_zip(src)
        out["override_file"] = str(self.overrides) if self.overrides else src.path.name + ".thactl.json"
        return Response.json(out)

    def render(self, req: Request) -> Response:
        _, src = self._source(req)
        pose = _pose(req.query.get("pose"), self.schema)
        out = self._call("render", path=str(src.path), pose=pose)
        resp = Response.png(out["png"])
        resp.headers["X-Frame"] = ",".join(f"{v:.6g}" for v in out["frame"])
        resp.headers["X-Render-Ms"] = f"{out['ms']:.1f}"
        return resp

    def sheet(self, req: Request) -> Response:
        _, src = self._source(req)
        return Response.png(self._call("sheet", path=str(src.path))["png"])

    def thumb(self, req: Request) -> Response:
        from core.atomicfile import write_bytes

        from dataset.collection import validation_key

        _, src = self._source(req)
        key = validation_key(self.view.cfg, src)
        cache = self.view.cfg.cache / "thumbs" / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".png")
        if cache.is_file():
            return _cacheable(Response.png(cache.read_bytes()))
        data = self._call("thumb", self.thumb_worker, path=str(src.path))["png"]
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_bytes(cache, data)
        except OSError:
            pass
        return _cacheable(Response.png(data))

    # -- the pose schema
    def schema_facts(self, req: Request) -> Response:
        """The schema's sliders (PoseSchema.facts plus each parameter's kind); {"schema": null}
        under tha1."""
        if self.schema is None:
            return Response.json({"schema": None})
        facts = self.schema.facts()
        facts["kind"] = [p.kind for p in self.schema.parameters]
        return Response.json(facts)

    def parameters(self, req: Request) -> Response:
        """How each schema parameter was found on one model; the list's coverage follows it."""
        if self.schema is None:
            raise HttpError(404, "no pose schema: start `thactl serve --models DIR --schema NAME`")
        rel, src = self._source(req)
        out = self._call("parameters", path=str(src.path))
        self.view.set_coverage(rel, [b["how"] for b in out["parameters"]])
        out["path"] = rel
        return Response.json(out)

    # -- editing
    def save(self, req: Request) -> Response:
        from .override_store import save_override

        body = req.json()
        if not isinstance(body, dict):
            raise HttpError(400, "expected a JSON object {path, set}")
        rel, src = self._source_of(body.get("path"))
        edits = body.get("set")
        morphs = self._morph_names(src) if isinstance(edits, dict) and "parameters" in edits else None
        result = save_override(self.root, self.overrides, rel, src.path, edits,
                               in_zip=self._in_zip(src), schema=self.schema, morphs=morphs)
        result["check"] = record(self.revalidate(rel, src))
        result["file"] = Path(result["file"]).name if self.overrides is None else result["file"]
        return Response.json(result)

    def _morph_names(self, src) -> list[str]:
        """The model's morph names (what a parameter may be mapped to)."""
        return [m["name"] for m in self._call("info", path=str(src.path))["morphs"]]

    def revalidate(self, rel: str, src):
        """Validate one model again after an edit (render's validation, render's cache key)."""
        from dataset.collection import validation_key
        from dataset.verdicts import store_verdicts
        from dataset.modelcheck import ModelCheck

        try:
            rec = self._call("validate", path=str(src.path), rel=rel, sha256=src.sha256)["check"]
        except HttpError as e:
            rec = ModelCheck(rel, False, reason=e.message, sha256=src.sha256).to_json()
        store_verdicts(self.view.cfg.cache, {validation_key(self.view.cfg, src): rec})
        check = ModelCheck.from_json(rec)
        self.view.update(check)
        return check


def page_schema(spec: str):
    """The pose schema the page follows, or None for tha1 (the page as it always was)."""
    from core.poseschema import load_schema

    schema = load_schema(spec)
    return None if schema.is_tha1 else schema




def _cacheable(resp: Response) -> Response:
    """Thumbnail URLs carry the model's camera box, so the browser may keep them a while."""
    resp.headers["Cache-Control"] = "private, max-age=600"
    return resp


def _int(req: Request, name: str, default: int, lo: int, hi: int) -> int:
    text = req.query.get(name)
    if text is None:
        return default
    try:
        v = int(text)
    except ValueError:
        raise HttpError(400, f"{name} must be an integer") from None
    return max(lo, min(hi, v))


def _pose(text: str | None, schema=None) -> list[float]:
    """The `pose` parameter, checked: THA1's six comma-separated numbers (core.pose.pose_problem),
    or with a pose schema its P numbers (PoseSchema.problem); the rest pose when absent."""
    from core.pose import REST_POSE, pose_problem

    rest, problem_of = (REST_POSE, pose_problem) if schema is None else (schema.rest, schema.problem)
    if text is None:
        return rest.tolist()
    try:
        vals: list[float] | str = [float(v) for v in text.split(",")]
    except ValueError:
        vals = text
    problem = problem_of(vals)
    if problem:
        raise HttpError(400, f"pose: {problem}")
    return vals
