"""Learning check: do thactl's data and training produce a working poser, at a scale a 2-core CPU runs?

    .venv/bin/python bench/learning_check.py                          # models from ../shared/models
    .venv/bin/python bench/learning_check.py --models DIR --out REPORT --threads 1
    .venv/bin/python bench/learning_check.py --schema tha3 --small --out REPORT       # a tha3 poser, minutes

Checks the models (`thactl models check`'s verdicts), holds out the characters named in
bench/learning_split.json (validation and test; every other usable model trains, and a copy of a
held-out mesh anywhere in the folder joins its split: bench/heldout.py), renders 64 px data with that
split file, trains morpher -> rotator -> combiner with the small configuration in CONFIG, evaluates
the three on the test split and on each held-out character, and writes REPORT/:

  report.md / report.json  configuration, final table, checks, semantic centroids, wall time,
                           the morpher's changed-region ratio on training / validation / test
                           characters, and per held-out character (validation and test): the
                           morpher's ratio, the full poser's RMSE/SSIM against the identity and the
                           share of rest images with each eye's change on its own side, pooled too
  curves.png               validation L1 of each stage against its identity baseline, whole
                           image and changed region, over the examples seen
  samples.png              held-out examples: rest | morphed target | morpher output |
                           posed target | full poser output, enlarged
  characters.png           one row per held-out character: rest | morphed target | morpher output
  split.json, check.json   the split file given to render and the verdicts it was made from
  data/, morpher/, rotator/, combiner/   the data set and the three run folders

--schema NAME|FILE renders the data with `thactl render --schema` and trains the networks on the
schema's parts (models.poser.pose_parts: the morpher its `face` parameters, the rotator and combiner
its `rotation` ones); the checks are the same, with the eye and mouth probes on the parameters THA1's
left_eye / right_eye / mouth map to (core.poseschema.FROM_THA1: eye_wink_left / eye_wink_right /
mouth_aaa for tha3; a schema without them has no semantic or eye-side check). Without --schema the
check is THA1's, exactly as before. --small uses SMALL (fewer examples, short budgets: a whole check
in minutes on 2 cores; its figures are not what the thresholds are meant for).

The checks (all on the test split): the morpher's changed-region L1 at most 0.5 x the
identity's; the rotator's Pumarola and Zhou outputs (true morphed input) and the full poser
(rest image -> morpher -> rotator -> combiner) below the identity baseline on RMSE (both
pixel spaces) and above it on SSIM; and the morpher's semantics (train.semantics): left_eye
alone changes the image's right half, right_eye alone the left half, the mouth lands below
both eyes. The exit status is 0 when every check passes, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import torch  # noqa: E402

from heldout import HELD_OUT_FILE  # noqa: E402
from learning_report import draw_curves, sample_sheet, write_markdown  # noqa: E402
from per_character import character_strip, per_character, pooled, probe_names  # noqa: E402

# the documented small configuration (64 px, batch 16, Adam betas 0.5/0.999)
ARCH = dict(base_channels=16, num_downsample=2, num_res_blocks=2)
CONFIG = {
    # the whole collection (about 32 training model files): twice the examples and four times the morpher
    # budget of the 13-file check, since more characters keep the morpher longer on "copy the input"
    "data": dict(size=64, count=12_000),
    "morpher": dict(ARCH, batch_size=16, examples=48_000, lr=1e-3, pose_film=True, head_init_scale=0.01, unet=True,
                    augment="mirror,colour"),
    "rotator": dict(ARCH, batch_size=16, examples=8_000, lr=3e-4),
    "combiner": dict(ARCH, batch_size=16, examples=4_800, lr=3e-4),
}
#: --small: the same networks on a sixth of the data and about a tenth of the training (minutes, not an hour)
SMALL = {
    "data": dict(CONFIG["data"], count=2_000),
    "morpher": dict(CONFIG["morpher"], examples=4_000),
    "rotator": dict(CONFIG["rotator"], examples=1_600),
    "combiner": dict(CONFIG["combiner"], examples=960),
}
CURVE_POINTS = 6  # validations per stage, besides the one before training
MORPHER_REGION_RATIO = 0.5


CHECK_CODE = ("import json, sys; from dataset.collection import CheckSettings, check_collection; "
              "print(json.dumps([dict(path=c.rel_path, ok=c.ok, reason=c.reason, mesh=c.mesh) for c in "
              "check_collection(CheckSettings(__import__('pathlib').Path(sys.argv[1]), workers=2, processes=True))]))")


def held_out_split(models: Path, out: Path, held_out_file: Path) -> dict:
    """The verdicts of every model (a child process: render's own check and cache) and the complete
    split file made from `held_out_file` (bench/heldout.py); returns the split table."""
    from heldout import write_split_file

    res = subprocess.run([sys.executable, "-c", CHECK_CODE, str(models)], cwd=REPO, check=True,
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    (out / "check.json").write_text(res.stdout, encoding="utf-8")
    return write_split_file(models, out / "check.json", out / "split.json", held_out_file)


def render(models: Path, data: Path, size: int, count: int, split_file: Path | None = None,
           schema: str | None = None) -> float:
    """`thactl render` in a child process (its own EGL context and workers), with `--schema` when
    `schema` is given; returns seconds."""
    if (data / "manifest.json").is_file() and json.loads((data / "manifest.json").read_text()).get("complete"):
        print(f"data: reusing {data}", flush=True)
        return 0.0
    t0 = time.perf_counter()
    cmd = [sys.executable, "-c", "import sys, cli; sys.exit(cli.main(sys.argv[1:]))", "render", "--models",
           str(models), "--out", str(data), "--size", str(size), "--count", str(count), "--workers", "2", "-q"]
    if split_file is not None:
        cmd += ["--split-file", str(split_file)]
    if schema is not None:
        cmd += ["--schema", schema]
    subprocess.run(cmd, check=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    return time.perf_counter() - t0


def train_stage(kind: str, data: Path, out: Path, rotator: Path | None = None, scale: float = 1.0,
                config: dict = CONFIG) -> float:
    """Train one network with config[kind] (budget x `scale`) through thactl's own training loop (which
    takes the data's pose schema from its shards); seconds."""
    from train.loop import TrainConfig, train

    settings = dict(config[kind])
    settings["examples"] = max(settings["batch_size"], int(settings["examples"] * scale))
    every = max(1, settings["examples"] // CURVE_POINTS)
    t0 = time.perf_counter()
    train(TrainConfig(kind=kind, data=str(data), out=str(out), rotator=str(rotator) if rotator else None,
                      val_every=every, checkpoint_every=every, log_every=every // 4, val_examples=10_000,
                      num_samples=4, device="cpu", quiet=True, **settings))
    return time.perf_counter() - t0


def evaluate_test(data: Path, runs: Path, schema=None):
    """Final table on the test split and the morpher's semantic centroids on its rest images ({} when
    the schema has no eye and mouth probes); the pose split by the data's `schema` (None: THA1)."""
    from dataset.torchdata import ShardDataset
    from models.io import load_weights
    from per_character import evaluate_poser, semantic_morpher
    from train.semantics import change_centroids

    nets = {k: load_weights(runs / k, k).eval() for k in ("morpher", "rotator", "combiner")}
    test = ShardDataset(str(data), split="test")
    loader = torch.utils.data.DataLoader(test, batch_size=40)
    result = evaluate_poser(loader, nets, schema, configs=["PU", "ZH", "FU"])
    rest = torch.stack([test[i]["rest_image"] for i in range(len(test))])
    probe = semantic_morpher(nets["morpher"], schema)
    return result, ({} if probe is None else change_centroids(probe, rest)), nets, test


def morpher_ratio_by_split(data: Path, morpher, schema=None) -> dict[str, float]:
    """The morpher's changed-region ratio on 400 examples of each split: training characters against
    held-out ones shows how much of what it learned is its characters (a diagnostic, not a check)."""
    from dataset.errors import DatasetError
    from models.poser import pose_parts
    from morpher_generalisation import load_split
    from train.evaluate import morpher_region_ratio

    face = slice(3, 6) if schema is None else pose_parts(schema)[0]
    ratios = {}
    for split in ("train", "validation", "test"):
        try:
            ratios[split] = morpher_region_ratio(morpher, *load_split(str(data), split, 400, face=face))
        except DatasetError:  # a model folder too small for a validation split
            continue
    return ratios


def checks(result, centroids, probes: dict[str, str] | None = None) -> dict[str, bool]:
    """The pass/fail lines of the report (see the module docstring); the semantic line names the probed
    parameters (`probes`, probe_names) and is left out without centroids."""
    from train.semantics import semantics_hold

    rec = {r["row"]: r for r in result.to_records()}
    ratio = rec["morpher"]["region_l1"] / rec["identity/morphed"]["region_l1"]

    def beats(row: str, ident: str) -> bool:
        return (rec[row]["rmse_tha"] < rec[ident]["rmse_tha"] and rec[row]["rmse_srgb01"] < rec[ident]["rmse_srgb01"]
                and rec[row]["ssim"] > rec[ident]["ssim"])

    out = {f"morpher changed-region L1 <= {MORPHER_REGION_RATIO} x identity (ratio {ratio:.3f})":
           ratio <= MORPHER_REGION_RATIO,
           "rotator Pumarola beats identity on RMSE and SSIM": beats("rotator/pumarola", "identity/rotated"),
           "rotator Zhou beats identity on RMSE and SSIM": beats("rotator/zhou", "identity/rotated"),
           "full poser (FU, from the rest image) beats identity on RMSE and SSIM": beats("FU", "identity/posed")}
    if centroids:
        p = probes or probe_names()      # THA1's own names
        out[f"semantics: {p['left_eye']} right half, {p['right_eye']} left half, {p['mouth']} below the eyes"] = \
            semantics_hold(centroids)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, default=REPO.parent / "shared" / "models")
    ap.add_argument("--out", type=Path, default=Path("learning-check"))
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: thactl train's rule, the cores not busy at start-up)")
    ap.add_argument("--count", type=int, default=None,
                    help=f"training examples to render (default {CONFIG['data']['count']}, --small {SMALL['data']['count']})")
    ap.add_argument("--budget-scale", type=float, default=1.0,
                    help="multiply every stage's training budget (smoke runs; the checks need 1)")
    ap.add_argument("--held-out", default=str(HELD_OUT_FILE),
                    help="validation and test characters (bench/learning_split.json); 'none': render's own split rule")
    ap.add_argument("--schema", default=None, metavar="NAME|FILE",
                    help="render and train for this pose schema (tha3 or a schema file; default: THA1's six numbers)")
    ap.add_argument("--small", action="store_true",
                    help="the SMALL configuration: fewer examples and short budgets (minutes on 2 cores)")
    args = ap.parse_args(argv)
    config = SMALL if args.small else CONFIG
    if args.count is None:
        args.count = config["data"]["count"]
    if not args.models.is_dir():
        print(f"{args.models}: model folder not found (give --models)", file=sys.stderr)
        return 2
    schema = None
    if args.schema is not None:
        from core.poseschema import SchemaError, load_schema

        try:
            schema = load_schema(args.schema)
        except SchemaError as e:
            print(e, file=sys.stderr)
            return 2
        schema = None if schema.is_tha1 else schema      # tha1 is THA1's own data: the check as before
    from train.threads import set_threads

    args.threads = set_threads(args.threads)
    t_start = time.perf_counter()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    split_file = None
    if args.held_out != "none":
        table = held_out_split(args.models, out, Path(args.held_out))
        split_file = out / "split.json"
        print(f"split: {', '.join(f'{k} {len(v)} model files' for k, v in table.items())}", flush=True)
    seconds = {"render": render(args.models, data, config["data"]["size"], args.count, split_file,
                                None if schema is None else args.schema)}
    for kind in ("morpher", "rotator", "combiner"):
        print(f"training {kind} ({config[kind]})", flush=True)
        seconds[kind] = train_stage(kind, data, out / kind, rotator=out / "rotator" if kind == "combiner" else None,
                                    scale=args.budget_scale, config=config)
    t0 = time.perf_counter()
    result, centroids, nets, test = evaluate_test(data, out, schema)
    probes = probe_names(schema)
    verdict = checks(result, centroids, probes)
    by_split = morpher_ratio_by_split(data, nets["morpher"], schema)
    draw_curves({k: out / k / "metrics.jsonl" for k in ("morpher", "rotator", "combiner")}, out / "curves.png")
    sample_sheet(nets, test, out / "samples.png", schema=schema)
    characters = per_character(data, nets, schema=schema)
    character_strip(data, nets, out / "characters.png", schema=schema)
    seconds["evaluate"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - t_start
    report = {"config": config, "count": args.count, "budget_scale": args.budget_scale, "threads": args.threads,
              "models": str(args.models), "seconds": seconds,
              "table": result.to_records(), "centroids": {k: c.as_dict() for k, c in centroids.items()},
              "checks": verdict, "morpher_region_ratio": by_split, "curve_end": curve_ends(out),
              "held_out": {"file": args.held_out, "characters": characters, "pooled": pooled(characters)},
              "load_average_at_end": os.getloadavg()}
    if schema is not None:    # THA1's report keeps its keys
        report["schema"] = {"name": schema.name, "parameters": schema.size, "names": list(schema.names),
                            "face": len(schema.indices("face")), "rotation": len(schema.indices("rotation")),
                            "probes": probes}
    if args.small:
        report["small"] = True
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report, result.format_table(), out / "report.md")
    print((out / "report.md").read_text())
    return 0 if all(verdict.values()) else 1


def curve_ends(out: Path) -> dict[str, dict]:
    """The last validation record of each stage (its curves' end points)."""
    ends = {}
    for kind in ("morpher", "rotator", "combiner"):
        lines = (out / kind / "metrics.jsonl").read_text().splitlines()
        val = [json.loads(x) for x in lines if '"validation"' in x]
        ends[kind] = {k: v for k, v in val[-1].items() if k.startswith(("l1", "region", "examples"))}
    return ends


if __name__ == "__main__":
    sys.exit(main())
