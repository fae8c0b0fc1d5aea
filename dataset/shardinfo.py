"""`thactl inspect`: summaries, pose statistics, contact sheets and full verification.

Works on a data folder (OUT with manifest.json), a split folder, or one shard.
Needs only h5py, numpy and Pillow (no OpenGL).

THA1 data gets histograms against THA1's sampling law; a pose schema's data (docs/pose-schemas.md) a
table per parameter (schema_stat_rows: min / mean / max, share at rest, share of examples in which a
group member is active, share of examples whose model can show it) and one line per exclusive group
(how many of its semantics are active, against the schema's law); the sheet's captions name the
schema's parameters (pose_caption).
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
from core.poseschema import RANGE_TOLERANCE, PoseSchema

BARS = " ▁▂▃▄▅▆▇█"
NBINS = 10


def _spark(fr: np.ndarray, top: float) -> str:
    if top <= 0:
        return " " * len(fr)
    return "".join(BARS[min(len(BARS) - 1, int(round(f / top * (len(BARS) - 1))))] for f in fr)


def pose_stat_lines(poses: np.ndarray, schema: PoseSchema | None = None,
                    available: np.ndarray | None = None) -> list[str]:
    """Text histograms of each pose component against the intended distribution (THA1's data), or
    a pose schema's table per parameter (schema_stat_lines; `available` (N, P) as there)."""
    if len(poses) == 0:
        return ["pose statistics: no examples"]
    if schema is not None:
        return schema_stat_lines(poses, schema, available)
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


def at_rest(poses: np.ndarray, schema: PoseSchema) -> np.ndarray:
    """(N, P) bool: where a value is its parameter's rest (within the schema's range tolerance)."""
    return np.abs(poses - schema.rest) <= RANGE_TOLERANCE


def schema_stat_rows(poses: np.ndarray, schema: PoseSchema, available: np.ndarray | None = None) -> list[dict]:
    """One dict per parameter of `schema` over poses (N, P): name, input, group (or None), min, mean,
    max, at_rest (share of examples at rest), group_share (share of examples in which this group member
    is active; None outside a group) and available (share of examples whose model can show it, from
    the shards' model_available rows per example, (N, P) bool; all 1 without it)."""
    rest = at_rest(poses, schema)
    avail = np.ones(poses.shape, bool) if available is None else np.asarray(available, bool)
    rows = []
    for i, p in enumerate(schema.parameters):
        v = poses[:, i]
        rows.append(dict(name=p.name, input=p.input, group=p.group, min=float(v.min()), mean=float(v.mean()),
                         max=float(v.max()), at_rest=float(rest[:, i].mean()),
                         group_share=None if p.group is None else float(1.0 - rest[:, i].mean()),
                         available=float(avail[:, i].mean())))
    return rows


def group_active_shares(poses: np.ndarray, schema: PoseSchema) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{group: (observed, intended)}: the share of examples with k = 0, 1, 2, ... of the group's
    semantics active (a semantic is active when one of its sides is away from rest), and what the
    schema's law gives (rest_probability, then `choose`). Render draws a group among the semantics
    each model can show (k capped by their number), so models that show few of a group's semantics
    pull the observed shares toward fewer active ones."""
    rest = at_rest(poses, schema)
    out = {}
    for g in schema.groups.values():
        members = [i for i, p in enumerate(schema.parameters) if p.group == g.name]
        semantics = list(dict.fromkeys(schema.parameters[i].semantic for i in members))
        active = np.zeros((len(poses), len(semantics)), bool)
        for i in members:
            active[:, semantics.index(schema.parameters[i].semantic)] |= ~rest[:, i]
        k = active.sum(axis=1)
        width = len(g.choose) + 1
        observed = np.bincount(np.minimum(k, width - 1), minlength=width) / len(poses)
        intended = np.array([g.rest_probability] + [(1.0 - g.rest_probability) * c for c in g.choose])
        out[g.name] = (observed, intended)
    return out


def schema_stat_lines(poses: np.ndarray, schema: PoseSchema, available: np.ndarray | None = None) -> list[str]:
    """The per-parameter table (schema_stat_rows) and one line per exclusive group, as text."""
    width = max(len(n) for n in ("parameter",) + schema.names)
    gwidth = max(len(g) for g in ("group", *schema.groups))
    lines = [f"pose statistics over {len(poses)} examples, schema {schema.name} ({schema.size} parameters; "
             "at rest: share of examples at the rest value; in group: share in which the member is active; "
             "available: share whose model can show it):",
             f"  {'#':>2}  {'parameter':<{width}} {'input':<8} {'group':<{gwidth}} {'min':>7} {'mean':>7} {'max':>7} "
             f"{'at rest':>8} {'in group':>8} {'available':>9}"]
    rows = schema_stat_rows(poses, schema, available)
    for i, r in enumerate(rows):
        share = "" if r["group_share"] is None else f"{r['group_share']:.1%}"
        lines.append(f"  {i:>2}  {r['name']:<{width}} {r['input']:<8} {r['group'] or '':<{gwidth}} {r['min']:>+7.3f} "
                     f"{r['mean']:>+7.3f} {r['max']:>+7.3f} {r['at_rest']:>8.1%} {share:>8} {r['available']:>9.1%}")
    for name, (obs, want) in group_active_shares(poses, schema).items():
        parts = ", ".join(f"{k} {o:.1%} ({w:.1%})" for k, (o, w) in enumerate(zip(obs, want)))
        lines.append(f"  group {name}: examples with k semantics active, observed (intended): {parts}")
    unavailable = [r["name"] for r in rows if r["available"] < 1.0]
    if unavailable:
        lines.append(f"  {len(unavailable)} parameters unavailable on some models (kept at rest there): "
                     + ", ".join(unavailable))
    return lines


def pose_caption(pose: np.ndarray, schema: PoseSchema | None = None, width: int = 64) -> list[str]:
    """A contact-sheet caption of one pose: THA1's six numbers on one line (schema None), or the schema's
    rotation parameters and its face parameters away from rest as name=value, wrapped to `width` characters."""
    if schema is None:
        p = pose
        return [f"hx {p[0]:+.2f} hy {p[1]:+.2f} nz {p[2]:+.2f}  le {p[3]:.2f} re {p[4]:.2f} m {p[5]:.2f}"]
    rest = at_rest(np.asarray(pose, np.float32)[None], schema)[0]
    words = [f"{n}={pose[i]:+.2f}" for i, n in enumerate(schema.names)
             if schema.parameters[i].input == "rotation"]
    face = [f"{n}={pose[i]:.2f}" for i, n in enumerate(schema.names)
            if schema.parameters[i].input == "face" and not rest[i]]
    lines: list[str] = []
    for part in (words, face or ["face at rest"]):
        line = ""
        for w in part:
            if line and len(line) + 2 + len(w) > width:
                lines.append(line)
                line = ""
            line = f"{line}  {w}" if line else w
        lines.append(line)
    return lines


# ------------------------------------------------------------------------------ sheet

def contact_sheet(rows: list[dict], out_path: str | Path, schema: PoseSchema | None = None) -> Path:
    """rows: dicts with rest_image, morphed_image, posed_image (uint8 RGBA), pose, title; the pose
    captions name the schema's parameters (pose_caption; None: THA1's six numbers)."""
    from PIL import Image, ImageDraw, ImageFont

    s0 = rows[0]["rest_image"].shape[0]
    zoom = -(-128 // s0) if s0 < 128 else 1  # small images are enlarged (nearest) so the captions fit
    s = s0 * zoom
    chars = max(40, (3 * s + 8) // 6)         # the default font is 6 px a character
    captions = [pose_caption(r["pose"], schema, chars) for r in rows]
    label_h = 30 if schema is None else 13 * (max(map(len, captions)) + 1) + 4
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
        caption = captions[i]
        caption[0] += f"  amb {r.get('ambient', float('nan')):.2f}" if schema is None else ""
        for k, text in enumerate(caption):
            draw.text((pad, y + s + 2 + 13 * k), text, fill=(255, 255, 255), font=font)
        draw.text((pad, y + s + 2 + 13 * len(caption)), str(r.get("title", ""))[: w // 6], fill=(180, 180, 180),
                  font=font)
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
        available = np.concatenate(stats.available) if stats.schema is not None else None
        for line in pose_stat_lines(np.concatenate(stats.poses), stats.schema, available):
            echo(line)
    if verify:
        problems += _verify(man, stats.readers)
        echo(f"verify: {len(stats.readers)} shards read fully")
    _echo_sheet(stats.readers, sheet, examples, seed, echo, stats.schema)
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
    schema: PoseSchema | None = None           # the shards' pose schema (None: THA1's six numbers)
    available: list[np.ndarray] = field(default_factory=list)  # per example (N, P): its model can show it


def _schema_json(schema: PoseSchema | None) -> dict | None:
    return None if schema is None else schema.to_json()


def _schema_name(schema: PoseSchema | None) -> str:
    return "tha1" if schema is None else schema.name


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
                if stats.poses and _schema_json(r.schema) != _schema_json(stats.schema):
                    problems.append(f"{sp}: pose schema {_schema_name(r.schema)} differs from the other "
                                    f"shards' ({_schema_name(stats.schema)}); its poses are left out")
                    continue
                stats.schema = r.schema
                stats.poses.append(r.pose)
                stats.available.append(r.model_available[r.model_index])
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
                echo: Callable[[str], None], schema: PoseSchema | None = None) -> None:
    if sheet is None:
        echo("contact sheet: add --sheet out.png to write one (rest | morphed | posed, pose printed)")
        return
    rows = _sample_rows(readers, examples, seed)
    if rows:
        contact_sheet(rows, sheet, schema)
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
