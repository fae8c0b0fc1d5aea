"""Measuring the poser: RMSE, SSIM and THA1's configuration table.

Pixel spaces (THA1 never said which one its RMSE used, so we report two):

* ``tha``    -- the networks' own convention: RGBA, sRGB->linear on RGB, every channel
  (alpha too) mapped to [-1, 1]. RMSE here is over all pixels and all 4 channels of one
  image; the table shows the mean over images of that per-image value.
* ``srgb01`` -- what a user sees: RGBA, sRGB, every channel on [0, 1] (uint8 / 255, not
  premultiplied, no rounding of the network output). The alternative RMSE is computed
  here, and so is SSIM.

SSIM is the standard Gaussian-window SSIM of Wang et al. (2004): an 11x11 Gaussian window
of sigma 1.5 (separable, normalised, radius 5), K1 = 0.01, K2 = 0.03, data range 1 (the
srgb01 space), population (not sample) covariances, computed only where the window fits
inside the image ("valid" positions), averaged over those positions and over the four
RGBA channels. This is exactly scikit-image's
``structural_similarity(a, b, channel_axis=-1, data_range=1, gaussian_weights=True,
sigma=1.5, use_sample_covariance=False)``; tests compare against values it produced.
Everything runs in torch, batched, on the evaluation device.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from dataset.imageconv import linear_to_srgb, srgb_to_linear
from models.poser import final_image, split_pose

from .errors import TrainError

log = logging.getLogger("thactl.eval")

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

# THA1's published scores (10,000 test examples, face morpher fixed): config -> (RMSE, SSIM).
THA1_SCORES: dict[str, tuple[float, float]] = {
    "PU-L1": (0.010311, 0.837049),
    "PU-P": (0.009831, 0.837744),
    "ZH-L1": (0.010657, 0.841081),
    "ZH-P": (0.010326, 0.844812),
    "FU-L1-L1": (0.010080, 0.851760),
    "FU-L1-P": (0.009982, 0.850675),
    "FU-P-L1": (0.009870, 0.854050),
    "FU-P-P": (0.009789, 0.852795),
}

# THA1's label of each poser path (models.poser.PATHS), used for the table's configuration rows only
PATH_TO_CONFIG = {"pumarola": "PU", "zhou": "ZH", "full": "FU"}
CONFIGS = {label: path for path, label in PATH_TO_CONFIG.items()}


# ------------------------------------------------------------------------------------- colour


def tha_to_srgb01(t: torch.Tensor) -> torch.Tensor:
    """(B, 4, H, W) THA convention ([-1, 1], linear RGB) -> sRGB RGBA on [0, 1], float, unrounded."""
    x = ((t.float() + 1.0) * 0.5).clamp(0.0, 1.0)
    return torch.cat([linear_to_srgb(x[:, :3]), x[:, 3:]], dim=1)


def srgb01_to_tha(x: torch.Tensor) -> torch.Tensor:
    """Inverse of tha_to_srgb01."""
    x = x.float().clamp(0.0, 1.0)
    return torch.cat([srgb_to_linear(x[:, :3]), x[:, 3:]], dim=1) * 2.0 - 1.0


# ------------------------------------------------------------------------------------ metrics


def rmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image RMSE over all pixels and channels: (B, C, H, W) x2 -> (B,)."""
    if pred.shape != target.shape:
        raise ValueError(f"shape mismatch {tuple(pred.shape)} vs {tuple(target.shape)}")
    d = pred.float() - target.float()
    return d.square().flatten(1).mean(dim=1).sqrt()


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian taps (size,), float64 -> float32."""
    r = (size - 1) / 2.0
    x = torch.arange(size, dtype=torch.float64, device=device) - r
    g = torch.exp(-(x * x) / (2.0 * sigma * sigma))
    return (g / g.sum()).float()


def _blur_valid(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter, 'valid' positions only: (B, C, H, W) -> (B, C, H-k+1, W-k+1)."""
    c = x.shape[1]
    k = g.numel()
    gx = g.view(1, 1, 1, k).expand(c, 1, 1, k)
    gy = g.view(1, 1, k, 1).expand(c, 1, k, 1)
    return F.conv2d(F.conv2d(x, gx, groups=c), gy, groups=c)


