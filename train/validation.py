"""Validation during training: L1 of every output the task shows (and of the identity output = input)
on a fixed subset of the validation split, written as a metrics record, and a sample grid PNG
(samples/ex-NNNNNNNNNN.png: one row per example, columns input | outputs... | target)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("thactl.train")


def validation_indices(val_ds, count: int) -> list[int]:
    """`count` indices spread evenly over the validation split (fewer when it is smaller)."""
    if val_ds is None:
        return []
    n, k = len(val_ds), min(count, len(val_ds))
    if k <= 0:
        return []
    return sorted(set(np.linspace(0, n - 1, k).round().astype(int).tolist()))


def _outputs(task, model, items, dev):
    image, pose, target = task.inputs(torch.utils.data.default_collate(items), dev)
    with dev.autocast():
        outs = task.outputs(model, image, pose)
    return image, outs, target


def validation_metrics(task, model, val_ds, indices: list[int], batch_size: int, dev) -> dict:
    """{"n", "l1" (the task's main output), "l1_<output>" for each output, "l1_identity"}: mean per-image L1;
    the same over the changed region (evaluate.changed_region of input and target, pooled):
    "region_l1_<output>", "region_rmse_<output>", "region_l1_identity", "region_rmse_identity"
    (None when no pixel changed), and "changed_fraction", the share of pixels in that region."""
    from .evaluate import RegionMeter, changed_region, region_error_sums

    sums = {name: 0.0 for name in task.output_names}
    regions = {name: RegionMeter() for name in (*task.output_names, "identity")}
    ident, count, changed = 0.0, 0, 0.0
    for i in range(0, len(indices), batch_size):
        image, outs, target = _outputs(task, model, [val_ds[j] for j in indices[i:i + batch_size]], dev)
        mask = changed_region(image, target)
        for name, o in zip(task.output_names, outs):
            sums[name] += (o.float() - target.float()).abs().mean(dim=(1, 2, 3)).sum().item()
            regions[name].add(region_error_sums(o, target, mask))
        ident += (image.float() - target.float()).abs().mean(dim=(1, 2, 3)).sum().item()
        regions["identity"].add(region_error_sums(image, target, mask))
        changed += mask.float().mean(dim=(1, 2, 3)).sum().item()
        count += image.shape[0]
    rec = {"n": count, "l1": sums[task.main_output] / count}
    rec.update({f"l1_{name}": v / count for name, v in sums.items()})
    rec["l1_identity"] = ident / count
    rec["changed_fraction"] = changed / count
    for name, m in regions.items():
        rec[f"region_l1_{name}"] = m.l1() if m.count else None
        rec[f"region_rmse_{name}"] = m.rmse() if m.count else None
    return rec


def sample_rows(task, model, val_ds, indices: list[int], num_samples: int, dev) -> list[torch.Tensor]:
    """Grid columns (input, outputs..., target) for up to `num_samples` examples spread over `indices`."""
    k = min(num_samples, len(indices))
    picks = np.linspace(0, len(indices) - 1, k).round().astype(int)
    image, outs, target = _outputs(task, model, [val_ds[indices[j]] for j in picks], dev)
    return [t.float().cpu() for t in (image, *outs, target)]


def save_grid(columns: list[torch.Tensor], path: Path) -> None:
    """PNG grid: one row per example, one column per tensor (each (n, 4, S, S), THA convention), RGBA."""
    from PIL import Image

    from dataset.imageconv import tensor_to_uint8

    from core.imagegrid import tile

    imgs = [tensor_to_uint8(c.clamp(-1, 1)) for c in columns]  # each (n, S, S, 4)
    cells = [im[row] for row in range(imgs[0].shape[0]) for im in imgs]  # row-major
    Image.fromarray(tile(cells, columns=len(imgs)), "RGBA").save(path)


class Validator:
    """Runs validation on rank 0 at the given positions; the other ranks wait at a barrier."""

    def __init__(self, task, val_ds, cfg, dev, runlog, samples_dir: Path):
        self.task, self.val_ds, self.cfg, self.dev, self.runlog = task, val_ds, cfg, dev, runlog
        self.samples_dir = Path(samples_dir)
        self.indices = validation_indices(val_ds, cfg.val_examples)

    @torch.no_grad()
    def __call__(self, model, seen: int) -> None:
        if not self.indices:
            return
        if self.dev.is_main:
            model.eval()
            rec = validation_metrics(self.task, model, self.val_ds, self.indices, self.cfg.batch_size, self.dev)
            self.runlog.write({"split": "validation", "examples": seen, **rec})
            log.info("validation at %d examples: %s", seen,
                     ", ".join(f"{k}={v:.5f}" for k, v in rec.items()
                               if k.startswith(("l1", "region_l1")) and v is not None))
            if self.cfg.num_samples > 0:
                columns = sample_rows(self.task, model, self.val_ds, self.indices, self.cfg.num_samples, self.dev)
                save_grid(columns, self.samples_dir / f"ex-{seen:010d}.png")
            model.train()
        self.dev.barrier()
