"""Training throughput of the three THA1 networks: examples/s, peak memory, FLOPs per example.

    .venv/bin/python bench/bench_train.py                    # CPU: 256 px, batch 2, 3 timed steps
    .venv/bin/python bench/bench_train.py --device cuda      # GPU: bf16 autocast, channels_last, batch 25
    .venv/bin/python bench/bench_train.py --device cuda --layouts nchw,cl,cl-kept   # memory formats compared
    .venv/bin/python bench/bench_train.py --device cuda --precision fp32 --no-tf32 --compile --no-flops

What is timed: forward + loss + backward + Adam on random data, `--steps` steps after `--warmup`
ones, with the device synchronised before the clock starts and after it stops. The combiner is
measured as trained: the frozen rotator's forward runs on the fly, and its share of the step
("rotator fwd") is timed on the device itself (CUDA events around it, no synchronisation inside
the step; on the CPU the wall clock). Peak memory is per measurement: CUDA's peak allocation,
reset after the warm-up steps; on the CPU the process's peak RSS (VmHWM), reset the same way
where Linux allows (/proc/self/clear_refs), else the process's peak so far (said so).

Precision: the header names it as the figures should be read; on CUDA "fp32" means TF32 matrix
products and convolutions unless --no-tf32 is given (bf16 autocast's own fp32 parts too).

Memory formats (--layouts, each network timed in each):
  train    what `thactl train` does: channels_last on CUDA, NCHW on the CPU, and InstanceNorm keeping
           channels_last only under torch.compile (models.blocks.InstanceNorm2d)
  nchw     channels_last off
  cl       channels_last, torch's InstanceNorm (two layout copies per norm)
  cl-kept  channels_last kept through every InstanceNorm, also in eager mode

FLOPs are counted with torch.utils.flop_counter.FlopCounterMode on one example's forward +
backward (matmul/conv FLOPs, 2 per multiply-add). The morpher is the one `thactl train` builds
(train.tasks.MORPHER_TRAIN_DEFAULTS: U-Net body, pose FiLM); `--tha1-morpher` times THA1's
encoder-decoder instead.
"""
from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from models import Combiner, FaceMorpher, TwoAlgoFaceRotator  # noqa: E402
from models.blocks import InstanceNorm2d  # noqa: E402
from train.device import setup_device  # noqa: E402
from train.losses import PerceptualLoss, l1_loss  # noqa: E402
from train.tasks import MORPHER_TRAIN_DEFAULTS  # noqa: E402

# layout name -> (channels_last or None for the device's default, InstanceNorm2d.keep_channels_last)
LAYOUTS = {"train": (None, "compiled"), "nchw": (False, "never"), "cl": (True, "never"),
           "cl-kept": (True, "always")}


def build(name: str, arch: dict, morpher_options: dict) -> torch.nn.Module:
    """The network `name` as trained: the morpher with `morpher_options` (FaceMorpher keywords)."""
    cls = {"morpher": FaceMorpher, "rotator": TwoAlgoFaceRotator, "combiner": Combiner}[name]
    return cls(**arch, **(morpher_options if name == "morpher" else {}))


