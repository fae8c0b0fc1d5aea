"""The learning check's pictures and text: validation curves (Pillow only), the held-out sample
sheet and report.md. Used by bench/learning_check.py."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]
PANEL_W, PANEL_H, MARGIN = 420, 260, 48


def _validation_records(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r.get("split") == "validation"]


def _series(records: list[dict], prefix: str) -> dict[str, list[tuple[int, float]]]:
    """{output name: [(examples, value)]} for every key `prefix + name` (identity included)."""
    out: dict[str, list[tuple[int, float]]] = {}
    for r in records:
        for k, v in r.items():
            if k.startswith(prefix) and isinstance(v, (int, float)):
                out.setdefault(k[len(prefix):], []).append((r["examples"], float(v)))
    return out


def _panel(draw: ImageDraw.ImageDraw, x0: int, y0: int, title: str, series: dict) -> None:
    """One plot: each series a polyline, identity dashed grey, axes with min/max labels."""
    draw.text((x0 + MARGIN, y0 + 6), title, fill=(0, 0, 0))
    pts = [p for s in series.values() for p in s]
    if not pts:
        draw.text((x0 + MARGIN, y0 + PANEL_H // 2), "no data", fill=(0, 0, 0))
        return
    xmax = max(p[0] for p in pts) or 1
    trained = [p for p in pts if p[0] > 0] or pts  # the untrained start would flatten the rest: clipped
    ylo, yhi = min(p[1] for p in trained), max(p[1] for p in trained)
    yhi = yhi if yhi > ylo else ylo + 1e-6
    left, top, right, bottom = x0 + MARGIN, y0 + 26, x0 + PANEL_W - 10, y0 + PANEL_H - 30
    draw.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    to_xy = lambda p: (left + (right - left) * p[0] / xmax,  # noqa: E731
                       bottom - (bottom - top) * min(max((p[1] - ylo) / (yhi - ylo), 0.0), 1.0))
    draw.text((x0 + 2, top - 4), f"{yhi:.4f}", fill=(0, 0, 0))
    draw.text((x0 + 2, bottom - 8), f"{ylo:.4f}", fill=(0, 0, 0))
    draw.text((right - 60, top - 14), f"{xmax} ex", fill=(0, 0, 0))
    legend_y = bottom + 4
    for i, (name, s) in enumerate(sorted(series.items(), key=lambda kv: kv[0] == "identity")):
        colour = (128, 128, 128) if name == "identity" else COLOURS[i % len(COLOURS)]
        xy = [to_xy(p) for p in sorted(s)]
        if name == "identity":
            for a, b in zip(xy[::2], xy[1::2]):
                draw.line([a, b], fill=colour, width=2)
        elif len(xy) > 1:
            draw.line(xy, fill=colour, width=2)
        for x, y in xy:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        draw.text((left + 4 + 80 * i, legend_y), name, fill=colour)


def draw_curves(metrics: dict[str, Path], out_png: Path) -> None:
    """Rows: stages; columns: whole-image L1 and changed-region L1, each against the identity."""
    img = Image.new("RGB", (2 * PANEL_W, len(metrics) * PANEL_H), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for row, (kind, path) in enumerate(metrics.items()):
        records = _validation_records(path)
        whole = {k: v for k, v in _series(records, "l1_").items()}
        region = _series(records, "region_l1_")
        _panel(draw, 0, row * PANEL_H, f"{kind}: validation L1, whole image", whole)
        _panel(draw, PANEL_W, row * PANEL_H, f"{kind}: validation L1, changed region", region)
    img.save(out_png)


@torch.inference_mode()
def sample_sheet(nets: dict, test, out_png: Path, count: int = 6, zoom: int = 4, schema=None) -> None:
    """Rows of held-out examples: rest | morphed target | morpher output | posed target | full poser,
    the pose split by the data's `schema` (models.poser.Poser; None: THA1's six numbers)."""
    from dataset.imageconv import tensor_to_uint8
    from core.imagegrid import composite_over, enlarge, tile
    from models.poser import Poser

    picks = np.linspace(0, len(test) - 1, count).round().astype(int)
    items = [test[int(i)] for i in picks]
    rest = torch.stack([it["rest_image"] for it in items])
    pose = torch.stack([it["pose"] for it in items])
    final, morphed = Poser(nets["morpher"], nets["rotator"], nets["combiner"], path="full", schema=schema)(rest, pose)[:2]
    columns = [rest, torch.stack([it["morphed_image"] for it in items]), morphed,
               torch.stack([it["posed_image"] for it in items]), final]
    cells = []
    for r in range(count):
        for col in columns:
            cells.append(enlarge(composite_over(tensor_to_uint8(col[r]), (128, 128, 128)), zoom))
    Image.fromarray(tile(cells, columns=len(columns), pad=4, top=20, background=255)).save(out_png)
    with Image.open(out_png) as im:
        im = im.convert("RGB")
        draw = ImageDraw.Draw(im)
        size = cells[0].shape[0]
        for c, name in enumerate(("rest", "morphed target", "morpher output", "posed target", "full poser")):
            draw.text((4 + c * (size + 4) + 4, 4), name, fill=(0, 0, 0))
        im.save(out_png)


def write_markdown(report: dict, table: str, out_md: Path) -> None:
    """report.md: configuration, wall time, checks, centroids, curve end points, the table."""
    sec = report["seconds"]
    lines = ["# thactl learning check", "",
             f"models: {report['models']}; torch threads: {report['threads']}; "
             f"load average at the end: {', '.join(f'{x:.1f}' for x in report['load_average_at_end'])}", ""]
    if report.get("schema"):           # absent for THA1's six numbers
        sch = report["schema"]
        lines += [f"pose schema: {sch['name']} ({sch['parameters']} parameters); the eye and mouth probes: "
                  + (", ".join(f"{k} = {v}" for k, v in sch["probes"].items()) or "none (no semantic checks)"), ""]
    if report.get("small"):
        lines += ["size: small (--small: the short configuration below; not the size the checks are meant for)", ""]
    lines += ["## Wall time (s)", "",
             ", ".join(f"{k} {v:.0f}" for k, v in sec.items()), "",
             "## Checks (test split: characters never seen in training)", ""]
    lines += [f"- [{'PASS' if ok else 'FAIL'}] {name}" for name, ok in report["checks"].items()]
    gap = report.get("morpher_region_ratio")
    if gap:
        lines += ["", "## Morpher changed-region ratio by split (1.0 = copies its input)", "",
                  ", ".join(f"{k} {v:.3f}" for k, v in gap.items())]
        if gap.get("test", 0.0) - gap.get("train", 1.0) > 0.1:
            lines += ["", "Training characters well below the held-out ones: the network learned its "
                      "characters more than what the pose does (more characters is the remedy; README, "
                      "the data-size table of the morpher)."]
    held = report.get("held_out")
    if held and held["characters"]:
        from per_character import markdown_table

        total = held["pooled"]
        lines += ["", f"## Held-out characters ({held['file']})", "",
                  "Morpher ratio: changed-region L1 over the identity's (1.0 = copies its input); poser: "
                  "the full chain from the rest image, against the rest image unchanged.", ""]
        lines += markdown_table(held["characters"], total)
        lines += [""] + [f"- [{'PASS' if ok else 'FAIL'}] {name}" for name, ok in total["checks"].items()]
    lines += ["", "## Morpher change centroids (image fractions; x from the left, y from the top)", ""]
    lines += [f"- {k}: x {c['x']:.3f}, y {c['y']:.3f}, right-half share {c['right_share']:.2f}, mass {c['mass']:.2f}"
              for k, c in report["centroids"].items()]
    lines += ["", "## Validation curve end points", ""]
    for kind, end in report["curve_end"].items():
        lines.append(f"- {kind}: " + ", ".join(f"{k} {v:.5f}" if isinstance(v, float) else f"{k} {v}"
                                               for k, v in end.items()))
    lines += ["", "## Configuration", "", "```", json.dumps(report["config"], indent=1), "```", "",
              "## Final table (test split)", "", "```", table, "```", ""]
    out_md.write_text("\n".join(lines), encoding="utf-8")
