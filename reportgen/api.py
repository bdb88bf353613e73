"""The Python API: ``reportgen.build(model, data, ...)``, for scripts and notebooks.

The same build as ``reportgen build`` (``reportgen.stages``), with the model and the test
data in memory as well as in files. Options are the command line's (``BuildOptions`` holds
their defaults, and each value is checked by the CLI option's own type), spelled as the
``BuildOptions`` and ``TrainOptions`` fields: ``out``, ``layer_patterns``, ``max_channels``,
``explain``, ``epochs``, ... Errors are ``reportgen.UserError`` with the CLI's one-line
messages; nothing here exits the process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

import click

from reportgen.errors import UserError
from reportgen.options import BuildOptions, TrainOptions

DEFAULT_OUT = Path("output/site")
# Fields the API sets from its own arguments, not from **options.
_OWN = frozenset({"data", "out", "model_path", "history_path", "train", "generate_missing_data"})


@dataclass(frozen=True)
class Result:
    """What a build gives back; in Jupyter it shows its headline numbers and confusion matrix."""

    site: Path  # the site folder; open site / "index.html"
    accuracy: float
    macro_f1: float
    n_images: int
    class_names: tuple[str, ...]
    confusion: tuple[tuple[int, ...], ...]  # rows true class, columns predicted
    warnings: tuple[str, ...]
    files: int
    bytes: int
    seconds: float
    title: str
    weights: str = ""  # which weights the report describes (the training callback says)

    @property
    def index(self) -> Path:
        return self.site / "index.html"

    @property
    def matrix_shown(self) -> bool:
        """The confusion matrix as a table: as the site, up to plan's class limit."""
        from reportgen.plan import class_pairs_shown

        return class_pairs_shown(len(self.class_names))

    def _repr_html_(self) -> str:
        from reportgen.render import environment

        return environment().get_template("notebook.html").render(result=self)

    def __str__(self) -> str:
        return (f"{self.title}: test accuracy {self.accuracy:.1%}, macro F1 {self.macro_f1:.3f} "
                f"over {self.n_images} images; site {self.index}")


def _echo(verbose: bool):
    if verbose:
        return lambda message: click.echo(message, err=True)
    return lambda message: None


def _checked(name: str, value):
    """``value`` as the CLI option of the same name would take it (range, choice)."""
    from reportgen import cli

    for param in cli.build.params:
        if param.name == name and value is not None:
            try:
                return param.type_cast_value(click.Context(cli.build), value)
            except click.BadParameter as error:
                raise UserError(f"{name}={value!r}: {error.message}") from None
    return value


def build_options(out=DEFAULT_OUT, *, data=None, model_path=None, history_path=None,
                  **options) -> BuildOptions:
    """BuildOptions from keyword arguments named as its fields (and TrainOptions')."""
    build_names = {f.name for f in fields(BuildOptions)} - _OWN
    train_names = {f.name for f in fields(TrainOptions)}
    unknown = sorted(set(options) - build_names - train_names)
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(unknown)}; options are "
                        f"{', '.join(sorted(build_names | train_names))}")
    if isinstance(options.get("layer_patterns"), str):  # one glob, as one --layers
        options["layer_patterns"] = (options["layer_patterns"],)
    build = {name: _checked(name, value) for name, value in options.items() if name in build_names}
    train = TrainOptions(**{name: _checked(name, value) for name, value in options.items()
                            if name in train_names})
    folder = Path(data) if data is not None else Path("data/shapes")
    return BuildOptions(data=folder, out=Path(out), model_path=model_path,
                        history_path=history_path, train=train, **build)


def build(model=None, data=None, *, out=DEFAULT_OUT, history=None, class_names=None,
          verbose: bool = True, model_source: str | None = None, **options) -> Result:
    """Build the report of ``model`` on ``data`` into ``out``; returns a ``Result``.

    - ``model``: a ``keras.Model`` in memory, a ``.keras`` path, or None to train the
      article's CNN on ``data``'s training_set/ (as ``reportgen build`` does).
    - ``data``: an image folder (as ``--data``), a ``tf.data.Dataset`` of (images, labels)
      batches as ``keras.utils.image_dataset_from_directory`` yields them, or ``(x, y)``
      arrays; labels as integers, one-hot rows or 0/1. Read once (``reportgen.given``).
    - ``history``: a Keras ``History`` (what ``fit`` returns), its ``.history`` dict, or a
      sidecar JSON / CSVLogger file, for the learning curves.
    - ``class_names``: for data in memory, when the dataset has no ``class_names`` of its own.
    - ``verbose``: progress lines on stderr, as the command line prints them.
    - ``model_source``: where the model came from, in words, for the overview.
    - ``options``: the command line's, by their ``BuildOptions`` / ``TrainOptions`` names,
      e.g. ``layer_patterns=("conv*",)``, ``max_channels=16``, ``explain=False``, ``epochs=5``.
    """
    from reportgen import stages

    in_memory_data = data is not None and not isinstance(data, str | os.PathLike)
    folder = None if in_memory_data else data
    path_model = model if isinstance(model, str | os.PathLike) else None
    history_path = history if isinstance(history, str | os.PathLike) else None
    built = build_options(out, data=folder, model_path=Path(path_model) if path_model else None,
                          history_path=Path(history_path) if history_path else None, **options)
    if folder is None and not in_memory_data:  # the bundled shapes, drawn if missing (as the CLI)
        built = replace(built, generate_missing_data=True)
    given = {}
    if model is not None and path_model is None:
        given["model"] = model
    if in_memory_data:
        given.update(data=data, class_names=class_names)
    if history is not None and history_path is None:
        given["history"] = history
    if model_source is not None:
        given["source"] = model_source
    result = stages.build(built, _echo(verbose), **given)
    return result_of(result)


def result_of(built, weights: str = "") -> Result:
    """The API's Result of a ``stages.BuildResult``."""
    report = built.report
    metrics = report.metrics
    return Result(site=built.site, accuracy=metrics.accuracy, macro_f1=metrics.macro_f1,
                  n_images=metrics.n_images, class_names=tuple(report.class_names),
                  confusion=tuple(tuple(int(v) for v in row) for row in metrics.confusion),
                  warnings=tuple(built.warnings), files=built.files, bytes=built.bytes,
                  seconds=built.seconds, title=report.title, weights=weights)


__all__ = ["Result", "build", "build_options"]
