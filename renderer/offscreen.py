"""Headless OpenGL rendering of posed MMD models into THA-style RGBA images.

    with RenderContext(size=256, aa=4) as rc:
        with rc.prepare(model, shading="phong") as scene:
            img = scene.render(posed_mesh, frame, ambient=0.5)   # (S, S, 4) uint8

* One EGL context per process (Mesa llvmpipe without a GPU, the real driver
  with one); `RenderContext` objects share it.
* `ModelScene` owns one model's GPU resources (index buffer, uv buffer,
  textures, programs), created once; per frame only positions and normals are
  uploaded (and uvs when a UV morph changed them).
* Camera: orthographic, looking at the face from the front (the character
  faces -z, the viewer sits at -z looking along +z). Image column grows with
  +x, image row grows with -y. `Frame(cx, cy, half)` is the box in model units.
* Output: sRGB, NOT premultiplied, background exactly (0, 0, 0, 0), RGB = 0
  wherever alpha = 0. Blending uses (SRC_ALPHA, ONE_MINUS_SRC_ALPHA) for RGB
  and (ONE, ONE_MINUS_SRC_ALPHA) for alpha into a cleared (0,0,0,0) target,
  which leaves premultiplied colour and the correct coverage alpha in the
  framebuffer; multisampling is resolved in that premultiplied space and the
  result is un-premultiplied once, on readback.
* Materials are drawn in file order; the double-sided flag disables back-face
  culling (MMD front faces are clockwise on screen); texels with alpha below
  `ALPHA_CUTOFF` are discarded so cut-outs (eyelashes, hair tips) do not hide
  what lies behind them through the depth buffer.
"""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import first_line
from renderer.errors import ContextError, RenderError, RendererError
from renderer.framing import Frame
from renderer.model import MATERIAL_MORPH_WIDTH, MaterialFlag, MMDModel, SphereMode
from renderer.model import MaterialMorphColumn as MC
from renderer.textures import TextureSet

log = logging.getLogger("thactl.renderer")

SHADER_DIR = Path(__file__).resolve().parent / "shaders"
SHADINGS = ("phong", "toon")
ALPHA_CUTOFF = 0.04
# toon mode: outline width in pixels (at 256 px) per unit of material edge size
EDGE_PIXELS_PER_SIZE = 0.6
# toon mode: MMD's default light (direction it travels), colour follows `ambient`
TOON_LIGHT_DIR = (-0.5, -1.0, 0.5)

_GL_CONTEXT = None
_GL_PID = None
_SYSTEM_PACKAGES = "libegl1, libegl-mesa0 and libgl1-mesa-dri (Debian/Ubuntu: apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri)"


def gl_context():
    """The process-wide moderngl context (created on first use).

    A context cannot cross fork(): Mesa hangs when a forked child of a process that
    already initialised EGL starts its own. Such a child gets a RenderError asking
    for the 'spawn' start method (or for creating contexts only in the workers).
    """
    global _GL_CONTEXT, _GL_PID
    if _GL_PID is not None and _GL_PID != os.getpid():
        raise RenderError("this process was forked from one that already used OpenGL; start render workers "
                          "with multiprocessing's 'spawn' method, or create RenderContext only inside the workers")
    if _GL_CONTEXT is None:
        try:
            import moderngl
        except ImportError as e:  # pragma: no cover - moderngl is a hard dependency
            raise ContextError(f"moderngl is not importable ({e}); install thactl's dependencies") from e
        try:
            _GL_CONTEXT = moderngl.create_standalone_context(backend="egl", require=330)
            _GL_PID = os.getpid()
        except Exception as e:
            raise ContextError(
                f"cannot create a headless OpenGL (EGL) context: {first_line(e)}; "
                f"install the system packages {_SYSTEM_PACKAGES}, or a GPU driver that provides EGL") from e
    return _GL_CONTEXT


def _shader(name: str) -> str:
    return (SHADER_DIR / name).read_text(encoding="utf-8")


