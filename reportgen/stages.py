"""The build as a row of named stages: data and model in, a static site out.

``run`` calls them in this order; the CLI (``reportgen build``), the Python API
(``reportgen.build``), the benchmark and the tests call the same functions:

1. ``gather_inputs``: the test data (a folder's scan, or data given in memory), the model
   (loaded, trained, or given) and its history.
2. ``plan_build``: the input contract, the shown layers, the memory plan (batch size),
   Grad-CAM's layer, every image's and layer's slug, and the ``PassPlan`` the engine's
   workers get. Data given in memory is read here, once, into the staging folder.
3. ``first_pass``: one forward pass per batch over every test image (``reportgen.pipeline``)
   gives every prediction, every shown channel's statistics and Grad-CAM; input pictures
   and overlays are written on the way. ``visualize_features`` then draws, for the drawn
   channels, the picture each responds to most (``reportgen.featviz``).
4. ``plan_drawing``: which images get feature maps (the site-size plan), measured on the
   first batch drawn.
5. ``gather_explanations``: calibration, label quality, embedding, mean CAM maps.
6. ``assemble_report``: the report model, the one place a ``Report`` is made.
7. ``draw_and_render``: the rest of the feature maps, and the pages (``reportgen.pages``:
   in a process of their own with ``--jobs`` above 1, while the drawing goes on).
8. write: everything went into the staging folder of a ``SiteWriter``, which replaces the
   old site only when the ``with`` block ends cleanly (``reportgen.site``).

Pictures are written during the passes (holding every feature map of thousands of images in
memory is what this design avoids).
"""

from __future__ import annotations

import gc
import hashlib
import math
import os
import shutil
import time
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import click
import numpy as np

from reportgen import __version__, drawing, layout, plan
from reportgen.data import Dataset, Split, scan_dataset
from reportgen.errors import UserError
from reportgen.history import read_history
from reportgen.metrics import compute_metrics
from reportgen.options import BuildOptions
from reportgen.report import (
    LayerEntry,
    Report,
    image_slug,
    images_from_predictions,
    layer_slug,
    slugify,
)
from reportgen.site import SiteWriter, check_target

GITHUB_PAGES_LIMIT_BYTES = 1_000_000_000
INFERENCE_BATCH = plan.MAX_BATCH  # the largest batch; the memory plan may choose a smaller one
MB = 1_000_000
# What pages and report.json cost apart from feature-map grids, measured on built sites and
# rounded up: per test image (its page, thumbnails, report.json entry), per channel (atlas
# entry with its top images, report.json statistics), and per class on each of those
# (probability bars, class means; heatmap cells up to the matrix-table limit).
PAGE_BYTES_PER_IMAGE = 9_000
PAGE_BYTES_PER_IMAGE_AND_CLASS = 60
PAGE_BYTES_PER_CHANNEL = 5_500
PAGE_BYTES_PER_CHANNEL_AND_CLASS = 30
PAGE_BYTES_PER_HEATMAP_CELL = 160


@dataclass(frozen=True)
class ObtainedModel:
    model: object  # keras.Model
    class_names: tuple[str, ...]
    history: object  # History | None
    source: str  # "trained by reportgen", the model file's name, or "a keras.Model in memory"
    sidecar: dict | None  # what reportgen recorded when it trained the model
    path: Path | None = None  # the .keras file, for workers in other processes; None in memory


@dataclass(frozen=True)
class BuildResult:
    site: Path
    files: int
    bytes: int
    seconds: float
    accuracy: float
    warnings: tuple[str, ...]
    stage_seconds: dict
    report: Report | None = None  # the report model the pages were rendered from


def _echo(message: str) -> None:
    click.echo(message, err=True)


