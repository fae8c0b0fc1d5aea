"""`thactl inspect`: summaries, pose statistics, contact sheets and full verification.

Works on a data folder (OUT with manifest.json), a split folder, or one shard.
Needs only h5py, numpy and Pillow (no OpenGL).
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from dataset.errors import DatasetError, ShardError
from dataset.poses import expected_fractions
from dataset.shards import SPLITS, ShardReader, verify_shard
from core.imagegrid import cell_origin, composite_over, enlarge, tile
from core.pose import POSE_NAMES

BARS = " ▁▂▃▄▅▆▇█"
NBINS = 10


def _spark(fr: np.ndarray, top: float) -> str:
    if top <= 0:
        return " " * len(fr)
    return "".join(BARS[min(len(BARS) - 1, int(round(f / top * (len(BARS) - 1))))] for f in fr)


def pose_stat_lines(poses: np.ndarray) -> list[str]:
    """Text histograms of each pose component against the intended distribution."""
    if len(poses) == 0:
        return ["pose statistics: no examples"]
    if poses.shape[1] != len(POSE_NAMES):     # a pose schema's data (docs/pose-schemas.md)
        active = (poses != np.median(poses, axis=0)).mean(axis=0)
        return [f"pose statistics: {poses.shape[1]} parameters (a pose schema); share of examples away "
                f"from the median per parameter: min {active.min():.0%}, mean {active.mean():.0%}, "
                f"max {active.max():.0%}"]
    lines = [f"pose statistics over {len(poses)} examples ({NBINS} bins; observed | intended):"]
    for c, name in enumerate(POSE_NAMES):
        lo = -1.0 if c < 3 else 0.0
        edges = np.linspace(lo, 1.0, NBINS + 1)
        obs = np.histogram(np.clip(poses[:, c], lo, 1.0), bins=edges)[0] / len(poses)
        exp = expected_fractions(c, edges)
        top = max(obs.max(), exp.max())
        dev = np.abs(obs - exp).max()
        lines.append(f"  {name:9s} [{lo:+.0f},+1] {_spark(obs, top)} | {_spark(exp, top)}  "
                     f"mean {poses[:, c].mean():+.3f}  max bin deviation {dev:.1%}")
    same = float(np.mean(np.isclose(poses[:, 3], poses[:, 4])))
    lines.append(f"  left_eye == right_eye in {same:.1%} of examples (models without one-eye morphs)")
    return lines


# ------------------------------------------------------------------------------ sheet

def contact_sheet(rows: list[dict], out_path: str | Path) -> Path:
    """rows: dicts with rest_image, morphed_image, posed_image (uint8 RGBA), pose, title."""
    from PIL import Image, ImageDraw, ImageFont

    s0 = rows[0]["rest_image"].shape[0]
    zoom = -(-128 // s0) if s0 < 128 else 1  # small images are enlarged (nearest) so the captions fit
    s = s0 * zoom
    label_h = 30
    pad = 4
    layout = dict(pad=pad, gap_below=label_h, top=16)
    cells = [enlarge(composite_over(r[key], (128, 128, 128)), zoom)
             for r in rows for key in ("rest_image", "morphed_image", "posed_image")]
    sheet = Image.fromarray(tile(cells, 3, background=(40, 40, 40), **layout))
    w = sheet.width
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    draw.text((pad, 2), "rest | morphed (expression only) | posed (expression + rotation)",
              fill=(230, 230, 230), font=font)
    for i, r in enumerate(rows):
        _, y = cell_origin(3 * i, 3, s, **layout)
        p = r["pose"]
        text1 = (f"hx {p[0]:+.2f} hy {p[1]:+.2f} nz {p[2]:+.2f}  le {p[3]:.2f} re {p[4]:.2f} "
                 f"m {p[5]:.2f}  amb {r.get('ambient', float('nan')):.2f}")
        draw.text((pad, y + s + 2), text1, fill=(255, 255, 255), font=font)
        draw.text((pad, y + s + 15), str(r.get("title", ""))[: w // 6], fill=(180, 180, 180), font=font)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        sheet.save(out_path)
    except (ValueError, OSError) as e:  # no/unknown extension, unwritable path
        raise DatasetError(f"{out_path}: cannot write the contact sheet ({e}); use a .png name") from None
    return out_path


# ------------------------------------------------------------------------------ main

def _shards_of(path: Path) -> tuple[dict | None, list[tuple[str | None, Path]]]:
    """(manifest or None, [(split or None, shard path)])."""
    if path.is_file():
        if path.name == "manifest.json":
            path = path.parent
        else:
            return None, [(None, path)]
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    man_path = path / "manifest.json"
    if man_path.is_file():
        try:
            man = json.loads(man_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise DatasetError(f"{man_path}: unreadable manifest ({e})") from None
        out = []
        for s in SPLITS:
            for sh in man.get("splits", {}).get(s, {}).get("shards", []):
                out.append((s, path / sh["file"]))
        return man, out
    direct = sorted(path.glob("shard-*.h5"))
    if direct:
        return None, [(None, p) for p in direct]
    found = [(s, p) for s in SPLITS for p in sorted((path / s).glob("shard-*.h5"))]
    if not found:
        raise DatasetError(f"{path}: no manifest.json and no shards (shard-*.h5) found")
    return None, found


def inspect_path(path: str | Path, sheet: str | Path | None = None, examples: int = 8,
                 verify: bool = False, seed: int = 0, echo: Callable[[str], None] = print,
                 list_limit: int = 60) -> bool:
    """Print a summary; optionally write a contact sheet and verify everything.
    Returns False when verification (or reading) found problems."""
    path = Path(path)
    man, shards = _shards_of(path)
    problems: list[str] = []
    if man is not None:
        echo(f"data folder {path}  (seed {man.get('seed')}, "
             f"{'complete' if man.get('complete') else 'NOT complete'})")
        req = man.get("request", {})
        echo(f"settings: size {req.get('size')}, aa {req.get('aa')}, shading {req.get('shading')}, "
             f"shard size {req.get('shard_size')}, ambient {req.get('ambient')}, models {req.get('models')}")
    stats = _read_shards(shards, problems)
    if not stats.readers and problems and man is None:
        raise DatasetError(problems[0] if len(problems) == 1
                           else f"{path}: no readable shard ({problems[0]})")
    if stats.single is not None:
        _echo_single_shard(shards[0][1], stats.single, echo)
    _echo_split_table(stats.per_split, man, verify, problems, echo)
    if man is not None:
        _echo_models(man, verify, problems, echo, list_limit)
    if stats.poses:
        for line in pose_stat_lines(np.concatenate(stats.poses)):
            echo(line)
    if verify:
        problems += _verify(man, stats.readers)
        echo(f"verify: {len(stats.readers)} shards read fully")
    _echo_sheet(stats.readers, sheet, examples, seed, echo)
    if problems:
        echo(f"PROBLEMS ({len(problems)}):")
        for p in problems:
            echo(f"  {p}")
        return False
    if verify:
        echo("verify: OK")
    return True


@dataclass
class _ShardStats:
    """What one pass over the shards' small arrays found."""
    per_split: dict[str, dict]                 # split -> examples, shards, models (set), bytes
    poses: list[np.ndarray] = field(default_factory=list)
    readers: list[tuple[str, Path, int]] = field(default_factory=list)   # (split, shard, examples)
    single: dict | None = None                 # details when there is exactly one shard