def unpremultiply(img: np.ndarray) -> np.ndarray:
    """In place on an (H, W, 4) uint8 premultiplied image: straight colour, RGB = 0 where alpha = 0.

    Works on the pixels as little-endian uint32 words (alpha = top byte), so the
    usual case (transparent background, opaque character) costs two passes over
    the words and only the partly covered pixels are divided.
    """
    if not (img.flags.c_contiguous and img.dtype == np.uint8 and img.shape[-1] == 4):
        raise ValueError("unpremultiply needs a C-contiguous (..., 4) uint8 array")
    words = img.view(np.uint32).reshape(-1) if sys.byteorder == "little" else None
    if words is None:  # pragma: no cover - big-endian hosts
        return _unpremultiply_generic(img)
    stray = (words != 0) & (words < (1 << 24))          # alpha 0 but some colour: zero it
    if stray.any():
        words[stray] = 0
    part = np.flatnonzero((words >= (1 << 24)) & (words < (255 << 24)))
    if part.size:
        flat = img.reshape(-1, 4)
        a = flat[part, 3].astype(np.uint32)[:, None]
        rgb = flat[part, :3].astype(np.uint32)
        flat[part, :3] = np.minimum((rgb * 255 + a // 2) // a, 255).astype(np.uint8)
    return img


def _unpremultiply_generic(img: np.ndarray) -> np.ndarray:  # pragma: no cover
    flat = img.reshape(-1, 4)
    a = flat[:, 3].astype(np.uint32)
    rgb = flat[:, :3].astype(np.uint32)
    den = np.maximum(a, 1)[:, None]
    out = np.minimum((rgb * 255 + den // 2) // den, 255)
    out[a == 0] = 0
    flat[:, :3] = out.astype(np.uint8)
    return img


class RenderContext:
    """Framebuffers of one image size and AA setting on the shared GL context.

    aa: multisample count (0 or 1 = none; 4 = default). supersample: render at
    size*k and box-filter down (combine with aa=0 for pure supersampling).
    trilinear: blend the two nearest mipmap levels (LINEAR_MIPMAP_LINEAR). The
    default (False) filters bilinearly in the nearest level (LINEAR_MIPMAP_NEAREST):
    half the texel fetches (README, thactl preview, Output, has the speed and the
    difference to trilinear).
    """

    def __init__(self, size: int = 256, aa: int = 4, supersample: int = 1, trilinear: bool = False):
        import moderngl

        if size < 8 or size > 8192:
            raise RenderError(f"image size {size} out of range 8..8192")
        self.ctx = gl_context()
        self.size = int(size)
        self.supersample = max(1, int(supersample))
        self.trilinear = bool(trilinear)
        max_samples = int(self.ctx.info.get("GL_MAX_SAMPLES", 4) or 4)
        self.aa = int(aa) if aa and aa > 1 else 0
        if self.aa > max_samples:
            log.warning("requested %d AA samples, driver allows %d; using %d", self.aa, max_samples, max_samples)
            self.aa = max_samples
        n = self.size * self.supersample
        self.raster_size = n
        self._ms_fbo = None
        if self.aa:
            self._ms_color = self.ctx.renderbuffer((n, n), 4, samples=self.aa)
            self._ms_depth = self.ctx.depth_renderbuffer((n, n), samples=self.aa)
            self._ms_fbo = self.ctx.framebuffer(self._ms_color, self._ms_depth)
        self._color = self.ctx.renderbuffer((n, n), 4)
        self._depth = self.ctx.depth_renderbuffer((n, n))
        self._fbo = self.ctx.framebuffer(self._color, self._depth)
        self._buf = bytearray(n * n * 4)
        self._moderngl = moderngl
        self._programs: dict[str, object] = {}

    # the framebuffer draws go to
    @property
    def draw_fbo(self):
        return self._ms_fbo if self._ms_fbo is not None else self._fbo

    def program(self, kind: str):
        """Compiled program by name ('phong', 'toon', 'edge', 'raster'); cached per context."""
        if kind not in self._programs:
            vert = "edge.vert" if kind == "edge" else "common.vert"
            try:
                self._programs[kind] = self.ctx.program(vertex_shader=_shader(vert),
                                                        fragment_shader=_shader(f"{kind}.frag"))
            except Exception as e:
                raise RenderError(f"shader {kind}: {e}") from e
        return self._programs[kind]

    def begin(self) -> None:
        """Bind and clear the draw framebuffer; set the fixed state every model uses."""
        mgl = self._moderngl
        fbo = self.draw_fbo
        fbo.use()
        fbo.viewport = (0, 0, self.raster_size, self.raster_size)
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self.ctx.enable(mgl.DEPTH_TEST | mgl.BLEND)
        self.ctx.depth_func = "<="
        self.ctx.blend_func = (mgl.SRC_ALPHA, mgl.ONE_MINUS_SRC_ALPHA, mgl.ONE, mgl.ONE_MINUS_SRC_ALPHA)
        self.ctx.blend_equation = mgl.FUNC_ADD
        self.ctx.front_face = "cw"

    def finish(self) -> np.ndarray:
        """Resolve AA, read back, flip rows, downsample, un-premultiply: (S, S, 4) uint8."""
        if self._ms_fbo is not None:
            self.ctx.copy_framebuffer(self._fbo, self._ms_fbo)
        n = self.raster_size
        self._fbo.read_into(self._buf, components=4, alignment=1)
        img = np.frombuffer(self._buf, np.uint8).reshape(n, n, 4)[::-1]
        if self.supersample > 1:
            k = self.supersample
            s = self.size
            img = (img.reshape(s, k, s, k, 4).astype(np.uint32).sum(axis=(1, 3)) + (k * k) // 2) // (k * k)
            img = img.astype(np.uint8)
        else:
            img = img.copy()
        return unpremultiply(img)

    def prepare(self, model: MMDModel, shading: str = "phong") -> "ModelScene":
        return ModelScene(self, model, shading)

    def release(self) -> None:
        for obj in (self._ms_fbo, getattr(self, "_ms_color", None), getattr(self, "_ms_depth", None),
                    self._fbo, self._color, self._depth):
            if obj is not None:
                obj.release()
        for p in self._programs.values():
            p.release()
        self._programs.clear()
        self._ms_fbo = None

    def __enter__(self) -> "RenderContext":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@dataclass
class _MaterialDraw:
    material: int          # index into model.materials (rows of PosedMesh.material_morph)
    first: int
    count: int
    double_sided: bool
    edge: bool
    diffuse: tuple
    ambient: tuple
    specular: tuple
    power: float
    edge_color: tuple
    edge_size: float
    texture: object | None
    sphere: object | None
    sphere_mode: int
    toon: object | None
    opaque: bool = False   # every fragment has alpha 1: blending would change nothing, so it is skipped


class ModelScene:
    """One model's GPU resources on a RenderContext; render many poses cheaply."""

    def __init__(self, rc: RenderContext, model: MMDModel, shading: str = "phong"):
        # robustness: a model that fails half-way (bad texture, GL error) releases what it
        # already created, and a GL failure becomes a RenderError naming the model
        self._own: list = []
        try:
            self._setup(rc, model, shading)
        except BaseException as e:
            self.release()
            if isinstance(e, Exception) and not isinstance(e, RenderError):
                detail = first_line(e, 200)
                raise RenderError(f"{getattr(model, 'path', '?')}: cannot prepare the model for "
                                  f"rendering ({detail})") from e
            raise

    def _setup(self, rc: RenderContext, model: MMDModel, shading: str) -> None:
        if shading not in SHADINGS:
            raise RenderError(f"unknown shading {shading!r} (choose from {', '.join(SHADINGS)})")
        import moderngl

        self.rc = rc
        self.ctx = rc.ctx
        self.model = model
        self.shading = shading
        self._mgl = moderngl
        try:                    # releasing what was created is left to __init__
            self._build()
        except RendererError:
            raise
        except Exception as e:  # GL out of memory, driver errors, absurd data
            raise RenderError(f"{model.path}: cannot prepare the model for rendering: "
                              f"{type(e).__name__}: {e}") from e

    def _build(self) -> None:
        """Create every GPU resource of the model (buffers, VAOs, textures, uniforms)."""
        model, shading, rc = self.model, self.shading, self.rc
        ctx = self.ctx
        V = model.vertex_count
        if V == 0 or model.triangle_count == 0:
            raise RenderError(f"{model.path}: model has no triangles to draw")
        pos = np.ascontiguousarray(model.positions, np.float32)
        self._vbo_pos = self._keep(ctx.buffer(pos.tobytes(), dynamic=True))
        self._vbo_nrm = self._keep(ctx.buffer(np.ascontiguousarray(model.normals, np.float32).tobytes(), dynamic=True))
        self._uvs = np.ascontiguousarray(model.uvs, np.float32).copy()
        self._vbo_uv = self._keep(ctx.buffer(self._uvs.tobytes(), dynamic=True))
        edge_scale = np.ascontiguousarray(getattr(model, "edge_scale", np.ones(V)), np.float32)
        self._vbo_edge = self._keep(ctx.buffer(edge_scale.tobytes()))
        idx = np.ascontiguousarray(model.indices, np.uint32).ravel()
        if idx.size and int(idx.max()) >= V:
            raise RenderError(f"{model.path}: face index {int(idx.max())} >= vertex count {V}")
        self._ibo = self._keep(ctx.buffer(idx.tobytes()))

        # depth range: generous box around the whole model so rotations never clip
        lo, hi = pos.min(axis=0), pos.max(axis=0)
        extent = float(max(hi - lo)) or 1.0
        self._depth = (float((lo[2] + hi[2]) / 2), 1.0 / (2.0 * extent))

        self._prog = rc.program(shading)
        self._vao = self._keep(ctx.vertex_array(self._prog, self._layout(self._prog), index_buffer=self._ibo,
                                                index_element_size=4))
        self._edge_vao = None
        if shading == "toon":
            ep = rc.program("edge")
            self._edge_vao = self._keep(ctx.vertex_array(
                ep, [(self._vbo_pos, "3f", "in_position"), (self._vbo_nrm, "3f", "in_normal"),
                     (self._vbo_edge, "1f", "in_edge")], index_buffer=self._ibo, index_element_size=4))
        self._raster_vao = None

        # textures
        model_dir = Path(model.path).parent if model.path else Path(".")
        self.textures = TextureSet(model_dir, str(model.path))
        self._gl_textures: dict[int, object] = {}
        self._white = self._texture(np.full((1, 1, 4), 255, np.uint8), mipmap=False)
        self._draws: list[_MaterialDraw] = []
        total = idx.size
        for mi, mat in enumerate(model.materials):
            first, count = int(mat.index_start), int(mat.index_count)
            if count <= 0:
                continue
            if first < 0 or first + count > total:
                raise RenderError(f"{model.path}: material {mat.name!r} indices {first}..{first + count} "
                                  f"outside the index buffer ({total})")
            tex = self._load_texture(mat.texture)
            tex_arr = self.textures.get(mat.texture) if tex is not None else None
            opaque = float(mat.diffuse[3]) >= 1.0 and (tex_arr is None or int(tex_arr[..., 3].min()) == 255)
            sphere = toon = None
            smode = int(mat.sphere_mode) if mat.sphere else 0
            if shading == "toon":
                if smode in (SphereMode.MULTIPLY, SphereMode.ADD):
                    sphere = self._load_texture(mat.sphere)
                    if sphere is None:
                        smode = 0
                else:
                    smode = 0
                toon = self._texture(self.textures.toon(mat.toon, mat.toon_shared), mipmap=False, clamp=True)
            flags = MaterialFlag(int(mat.flags))
            self._draws.append(_MaterialDraw(
                material=mi, first=first, count=count, double_sided=bool(flags & MaterialFlag.DOUBLE_SIDED),
                edge=bool(flags & MaterialFlag.EDGE) and float(mat.edge_size) > 0,
                diffuse=tuple(float(x) for x in mat.diffuse[:4]), ambient=tuple(float(x) for x in mat.ambient[:3]),
                specular=tuple(float(x) for x in mat.specular[:3]), power=float(mat.specular_power),
                edge_color=tuple(float(x) for x in mat.edge_color[:4]), edge_size=float(mat.edge_size),
                texture=tex, sphere=sphere, sphere_mode=smode, toon=toon, opaque=opaque))
        self.textures.warn_once()
        self._set_static_uniforms()

    # ------------------------------------------------------------------ setup helpers
    def _keep(self, obj):
        self._own.append(obj)
        return obj

    def _layout(self, prog):
        names = set(prog)  # moderngl programs iterate over member names
        fmt = []
        for buf, f, name in ((self._vbo_pos, "3f", "in_position"), (self._vbo_nrm, "3f", "in_normal"),
                             (self._vbo_uv, "2f", "in_uv")):
            if name in names:
                fmt.append((buf, f, name))
        return fmt

    def _texture(self, arr: np.ndarray, mipmap: bool = True, clamp: bool = False):
        mgl = self._mgl
        h, w = arr.shape[:2]
        t = self.ctx.texture((w, h), 4, np.ascontiguousarray(arr).tobytes(), alignment=1)
        if mipmap and (w > 1 or h > 1):
            t.build_mipmaps()
            t.filter = (mgl.LINEAR_MIPMAP_LINEAR if self.rc.trilinear else mgl.LINEAR_MIPMAP_NEAREST, mgl.LINEAR)
        else:
            t.filter = (mgl.LINEAR, mgl.LINEAR)
        t.repeat_x = t.repeat_y = not clamp
        return self._keep(t)

    def _load_texture(self, name: str | None):
        if not name:
            return None
        arr = self.textures.get(name)
        if arr is None:
            return None
        key = id(arr)
        if key not in self._gl_textures:
            self._gl_textures[key] = self._texture(arr)
        return self._gl_textures[key]

    def _set_static_uniforms(self) -> None:
        p = self._prog
        self._set(p, "u_alpha_cutoff", ALPHA_CUTOFF)
        self._set(p, "u_depth", self._depth)
        for name, unit in (("u_texture", 0), ("u_sphere", 1), ("u_toon", 2)):
            self._set(p, name, unit)
        if self.shading == "toon":
            d = np.asarray(TOON_LIGHT_DIR, np.float64)
            self._set(p, "u_light_dir", tuple(float(x) for x in d / np.linalg.norm(d)))
            ep = self.rc.program("edge")
            self._set(ep, "u_depth", self._depth)

    @staticmethod
    def _set(prog, name: str, value) -> None:
        if name in prog:
            prog[name].value = value

    # ------------------------------------------------------------------ per frame
    def upload(self, mesh) -> None:
        """Send a posed mesh's positions/normals (and uvs when they changed) to the GPU."""
        V = self.model.vertex_count
        pos = np.ascontiguousarray(mesh.positions, np.float32)
        nrm = np.ascontiguousarray(mesh.normals, np.float32)
        if pos.shape != (V, 3) or nrm.shape != (V, 3):
            raise RenderError(f"{self.model.path}: posed mesh has {pos.shape}/{nrm.shape} arrays, model has {V} vertices")
        self._vbo_pos.write(pos)
        self._vbo_nrm.write(nrm)
        uvs = getattr(mesh, "uvs", None)
        if uvs is not None and uvs is not self.model.uvs and not np.array_equal(uvs, self._uvs):
            self._uvs = np.ascontiguousarray(uvs, np.float32).copy()
            self._vbo_uv.write(self._uvs)

    def _frame_uniform(self, frame: Frame) -> tuple:
        half = float(frame.half)
        if not half > 0:
            raise RenderError(f"camera box half-height must be > 0, got {half}")
        return (float(frame.cx), float(frame.cy), 1.0 / half, 0.0)

    def render(self, mesh, frame: Frame, ambient: float = 0.5) -> np.ndarray:
        """(S, S, 4) uint8 sRGB straight-alpha image of `mesh` seen through `frame`."""
        self.upload(mesh)
        rc = self.rc
        rc.begin()
        self.draw(frame, ambient, getattr(mesh, "material_morph", None))
        return rc.finish()

    def draw(self, frame: Frame, ambient: float = 0.5, material_morph: np.ndarray | None = None) -> None:
        """Issue the draw calls into the context's current framebuffer (no readback)."""
        mgl = self._mgl
        ctx = self.ctx
        p = self._prog
        fu = self._frame_uniform(frame)
        p["u_frame"].value = fu
        p["u_depth"].value = self._depth          # programs are shared between scenes
        toon = self.shading == "toon"
        if toon:
            lc = 1.2 * float(ambient)
            p["u_light_color"].value = (lc, lc, lc)
        else:
            p["u_ambient"].value = float(ambient)
        has_tex = p["u_has_texture"]
        diffuse = p["u_diffuse"]
        tint = p["u_tex_tint"]
        mm = material_morph
        if mm is not None:
            mm = np.asarray(mm, np.float32)
            if mm.shape != (len(self.model.materials), MATERIAL_MORPH_WIDTH):
                raise RenderError(f"{self.model.path}: material morph array has shape {mm.shape}, "
                                  f"expected ({len(self.model.materials)}, {MATERIAL_MORPH_WIDTH})")
        culling = None
        blending = True                           # begin() enabled it
        for d in self._draws:
            i = d.material
            dif = d.diffuse
            ttint = (1.0, 1.0, 1.0, 1.0)
            opaque = d.opaque
            if mm is not None:
                dif = tuple(float(x) for x in mm[i, MC.DIFFUSE])
                ttint = tuple(float(x) for x in mm[i, MC.TEXTURE_TINT])
                opaque = opaque and mm[i, MC.DIFFUSE_ALPHA] >= 1.0 and mm[i, MC.TEXTURE_TINT_ALPHA] >= 1.0
            if opaque == blending:                # opaque fragments: blending is an exact no-op
                blending = not opaque
                if blending:
                    ctx.enable(mgl.BLEND)
                else:
                    ctx.disable(mgl.BLEND)
            if d.double_sided != culling:
                culling = d.double_sided
                if culling:
                    ctx.disable(mgl.CULL_FACE)
                else:
                    ctx.enable(mgl.CULL_FACE)
                    ctx.cull_face = "back"
            diffuse.value = dif
            tint.value = ttint
            if d.texture is not None:
                d.texture.use(0)
                has_tex.value = True
            else:
                has_tex.value = False
            if toon:
                self._toon_material(p, d, i, mm)
            self._vao.render(mgl.TRIANGLES, vertices=d.count, first=d.first)
        if not blending:
            ctx.enable(mgl.BLEND)
        if toon:
            self._draw_edges(frame, fu, mm)
        ctx.disable(mgl.CULL_FACE)

    def _toon_material(self, p, d: _MaterialDraw, i: int, mm) -> None:
        amb, spec, power = d.ambient, d.specular, d.power
        stint = toint = (1.0, 1.0, 1.0, 1.0)
        if mm is not None:
            spec = tuple(float(x) for x in mm[i, MC.SPECULAR])
            power = float(mm[i, MC.SPECULAR_POWER])
            amb = tuple(float(x) for x in mm[i, MC.AMBIENT])
            stint = tuple(float(x) for x in mm[i, MC.SPHERE_TINT])
            toint = tuple(float(x) for x in mm[i, MC.TOON_TINT])
        p["u_mat_ambient"].value = amb
        p["u_specular"].value = spec
        p["u_specular_power"].value = power
        p["u_sphere_mode"].value = d.sphere_mode
        self._set(p, "u_sphere_tint", stint)
        self._set(p, "u_toon_tint", toint)
        if d.sphere is not None:
            d.sphere.use(1)
        (d.toon or self._white).use(2)

    def _draw_edges(self, frame: Frame, fu: tuple, mm) -> None:
        mgl = self._mgl
        ep = self.rc.program("edge")
        ep["u_frame"].value = fu
        ep["u_depth"].value = self._depth
        self.ctx.enable(mgl.CULL_FACE)
        self.ctx.cull_face = "front"
        px_ndc = 2.0 / self.rc.raster_size * self.rc.supersample * EDGE_PIXELS_PER_SIZE * (self.rc.size / 256.0)
        for d in self._draws:
            i = d.material
            size, color = d.edge_size, d.edge_color
            if mm is not None:
                color = tuple(float(x) for x in mm[i, MC.EDGE_COLOR])
                size = float(mm[i, MC.EDGE_SIZE])
            if not d.edge or size <= 0 or color[3] <= 0:
                continue
            ep["u_edge_ndc"].value = size * px_ndc
            ep["u_edge_color"].value = color
            self._edge_vao.render(mgl.TRIANGLES, vertices=d.count, first=d.first)
        self.ctx.cull_face = "back"

    def raster_baseline(self, frame: Frame, read: bool = False) -> np.ndarray | None:
        """Benchmark aid: the same triangles with a trivial shader, one draw call, no readback
        unless `read`. Measures the bare rasterisation cost of this model at this size/AA."""
        mgl = self._mgl
        if self._raster_vao is None:
            rp = self.rc.program("raster")
            self._raster_vao = self._keep(self.ctx.vertex_array(rp, self._layout(rp), index_buffer=self._ibo,
                                                                index_element_size=4))
        rp = self.rc.program("raster")
        rp["u_frame"].value = self._frame_uniform(frame)
        self._set(rp, "u_depth", self._depth)
        self.rc.begin()
        self.ctx.disable(mgl.BLEND)
        self._raster_vao.render(mgl.TRIANGLES)
        if read:
            return self.rc.finish()
        self.ctx.finish()
        return None

    def release(self) -> None:
        for obj in self._own:
            try:
                obj.release()
            except Exception:  # pragma: no cover - releasing twice is harmless
                pass
        self._own.clear()

    def __enter__(self) -> "ModelScene":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