def flops_of(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


class PeakMemory:
    """Peak memory of one measurement: CUDA's allocator peak, or the CPU process's VmHWM."""

    def __init__(self, dev):
        self.dev = dev
        self.resettable = dev.type == "cuda" or self._clear_rss_peak()
        self.label = "peak" if dev.type == "cuda" else ("peak RSS" if self.resettable else "peak RSS so far")

    @staticmethod
    def _clear_rss_peak() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
            return True
        except OSError:
            return False

    def reset(self) -> None:
        if self.dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        elif self.resettable:
            self._clear_rss_peak()

    def mib(self) -> float:
        if self.dev.type == "cuda":
            return torch.cuda.max_memory_allocated() / 2 ** 20
        try:
            with open("/proc/self/status") as f:
                return next(int(x.split()[1]) for x in f if x.startswith("VmHWM:")) / 1024
        except (OSError, StopIteration):
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class ShareTimer:
    """Seconds spent inside `with timer:` blocks, timed where the work runs: CUDA events on the GPU
    (no host synchronisation inside the step; read after the final synchronise), the clock on the CPU."""

    def __init__(self, dev):
        self.cuda = dev.type == "cuda"
        self.pairs, self.cpu_s, self._t0 = [], 0.0, None

    def __enter__(self):
        if self.cuda:
            self.pairs.append((torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)))
            self.pairs[-1][0].record()
        else:
            self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.pairs[-1][1].record()
        else:
            self.cpu_s += time.perf_counter() - self._t0

    def reset(self) -> None:
        self.pairs, self.cpu_s = [], 0.0

    def seconds(self) -> float:
        """Call after synchronising."""
        return sum(a.elapsed_time(b) for a, b in self.pairs) / 1e3 if self.cuda else self.cpu_s


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=True,
                    help="CUDA: fp32 matrix products and convolutions in TF32 (thactl train's setting)")
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
    ap.add_argument("--layouts", default=None,
                    help=f"comma-separated, from {', '.join(LAYOUTS)} (default: train, or as --channels-last says)")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                    help="shorthand: --layouts cl / nchw")
    ap.add_argument("--no-flops", action="store_true", help="skip counting FLOPs (a CPU pass per network)")
    ap.add_argument("--label", default="", help="prefix of every result line (e.g. 'bf16 compile')")
    ap.add_argument("--perceptual", action="store_true", help="also time the rotator with the perceptual loss")
    ap.add_argument("--nets", default="morpher,rotator,combiner")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: thactl train's rule, train/threads.py)")
    ap.add_argument("--tha1-morpher", action="store_true",
                    help="time THA1's morpher (encoder-decoder, no FiLM) instead of thactl train's default")
    a = ap.parse_args(argv)
    if a.layouts is None:
        a.layouts = {None: "train", True: "cl", False: "nchw"}[a.channels_last]
    a.layouts = a.layouts.split(",")
    bad = [x for x in a.layouts if x not in LAYOUTS]
    if bad:
        ap.error(f"--layouts: unknown {bad[0]!r} (choose from {', '.join(LAYOUTS)})")
    return a


def main(argv=None) -> None:
    a = parse_args(argv)
    from train.threads import set_threads

    threads = set_threads(a.threads)
    morpher_options = {} if a.tha1_morpher else dict(MORPHER_TRAIN_DEFAULTS)
    dev = setup_device(a.device, a.precision, None, tf32=a.tf32)
    b = a.batch or (25 if dev.type == "cuda" else 2)
    steps = a.steps or (30 if dev.type == "cuda" else 3)
    s = a.size
    compiled = f"torch.compile ({a.compile_backend})" if a.compile else "eager"
    print(f"device {dev.device} ({torch.cuda.get_device_name() if dev.type == 'cuda' else os.cpu_count()} "
          f"{'GPU' if dev.type == 'cuda' else f'CPU cores, {threads} torch threads'}), torch {torch.__version__}, precision "
          f"{dev.precision_label}, TF32 {'on' if dev.tf32 else 'off'}, {compiled}, layouts {','.join(a.layouts)}, "
          f"{s}x{s}, batch {b}, {steps} timed steps after {a.warmup} warm-up; morpher options "
          f"{morpher_options or 'THA1'}", flush=True)

    arch = dict(image_size=s, base_channels=a.base_channels, num_downsample=a.num_downsample,
                num_res_blocks=a.num_res_blocks)
    flops = {} if a.no_flops else count_flops(arch, morpher_options)
    memory = PeakMemory(dev)
    rates: dict[tuple[str, str], float] = {}
    for name in a.nets.split(","):
        for layout in a.layouts:
            torch.manual_seed(0)
            eps, ms, peak, rot_share = time_network(name, layout, dev, a, arch, morpher_options, b, steps, memory)
            rates[name, layout] = eps
            print(result_line(a.label, name, layout, len(a.layouts) > 1, eps, ms, memory.label, peak, flops,
                              rot_share), flush=True)
    if len(a.layouts) > 1:
        print_layout_comparison(a.label, a.nets.split(","), a.layouts, rates)
    if a.perceptual:
        time_perceptual(dev, b, steps, arch, memory)
    if flops:
        print(f"per-example training FLOPs (fwd+bwd): morpher {flops['morpher'] / 1e9:.1f} G, rotator "
              f"{flops['rotator'] / 1e9:.1f} G, combiner {flops['combiner'] / 1e9:.1f} G "
              f"(+ {flops['rotator_fwd'] / 1e9:.1f} G frozen rotator forward when trained on the fly)")