def _generated_at() -> str | None:
    """A date only when SOURCE_DATE_EPOCH asks for one: builds are otherwise byte-identical."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return None
    try:
        return datetime.fromtimestamp(int(epoch), tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (ValueError, OverflowError, OSError):
        raise UserError(f"SOURCE_DATE_EPOCH={epoch!r} is not a Unix time in seconds") from None


# -- 1. inputs ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Inputs:
    """What the build reports on, before any plan."""

    obtained: ObtainedModel
    data_name: str  # the data folder's name, or what the data given in memory is
    dataset: Dataset | None  # the data folder's scan; None for data given in memory
    given: object | None = None  # reportgen.given.GivenData, read into the site by plan_build

    @property
    def protected(self) -> list[Path]:
        """Folders the site must never replace or contain."""
        return [self.dataset.root] if self.dataset is not None else []


def gather_inputs(options: BuildOptions, echo: Callable[[str], None] = _echo, *,
                  model=None, data=None, history=None,
                  class_names: tuple[str, ...] | None = None, source: str | None = None) -> Inputs:
    """The test data and the model. ``model`` (a keras.Model in memory), ``data`` (NumPy
    arrays or a tf.data.Dataset, see ``reportgen.given``), ``history`` (a Keras History or its
    dict) and ``source`` (the model's origin in words) are the Python API's; without them the
    data is ``options.data`` and the model ``options.model_path`` or one trained here."""
    if data is None:
        dataset = prepare_data(options, echo, training=model is None and options.model_path is None)
        # Refuse a bad --out before minutes of training.
        check_target(options.out, [dataset.root])
        obtained = obtain_model(options, dataset, echo, model=model, history=history)
        inputs = Inputs(obtained, dataset.root.name, dataset)
    else:
        from reportgen import given

        data = given.GivenData.of(data, class_names)
        if model is None and options.model_path is None:
            raise UserError("data given in memory needs a model: a keras.Model or a .keras path")
        inputs = Inputs(_given_model(options, model, history, data), data.description, None, data)
    if source is not None:
        inputs = replace(inputs, obtained=replace(inputs.obtained, source=source))
    return inputs


def prepare_data(options: BuildOptions, echo: Callable[[str], None] = _echo, *,
                 training: bool | None = None) -> Dataset:
    """The data folder's scan (the bundled shapes drawn first when asked and missing)."""
    if options.generate_missing_data and not options.data.exists():
        from reportgen import shapes

        count = shapes.generate(options.data)
        echo(f"Drew the bundled shapes dataset: {count} images in {options.data}")
    if training is None:
        training = options.model_path is None
    dataset = scan_dataset(options.data, require_train=training, scan_train=training,
                           labels=options.labels)
    for skipped in dataset.skipped:
        echo(f"skipped {skipped.path}: {skipped.reason}")
    if options.strict and dataset.skipped:
        raise UserError(f"{len(dataset.skipped)} file(s) in {options.data} could not be read "
                        "(listed above) and --strict is on")
    return dataset


def data_fingerprint(dataset: Dataset, train_options) -> str:
    """Changes whenever the data, the training options or reportgen's version change."""
    digest = hashlib.sha256(f"{__version__}\n{train_options!r}\n".encode())
    for split in (dataset.train, dataset.test):
        if split is None:
            continue
        for record in split.images:
            digest.update(f"{split.root.name}/{record.path}\n".encode())
            digest.update(hashlib.sha256((split.root / record.path).read_bytes()).digest())
    return digest.hexdigest()


def _history(history):
    """A Keras History, its ``.history`` dict, a reportgen History, a file, or None."""
    from reportgen.history import History

    if history is None or isinstance(history, History):
        return history
    if isinstance(history, str | os.PathLike):
        return read_history(Path(history))
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict):
        raise UserError(f"history must be a keras History, a dict of per-epoch lists or a file, "
                        f"not {type(history).__name__}")
    return History.from_keras(logs)


def _in_memory(model) -> ObtainedModel | None:
    """``model`` when it is a keras.Model in memory (None when it is a path)."""
    if model is None or isinstance(model, str | os.PathLike):
        return None
    from reportgen.keras_import import keras

    if not isinstance(model, keras.Model):
        raise UserError(f"model must be a keras.Model or a .keras path, not {type(model).__name__}")
    return ObtainedModel(model, (), None, f"the keras.Model {model.name!r} given in memory", None)


def _given_model(options: BuildOptions, model, history, source) -> ObtainedModel:
    from reportgen import model as model_stage

    obtained = _in_memory(model)
    if obtained is None:
        path = Path(model) if model is not None else options.model_path
        loaded = model_stage.load_with_sidecar(path, trust=options.trust_model)
        obtained = ObtainedModel(loaded.model, tuple(loaded.class_names or ()), loaded.history,
                                 path.name, loaded.sidecar, path)
    outputs = model_stage.n_classes(obtained.model)
    names = source.class_names or obtained.class_names or tuple(str(i) for i in range(outputs))
    if len(names) != outputs:
        raise UserError(f"the model predicts {outputs} classes but the data has {len(names)} "
                        f"({', '.join(names)})")
    return replace(obtained, class_names=tuple(names),
                   history=_history(history) if history is not None else obtained.history)


