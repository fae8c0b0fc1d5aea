"""The learning check's figures per held-out character: for each model file of the validation and test
splits, the morpher's changed-region ratio (1.0 = copies its input), the full poser's RMSE and SSIM
against the identity (the rest image unchanged), and the share of rest images on which each eye's
change lands on its own side; the pooled figures over all of them; and a strip of
rest | morphed target | morpher output per character. Used by bench/learning_check.py.

Every function takes the data's pose schema (`schema`, a core.poseschema.PoseSchema; None: THA1's six
numbers, figures exactly as before): the networks get the parts models.poser.pose_parts gives, and the
eye probes of train.semantics drive a schema's morpher through THA1's three face numbers placed by
core.poseschema.FROM_THA1 (eye_wink_left / eye_wink_right / mouth_aaa for tha3; `semantic_morpher`)."""
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


class Tha1FaceProbe(torch.nn.Module):
    """A schema's morpher driven by THA1's three face numbers (left_eye, right_eye, mouth), placed as
    core.poseschema.FROM_THA1 says (PoseSchema.from_tha1), every other face value at the schema's rest:
    train.semantics probes a 3-input morpher, and this is one. Input (B, 4, H, W) and (B, 3)."""

    def __init__(self, morpher: torch.nn.Module, schema):
        super().__init__()
        self.morpher, self.schema, self.face = morpher, schema, schema.indices("face")

    def forward(self, image: torch.Tensor, face3: torch.Tensor):
        pose6 = torch.zeros(face3.shape[0], 6)
        pose6[:, 3:6] = face3.detach().float().cpu()
        full = torch.from_numpy(self.schema.from_tha1(pose6.numpy()))
        return self.morpher(image, full[:, self.face].to(image.device))


PROBED = ("left_eye", "right_eye", "mouth")   # train.semantics' probes, as THA1 names them


def probe_names(schema=None) -> dict[str, str]:
    """{THA1 face number: the parameter train.semantics' probe of it moves}: itself for THA1 (None); for a
    schema the FROM_THA1 parameter, or {} unless all three land on face inputs (no eye or mouth probe)."""
    if schema is None:
        return {n: n for n in PROBED}
    where, face = schema.tha1_positions(), set(schema.indices("face"))
    if not all(where.get(n) in face for n in PROBED):
        return {}
    return {n: schema.names[where[n]] for n in PROBED}


def semantic_morpher(morpher: torch.nn.Module, schema=None) -> torch.nn.Module | None:
    """The morpher as train.semantics probes it: itself for THA1 (schema None); for a schema with eye and
    mouth probes (probe_names), a Tha1FaceProbe; else None (those checks are left out)."""
    if schema is None:
        return morpher
    return Tha1FaceProbe(morpher, schema) if probe_names(schema) else None


def evaluate_poser(loader, nets: dict, schema=None, configs=("FU",)):
    """train.evaluate.evaluate of morpher -> rotator -> combiner over `loader`, the pose split by the
    data's `schema` (None: THA1's six numbers)."""
    from train import evaluate as ev

    return ev.evaluate(loader, nets["morpher"], nets["rotator"], nets["combiner"], configs=list(configs),
                       schema=schema)


def expression_change(pose, schema=None) -> float:
    """How far a pose's face part is from rest: THA1's eye and mouth sum (schema None), or the sum of
    |value - rest| over the schema's face parameters."""
    if schema is None:
        return float(pose[3:6].sum())
    face = schema.indices("face")
    return float(np.abs(np.asarray(pose, np.float64)[face] - schema.rest[face]).sum())


@torch.inference_mode()
def character_row(ds, idx: list[int], nets: dict, split: str, model: str, schema=None) -> dict:
    """One held-out character's figures (see the module docstring); eye_side_share is None when the
    schema has no eye probe (semantic_morpher)."""
    from train.semantics import eye_side_share

    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, idx), batch_size=40)
    rec = {r["row"]: r for r in evaluate_poser(loader, nets, schema, configs=["FU"]).to_records()}
    rest = _stack(ds, idx, "rest_image")
    probe = semantic_morpher(nets["morpher"], schema)
    return dict(split=split, model=model, examples=len(idx),
                morpher_region_l1=rec["morpher"]["region_l1"], identity_region_l1=rec["identity/morphed"]["region_l1"],
                morpher_ratio=rec["morpher"]["region_l1"] / rec["identity/morphed"]["region_l1"],
                poser_rmse=rec["FU"]["rmse_tha"], identity_rmse=rec["identity/posed"]["rmse_tha"],
                poser_ssim=rec["FU"]["ssim"], identity_ssim=rec["identity/posed"]["ssim"],
                eye_side_share=None if probe is None else eye_side_share(probe, rest))


