"""Training throughput of the three THA1 networks: examples/s, peak memory, FLOPs per example.

    .venv/bin/python bench/bench_train.py                    # CPU: 256 px, batch 2, 3 timed steps
    .venv/bin/python bench/bench_train.py --device cuda      # GPU: bf16 autocast, channels_last, batch 25
    .venv/bin/python bench/bench_train.py --device cuda --precision fp32 --compile --no-flops --label "fp32 compile"

FLOPs are counted with torch.utils.flop_counter.FlopCounterMode on one example's forward +
backward (matmul/conv FLOPs, 2 per multiply-add), so GPU runs can be compared against them.
The combiner line is measured as trained: the frozen rotator's forward runs on the fly; its
share of the step is printed separately ("rotator fwd"). The morpher is the one `thactl train`
builds (train.tasks.MORPHER_TRAIN_DEFAULTS: U-Net body, pose FiLM); `--tha1-morpher` times THA1's
encoder-decoder instead.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from models import Combiner, FaceMorpher, TwoAlgoFaceRotator  # noqa: E402
from train.device import setup_device  # noqa: E402
from train.losses import PerceptualLoss, l1_loss  # noqa: E402
from train.tasks import MORPHER_TRAIN_DEFAULTS  # noqa: E402

def build(name: str, arch: dict, morpher_options: dict) -> torch.nn.Module:
    """The network `name` as trained: the morpher with `morpher_options` (FaceMorpher keywords)."""
    cls = {"morpher": FaceMorpher, "rotator": TwoAlgoFaceRotator, "combiner": Combiner}[name]
    return cls(**arch, **(morpher_options if name == "morpher" else {}))


def flops_of(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


def peak_mb(dev) -> float:
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--base-channels", type=int, default=64, help="64: THA1's size")
    ap.add_argument("--num-downsample", type=int, default=3, help="3: THA1's size")
    ap.add_argument("--num-res-blocks", type=int, default=6, help="6: THA1's size")
    ap.add_argument("--batch", type=int, help="default: 2 on the CPU, 25 on CUDA")
    ap.add_argument("--steps", type=int, help="timed steps (default: 3 on the CPU, 30 on CUDA)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--compile-backend", default="inductor",
                    help="torch.compile backend (eager: checks the plumbing in seconds, no speed-up)")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                    help="default: on for CUDA, off for the CPU")
    ap.add_argument("--no-flops", action="store_true", help="skip counting FLOPs (a CPU pass per network)")
    ap.add_argument("--label", default="", help="prefix of every result line (e.g. 'bf16 compile')")
    ap.add_argument("--perceptual", action="store_true", help="also time the rotator with the perceptual loss")
    ap.add_argument("--nets", default="morpher,rotator,combiner")
    ap.add_argument("--tha1-morpher", action="store_true",
                    help="time THA1's morpher (encoder-decoder, no FiLM) instead of thactl train's default")
    a = ap.parse_args()
    morpher_options = {} if a.tha1_morpher else dict(MORPHER_TRAIN_DEFAULTS)
    dev = setup_device(a.device, a.precision, a.channels_last)
    b = a.batch or (25 if dev.type == "cuda" else 2)
    steps = a.steps or (30 if dev.type == "cuda" else 3)
    s = a.size
    print(f"device {dev.device} ({torch.cuda.get_device_name() if dev.type == 'cuda' else os.cpu_count()} "
          f"{'GPU' if dev.type == 'cuda' else 'CPU threads'}), torch {torch.__version__}, precision {dev.precision}, "
          f"channels_last {dev.channels_last}, {s}x{s}, batch {b}, {steps} timed steps; morpher options "
          f"{morpher_options or 'THA1'}")

    arch = dict(image_size=s, base_channels=a.base_channels, num_downsample=a.num_downsample,
                num_res_blocks=a.num_res_blocks)
    flops = {} if a.no_flops else count_flops(arch, morpher_options)
    torch.manual_seed(0)
    for name in a.nets.split(","):
        eps, ms, peak, rot_share = time_network(name, dev, a, arch, morpher_options, b, steps)
        line = (f"{a.label + ' ' if a.label else ''}{name:9s} {eps:8.2f} examples/s  {ms:8.1f} ms/step  "
                f"{'peak' if dev.type == 'cuda' else 'RSS max'} {peak:8.0f} MiB")
        if flops:
            gflop = flops[name] / 1e9
            frozen = f"; +{flops['rotator_fwd'] / 1e9:.1f} frozen rotator fwd" if name == "combiner" else ""
            line += f"  {gflop:7.1f} GFLOP/example (fwd+bwd{frozen})  {eps * gflop / 1e3:.2f} TFLOP/s"
        if name == "combiner":
            line += f", rotator fwd {100 * rot_share:.0f}% of the step"
        print(line, flush=True)
    if a.perceptual:
        time_perceptual(dev, b, steps, arch)
    if flops:
        print(f"per-example training FLOPs (fwd+bwd): morpher {flops['morpher'] / 1e9:.1f} G, rotator "
              f"{flops['rotator'] / 1e9:.1f} G, combiner {flops['combiner'] / 1e9:.1f} G "
              f"(+ {flops['rotator_fwd'] / 1e9:.1f} G frozen rotator forward when trained on the fly)")


def count_flops(arch: dict, morpher_options: dict) -> dict[str, int]:
    """FLOPs per example (fp32, CPU, batch 1), forward + backward, per network."""
    s = arch["image_size"]
    x1, p1 = torch.rand(1, 4, s, s) * 2 - 1, torch.rand(1, 3)
    flops = {}
    with torch.device("cpu"):
        for name in ("morpher", "rotator"):
            net = build(name, arch, morpher_options)
            flops[name] = flops_of(lambda: sum(o.float().mean() for o in net(x1, p1)[:2]).backward())
            if name == "rotator":
                with torch.no_grad():
                    flops["rotator_fwd"] = flops_of(lambda: net(x1, p1))
            del net
        net = Combiner(**arch)
        flops["combiner"] = flops_of(lambda: net(x1, x1, p1)[0].mean().backward())
        del net
    return flops


def time_network(name: str, dev, a, arch: dict, morpher_options: dict, b: int,
                 steps: int) -> tuple[float, float, float, float]:
    """Train `name` on random data: (examples/s, ms/step, peak MiB, frozen rotator's share)."""
    s = arch["image_size"]
    net = dev.prepare_model(build(name, arch, morpher_options))
    frozen = dev.prepare_model(TwoAlgoFaceRotator(**arch)).eval() if name == "combiner" else None
    fwd = torch.compile(net, backend=a.compile_backend) if a.compile else net
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.5, 0.999))
    x, t, p = dev.to(torch.rand(b, 4, s, s) * 2 - 1), dev.to(torch.rand(b, 4, s, s) * 2 - 1), dev.to(torch.rand(b, 3))
    rot_time = [0.0]

    def step():
        with dev.autocast():
            if name == "combiner":
                t0 = time.perf_counter()
                with torch.no_grad():
                    pu, zh = frozen(x, p)[:2]
                sync(dev)
                rot_time[0] += time.perf_counter() - t0
                loss = l1_loss(fwd(pu, zh, p)[0], t)
            else:
                out = fwd(x, p)
                loss = sum(l1_loss(o, t) for o in out[:(2 if name == "rotator" else 1)])
        opt.zero_grad(set_to_none=True)
        dev.backward_step(loss, opt)

    for _ in range(a.warmup):
        step()
    sync(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rot_time[0] = 0.0
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(dev)
    dt = time.perf_counter() - t0
    peak = peak_mb(dev)
    del net, opt, frozen, fwd
    return steps * b / dt, dt / steps * 1000, peak, rot_time[0] / dt


def time_perceptual(dev, b: int, steps: int, arch: dict) -> None:
    """The rotator trained with L1 + the perceptual loss (random VGG16 weights)."""
    from models.vgg import load_vgg16_features
    vgg = dev.prepare_model(load_vgg16_features(None, random_init=True))
    perc = PerceptualLoss(vgg, 0.2)
    bp = 8 if dev.type == "cuda" else b
    s = arch["image_size"]
    net = dev.prepare_model(TwoAlgoFaceRotator(**arch))
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.5, 0.999))
    x, t, p = dev.to(torch.rand(bp, 4, s, s) * 2 - 1), dev.to(torch.rand(bp, 4, s, s) * 2 - 1), dev.to(torch.rand(bp, 3))

    def pstep():
        with dev.autocast():
            out = net(x, p)
            loss = sum(l1_loss(o, t) + perc(o.float(), t) for o in out[:2])
        opt.zero_grad(set_to_none=True)
        dev.backward_step(loss, opt)
    pstep()
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        pstep()
    sync(dev)
    dt = time.perf_counter() - t0
    print(f"rotator+perceptual (batch {bp}) {steps * bp / dt:8.2f} examples/s  {'peak' if dev.type == 'cuda' else 'RSS max'} {peak_mb(dev):8.0f} MiB")


if __name__ == "__main__":
    main()
