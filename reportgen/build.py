"""``reportgen build``: data and model in, a static site out.

Plan, gather, then write. The layer and memory plans come from the model's graph;
a first pass over the test images gives predictions and every channel's statistics
(the channel and site plans need both); a second pass draws the feature maps of
the planned images; then the report model is complete and the pages are rendered.
Pictures are written during the passes (holding every feature map of thousands of
images in memory is what this design avoids); everything is written into a
temporary folder that only replaces the old site at the end.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import click
import numpy as np

from reportgen import __version__, drawing, layout, plan
from reportgen.data import Dataset, Split, iter_batches, scan_dataset
from reportgen.errors import UserError
from reportgen.history import read_history
from reportgen.metrics import compute_metrics
from reportgen.options import TrainOptions
from reportgen.report import LayerEntry, Report, images_from_predictions, layer_slug, slugify
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
class BuildOptions:
    data: Path
    out: Path
    labels: Path | None = None  # a path,label CSV naming the test images instead of class folders
    model_path: Path | None = None
    history_path: Path | None = None
    model_cache: Path = Path("output/model/model.keras")
    retrain: bool = False
    trust_model: bool = False
    preprocess: str = "auto"  # reportgen.inputs.PREPROCESS_CHOICES
    resize: str = "stretch"  # reportgen.data.RESIZE_METHODS
    layer_patterns: tuple[str, ...] = ()
    scale: str = "layer"
    colormap: str = "viridis"
    images_per_page: int = 24
    max_gallery_images: int | None = None
    max_channels: int = plan.DEFAULT_MAX_CHANNELS
    memory_budget_mb: int = plan.DEFAULT_MEMORY_BUDGET_MB
    max_site_mb: int = plan.DEFAULT_MAX_SITE_MB
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    strict: bool = False
    title: str | None = None
    explain: bool = True  # Grad-CAM, calibration, label quality, embedding (reportgen.explain)
    cam_layer: str | None = None  # None: the last feature-map layer larger than 1x1
    site_url: str | None = None  # where the site will be published, ending in "/" (publish.site_url)
    engine: str = "local"  # reportgen.engines.ENGINES: where the passes run
    workers: int | None = None  # --engine dask: a LocalCluster of this many processes
    scheduler: str | None = None  # --engine dask: the address of a running cluster's scheduler
    generate_missing_data: bool = False
    train: TrainOptions = field(default_factory=TrainOptions)


@dataclass(frozen=True)
class ObtainedModel:
    model: object  # keras.Model
    class_names: tuple[str, ...]
    history: object  # History | None
    source: str  # "trained by reportgen" or the model file's name
    sidecar: dict | None  # what reportgen recorded when it trained the model


@dataclass(frozen=True)
class BuildResult:
    site: Path
    files: int
    bytes: int
    seconds: float
    accuracy: float
    warnings: tuple[str, ...]
    stage_seconds: dict


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


def prepare_data(options: BuildOptions, echo: Callable[[str], None] = _echo) -> Dataset:
    if options.generate_missing_data and not options.data.exists():
        from reportgen import shapes

        count = shapes.generate(options.data)
        echo(f"Drew the bundled shapes dataset: {count} images in {options.data}")
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


def obtain_model(options: BuildOptions, dataset: Dataset,
                 echo: Callable[[str], None] = _echo) -> ObtainedModel:
    """The model from --model, the cache, or a fresh training run."""
    from reportgen import model as model_stage

    if options.model_path is not None:
        loaded = model_stage.load_with_sidecar(options.model_path, trust=options.trust_model)
        history = loaded.history
        if options.history_path is not None:
            history = read_history(options.history_path)
        class_names = _check_classes(loaded, dataset, options.model_path)
        return ObtainedModel(loaded.model, class_names, history, options.model_path.name,
                             loaded.sidecar)
    fingerprint = data_fingerprint(dataset, options.train)
    cache = options.model_cache
    sidecar = model_stage.read_sidecar(cache) if cache.exists() else None
    if sidecar and sidecar.get("fingerprint") == fingerprint and not options.retrain:
        echo(f"Reusing the model trained earlier on the same data and options: {cache} "
             "(--retrain trains a new one)")
        loaded = model_stage.load_with_sidecar(cache)
        return ObtainedModel(loaded.model, loaded.class_names, loaded.history,
                             "trained by reportgen", loaded.sidecar)
    echo(f"Training the article's CNN on {dataset.root} ({len(dataset.train.images)} images, "
         f"{options.train.epochs} epochs of {options.train.steps_per_epoch} steps)")
    trained, history = model_stage.train(dataset, options.train, report=echo)
    model_stage.save(trained, history, dataset.class_names, options.train, cache, fingerprint)
    echo(f"Best epoch {history.best_epoch}: validation accuracy "
         f"{max(history.val_accuracy):.4f}; model saved to {cache}")
    return ObtainedModel(trained, dataset.class_names, history, "trained by reportgen",
                         model_stage.read_sidecar(cache))


def _check_classes(loaded, dataset: Dataset, path: Path) -> tuple[str, ...]:
    from reportgen.model import n_classes

    outputs = n_classes(loaded.model)
    if outputs != len(dataset.class_names):
        raise UserError(f"{path} predicts {outputs} classes but {dataset.root} has "
                        f"{len(dataset.class_names)} ({', '.join(dataset.class_names)})")
    if loaded.class_names is not None and tuple(loaded.class_names) != dataset.class_names:
        raise UserError(f"{path} was trained on classes {', '.join(loaded.class_names)} but "
                        f"{dataset.root} has {', '.join(dataset.class_names)}")
    return dataset.class_names


class _Workers:
    """Draws, encodes and writes pictures in worker threads, overlapped with the forward pass.

    Each task is one layer (or the inputs) of one batch. NumPy's array work, zlib
    inside Pillow's PNG encoder and file writes release the GIL, so threads overlap
    them with TensorFlow without copying feature maps between processes. Pending
    tasks are bounded, so memory does not grow with the number of images. (Pages
    are written from the main thread: handing them to threads measured slower.)
    """

    def __init__(self, site: SiteWriter, jobs: int, palette: bytes, scale: str):
        self.site, self.palette, self.scale = site, palette, scale
        self.pool = ThreadPoolExecutor(max_workers=jobs) if jobs > 1 else None
        self.pending: deque[Future] = deque()

    def _submit(self, tasks: list[tuple], max_pending: int) -> None:
        if self.pool is None:
            for function, *args in tasks:
                function(*args)
            return
        while len(self.pending) > max_pending:
            self.pending.popleft().result()
        self.pending.extend(self.pool.submit(*task) for task in tasks)

    def draw_inputs(self, images: np.ndarray, image_slugs: list[str]) -> None:
        self._submit([(self._draw_inputs, images, image_slugs)], max_pending=2)

    def draw_layers(self, image_slugs: list[str],
                    layer_maps: list[tuple[str, np.ndarray, tuple[int, ...]]]) -> None:
        """Every layer's grids of one batch (slug, maps, channels); about two batches in flight."""
        tasks = [(self._draw_layer, maps, image_slugs, slug, channels)
                 for slug, maps, channels in layer_maps]
        self._submit(tasks, max_pending=len(tasks))

    def _draw_inputs(self, images: np.ndarray, image_slugs: list[str]) -> None:
        for image, image_slug in zip(images, image_slugs, strict=True):
            self.site.write(layout.input_asset(image_slug), drawing.input_png(image))

    def _draw_layer(self, maps: np.ndarray, image_slugs: list[str], layer_slug: str,
                    channels: tuple[int, ...]) -> None:
        pictures = drawing.feature_grid_pngs(maps, self.palette, self.scale, channels)
        for image_slug, picture in zip(image_slugs, pictures, strict=True):
            self.site.write(layout.map_asset(layer_slug, image_slug), picture)

    def drain(self) -> None:
        """Wait for every task; a task's exception is raised here."""
        while self.pending:
            self.pending.popleft().result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class StatisticsPass:
    """What the first pass over the test images leaves behind: no feature map is drawn yet."""

    probabilities: np.ndarray  # (images, classes)
    accumulators: list  # one LayerStatsAccumulator per shown layer
    unreadable: list  # (ImageRecord, reason) for images that failed to decode in the pass


