"""The model page's renderer: one child process that owns the OpenGL context and does every render
and single-model validation of the page, one request at a time.

A GL context belongs to the thread that made it current, and a model file can crash the driver;
so rendering never happens in the server's threads: `RenderWorker.call` sends a request over a
pipe and waits for the answer under a lock. When the child dies (a crash, the OOM killer) or
exceeds its time limit, the request fails with WorkerCrashed and the next request starts a fresh
child. The child keeps the last model it assembled (load, override, face rig, poser, camera box,
GPU scene) so that a slider change only poses and renders.

Given a pose schema (`schema`: a built-in name or a schema file, not tha1), the live render and the
contact sheet pose through the schema's rig (renderer.schema_rig, as `thactl preview --schema`), and
`parameters` says how each parameter was found on the model.
"""
from __future__ import annotations

import io
import multiprocessing as mp
import threading
import time
from pathlib import Path
from typing import Any

from core.errors import first_line

LIVE_SIZE = 256
THUMB_SIZE = 128
SHEET_SIZE = 128
REQUEST_SECONDS = 120.0


class WorkerError(Exception):
    """The child reported a problem with the model or request (a one-line message)."""


class WorkerCrashed(Exception):
    """The child died or timed out while handling the request; it is restarted on the next one."""


class RenderWorker:
    def __init__(self, models_root: Path, overrides: Path | None, timeout: float = REQUEST_SECONDS,
                 schema: str | None = None):
        self.models_root = str(models_root)
        self.overrides = str(overrides) if overrides else None
        self.schema = schema
        self.timeout = timeout
        self._lock = threading.Lock()
        self._proc = None
        self._conn = None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_child_main, args=(child, self.models_root, self.overrides, self.schema),
                                 name="thactl-render", daemon=True)
        try:
            self._proc.start()
        except BaseException:
            self._proc = None
            parent.close()
            raise
        finally:
            child.close()
        self._conn = parent

    def _stop(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
        if self._proc is not None and self._proc.pid is not None:
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.is_alive() else None

    def call(self, op: str, **args: Any) -> dict:
        """Run `op` in the child; its result dict, WorkerError for a bad model or request,
        WorkerCrashed when the child died or timed out (it is replaced on the next call)."""
        with self._lock:
            if self._proc is None or not self._proc.is_alive():
                self._stop()
                self._start()
            try:
                self._conn.send((op, args))
                deadline = time.monotonic() + self.timeout
                while not self._conn.poll(max(0.0, min(0.2, deadline - time.monotonic()))):
                    if not self._proc.is_alive() or time.monotonic() >= deadline:
                        raise EOFError
                reply = self._conn.recv()
            except (EOFError, OSError, BrokenPipeError):
                self._stop()
                raise WorkerCrashed("the renderer crashed or timed out on this model "
                                    "(a fresh renderer takes the next request)") from None
        if "error" in reply:
            raise WorkerError(reply["error"])
        return reply

    def close(self) -> None:
        with self._lock:
            self._stop()


# ---------------------------------------------------------------- the child process

def _child_main(conn, models_root: str, overrides: str | None, schema: str | None = None) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)       # Ctrl-C is the server's business
    state = _ChildState(models_root, overrides, schema)
    while True:
        try:
            op, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            reply = state.handle(op, args)
        except Exception as e:  # noqa: BLE001 - a bad model is reported, the child goes on
            text = first_line(e)
            reply = {"error": text}
        conn.send(reply)


class _Assembled:
    """One model ready to render: model, override, face rig, poser, camera box, notes."""

    def __init__(self, path: str, models_root: str, overrides: str | None):
        from renderer.assembly import assemble_model

        assembled = assemble_model(path, overrides, models_root)
        self.model, self.rig = assembled.model, assembled.rig
        self.override = assembled.override or {}
        self.notes = list(self.rig.notes) + list(self.rig.problems())
        self.poser = assembled.poser
        self.frame = assembled.rest_frame(notes=self.notes)
        self.scenes: dict[int, Any] = {}
        self._schema_rig = None

    def schema_rig(self, schema):
        """The pose schema's rig on this model (renderer.schema_rig), resolved once."""
        if self._schema_rig is None:
            from renderer.schema_rig import resolve_schema_rig

            self._schema_rig = resolve_schema_rig(self.model, schema, self.override, self.rig)
        return self._schema_rig

    def mesh(self, pose, schema=None):
        """The posed mesh of a checked pose: THA1's six numbers through the face rig, or, with a
        schema, the schema's P numbers through its rig (a missing parameter stays at rest)."""
        from renderer.preview import check_pose

        if schema is None:
            return self.poser.pose(check_pose(pose))
        return self.schema_rig(schema).pose(self.poser, check_schema_pose(schema, pose))

    def scene(self, rc):
        if rc.size not in self.scenes:
            self.scenes[rc.size] = rc.prepare(self.model, "phong")
        return self.scenes[rc.size]

    def release(self) -> None:
        for s in self.scenes.values():
            s.release()
        self.scenes.clear()


def _fingerprint(path: str, overrides: str | None) -> tuple:
    """What decides whether an assembled model is still current: the model file and the
    override files (their sizes and modification times)."""
    out = []
    for p in (Path(path), Path(path + ".thactl.json"), Path(overrides) if overrides else None):
        try:
            st = p.stat() if p is not None else None
            out.append((st.st_size, st.st_mtime_ns) if st else None)
        except OSError:
            out.append(None)
    return (path, *out)