def obtain_model(options: BuildOptions, dataset: Dataset,
                 echo: Callable[[str], None] = _echo, *, model=None,
                 history=None) -> ObtainedModel:
    """The model given in memory, from --model, the cache, or a fresh training run."""
    from reportgen import model as model_stage

    obtained = _in_memory(model)
    if obtained is not None:
        _check_outputs(model_stage.n_classes(model), None, dataset, f"the model {model.name!r}")
        return replace(obtained, class_names=dataset.class_names, history=_history(history))
    path = Path(model) if model is not None else options.model_path
    if path is not None:
        loaded = model_stage.load_with_sidecar(path, trust=options.trust_model)
        found = loaded.history
        if history is not None:
            found = _history(history)
        elif options.history_path is not None:
            found = read_history(options.history_path)
        _check_outputs(model_stage.n_classes(loaded.model), loaded.class_names, dataset, path)
        return ObtainedModel(loaded.model, dataset.class_names, found, path.name, loaded.sidecar,
                             path)
    fingerprint = data_fingerprint(dataset, options.train)
    cache = options.model_cache
    sidecar = model_stage.read_sidecar(cache) if cache.exists() else None
    if sidecar and sidecar.get("fingerprint") == fingerprint and not options.retrain:
        echo(f"Reusing the model trained earlier on the same data and options: {cache} "
             "(--retrain trains a new one)")
        loaded = model_stage.load_with_sidecar(cache)
        return ObtainedModel(loaded.model, loaded.class_names, loaded.history,
                             "trained by reportgen", loaded.sidecar, cache)
    echo(f"Training the article's CNN on {dataset.root} ({len(dataset.train.images)} images, "
         f"{options.train.epochs} epochs of {options.train.steps_per_epoch} steps)")
    trained, history = model_stage.train(dataset, options.train, report=echo)
    model_stage.save(trained, history, dataset.class_names, options.train, cache, fingerprint)
    echo(f"Best epoch {history.best_epoch}: validation accuracy "
         f"{max(history.val_accuracy):.4f}; model saved to {cache}")
    return ObtainedModel(trained, dataset.class_names, history, "trained by reportgen",
                         model_stage.read_sidecar(cache), cache)


def _check_outputs(outputs: int, trained_on, dataset: Dataset, what) -> None:
    if outputs != len(dataset.class_names):
        raise UserError(f"{what} predicts {outputs} classes but {dataset.root} has "
                        f"{len(dataset.class_names)} ({', '.join(dataset.class_names)})")
    if trained_on is not None and tuple(trained_on) != dataset.class_names:
        raise UserError(f"{what} was trained on classes {', '.join(trained_on)} but "
                        f"{dataset.root} has {', '.join(dataset.class_names)}")


# -- 2. plan ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BuildPlan:
    """What the passes need, decided from the model's graph and the data before them."""

    dataset: Dataset  # for data given in memory: its test split as read into the site
    contract: object  # reportgen.inputs.InputContract
    probe: object  # reportgen.activations.ActivationProbe over the shown layers
    layer_plan: plan.LayerPlan
    memory: plan.MemoryPlan
    grad_cam: object | None  # reportgen.explain.GradCam, or None without explanations
    image_slugs: tuple[str, ...]  # one per test image, in the split's order
    layer_slugs: tuple[str, ...]  # one per shown layer
    class_slugs: tuple[str, ...]
    pictures: str  # "png" or "jpeg": the input pictures and CAM overlays
    pass_plan: object  # reportgen.pipeline.PassPlan: what every worker is sent


def plan_build(options: BuildOptions, inputs: Inputs, site: SiteWriter,
               echo: Callable[[str], None] = _echo) -> BuildPlan:
    """The input contract, layer and memory plans, Grad-CAM and the pass plan."""
    from reportgen import pipeline
    from reportgen.activations import ActivationProbe
    from reportgen.inputs import decide
    from reportgen.stats import TOP_K

    model, class_names = inputs.obtained.model, inputs.obtained.class_names
    given_pixels = None
    if inputs.given is not None:
        given_pixels, dataset, contract = inputs.given.read_into(
            site, model, class_names, options.preprocess, echo)
    else:
        dataset = inputs.dataset
        contract = decide(model, inputs.obtained.sidecar, options.preprocess,
                          resize=options.resize)
    echo(f"Input: {contract.description}")
    from reportgen.outputs import output_contract

    outputs = output_contract(model)
    if outputs.kind != "probabilities":
        echo(f"Output: {outputs.description}")
    spec = contract.spec
    patterns = options.layer_patterns
    probe = ActivationProbe(model, select=lambda layers: plan.plan_layers(layers, patterns).shown)
    layer_plan = plan.plan_layers(probe.all_layers, patterns)
    memory = plan.plan_memory([layer.output_shape for layer in probe.layers],
                              [layer.output_shape for layer in probe.all_layers],
                              (spec.height, spec.width, spec.channels), TOP_K,
                              options.memory_budget_mb * MB)
    echo(f"{layer_plan.rule} Batches of {memory.batch_size} images.")
    if memory.over_budget:
        echo(f"warning: the {len(probe.layers)} layers' statistics and one image's maps need "
             f"about {(memory.fixed_bytes + memory.bytes_per_image) / MB:,.0f} MB, over "
             f"--memory-budget {options.memory_budget_mb}; --layers can choose fewer layers")
    grad_cam = None
    if options.explain:  # built before the pass, so a wrong --cam-layer fails at once
        from reportgen.explain import GradCam, NoCamLayer

        try:
            grad_cam = GradCam(model, options.cam_layer,
                               layers=[layer.path for layer in probe.layers])
        except NoCamLayer as error:
            echo(f"warning: {error}; the report has no explanations")
    test = dataset.test
    image_slugs = tuple(unique_slugs([r.path for r in test.images], slug=image_slug))
    layer_slugs = tuple(unique_slugs([layer.path for layer in probe.layers], slug=layer_slug))
    pictures = drawing.picture_format(options.pictures, spec.height, spec.width)
    level_cache, pixel_cache = pipeline.create_caches(
        test, contract, [layer.output_shape for layer in probe.layers], site.temp,
        pixels_kept=given_pixels is not None)
    model_file = inputs.obtained.path.resolve() if inputs.obtained.path is not None else None
    pass_plan = pipeline.PassPlan(
        model_file=model_file, trust_model=options.trust_model, contract=contract,
        test=_absolute(test), true_labels=tuple(r.label for r in test.images),
        image_slugs=image_slugs, layer_paths=tuple(layer.path for layer in probe.layers),
        class_count=len(class_names), batch_size=memory.batch_size,
        explain=grad_cam is not None,
        cam_layer=grad_cam.layer.path if grad_cam is not None else None,
        colormap=options.colormap, scale=options.scale, jobs=options.jobs,
        target=site.target, staging=site.temp, level_cache=level_cache,
        pixel_cache=pixel_cache, given_pixels=given_pixels, pictures=pictures)
    return BuildPlan(dataset=dataset, contract=contract, probe=probe, layer_plan=layer_plan,
                     memory=memory, grad_cam=grad_cam, image_slugs=image_slugs,
                     layer_slugs=layer_slugs, class_slugs=tuple(unique_slugs(list(class_names))),
                     pictures=pictures, pass_plan=pass_plan)


