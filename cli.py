"""`thactl`: the command line. One small function per command; the work lives in the packages.

Only this file knows about click. Heavy imports (moderngl, torch, h5py) happen
inside the commands so `thactl --help` stays fast and a training node without
OpenGL can still run `thactl train`.
"""
from __future__ import annotations

import sys

import click

__version__ = "0.1.0"


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Exception types that mean 'bad input': shown as one line, never as a traceback."""
    from core.errors import ThactlError

    types: tuple[type[BaseException], ...] = (ThactlError,)
    if "models.io" in sys.modules:          # never import torch just to report an error
        from models.io import WeightsError
        from models.vgg import VGGWeightsError

        types += (WeightsError, VGGWeightsError)
    return types


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="thactl")
def thactl() -> None:
    """Make training data from MMD models and train the THA1 networks.

    \b
    Typical use:
      thactl samples ./samples                        # built-in sample characters
      thactl preview MODEL.pmx --sheet -o sheet.png   # does this model work?
      thactl render --models ./pmx --out ./data --count 500000   # training data (HDF5 shards)
      thactl inspect ./data                           # counts, statistics, contact sheet
      thactl train morpher --data ./data --out ./runs/morpher
      thactl eval --data ./data --split test --morpher R1 --rotator R2 --combiner R3
      thactl pose drawing.png --weights DIR --pose 0 0.5 0 0 0 1 -o out.png
    """


# ---------------------------------------------------------------- samples / preview (renderer)

_overrides_option = click.option(
    "--overrides", type=click.Path(exists=True, dir_okay=False), default=None,
    help="JSON file of per-model overrides (see README).")

@thactl.command("samples")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--count", default=3, show_default=True, type=click.IntRange(1, 99),
              help="Number of characters.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, None),
              help="Seed: the same seed writes byte-identical files.")
def samples_cmd(out_dir, count, seed):
    """Write built-in sample characters (PMX + PNG textures) to OUT_DIR/sample-NN/."""
    from renderer.samples import write_samples

    for path in write_samples(out_dir, count=count, seed=seed):
        click.echo(str(path))


@thactl.command("preview")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--pose", nargs=6, type=float, default=None, metavar="HX HY NZ LE RE M",
              help="Pose vector (head_x head_y neck_z left_eye right_eye mouth); default: the rest pose.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="PNG to write.")
@click.option("--size", default=256, show_default=True, type=click.IntRange(16, 4096), help="Image side in pixels.")
@click.option("--shading", type=click.Choice(["phong", "toon"]), default="phong", show_default=True,
              help="phong = THA1 recipe; toon = MMD-like (toon ramps, sphere maps, outlines).")
@click.option("--frame", nargs=3, type=float, default=None, metavar="CX CY HALF",
              help="Camera box in model units (centre x, centre y, half-height); default: estimated.")
@click.option("--sheet", is_flag=True, help="Write a labelled contact sheet (rest, eyes, mouth, +/- rotations).")
@click.option("--aa", default=4, show_default=True, type=click.IntRange(0, 16), help="Multisample count (0 = off).")
@click.option("--supersample", default=1, show_default=True, type=click.IntRange(1, 4),
              help="Render at K times the size and box-filter down (combine with --aa 0 for pure SSAA).")
@click.option("--ambient", default=0.5, show_default=True, type=float, help="Ambient light magnitude (phong; in toon mode the light is 1.2x this).")
@_overrides_option
@click.option("--schema", default=None, metavar="NAME|FILE",
              help="Pose schema (tha1, tha3 or a schema file; docs/pose-schemas.md): --sheet draws one "
                   "cell per parameter at its extreme. Default: THA1's six numbers.")
def preview_cmd(model, pose, output, size, shading, frame, sheet, aa, supersample, ambient, overrides,
                schema):
    """Render MODEL (.pmx/.pmd) as THA training data would: one pose, or a contact sheet.

    \b
    Examples:
      thactl preview miku.pmx -o miku.png
      thactl preview miku.pmx --sheet -o sheet.png
      thactl preview miku.pmx --schema tha3 --sheet --size 128 -o tha3-sheet.png
    """
    from pathlib import Path

    from PIL import Image

    from core.imagegrid import contact_sheet
    from core.pose import REST_POSE
    from core.poseschema import load_schema
    from renderer.errors import RendererError
    from renderer.preview import SHEET_POSES, render_preview, render_schema_preview, schema_sheet_poses

    if Path(output).suffix.lower() not in ("", ".png"):   # checked before rendering anything
        raise RendererError(f"{output}: the preview is an RGBA PNG; give a name ending in .png")

    pose_schema = load_schema(schema)
    if not pose_schema.is_tha1:
        if pose is not None:
            raise RendererError("--pose takes THA1's six numbers; with --schema use --sheet")
        poses = schema_sheet_poses(pose_schema) if sheet else [("rest", pose_schema.rest)]
        res = render_schema_preview(model, pose_schema, poses, size=size, shading=shading,
                                    frame=frame or None, aa=aa, ambient=ambient, overrides_file=overrides)
    else:
        poses = list(SHEET_POSES) if sheet else [("pose", REST_POSE if pose is None else pose)]
        res = render_preview(model, poses, size=size, shading=shading, frame=frame or None, aa=aa,
                             ambient=ambient, overrides_file=overrides, supersample=supersample)
    for note in res.notes:
        click.echo(f"note: {note}", err=True)
    columns = 4 if pose_schema.is_tha1 else 8
    img = contact_sheet(res.images, res.labels, columns=columns) if sheet else res.images[0]
    try:
        Image.fromarray(img).save(output, format="PNG")
    except OSError as e:
        raise click.ClickException(f"cannot write {output}: {e}")
    box = str(res.frame)          # full precision: reproduces the exact camera
    click.echo(f"frame: {box}  (use --frame {box} to reproduce)")
    click.echo(f"wrote {output}")


@thactl.command("info")
@click.argument("model", type=click.Path(dir_okay=False))
@_overrides_option
def info_cmd(model, overrides):
    """Load MODEL (.pmx/.pmd) and print its format, counts and face rig (eyes, mouth, neck)."""
    from renderer.assembly import assemble_model
    from renderer.face_rig import info_lines

    assembled = assemble_model(model, overrides)
    for line in info_lines(assembled.model, assembled.rig):
        click.echo(line)


# ---------------------------------------------------------------- render / inspect (dataset)

def _ambient_range(text: str) -> tuple[float, float]:
    from dataset.errors import DatasetError

    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        vals = []
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2:
        raise DatasetError(f"--ambient must be LOW,HIGH (e.g. 0.5,1.2) or one value, got {text!r}")
    return vals[0], vals[1]


@thactl.command("render")
@click.option("--models", type=click.Path(path_type=str), default=None,
              help="Folder of .pmx/.pmd models (searched recursively, .zip archives too). "
                   "Default: the built-in sample characters (a quick demo).")
@click.option("--out", required=True, type=click.Path(path_type=str),
              help="Output folder: OUT/<split>/shard-NNNNN.h5 and OUT/manifest.json.")
@click.option("--count", type=int, default=None,
              help="Training examples (required with --models; 200 for the samples).")
@click.option("--val-count", type=int, default=None,
              help="Validation examples [default: min(10000, COUNT, max(COUNT/50, 10 per model))].")
@click.option("--test-count", type=int, default=None, help="Test examples [default: as --val-count].")
@click.option("--seed", type=int, default=0, show_default=True, help="Everything derives from it.")
@click.option("--size", type=int, default=256, show_default=True, help="Image size in pixels.")
@click.option("--aa", type=int, default=4, show_default=True, help="Multisample anti-aliasing (0 = off).")
@click.option("--shard-size", type=int, default=1000, show_default=True, help="Examples per shard.")
@click.option("--group-size", type=int, default=16, show_default=True,
              help="Examples per model row (one rest image and one ambient level each).")
@click.option("--ambient", default="0.5,1.2", show_default=True,
              help="Ambient light magnitude range LOW,HIGH (one value = fixed).")
@click.option("--split-ratios", default="0.9,0.05,0.05", show_default=True,
              help="train,validation,test shares of the model sources (top-level folders).")
@click.option("--split-file", type=click.Path(path_type=str), default=None,
              help='JSON {"train": [paths or folders], "validation": [...], "test": [...]}.')
@click.option("--overrides", type=click.Path(path_type=str), default=None,
              help="JSON mapping model paths (relative to --models) to face-rig/frame overrides.")
@click.option("--workers", type=int, default=None, help="Render processes [default: CPU count].")
@click.option("--part", default=None, help="Render only part i of n (i/n, 1-based): every n-th shard.")
@click.option("--force", is_flag=True, help="Replace data in OUT made with different settings.")
@click.option("--dedupe", is_flag=True,
              help="Keep one model of each same-mesh group (the first by path); reject the others. "
                   "Default: keep all, in one split.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--schema", default=None, metavar="NAME|FILE",
              help="Pose schema of the data: tha1 (default: THA1's six numbers), tha3 (the 45 of THA2/THA3) "
                   "or a schema file (docs/pose-schemas.md).")
def render_cmd(models, out, count, val_count, test_count, seed, size, aa, shard_size, group_size,
               ambient, split_ratios, split_file, overrides, workers, part, force, dedupe,
               quiet, schema) -> None:
    """Render training data (HDF5 shards) from MMD models; re-run to resume.

    \b
    Examples:
      thactl render --out demo-data                       # built-in samples, seconds
      thactl render --models ./pmx --out ./data --count 500000
      thactl render --models ./pmx --out ./data --count 500000 --part 2/8   # machine 2 of 8
      thactl render --models ./pmx --out ./data3 --count 100000 --schema tha3
    """
    import logging
    from pathlib import Path

    from dataset.generate import run_render
    from dataset.manifest import summary_lines
    from dataset.request import RenderRequest

    logging.basicConfig(level=logging.WARNING, format="thactl: %(message)s")
    req = RenderRequest(
        out=Path(out), models=Path(models) if models else None, count=count, val_count=val_count,
        test_count=test_count, seed=seed, size=size, aa=aa, shard_size=shard_size,
        group_size=group_size, ambient=_ambient_range(ambient), split_ratios=split_ratios,
        split_file=Path(split_file) if split_file else None,
        overrides=Path(overrides) if overrides else None, workers=workers, part=part, force=force,
        progress=not quiet, dedupe=dedupe, schema=schema)
    result = run_render(req)
    n, dt = result.stats.rendered_examples, result.stats.elapsed_s
    for line in summary_lines(result.manifest):
        click.echo(line)
    rate = f" ({n / dt:.1f} examples/s overall)" if n and dt > 0 else ""
    click.echo(f"rendered {n} examples in {dt:.1f} s{rate} -> {out}")


@thactl.group("models")
def models_group() -> None:
    """Look after a model collection (see `thactl serve --models` for the browser view)."""


@models_group.command("check")
@click.argument("folder", type=click.Path(path_type=str))
@click.option("--overrides", type=click.Path(path_type=str), default=None,
              help="JSON file of per-model overrides (as `thactl render --overrides`).")
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Validation processes (each with its own OpenGL context).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Also write the results as a JSON list of records to this file.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--schema", default=None, metavar="NAME|FILE",
              help="Instead: which parameters of this pose schema (tha3, or a schema file) each model "
                   "covers and how each was decided, and the coverage over the folder.")
@click.option("--table", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="With --schema: also write the coverage table (models x parameter groups, markdown).")
@click.pass_context
def models_check_cmd(ctx, folder, overrides, workers, json_path, quiet, schema, table) -> None:
    """Check every model under FOLDER (recursively, zips included) exactly as `thactl render`
    validates them: one line per model, exit status 1 when any model is not usable.

    \b
    Examples:
      thactl models check ./pmx
      thactl models check ./pmx --schema tha3 --table coverage.md
    """
    from pathlib import Path

    from dataset.collection import CheckSettings, discover_with_hashes, run_check

    cfg = CheckSettings(Path(folder), Path(overrides) if overrides else None, workers=workers)
    if schema is not None:
        from core.poseschema import load_schema
        from dataset.schemacheck import run_schema_check

        pose_schema = load_schema(schema)
        if not Path(folder).is_dir():
            raise click.ClickException(f"{folder}: not a folder")
        run_schema_check(Path(folder), pose_schema, cfg.overrides, discover_with_hashes(cfg), click.echo,
                         Path(table) if table else None)
        return
    _, bad = run_check(cfg, click.echo, Path(json_path) if json_path else None, progress=not quiet)
    if bad:
        ctx.exit(1)


@thactl.command("inspect")
@click.argument("path", type=click.Path(path_type=str))
@click.option("--sheet", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Write a contact sheet PNG of random examples (rest | morphed | posed).")
@click.option("--examples", type=int, default=8, show_default=True, help="Examples on the sheet.")
@click.option("--verify", is_flag=True,
              help="Read every shard fully: complete, readable, counts match, no duplicates.")
@click.option("--seed", type=int, default=0, show_default=True, help="Which random examples to show.")
def inspect_cmd(path, sheet, examples, verify, seed) -> None:
    """Summarise a data folder or one shard: counts, models, pose statistics, rejections.

    Data of a pose schema (render --schema) gets a table per parameter: min / mean / max, share at
    rest, share active in its group, share of examples whose model can show it."""
    from dataset.shardinfo import inspect_path

    from dataset.errors import DatasetError

    ok = inspect_path(path, sheet=sheet, examples=examples, verify=verify, seed=seed, echo=click.echo)
    if not ok:
        raise DatasetError(f"{path}: problems found (listed above)")


# ---------------------------------------------------------------- train (train)


@thactl.command("train")
@click.argument("kind", type=click.Choice(["morpher", "rotator", "combiner"]))
@click.option("--data", required=True, type=click.Path(file_okay=False), help="Data folder from `thactl render`.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Run folder; re-running the same command continues from its checkpoint.")
@click.option("--loss", type=click.Choice(["l1", "perceptual"]), default="l1", show_default=True,
              help="perceptual = L1 + VGG16 relu1_2/2_2/3_3 terms (rotator, combiner).")
@click.option("--vgg-weights", type=click.Path(dir_okay=False),
              help="torchvision vgg16 state_dict (.pth or .safetensors) for --loss perceptual.")
@click.option("--random-vgg", is_flag=True, hidden=True, help="Tests only: random VGG16 weights.")
@click.option("--init", "init", type=click.Path(), help="Start from these weights (run folder, checkpoint.pt, "
              ".safetensors, or THA1's released file or folder), e.g. the rotator's L1 run for its perceptual run.")
@click.option("--rotator", type=click.Path(), help="Combiner only: trained rotator (run folder, .safetensors, or "
              "THA1's two_algo_face_rotator.pt or its folder).")
@click.option("--grid-convention", type=click.Choice(["thactl", "tha1"]), default=None,
              help="Rotator only: how the Zhou flow samples (tha1 = THA1's align_corners=True). "
                   "Default: that of --init's weights, else thactl.")
@click.option("--batch-size", type=int, help="Global batch. [THA1: 25; rotator perceptual 8; combiner 20 / 12]")
@click.option("--examples", type=int, help="Budget in examples seen. [THA1: 3,000,000; combiner 1,500,000]")
@click.option("--lr", type=float, default=1e-4, show_default=True, help="Adam learning rate (betas 0.5, 0.999).")
@click.option("--seed", type=int, default=0, show_default=True, help="Initialisation and example order.")
@click.option("--checkpoint-every", type=int, default=50_000, show_default=True, metavar="EXAMPLES")
@click.option("--val-every", type=int, default=50_000, show_default=True, metavar="EXAMPLES")
@click.option("--val-examples", type=int, default=500, show_default=True, help="Validation subset size.")
@click.option("--samples", "num_samples", type=int, default=8, show_default=True, help="Rows in each sample grid.")
@click.option("--log-every", type=int, default=1_000, show_default=True, metavar="EXAMPLES")
@click.option("--image-size", type=int, help="Must equal the data's image size (default: the data's).")
@click.option("--base-channels", type=int, default=64, show_default=True)
@click.option("--num-downsample", type=int, default=3, show_default=True)
@click.option("--num-res-blocks", type=int, default=6, show_default=True)
@click.option("--pose-film/--no-pose-film", default=None,
              help="Morpher: the pose also scales and shifts every InstanceNorm's output. [default: on; "
                   "THA1: off]")
@click.option("--head-init-scale", type=float,
              help="Morpher: multiply the output heads' He init by this. [default: 0.01; THA1: 1]")
@click.option("--region-weight", type=float,
              help="Morpher: weight of the L1 over the changed region (eyes, mouth) added to the L1. "
                   "[default: 1; THA1: 0]")
@click.option("--unet/--no-unet", default=None,
              help="Morpher: a U-Net body (the decoder also sees the encoder's features) instead of the "
                   "encoder-decoder. [default: on; THA1: off]")
@click.option("--augment", metavar="LIST",
              help="Training-time augmentation, comma-separated: mirror (flip with the mirrored pose), colour "
                   "(hue rotation and gain), or none. [default: mirror,colour for the morpher, none otherwise]")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True,
              help="auto = bf16 autocast on CUDA (fp16 + GradScaler on GPUs without bf16), fp32 on the CPU.")
@click.option("--channels-last/--no-channels-last", default=None, help="Default: on for CUDA.")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the network.")
@click.option("--workers", type=int, help="DataLoader worker processes (default: 8 on CUDA, 0 on the CPU).")
@click.option("--threads", type=click.IntRange(min=1),
              help="CPU threads for torch (default: the cores not busy at start-up, at least 1; see train/threads.py).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--skip-bad-shards", is_flag=True,
              help="Leave out corrupt or unreadable shards (each is named in a warning) instead of stopping.")
def train_cmd(kind, data, out, loss, vgg_weights, random_vgg, init, rotator, grid_convention, batch_size, examples, lr, seed,
              checkpoint_every, val_every, val_examples, num_samples, log_every, image_size, base_channels,
              num_downsample, num_res_blocks, pose_film, head_init_scale, region_weight, unet, augment, device,
              precision, channels_last, compile_, workers, threads, quiet, skip_bad_shards):
    """Train the face MORPHER, the ROTATOR or the COMBINER on rendered shards.

    \b
    Examples:
      thactl train morpher --data ./data --out ./runs/morpher
      thactl train rotator --data ./data --out ./runs/rotator-l1
      thactl train rotator --data ./data --out ./runs/rotator-p --loss perceptual \\
          --init ./runs/rotator-l1 --vgg-weights vgg16.pth
      thactl train combiner --data ./data --out ./runs/combiner --rotator ./runs/rotator-l1
      thactl train rotator --data ./data --out ./runs/rotator-ft --init ./tha1   # from THA1's files
      torchrun --nproc_per_node 8 $(which thactl) train morpher --data ./data --out ./runs/m
    """
    import logging
    import os
    from pathlib import Path

    from train.errors import TrainError
    from train.loop import TrainConfig, train
    from train.threads import set_threads

    if not Path(data).is_dir():
        raise TrainError(f"{data}: data folder not found")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    n_threads = set_threads(threads)
    if int(os.environ.get("RANK", "0")) == 0 and not quiet:
        logging.getLogger("thactl.train").info("torch CPU threads: %d", n_threads)
    cfg = TrainConfig(kind=kind, data=data, out=out, loss=loss, batch_size=batch_size, examples=examples, lr=lr,
                      seed=seed, checkpoint_every=checkpoint_every, val_every=val_every, val_examples=val_examples,
                      num_samples=num_samples, log_every=log_every, image_size=image_size,
                      base_channels=base_channels, num_downsample=num_downsample, num_res_blocks=num_res_blocks,
                      device=device, precision=precision, channels_last=channels_last, compile=compile_,
                      workers=workers, vgg_weights=vgg_weights, random_vgg=random_vgg, init=init, rotator=rotator,
                      grid_convention=grid_convention,
                      quiet=quiet, skip_bad_shards=skip_bad_shards, pose_film=pose_film,
                      head_init_scale=head_init_scale, region_weight=region_weight, unet=unet, augment=augment)
    if kind != "morpher" and (pose_film, head_init_scale, region_weight, unet) != (None, None, None, None):
        raise TrainError("--pose-film, --head-init-scale, --region-weight and --unet are options of the morpher")
    summary = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(f"trained {kind}: {summary['examples']} examples; weights in {summary['weights']}")

# ---------------------------------------------------------------- eval / pose / animate / export


def _weights_options(f):
    """--weights DIR and per-network --morpher/--rotator/--combiner (run folders or .safetensors)."""
    f = click.option("--combiner", "combiner_src", type=click.Path(), default=None,
                     help="Combiner run folder, .safetensors or THA1's combiner.pt (overrides --weights).")(f)
    f = click.option("--rotator", "rotator_src", type=click.Path(), default=None,
                     help="Rotator run folder, .safetensors or THA1's two_algo_face_rotator.pt "
                          "(overrides --weights).")(f)
    f = click.option("--morpher", "morpher_src", type=click.Path(), default=None,
                     help="Morpher run folder, .safetensors or THA1's face_morpher.pt (overrides --weights).")(f)
    f = click.option("--weights", type=click.Path(), default=None,
                     help="Folder with morpher.safetensors, rotator.safetensors [, combiner.safetensors], "
                          "or THA1's released face_morpher.pt, two_algo_face_rotator.pt [, combiner.pt].")(f)
    return f


_precision_option = click.option(
    "--precision", type=click.Choice(["auto", "fp32", "fp16"]), default="auto", show_default=True,
    help="Network arithmetic: auto = fp16 autocast on CUDA, fp32 on the CPU; fp32 everywhere "
         "(as THA1 ran); fp16 (CUDA only).")


def _half(precision: str):
    """--precision -> PoserRunner's `half` (None = its default)."""
    from inference.weights import half_of

    return half_of(precision)