def _read_shards(shards: list[tuple[str | None, Path]], problems: list[str]) -> _ShardStats:
    """Open every shard once (counts, models, poses); unreadable ones are added to `problems`."""
    stats = _ShardStats(defaultdict(lambda: dict(examples=0, shards=0, models=set(), bytes=0)))
    seen_models: dict[str, str] = {}
    for split, sp in shards:
        if not sp.is_file():
            problems.append(f"{sp}: missing (listed in the manifest)")
            continue
        try:
            with ShardReader(sp) as r:
                s = split or r.split
                d = stats.per_split[s]
                d["examples"] += r.num_examples
                d["shards"] += 1
                d["bytes"] += sp.stat().st_size
                d["models"].update(r.model_path)
                for mp_ in set(r.model_path):
                    if seen_models.setdefault(mp_, s) != s:
                        problems.append(f"model {mp_} appears in both {seen_models[mp_]} and {s}")
                stats.poses.append(r.pose)
                stats.readers.append((s, sp, r.num_examples))
                if len(shards) == 1:
                    stats.single = dict(split=r.split, size=r.image_size, seed=r.seed, models=r.num_models,
                                        rows=Counter(r.model_path), amb=r.ambient)
        except ShardError as e:
            problems.append(str(e))
    return stats


def _echo_single_shard(shard: Path, single: dict, echo: Callable[[str], None]) -> None:
    echo(f"shard {shard}: split {single['split']}, {single['size']}x{single['size']}, "
         f"seed {single['seed']}, {single['models']} model rows")
    for mpath, n in sorted(single["rows"].items()):
        echo(f"  {mpath}  ({n} row{'s' if n > 1 else ''})")
    amb = single["amb"]
    if len(amb):
        echo(f"ambient: min {np.nanmin(amb):.3f} mean {np.nanmean(amb):.3f} max {np.nanmax(amb):.3f}")