def _absolute(split: Split) -> Split:
    """As the pass plan sends it: Dask workers may run in other folders."""
    data_root = split.data_root.resolve() if split.data_root is not None else None
    return replace(split, root=split.root.resolve(), data_root=data_root)


@dataclass
class Passes:
    """The engine the passes run on, and the top images the build's own process pools."""

    engine: object  # reportgen.engines.LocalEngine or DaskEngine
    top_pool: object | None  # reportgen.stats.TopPool on the local engine
    batch_size: int

    def map_reduce(self, task: Callable, shards, merge: Callable, *, label: str):
        return self.engine.map_reduce(task, shards, merge, label=label)

    def close(self) -> None:
        """Let the engine go: a cluster we started is not needed to render."""
        self.engine.close()


@contextmanager
def open_engine(options: BuildOptions, inputs: Inputs, build_plan: BuildPlan, *,
                timer: Callable | None = None):
    """The engine the passes run on: this process (the model, probe and Grad-CAM the plan
    made; the shards' top images pooled) or a Dask cluster, whose workers load the model from
    its file. ``timer`` clocks the local worker's stages (the benchmark's)."""
    from reportgen import pipeline
    from reportgen.engines import make_engine
    from reportgen.stats import TopPool

    pass_plan = build_plan.pass_plan
    top_pool = None
    if options.engine == "local":
        top_pool = TopPool()
        clock = {} if timer is None else {"timer": timer}

        def open_worker(plan):
            return pipeline.Worker(plan, inputs.obtained.model, grad_cam=build_plan.grad_cam,
                                   probe=build_plan.probe, top_pool=top_pool, **clock)
    else:
        if pass_plan.model_file is None or pass_plan.given_pixels is not None:
            raise UserError("--engine dask needs a model file and an image folder: a model or "
                            "data given in memory runs on the local engine")
        open_worker = pipeline.open_worker
    read_paths = [pass_plan.test.root, *([pass_plan.model_file] if pass_plan.model_file else [])]
    with make_engine(options.engine, pass_plan, open_worker, workers=options.workers,
                     scheduler=options.scheduler, read_paths=read_paths,
                     write_folder=pass_plan.staging) as engine:
        yield Passes(engine, top_pool, build_plan.memory.batch_size)


# -- 3. first pass ------------------------------------------------------------------------------

@dataclass(frozen=True)
class FirstPass:
    """Every readable test image's prediction, statistics and Grad-CAM."""

    dataset: Dataset  # less the images that failed to decode in the pass
    kept: np.ndarray  # the report's images, as positions in the pass plan's split
    image_slugs: tuple[str, ...]  # the report's images'
    true_labels: np.ndarray
    probabilities: np.ndarray
    layers: tuple[LayerEntry, ...]  # statistics and channel plan per shown layer
    cam: dict | None  # per image Grad-CAM (reportgen.pipeline.FirstPassResult.cam)