_output_path_option = click.option(
    "--path", "path", type=click.Choice(["full", "pumarola", "zhou"]), default=None,
    help="Which output: full (combiner; default when given), pumarola or zhou.")


def _warn(msg: str) -> None:
    click.echo(f"thactl: warning: {msg}", err=True)


def _runner(weights, morpher_src, rotator_src, combiner_src, path, device, batch_size=8, half=None,
            warn_untrained=False):
    """The PoserRunner of these weights; warn_untrained: one warning line when they look untrained."""
    from inference.runner import PoserRunner
    from inference.weights import untrained_warning

    runner = PoserRunner.from_weights(weights, morpher_src, rotator_src, combiner_src, path=path,
                                      device=device, batch_size=batch_size, half=half)
    if warn_untrained and (msg := untrained_warning(runner.weight_files)):
        _warn(msg)
    return runner


@thactl.command("eval")
@click.option("--data", required=True, type=click.Path(), help="Data folder (from `thactl render`) or shard files' folder.")
@click.option("--split", default="test", show_default=True, help="Split to score.")
@_weights_options
@click.option("--path", "path", type=click.Choice(["pumarola", "zhou", "full", "all"]), default=None,
              help="Configurations: pumarola=PU, zhou=ZH, full=FU (both + combiner), all. "
                   "Default: full when a combiner is given, else pumarola and zhou.")
