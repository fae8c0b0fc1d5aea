"""The learning check's figures per held-out character: for each model file of the validation and test
splits, the morpher's changed-region ratio (1.0 = copies its input), the full poser's RMSE and SSIM
against the identity (the rest image unchanged), and the share of rest images on which each eye's
change lands on its own side; the pooled figures over all of them; and a strip of
rest | morphed target | morpher output per character. Used by bench/learning_check.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

HELD_OUT_SPLITS = ("validation", "test")
#: the targets of issue 19's check, on the held-out characters
POOLED_RATIO_TARGET = 0.5
CHARACTER_RATIO_LIMIT = 0.7
EYE_SIDE_TARGET = 0.95


def examples_by_model(ds) -> dict[str, list[int]]:
    """{model path: [example indices]} of a ShardDataset (no image read)."""
    out: dict[str, list[int]] = {}
    for i in range(len(ds)):
        out.setdefault(ds.example_info(i)["model_path"], []).append(i)
    return out


def _stack(ds, idx: list[int], key: str) -> torch.Tensor:
    return torch.stack([ds[i][key] for i in idx])


@torch.inference_mode()
def character_row(ds, idx: list[int], nets: dict, split: str, model: str) -> dict:
    """One held-out character's figures (see the module docstring)."""
    from train import evaluate as ev
    from train.semantics import eye_side_share

    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, idx), batch_size=40)
    rec = {r["row"]: r for r in ev.evaluate(loader, nets["morpher"], nets["rotator"], nets["combiner"],
                                             configs=["FU"]).to_records()}
    rest = _stack(ds, idx, "rest_image")
    return dict(split=split, model=model, examples=len(idx),
                morpher_region_l1=rec["morpher"]["region_l1"], identity_region_l1=rec["identity/morphed"]["region_l1"],
                morpher_ratio=rec["morpher"]["region_l1"] / rec["identity/morphed"]["region_l1"],
                poser_rmse=rec["FU"]["rmse_tha"], identity_rmse=rec["identity/posed"]["rmse_tha"],
                poser_ssim=rec["FU"]["ssim"], identity_ssim=rec["identity/posed"]["ssim"],
                eye_side_share=eye_side_share(nets["morpher"], rest))


def per_character(data: Path, nets: dict, splits=HELD_OUT_SPLITS) -> list[dict]:
    """character_row for every model file of `splits`, in split then path order."""
    from dataset.torchdata import ShardDataset

    rows = []
    for split in splits:
        ds = ShardDataset(str(data), split=split)
        for model, idx in sorted(examples_by_model(ds).items()):
            rows.append(character_row(ds, idx, nets, split, model))
    return rows


def pooled(rows: list[dict]) -> dict:
    """Pooled over characters: the ratio of summed changed-region errors (each character's region L1 is
    a mean over its changed pixels, so characters weigh by their example count), RMSE/SSIM means
    weighted by examples, the eye-side share over all rest images, and the issue's checks."""
    n = np.array([r["examples"] for r in rows], float)
    w = n / n.sum()

    def mean(key: str) -> float:
        return float((w * np.array([r[key] for r in rows])).sum())

    out = dict(characters=len(rows), examples=int(n.sum()),
               morpher_ratio=mean("morpher_region_l1") / mean("identity_region_l1"),
               poser_rmse=mean("poser_rmse"), identity_rmse=mean("identity_rmse"),
               poser_ssim=mean("poser_ssim"), identity_ssim=mean("identity_ssim"),
               eye_side_share=mean("eye_side_share"))
    out["checks"] = {
        f"pooled morpher ratio <= {POOLED_RATIO_TARGET}": out["morpher_ratio"] <= POOLED_RATIO_TARGET,
        f"no character's morpher ratio above {CHARACTER_RATIO_LIMIT}":
            all(r["morpher_ratio"] <= CHARACTER_RATIO_LIMIT for r in rows),
        "full poser below the identity on RMSE and above it on SSIM for every character":
            all(r["poser_rmse"] < r["identity_rmse"] and r["poser_ssim"] > r["identity_ssim"] for r in rows),
        f"each eye's change on its own side in >= {EYE_SIDE_TARGET:.0%} of rest images":
            out["eye_side_share"] >= EYE_SIDE_TARGET,
    }
    return out


def markdown_table(rows: list[dict], total: dict) -> list[str]:
    """The per-character table and the pooled line, as markdown lines."""
    lines = ["| split | model | examples | morpher ratio | poser RMSE (identity) | poser SSIM (identity) | eyes on own side |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['split']} | {r['model']} | {r['examples']} | {r['morpher_ratio']:.3f} | "
                     f"{r['poser_rmse']:.4f} ({r['identity_rmse']:.4f}) | {r['poser_ssim']:.4f} ({r['identity_ssim']:.4f}) | "
                     f"{r['eye_side_share']:.0%} |")
    lines.append(f"| **pooled** | {total['characters']} characters | {total['examples']} | **{total['morpher_ratio']:.3f}** | "
                 f"{total['poser_rmse']:.4f} ({total['identity_rmse']:.4f}) | {total['poser_ssim']:.4f} "
                 f"({total['identity_ssim']:.4f}) | {total['eye_side_share']:.0%} |")
    return lines


@torch.inference_mode()
def character_strip(data: Path, nets: dict, out_png: Path, zoom: int = 3, splits=HELD_OUT_SPLITS) -> None:
    """One row per held-out character: rest | morphed target | morpher output, for its example with the
    largest expression change (the sum of its eye and mouth values)."""
    from PIL import Image, ImageDraw

    from dataset.imageconv import tensor_to_uint8
    from dataset.torchdata import ShardDataset
    from core.imagegrid import composite_over, enlarge, tile

    cells, names = [], []
    for split in splits:
        ds = ShardDataset(str(data), split=split)
        for model, idx in sorted(examples_by_model(ds).items()):
            best = max(idx, key=lambda i: float(ds.example_info(i)["pose"][3:6].sum()))
            it = ds[best]
            out = nets["morpher"](it["rest_image"][None], it["pose"][None, 3:6])[0][0]
            for img in (it["rest_image"], it["morphed_image"], out):
                cells.append(enlarge(composite_over(tensor_to_uint8(img), (128, 128, 128)), zoom))
            names.append(f"{split}: {model.split('/')[0]}")      # the folder: PIL's default font has no kana
    size = cells[0].shape[0]
    grid = tile(cells, columns=3, pad=4, top=20, background=255)
    label_w = 260
    im = Image.new("RGB", (grid.shape[1] + label_w, grid.shape[0]), (255, 255, 255))
    im.paste(Image.fromarray(grid).convert("RGB"), (label_w, 0))
    draw = ImageDraw.Draw(im)
    for c, name in enumerate(("rest", "morphed target", "morpher output")):
        draw.text((label_w + 4 + c * (size + 4) + 4, 4), name, fill=(0, 0, 0))
    for r, name in enumerate(names):
        draw.text((4, 20 + r * (size + 4) + size // 2), name[-40:], fill=(0, 0, 0))
    im.save(out_png)