def first_pass(options: BuildOptions, engine, build_plan: BuildPlan, site: SiteWriter,
               echo: Callable[[str], None] = _echo) -> FirstPass:
    """The first pass over every test image, merged; unreadable images dropped."""
    from reportgen import pipeline

    n_images = len(build_plan.pass_plan.test.images)
    first = engine.map_reduce(pipeline.first_pass,
                              pipeline.shards(range(n_images), build_plan.memory.batch_size),
                              pipeline.merge_first, label="Reading test images")
    if engine.top_pool is not None:
        engine.top_pool.restore(first.accumulators)
    gc.freeze()  # and the traced steps, and what the pass gathered
    site.count(first.files, first.bytes)
    # Decoded once, in the pass: failures are known only now.
    dataset = _drop_unreadable(options, build_plan.dataset, first.unreadable, echo)
    kept = first.indices
    true_labels = np.asarray(build_plan.pass_plan.true_labels, np.int64)[kept]
    layers = layer_entries(build_plan.probe, list(build_plan.layer_slugs), first.accumulators,
                           options.max_channels)
    return FirstPass(dataset=dataset, kept=kept,
                     image_slugs=tuple(build_plan.image_slugs[i] for i in kept),
                     true_labels=true_labels, probabilities=first.probabilities,
                     layers=tuple(layers), cam=first.cam)


def _drop_unreadable(options: BuildOptions, dataset: Dataset, unreadable: list,
                     echo: Callable[[str], None]) -> Dataset:
    """The dataset less the test images that failed to decode in the pass, listed as skipped."""
    if not unreadable:
        return dataset
    test = dataset.test.without(unreadable)
    for record, reason in unreadable:
        echo(f"skipped {dataset.test.skipped_file(record, reason).path}: {reason}")
    if options.strict:
        raise UserError(f"{len(unreadable)} file(s) in {options.data} could not be read "
                        "(listed above) and --strict is on")
    if not test.images:
        raise UserError(f"Image folder {test.root} has no readable image: every file failed "
                        "to decode (listed above).")
    return replace(dataset, test=test)


def layer_entries(probe, layer_slugs: list[str], accumulators: list,
                  max_channels: int) -> list[LayerEntry]:
    """Each layer's statistics and channel plan. Its atlas strips are drawn from the report
    with the pages (``reportgen.pages.report_files``)."""
    layers = []
    for index, (layer, slug, accumulator) in enumerate(
            zip(probe.layers, layer_slugs, accumulators, strict=True)):
        stats = accumulator.result()
        height, width, _ = layer.output_shape
        shown = plan.plan_channels([channel.std for channel in stats.channels], max_channels)
        _, _, grid_height, grid_width = drawing.grid_shape(height, width, len(shown))
        layers.append(LayerEntry(index=index, path=layer.path, slug=slug,
                                 type_name=layer.type_name, output_shape=layer.output_shape,
                                 grid_size_px=(grid_width, grid_height), stats=stats,
                                 shown_channels=shown))
    return layers


# -- 3b. feature visualization -------------------------------------------------------------------

def visualize_features(options: BuildOptions, build_plan: BuildPlan, first: FirstPass,
                       site: SiteWriter, echo: Callable[[str], None] = _echo) -> FirstPass:
    """For the drawn channels (within the budget), a picture that maximizes each one's mean
    activation (``reportgen.featviz``), written into the site; ``first`` with each layer's
    features. ``first`` as it is with ``--no-features`` or ``--feature-channels 0``."""
    if not options.features or options.feature_channels == 0:
        return first
    from reportgen import featviz

    spec = build_plan.contract.spec
    budget = featviz.channel_budget(spec.height, spec.width, options.feature_channels)
    chosen = featviz.plan_features(first.layers, budget)
    total = sum(map(len, chosen.values()))
    echo(f"Feature visualization: {total} channels of {len(first.layers)} layers, "
         f"{options.feature_steps} steps each")
    layers = list(first.layers)
    for found in featviz.visualize(build_plan.probe, build_plan.contract, first.layers, chosen,
                                   seed=options.train.seed, steps=options.feature_steps,
                                   batch_size=build_plan.memory.batch_size):
        layer = layers[found.layer_index]
        for channel, picture in sorted(found.pictures.items()):
            site.write(layout.feature_asset(layer.slug, channel), featviz.picture_png(picture))
        layers[found.layer_index] = replace(layer, features=found.features)
    return replace(first, layers=tuple(layers))


# -- 4. drawing plan ----------------------------------------------------------------------------

@dataclass(frozen=True)
class DrawingPlan:
    site_plan: plan.SitePlan
    budget: int  # bytes: --max-site-mb
    drawn: tuple[int, ...]  # the report's images that get feature maps
    rest: tuple[int, ...]  # those of them still to draw (``draw_and_render``)


def page_bytes(n_images: int, n_classes: int, n_channels: int) -> int:
    """Estimated bytes of every page and report.json apart from the feature-map galleries."""
    heatmap_rows = n_classes if plan.class_pairs_shown(n_classes) else 0
    return (n_images * (PAGE_BYTES_PER_IMAGE + PAGE_BYTES_PER_IMAGE_AND_CLASS * n_classes)
            + n_channels * (PAGE_BYTES_PER_CHANNEL + PAGE_BYTES_PER_CHANNEL_AND_CLASS * n_classes
                            + PAGE_BYTES_PER_HEATMAP_CELL * heatmap_rows))


