"""The one device abstraction: cpu/cuda, autocast (bf16/fp16), GradScaler, channels_last,
pinned memory and DistributedDataParallel set up from torchrun's environment.

Everything CUDA-specific lives here so the rest of the training code is device-agnostic; the
CUDA-only branches (GradScaler for fp16, pinned memory, NCCL) are the few lines this module
cannot exercise on a CPU-only machine.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from .errors import TrainError

log = logging.getLogger("thactl.train")

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class Device:
    device: torch.device
    precision: str = "fp32"  # fp32 | bf16 | fp16
    channels_last: bool = False
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    scaler: object = field(default=None, repr=False)
    tf32: bool = False  # CUDA only: fp32 matrix products and convolutions may run in TF32

    @property
    def precision_label(self) -> str:
        """The precision as the figures should name it: "fp32" on CUDA is TF32 unless said otherwise."""
        if self.type != "cuda":
            return self.precision
        fp32_parts = "TF32" if self.tf32 else "true fp32"
        if self.precision == "fp32":
            return f"fp32 (matrix products and convolutions in {fp32_parts})"
        return f"{self.precision} autocast (its fp32 parts in {fp32_parts})"

    @property
    def type(self) -> str:
        return self.device.type

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def pin_memory(self) -> bool:
        return self.device.type == "cuda"

    @property
    def amp_dtype(self):
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    def autocast(self):
        """Context for forward passes: autocast in the chosen precision, a no-op for fp32."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def to(self, x: torch.Tensor) -> torch.Tensor:
        """Move a batch tensor to the device (non-blocking from pinned memory), channels_last for images."""
        x = x.to(self.device, non_blocking=self.pin_memory)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def prepare_model(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def wrap_ddp(self, model: nn.Module) -> nn.Module:
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DDP(model, device_ids=ids, broadcast_buffers=False)

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """loss.backward() + optimizer.step(), through the GradScaler when training in fp16."""
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            loss.backward()
            optimizer.step()

    # --- collectives (no-ops in a single process)
    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def mean(self, value: float) -> float:
        """Average of a Python float over all ranks."""
        if not self.distributed:
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64,
                         device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def any(self, flag: bool) -> bool:
        """True on every rank when `flag` is true on any rank (used for a coordinated stop)."""
        if not self.distributed:
            return bool(flag)
        t = torch.tensor([1 if flag else 0], dtype=torch.int32,
                         device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return bool(t.item())

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def setup_device(device: str = "auto", precision: str = "auto", channels_last: bool | None = None,
                 tf32: bool = True) -> Device:
    """Pick the device (honouring torchrun's RANK/WORLD_SIZE/LOCAL_RANK) and the precision.

    precision "auto": bf16 on a CUDA GPU that supports it (fp16 otherwise), fp32 on the CPU.
    channels_last None: on for CUDA, off for the CPU.
    tf32: on CUDA, let fp32 matrix products and convolutions use TF32 (10-bit mantissa; faster).
    """
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise TrainError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if precision not in PRECISIONS:
        raise TrainError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    cuda_ok = torch.cuda.is_available()
    if device.startswith("cuda") and not cuda_ok:
        raise TrainError("--device cuda: no CUDA GPU is visible to torch "
                         f"(torch {torch.__version__}, built with CUDA {torch.version.cuda})")
    kind = "cuda" if (device == "auto" and cuda_ok) or device.startswith("cuda") else "cpu"

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if kind == "cuda":
        index = local_rank if world > 1 else (torch.device(device).index if ":" in device else 0)
        torch.cuda.set_device(index)
        dev = torch.device("cuda", index)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if kind == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
        log.info("DDP: rank %d of %d (%s, %s)", rank, world, backend, dev)

    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if kind == "cuda" else "fp32"
    if precision == "fp16" and kind != "cuda":
        raise TrainError("--precision fp16 needs a CUDA GPU (use bf16 or fp32 on the CPU)")
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    if channels_last is None:
        channels_last = kind == "cuda"
    return Device(dev, precision, bool(channels_last), rank, world, local_rank, scaler, tf32=kind == "cuda" and tf32)