@click.option("--stages/--no-stages", default=True, show_default=True,
              help="Also score morpher alone, rotator alone (each path) and rotator+combiner.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1))
@click.option("--limit", type=click.IntRange(1), default=None, help="Score only the first N examples.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option("--workers", type=click.IntRange(0), default=None,
              help="DataLoader worker processes (default: 4 on CUDA, 0 on the CPU).")
@click.option("--out", type=click.Path(), default=None,
              help="Folder for eval-<split>.json/.csv (default: the first run folder given, else ./eval-out).")
def eval_cmd(data, split, weights, morpher_src, rotator_src, combiner_src, path, stages, batch_size, limit,
             device, workers, out):
    """Score trained networks on a split: RMSE and SSIM per stage and THA1 configuration (PU/ZH/FU).

    Full rows: input = rest image, target = posed image, pose from the shard. Stage rows: morpher
    alone (rest -> morphed), rotator alone and rotator+combiner on the true morphed image. Prints
    THA1's published numbers beside ours, and states the pixel ranges.
    """
    from pathlib import Path

    import torch
    from tqdm import tqdm

    from dataset.torchdata import ShardDataset
    from train import evaluate as ev
    from train.runstate import recorded_loss
    from inference.weights import load_networks, pick_device, resolve_weights, weights_schema
    from train.tasks import data_schema

    if out is not None and Path(out).exists() and not Path(out).is_dir():  # was a traceback after the run
        raise ev.TrainError(f"{out}: --out must be a folder (eval-<split>.json/.csv go in it), this is a file")
    dev = pick_device(device)
    paths = resolve_weights(weights, morpher_src, rotator_src, combiner_src, need_combiner=(path == "full"))
    configs = ev.select_configs(path, "combiner" in paths)
    nets = load_networks(paths, dev)
    ds = ShardDataset(data, split=split)
    schema = data_schema(ds.files)          # the schema of the shards scored
    ev.check_schemas(schema, weights_schema(paths), data)
    n = len(ds) if limit is None else min(limit, len(ds))
    if n == 0:
        raise ev.TrainError(f"{data}: no {split} examples")
    size = int(ds[0]["rest_image"].shape[-1])
    if size != nets["morpher"].config["image_size"]:
        raise ev.TrainError(f"{data}: images are {size}x{size}, the networks take "
                            f"{nets['morpher'].config['image_size']}x{nets['morpher'].config['image_size']}")
    loader = torch.utils.data.DataLoader(ds if limit is None else torch.utils.data.Subset(ds, range(n)),
                                         batch_size=batch_size, shuffle=False,
                                         num_workers=(4 if dev.type == "cuda" else 0) if workers is None else workers,
                                         pin_memory=dev.type == "cuda")
    rl = recorded_loss([p for p in (rotator_src, weights) if p], "rotator")
    cl = recorded_loss([p for p in (combiner_src, weights) if p], "combiner")
    variants = {c: ev.tha1_variant_for(c, rl, cl) for c in configs}
    with tqdm(total=n, unit="ex", desc=f"eval {split}", dynamic_ncols=True) as bar:
        result = ev.evaluate(loader, nets["morpher"], nets["rotator"], nets.get("combiner"), configs=configs,
                             stages=stages, device=dev, progress=bar.update, tha1_variant=variants,
                             split=split, sources={k: str(v) for k, v in paths.items()}, schema=schema)
    click.echo(result.format_table())
    if out is None:
        first = morpher_src or rotator_src or combiner_src or weights
        out = (Path(first) if Path(first).is_dir() else Path(first).parent) if first else Path("eval-out")
    jpath, cpath = result.write(out)
    click.echo(f"{result.num_examples} examples in {result.seconds:.1f} s on {result.device}; wrote {jpath} and {cpath}")


def _pose_values(values) -> "list[float]":
    from core.pose import pose_problem  # numpy only

    problem = pose_problem(values, tolerance=0.0)
    if problem:
        raise click.BadParameter(problem, param_hint="--pose")
    return list(values)


def _weights_pose_schema(weights, morpher_src, rotator_src, combiner_src):
    """The pose schema the weight files record (THA1's when none), without loading the networks."""
    from core.poseschema import load_schema
    from inference.weights import resolve_weights, weights_schema

    return weights_schema(resolve_weights(weights, morpher_src, rotator_src, combiner_src)) or load_schema("tha1")


def _echo_parameters(schema) -> None:
    """`pose --list-parameters`: one line per parameter of the weights' schema (range, rest, input)."""
    click.echo(f"{schema.name}: {schema.size} pose parameters (NAME [LOW, HIGH] rest VALUE, network input)")
    width = max(len(n) for n in schema.names)
    for i, p in enumerate(schema.parameters):
        bounds = f"[{p.low:g}, {p.high:g}]"
        click.echo(f"{i:>3} {p.name:<{width}}  {bounds:<8} rest {p.rest:g}  {p.input}")


@thactl.command("pose")
@click.argument("image", type=click.Path(), required=False)
@_weights_options
@click.option("--pose", "pose", nargs=6, type=float, default=None, metavar="HX HY NZ LE RE M",
              help="THA1's six numbers: head_x head_y neck_z in [-1,1], left_eye right_eye mouth in [0,1]. "
                   "For weights of another pose schema they are mapped by the schema (tha3: head_x, head_y, "
                   "neck_z, eye_wink_left, eye_wink_right, mouth_aaa), the rest at rest.")
@click.option("--set", "settings", multiple=True, metavar="NAME=VALUE",
              help="Set one parameter of the weights' schema by name (repeatable; after --pose, so it wins; "
                   "parameters not set stay at rest). See --list-parameters.")
@click.option("--list-parameters", is_flag=True,
              help="Print the weights' pose parameters (name, range, rest) and exit; needs only --weights.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Output RGBA PNG.")
@click.option("--fit", is_flag=True, help="Pad the image to a square (centred) and resize it to the networks' size.")
@_output_path_option
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, ...")
@_precision_option
def pose_cmd(image, weights, morpher_src, rotator_src, combiner_src, pose, settings, list_parameters, output, fit,
             path, device, precision):
    """Pose one drawing: IMAGE (RGBA, transparent background, head in the middle box) -> out.png.

    \b
    Examples:
      thactl pose drawing.png --weights DIR --pose 0 0.5 0 0 0 1 -o out.png
      thactl pose drawing.png --weights DIR3 --set eye_wink_left=1 --set head_y=0.4 -o wink.png
      thactl pose --weights DIR3 --list-parameters
    """
    from pathlib import Path

    from inference.drawing import load_input_image, save_rgba_png
    from inference.errors import InferenceError
    from inference.motion import pose_from_settings
    from train.errors import TrainError

    if list_parameters:
        _echo_parameters(_weights_pose_schema(weights, morpher_src, rotator_src, combiner_src))
        return
    if image is None:
        raise click.UsageError("Missing argument 'IMAGE'.")
    if output is None:
        raise click.UsageError("Missing option '-o' / '--output'.")
    if Path(output).suffix.lower() != ".png":  # the result is RGBA: JPEG or no extension crashed in Pillow
        raise TrainError(f"{output}: output must end in .png (the posed image is RGBA)")
    values = _pose_values(pose) if pose is not None else None
    if values is None and not settings:
        raise InferenceError("give the pose: --pose HX HY NZ LE RE M (THA1's six numbers) and/or "
                             "--set NAME=VALUE (names: thactl pose --weights DIR --list-parameters)")
    the_pose = pose_from_settings(_weights_pose_schema(weights, morpher_src, rotator_src, combiner_src),
                                  values, settings)    # a bad name or value: said before loading networks
    runner = _runner(weights, morpher_src, rotator_src, combiner_src, path, device, batch_size=1,
                     half=_half(precision), warn_untrained=True)
    img, warnings = load_input_image(image, runner.image_size, fit=fit)
    for w in warnings:
        _warn(f"{image}: {w}")
    runner.set_image(img)
    out = runner.run(the_pose[None])[0]
    save_rgba_png(out, output)
    click.echo(f"wrote {output} ({out.shape[1]}x{out.shape[0]} RGBA, {runner.path} path, {runner.device})")


# ---------------------------------------------------------------- track (face -> poses)

def _tracking_options(f):
    """Options shared by `track` and `animate --video`: calibration, mapping, smoothing."""
    opts = [
        click.option("--neutral", default="start", show_default=True,
                     help="Frames showing the resting head: start (the first second), clip (all) or a frame number."),
        click.option("--neutral-angles", nargs=3, type=float, default=(0.0, 0.0, 0.0), show_default=True,
                     metavar="UP TURN TILT", help="How the head is really turned in the neutral frames (degrees)."),
        click.option("--gain", default=1.0, show_default=True, type=click.FloatRange(0.01, 10),
                     help="Multiply head angles (real heads turn further than 15 degrees); then clamped."),
        click.option("--mirror/--no-mirror", default=True, show_default=True,
                     help="Mirror: the subject's right eye drives left_eye, turns are mirrored (THA1's demo)."),
        click.option("--smooth", default=0.05, show_default=True, type=click.FloatRange(0, 5),
                     help="Forward-backward smoothing time constant in seconds (no lag; 0 = off)."),
        click.option("--eye-open", default=0.22, show_default=True, type=float,
                     help="Lid gap / eye width at which an eye counts as open."),
        click.option("--eye-closed", default=0.08, show_default=True, type=float,
                     help="Lid gap / eye width at which an eye counts as closed."),
        click.option("--mouth-closed", default=0.04, show_default=True, type=float,
                     help="Inner-lip gap / mouth width at which the mouth counts as closed."),
        click.option("--mouth-open", default=0.45, show_default=True, type=float,
                     help="Inner-lip gap / mouth width at which the mouth counts as fully open."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _track_poses(source_path, fps, neutral, neutral_angles, gain, mirror, smooth, eye_open, eye_closed,
                 mouth_closed, mouth_open):
    """Track a video or image folder -> (source, tracked landmarks, TrackedPoses); prints the summary."""
    from tqdm import tqdm

    from tracking.calibration import Neutral
    from tracking.frames import open_frames
    from tracking.posemap import PoseMapping
    from tracking.track import poses_from_tracked, summary, track_frames

    mapping = PoseMapping(gain, mirror, eye_open, eye_closed, mouth_closed, mouth_open).check()
    source = open_frames(source_path, fps)
    with tqdm(unit="frame", desc="track", dynamic_ncols=True,
              total=len(source.images) if source.images else None) as bar:
        tracked = track_frames(source, progress=bar.update)
    result = poses_from_tracked(tracked, mapping, Neutral.parse(neutral, neutral_angles), smooth)
    for w in result.warnings:
        _warn(f"{source_path}: {w}")
    click.echo(summary(tracked, result))
    return source, tracked, result


@thactl.command("animate")
@click.argument("image", type=click.Path())
@_weights_options
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="out.gif or out.mp4 (mp4 needs imageio-ffmpeg).")
@click.option("--motion", default="sweep", show_default=True,
              help="sweep (each parameter of the weights' pose schema in turn), blink, talk, or a CSV file: "
                   "a header row naming columns by parameter (the others at rest), or rows of all the "
                   "schema's numbers in order, or THA1's six (mapped by the schema).")
@click.option("--video", type=click.Path(), default=None,
              help="Take the motion from the face in this video or image folder (needs the [track] extra); "
                   "the tracking options below apply.")
@click.option("--side-by-side", is_flag=True, help="With --video: put the source video left of the character.")
@click.option("--fps", type=click.FloatRange(1, 120), default=None,
              help="Frames per second (default: 20; with --video the video's own rate).")
@click.option("--seconds", type=click.FloatRange(0.1, 600), default=None,
              help="Length of a built-in motion (default: sweep 1.2 s per parameter, 7.2 s for THA1's six; "
                   "blink 3 s, talk 4 s).")
@click.option("--background", default="white", show_default=True,
              help="Colour the frames are composited over (white, black, #rrggbb, r,g,b); "
                   "'transparent' keeps 1-bit GIF transparency.")
@click.option("--fit", is_flag=True, help="Pad the image to a square (centred) and resize it.")
@_output_path_option
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1))
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, ...")
@_precision_option
@click.option("--save-poses", type=click.Path(dir_okay=False), default=None,
              help="Also write the poses used as CSV (a header of the schema's names).")
