"""``reportgen build``: data and model in, a static site out.

Gather, then write: one streamed pass over the test images feeds predictions,
statistics and feature-map pictures; then the report model is complete and the
pages are rendered. Pictures are written during the pass (holding every feature
map of thousands of images in memory is what this design avoids); everything is
written into a temporary folder that only replaces the old site at the end.
"""

from __future__ import annotations

import hashlib
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

from reportgen import __version__, drawing, layout
from reportgen.data import Dataset, iter_batches, scan_dataset
from reportgen.errors import UserError
from reportgen.history import read_history
from reportgen.metrics import compute_metrics
from reportgen.options import TrainOptions
from reportgen.report import LayerEntry, Report, images_from_predictions, layer_slug, slugify
from reportgen.site import SiteWriter, check_target

GITHUB_PAGES_LIMIT_BYTES = 1_000_000_000
# Pages and report.json add about half again to the pictures (benchmarks/results.md, 9,000 images).
SITE_BYTES_PER_PICTURE_BYTE = 1.5
INFERENCE_BATCH = 64


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
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    strict: bool = False
    title: str | None = None
    site_url: str | None = None  # where the site will be published, ending in "/" (publish.site_url)
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

    def draw_batch(self, images: np.ndarray, image_slugs: list[str],
                   layer_maps: list[tuple[str, np.ndarray]]) -> None:
        """Inputs and every layer's grids of one batch; about two batches stay in flight."""
        tasks = [(self._draw_inputs, images, image_slugs)]
        tasks += [(self._draw_layer, maps, image_slugs, slug) for slug, maps in layer_maps]
        self._submit(tasks, max_pending=len(tasks))

    def _draw_inputs(self, images: np.ndarray, image_slugs: list[str]) -> None:
        for image, image_slug in zip(images, image_slugs, strict=True):
            self.site.write(layout.input_asset(image_slug), drawing.input_png(image))

    def _draw_layer(self, maps: np.ndarray, image_slugs: list[str], layer_slug: str) -> None:
        pictures = drawing.feature_grid_pngs(maps, self.palette, self.scale)
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
class _Pass:
    """What one streamed pass over the test images leaves behind."""

    probabilities: np.ndarray
    accumulators: list
    unreadable: list  # (ImageRecord, reason) for images that failed to decode in the pass


def _warn_if_too_big(workers: _Workers, images_drawn: int, drawn_images: int,
                     echo: Callable[[str], None]) -> None:
    """After the first batch, estimate the whole site: say so early if it will not fit on Pages."""
    workers.drain()
    estimate = workers.site.bytes_written / images_drawn * drawn_images * SITE_BYTES_PER_PICTURE_BYTE
    if estimate > GITHUB_PAGES_LIMIT_BYTES:
        echo(f"warning: this site will be about {estimate / 1e9:.1f} GB, over GitHub Pages' 1 GB "
             "limit; --max-gallery-images N draws feature maps for the first N images only")


def _stream_test_images(probe, test, contract, true_labels: np.ndarray, class_count: int,
                        image_slugs: list[str], layer_slugs: list[str], drawn_images: int,
                        workers: _Workers, echo: Callable[[str], None]) -> _Pass:
    """Predictions, statistics and pictures from one forward pass per batch."""
    from reportgen.activations import stream
    from reportgen.stats import LayerStatsAccumulator

    n_images = len(test.images)
    probabilities = np.zeros((n_images, class_count), dtype=np.float32)
    accumulators = [LayerStatsAccumulator(layer.output_shape[2], class_count)
                    for layer in probe.layers]
    unreadable: list = []
    first_drawn = True
    with click.progressbar(length=n_images, label="Reading test images", file=sys.stderr) as bar:

        def decoded_batches():
            for batch in iter_batches(test, contract.spec, INFERENCE_BATCH):
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
            n_drawn = int(np.count_nonzero(indices < drawn_images))  # indices ascend
            if n_drawn:
                workers.draw_batch(
                    batch.images[:n_drawn], [image_slugs[i] for i in indices[:n_drawn]],
                    [(slug, m[:n_drawn]) for slug, m in zip(layer_slugs, maps, strict=True)])
                if first_drawn:
                    _warn_if_too_big(workers, n_drawn, drawn_images, echo)
                    first_drawn = False
            bar.update(len(indices))
    return _Pass(probabilities, accumulators, unreadable)


def _drop_unreadable(options: BuildOptions, dataset: Dataset, streamed: _Pass,
                     echo: Callable[[str], None]) -> Dataset:
    """The dataset less the test images that failed to decode in the pass, listed as skipped."""
    if not streamed.unreadable:
        return dataset
    test = dataset.test.without(streamed.unreadable)
    for record, reason in streamed.unreadable:
        echo(f"skipped {dataset.test.skipped_file(record, reason).path}: {reason}")
    if options.strict:
        raise UserError(f"{len(streamed.unreadable)} file(s) in {options.data} could not be read "
                        "(listed above) and --strict is on")
    if not test.images:
        raise UserError(f"Image folder {test.root} has no readable image: every file failed "
                        "to decode (listed above).")
    return replace(dataset, test=test)