def statistics_pass(probe, test: Split, contract, true_labels: np.ndarray, class_count: int,
                    image_slugs: list[str], batch_size: int, workers: _Workers) -> StatisticsPass:
    """Predictions and every channel's statistics over every test image; inputs drawn on the way.

    The channel plan ranks channels by these statistics and the site plan puts mistakes
    first, so both need the whole pass before any feature map is drawn.
    """
    from reportgen.activations import stream
    from reportgen.stats import LayerStatsAccumulator

    n_images = len(test.images)
    probabilities = np.zeros((n_images, class_count), dtype=np.float32)
    accumulators = [LayerStatsAccumulator(layer.output_shape[2], class_count)
                    for layer in probe.layers]
    unreadable: list = []
    with click.progressbar(length=n_images, label="Reading test images", file=sys.stderr) as bar:

        def decoded_batches():
            for batch in iter_batches(test, contract.spec, batch_size):
                unreadable.extend(batch.unreadable)
                bar.update(len(batch.unreadable))
                if batch.records:
                    yield batch

        for batch, probs, maps in stream(probe, decoded_batches(), contract.prepare):
            indices = np.asarray(batch.indices)
            probabilities[indices] = probs
            paths = [r.path for r in batch.records]
            for accumulator, layer_maps in zip(accumulators, maps, strict=True):
                accumulator.update(layer_maps, true_labels[indices], paths)
            workers.draw_inputs(batch.images, [image_slugs[i] for i in indices])
            bar.update(len(indices))
    return StatisticsPass(probabilities, accumulators, unreadable)


