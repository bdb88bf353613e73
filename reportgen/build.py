"""``reportgen build``: data and model in, a static site out.

Plan, gather, then write. The layer and memory plans come from the model's graph; the
first pass (``reportgen.pipeline``) gives every test image's prediction, every shown
channel's statistics and Grad-CAM from one forward pass per batch; the channel and site
plans need all of that, so a second pass draws the feature maps of the planned images.
Once its first batch has fixed which images are drawn, the report model is assembled and
its pages are rendered (``reportgen.pages``: in a process of its own with ``--jobs`` above 1,
while the drawing goes on). Pictures are written
during the passes (holding every feature map of thousands of images in memory is what
this design avoids); everything is written into a temporary folder that only replaces
the old site at the end.
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


def page_bytes(n_images: int, n_classes: int, n_channels: int) -> int:
    """Estimated bytes of every page and report.json apart from the feature-map galleries."""
    from reportgen.render import MATRIX_TABLE_MAX_CLASSES

    heatmap_rows = n_classes if n_classes <= MATRIX_TABLE_MAX_CLASSES else 0
    return (n_images * (PAGE_BYTES_PER_IMAGE + PAGE_BYTES_PER_IMAGE_AND_CLASS * n_classes)
            + n_channels * (PAGE_BYTES_PER_CHANNEL + PAGE_BYTES_PER_CHANNEL_AND_CLASS * n_classes
                            + PAGE_BYTES_PER_HEATMAP_CELL * heatmap_rows))


def build(options: BuildOptions, echo: Callable[[str], None] = _echo) -> BuildResult:
    """The whole build, while holding the lock on the site folder (one build at a time)."""
    from reportgen.lock import build_lock

    # Before the lock file is made beside the site: never in the data folder, nor at "/".
    check_target(options.out, [options.data])
    with build_lock(options.out), _page_process(options.jobs) as pages, _collector_spared():
        return _build(options, echo, pages)


@contextmanager
def _collector_spared():
    """Python's cycle collector keeps scanning every object it has seen, and TensorFlow and
    a loaded model are millions of them: full collections took 0.5 s of a MobileNetV2
    build. The build freezes what it has made at two points (``gc.freeze``: the
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


def _model_file(options: BuildOptions) -> Path:
    """Absolute, as the test split's folders in a pass plan: Dask workers may run elsewhere."""
    return (options.model_path if options.model_path is not None else options.model_cache).resolve()


def _absolute(split: Split) -> Split:
    data_root = split.data_root.resolve() if split.data_root is not None else None
    return replace(split, root=split.root.resolve(), data_root=data_root)


def _engine(options: BuildOptions, pass_plan, model, grad_cam, probe, data_root: Path,
            top_pool):
    """The engine the passes run on: this process (the model and probe the build already has,
    the shards' top images pooled in ``top_pool``) or a Dask cluster, whose workers load the
    model from its file."""
    from reportgen import pipeline
    from reportgen.engines import make_engine

    if options.engine == "local":
        def open_worker(plan):
            return pipeline.Worker(plan, model, grad_cam=grad_cam, probe=probe,
                                   top_pool=top_pool)
    else:
        open_worker = pipeline.open_worker
    return make_engine(options.engine, pass_plan, open_worker, workers=options.workers,
                       scheduler=options.scheduler, read_paths=[data_root, pass_plan.model_file],
                       write_folder=pass_plan.staging)


def _build(options: BuildOptions, echo: Callable[[str], None], pages) -> BuildResult:
    started = time.perf_counter()
    stage_seconds: dict[str, float] = {}
    generated_at = _generated_at()
    drawing.colormap_palette(options.colormap)  # a wrong --colormap fails now, not after the passes
    if options.explain and options.embedding == "tsne":  # before the pass, not after an hour of it
        from reportgen.explain import require_tsne

        require_tsne()
    dataset = prepare_data(options, echo)
    check_target(options.out, [dataset.root])  # refuse a bad --out before minutes of training
    obtained = obtain_model(options, dataset, echo)
    gc.freeze()  # TensorFlow, Keras and the model (_collector_spared)
    model, class_names, history = obtained.model, obtained.class_names, obtained.history
    stage_seconds["model"] = time.perf_counter() - started

    from reportgen import pipeline
    from reportgen.activations import ActivationProbe
    from reportgen.inputs import collapse_warnings, decide
    from reportgen.pages import report_files, write_pages
    from reportgen.render import render_site
    from reportgen.stats import TOP_K, TopPool

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
            grad_cam = GradCam(model, options.cam_layer,
                               layers=[layer.path for layer in probe.layers])
        except NoCamLayer as error:
            echo(f"warning: {error}; the report has no explanations")
    test = dataset.test
    image_slugs = _unique_slugs([r.path for r in test.images])
    layer_slugs = _unique_slugs([layer.path for layer in probe.layers], slug=layer_slug)
    true_labels = np.array([r.label for r in test.images], dtype=np.int64)

    # Left in this order on a failure: rendering stopped, the engine closed, staging removed.
    with (SiteWriter(options.out, protected=[dataset.root]) as site, ExitStack() as passes,
          ExitStack() as rendering):
        pass_started = time.perf_counter()
        level_cache, pixel_cache = pipeline.create_caches(
            test, contract, [layer.output_shape for layer in probe.layers], site.temp)
        pass_plan = pipeline.PassPlan(
            model_file=_model_file(options), trust_model=options.trust_model, contract=contract,
            test=_absolute(test), true_labels=tuple(true_labels.tolist()), image_slugs=tuple(image_slugs),
            layer_paths=tuple(layer.path for layer in probe.layers),
            class_count=len(class_names), batch_size=memory.batch_size,
            explain=grad_cam is not None,
            cam_layer=grad_cam.layer.path if grad_cam is not None else None,
            colormap=options.colormap, scale=options.scale, jobs=options.jobs,
            target=site.target, staging=site.temp, level_cache=level_cache,
            pixel_cache=pixel_cache,
            pictures=drawing.picture_format(options.pictures, spec.height, spec.width))
        top_pool = TopPool() if options.engine == "local" else None
        engine = passes.enter_context(
            _engine(options, pass_plan, model, grad_cam, probe, dataset.root, top_pool))
        first = engine.map_reduce(pipeline.first_pass,
                                  pipeline.shards(range(len(test.images)), memory.batch_size),
                                  pipeline.merge_first, label="Reading test images")
        if top_pool is not None:
            top_pool.restore(first.accumulators)
        gc.freeze()  # and the traced steps, and what the pass gathered
        site.count(first.files, first.bytes)
        # Decoded once, in the pass: failures are known only now.
        dataset = _drop_unreadable(options, dataset, first.unreadable, echo)
        test, kept = dataset.test, first.indices  # kept: positions in the pass plan's split
        n_images, true_labels = len(test.images), true_labels[kept]
        image_slugs = [image_slugs[i] for i in kept]
        probabilities = first.probabilities
        layers = layer_entries(probe, layer_slugs, first.accumulators, options.max_channels)
        stage_seconds["statistics"] = time.perf_counter() - pass_started

        drawing_started = time.perf_counter()
        predicted = probabilities.argmax(axis=1)
        priority = plan.gallery_priority(true_labels.tolist(), predicted.tolist(),
                                         probabilities.max(axis=1).tolist())
        budget = options.max_site_mb * MB
        fixed = site.bytes_written + page_bytes(
            n_images, len(class_names), sum(layer.output_shape[2] for layer in layers))
        grid_pixels = [math.prod(layer.grid_size_px) for layer in layers]
        site_plan = plan.plan_site(priority, grid_pixels, fixed, budget, options.max_gallery_images)
        drawn, rest = _draw_first_batch(engine, site, site_plan, priority, budget - fixed,
                                        layers, kept, memory.batch_size)
        drawing_seconds = time.perf_counter() - drawing_started

        render_started = time.perf_counter()
        if history is not None:
            from reportgen.curves import learning_curve_svg

            for metric in ("accuracy", "loss"):
                site.write(layout.curve_asset(metric), learning_curve_svg(history, metric))
        explanations = None
        if grad_cam is not None:
            explanations = gather_explanations(grad_cam, first.cam, true_labels, probabilities,
                                         list(class_names), site, options.embedding)
        metrics = compute_metrics(true_labels, predicted, len(class_names))
        best_val = max(history.val_accuracy) if history and history.val_accuracy else None
        warnings = (*collapse_warnings(true_labels, probabilities, class_names, contract,
                                       best_val),
                    *_warnings(dataset, len(drawn), n_images, options, site_plan))
        report = assemble_report(
            options, dataset, obtained, contract, probe, layer_plan, layers,
            image_slugs=image_slugs, true_labels=true_labels, probabilities=probabilities,
            metrics=metrics, drawn=drawn, explanations=explanations, warnings=warnings,
            generated_at=generated_at)
        files_of_report = partial(report_files, render=render_site)
        if pages is not None:  # the pages are rendered there while the drawing goes on here
            rendering.callback(pages.close)  # stopped before the staging folder is removed
            pages.start(files_of_report, report, options.site_url, site.temp, site.target)
        render_seconds = time.perf_counter() - render_started

        drawing_started = time.perf_counter()
        _draw(engine, site, rest, layers, kept, memory.batch_size)
        passes.close()  # a cluster we started is not needed to render
        for cache in (pass_plan.level_cache, pass_plan.pixel_cache):
            if cache is not None:
                shutil.rmtree(cache)  # not part of the site
        stage_seconds["drawing"] = drawing_seconds + time.perf_counter() - drawing_started

        render_started = time.perf_counter()
        if pages is None:
            write_pages(files_of_report, report, options.site_url, site)
        else:
            site.count(*pages.wait())
        # Overlapping the drawing: the time the pages took beyond it, and the report's.
        stage_seconds["render"] = render_seconds + time.perf_counter() - render_started
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


def _draw_first_batch(engine, site: SiteWriter, site_plan: plan.SitePlan, priority: list[int],
                      room_bytes: int, layers: list[LayerEntry], kept: np.ndarray,
                      batch_size: int) -> tuple[tuple[int, ...], list[int]]:
    """Feature-map grids of the first batch of planned images; returns the images that are
    drawn, and those of them still to draw (``_draw``).

    The plan's size per image is an estimate: after the first batch the real one is
    known, and if it is larger, fewer of the remaining images are drawn (the lowest
    priorities are left out), so the site keeps to its budget. Indices are the report's;
    ``kept`` maps them to the pass plan's.
    """
    planned = list(site_plan.drawn)
    if not planned:
        return (), []
    first, rest = planned[:batch_size], planned[batch_size:]
    written = _draw(engine, site, first, layers, kept, batch_size)
    measured = written.bytes / len(first) + plan.HTML_BYTES_PER_GRID * len(layers)
    if rest and measured > site_plan.bytes_per_image:
        allowed = max(0, int((room_bytes - measured * len(first)) // measured))
        wanted = set(rest)
        rest = sorted([i for i in priority if i in wanted][:allowed])
    return tuple(first + rest), rest


def _draw(engine, site: SiteWriter, images: list[int], layers: list[LayerEntry],
          kept: np.ndarray, batch_size: int):
    """The feature-map grids of ``images`` (the report's indices), in shards of a batch."""
    from reportgen import pipeline

    if not images:
        return pipeline.Written(0, 0)
    draw = partial(pipeline.draw_pass,
                   layers=[pipeline.DrawLayer(layer.slug, layer.shown_channels)
                           for layer in layers])
    written = engine.map_reduce(draw, pipeline.shards([int(kept[i]) for i in images], batch_size),
                                pipeline.add_written, label="Drawing feature maps")
    site.count(written.files, written.bytes)
    return written


def gather_explanations(grad_cam, cam: dict, true_labels: np.ndarray, probabilities: np.ndarray,
                  class_names: list[str], site: SiteWriter, embedding_method: str):
    """Explanations from the first pass's per-image Grad-CAM; mean maps written."""
    from reportgen import overlays
    from reportgen.explain import summarise
    from reportgen.render_explain import cam_cells_shown

    explanations = summarise(grad_cam, cam, true_labels, probabilities, embedding_method)
    class_slugs = _unique_slugs(class_names)
    for t, true_slug in enumerate(class_slugs):
        site.write(layout.cam_class_asset(true_slug),
                   overlays.heatmap_png(explanations.class_means[t]))
    if cam_cells_shown(len(class_names)):
        for (t, p), mean_map in sorted(explanations.cell_means.items()):
            site.write(layout.cam_cell_asset(class_slugs[t], class_slugs[p]),
                       overlays.heatmap_png(mean_map))
    return explanations


def assemble_report(options: BuildOptions, dataset: Dataset, obtained: ObtainedModel, contract,
                    probe, layer_plan, layers: list[LayerEntry], *, image_slugs: list[str],
                    true_labels: np.ndarray, probabilities: np.ndarray, metrics,
                    drawn: tuple[int, ...], explanations, warnings: tuple[str, ...],
                    generated_at: str | None) -> Report:
    """The report model, from what the passes gathered: the one place a Report is made."""
    from reportgen.report import FeatureLayerRow, model_info

    test, history, class_names = dataset.test, obtained.history, obtained.class_names
    shown = set(layer_plan.shown)
    return Report(
        title=options.title or f"{obtained.model.name} on {dataset.root.name}",
        class_names=tuple(class_names),
        class_slugs=tuple(_unique_slugs(list(class_names))),
        model=model_info(obtained.model, obtained.source),
        input_contract=contract,
        images=images_from_predictions([r.path for r in test.images], image_slugs,
                                       true_labels, probabilities),
        layers=tuple(layers),
        metrics=metrics,
        history=history,
        validation=history.validation if history else "unknown (no training history)",
        data_name=dataset.root.name,
        skipped=dataset.skipped,
        empty_classes=tuple(sorted(set(test.empty_classes))),
        scale=options.scale,
        colormap=options.colormap,
        pictures=drawing.picture_format(options.pictures, contract.spec.height,
                                        contract.spec.width),
        images_per_page=options.images_per_page,
        drawn_indices=drawn,
        generated_at=generated_at,
        reportgen_version=__version__,
        warnings=warnings,
        explanations=explanations,
        feature_layers=tuple(FeatureLayerRow(layer.path, layer.type_name, layer.output_shape,
                                             layer.path in shown)
                             for layer in probe.all_layers),
        layer_rule=layer_plan.rule,
        max_channels=options.max_channels,
    )


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


__all__ = ["BuildOptions", "BuildResult", "assemble_report", "build", "gather_explanations", "layer_entries"]
