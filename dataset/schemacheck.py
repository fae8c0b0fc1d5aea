"""`thactl models check --schema NAME`: which parameters of a pose schema each model of a collection
covers and how each was decided (renderer.schema_rig: name / geometry / split / override / missing),
and the coverage over the folder (how many models have each parameter; per group of parameters).
Geometry only (no rendering): whether a found morph also changes pixels is decided by the probe of
`thactl render --schema` (docs/pose-schemas.md).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable, Iterator

from core.errors import first_line
from core.poseschema import PoseSchema
from dataset.discover import ModelSource

HOW_LETTER = {"name": "n", "geometry": "g", "split": "s", "override": "o", "missing": "-"}


def parameter_group(schema: PoseSchema, i: int) -> str:
    """The group a parameter is counted under in coverage tables: its exclusive group, else the
    first word of its name (iris, head, body, ...)."""
    p = schema.parameters[i]
    return p.group or p.name.split("_")[0]


def schema_coverage(found: list[ModelSource], schema: PoseSchema, overrides: Path | None,
                    models_root: Path) -> Iterator[dict]:
    """One record per model: {path, error} or {path, bindings: [{name, how, detail}]}."""
    from renderer.assembly import assemble_model
    from renderer.schema_rig import resolve_schema_rig

    for m in found:
        if m.error:
            yield dict(path=m.rel_path, error=m.error)
            continue
        try:
            a = assemble_model(m.path, overrides, models_root)
            rig = resolve_schema_rig(a.model, schema, a.override, a.rig)
        except Exception as e:     # a model that does not load is reported, never fatal
            yield dict(path=m.rel_path, error=first_line(e, 200))
            continue
        yield dict(path=m.rel_path, bindings=[dict(name=b.name, how=b.how, detail=b.detail)
                                              for b in rig.bindings])


def model_line(rec: dict, schema: PoseSchema) -> str:
    if "error" in rec:
        return f"{rec['path']}: not loaded ({rec['error']})"
    hows = Counter(b["how"] for b in rec["bindings"])
    found = schema.size - hows["missing"]
    codes = "".join(HOW_LETTER[b["how"]] for b in rec["bindings"])
    return (f"{rec['path']}: {found}/{schema.size} parameters  " + " ".join(
        f"{k} {hows[k]}" for k in HOW_LETTER if hows[k]) + f"  [{codes}]")


def summary_lines(records: list[dict], schema: PoseSchema) -> list[str]:
    """Per parameter: how many models have it (and by which way); then per group."""
    ok = [r for r in records if "bindings" in r]
    lines = [f"coverage over {len(ok)} models ({schema.name}; n name, g geometry, s split, "
             "o override, - missing):"]
    for i, name in enumerate(schema.names):
        hows = Counter(r["bindings"][i]["how"] for r in ok)
        lines.append(f"  {name:32s} {len(ok) - hows['missing']:>4d}/{len(ok)}  " + " ".join(
            f"{k} {hows[k]}" for k in HOW_LETTER if k != "missing" and hows[k]))
    return lines


def coverage_table(records: list[dict], schema: PoseSchema) -> list[str]:
    """A markdown table: models x parameter groups, each cell `found/size of the group`."""
    groups: dict[str, list[int]] = {}
    for i in range(schema.size):
        groups.setdefault(parameter_group(schema, i), []).append(i)
    head = "| model | " + " | ".join(f"{g} ({len(ix)})" for g, ix in groups.items()) + " | all |"
    lines = [head, "|---" * (len(groups) + 2) + "|"]
    for r in records:
        if "bindings" not in r:
            lines.append(f"| {r['path']} | " + " | ".join("–" for _ in groups) + " | not loaded |")
            continue
        have = [b["how"] != "missing" for b in r["bindings"]]
        cells = [f"{sum(have[i] for i in ix)}" for ix in groups.values()]
        lines.append(f"| {r['path']} | " + " | ".join(cells) + f" | {sum(have)} |")
    return lines


def run_schema_check(models_root: Path, schema: PoseSchema, overrides: Path | None,
                     found: list[ModelSource], echo: Callable[[str], None],
                     table: Path | None = None) -> list[dict]:
    """Report every model's coverage through `echo`, then the summary; `table` gets the markdown
    coverage table (models x groups)."""
    records = []
    for rec in schema_coverage(found, schema, overrides, models_root):
        echo(model_line(rec, schema))
        records.append(rec)
    for line in summary_lines(records, schema):
        echo(line)
    if table is not None:
        from core.atomicfile import write_text
        write_text(Path(table), "\n".join(coverage_table(records, schema)) + "\n")
    return records
