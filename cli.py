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
