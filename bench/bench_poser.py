"""Poser speed: frames/s of the full THA1 poser (morpher -> rotator -> combiner) and FLOPs per frame.

    .venv/bin/python bench/bench_poser.py                 # 256x256, THA1 sizes, CPU (+ CUDA fp16 if present)
    .venv/bin/python bench/bench_poser.py --frames 4 --batch 1 --device cpu
    .venv/bin/python bench/bench_poser.py --weights DIR   # trained weights instead of random ones

Prints, per device: frames/s for the whole poser, and for rotator+combiner alone (what
`thactl animate` runs when the expression did not change and the morpher is skipped), plus
FLOPs per frame from torch.utils.flop_counter.FlopCounterMode (convolutions and matrix
products; a multiply-add counts as 2 FLOPs). Speed does not depend on the weights' values.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import Combiner, FaceMorpher, TwoAlgoFaceRotator  # noqa: E402
from models.poser import Poser  # noqa: E402


def flops_per_frame(m, r, c, size: int) -> dict[str, float]:
    from torch.utils.flop_counter import FlopCounterMode

    img = torch.zeros(1, 4, size, size)
    pose3 = torch.zeros(1, 3)
    out = {}
    with torch.inference_mode():
        for name, fn in (("morpher", lambda: m(img, pose3)),
                         ("rotator", lambda: r(img, pose3)),
                         ("combiner", lambda: c(img, img, pose3))):
            with FlopCounterMode(display=False) as fc:
                fn()
            out[name] = float(fc.get_total_flops())
    out["poser"] = out["morpher"] + out["rotator"] + out["combiner"]
    return out


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def time_fps(m, r, c, size: int, device: torch.device, batch: int, frames: int, half: bool) -> dict[str, float]:
    m, r, c = (x.to(device).eval() for x in (m, r, c))
    img = torch.rand(batch, 4, size, size, device=device) * 2 - 1
    pose = torch.rand(batch, 6, device=device)
    ctx = (lambda: torch.autocast("cuda", dtype=torch.float16)) if half else (
        lambda: torch.autocast(device.type, enabled=False))

    poser = Poser(m, r, c, path="full")

    def full():
        return poser(img, pose)[0]

    def no_morpher():
        return poser.pose_morphed(img, pose[:, :3])[0]

    res = {}
    with torch.inference_mode(), ctx():
        for name, fn in (("full", full), ("rotator+combiner", no_morpher)):
            fn()  # warm-up (allocations, cuDNN autotune)
            fn()
            _sync(device)
            steps = max(frames // batch, 1)
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            _sync(device)
            res[name] = steps * batch / (time.perf_counter() - t0)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--base-channels", type=int, default=64)
    ap.add_argument("--res-blocks", type=int, default=6)
    ap.add_argument("--weights", default=None, help="folder with morpher/rotator/combiner.safetensors")
    ap.add_argument("--device", default="all", help="cpu, cuda, or all (cpu, then cuda fp16 when present)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--frames", type=int, default=4, help="frames timed per measurement on the CPU")
    ap.add_argument("--cuda-frames", type=int, default=200)
    ap.add_argument("--num-downsample", type=int, default=3)
    ap.add_argument("--no-flops", action="store_true", help="skip counting FLOPs (a CPU pass per network)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: thactl train's rule, the cores not busy at start-up)")
    a = ap.parse_args(argv)
    from train.threads import set_threads

    set_threads(a.threads)

    if a.weights:
        from models.io import load_weights

        m, r, c = (load_weights(a.weights, k) for k in ("morpher", "rotator", "combiner"))
        a.size = int(m.config["image_size"])
    else:
        arch = dict(image_size=a.size, base_channels=a.base_channels, num_downsample=a.num_downsample,
                    num_res_blocks=a.res_blocks)
        m, r, c = FaceMorpher(**arch), TwoAlgoFaceRotator(**arch), Combiner(**arch)
    params = {k: sum(p.numel() for p in x.parameters()) for k, x in (("morpher", m), ("rotator", r), ("combiner", c))}
    fl = None if a.no_flops else flops_per_frame(m, r, c, a.size)
    print(f"poser at {a.size}x{a.size}, base channels {a.base_channels}, {a.res_blocks} res blocks; torch {torch.__version__}")
    for k in ("morpher", "rotator", "combiner"):
        print(f"  {k:<9} {params[k] / 1e6:7.2f} M parameters" + (f"  {fl[k] / 1e9:8.2f} GFLOP/frame" if fl else ""))
    if fl:
        print(f"  {'poser':<9} {sum(params.values()) / 1e6:7.2f} M parameters  {fl['poser'] / 1e9:8.2f} GFLOP/frame "
              f"(rotator+combiner only: {(fl['rotator'] + fl['combiner']) / 1e9:.2f})")

    runs = []
    if a.device in ("all", "cpu"):
        runs.append((torch.device("cpu"), False, a.frames))
    if a.device in ("all", "cuda") and torch.cuda.is_available():
        runs.append((torch.device("cuda"), False, a.cuda_frames))
        runs.append((torch.device("cuda"), True, a.cuda_frames))
    elif a.device == "cuda":
        print("CUDA not available")
    for dev, half, frames in runs:
        res = time_fps(m, r, c, a.size, dev, a.batch, frames, half)
        name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
        prec = "fp16 autocast" if half else "fp32"
        rate = f" ({fl['poser'] * res['full'] / 1e9:.1f} GFLOP/s)" if fl else ""
        print(f"{name}, {prec}, batch {a.batch}: full poser {res['full']:.2f} frames/s{rate}; "
              f"morpher skipped {res['rotator+combiner']:.2f} frames/s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
