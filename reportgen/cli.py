"""The command line: parses options and calls one function per verb.

Heavy modules (TensorFlow above all) are imported inside the commands, so that
``reportgen --help`` answers at once.
"""

from __future__ import annotations

import functools
import gc
import sys
from pathlib import Path

import click

from reportgen import __version__
from reportgen.drawing import JPEG_MIN_SIDE_PX, PICTURE_CHOICES, SCALES
from reportgen.engines import DEFAULT_DASK_WORKERS, ENGINES, check_engine_options
from reportgen.errors import UserError
from reportgen.explain import EMBEDDING_METHODS
from reportgen.options import BuildOptions, TrainOptions, default

DEFAULT_DATA = Path("data/shapes")
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True}


class InputError(click.ClickException):
    """Printed as one ``Error: ...`` line (no usage text: the command line was fine, the input not)."""

    exit_code = 2  # click's convention for user mistakes


def user_errors(command):
    """Turn a UserError into one line on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as error:
            raise InputError(str(error)) from None

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
@click.option("--seed", type=click.IntRange(min=0), default=0,
              help="Random seed; the same options give the same files.")
@user_errors
def data(out: Path, per_class: int, test_fraction: float, size: int, seed: int) -> None:
    """Draw the bundled shapes dataset (circles, squares, triangles)."""
    from reportgen import shapes

    count = shapes.generate(out, per_class=per_class, test_fraction=test_fraction,
                            size=size, seed=seed)
    click.echo(f"Wrote {count} images to {out}")


def training_options(command):
    """The options ``train`` and ``build`` share: the article's schedule by default."""
    options = [
        click.option("--epochs", type=click.IntRange(min=1), default=default(TrainOptions, "epochs"),
                     help="Training epochs."),
        click.option("--steps-per-epoch", type=click.IntRange(min=1),
                     default=default(TrainOptions, "steps_per_epoch"),
                     help="Batches per epoch; the training set repeats as needed."),
        click.option("--batch-size", type=click.IntRange(min=1),
                     default=default(TrainOptions, "batch_size"),
                     help="Images per training batch."),
        click.option("--validation-split", type=click.FloatRange(0, 1, max_open=True),
                     default=default(TrainOptions, "validation_split"),
                     help="Hold out this share of training_set/ for validation; "
                          "0 validates on test_set/ as the article does."),
        click.option("--seed", type=click.IntRange(min=0), default=default(TrainOptions, "seed"),
                     help="Random seed for weights and batches."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def input_options(command):
    """How test images become the model's input: ``build`` and ``predict`` share these."""
    from reportgen.inputs import PREPROCESS_CHOICES
    from reportgen.resize import RESIZE_METHODS

    options = [
        click.option("--preprocess", type=click.Choice(PREPROCESS_CHOICES),
                     default=default(BuildOptions, "preprocess"),
                     metavar="MODE",
                     help="Pixels the model was trained on: auto (read from the model or its "
                          "sidecar; else unit, said to be a guess), unit [0, 1], raw 0-255, "
                          "symmetric [-1, 1], caffe, torch, or a keras.applications module "
                          "(mobilenet_v2, resnet50, efficientnet, convnext, ...) for its own "
                          "preprocess_input."),
        click.option("--resize", type=click.Choice(RESIZE_METHODS),
                     default=default(BuildOptions, "resize"),
                     help="How an image of another size reaches the model's: stretch "
                          "(bilinear, as image_dataset_from_directory), crop (centre crop to "
                          "the model's aspect ratio first) or pad (letterbox in black)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _train_options(epochs, steps_per_epoch, batch_size, validation_split, seed):
    from reportgen.options import TrainOptions

    return TrainOptions(epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size,
                        validation_split=validation_split, seed=seed)


def _install_sigterm_handler() -> None:
    """SIGTERM unwinds like Ctrl-C, so temporary folders are cleaned up and the old site kept."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


@main.command()
@click.option("--data", type=click.Path(path_type=Path), default=DEFAULT_DATA,
              help="Dataset folder with training_set/ and test_set/.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("output/model/model.keras"),
              help="Where to save the .keras model (its .reportgen.json sidecar goes beside it).")
@training_options
@user_errors
def train(data: Path, out: Path, **training) -> None:
    """Train the article's CNN and save its best epoch as .keras."""
    from reportgen import model as model_stage
    from reportgen.data import scan_dataset

    if out.suffix != ".keras":
        raise UserError(f"--out must name a .keras file, not {out}")
    dataset = scan_dataset(data, require_train=True)
    options = _train_options(**training)
    trained, history = model_stage.train(dataset, options, report=lambda line: click.echo(line))
    model_stage.save(trained, history, dataset.class_names, options, out)
    click.echo(f"Best epoch {history.best_epoch} of {history.epochs}: validation accuracy "
               f"{max(history.val_accuracy):.4f} on {history.validation}")
    click.echo(f"Saved {out} and {model_stage.sidecar_path(out)}")


@main.command()
@click.option("--model", "model_path", type=click.Path(path_type=Path), required=True,
              help="A .keras image classifier.")
@click.option("--classes", help="Comma-separated class names, if the model has no sidecar.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per image.")
@click.option("--trust-model", is_flag=True, help="Allow models that contain Python code.")
@input_options
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@user_errors
def predict(model_path: Path, classes: str | None, as_json: bool, trust_model: bool,
            preprocess: str, resize: str, images: tuple[Path, ...]) -> None:
    """Classify images that are not in any test set."""
    import json

    from reportgen import model as model_stage
    from reportgen.inputs import decide

    loaded = model_stage.load_with_sidecar(model_path, trust=trust_model)
    n_outputs = model_stage.n_classes(loaded.model)
    names = classes.split(",") if classes else loaded.class_names
    names = list(names) if names else [str(i) for i in range(n_outputs)]
    if len(names) != n_outputs:
        raise UserError(f"the model predicts {n_outputs} classes but {len(names)} names were given")
    contract = decide(loaded.model, loaded.sidecar, preprocess, resize=resize)
    click.echo(f"Input: {contract.description}", err=True)
    probabilities = model_stage.predict_files(loaded.model, list(images), contract)
    for path, probs in zip(images, probabilities, strict=True):
        best = int(probs.argmax())
        if as_json:
            click.echo(json.dumps({"path": str(path), "class": names[best],
                                   "probabilities": dict(zip(names, map(float, probs), strict=True))},
                                  ensure_ascii=False))
        else:
            shares = "  ".join(f"{name} {p:.3f}" for name, p in zip(names, probs, strict=True))
            click.echo(f"{path}: {names[best]}  ({shares})")


@main.command()
@click.option("--data", type=click.Path(path_type=Path), default=DEFAULT_DATA,
              help="Dataset folder (test_set/, and training_set/ when training). With --model "
                   "it may also be a plain folder of class folders. "
                   "The bundled shapes are drawn if the default folder is missing.")
@click.option("--labels", type=click.Path(path_type=Path),
              help="With --model: a CSV of path,label rows (paths relative to --data) naming the "
                   "test images, instead of class folders.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("output/site"),
              help="Site folder; replaced atomically, and only if reportgen made it.")
@click.option("--model", "model_path", type=click.Path(path_type=Path),
              help="Report on this .keras model instead of training one.")
@click.option("--history", "history_path", type=click.Path(path_type=Path),
              help="Training history for --model: a reportgen sidecar JSON or a CSVLogger CSV.")
@click.option("--retrain", is_flag=True, help="Train anew even if a matching model is cached.")
@click.option("--trust-model", is_flag=True,
              help="Allow models that contain Python code (Lambda layers, HDF5). Only for files "
                   "you trust.")
@click.option("--layers", "layer_patterns", multiple=True,
              help="Layers to show: a glob on their paths (repeatable), e.g. 'block2*', or 'all'. "
                   "Default: every layer of a small model; the first convolution, block outputs "
                   "and last layer of a big one.")
@click.option("--scale", type=click.Choice(SCALES),
              default=default(BuildOptions, "scale"),
              help="Colour scale: one per layer (honest: dead channels look dead) or the "
                   "article's per-channel standardisation.")
@click.option("--colormap", default=default(BuildOptions, "colormap"),
              help="Any matplotlib colormap name.")
@click.option("--pictures", type=click.Choice(PICTURE_CHOICES),
              default=default(BuildOptions, "pictures"),
              help=f"Format of the input pictures and Grad-CAM overlays: auto is JPEG when the "
                   f"model's input is at least {JPEG_MIN_SIDE_PX} px on its shorter side, "
                   f"lossless PNG below. Feature maps and heatmaps are always PNG.")
@click.option("--per-page", "images_per_page", type=click.IntRange(min=1),
              default=default(BuildOptions, "images_per_page"),
              help="Images per page of a layer's gallery.")
@click.option("--max-gallery-images", type=click.IntRange(min=1),
              help="Draw feature maps for at most this many test images (mistakes first, then "
                   "an even share of each class).")
@click.option("--max-channels", type=click.IntRange(min=1),
              default=default(BuildOptions, "max_channels"),
              help="Channels drawn per layer on image and gallery pages, the most variable "
                   "over the test set; the atlas and report.json keep every channel.")
@click.option("--memory-budget", "memory_budget_mb", type=click.IntRange(min=100),
              default=default(BuildOptions, "memory_budget_mb"),
              help="Megabytes for feature maps on top of TensorFlow's own; sizes the batches.")
@click.option("--max-site-mb", type=click.IntRange(min=1),
              default=default(BuildOptions, "max_site_mb"),
              help="Site size budget in MB (GitHub Pages allows 1000): fewer images get "
                   "feature maps if needed, never fewer predictions or statistics.")
@click.option("--jobs", type=click.IntRange(min=1), default=default(BuildOptions, "jobs"),
              help="Worker threads drawing and encoding feature maps.")
@click.option("--strict", is_flag=True, help="Fail if any image file cannot be read.")
@click.option("--title", help="Site title (default: model and data names).")
@click.option("--explain/--no-explain", default=default(BuildOptions, "explain"),
              help="Grad-CAM for every image, label quality, calibration and an embedding map.")
@click.option("--features/--no-features", default=default(BuildOptions, "features"),
              help="For each drawn channel, a picture that maximizes its mean activation "
                   "(gradient ascent on the input), beside its top test images.")
@click.option("--feature-steps", type=click.IntRange(min=1),
              default=default(BuildOptions, "feature_steps"),
              help="Gradient-ascent steps per feature visualization; the time grows with it.")
@click.option("--feature-channels", type=click.IntRange(min=0),
              help="Channels given a feature visualization in all, shared across the layers, "
                   "most variable first  [default: 1,000,000 / the input's height x width: "
                   "every drawn channel of a 28x28 or 32x32 model]")
@click.option("--cam-layer", help="Grad-CAM's feature-map layer (a path as on the overview) "
                                  "[default: the last one larger than 1x1].")
@click.option("--embedding", type=click.Choice(EMBEDDING_METHODS),
              default=default(BuildOptions, "embedding"), show_default=True,
              help="How the embedding map is drawn: pca (NumPy) or tsne (scikit-learn, needs "
                   "pip install 'reportgen[tsne]').")
@click.option("--site-url", help="Where the site will be published, e.g. "
                                 "https://you.github.io/repo/: adds a sitemap.xml and canonical "
                                 "links, and lets 404.html work at any path. Without it every "
                                 "link is relative.")
@click.option("--engine", type=click.Choice(ENGINES), default=default(BuildOptions, "engine"),
              help="Where the passes over the test images run: local (this process) or dask "
                   "(a Dask cluster; needs pip install 'reportgen[dask]'). Same site either way.")
@click.option("--workers", type=click.IntRange(min=1),
              help=f"With --engine dask: start a cluster of this many worker processes on this "
                   f"machine  [default: {DEFAULT_DASK_WORKERS}]")
@click.option("--scheduler", metavar="ADDRESS",
              help="With --engine dask: use the running cluster whose scheduler is at this "
                   "address, e.g. tcp://10.0.0.5:8786. Its workers must see --data, --model and "
                   "--out at the same paths.")
@input_options
@training_options
@user_errors
def build(data: Path, labels: Path | None, out: Path, model_path: Path | None,
          history_path: Path | None, retrain: bool, trust_model: bool, preprocess: str, resize: str,
          layer_patterns: tuple[str, ...], scale: str,
          colormap: str, pictures: str, images_per_page: int, max_gallery_images: int | None,
          max_channels: int, memory_budget_mb: int, max_site_mb: int, jobs: int,
          strict: bool, title: str | None, explain: bool, features: bool, feature_steps: int,
          feature_channels: int | None, cam_layer: str | None,
          embedding: str, site_url: str | None, engine: str, workers: int | None,
          scheduler: str | None, **training) -> None:
    """Write the HTML report: train or load, run every test image."""
    from reportgen.publish import site_url as checked_site_url

    check_engine_options(engine, workers, scheduler)

    if history_path is not None and model_path is None:
        raise UserError("--history goes with --model; a model trained here records its own")
    if labels is not None and model_path is None:
        raise UserError("--labels goes with --model: training reads training_set/ and test_set/ "
                        "class folders")
    if site_url is not None:
        site_url = checked_site_url(site_url)
    from reportgen.stages import BuildOptions
    from reportgen.stages import build as build_site
    _install_sigterm_handler()
    options = BuildOptions(
        data=data, labels=labels, out=out, model_path=model_path, history_path=history_path,
        retrain=retrain,
        trust_model=trust_model, preprocess=preprocess, resize=resize,
        layer_patterns=layer_patterns, scale=scale, colormap=colormap, pictures=pictures,
        images_per_page=images_per_page, max_gallery_images=max_gallery_images,
        max_channels=max_channels, memory_budget_mb=memory_budget_mb, max_site_mb=max_site_mb,
        jobs=jobs, strict=strict, title=title, explain=explain, features=features,
        feature_steps=feature_steps, feature_channels=feature_channels, cam_layer=cam_layer,
        embedding=embedding, site_url=site_url, engine=engine, workers=workers,
        scheduler=scheduler, generate_missing_data=data == DEFAULT_DATA,
        train=_train_options(**training),
    )
    from reportgen.site import InterruptedAfterSwap

    try:
        result = build_site(options)
    except InterruptedAfterSwap:
        click.echo(f"Interrupted, after the new site was complete and in place in {out}.", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("Interrupted; the previous site is unchanged.", err=True)
        sys.exit(130)
    click.echo(f"Wrote {result.files} files ({result.bytes / 1e6:.1f} MB) in "
               f"{result.seconds:.1f} s; test accuracy {result.accuracy:.1%}.")
    click.echo(f"Open {(result.site / 'index.html').as_uri()}")
    # The process ends now: without this, Python's last cycle collections over TensorFlow's
    # objects delay the exit after the site is done; the OS takes the memory back at once
    # (benchmarks/results.md, *Measured by hand*).
    gc.freeze()


@main.command()
@click.argument("sites", nargs=-1, type=click.Path(path_type=Path), metavar="[SITE_A SITE_B]")
@click.option("--model", "models", multiple=True, type=click.Path(path_type=Path),
              help="Instead of two sites: a .keras model, given twice (A, then B); both are "
                   "run on --data and their sites built inside the compare site.")
@click.option("--data", type=click.Path(path_type=Path),
              help="With --model: the one test set both models are run on (as for build).")
@click.option("--labels", type=click.Path(path_type=Path),
              help="With --model: a CSV of path,label rows naming the test images.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("output/compare"),
              help="Compare site folder; replaced atomically, and only if reportgen made it.")
@click.option("--title", help="Site title (default: the two models' names).")
@click.option("--trust-model", is_flag=True,
              help="With --model: allow models that contain Python code. Only for files you trust.")
@click.option("--explain/--no-explain", default=default(BuildOptions, "explain"),
              help="With --model: Grad-CAM for every image of both sites.")
@click.option("--jobs", type=click.IntRange(min=1), default=default(BuildOptions, "jobs"),
              help="With --model: worker threads drawing feature maps.")
@input_options
@user_errors
def compare(sites: tuple[Path, ...], models: tuple[Path, ...], data: Path | None,
            labels: Path | None, out: Path, title: str | None, trust_model: bool, explain: bool,
            jobs: int, preprocess: str, resize: str) -> None:
    """Compare two models on one test set: SITE_A SITE_B, or --model A --model B --data DIR.

    A is the baseline: differences are B minus A, with McNemar's exact test on the images
    only one of them gets right.
    """
    from reportgen.compare import compare_models, compare_sites

    if models:
        if sites:
            raise UserError("give two sites or two --model, not both")
        if len(models) != 2:
            raise UserError(f"--model goes twice (A, then B), not {len(models)} time(s)")
        if data is None:
            raise UserError("--model needs --data: the test set both models are run on")
        _install_sigterm_handler()
        options = BuildOptions(data=data, labels=labels, out=out, trust_model=trust_model,
                               explain=explain, jobs=jobs, preprocess=preprocess, resize=resize)
        result = compare_models(options, *models, title=title,
                                echo=lambda line: click.echo(line, err=True))
    else:
        if len(sites) != 2:
            raise UserError(f"give two built sites (SITE_A SITE_B), not {len(sites)}, "
                            "or --model twice with --data")
        if data is not None or labels is not None:
            raise UserError("--data and --labels go with --model: sites already hold their test set")
        result = compare_sites(*sites, out, title=title)
    agreement = result.comparison.agreement
    click.echo(f"A {result.comparison.a.accuracy:.1%}, B {result.comparison.b.accuracy:.1%}: "
               f"{agreement.only_b_right} images fixed by B, {agreement.only_a_right} broken; "
               f"McNemar's exact p = {agreement.p_value:.3g}.")
    click.echo(f"Wrote {result.files} files ({result.bytes / 1e6:.1f} MB); open "
               f"{(result.site / 'index.html').as_uri()}")


@main.command()
@click.option("--site", type=click.Path(path_type=Path), default=Path("output/site"),
              help="The built site folder.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, help="Port on localhost.")
@user_errors
def serve(site: Path, port: int) -> None:
    """Preview the built site on localhost."""
    from reportgen.publish import serve as serve_site

    serve_site(site, port, announce=click.echo)


@main.command("gh-deploy")
@click.option("--site", type=click.Path(path_type=Path), default=Path("output/site"),
              help="The built site folder.")
@click.option("--remote", default="origin", help="Git remote to push to.")
@click.option("--branch", default="gh-pages", help="Branch that GitHub Pages serves.")
@click.option("--message", default="Deploy reportgen site", help="Commit message.")
@click.option("--no-push", is_flag=True, help="Commit to the branch but do not push.")
@click.option("--site-url", help="The address the site is published at, to check that the site "
                                 "was built for it  [default: the GitHub Pages address of "
                                 "--remote]")
@user_errors
def gh_deploy(site: Path, remote: str, branch: str, message: str, no_push: bool,
              site_url: str | None) -> None:
    """Publish the built site to the gh-pages branch."""
    from reportgen.publish import gh_deploy as deploy
    from reportgen.publish import site_url as checked_site_url

    deploy(site, remote=remote, branch=branch, message=message, push=not no_push,
           site_url=checked_site_url(site_url) if site_url else None,
           announce=lambda line: click.echo(line, err=True))
    click.echo(f"Committed {site} to {branch}" + ("" if no_push else f" and pushed to {remote}"))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
