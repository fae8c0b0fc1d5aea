"""Does a morpher configuration generalise? Changed-region ratio on training / validation / test characters.

    .venv/bin/python bench/morpher_generalisation.py --data learning-check/data               # the defaults
    .venv/bin/python bench/morpher_generalisation.py --data D --no-unet --augment none        # the old default
    .venv/bin/python bench/morpher_generalisation.py --data D --base-channels 32 --cosine --steps 3000
    .venv/bin/python bench/morpher_generalisation.py --data D --characters 6     # 6 of the training models
    .venv/bin/python bench/morpher_generalisation.py --data D128 --crop 64 --crop-jitter 8   # 128 px face crops
    .venv/bin/python bench/morpher_generalisation.py --data D --warmup-steps 500  # the change head learns first

Trains a morpher in memory on the training split of a `thactl render` folder (the learning check's
data: 64 px, --count 6000) with `thactl train`'s morpher step (train.tasks.MorpherTask: its
augmentation, its L1 + region-weight loss), and prints, six times during the run, the
changed-region L1 of the morpher divided by the identity's (1.000 = copies its input) on 400
training examples, on the validation split and on the test split (up to 400 evenly spaced examples
each). A falling training ratio with a flat test ratio is a network that learns its characters
instead of what the pose does. `--characters K` trains on K of the training split's model files:
the data-size experiment in README. `--crop S` trains and scores on the S x S window at the middle
of the frame (the face: at 128 px the middle 64 px hold it), shifted by up to `--crop-jitter` pixels per
training batch. `--warmup-steps W` adds, for the first W steps, the L1 of the morpher's change head
(before the alpha blend) against the target over the changed region, so the network has a change
worth blending before copying the input pays. README's tables were measured with earlier copies of this loop
(same network, loss, data and augmentation laws; other random draws, and validation / test probes
of 400 draws with repeats), so figures agree within the run-to-run noise (about ±0.05), not to the
digit.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from dataset.torchdata import ShardDataset  # noqa: E402
from models import FaceMorpher  # noqa: E402
from train.augment import Augment, parse_augment  # noqa: E402
from train.device import setup_device  # noqa: E402
from train.evaluate import morpher_region_ratio  # noqa: E402
from train.tasks import MorpherTask  # noqa: E402


def centre_crop(images: torch.Tensor, size: int, dx: int = 0, dy: int = 0) -> torch.Tensor:
    """The size x size window of (..., H, W) images at the middle of the frame, moved by (dx, dy)."""
    if not size:
        return images
    h, w = images.shape[-2:]
    if size > min(h, w):
        raise SystemExit(f"--crop {size} is larger than the {w}x{h} images")
    top = min(max((h - size) // 2 + dy, 0), h - size)
    left = min(max((w - size) // 2 + dx, 0), w - size)
    return images[..., top:top + size, left:left + size]


def warmup_loss(net, task, batch, dev, seen: int) -> torch.Tensor:
    """The task's loss plus the change head's L1 against the target over the changed region."""
    from train.evaluate import changed_region
    from train.losses import region_l1_loss

    image, pose, target = task.inputs(batch, dev, seen)
    output, _, change = net(image, pose)
    loss, _ = task.image_loss(output, target)
    region = changed_region(image, target)
    return loss + task.region_weight * region_l1_loss(output, target, region) + region_l1_loss(change, target, region)


def load_split(data: str, split: str, limit: int | None = None, characters: int = 0,
               seed: int = 0, face=slice(3, 6), window: int = 0) -> tuple[torch.Tensor, ...]:
    """(rest, morphed, pose[face]) of a split, in memory (`face`: THA1's 3:6, or a pose schema's face
    indices); `limit` evenly spaced examples when given; with `characters`, only the examples of that
    many of the split's model files (a seeded draw); with `window`, only that square at the middle of
    each image is kept (centre_crop), so large images fit in memory."""
    ds = ShardDataset(data, split=split)
    idx = range(len(ds)) if limit is None else torch.linspace(0, len(ds) - 1, min(limit, len(ds))).long().tolist()
    if characters:
        paths = [ds.example_info(i)["model_path"] for i in idx]
        names = sorted(set(paths))
        random.Random(seed).shuffle(names)
        kept = set(names[:characters])
        print(f"{split}: {len(kept)} of {len(names)} model files: {', '.join(sorted(kept))}", flush=True)
        idx = [i for i, path in zip(idx, paths) if path in kept]
    items = [{k: centre_crop(it[k], window) for k in ("rest_image", "morphed_image")} | {"pose": it["pose"][face]}
             for it in map(ds.__getitem__, idx)]
    return tuple(torch.stack([it[k] for it in items]) for k in ("rest_image", "morphed_image", "pose"))


@torch.inference_mode()
def ratio_by_character(net, data: str, splits=("validation", "test"), crop: int = 0) -> list[tuple[str, str, int, float]]:
    """(split, model file, examples, changed-region ratio) for every model file of the held-out splits
    (on the `crop` window at the frame's middle when given)."""
    from per_character import examples_by_model

    out = []
    for split in splits:
        ds = ShardDataset(data, split=split)
        for model, idx in sorted(examples_by_model(ds).items()):
            items = [ds[i] for i in idx]
            rest, morphed = (centre_crop(torch.stack([it[k] for it in items]), crop)
                             for k in ("rest_image", "morphed_image"))
            pose3 = torch.stack([it["pose"][3:6] for it in items])
            out.append((split, model, len(idx), morpher_region_ratio(net, rest, morphed, pose3)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a thactl render folder with train/, validation/, test/")
    ap.add_argument("--steps", type=int, default=750)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--cosine", action="store_true", help="decay the learning rate to 0 (thactl train: constant)")
    ap.add_argument("--base-channels", type=int, default=16)
    ap.add_argument("--region-weight", type=float, default=1.0)
    ap.add_argument("--unet", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--augment", default="mirror,colour")
    ap.add_argument("--characters", type=int, default=0,
                    help="train on this many of the training split's model files (a draw seeded by --seed); "
                         "0 = all. The data-size experiment of README's morpher table")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--crop", type=int, default=0, help="train and score on this window at the frame's middle (0: whole)")
    ap.add_argument("--crop-jitter", type=int, default=0, help="shift the training window by up to this many pixels")
    ap.add_argument("--warmup-steps", type=int, default=0,
                    help="steps that also fit the change head to the target over the changed region")
    ap.add_argument("--threads", type=int, default=None, help="default: thactl train's rule (train/threads.py)")
    ap.add_argument("--json", default=None, help="write the run's curve and its per-character ratios here")
    a = ap.parse_args()
    from train.threads import set_threads

    a.threads = set_threads(a.threads)
    torch.manual_seed(a.seed)
    window = a.crop + 2 * a.crop_jitter if a.crop else 0
    train = load_split(a.data, "train", characters=a.characters, seed=a.seed, window=window)
    probes = {"train": tuple(x[:400] for x in train), "validation": load_split(a.data, "validation", 400),
              "test": load_split(a.data, "test", 400)}
    probes = {k: tuple(centre_crop(x, a.crop) if x.dim() == 4 else x for x in v) for k, v in probes.items()}
    net = FaceMorpher(image_size=a.crop or train[0].shape[-1], base_channels=a.base_channels, num_downsample=2,
                      num_res_blocks=2, pose_film=True, head_init_scale=0.01, unet=a.unet)
    opt = torch.optim.Adam(net.parameters(), lr=a.lr, betas=(0.5, 0.999))
    # thactl train's morpher step: its augmentation, L1 + region-weight loss
    task = MorpherTask(net.config, augment=Augment(parse_augment(a.augment), a.seed), region_weight=a.region_weight)
    dev = setup_device("cpu", "fp32", False)
    order = torch.Generator().manual_seed(a.seed)
    t0 = time.perf_counter()
    curve = []
    for step in range(1, a.steps + 1):
        idx = torch.randint(0, len(train[0]), (a.batch_size,), generator=order)
        x, t, p = (d[idx] for d in train)
        if a.crop:
            dx, dy = (torch.randint(-a.crop_jitter, a.crop_jitter + 1, (2,), generator=order).tolist()
                      if a.crop_jitter else (0, 0))
            x, t = centre_crop(x, a.crop, dx, dy), centre_crop(t, a.crop, dx, dy)
        batch = {"rest_image": x, "morphed_image": t, "pose": torch.nn.functional.pad(p, (3, 0))}  # head part unused
        seen = (step - 1) * a.batch_size
        loss = warmup_loss(net, task, batch, dev, seen) if step <= a.warmup_steps else task.step(net, batch, dev, seen)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if a.cosine:
            for group in opt.param_groups:
                group["lr"] = a.lr * 0.5 * (1 + math.cos(math.pi * step / a.steps))
        if step % max(1, a.steps // 6) == 0 or step == a.steps:
            net.eval()
            ratios = {k: morpher_region_ratio(net, *v) for k, v in probes.items()}
            net.train()
            curve.append(dict(step=step, seconds=time.perf_counter() - t0, **ratios))
            print(f"step {step:5d}  loss {loss.item():.4f}  changed-region ratio: "
                  f"{' '.join(f'{k} {v:.3f}' for k, v in ratios.items())}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    net.eval()
    characters = ratio_by_character(net, a.data, crop=a.crop)
    for split, model, n, ratio in characters:
        print(f"{split:10s} {model:60s} {n:5d} examples  changed-region ratio {ratio:.3f}", flush=True)
    if a.json:
        from per_character import examples_by_model

        train_files = a.characters or len(examples_by_model(ShardDataset(a.data, split="train")))
        Path(a.json).write_text(json.dumps(dict(args=vars(a), train_files=train_files, curve=curve, characters=[
            dict(split=s_, model=m, examples=n, ratio=r) for s_, m, n, r in characters]), indent=1) + "\n")


if __name__ == "__main__":
    main()