@_tracking_options
def animate_cmd(image, weights, morpher_src, rotator_src, combiner_src, output, motion, video, side_by_side, fps,
                seconds, background, fit, path, batch_size, device, precision, save_poses, **tracking):
    """Animate one drawing into a GIF or MP4 (fp16 on CUDA unless --precision fp32; the morpher runs
    once per expression).

    \b
    Examples:
      thactl animate drawing.png --weights DIR -o talk.gif --motion talk
      thactl animate drawing.png --weights DIR --video face.mp4 -o out.mp4 --side-by-side
    """
    from tqdm import tqdm

    from inference.animation import parse_color, write_animation
    from inference.drawing import load_input_image
    from inference.motion import from_tha1, get_motion, write_csv
    from train.errors import TrainError

    from pathlib import Path

    ext = Path(output).suffix.lower()
    if ext not in (".gif", ".mp4"):
        raise TrainError(f"{output}: output must end in .gif or .mp4")
    bg = parse_color(background)
    if bg is None and ext == ".mp4":
        raise TrainError(f"{output}: MP4 has no transparency; give a --background colour")
    if side_by_side and not video:
        raise TrainError("--side-by-side needs --video")
    if ext == ".mp4":
        try:  # say so before rendering every frame, not after
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise TrainError(f"{output}: writing .mp4 needs ffmpeg through the imageio-ffmpeg package "
                             "(pip install imageio-ffmpeg), or write a .gif instead") from None
    runner = _runner(weights, morpher_src, rotator_src, combiner_src, path, device, batch_size=batch_size,
                     half=_half(precision), warn_untrained=True)
    img, warnings = load_input_image(image, runner.image_size, fit=fit)
    for w in warnings:
        _warn(f"{image}: {w}")
    if video:
        source, _, tracked = _track_poses(video, fps, **tracking)
        poses, fps = from_tha1(tracked.poses, runner.schema), source.fps   # tracking gives THA1's six
    else:
        fps = fps or 20.0
        poses = get_motion(motion, fps=fps, seconds=seconds, schema=runner.schema)
    runner.set_image(img)
    with tqdm(total=len(poses), unit="frame", desc="animate", dynamic_ncols=True) as bar:
        frames = runner.run(poses, progress=bar.update)
    if side_by_side:
        from tracking.transfer import side_by_side as beside

        frames = beside(source, frames)
    write_animation(frames, output, fps=fps, background=bg)
    if save_poses:
        write_csv(save_poses, poses, runner.schema)
    click.echo(f"wrote {output}: {len(frames)} frames, {frames.shape[2]}x{frames.shape[1]}, {fps:g} fps")
    click.echo(f"networks: {runner.fps:.1f} frames/s on {runner.device}"
               f"{' (fp16)' if runner.half else ''}, batch {runner.batch_size}; "
               f"morpher ran {runner.morpher_runs} times for {runner.frames} frames")