def _drop_unreadable(options: BuildOptions, dataset: Dataset, statistics: StatisticsPass,
                     echo: Callable[[str], None]) -> Dataset:
    """The dataset less the test images that failed to decode in the pass, listed as skipped."""
    if not statistics.unreadable:
        return dataset
    test = dataset.test.without(statistics.unreadable)
    for record, reason in statistics.unreadable:
        echo(f"skipped {dataset.test.skipped_file(record, reason).path}: {reason}")
    if options.strict:
        raise UserError(f"{len(statistics.unreadable)} file(s) in {options.data} could not be read "
                        "(listed above) and --strict is on")
    if not test.images:
        raise UserError(f"Image folder {test.root} has no readable image: every file failed "
                        "to decode (listed above).")
    return replace(dataset, test=test)


def layer_entries(probe, layer_slugs: list[str], accumulators: list, max_channels: int,
                  palette: bytes, site: SiteWriter) -> list[LayerEntry]:
    """Each layer's statistics and channel plan; its atlas strips written on the way."""
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
        for channel in stats.channels:
            if channel.top and not channel.dead:
                maps = [t.feature_map for t in channel.top]
                low = min(0.0, min(float(m.min()) for m in maps))
                site.write(layout.atlas_asset(slug, channel.index),
                           drawing.strip_png(maps, low, max(channel.max, low), palette))
    return layers


def page_bytes(n_images: int, n_classes: int, n_channels: int) -> int:
    """Estimated bytes of every page and report.json apart from the feature-map galleries."""
    from reportgen.render import MATRIX_TABLE_MAX_CLASSES

    heatmap_rows = n_classes if n_classes <= MATRIX_TABLE_MAX_CLASSES else 0
    return (n_images * (PAGE_BYTES_PER_IMAGE + PAGE_BYTES_PER_IMAGE_AND_CLASS * n_classes)
            + n_channels * (PAGE_BYTES_PER_CHANNEL + PAGE_BYTES_PER_CHANNEL_AND_CLASS * n_classes
                            + PAGE_BYTES_PER_HEATMAP_CELL * heatmap_rows))


def _subset(test: Split, indices: list[int]) -> Split:
    return dataclasses.replace(test, images=tuple(test.images[i] for i in indices))


def _draw_maps(probe, test: Split, contract, indices: list[int], layers: list[LayerEntry],
               image_slugs: list[str], batch_size: int, workers: _Workers, bar) -> None:
    from reportgen.activations import stream

    slugs = [image_slugs[i] for i in indices]
    batches = (batch for batch in iter_batches(_subset(test, indices), contract.spec, batch_size)
               if batch.records)
    for batch, _, maps in stream(probe, batches, contract.prepare):
        workers.draw_layers([slugs[i] for i in batch.indices],
                            [(layer.slug, layer_maps, layer.shown_channels)
                             for layer, layer_maps in zip(layers, maps, strict=True)])
        bar.update(len(batch.indices) + len(batch.unreadable))