def _layer_entries(probe, layer_slugs: list[str], accumulators: list, palette: bytes,
                   site: SiteWriter) -> list[LayerEntry]:
    """Each layer's statistics, and its atlas strips written on the way."""
    layers = []
    for index, (layer, slug, accumulator) in enumerate(
            zip(probe.layers, layer_slugs, accumulators, strict=True)):
        stats = accumulator.result()
        height, width, channels = layer.output_shape
        _, _, grid_height, grid_width = drawing.grid_shape(height, width, channels)
        layers.append(LayerEntry(index=index, path=layer.path, slug=slug,
                                 type_name=layer.type_name, output_shape=layer.output_shape,
                                 grid_size_px=(grid_width, grid_height), stats=stats))
        for channel in stats.channels:
            if channel.top and not channel.dead:
                maps = [t.feature_map for t in channel.top]
                low = min(0.0, min(float(m.min()) for m in maps))
                site.write(layout.atlas_asset(slug, channel.index),
                              drawing.strip_png(maps, low, max(channel.max, low), palette))
    return layers


def build(options: BuildOptions, echo: Callable[[str], None] = _echo) -> BuildResult:
    """The whole build, while holding the lock on the site folder (one build at a time)."""
    from reportgen.lock import build_lock

    check_target(options.out)  # before the lock file is made beside it
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
    from reportgen.report import model_info

    contract = decide(model, obtained.sidecar, options.preprocess, resize=options.resize)
    echo(f"Input: {contract.description}")
    probe = ActivationProbe(model, list(options.layer_patterns) or None)
    test = dataset.test
    n_images = len(test.images)
    drawn_images = n_images if options.max_gallery_images is None else \
        min(n_images, options.max_gallery_images)
    image_slugs = _unique_slugs([r.path for r in test.images])
    layer_slugs = _unique_slugs([layer.path for layer in probe.layers], slug=layer_slug)
    true_labels = np.array([r.label for r in test.images], dtype=np.int64)

    with SiteWriter(options.out, protected=[dataset.root]) as site:
        workers = _Workers(site, options.jobs, palette, options.scale)
        try:
            pass_started = time.perf_counter()
            streamed = _stream_test_images(probe, test, contract, true_labels, len(class_names),
                                           image_slugs, layer_slugs, drawn_images, workers, echo)
            workers.drain()
            stage_seconds["pass"] = time.perf_counter() - pass_started
            if streamed.unreadable:
                gone = {record for record, _ in streamed.unreadable}
                keep = np.array([record not in gone for record in test.images])
                dataset = _drop_unreadable(options, dataset, streamed, echo)
                test = dataset.test
                drawn_images = int(np.count_nonzero(keep[:drawn_images]))
                n_images, true_labels = len(test.images), true_labels[keep]
                image_slugs = [slug for slug, kept in zip(image_slugs, keep, strict=True) if kept]
                streamed = _Pass(streamed.probabilities[keep], streamed.accumulators, [])

            render_started = time.perf_counter()
            layers = _layer_entries(probe, layer_slugs, streamed.accumulators, palette, site)
            if history is not None:
                from reportgen.curves import learning_curve_svg

                for metric in ("accuracy", "loss"):
                    site.write(layout.curve_asset(metric), learning_curve_svg(history, metric))
            predicted = streamed.probabilities.argmax(axis=1)
            metrics = compute_metrics(true_labels, predicted, len(class_names))
            best_val = max(history.val_accuracy) if history and history.val_accuracy else None
            warnings = (*collapse_warnings(true_labels, streamed.probabilities, class_names,
                                           contract, best_val),
                        *_warnings(dataset, drawn_images, n_images))
            report = Report(
                title=options.title or f"{model.name} on {dataset.root.name}",
                class_names=tuple(class_names),
                class_slugs=tuple(_unique_slugs(list(class_names))),
                model=model_info(model, obtained.source),
                input_contract=contract,
                images=images_from_predictions([r.path for r in test.images], image_slugs,
                                               true_labels, streamed.probabilities),
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
                drawn_images=drawn_images,
                generated_at=generated_at,
                reportgen_version=__version__,
                warnings=warnings,
            )
            for path, data in render_site(report, site_url=options.site_url):
                site.write(path, data)
        finally:
            workers.close()
        stage_seconds["render"] = time.perf_counter() - render_started
        files, size = site.files_written, site.bytes_written
    for warning in warnings:
        echo(f"warning: {warning}")
    if size > GITHUB_PAGES_LIMIT_BYTES:
        echo(f"warning: the site is {size / 1e9:.2f} GB, over GitHub Pages' 1 GB limit; "
             "--max-gallery-images N draws feature maps for the first N images only")
    return BuildResult(site=site.target, files=files, bytes=size,
                       seconds=time.perf_counter() - started, accuracy=metrics.accuracy,
                       warnings=warnings, stage_seconds=stage_seconds)


def _unique_slugs(names: list[str], slug=slugify) -> list[str]:
    slugs = [slug(name) for name in names]
    if len(set(slugs)) != len(slugs):  # a 48-bit hash collision: astronomically rare, never silent
        raise UserError("two names map to the same file name in the site; rename one of them")
    return slugs


def _warnings(dataset: Dataset, drawn_images: int, n_images: int) -> tuple[str, ...]:
    warnings = []
    if dataset.skipped:
        warnings.append(f"{len(dataset.skipped)} unreadable file(s) skipped; each is listed with its reason.")
    for split in (dataset.train, dataset.test):
        if split is not None:
            warnings.extend(f"class folder {split.root.name}/{name} has no readable images."
                            for name in split.empty_classes)
    if drawn_images < n_images:
        warnings.append(f"feature maps drawn for the first {drawn_images} of {n_images} test "
                        "images only (--max-gallery-images).")
    return tuple(warnings)


__all__ = ["BuildOptions", "BuildResult", "build"]