def _echo_split_table(per_split: dict[str, dict], man: dict | None, verify: bool, problems: list[str],
                      echo: Callable[[str], None]) -> None:
    """Examples, shards, models and bytes per split (against the manifest's counts when there is one)."""
    echo("split        examples  shards  models   MB    KB/example")
    for s in SPLITS:
        if s not in per_split and man is None:
            continue
        d = per_split[s]
        want = man["splits"][s]["examples"] if man is not None else d["examples"]
        kb = d["bytes"] / 1024 / d["examples"] if d["examples"] else 0.0
        echo(f"{s:10s} {d['examples']:>10d}  {d['shards']:>6d}  {len(d['models']):>6d}  "
             f"{d['bytes'] / 2**20:>6.1f}  {kb:>8.1f}" + ("" if d["examples"] == want else f"   (manifest: {want})"))
        if man is not None and d["examples"] != want and verify:
            problems.append(f"{s}: {d['examples']} examples on disk, manifest says {want}")


def _echo_models(man: dict, verify: bool, problems: list[str], echo: Callable[[str], None],
                 list_limit: int) -> None:
    """The manifest's models, same-mesh groups and rejections."""
    models = man.get("models", [])
    split_of_model = {m["path"]: m["split"] for m in models}
    echo(f"models used: {len(models)}")
    for m in models[:list_limit]:
        echo(f"  {m['split']:10s} {m['examples']:>7d} ex  {m['path']}"
             + ("" if m.get("one_eye_morphs", True) else "  (no one-eye morphs: le == re)"))
    if len(models) > list_limit:
        echo(f"  ... and {len(models) - list_limit} more (see manifest.json)")
    for g in man.get("mesh_groups") or []:
        splits = {split_of_model.get(m) for m in g.get("models", [])} - {None}
        where = (f"  (WARNING: in {' and '.join(sorted(splits))})" if len(splits) > 1
                 else f"  ({splits.pop()})" if splits else "")
        echo("same mesh: " + ", ".join(g.get("models", [])) + where)
        if len(splits) > 1 and verify:
            problems.append("same mesh in two splits: " + ", ".join(g.get("models", [])))
    rej = man.get("rejected", [])
    echo(f"rejected models: {len(rej)}")
    for d in rej[:list_limit]:
        echo(f"  {d['path']}: {d['reason']}")
    if len(rej) > list_limit:
        echo(f"  ... and {len(rej) - list_limit} more; most common reasons:")
        for reason, n in Counter(d["reason"] for d in rej).most_common(10):
            echo(f"  {n:>6d} x {reason}")


def _echo_sheet(readers: list[tuple[str, Path, int]], sheet, examples: int, seed: int,
                echo: Callable[[str], None]) -> None:
    if sheet is None:
        echo("contact sheet: add --sheet out.png to write one (rest | morphed | posed, pose printed)")
        return
    rows = _sample_rows(readers, examples, seed)
    if rows:
        contact_sheet(rows, sheet)
        echo(f"contact sheet: {sheet} ({len(rows)} examples)")
    else:
        echo("contact sheet: no readable examples")


def _verify(man: dict | None, readers: list[tuple[str, Path, int]]) -> list[str]:
    problems = []
    seen: dict[bytes, str] = {}
    for split, sp, n in readers:
        expected = None
        if man is not None:
            for sh in man["splits"][split]["shards"]:
                if Path(sh["file"]).name == sp.name:
                    expected = sh["examples"]
        problems += verify_shard(sp, deep=True, expected_examples=expected,
                                 expected={"split": split} if split else None)
        try:
            with ShardReader(sp) as r:
                for i in range(r.num_examples):
                    row = int(r.model_index[i])
                    key = hashlib.sha256(r.model_sha256[row].encode() + r.pose[i].tobytes()).digest()
                    where = f"{sp}[{i}]"
                    if key in seen:
                        problems.append(f"duplicate example: {where} equals {seen[key]}")
                    else:
                        seen[key] = where
        except ShardError as e:
            problems.append(str(e))
    if man is not None and not man.get("complete"):
        problems.append("manifest says the data is not complete (re-run thactl render)")
    return problems


def _sample_rows(readers, k: int, seed: int) -> list[dict]:
    total = sum(n for _, _, n in readers)
    if total == 0 or k <= 0:
        return []
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(total, size=min(k, total), replace=False))
    rows = []
    offsets = np.cumsum([0] + [n for _, _, n in readers])
    for g in picks:
        j = int(np.searchsorted(offsets, g, side="right") - 1)
        split, sp, _ = readers[j]
        try:
            with ShardReader(sp) as r:
                e = r.example(int(g - offsets[j]))
        except (ShardError, OSError):
            continue
        e["title"] = f"{split}: {e['model_path']}  ({sp.name} #{e['index']})"
        rows.append(e)
    return rows
