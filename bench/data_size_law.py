"""The morpher's data-size law: held-out changed-region ratio against the number of training model files.

    .venv/bin/python bench/data_size_law.py RUN.json [RUN.json ...] --out docs/data-size-law.png

Each RUN.json is written by `bench/morpher_generalisation.py --characters K --json RUN.json` on one data
folder (K = 0 means every training file). This script reads the last curve point of every run (the ratio
on training / validation / test examples), fits a power law
ratio = c * K^b to the held-out (test) ratios (least squares on log10 ratio against log10 K, each seed a
point; a power law stays positive, as the ratio does), prints the table and the fit,
the fit's predictions for 500, 2,000 and 7,881 models (THA1's count) marked as an extrapolation, and
draws train and held-out ratio against K (log scale) with the fitted line.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

PREDICT_AT = (500, 2000, 7881)


def load_runs(paths: list[Path]) -> dict[int, list[dict]]:
    """{K: [last curve point of each seed]}; K=0 (all) is replaced by the training file count."""
    runs: dict[int, list[dict]] = {}
    for p in paths:
        d = json.loads(p.read_text(encoding="utf-8"))
        k = int(d["args"]["characters"]) or int(d.get("train_files", 0))
        if not k:
            raise SystemExit(f"{p}: --characters 0 and no train_files recorded; give K explicitly")
        runs.setdefault(k, []).append(d["curve"][-1])
    return dict(sorted(runs.items()))


def fit_power(ks: list[int], ys: list[float]) -> tuple[float, float]:
    """(c, b) of y = c * k^b: least squares of log10 y on log10 k."""
    xs = [math.log10(k) for k in ks]
    ys = [math.log10(y) for y in ys]
    n, mx, my = len(xs), sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    return 10 ** (my - b * mx), b


def predict(fit: tuple[float, float], k: float) -> float:
    return fit[0] * k ** fit[1]


def table(runs: dict[int, list[dict]]) -> list[str]:
    lines = ["| training model files | seeds | train | validation | test (held out) |", "|---|---|---|---|---|"]
    for k, pts in runs.items():
        mean = {s: sum(p[s] for p in pts) / len(pts) for s in ("train", "validation", "test")}
        each = " / ".join(f"{p['test']:.3f}" for p in pts)
        lines.append(f"| {k} | {len(pts)} | {mean['train']:.3f} | {mean['validation']:.3f} | {mean['test']:.3f} ({each}) |")
    return lines


def plot(runs: dict[int, list[dict]], fit: tuple[float, float], out: Path) -> None:
    from PIL import Image, ImageDraw

    w, h, m = 640, 400, 56
    img = Image.new("RGB", (w, h), (255, 255, 255))
    d = ImageDraw.Draw(img)
    kmax = max(max(runs), PREDICT_AT[-1])
    lx = lambda k: m + (w - 2 * m) * math.log10(k) / math.log10(kmax)  # noqa: E731
    ly = lambda r: h - m - (h - 2 * m) * min(max(r, 0.0), 1.2) / 1.2  # noqa: E731
    d.rectangle([m, m, w - m, h - m], outline=(0, 0, 0))
    for r in (0.0, 0.25, 0.5, 0.75, 1.0):
        d.line([m, ly(r), w - m, ly(r)], fill=(225, 225, 225))
        d.text((8, ly(r) - 6), f"{r:.2f}", fill=(0, 0, 0))
    for k in (1, 10, 100, 1000, 7881):
        if k <= kmax:
            d.text((lx(k) - 10, h - m + 6), str(k), fill=(0, 0, 0))
    ks = [min(runs) * (kmax / min(runs)) ** (i / 40) for i in range(41)]
    d.line([(lx(k), ly(predict(fit, k))) for k in ks], fill=(214, 39, 40), width=1)
    for split, colour in (("train", (31, 119, 180)), ("test", (214, 39, 40))):
        for k, ps in runs.items():
            for p in ps:
                d.ellipse([lx(k) - 3, ly(p[split]) - 3, lx(k) + 3, ly(p[split]) + 3], fill=colour)
    d.text((m, 10), "morpher changed-region ratio (1.0 = copies its input) vs training model files (log)", fill=(0, 0, 0))
    d.text((m, 26), "blue: training characters   red: held-out characters; line: fit, extrapolated past the data",
           fill=(0, 0, 0))
    img.save(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("data-size-law.png"))
    a = ap.parse_args(argv)
    runs = load_runs(a.runs)
    ks = [k for k, pts in runs.items() for _ in pts]
    ys = [p["test"] for pts in runs.values() for p in pts]
    fit = fit_power(ks, ys)
    print("\n".join(table(runs)))
    print(f"\nfit on the held-out ratio: {fit[0]:.3f} * K^{fit[1]:.3f}")
    for k in PREDICT_AT:
        print(f"extrapolation (beyond the data): K = {k}: {predict(fit, k):.3f}")
    plot(runs, fit, a.out)
    print(f"plot: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