@thactl.command("track")
@click.argument("source", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="poses.csv: six pose values per frame and face (1, or 0 where no face was found).")
@click.option("--fps", type=click.FloatRange(0.1, 1000), default=None,
              help="Frame rate (default: the video's own; 20 for an image folder).")
@_tracking_options
@click.option("--preview", type=click.Path(dir_okay=False), default=None,
              help="Also write what the tracker saw: a .png sheet or a .gif of every frame.")
def track_cmd(source, output, fps, preview, **tracking):
    """Track a face in a video or image folder and write one THA pose per frame (the CSV that
    `animate --motion` reads). Needs: pip install -e ".[track]".

    \b
    Examples:
      thactl track face.mp4 -o poses.csv --preview seen.png
      thactl track frames/ --fps 30 -o poses.csv --gain 1.5 --neutral 0
    """
    from core.atomicfile import write_text
    from tracking.track import poses_csv_text
    from tracking.preview import write_preview

    src, tracked, result = _track_poses(source, fps, **tracking)
    write_text(output, poses_csv_text(result.poses, result.found))
    click.echo(f"wrote {output}: {len(result.poses)} poses")
    if preview:
        write_preview(preview, src, tracked.landmarks, result.found, result.poses)
        click.echo(f"wrote {preview}")


@thactl.command("export")
@_weights_options
@click.option("--onnx", "onnx_out", required=True, type=click.Path(dir_okay=False), help="Output .onnx file.")
@click.option("--path", "path", type=click.Choice(["full", "pumarola", "zhou"]), default=None,
              help="Which output the graph returns: full (combiner; default when given), pumarola or zhou.")