def plan_drawing(options: BuildOptions, engine, build_plan: BuildPlan, first: FirstPass,
                 site: SiteWriter) -> DrawingPlan:
    """Which images get feature maps: the site plan, checked on the first batch drawn.

    The plan's size per image is an estimate: after the first batch the real one is
    known, and if it is larger, fewer of the remaining images are drawn (the lowest
    priorities are left out), so the site keeps to its budget.
    """
    probabilities, layers = first.probabilities, first.layers
    priority = plan.gallery_priority(first.true_labels.tolist(),
                                     probabilities.argmax(axis=1).tolist(),
                                     probabilities.max(axis=1).tolist())
    budget = options.max_site_mb * MB
    fixed = site.bytes_written + page_bytes(
        len(first.true_labels), len(build_plan.class_slugs),
        sum(layer.output_shape[2] for layer in layers))
    grid_pixels = [math.prod(layer.grid_size_px) for layer in layers]
    site_plan = plan.plan_site(priority, grid_pixels, fixed, budget, options.max_gallery_images)
    planned = list(site_plan.drawn)
    if not planned:
        return DrawingPlan(site_plan, budget, (), ())
    batch_size = build_plan.memory.batch_size
    head, rest = planned[:batch_size], planned[batch_size:]
    written = draw(engine, site, head, first)
    measured = written.bytes / len(head) + plan.HTML_BYTES_PER_GRID * len(layers)
    if rest and measured > site_plan.bytes_per_image:
        allowed = max(0, int((budget - fixed - measured * len(head)) // measured))
        wanted = set(rest)
        rest = sorted([i for i in priority if i in wanted][:allowed])
    return DrawingPlan(site_plan, budget, tuple(head + rest), tuple(rest))


def draw(engine, site: SiteWriter, images, first: FirstPass):
    """The feature-map grids of ``images`` (the report's indices), in shards of a batch."""
    from reportgen import pipeline

    if not images:
        return pipeline.Written(0, 0)
    task = partial(pipeline.draw_pass,
                   layers=[pipeline.DrawLayer(layer.slug, layer.shown_channels)
                           for layer in first.layers])
    written = engine.map_reduce(task, pipeline.shards([int(first.kept[i]) for i in images],
                                                      engine.batch_size),
                                pipeline.add_written, label="Drawing feature maps")
    site.count(written.files, written.bytes)
    return written


# -- 5. explanations ----------------------------------------------------------------------------

def gather_explanations(build_plan: BuildPlan, first: FirstPass, site: SiteWriter,
                        embedding_method: str):
    """Explanations from the first pass's per-image Grad-CAM, mean maps written; None
    without Grad-CAM."""
    if build_plan.grad_cam is None:
        return None
    from reportgen import overlays
    from reportgen.explain import summarise

    explanations = summarise(build_plan.grad_cam, first.cam, first.true_labels,
                             first.probabilities, embedding_method)
    class_slugs = build_plan.class_slugs
    for t, true_slug in enumerate(class_slugs):
        site.write(layout.cam_class_asset(true_slug),
                   overlays.heatmap_png(explanations.class_means[t]))
    if plan.class_pairs_shown(len(class_slugs)):
        for (t, p), mean_map in sorted(explanations.cell_means.items()):
            site.write(layout.cam_cell_asset(class_slugs[t], class_slugs[p]),
                       overlays.heatmap_png(mean_map))
    return explanations


def write_curves(history, site: SiteWriter) -> None:
    """The learning curves' SVGs, when there is a history."""
    if history is None:
        return
    from reportgen.curves import learning_curve_svg

    for metric in ("accuracy", "loss"):
        site.write(layout.curve_asset(metric), learning_curve_svg(history, metric))


# -- 6. report ----------------------------------------------------------------------------------

def build_warnings(options: BuildOptions, inputs: Inputs, build_plan: BuildPlan,
                   first: FirstPass, drawing_plan: DrawingPlan) -> tuple[str, ...]:
    """What the reader should know: mis-fed model, skipped files, images without maps."""
    from reportgen.inputs import collapse_warnings

    history, class_names = inputs.obtained.history, inputs.obtained.class_names
    best_val = max(history.val_accuracy) if history and history.val_accuracy else None
    return (*collapse_warnings(first.true_labels, first.probabilities, class_names,
                               build_plan.contract, best_val),
            *_warnings(first.dataset, len(drawing_plan.drawn), len(first.true_labels), options,
                       drawing_plan.site_plan))


def assemble_report(options: BuildOptions, inputs: Inputs, build_plan: BuildPlan,
                    first: FirstPass, drawing_plan: DrawingPlan, explanations,
                    warnings: tuple[str, ...], generated_at: str | None) -> Report:
    """The report model, from what the stages gathered: the one place a Report is made."""
    from reportgen.report import FeatureLayerRow, model_info

    obtained, dataset = inputs.obtained, first.dataset
    test, history = dataset.test, obtained.history
    shown = set(build_plan.layer_plan.shown)
    return Report(
        title=options.title or f"{obtained.model.name} on {inputs.data_name}",
        class_names=tuple(obtained.class_names),
        class_slugs=build_plan.class_slugs,
        model=model_info(obtained.model, obtained.source),
        input_contract=build_plan.contract,
        images=images_from_predictions([r.path for r in test.images], list(first.image_slugs),
                                       first.true_labels, first.probabilities),
        layers=first.layers,
        metrics=compute_metrics(first.true_labels, first.probabilities.argmax(axis=1),
                                len(obtained.class_names)),
        history=history,
        validation=history.validation if history else "unknown (no training history)",
        data_name=inputs.data_name,
        skipped=dataset.skipped,
        empty_classes=tuple(sorted(set(test.empty_classes))),
        scale=options.scale,
        colormap=options.colormap,
        pictures=build_plan.pictures,
        images_per_page=options.images_per_page,
        drawn_indices=drawing_plan.drawn,
        generated_at=generated_at,
        reportgen_version=__version__,
        warnings=warnings,
        explanations=explanations,
        feature_layers=tuple(FeatureLayerRow(layer.path, layer.type_name, layer.output_shape,
                                             layer.path in shown)
                             for layer in build_plan.probe.all_layers),
        layer_rule=build_plan.layer_plan.rule,
        max_channels=options.max_channels,
    )


# -- 7. draw and render -------------------------------------------------------------------------

def draw_and_render(options: BuildOptions, engine, site: SiteWriter, pages, report: Report,
                    build_plan: BuildPlan, first: FirstPass, drawing_plan: DrawingPlan,
                    stage_seconds: dict) -> None:
    """The rest of the feature maps, and every page. With a page process (``pages``) the
    pages are rendered there while the drawing goes on here; the engine is closed (a cluster
    is not needed to render) and the caches removed before the pages are waited for.
    Adds its seconds to ``stage_seconds``' "drawing" and "render"."""
    from reportgen.pages import report_files, write_pages
    from reportgen.render import render_site

    started = time.perf_counter()
    files_of_report = partial(report_files, render=render_site)
    if pages is not None:
        pages.start(files_of_report, report, options.site_url, site.temp, site.target)
    stage_seconds["render"] = stage_seconds.get("render", 0) + time.perf_counter() - started

    started = time.perf_counter()
    draw(engine, site, drawing_plan.rest, first)
    engine.close()
    pass_plan = build_plan.pass_plan
    for cache in (pass_plan.level_cache, pass_plan.pixel_cache, pass_plan.given_pixels):
        if cache is not None:
            shutil.rmtree(cache)  # not part of the site
    stage_seconds["drawing"] = stage_seconds.get("drawing", 0) + time.perf_counter() - started

    started = time.perf_counter()
    if pages is None:
        write_pages(files_of_report, report, options.site_url, site)
    else:
        site.count(*pages.wait())
    # Overlapping the drawing: the time the pages took beyond it, and the report's.
    stage_seconds["render"] = stage_seconds.get("render", 0) + time.perf_counter() - started


# -- the row ------------------------------------------------------------------------------------

def build(options: BuildOptions, echo: Callable[[str], None] = _echo, **given) -> BuildResult:
    """The whole build, while holding the lock on the site folder (one build at a time).

    ``given`` (``model``, ``data``, ``history``, ``class_names``) are the Python API's
    objects in memory: see ``gather_inputs``."""
    from reportgen.lock import build_lock

    # Before the lock file is made beside the site: never in the data folder, nor at "/".
    check_target(options.out, [options.data] if given.get("data") is None else [])
    with build_lock(options.out), _page_process(options.jobs) as pages, _collector_spared():
        return run(options, echo, pages, **given)


@contextmanager
def _collector_spared():
    """Python's cycle collector keeps scanning every object it has seen, and TensorFlow and
    a loaded model are millions of them: full collections took a noticeable part of a
    MobileNetV2 build (benchmarks/results.md, *Measured by hand*).
    The build freezes what it has made at two points (``gc.freeze``: the
    collector leaves those objects alone from then on); they are handed back at the end,
    so a process that builds again still collects them once they are garbage."""
    try:
        yield
    finally:
        gc.unfreeze()


@contextmanager
def _page_process(jobs: int):
    """The process that will render the pages beside the drawing (``reportgen.pages``),
    spawned now so that it is ready by then; none with ``--jobs 1``, which renders here."""
    if jobs == 1:
        yield None
        return
    from reportgen.pages import PageProcess

    with PageProcess() as pages:
        yield pages


def run(options: BuildOptions, echo: Callable[[str], None] = _echo, pages=None,
        **given) -> BuildResult:
    """The stages in their order (``build`` holds the lock and the page process first)."""
    started = time.perf_counter()
    stage_seconds: dict[str, float] = {}
    generated_at = _generated_at()
    drawing.colormap_palette(options.colormap)  # a wrong --colormap fails now, not after the passes
    if options.explain and options.embedding == "tsne":  # before the pass, not after an hour of it
        from reportgen.explain import require_tsne

        require_tsne()
    inputs = gather_inputs(options, echo, **given)
    gc.freeze()  # TensorFlow, Keras and the model (_collector_spared)
    stage_seconds["model"] = time.perf_counter() - started

    # Left in this order on a failure: rendering stopped, the engine closed, staging removed.
    with (SiteWriter(options.out, protected=inputs.protected) as site, ExitStack() as passes,
          ExitStack() as rendering):
        pass_started = time.perf_counter()
        build_plan = plan_build(options, inputs, site, echo)
        engine = passes.enter_context(open_engine(options, inputs, build_plan))
        first = first_pass(options, engine, build_plan, site, echo)
        stage_seconds["statistics"] = time.perf_counter() - pass_started

        features_started = time.perf_counter()
        first = visualize_features(options, build_plan, first, site, echo)
        stage_seconds["features"] = time.perf_counter() - features_started

        drawing_started = time.perf_counter()
        drawing_plan = plan_drawing(options, engine, build_plan, first, site)
        stage_seconds["drawing"] = time.perf_counter() - drawing_started

        report_started = time.perf_counter()
        write_curves(inputs.obtained.history, site)
        explanations = gather_explanations(build_plan, first, site, options.embedding)
        warnings = build_warnings(options, inputs, build_plan, first, drawing_plan)
        report = assemble_report(options, inputs, build_plan, first, drawing_plan,
                                 explanations, warnings, generated_at)
        if pages is not None:
            rendering.callback(pages.close)  # stopped before the staging folder is removed
        stage_seconds["render"] = time.perf_counter() - report_started
        draw_and_render(options, engine, site, pages, report, build_plan, first, drawing_plan,
                        stage_seconds)
        files, size = site.files_written, site.bytes_written
    for warning in warnings:
        echo(f"warning: {warning}")
    if size > drawing_plan.budget:
        echo(f"warning: the site is {size / MB:,.0f} MB, over --max-site-mb {options.max_site_mb}: "
             "the pages alone pass it; --layers or a smaller test set make it smaller")
    elif size > GITHUB_PAGES_LIMIT_BYTES:
        echo(f"warning: the site is {size / 1e9:.2f} GB, over GitHub Pages' 1 GB limit")
    return BuildResult(site=site.target, files=files, bytes=size,
                       seconds=time.perf_counter() - started, accuracy=report.metrics.accuracy,
                       warnings=warnings, stage_seconds=stage_seconds, report=report)


def unique_slugs(names: list[str], slug=slugify) -> list[str]:
    """One file name per name; two that collide are an error, never silent."""
    slugs = [slug(name) for name in names]
    if len(set(slugs)) != len(slugs):  # a 48-bit hash collision: astronomically rare, never silent
        raise UserError("two names map to the same file name in the site; rename one of them")
    return slugs


def _warnings(dataset: Dataset, n_drawn: int, n_images: int, options: BuildOptions,
              site_plan: plan.SitePlan) -> tuple[str, ...]:
    warnings = []
    if dataset.skipped:
        warnings.append(f"{len(dataset.skipped)} unreadable file(s) skipped; each is listed with its reason.")
    for split in (dataset.train, dataset.test):
        if split is not None:
            warnings.extend(f"class folder {split.root.name}/{name} has no readable images."
                            for name in split.empty_classes)
    if n_drawn < n_images:
        capped = options.max_gallery_images is not None and n_drawn == options.max_gallery_images
        why = (f"--max-gallery-images {options.max_gallery_images}" if capped else
               f"the site would pass --max-site-mb {options.max_site_mb} at about "
               f"{site_plan.bytes_per_image / MB:.2f} MB of feature maps per image")
        warnings.append(f"feature maps drawn for {n_drawn} of {n_images} test images ({why}): "
                        "mistakes first, then an even share of each class. Predictions and "
                        "statistics cover every image.")
    return tuple(warnings)


__all__ = ["BuildOptions", "BuildPlan", "BuildResult", "DrawingPlan", "FirstPass", "Inputs",
           "assemble_report", "build", "build_warnings", "draw", "draw_and_render", "first_pass",
           "gather_explanations", "gather_inputs", "layer_entries", "obtain_model", "open_engine",
           "Passes", "plan_build", "plan_drawing", "prepare_data", "run", "visualize_features",
           "write_curves"]
