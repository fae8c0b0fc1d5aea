"""Running trained networks on a user's drawing: image checks, poser assembly, fast inference.

* `load_input_image` reads a PNG and checks what THA needs (size, alpha channel, clean
  transparent pixels, head roughly in the middle box); `--fit` pads to a square and resizes.
* `PoserRunner` assembles morpher + rotator (+ combiner) from weight files, runs batches
  under `torch.inference_mode`, in fp16 autocast on CUDA, and skips the morpher when the
  expression (left_eye, right_eye, mouth) has been seen before for the current image.
* `export_onnx` writes the poser (image, pose6) -> image as ONNX and, when onnxruntime is
  importable, checks that it reproduces torch within a tolerance.
"""
from __future__ import annotations

import logging
import time
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dataset.imageconv import tensor_to_uint8, uint8_to_tensor

from .errors import TrainError

log = logging.getLogger("thactl.inference")

WEIGHT_FILES = ("morpher", "rotator", "combiner")


class ImageInputError(TrainError):
    """The input drawing cannot be used as it is (message names the file and the problem)."""


class WeightsInputError(TrainError):
    """Weights folder/files missing or inconsistent."""


# ------------------------------------------------------------------------------ input images


def fit_to_square(img: np.ndarray, size: int) -> np.ndarray:
    """Pad (H, W, 4) uint8 with transparent pixels to a centred square, then resize to size x size.

    Pillow resizes RGBA with premultiplied alpha, so no dark fringes appear at the edges.
    """
    from PIL import Image

    h, w = img.shape[:2]
    side = max(h, w)
    canvas = np.zeros((side, side, 4), np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    canvas[top:top + h, left:left + w] = img
    if side != size:
        canvas = np.asarray(Image.fromarray(canvas, "RGBA").resize((size, size), Image.LANCZOS))
    return np.ascontiguousarray(canvas)


def clean_transparent(img: np.ndarray) -> tuple[np.ndarray, int]:
    """Zero the RGB of pixels whose alpha is 0; returns (image, number of pixels changed)."""
    bad = (img[..., 3] == 0) & np.any(img[..., :3] != 0, axis=-1)
    n = int(bad.sum())
    if n:
        img = img.copy()
        img[bad, :3] = 0
    return img, n


def placement_warnings(img: np.ndarray) -> list[str]:
    """Heuristic check that the head sits in the middle box (rows/cols S/4..3S/4, THA's layout).

    Warns when less than a third of the alpha mass lies in the middle box, or when the
    alpha-weighted centre is more than S/8 off the vertical centre line.
    """
    s = img.shape[0]
    a = img[..., 3].astype(np.float64)
    total = a.sum()
    if total == 0:
        return []
    q = s // 4
    inside = a[q:s - q, q:s - q].sum() / total
    cols = np.arange(img.shape[1], dtype=np.float64) + 0.5
    cx = float((a.sum(axis=0) * cols).sum() / total)
    out = []
    if inside < 1 / 3:
        out.append(f"only {inside:.0%} of the character lies in the middle {s // 2}x{s // 2} box; THA expects "
                   f"the head (chin to top of skull) in rows {q}-{s - q - 1}, centred: results may be poor")
    if abs(cx - s / 2) > s / 8:
        out.append(f"the character's centre is at column {cx:.0f}, far from the middle ({s // 2}); "
                   "centre the head horizontally")
    return out


def check_image(img: np.ndarray, size: int, name: str = "image", fit: bool = False,
                has_alpha: bool = True) -> tuple[np.ndarray, list[str]]:
    """Validate/fix an (H, W, 4) uint8 image for networks of `size`; returns (image, warnings)."""
    if not has_alpha:
        raise ImageInputError(f"{name}: no alpha channel; THA needs an RGBA image whose background is "
                              "transparent (alpha 0)")
    if img.ndim != 3 or img.shape[2] != 4:
        raise ImageInputError(f"{name}: expected an RGBA image, got array shape {img.shape}")
    h, w = img.shape[:2]
    warnings: list[str] = []
    if (h, w) != (size, size) and not fit:
        raise ImageInputError(f"{name}: image is {w}x{h}, the networks take {size}x{size}; "
                              "pass --fit to pad it to a square and resize it")
    if not np.any(img[..., 3]):
        raise ImageInputError(f"{name}: the image is fully transparent (alpha 0 everywhere)")
    img, n = clean_transparent(img)
    if n:
        warnings.append(f"{n} fully transparent pixels had non-zero RGB; set them to 0 (THA needs RGB 0 "
                        "under alpha 0: the commonest cause of bad results)")
    if (h, w) != (size, size):
        img = fit_to_square(img, size)
        img = clean_transparent(img)[0]  # resampling can leave colour under alpha 0 at the edges
        warnings.append(f"fitted {w}x{h} to {size}x{size} (padded to a square, centred, resized)")
        if not np.any(img[..., 3]):
            raise ImageInputError(f"{name}: nothing left visible after resizing to {size}x{size}")
    warnings += placement_warnings(img)
    return img, warnings


def load_input_image(path: str | Path, size: int, fit: bool = False) -> tuple[np.ndarray, list[str]]:
    """Read a PNG (or any Pillow format) as checked (size, size, 4) uint8 sRGB + warnings."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            has_alpha = mode in ("RGBA", "LA", "RGBa", "La", "PA") or (
                mode == "P" and "transparency" in im.info) or (
                mode in ("RGB", "L") and "transparency" in im.info)
            arr = np.asarray(im.convert("RGBA")) if has_alpha else None
    except FileNotFoundError:
        raise ImageInputError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ImageInputError(f"{path}: not a readable image ({e})") from None
    if not has_alpha:
        raise ImageInputError(f"{path}: no alpha channel (mode {mode}); THA needs an RGBA PNG whose "
                              "background is transparent")
    return check_image(arr, size, name=str(path), fit=fit, has_alpha=True)


def save_rgba_png(img: np.ndarray, path: str | Path) -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(img), "RGBA").save(path)
    return path


# ----------------------------------------------------------------------------- image tensors


# ---------------------------------------------------------------------------------- weights


def resolve_weights(weights: str | Path | None = None, morpher: str | Path | None = None,
                    rotator: str | Path | None = None, combiner: str | Path | None = None,
                    need_combiner: bool = False) -> dict[str, Path]:
    """Paths of the weight files: --weights DIR (morpher/rotator[/combiner].safetensors) and/or
    per-network run folders or files (which win over DIR). Missing morpher/rotator -> error."""
    from models.io import WeightsError, resolve_weights_path

    given = {"morpher": morpher, "rotator": rotator, "combiner": combiner}
    out: dict[str, Path] = {}
    if weights is not None:
        d = Path(weights)
        if not d.is_dir():
            raise WeightsInputError(f"{d}: weights folder not found")
        for k in WEIGHT_FILES:
            if (d / f"{k}.safetensors").is_file():
                out[k] = d / f"{k}.safetensors"
    for k, p in given.items():
        if p is not None:
            try:
                out[k] = resolve_weights_path(p, k)
            except WeightsError as e:
                raise WeightsInputError(str(e)) from None
    for k in ("morpher", "rotator") + (("combiner",) if need_combiner else ()):
        if k not in out:
            where = f"{weights}: no {k}.safetensors" if weights is not None else f"no {k} weights given"
            why = "--path full needs a combiner: " if k == "combiner" else ""
            raise WeightsInputError(f"{why}{where} (give --weights DIR or --{k} RUN)")
    return out


def load_networks(paths: dict[str, Path], device: str | torch.device = "cpu") -> dict[str, nn.Module]:
    """Load each network named in `paths`, check their kinds and image sizes agree, eval mode."""
    from models.io import WeightsError, load_weights

    nets: dict[str, nn.Module] = {}
    for k, p in paths.items():
        try:
            net = load_weights(p, k)
        except WeightsError as e:
            raise WeightsInputError(str(e)) from None
        nets[k] = net.to(device).eval()
    sizes = {k: int(n.config["image_size"]) for k, n in nets.items()}
    if len(set(sizes.values())) > 1:
        raise WeightsInputError("networks disagree on image size: "
                                + ", ".join(f"{k} {s}" for k, s in sizes.items()))
    return nets


def pick_device(name: str | None = None) -> torch.device:
    """'auto'/None -> cuda when available, else cpu; otherwise the named device (checked)."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainError(f"--device {name}: CUDA is not available on this machine")
    return dev


# ------------------------------------------------------------------------------------ runner


class PoserRunner:
    """Trained networks + one input image -> posed images, fast.

    path: "full" (combiner output; needs a combiner), "pumarola" or "zhou"; default full when a
    combiner is loaded, else pumarola. half: fp16 autocast (default: on for CUDA, off on CPU).
    """

    def __init__(self, morpher: nn.Module, rotator: nn.Module, combiner: nn.Module | None = None,
                 path: str | None = None, device: str | torch.device | None = None,
                 half: bool | None = None, batch_size: int = 8, cache_size: int = 64):
        self.device = pick_device(device) if not isinstance(device, torch.device) else device
        self.morpher = morpher.to(self.device).eval()
        self.rotator = rotator.to(self.device).eval()
        self.combiner = combiner.to(self.device).eval() if combiner is not None else None
        path = path or ("full" if combiner is not None else "pumarola")
        if path not in ("full", "pumarola", "zhou"):
            raise TrainError(f"path must be full, pumarola or zhou, got {path!r}")
        if path == "full" and combiner is None:
            raise WeightsInputError("path full needs a combiner (combiner.safetensors in --weights or --combiner)")
        self.path = path
        self.half = (self.device.type == "cuda") if half is None else bool(half)
        if self.half and self.device.type != "cuda":
            raise TrainError("half precision is only used on CUDA")
        self.batch_size = max(int(batch_size), 1)
        self.image_size = int(morpher.config["image_size"])
        self.cache_size = cache_size
        self._image: torch.Tensor | None = None
        self._morphed: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self.frames = 0
        self.morpher_runs = 0
        self.net_seconds = 0.0

    @classmethod
    def from_weights(cls, weights=None, morpher=None, rotator=None, combiner=None, path=None,
                     device=None, **kw) -> "PoserRunner":
        dev = pick_device(device)
        paths = resolve_weights(weights, morpher, rotator, combiner, need_combiner=(path == "full"))
        if path in ("pumarola", "zhou"):
            paths.pop("combiner", None)
        nets = load_networks(paths, dev)
        return cls(nets["morpher"], nets["rotator"], nets.get("combiner"), path=path, device=dev, **kw)

    # -- state
    def set_image(self, img: np.ndarray) -> None:
        """The (S, S, 4) uint8 input image (already checked); clears the morpher cache."""
        if img.shape != (self.image_size, self.image_size, 4):
            raise ImageInputError(f"image is {img.shape}, the networks take "
                                  f"({self.image_size}, {self.image_size}, 4)")
        self._image = uint8_to_tensor(img).unsqueeze(0).to(self.device)
        self._morphed.clear()

    def _autocast(self):
        if self.half:
            return torch.autocast("cuda", dtype=torch.float16)
        return torch.autocast(self.device.type, enabled=False)

    def _morph(self, expr: torch.Tensor) -> torch.Tensor:
        """(B, 3) expressions -> (B, 4, S, S) morphed images, computing only unseen expressions."""
        rounded = np.round(expr.detach().float().cpu().numpy().astype(np.float64), 6)
        keys = [r.tobytes() for r in rounded]
        todo = [i for i, k in enumerate(keys) if k not in self._morphed]
        uniq: dict[bytes, int] = {}
        for i in todo:
            uniq.setdefault(keys[i], i)
        if uniq:
            idx = list(uniq.values())
            e = expr[idx]
            out = self.morpher(self._image.expand(len(idx), -1, -1, -1), e)[0]
            self.morpher_runs += len(idx)
            for k, o in zip(uniq.keys(), out):
                self._morphed[k] = o
        for k in keys:
            self._morphed.move_to_end(k)
        morphed = torch.stack([self._morphed[k] for k in keys])
        while len(self._morphed) > self.cache_size:
            self._morphed.popitem(last=False)
        return morphed

    @torch.inference_mode()
    def run_tensor(self, poses: torch.Tensor) -> torch.Tensor:
        """(B, 6) poses -> (B, 4, S, S) float32 THA tensors for the current image."""
        if self._image is None:
            raise TrainError("no input image: call set_image first")
        poses = poses.to(self.device, torch.float32)
        with self._autocast():
            morphed = self._morph(poses[:, 3:6])
            rot = poses[:, 0:3]
            pu, zh = self.rotator(morphed, rot)[:2]
            if self.path == "pumarola":
                out = pu
            elif self.path == "zhou":
                out = zh
            else:
                out = self.combiner(pu, zh, rot)[0]
        return out.float()

    def run(self, poses: np.ndarray, progress=None) -> np.ndarray:
        """(N, 6) poses -> (N, S, S, 4) uint8 sRGB images, batch by batch; times the networks."""
        poses = np.asarray(poses, np.float32).reshape(-1, 6)
        frames = []
        for start in range(0, len(poses), self.batch_size):
            p = torch.from_numpy(poses[start:start + self.batch_size])
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            t0 = time.perf_counter()
            out = self.run_tensor(p)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.net_seconds += time.perf_counter() - t0
            self.frames += len(p)
            frames.append(tensor_to_uint8(out))
            if progress is not None:
                progress(len(p))
        return np.concatenate(frames) if frames else np.zeros((0, self.image_size, self.image_size, 4), np.uint8)

    @property
    def fps(self) -> float:
        return self.frames / self.net_seconds if self.net_seconds > 0 else float("nan")


# ------------------------------------------------------------------------------- animations


def composite(frames: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """(N, S, S, 4) uint8 over an opaque colour -> (N, S, S, 3) uint8 (in sRGB, as viewers do)."""
    a = frames[..., 3:4].astype(np.float32) / 255.0
    bg = np.asarray(background, np.float32).reshape(1, 1, 1, 3)
    rgb = frames[..., :3].astype(np.float32) * a + bg * (1.0 - a)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def parse_color(text: str) -> tuple[int, int, int] | None:
    """'white', 'black', '#rrggbb', 'r,g,b' or 'transparent' (-> None)."""
    names = {"white": (255, 255, 255), "black": (0, 0, 0), "gray": (128, 128, 128), "grey": (128, 128, 128),
             "green": (0, 255, 0)}
    t = text.strip().lower()
    if t in ("transparent", "none"):
        return None
    if t in names:
        return names[t]
    try:
        if t.startswith("#") and len(t) == 7:
            return tuple(int(t[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
        parts = [int(x) for x in t.split(",")]
        if len(parts) == 3 and all(0 <= x <= 255 for x in parts):
            return tuple(parts)  # type: ignore[return-value]
    except ValueError:
        pass
    raise TrainError(f"bad colour {text!r}: use white, black, #rrggbb, r,g,b or transparent")


def _gif_transparent(frames: np.ndarray) -> list:
    """RGBA frames -> palette images with index 255 transparent (alpha < 128 -> transparent)."""
    from PIL import Image

    out = []
    for f in frames:
        rgb = Image.fromarray(np.ascontiguousarray(f[..., :3]), "RGB")
        pal = rgb.quantize(colors=255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        idx = np.asarray(pal).copy()
        idx[f[..., 3] < 128] = 255
        p = Image.fromarray(idx, "P")
        palette = pal.getpalette()[: 255 * 3]
        p.putpalette(palette + [0, 0, 0] * (256 - len(palette) // 3))
        p.info["transparency"] = 255
        out.append(p)
    return out


def write_animation(frames: np.ndarray, path: str | Path, fps: float = 20.0,
                    background: tuple[int, int, int] | None = (255, 255, 255)) -> Path:
    """Write (N, S, S, 4) uint8 frames as .gif (looping) or .mp4 (needs imageio-ffmpeg).

    GIF: composited over `background`; background None keeps 1-bit transparency.
    MP4: always composited (white when background is None); H.264 needs even sizes (ours are).
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in (".gif", ".mp4"):
        raise TrainError(f"{path}: output must end in .gif or .mp4")
    if len(frames) == 0:
        raise TrainError("no frames to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    if ext == ".gif":
        duration_ms = max(int(round(1000.0 / fps)), 20)
        if background is None:
            imgs = _gif_transparent(frames)
            imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=duration_ms, loop=0,
                         disposal=2, transparency=255, optimize=False)
        else:
            from PIL import Image

            rgb = composite(frames, background)
            imgs = [Image.fromarray(f, "RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                                        dither=Image.Dither.NONE) for f in rgb]
            imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=duration_ms, loop=0,
                         optimize=False)
        return path
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        raise TrainError(f"{path}: writing .mp4 needs ffmpeg through the imageio-ffmpeg package "
                         "(pip install imageio-ffmpeg), or write a .gif instead") from None
    import imageio.v2 as iio

    rgb = composite(frames, background or (255, 255, 255))
    with iio.get_writer(path, format="FFMPEG", mode="I", fps=fps, codec="libx264",
                        pixelformat="yuv420p", macro_block_size=2) as w:
        for f in rgb:
            w.append_data(f)
    return path


# ---------------------------------------------------------------------------------------- ONNX


class PoserGraph(nn.Module):
    """(image (B, 4, S, S), pose (B, 6)) -> final image (B, 4, S, S): the exportable full poser."""

    def __init__(self, morpher: nn.Module, rotator: nn.Module, combiner: nn.Module | None, path: str):
        super().__init__()
        self.morpher, self.rotator, self.combiner, self.path = morpher, rotator, combiner, path

    def forward(self, image: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        rot, expr = pose[:, 0:3], pose[:, 3:6]
        morphed = self.morpher(image, expr)[0]
        pu, zh = self.rotator(morphed, rot)[:2]
        if self.path == "pumarola":
            return pu
        if self.path == "zhou":
            return zh
        return self.combiner(pu, zh, rot)[0]


def export_onnx(runner: PoserRunner, out: str | Path, opset: int = 20, verify: bool = True,
                atol: float = 1e-3, seed: int = 0) -> dict:
    """Export the runner's poser to ONNX (fp32, CPU, dynamic batch). Returns a report dict with
    'path', 'max_abs_diff' (None when onnxruntime is missing) and 'verified'."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    import copy

    # a CPU fp32 copy: the runner's own modules stay where they are
    graph = copy.deepcopy(PoserGraph(runner.morpher, runner.rotator, runner.combiner, runner.path))
    graph = graph.to("cpu").float().eval()
    s = runner.image_size
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(2, 4, s, s, generator=g) * 2 - 1
    pose = torch.rand(2, 6, generator=g) * torch.tensor([2, 2, 2, 1, 1, 1]) - torch.tensor([1, 1, 1, 0, 0, 0])
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise TrainError("ONNX export needs the onnx package (pip install onnx onnxruntime)") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, (image, pose), str(out), input_names=["image", "pose"],
                              output_names=["posed"], opset_version=opset, dynamo=False,
                              dynamic_axes={"image": {0: "batch"}, "pose": {0: "batch"}, "posed": {0: "batch"}})
    except Exception as e:  # noqa: BLE001 - report exporter failures as one line
        raise TrainError(f"{out}: ONNX export failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else e}") from None
    report = {"path": str(out), "max_abs_diff": None, "verified": False, "opset": opset}
    if not verify:
        return report
    try:
        import onnxruntime as ort
    except ImportError:
        log.warning("onnxruntime not installed: exported without checking the output")
        return report
    # check at another batch size than the traced one (the batch axis is dynamic)
    image = torch.rand(3, 4, s, s, generator=g) * 2 - 1
    pose = torch.rand(3, 6, generator=g) * torch.tensor([2, 2, 2, 1, 1, 1]) - torch.tensor([1, 1, 1, 0, 0, 0])
    with torch.inference_mode():
        ref = graph(image, pose).numpy()
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(["posed"], {"image": image.numpy(), "pose": pose.numpy()})[0]
    diff = float(np.abs(got - ref).max())
    report["max_abs_diff"] = diff
    report["verified"] = diff <= atol
    if diff > atol:
        raise TrainError(f"{out}: onnxruntime output differs from torch by {diff:.2e} (> {atol:g})")
    return report