def ssim_map(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, window: int = SSIM_WINDOW,
             sigma: float = SSIM_SIGMA, k1: float = SSIM_K1, k2: float = SSIM_K2) -> torch.Tensor:
    """Per-position, per-channel SSIM (B, C, H-window+1, W-window+1), computed in float32."""
    if a.shape != b.shape or a.dim() != 4:
        raise ValueError(f"ssim needs two (B, C, H, W) tensors of one shape, got {tuple(a.shape)}, {tuple(b.shape)}")
    if min(a.shape[-2:]) < window:
        raise ValueError(f"images of {tuple(a.shape[-2:])} are smaller than the {window}x{window} SSIM window")
    a = a.float()
    b = b.float()
    g = gaussian_window(window, sigma, device=a.device)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    # one conv pass over the five moments, stacked on the channel axis
    n, c = a.shape[:2]
    stats = _blur_valid(torch.cat([a, b, a * a, b * b, a * b], dim=1), g)
    mu_a, mu_b, aa, bb, ab = stats.split(c, dim=1)
    var_a = aa - mu_a * mu_a
    var_b = bb - mu_b * mu_b
    cov = ab - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
    return num / den


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, **kw) -> torch.Tensor:
    """Per-image SSIM (B,): the mean of ssim_map over valid positions and channels."""
    return ssim_map(a, b, data_range=data_range, **kw).flatten(1).mean(dim=1)


CHANGE_THRESHOLD = 2.0 / 255.0  # a pixel changed when some sRGB [0, 1] RGBA channel moved by more than this
CHANGE_DILATION = 2  # ... then the mask grows by this many pixels (a (2d+1) x (2d+1) square)
CHANGED_REGION_TEXT = (f"error over the changed region only: pixels where the target differs from the input by "
                       f"more than {round(CHANGE_THRESHOLD * 255)}/255 in some sRGB RGBA channel, dilated "
                       f"{CHANGE_DILATION} px; L1 and RMSE pooled over those pixels and 4 channels of all "
                       "images, in the network convention [-1, 1] linear RGB")


def changed_region(input_tha: torch.Tensor, target_tha: torch.Tensor, threshold: float = CHANGE_THRESHOLD,
                   dilation: int = CHANGE_DILATION) -> torch.Tensor:
    """(B, 1, H, W) bool: where the target differs from the input (THA convention both).

    A pixel is in the region when any RGBA channel, in sRGB [0, 1] (what a user sees), differs
    by more than `threshold`; the set is then dilated by `dilation` pixels (square window).
    """
    if input_tha.shape != target_tha.shape or input_tha.dim() != 4:
        raise ValueError(f"changed_region needs two (B, C, H, W) tensors of one shape, got "
                         f"{tuple(input_tha.shape)}, {tuple(target_tha.shape)}")
    diff = (tha_to_srgb01(input_tha) - tha_to_srgb01(target_tha)).abs().amax(dim=1, keepdim=True)
    mask = (diff > threshold).float()
    if dilation > 0:
        mask = F.max_pool2d(mask, 2 * dilation + 1, stride=1, padding=dilation)
    return mask > 0.5


