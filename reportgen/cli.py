"""The command line: parses options and calls one function per verb.

Heavy modules (TensorFlow above all) are imported inside the commands, so that
``reportgen --help`` answers at once.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from reportgen import __version__
from reportgen.errors import UserError

DEFAULT_DATA = Path("data/shapes")
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True}


def user_errors(command):
    """Turn a UserError into click's one-line error and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as error:
            raise click.UsageError(str(error)) from None

    return wrapper


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="reportgen")
def main() -> None:
    """See what a convolutional network does with your images.

    Train or load a Keras image classifier, run it over every test image and
    write a static HTML site of its results and feature maps.
    """


@main.command()
@click.option("--out", type=click.Path(path_type=Path), default=DEFAULT_DATA,
              help="Folder to write training_set/ and test_set/ into.")
@click.option("--per-class", type=click.IntRange(min=2), default=100,
              help="Images per class, training and test together.")
@click.option("--test-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.3, help="Share of each class that goes to test_set/.")
@click.option("--size", type=click.IntRange(min=8, max=1024), default=28,
              help="Width and height of each image in pixels.")
@click.option("--seed", type=int, default=0, help="Random seed; the same options give the same files.")
@user_errors
def data(out: Path, per_class: int, test_fraction: float, size: int, seed: int) -> None:
    """Draw the bundled hand-drawn shapes dataset (circles, squares, triangles)."""
    from reportgen import shapes

    count = shapes.generate(out, per_class=per_class, test_fraction=test_fraction,
                            size=size, seed=seed)
    click.echo(f"Wrote {count} images to {out}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