def check_schema_pose(schema, pose):
    """A validated (P,) float32 pose of `schema`, or RenderError naming the bad value
    (core.poseschema.PoseSchema.problem)."""
    import numpy as np

    from renderer.errors import RenderError

    problem = schema.problem(pose)
    if problem:
        raise RenderError(f"bad pose: {problem}")
    return np.asarray(pose, np.float32)


class _ChildState:
    def __init__(self, models_root: str, overrides: str | None, schema: str | None = None):
        from core.poseschema import load_schema

        self.models_root = models_root
        self.overrides = overrides
        self.schema = load_schema(schema) if schema else None
        self.current: tuple[tuple, _Assembled] | None = None
        self.contexts: dict[int, Any] = {}
        self.probe = None

    def rc(self, size: int):
        from renderer.offscreen import RenderContext

        if size not in self.contexts:
            self.contexts[size] = RenderContext(size=size, aa=4)
        return self.contexts[size]

    def assembled(self, path: str, keep: bool = True) -> _Assembled:
        key = _fingerprint(path, self.overrides)
        if self.current is not None and self.current[0] == key:
            return self.current[1]
        a = _Assembled(path, self.models_root, self.overrides)
        if keep:
            if self.current is not None:
                self.current[1].release()
            self.current = (key, a)
        return a

    def handle(self, op: str, args: dict) -> dict:
        if op == "ping":
            import os
            return {"pid": os.getpid()}
        if op == "render":
            return self.render(args["path"], args["pose"])
        if op == "sheet":
            return self.sheet(args["path"])
        if op == "thumb":
            return self.thumb(args["path"])
        if op == "info":
            return self.info(args["path"])
        if op == "validate":
            return self.validate(args["path"], args["rel"], args["sha256"])
        if op == "parameters":
            return self.parameters(args["path"])
        raise ValueError(f"unknown request {op!r}")

    def render(self, path: str, pose) -> dict:
        t = time.perf_counter()
        a = self.assembled(path)
        img = a.scene(self.rc(LIVE_SIZE)).render(a.mesh(pose, self.schema), a.frame)
        return {"png": _png(img), "frame": list(a.frame.as_tuple()),
                "ms": (time.perf_counter() - t) * 1000.0}

    def sheet(self, path: str) -> dict:
        """`thactl preview --sheet`'s cells (with a schema: `preview --schema --sheet`'s, one per
        parameter at its extreme, a missing one labelled so)."""
        from core.imagegrid import contact_sheet
        from renderer.preview import SHEET_POSES, schema_sheet_poses

        a = self.assembled(path)
        scene = a.scene(self.rc(SHEET_SIZE))
        cells = SHEET_POSES if self.schema is None else schema_sheet_poses(self.schema)
        labels = [label for label, _ in cells]
        if self.schema is not None:
            missing = {b.name for b in a.schema_rig(self.schema).bindings if not b.found}
            labels = [label + (" (missing)" if label.split(" ")[0] in missing else "") for label in labels]
        imgs = [scene.render(a.mesh(p, self.schema), a.frame) for _, p in cells]
        return {"png": _png(contact_sheet(imgs, labels, columns=4 if self.schema is None else 8))}

    def thumb(self, path: str) -> dict:
        from core.pose import REST_POSE

        reuse = self.current is not None and self.current[0] == _fingerprint(path, self.overrides)
        a = self.assembled(path, keep=False)
        try:
            img = a.scene(self.rc(THUMB_SIZE)).render(a.poser.pose(REST_POSE), a.frame)
        finally:
            if not reuse:
                a.release()
        return {"png": _png(img)}

    def info(self, path: str) -> dict:
        from renderer.model import MorphKind

        a = self.assembled(path)
        m, rig = a.model, a.rig
        morphs = [{"name": mo.name, "name_en": mo.name_en} for mo in m.morphs
                  if mo.kind != MorphKind.IMPULSE]
        chosen = {k: (m.morphs[getattr(rig, k)].name if getattr(rig, k) is not None else None)
                  for k in ("left_eye", "right_eye", "both_eyes", "mouth")}
        fr = a.frame
        return {"morphs": morphs, "chosen": chosen, "frame": list(fr.as_tuple()),
                "chin_y": fr.cy - fr.half / 2.0, "head_top_y": fr.cy + fr.half / 2.0,
                "override": a.override, "notes": a.notes, "warnings": list(m.warnings),
                "format": f"{m.format.value.upper()} {m.version:.1f}", "name": m.name,
                "vertices": int(m.vertex_count), "triangles": int(m.triangle_count)}

    def parameters(self, path: str) -> dict:
        """How each parameter of the schema was found on the model (renderer.schema_rig's
        bindings): {"schema", "parameters": [{name, kind, how, detail, morph, bones}]}."""
        if self.schema is None:
            raise ValueError("no pose schema: start `thactl serve` with --schema NAME")
        a = self.assembled(path)
        rig = a.schema_rig(self.schema)
        out = []
        for p, b in zip(self.schema.parameters, rig.bindings):
            out.append({"name": b.name, "kind": p.kind, "how": b.how, "detail": b.detail,
                        "morph": a.model.morphs[b.morph].name if b.morph is not None else None,
                        "bones": [a.model.bones[bone].name for bone, _, _ in b.turns]})
        return {"schema": self.schema.name, "parameters": out}

    def validate(self, path: str, rel: str, sha256: str) -> dict:
        """`thactl render`'s validation of one model, through its own worker entry point."""
        import logging

        from dataset.workers import validate_task, worker_init

        if self.probe is None:
            worker_init(LIVE_SIZE, 4, "phong", self.overrides, self.models_root, None,
                        logging.getLogger("thactl").level)
            self.probe = True
        return {"check": validate_task((path, rel, sha256))}


def _png(img) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
