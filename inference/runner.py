"""PoserRunner: trained networks + one input drawing -> posed images, fast.

Runs batches of poses through models.poser under `torch.inference_mode`, in fp16 autocast on
CUDA, and skips the morpher when the face part of the pose (THA1: left_eye, right_eye, mouth) has
been seen before for the current image. Poses follow the networks' pose schema (`runner.schema`, read
from the weight files: models.io.read_pose_schema; THA1's six numbers when they record none).
"""
from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from core.poseschema import load_schema
from dataset.imageconv import tensor_to_uint8, uint8_to_tensor
from models.poser import PATHS, Poser, default_path

from .errors import ImageInputError, InferenceError, WeightsInputError
from .weights import load_networks, pick_device, resolve_weights, weights_schema


class PoserRunner:
    """Trained networks + one input image -> posed images, fast.

    path: "full" (combiner output; needs a combiner), "pumarola" or "zhou"; default full when a
    combiner is loaded, else pumarola. half: fp16 autocast (default: on for CUDA, off on CPU).
    schema: the pose schema the networks were trained with (core.poseschema.PoseSchema); None: THA1's.
    """

    def __init__(self, morpher: nn.Module, rotator: nn.Module, combiner: nn.Module | None = None,
                 path: str | None = None, device: str | torch.device | None = None,
                 half: bool | None = None, batch_size: int = 8, cache_size: int = 64, schema=None):
        self.device = pick_device(device) if not isinstance(device, torch.device) else device
        path = path or default_path(combiner is not None)
        if path not in PATHS:
            raise InferenceError(f"path must be full, pumarola or zhou, got {path!r}")
        if path == "full" and combiner is None:
            raise WeightsInputError("path full needs a combiner (combiner.safetensors in --weights or --combiner)")
        self.poser = Poser(morpher.to(self.device).eval(), rotator.to(self.device).eval(),
                           combiner.to(self.device).eval() if combiner is not None else None, path=path,
                           schema=schema).eval()
        self.schema = schema if schema is not None else load_schema("tha1")
        face, rotation = len(self.poser.face_index), len(self.poser.rotation_index)
        for kind, net, want in (("morpher", morpher, face), ("rotator", rotator, rotation),
                                ("combiner", combiner, rotation)):
            if net is not None and int(net.config.get("pose_size", 3)) != want:
                raise WeightsInputError(f"the {kind} takes {net.config.get('pose_size', 3)} pose values, the "
                                        f"{self.schema.name} schema gives it {want}: weights of different schemas")
        self.half = (self.device.type == "cuda") if half is None else bool(half)
        if self.half and self.device.type != "cuda":
            raise InferenceError("half precision is only used on CUDA")
        self.batch_size = max(int(batch_size), 1)
        self.image_size = int(morpher.config["image_size"])
        self.cache_size = cache_size
        self._image: torch.Tensor | None = None
        self._morphed: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self.weight_files: dict = {}  # kind -> the file it came from (from_weights)
        self.frames = 0
        self.morpher_runs = 0
        self.net_seconds = 0.0

    @property
    def path(self) -> str:
        return self.poser.path

    @classmethod
    def from_weights(cls, weights=None, morpher=None, rotator=None, combiner=None, path=None,
                     device=None, **kw) -> "PoserRunner":
        dev = pick_device(device)
        paths = resolve_weights(weights, morpher, rotator, combiner, need_combiner=(path == "full"))
        if path in ("pumarola", "zhou"):
            paths.pop("combiner", None)
        nets = load_networks(paths, dev)
        schema = weights_schema(paths)
        runner = cls(nets["morpher"], nets["rotator"], nets.get("combiner"), path=path, device=dev,
                     schema=schema, **kw)
        runner.weight_files = paths
        return runner

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

    @property
    def pose_size(self) -> int:
        return self.schema.size

    def _morph(self, expr: torch.Tensor) -> torch.Tensor:
        """(B, F) face parts of poses -> (B, 4, S, S) morphed images, computing only unseen expressions."""
        rounded = np.round(expr.detach().float().cpu().numpy().astype(np.float64), 6)
        keys = [r.tobytes() for r in rounded]
        todo = [i for i, k in enumerate(keys) if k not in self._morphed]
        uniq: dict[bytes, int] = {}
        for i in todo:
            uniq.setdefault(keys[i], i)
        if uniq:
            idx = list(uniq.values())
            e = expr[idx]
            out = self.poser.morpher(self._image.expand(len(idx), -1, -1, -1), e)[0]
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
        """(B, P) poses (P: the schema's size) -> (B, 4, S, S) float32 THA tensors for the current image."""
        if self._image is None:
            raise InferenceError("no input image: call set_image first")
        face, rotation = self.poser.split(poses.to(self.device, torch.float32))
        with self._autocast():
            out = self.poser.pose_morphed(self._morph(face), rotation)[0]
        return out.float()

    def run(self, poses: np.ndarray, progress=None) -> np.ndarray:
        """(N, P) poses -> (N, S, S, 4) uint8 sRGB images, batch by batch; times the networks."""
        poses = np.asarray(poses, np.float32)
        if poses.ndim != 2 or poses.shape[1] != self.pose_size:
            raise InferenceError(f"poses must be (N, {self.pose_size}) for the {self.schema.name} schema, "
                                 f"got {poses.shape}")
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