def region_error_sums(pred_tha: torch.Tensor, target_tha: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image sums over the masked pixels, in the networks' convention ([-1, 1], linear RGB):
    "abs" = sum |pred - target|, "sq" = sum (pred - target)^2, "count" = masked pixels x channels.

    Pooled over images, L1 = sum(abs) / sum(count), RMSE = sqrt(sum(sq) / sum(count)).
    """
    d = (pred_tha.float().clamp(-1, 1) - target_tha.float()) * mask
    channels = pred_tha.shape[1]
    return {"abs": d.abs().flatten(1).sum(1), "sq": d.square().flatten(1).sum(1),
            "count": mask.flatten(1).sum(1).float() * channels}


@dataclass
class RegionMeter:
    """Pooled changed-region L1 and RMSE of one output over many images."""

    abs_sum: float = 0.0
    sq_sum: float = 0.0
    count: float = 0.0

    def add(self, sums: dict[str, torch.Tensor]) -> None:
        self.abs_sum += float(sums["abs"].double().sum())
        self.sq_sum += float(sums["sq"].double().sum())
        self.count += float(sums["count"].double().sum())

    def l1(self) -> float:
        return self.abs_sum / self.count if self.count else float("nan")

    def rmse(self) -> float:
        return math.sqrt(self.sq_sum / self.count) if self.count else float("nan")


@torch.no_grad()
def morpher_region_ratio(morpher, rest: torch.Tensor, morphed: torch.Tensor, pose3: torch.Tensor,
                         batch: int = 100) -> float:
    """The morpher's changed-region L1 over the identity's (1.0 = copies its input), pooled over the
    examples: rest and morphed (N, 4, H, W) THA images, pose3 (N, F): the face part of the pose (THA1's
    pose[3:6]; a schema's `face` parameters)."""
    model, ident = RegionMeter(), RegionMeter()
    for i in range(0, len(rest), batch):
        x, t, p = rest[i:i + batch], morphed[i:i + batch], pose3[i:i + batch]
        mask = changed_region(x, t)
        model.add(region_error_sums(morpher(x, p)[0], t, mask))
        ident.add(region_error_sums(x, t, mask))
    return model.l1() / ident.l1()


def score_images(pred_tha: torch.Tensor, target_tha: torch.Tensor) -> dict[str, torch.Tensor]:
    """All per-image scores of a batch given in THA convention: rmse_tha, rmse_srgb01, ssim (B,)."""
    p01 = tha_to_srgb01(pred_tha)
    t01 = tha_to_srgb01(target_tha)
    return {"rmse_tha": rmse(pred_tha.float().clamp(-1, 1), target_tha.float()),
            "rmse_srgb01": rmse(p01, t01),
            "ssim": ssim(p01, t01, data_range=1.0)}


METRICS = ("rmse_tha", "rmse_srgb01", "ssim")


@dataclass
class Meter:
    """Running sums of per-image scores."""

    n: int = 0
    sums: dict = field(default_factory=lambda: {m: 0.0 for m in METRICS})
    sq: dict = field(default_factory=lambda: {m: 0.0 for m in METRICS})

    def add(self, scores: dict[str, torch.Tensor]) -> None:
        for m in METRICS:
            v = scores[m].double()
            self.sums[m] += float(v.sum())
            self.sq[m] += float(v.square().sum())
        self.n += int(scores[METRICS[0]].numel())

    def mean(self, m: str) -> float:
        return self.sums[m] / self.n if self.n else float("nan")

    def std(self, m: str) -> float:
        if self.n < 2:
            return float("nan")
        mu = self.mean(m)
        return math.sqrt(max(self.sq[m] / self.n - mu * mu, 0.0))


# ---------------------------------------------------------------------------------- the table

ROW_INFO = {
    "identity/morphed": ("rest -> morphed", "baseline: the rest image itself, no network"),
    "identity/posed": ("rest -> posed", "baseline: the rest image itself, no network"),
    "identity/rotated": ("morphed -> posed", "baseline: the true morphed image itself, no network"),
    "morpher": ("rest -> morphed", "face morpher alone"),
    "rotator/pumarola": ("morphed -> posed", "rotator alone, Pumarola path (true morphed input)"),
    "rotator/zhou": ("morphed -> posed", "rotator alone, Zhou path (true morphed input)"),
    "rotator+combiner": ("morphed -> posed", "rotator + combiner (true morphed input)"),
    "PU": ("rest -> posed", "full poser, Pumarola path only"),
    "ZH": ("rest -> posed", "full poser, Zhou path only"),
    "FU": ("rest -> posed", "full poser, both paths + combiner"),
}


@dataclass
class EvalResult:
    split: str
    num_examples: int
    rows: dict[str, Meter]
    tha1_variant: dict[str, str]  # config -> THA1 row name shown beside it
    seconds: float
    device: str
    sources: dict[str, str]
    regions: dict[str, RegionMeter] = field(default_factory=dict)  # row -> its changed-region errors

    def to_records(self) -> list[dict]:
        out = []
        for name, meter in self.rows.items():
            task, what = ROW_INFO[name]
            rec = {"row": name, "task": task, "what": what, "n": meter.n}
            for m in METRICS:
                rec[m] = meter.mean(m)
                sd = meter.std(m)
                rec[m + "_std"] = None if math.isnan(sd) else sd  # keep the JSON strict
            region = self.regions.get(name)
            if region is not None and region.count:
                rec["region_l1"], rec["region_rmse"] = region.l1(), region.rmse()
            else:
                rec["region_l1"], rec["region_rmse"] = None, None
            variant = self.tha1_variant.get(name)
            if variant:
                rec["tha1_config"] = variant
                rec["tha1_rmse"], rec["tha1_ssim"] = THA1_SCORES[variant]
            else:
                rec["tha1_config"], rec["tha1_rmse"], rec["tha1_ssim"] = "", None, None
            out.append(rec)
        return out

    def to_json(self) -> dict:
        return {
            "split": self.split, "num_examples": self.num_examples, "device": self.device,
            "seconds": self.seconds, "weights": self.sources,
            "pixel_spaces": {
                "rmse_tha": "RGBA, sRGB->linear on RGB, all channels on [-1, 1] (the networks' "
                            "convention); per image over all pixels and 4 channels, mean over images",
                "rmse_srgb01": "RGBA, sRGB, all channels on [0, 1], not premultiplied; per image, "
                               "mean over images",
                "ssim": f"Gaussian window {SSIM_WINDOW}x{SSIM_WINDOW} sigma {SSIM_SIGMA}, K1={SSIM_K1}, "
                        f"K2={SSIM_K2}, data range 1 on sRGB RGBA [0, 1], valid positions, mean over the "
                        "4 channels, then over images",
                "region_l1/region_rmse": CHANGED_REGION_TEXT,
            },
            "tha1_published": {k: {"rmse": v[0], "ssim": v[1]} for k, v in THA1_SCORES.items()},
            "rows": self.to_records(),
        }

    def format_table(self) -> str:
        head = (f"{'row':<17} {'task':<17} {'n':>6}  {'RMSE[-1,1]lin':>13} {'RMSE[0,1]sRGB':>13} "
                f"{'SSIM':>8} {'chg L1':>8} {'chg RMSE':>8}   {'THA1 config':<11} {'THA1 RMSE':>9} {'THA1 SSIM':>9}")
        lines = [head, "-" * len(head)]
        for r in self.to_records():
            tha1 = (f"{r['tha1_config']:<11} {r['tha1_rmse']:>9.6f} {r['tha1_ssim']:>9.6f}"
                    if r["tha1_config"] else f"{'':<11} {'':>9} {'':>9}")
            region = (f"{r['region_l1']:>8.5f} {r['region_rmse']:>8.5f}" if r["region_l1"] is not None
                      else f"{'':>8} {'':>8}")
            lines.append(f"{r['row']:<17} {r['task']:<17} {r['n']:>6}  {r['rmse_tha']:>13.6f} "
                         f"{r['rmse_srgb01']:>13.6f} {r['ssim']:>8.6f} {region}   {tha1}")
        lines.append("")
        lines.append("RMSE[-1,1]lin: RGBA, linear RGB, every channel on [-1, 1] (network convention); "
                     "RMSE[0,1]sRGB: RGBA sRGB on [0, 1].")
        lines.append(f"SSIM: Gaussian {SSIM_WINDOW}x{SSIM_WINDOW}, sigma {SSIM_SIGMA}, K1 {SSIM_K1}, "
                     f"K2 {SSIM_K2}, on sRGB RGBA [0, 1], mean over the 4 channels. THA1 did not state "
                     "its RMSE range; its numbers are for 10,000 test examples at 256x256.")
        lines.append(f"chg L1 / chg RMSE: {CHANGED_REGION_TEXT}.")
        return "\n".join(lines)

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        jpath = out_dir / f"eval-{self.split}.json"
        cpath = out_dir / f"eval-{self.split}.csv"
        jpath.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        recs = self.to_records()
        with cpath.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(recs[0].keys()) if recs else ["row"])
            w.writeheader()
            for r in recs:
                w.writerow(r)
        return jpath, cpath


def tha1_variant_for(config: str, rotator_loss: str = "L1", combiner_loss: str = "L1") -> str:
    """The THA1 row to print beside our config: PU-L1, ZH-P, FU-L1-L1, ..."""
    r = "P" if rotator_loss.lower().startswith("p") else "L1"
    c = "P" if combiner_loss.lower().startswith("p") else "L1"
    return f"{config}-{r}" if config in ("PU", "ZH") else f"FU-{r}-{c}"


def select_configs(path: str | None, have_combiner: bool) -> list[str]:
    """--path pumarola|zhou|full|all -> config names. Default: FU when a combiner is given, else PU+ZH."""
    if path is None:
        return ["FU"] if have_combiner else ["PU", "ZH"]
    if path == "all":
        return ["PU", "ZH"] + (["FU"] if have_combiner else [])
    if path not in PATH_TO_CONFIG:
        raise TrainError(f"--path must be pumarola, zhou, full or all, got {path!r}")
    if path == "full" and not have_combiner:
        raise TrainError("--path full needs a combiner (--combiner RUN or combiner.safetensors in --weights)")
    return [PATH_TO_CONFIG[path]]


def row_names(configs, stages: bool, have_combiner: bool) -> list[str]:
    """The table's rows in order (ROW_INFO describes each): stage rows, then one per config."""
    names: list[str] = []
    if stages:
        names += ["identity/morphed", "identity/posed", "identity/rotated", "morpher", "rotator/pumarola",
                  "rotator/zhou"]
        if have_combiner:
            names.append("rotator+combiner")
    return names + list(configs)


def check_schemas(data_schema, weights_schema, data: str) -> None:
    """The data and the weights must follow one pose schema (None: THA1's six); else one TrainError line."""
    def describe(schema) -> str:
        return "tha1 (6 parameters)" if schema is None else f"{schema.name} ({schema.size} parameters)"

    def as_json(schema):
        return None if schema is None else schema.to_json()

    if as_json(data_schema) != as_json(weights_schema):
        raise TrainError(f"{data}: the data's pose schema is {describe(data_schema)}, the weights were trained "
                         f"on {describe(weights_schema)}: evaluate weights on data of their own schema")


def score_batch(rows: dict[str, Meter], regions: dict[str, RegionMeter], rest, morphed_t, posed_t, pose,
                morpher, rotator, combiner, configs, stages: bool, schema=None) -> None:
    """Add one batch's per-image scores to every row of `rows`, and its changed-region sums (the region
    where the row's target differs from its input) to `regions` (the one place eval rows are scored).
    `pose` (B, P) is split by `schema` (None: THA1's six numbers)."""
    def score(name: str, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        rows[name].add(score_images(pred, target))
        regions[name].add(region_error_sums(pred, target, mask))

    expr, rot = split_pose(pose, schema)
    morphed = morpher(rest, expr)[0]
    posed_mask = changed_region(rest, posed_t)
    if stages:
        morph_mask, rotate_mask = changed_region(rest, morphed_t), changed_region(morphed_t, posed_t)
        score("identity/morphed", rest, morphed_t, morph_mask)
        score("identity/posed", rest, posed_t, posed_mask)
        score("identity/rotated", morphed_t, posed_t, rotate_mask)
        score("morpher", morphed, morphed_t, morph_mask)
        pu, zh = rotator(morphed_t, rot)[:2]
        score("rotator/pumarola", pu, posed_t, rotate_mask)
        score("rotator/zhou", zh, posed_t, rotate_mask)
        if combiner is not None:
            score("rotator+combiner", final_image("full", pu, zh, rot, combiner), posed_t, rotate_mask)
    if configs:
        pu, zh = rotator(morphed, rot)[:2]
        for cfg in configs:
            score(cfg, final_image(CONFIGS[cfg], pu, zh, rot, combiner), posed_t, posed_mask)


@torch.inference_mode()
def evaluate(loader, morpher, rotator, combiner=None, configs=("PU", "ZH"), stages: bool = True,
             device: str | torch.device = "cpu", limit: int | None = None, progress=None,
             tha1_variant: dict[str, str] | None = None, split: str = "test",
             sources: dict[str, str] | None = None, schema=None) -> EvalResult:
    """Score the poser over `loader` (batches of ShardDataset items).

    Full-chain rows (input = rest image, target = posed image, pose from the shard) for each
    config in `configs`; with `stages`, also the morpher alone (rest -> morphed) and the rotator
    (each path) and rotator+combiner on the TRUE morphed image (morphed -> posed), and two
    baselines that predict the rest image unchanged (what a network must beat). `schema`: the pose
    schema of the data and the networks (None: THA1's six numbers).
    """
    device = torch.device(device)
    for m in (morpher, rotator, combiner):
        if m is not None:
            m.to(device).eval()
    rows = {n: Meter() for n in row_names(configs, stages, combiner is not None)}
    regions = {n: RegionMeter() for n in rows}
    t0 = time.perf_counter()
    seen = 0
    for batch in loader:
        rest = batch["rest_image"].to(device)
        morphed_t = batch["morphed_image"].to(device)
        posed_t = batch["posed_image"].to(device)
        pose = batch["pose"].to(device)
        if limit is not None and seen + rest.shape[0] > limit:
            k = limit - seen
            rest, morphed_t, posed_t, pose = rest[:k], morphed_t[:k], posed_t[:k], pose[:k]
        if rest.shape[0] == 0:
            break
        score_batch(rows, regions, rest, morphed_t, posed_t, pose, morpher, rotator, combiner, configs, stages,
                    schema)
        seen += rest.shape[0]
        if progress is not None:
            progress(rest.shape[0])
        if limit is not None and seen >= limit:
            break
    if seen == 0:
        raise TrainError("no examples to evaluate (empty split?)")
    variants = tha1_variant or {c: tha1_variant_for(c) for c in configs}
    return EvalResult(split=split, num_examples=seen, rows=rows, tha1_variant=variants,
                      seconds=time.perf_counter() - t0, device=str(device), sources=sources or {},
                      regions=regions)