def result_line(label, name, layout, show_layout, eps, ms, mem_label, peak, flops, rot_share) -> str:
    tag = f" {'[' + layout + ']':9s}" if show_layout else ""
    line = (f"{label + ' ' if label else ''}{name:9s}{tag} {eps:8.2f} examples/s  "
            f"{ms:8.1f} ms/step  {mem_label} {peak:8.0f} MiB")
    if flops:
        gflop = flops[name] / 1e9
        frozen = f"; +{flops['rotator_fwd'] / 1e9:.1f} frozen rotator fwd" if name == "combiner" else ""
        line += f"  {gflop:7.1f} GFLOP/example (fwd+bwd{frozen})  {eps * gflop / 1e3:.2f} TFLOP/s"
    if name == "combiner":
        line += f", rotator fwd {100 * rot_share:.0f}% of the step"
    return line


def print_layout_comparison(label: str, nets: list[str], layouts: list[str], rates: dict) -> None:
    base = layouts[0]
    for name in nets:
        parts = [f"{lay} {rates[name, lay] / rates[name, base]:.2f}x" for lay in layouts[1:]]
        print(f"{label + ' ' if label else ''}{name:9s} layouts against {base}: {', '.join(parts)}", flush=True)


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


def time_network(name: str, layout: str, dev, a, arch: dict, morpher_options: dict, b: int, steps: int,
                 memory: PeakMemory) -> tuple[float, float, float, float]:
    """Train `name` on random data in `layout`: (examples/s, ms/step, peak MiB, frozen rotator's share)."""
    channels_last, InstanceNorm2d.keep_channels_last = LAYOUTS[layout]
    dev.channels_last = (dev.type == "cuda") if channels_last is None else channels_last
    s = arch["image_size"]
    net = dev.prepare_model(build(name, arch, morpher_options))
    frozen = dev.prepare_model(TwoAlgoFaceRotator(**arch)).eval() if name == "combiner" else None
    fwd = torch.compile(net, backend=a.compile_backend) if a.compile else net
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.5, 0.999))
    x, t, p = dev.to(torch.rand(b, 4, s, s) * 2 - 1), dev.to(torch.rand(b, 4, s, s) * 2 - 1), dev.to(torch.rand(b, 3))
    rotator_fwd = ShareTimer(dev)

    def step():
        with dev.autocast():
            if name == "combiner":
                with torch.no_grad(), rotator_fwd:
                    pu, zh = frozen(x, p)[:2]
                loss = l1_loss(fwd(pu, zh, p)[0], t)
            else:
                out = fwd(x, p)
                loss = sum(l1_loss(o, t) for o in out[:(2 if name == "rotator" else 1)])
        opt.zero_grad(set_to_none=True)
        dev.backward_step(loss, opt)

    for _ in range(a.warmup):
        step()
    sync(dev)
    memory.reset()
    rotator_fwd.reset()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(dev)
    dt = time.perf_counter() - t0
    peak, share = memory.mib(), rotator_fwd.seconds() / dt
    del net, opt, frozen, fwd, x, t, p
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return steps * b / dt, dt / steps * 1000, peak, share


def time_perceptual(dev, b: int, steps: int, arch: dict, memory: PeakMemory) -> None:
    """The rotator trained with L1 + the perceptual loss (random VGG16 weights), in the training layout."""
    from models.vgg import load_vgg16_features
    dev.channels_last, InstanceNorm2d.keep_channels_last = dev.type == "cuda", "compiled"
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
    memory.reset()
    t0 = time.perf_counter()
    for _ in range(steps):
        pstep()
    sync(dev)
    dt = time.perf_counter() - t0
    print(f"rotator+perceptual (batch {bp}) {steps * bp / dt:8.2f} examples/s  {memory.label} {memory.mib():8.0f} MiB",
          flush=True)


if __name__ == "__main__":
    main()
