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
    from dataset.errors import DatasetError
    from renderer.errors import RendererError
    from train.errors import TrainError

    return (RendererError, DatasetError, TrainError)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="thactl")
def thactl() -> None:
    """Make training data from MMD models and train the THA1 networks.

    \b
    Typical use:
      thactl samples ./samples                        # built-in sample characters
      thactl preview MODEL.pmx --sheet -o sheet.png   # does this model work?
      thactl render --models ./pmx --out ./data       # training data (HDF5 shards)
      thactl inspect ./data                           # counts, statistics, contact sheet
      thactl train morpher --data ./data --out ./runs/morpher
      thactl eval --data ./data --split test --morpher R1 --rotator R2 --combiner R3
      thactl pose drawing.png --weights DIR --pose 0 0.5 0 0 0 1 -o out.png
    """


# ---------------------------------------------------------------- samples / preview (renderer)

# ---------------------------------------------------------------- render / inspect (dataset)

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
@click.option("--init", "init", type=click.Path(), help="Start from these weights (run folder, checkpoint.pt "
              "or .safetensors), e.g. the rotator's L1 run for its perceptual run.")
@click.option("--rotator", type=click.Path(), help="Combiner only: trained rotator (run folder or .safetensors).")
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
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True,
              help="auto = bf16 autocast on CUDA (fp16 + GradScaler on GPUs without bf16), fp32 on the CPU.")
@click.option("--channels-last/--no-channels-last", default=None, help="Default: on for CUDA.")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the network.")
@click.option("--workers", type=int, help="DataLoader worker processes (default: 8 on CUDA, 0 on the CPU).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_cmd(kind, data, out, loss, vgg_weights, random_vgg, init, rotator, batch_size, examples, lr, seed,
              checkpoint_every, val_every, val_examples, num_samples, log_every, image_size, base_channels,
              num_downsample, num_res_blocks, device, precision, channels_last, compile_, workers, quiet):
    """Train the face MORPHER, the ROTATOR or the COMBINER on rendered shards.

    \b
    Examples:
      thactl train morpher --data ./data --out ./runs/morpher
      thactl train rotator --data ./data --out ./runs/rotator-l1
      thactl train rotator --data ./data --out ./runs/rotator-p --loss perceptual \\
          --init ./runs/rotator-l1 --vgg-weights vgg16.pth
      thactl train combiner --data ./data --out ./runs/combiner --rotator ./runs/rotator-l1
      torchrun --nproc_per_node 8 $(which thactl) train morpher --data ./data --out ./runs/m
    """
    import logging
    from pathlib import Path

    from train.errors import TrainError
    from train.loop import TrainConfig, train

    if not Path(data).is_dir():
        raise TrainError(f"{data}: data folder not found")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = TrainConfig(kind=kind, data=data, out=out, loss=loss, batch_size=batch_size, examples=examples, lr=lr,
                      seed=seed, checkpoint_every=checkpoint_every, val_every=val_every, val_examples=val_examples,
                      num_samples=num_samples, log_every=log_every, image_size=image_size,
                      base_channels=base_channels, num_downsample=num_downsample, num_res_blocks=num_res_blocks,
                      device=device, precision=precision, channels_last=channels_last, compile=compile_,
                      workers=workers, vgg_weights=vgg_weights, random_vgg=random_vgg, init=init, rotator=rotator,
                      quiet=quiet)
    summary = train(cfg)
    if int(__import__("os").environ.get("RANK", "0")) == 0:
        click.echo(f"trained {kind}: {summary['examples']} examples; weights in {summary['weights']}")

# ---------------------------------------------------------------- eval / pose / animate / export


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: our input errors become `thactl: error: ...` and exit 1."""
    try:
        thactl.main(args=argv, prog_name="thactl", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("thactl: interrupted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except _user_error_types() as e:
        click.echo(f"thactl: error: {e}", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("thactl: interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