def drawing_pass(probe, test: Split, contract, site_plan: plan.SitePlan, priority: list[int],
                 room_bytes: int, layers: list[LayerEntry], image_slugs: list[str],
                 batch_size: int, workers: _Workers) -> tuple[int, ...]:
    """Feature-map grids of the planned images; returns the images actually drawn.

    The plan's size per image is an estimate: after the first batch the real one is
    known, and if it is larger, fewer of the remaining images are drawn (the lowest
    priorities are left out), so the site keeps to its budget.
    """
    planned = list(site_plan.drawn)
    if not planned:
        return ()
    first, rest = planned[:batch_size], planned[batch_size:]
    with click.progressbar(length=len(planned), label="Drawing feature maps",
                           file=sys.stderr) as bar:
        workers.drain()
        before = workers.site.bytes_written
        _draw_maps(probe, test, contract, first, layers, image_slugs, batch_size, workers, bar)
        workers.drain()
        measured = ((workers.site.bytes_written - before) / len(first)
                    + plan.HTML_BYTES_PER_GRID * len(layers))
        if rest and measured > site_plan.bytes_per_image:
            allowed = max(0, int((room_bytes - measured * len(first)) // measured))
            wanted = set(rest)
            rest = sorted([i for i in priority if i in wanted][:allowed])
        _draw_maps(probe, test, contract, rest, layers, image_slugs, batch_size, workers, bar)
    return tuple(first + rest)


def build(options: BuildOptions, echo: Callable[[str], None] = _echo) -> BuildResult:
    """The whole build, while holding the lock on the site folder (one build at a time)."""
    from reportgen.lock import build_lock

    # Before the lock file is made beside the site: never in the data folder, nor at "/".
    check_target(options.out, [options.data])
    with build_lock(options.out):
        return _build(options, echo)


def _build(options: BuildOptions, echo: Callable[[str], None]) -> BuildResult:
    started = time.perf_counter()
    stage_seconds: dict[str, float] = {}
    generated_at = _generated_at()
    palette = drawing.colormap_palette(options.colormap)
    dataset = prepare_data(options, echo)
    check_target(options.out, [dataset.root])  # refuse a bad --out before minutes of training
    obtained = obtain_model(options, dataset, echo)
    model, class_names, history = obtained.model, obtained.class_names, obtained.history
    stage_seconds["model"] = time.perf_counter() - started

    from reportgen.activations import ActivationProbe
    from reportgen.inputs import collapse_warnings, decide
    from reportgen.render import render_site
    from reportgen.report import FeatureLayerRow, model_info
    from reportgen.stats import TOP_K

    contract = decide(model, obtained.sidecar, options.preprocess, resize=options.resize)
    echo(f"Input: {contract.description}")
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
            grad_cam = GradCam(model, options.cam_layer)
        except NoCamLayer as error:
            echo(f"warning: {error}; the report has no explanations")
    test = dataset.test
    n_images = len(test.images)
    image_slugs = _unique_slugs([r.path for r in test.images])
    layer_slugs = _unique_slugs([layer.path for layer in probe.layers], slug=layer_slug)
    true_labels = np.array([r.label for r in test.images], dtype=np.int64)

    with SiteWriter(options.out, protected=[dataset.root]) as site:
        workers = _Workers(site, options.jobs, palette, options.scale)
        try:
            pass_started = time.perf_counter()
            statistics = statistics_pass(probe, test, contract, true_labels, len(class_names),
                                         image_slugs, memory.batch_size, workers)
            if statistics.unreadable:  # decoded once, in the pass: failures are known only now
                gone = {record for record, _ in statistics.unreadable}
                keep = np.array([record not in gone for record in test.images])
                dataset = _drop_unreadable(options, dataset, statistics, echo)
                test = dataset.test
                n_images, true_labels = len(test.images), true_labels[keep]
                image_slugs = [slug for slug, kept in zip(image_slugs, keep, strict=True) if kept]
                statistics = StatisticsPass(statistics.probabilities[keep],
                                            statistics.accumulators, [])
            layers = layer_entries(probe, layer_slugs, statistics.accumulators,
                                   options.max_channels, palette, site)
            stage_seconds["statistics"] = time.perf_counter() - pass_started

            drawing_started = time.perf_counter()
            predicted = statistics.probabilities.argmax(axis=1)
            priority = plan.gallery_priority(true_labels.tolist(), predicted.tolist(),
                                             statistics.probabilities.max(axis=1).tolist())
            workers.drain()
            budget = options.max_site_mb * MB
            fixed = site.bytes_written + page_bytes(
                n_images, len(class_names), sum(layer.output_shape[2] for layer in layers))
            grid_pixels = [math.prod(layer.grid_size_px) for layer in layers]
            site_plan = plan.plan_site(priority, grid_pixels, fixed, budget,
                                       options.max_gallery_images)
            drawn = drawing_pass(probe, test, contract, site_plan, priority, budget - fixed, layers,
                                 image_slugs, memory.batch_size, workers)
            workers.drain()
            stage_seconds["drawing"] = time.perf_counter() - drawing_started

            render_started = time.perf_counter()
            if history is not None:
                from reportgen.curves import learning_curve_svg

                for metric in ("accuracy", "loss"):
                    site.write(layout.curve_asset(metric), learning_curve_svg(history, metric))
            explanations = None
            if grad_cam is not None:
                explain_started = time.perf_counter()
                explanations = _explain(grad_cam, test, contract, true_labels,
                                        statistics.probabilities, image_slugs,
                                        list(class_names), site, memory.batch_size)
                stage_seconds["explain"] = time.perf_counter() - explain_started
            metrics = compute_metrics(true_labels, predicted, len(class_names))
            best_val = max(history.val_accuracy) if history and history.val_accuracy else None
            warnings = (*collapse_warnings(true_labels, statistics.probabilities, class_names,
                                           contract, best_val),
                        *_warnings(dataset, len(drawn), n_images, options, site_plan))
            shown = set(layer_plan.shown)
            report = Report(
                title=options.title or f"{model.name} on {dataset.root.name}",
                class_names=tuple(class_names),
                class_slugs=tuple(_unique_slugs(list(class_names))),
                model=model_info(model, obtained.source),
                input_contract=contract,
                images=images_from_predictions([r.path for r in test.images], image_slugs,
                                               true_labels, statistics.probabilities),
                layers=tuple(layers),
                metrics=metrics,
                history=history,
                validation=history.validation if history else "unknown (no training history)",
                data_name=dataset.root.name,
                skipped=dataset.skipped,
                empty_classes=tuple(sorted(set(test.empty_classes))),
                scale=options.scale,
                colormap=options.colormap,
                images_per_page=options.images_per_page,
                drawn_indices=drawn,
                generated_at=generated_at,
                reportgen_version=__version__,
                warnings=warnings,
                explanations=explanations,
                feature_layers=tuple(FeatureLayerRow(layer.path, layer.type_name,
                                                     layer.output_shape, layer.path in shown)
                                     for layer in probe.all_layers),
                layer_rule=layer_plan.rule,
                max_channels=options.max_channels,
            )
            for path, data in render_site(report, site_url=options.site_url):
                site.write(path, data)
        finally:
            workers.close()
        stage_seconds["render"] = time.perf_counter() - render_started
        files, size = site.files_written, site.bytes_written
    for warning in warnings:
        echo(f"warning: {warning}")
    if size > budget:
        echo(f"warning: the site is {size / MB:,.0f} MB, over --max-site-mb {options.max_site_mb}: "
             "the pages alone pass it; --layers or a smaller test set make it smaller")
    elif size > GITHUB_PAGES_LIMIT_BYTES:
        echo(f"warning: the site is {size / 1e9:.2f} GB, over GitHub Pages' 1 GB limit")
    return BuildResult(site=site.target, files=files, bytes=size,
                       seconds=time.perf_counter() - started, accuracy=metrics.accuracy,
                       warnings=warnings, stage_seconds=stage_seconds)


def _explain(grad_cam, test, contract, true_labels: np.ndarray, probabilities: np.ndarray,
             image_slugs: list[str], class_names: list[str], site: SiteWriter, batch_size: int):
    """Grad-CAM for every test image in a second taped pass, overlays written on the way."""
    from reportgen import overlays
    from reportgen.explain import explain_test_set

    predicted = probabilities.argmax(axis=1)

    def draw(start: int, images: np.ndarray, result) -> None:
        for offset, image in enumerate(images):
            index = start + offset
            site.write(layout.cam_asset(image_slugs[index]),
                       overlays.overlay_png(image, result.predicted_maps[offset]))
            if predicted[index] != true_labels[index]:
                site.write(layout.cam_asset(image_slugs[index], "true"),
                           overlays.overlay_png(image, result.true_maps[offset]))

    # The memory plan's batch: the tape holds about what the probe's maps take.
    explanations = explain_test_set(grad_cam, iter_batches(test, contract.spec, batch_size),
                                    contract.prepare, true_labels, probabilities, draw)
    from reportgen.render_explain import cam_cells_shown

    class_slugs = _unique_slugs(class_names)
    for t, true_slug in enumerate(class_slugs):
        site.write(layout.cam_class_asset(true_slug),
                   overlays.heatmap_png(explanations.class_means[t]))
    if cam_cells_shown(len(class_names)):
        for (t, p), mean_map in sorted(explanations.cell_means.items()):
            site.write(layout.cam_cell_asset(class_slugs[t], class_slugs[p]),
                       overlays.heatmap_png(mean_map))
    return explanations


def _unique_slugs(names: list[str], slug=slugify) -> list[str]:
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


__all__ = ["BuildOptions", "BuildResult", "build"]