@click.option("--opset", default=20, show_default=True, type=click.IntRange(20),
              help="ONNX opset (GridSample/AffineGrid need 20).")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Check with onnxruntime (when installed) that outputs match torch within 1e-3.")
def export_cmd(weights, morpher_src, rotator_src, combiner_src, onnx_out, path, opset, verify):
    """Export the poser (image (B,4,S,S), pose (B,P)) -> image (B,4,S,S) to ONNX; P is the size of the
    weights' pose schema (THA1: 6), whose names another schema's export records in the metadata."""
    from inference.export import export_onnx

    runner = _runner(weights, morpher_src, rotator_src, combiner_src, path, "cpu")
    rep = export_onnx(runner, onnx_out, opset=opset, verify=verify)
    if rep["max_abs_diff"] is None:
        msg = "not verified (onnxruntime not installed)" if verify else "not verified"
    else:
        msg = f"onnxruntime matches torch: max |diff| {rep['max_abs_diff']:.2e}"
    click.echo(f"wrote {onnx_out} ({runner.path} path, {runner.image_size}x{runner.image_size}, opset {opset}); {msg}")


@thactl.command("import-tha1")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Folder for morpher/rotator/combiner.safetensors.")
@click.option("--force", is_flag=True, help="Replace .safetensors files already in OUT.")
def import_tha1_cmd(folder, out, force):
    """Convert THA1's released weights (FOLDER/face_morpher.pt, two_algo_face_rotator.pt, combiner.pt)
    to thactl's .safetensors once. Commands also take FOLDER as it is (--weights FOLDER).

    The weights are Pramook Khungurn's, licensed CC BY 4.0; the output records the source file,
    its sha256 and that licence in its metadata.
    """
    from models.tha1 import import_folder

    for p in import_folder(folder, out, force=force):
        click.echo(f"wrote {p}")