def per_character(data: Path, nets: dict, splits=HELD_OUT_SPLITS, schema=None) -> list[dict]:
    """character_row for every model file of `splits`, in split then path order."""
    from dataset.torchdata import ShardDataset

    rows = []
    for split in splits:
        ds = ShardDataset(str(data), split=split)
        for model, idx in sorted(examples_by_model(ds).items()):
            rows.append(character_row(ds, idx, nets, split, model, schema))
    return rows


def pooled(rows: list[dict]) -> dict:
    """Pooled over characters: the ratio of summed changed-region errors (each character's region L1 is
    a mean over its changed pixels, so characters weigh by their example count), RMSE/SSIM means
    weighted by examples, the eye-side share over all rest images (None, and no eye check, when the
    rows have none: a schema without eye probes), and the issue's checks."""
    n = np.array([r["examples"] for r in rows], float)
    w = n / n.sum()

    def mean(key: str) -> float:
        return float((w * np.array([r[key] for r in rows])).sum())

    eyes = all(r["eye_side_share"] is not None for r in rows)
    out = dict(characters=len(rows), examples=int(n.sum()),
               morpher_ratio=mean("morpher_region_l1") / mean("identity_region_l1"),
               poser_rmse=mean("poser_rmse"), identity_rmse=mean("identity_rmse"),
               poser_ssim=mean("poser_ssim"), identity_ssim=mean("identity_ssim"),
               eye_side_share=mean("eye_side_share") if eyes else None)
    out["checks"] = {
        f"pooled morpher ratio <= {POOLED_RATIO_TARGET}": out["morpher_ratio"] <= POOLED_RATIO_TARGET,
        f"no character's morpher ratio above {CHARACTER_RATIO_LIMIT}":
            all(r["morpher_ratio"] <= CHARACTER_RATIO_LIMIT for r in rows),
        "full poser below the identity on RMSE and above it on SSIM for every character":
            all(r["poser_rmse"] < r["identity_rmse"] and r["poser_ssim"] > r["identity_ssim"] for r in rows),
    }
    if eyes:
        out["checks"][f"each eye's change on its own side in >= {EYE_SIDE_TARGET:.0%} of rest images"] = \
            out["eye_side_share"] >= EYE_SIDE_TARGET
    return out


def _share(x: float | None) -> str:
    return "–" if x is None else f"{x:.0%}"


def markdown_table(rows: list[dict], total: dict) -> list[str]:
    """The per-character table and the pooled line, as markdown lines."""
    lines = ["| split | model | examples | morpher ratio | poser RMSE (identity) | poser SSIM (identity) | eyes on own side |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['split']} | {r['model']} | {r['examples']} | {r['morpher_ratio']:.3f} | "
                     f"{r['poser_rmse']:.4f} ({r['identity_rmse']:.4f}) | {r['poser_ssim']:.4f} ({r['identity_ssim']:.4f}) | "
                     f"{_share(r['eye_side_share'])} |")
    lines.append(f"| **pooled** | {total['characters']} characters | {total['examples']} | **{total['morpher_ratio']:.3f}** | "
                 f"{total['poser_rmse']:.4f} ({total['identity_rmse']:.4f}) | {total['poser_ssim']:.4f} "
                 f"({total['identity_ssim']:.4f}) | {_share(total['eye_side_share'])} |")
    return lines


@torch.inference_mode()
def character_strip(data: Path, nets: dict, out_png: Path, zoom: int = 3, splits=HELD_OUT_SPLITS,
                    schema=None) -> None:
    """One row per held-out character: rest | morphed target | morpher output, for its example with the
    largest expression change (expression_change: for THA1 the sum of its eye and mouth values)."""
    from PIL import Image, ImageDraw

    from dataset.imageconv import tensor_to_uint8
    from dataset.torchdata import ShardDataset
    from core.imagegrid import composite_over, enlarge, tile
    from models.poser import pose_parts

    face = pose_parts(schema)[0]
    cells, names = [], []
    for split in splits:
        ds = ShardDataset(str(data), split=split)
        for model, idx in sorted(examples_by_model(ds).items()):
            best = max(idx, key=lambda i: expression_change(ds.example_info(i)["pose"], schema))
            it = ds[best]
            out = nets["morpher"](it["rest_image"][None], it["pose"][None, face])[0][0]
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