# ---------------------------------------------------------------- serve (browser app)

@thactl.command("serve")
@click.option("--models", type=click.Path(exists=True, file_okay=False), default=None,
              help="Model collection for the model page (QA, framing and morph editor).")
@click.option("--overrides", type=click.Path(dir_okay=False), default=None,
              help="Override file the model page writes (default: MODEL.pmx.thactl.json beside each model).")
@click.option("--drawings", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of drawings the puppet page may open (uploads always work).")
@click.option("--weights", type=click.Path(exists=True), default=None,
              help="Network weights for the puppet page (folder of .safetensors or THA1 files).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@_precision_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but localhost needs --allow-remote.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option("--allow-remote", is_flag=True,
              help="Allow --host to be a non-local address (anyone who reaches it can use the app).")
@click.option("--schema", default="tha1", show_default=True, metavar="NAME|FILE",
              help="Model page: the pose schema (tha1, tha3 or a schema file) whose parameters it lists, "
                   "with how each was found, a slider and a morph choice each.")
def serve_cmd(models, overrides, drawings, weights, device, precision, host, port, allow_remote, schema):
    """Run the browser app on localhost: model QA and editor, live poser, webcam puppet.
    Give --models (the model page), --weights (the puppet page) or both.

    \b
    Examples:
      thactl serve --models ./pmx                   # then open http://127.0.0.1:8765/
      thactl serve --weights ./weights --drawings ./drawings
      thactl serve --models ./pmx --schema tha3     # 45 parameters per model
    """
    from pathlib import Path

    from app.config import ServeConfig
    from core.poseschema import BUILTIN, load_schema
    from app.server import is_local, make_server

    if not is_local(host) and not allow_remote:
        raise click.BadParameter(f"{host} is not a local address; add --allow-remote to listen on it",
                                 param_hint="--host")
    if drawings is not None and weights is None:
        raise click.ClickException("--drawings is for the puppet page, which needs --weights FOLDER too")
    if models is None and weights is None:
        raise click.ClickException("nothing to serve: give --models FOLDER (the model page) and/or "
                                   "--weights FOLDER (the puppet page)")
    load_schema(schema)                 # a bad schema is refused before the server starts
    if not is_local(host):
        _warn(f"listening on {host}: anyone who can reach this machine can use the app and its files")
    cfg = ServeConfig(host=host, port=port, models=Path(models).resolve() if models else None,
                      overrides=Path(overrides).resolve() if overrides else None,
                      drawings=Path(drawings).resolve() if drawings else None,
                      weights=Path(weights).resolve() if weights else None, device=device, precision=precision,
                      schema=schema if schema in BUILTIN else str(Path(schema).resolve()))
    server = make_server(cfg)
    url_host = f"[{host}]" if ":" in host else host
    click.echo(f"thactl serve: http://{url_host}:{server.server_address[1]}/ (Ctrl-C stops)")
    try:
        server.serve_forever()
    finally:
        server.server_close()


def _one_line(e: BaseException) -> str:
    """A user error's message on one line. An error raised in a DataLoader worker process
    comes back carrying the worker's traceback text: keep its last line (the message)."""
    msg = str(e)
    if "Traceback (most recent call last)" in msg:
        last = msg.strip().splitlines()[-1]
        head, sep, rest = last.partition(": ")
        msg = rest if sep and head.replace(".", "").replace("_", "").isalnum() else last
    return msg


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: our input errors become `thactl: error: ...` and exit 1."""
    args = list(sys.argv[1:] if argv is None else argv)
    resumable = bool(args) and args[0] in ("render", "train")
    interrupted = "thactl: interrupted" + ("; re-run the same command to resume" if resumable else "")
    try:
        rv = thactl.main(args=args, prog_name="thactl", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo(interrupted, err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except _user_error_types() as e:
        click.echo(f"thactl: error: {_one_line(e)}", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo(interrupted, err=True)
        return 130
    return rv if isinstance(rv, int) else 0   # ctx.exit(n) arrives here as n


if __name__ == "__main__":
    sys.exit(main())
