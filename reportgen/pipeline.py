"""The build's passes over the test images, as plain stages an engine can run anywhere.

``reportgen.stages`` plans, then runs two passes through an engine (``reportgen.engines``:
this process, or the workers of a Dask cluster), then assembles the report and renders it:

1. ``first_pass`` over shards of every test image: one taped forward pass per batch
   gives the probabilities, every shown layer's maps (folded into mergeable channel
   statistics) and Grad-CAM; input pictures and CAM overlays are written on the way, and
   every shown layer's maps are kept, as the colour levels they will be drawn in (one byte
   a value, every channel), in cache files in the staging folder (one per shard).
2. ``merge_first`` folds shard results into one, in a fixed tree over shard numbers
   (``reportgen.engines.fold_in_order``), so the sums come out bit for bit the same
   whichever worker finished first.
3. ``draw_pass`` over shards of the images that get feature maps (the channel and site plans
   need the whole first pass): the planned channels' levels read from the cache, laid out in
   grids, written. No second forward pass, and no image decoded twice.

When the levels of every test image would take more than ``LEVEL_CACHE_MAX_BYTES`` of disk,
the first pass keeps the decoded pixels instead (``PIXEL_CACHE_MAX_BYTES``) and the drawing
pass runs the network again on them; beyond that too, it decodes its images again.

Shards are whole batches at fixed positions, and a batch's images are always the same, so
every image's numbers are computed from the same batch on any engine.
"""

from __future__ import annotations

import dataclasses
import io
import math
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reportgen import drawing, layout
from reportgen.batches import Batch, iter_batches
from reportgen.data import Split
from reportgen.inputs import InputContract
from reportgen.site import SiteWriter

SHARD_BATCHES = 1  # batches per shard: a Dask task's unit of work, and of retry
PIXEL_CACHE_NAME = ".reportgen-pixels"  # a folder in the staging folder; removed before the swap
PIXEL_CACHE_MAX_BYTES = 4_000_000_000  # beyond this the drawing pass decodes its images again
LEVEL_CACHE_NAME = ".reportgen-levels"  # the same, for the shown layers' colour levels
LEVEL_CACHE_MAX_BYTES = 4_000_000_000  # beyond this the drawing pass runs the network again


@dataclass(frozen=True)
class Shard:
    number: int  # position among this pass's shards: results are merged in this order
    indices: tuple[int, ...]  # test-image indices (positions in PassPlan.test.images)


def shards(indices: Sequence[int], batch_size: int,
           batches_per_shard: int = SHARD_BATCHES) -> list[Shard]:
    """``indices`` cut into batches of ``batch_size``, ``batches_per_shard`` batches a shard."""
    size = batch_size * batches_per_shard
    return [Shard(number, tuple(indices[start:start + size]))
            for number, start in enumerate(range(0, len(indices), size))]


@dataclass(frozen=True)
class PassPlan:
    """Everything a worker needs, sent once to each: no arrays, no model."""

    model_file: Path  # loaded again by workers in other processes (safe mode unless trusted)
    trust_model: bool
    contract: InputContract
    test: Split
    true_labels: tuple[int, ...]
    image_slugs: tuple[str, ...]
    layer_paths: tuple[str, ...]  # the shown layers, in the probe's order
    class_count: int
    batch_size: int
    explain: bool
    cam_layer: str | None  # resolved path when explain
    colormap: str
    scale: str
    jobs: int  # drawing threads per worker
    target: Path  # the site folder the build replaces
    staging: Path  # where this build's files are written before the swap
    pictures: str  # "png" or "jpeg": input pictures and CAM overlays (drawing.picture_format)
    pixel_cache: Path | None  # .npy files of every test image's pixels, or None
    level_cache: Path | None = None  # .npy files of every image's shown maps as levels, or None
    # Data given in memory (reportgen.given), read once into .npy files of pixels in the
    # pixel cache's layout: the passes read their images from there instead of decoding files.
    given_pixels: Path | None = None


@dataclass(frozen=True)
class DrawLayer:
    slug: str
    channels: tuple[int, ...]  # the channel plan: the channels drawn


# -- a worker: the model and what draws ---------------------------------------------------------

def untimed(stage: str, function: Callable, *args):
    """A worker's default timer: just ``function(*args)``. The benchmark passes one that also
    clocks each stage (stages nest: writes inside drawing tasks, all inside a pass)."""
    return function(*args)


class Worker:
    """One process's model, forward pass and drawing threads, for any number of shards."""

    def __init__(self, plan: PassPlan, model, *, grad_cam=None, probe=None,
                 timer: Callable = untimed, top_pool=None):
        """``grad_cam`` (explain) or ``probe`` may be given already built on ``model``, with the
        plan's layers: the build's own process has made them to plan. ``timer(stage, function,
        *args)`` runs the passes' decoding, forward passes, statistics, drawing and writes."""
        from reportgen.activations import ActivationProbe

        self.plan = plan
        self.timer = timer
        # In the build's own process, each shard's top images go here, not into its result
        # (stats.TopPool); workers in other processes send theirs with their results.
        self.top_pool = top_pool
        self.cache_rows: dict[Path, dict[int, tuple[str, int]]] = {}  # read once, by draw_pass
        self.palette = drawing.colormap_palette(plan.colormap)
        self.grad_cam = self.probe = None
        self.outputs = None  # the probe's output contract; Grad-CAM applies its own in its graph
        if plan.explain:
            from reportgen.explain import GradCam

            self.grad_cam = grad_cam or GradCam(model, plan.cam_layer, layers=plan.layer_paths)
        else:
            chosen = set(plan.layer_paths)
            self.probe = probe or ActivationProbe(
                model, select=lambda layers: [layer.path for layer in layers
                                              if layer.path in chosen])
            from reportgen.outputs import output_contract

            self.outputs = output_contract(model)
        # Where each shown layer's levels lie in a row of the level cache: (start, shape).
        self.level_slices = []
        start = 0
        for layer in (self.grad_cam or self.probe).layers:
            self.level_slices.append((start, tuple(layer.output_shape)))
            start += math.prod(layer.output_shape)
        self.level_row_size = start
        self._forward_lock = threading.Lock()

    def forward(self, images: np.ndarray, true_labels: np.ndarray):
        """(probabilities, maps of the shown layers, CamBatch or None) for 0-255 pixels.

        One batch in the network at a time, whichever thread asks: the memory plan counts
        TensorFlow's working set once."""
        inputs = self.plan.contract.prepare(images)
        with self._forward_lock:
            if self.grad_cam is not None:
                return self.grad_cam.forward(inputs, true_labels)
            probabilities, maps = self.probe(inputs)
        return self.outputs.to_probabilities(probabilities), maps, None


def open_worker(plan: PassPlan) -> Worker:
    """A worker in a process of its own: the model loaded from its file, as the build did."""
    from reportgen import model as model_stage

    return Worker(plan, model_stage.load(plan.model_file, trust=plan.trust_model))


class _Drawing:
    """Encodes and writes pictures in threads, overlapped with the forward pass.

    NumPy's array work, zlib inside Pillow's PNG encoder and file writes release the GIL,
    so threads overlap them with TensorFlow without copying maps between processes.
    Pending tasks are bounded, so memory does not grow with the number of images.
    """

    def __init__(self, plan: PassPlan, timer: Callable):
        self.site = SiteWriter.into(plan.staging, plan.target)
        self.timer = timer
        self.pool = ThreadPoolExecutor(max_workers=plan.jobs) if plan.jobs > 1 else None
        self.pending: deque[Future] = deque()

    def write(self, relative_path: str, data: bytes) -> None:
        self.timer("write", self.site.write, relative_path, data)

    def submit(self, stage: str, tasks: list[tuple], max_pending: int) -> None:
        if self.pool is None:
            for task in tasks:
                self.timer(stage, *task)
            return
        while len(self.pending) > max_pending:
            self.pending.popleft().result()
        self.pending.extend(self.pool.submit(self.timer, stage, *task) for task in tasks)

    def finish(self) -> tuple[int, int]:
        """Wait for every task (a task's exception is raised here); (files, bytes) written."""
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True, cancel_futures=True)
        return self.site.files_written, self.site.bytes_written


# -- the caches: each image decoded once, and through the network once --------------------------

def create_caches(plan_test: Split, contract: InputContract,
                  layer_shapes: Sequence[tuple[int, int, int]],
                  staging: Path, *, pixels_kept: bool = False) -> tuple[Path | None, Path | None]:
    """(level cache, pixel cache): the folder where the first pass keeps every test image's
    levels (a file per shard, written by whichever worker ran it) when they fit in
    LEVEL_CACHE_MAX_BYTES, else the one for its pixels when they fit; None for neither.
    ``pixels_kept``: the pixels are on disk already (data given in memory), no pixel cache."""
    n_images = len(plan_test.images)
    if n_images * sum(math.prod(shape) for shape in layer_shapes) <= LEVEL_CACHE_MAX_BYTES:
        path = staging / LEVEL_CACHE_NAME
        path.mkdir()
        return path, None
    if pixels_kept:
        return None, None
    return None, create_pixel_cache(plan_test, contract, staging)


def create_pixel_cache(plan_test: Split, contract: InputContract, staging: Path) -> Path | None:
    """The folder where the first pass keeps every test image's pixels, or None when they
    would take more than PIXEL_CACHE_MAX_BYTES of disk."""
    spec = contract.spec
    if len(plan_test.images) * spec.height * spec.width * spec.channels * 4 > PIXEL_CACHE_MAX_BYTES:
        return None
    path = staging / PIXEL_CACHE_NAME
    path.mkdir()
    return path


def _save_shard_cache(site: SiteWriter, staging: Path, folder: Path, shard: Shard,
                      rows: np.ndarray) -> None:
    """A shard's cache rows (one per image, in shard order) and their test-image indices as
    .npy files in ``folder``; shards of one pass never share an image, so their first index
    names their files. Written whole through the site writer, so a full disk is its one-line
    error (a memory-mapped file would die of SIGBUS instead)."""
    stem = f"{folder.relative_to(staging).as_posix()}/{shard.indices[0]:09d}"
    for suffix, array in (("indices", np.asarray(shard.indices, np.int64)), ("rows", rows)):
        buffer = io.BytesIO()
        np.save(buffer, array)
        site.write(f"{stem}-{suffix}.npy", buffer.getbuffer(), counted=False)


def _cache_rows(folder: Path) -> dict[int, tuple[str, int]]:
    """Every cached image's (rows file, row), from the files the first pass left."""
    rows = {}
    for index_file in sorted(folder.glob("*-indices.npy")):
        rows_file = str(index_file).removesuffix("-indices.npy") + "-rows.npy"
        rows.update((int(index), (rows_file, row))
                    for row, index in enumerate(np.load(index_file)))
    return rows


def _cached_rows(worker: Worker, folder: Path,
                 indices: Sequence[int]) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    """(indices, their rows stacked) from a cache the first pass wrote, a batch at a time.

    Each row is read into the batch with a plain read, not through a memory map: mapped
    pages of the files would count in the process' resident memory (a whole cache of
    640 MB for ResNet50 over 102 photos) though only a batch of rows is needed at once."""
    if folder not in worker.cache_rows:  # once per worker: the first pass is over by now
        worker.cache_rows[folder] = _cache_rows(folder)
    where = worker.cache_rows[folder]
    with ExitStack() as files:
        opened: dict[str, tuple] = {}
        for start in range(0, len(indices), worker.plan.batch_size):
            chunk = tuple(indices[start:start + worker.plan.batch_size])
            rows = None
            for position, index in enumerate(chunk):
                path, row = where[index]
                if path not in opened:
                    opened[path] = _open_rows(files.enter_context(open(path, "rb")))
                file, offset, shape, dtype = opened[path]
                if rows is None:
                    rows = np.empty((len(chunk), *shape[1:]), dtype)
                file.seek(offset + row * rows[0].nbytes)
                if file.readinto(rows[position]) != rows[0].nbytes:
                    raise OSError(f"{path} is shorter than its header says")
            yield chunk, rows


def _open_rows(file) -> tuple:
    """(file, where its data begin, shape, dtype) of an .npy file opened for reading."""
    read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}[np.lib.format.read_magic(file)]
    shape, fortran_order, dtype = read_header(file)
    assert not fortran_order, "the caches are written in C order"
    return file, file.tell(), shape, dtype


def _decoded(worker: Worker, indices: Sequence[int]) -> Iterator[Batch]:
    """Batches of the images at ``indices`` (positions in the test split), decoded from files
    (or read from the pixels of data given in memory)."""
    plan = worker.plan
    if plan.given_pixels is not None:
        for chunk, images in _cached_rows(worker, plan.given_pixels, indices):
            yield Batch(images, tuple(plan.test.images[i] for i in chunk), chunk)
        return
    subset = dataclasses.replace(plan.test, images=tuple(plan.test.images[i] for i in indices))
    for batch in iter_batches(subset, plan.contract.spec, plan.batch_size):
        yield dataclasses.replace(batch, indices=tuple(indices[i] for i in batch.indices))


def _timed(timer: Callable, stage: str, batches: Iterator[Batch]) -> Iterator[Batch]:
    """``batches``, the making of each one timed as ``stage``."""
    while (batch := timer(stage, next, batches, None)) is not None:
        yield batch


def _cached(worker: Worker, indices: Sequence[int]) -> Iterator[Batch]:
    """The same batches from the pixel cache the first pass wrote."""
    for chunk, images in _cached_rows(worker, worker.plan.pixel_cache, indices):
        yield Batch(images, tuple(worker.plan.test.images[i] for i in chunk), chunk)


# -- pass 1 -------------------------------------------------------------------------------------

@dataclass
class FirstPassResult:
    """What a shard (or merged shards) of the first pass leaves: no feature map drawn yet."""

    indices: np.ndarray  # (n,) test-image indices that decoded, ascending
    probabilities: np.ndarray  # (n, classes)
    accumulators: list  # one LayerStatsAccumulator per shown layer
    cam: dict | None  # per image: predicted_maps, true_maps (n, h, w), features, channel_means
    unreadable: list  # (ImageRecord, reason) of images that failed to decode
    files: int  # written into the staging folder
    bytes: int


def first_pass(worker: Worker, shard: Shard) -> FirstPassResult:
    """Predictions, statistics and explanations of one shard; inputs and overlays written."""
    from reportgen.stats import LayerStatsAccumulator

    plan, timer = worker.plan, worker.timer
    drawing_threads = _Drawing(plan, timer)
    accumulators = [LayerStatsAccumulator(layer.output_shape[2], plan.class_count)
                    for layer in (worker.grad_cam or worker.probe).layers]
    spec = plan.contract.spec
    n = len(shard.indices)  # the shard's cache rows; an image that fails to decode keeps zeros
    cache = (np.zeros((n, spec.height, spec.width, spec.channels), np.float32)
             if plan.pixel_cache and n else None)
    levels = np.zeros((n, worker.level_row_size), np.uint8) if plan.level_cache and n else None
    rows = {index: row for row, index in enumerate(shard.indices)}
    true_labels = np.asarray(plan.true_labels, dtype=np.int64)
    indices, probabilities, cams, unreadable = [], [], [], []
    for batch in _timed(timer, "decode", _decoded(worker, shard.indices)):
        unreadable.extend(batch.unreadable)
        if not batch.records:
            continue
        batch_indices = np.asarray(batch.indices)
        labels = true_labels[batch_indices]
        batch_probabilities, maps, cam = timer("forward", worker.forward, batch.images, labels)
        paths = [record.path for record in batch.records]
        # Each map's maximum, once: the statistics need it, and the levels each image's.
        spatial_maxima = [timer("statistics", np.max, layer_maps, (1, 2)) for layer_maps in maps]
        for accumulator, layer_maps, spatial_max in zip(accumulators, maps, spatial_maxima,
                                                        strict=True):
            timer("statistics", accumulator.update, layer_maps, labels, paths, spatial_max)
        slugs = [plan.image_slugs[i] for i in batch_indices]
        mistaken = batch_probabilities.argmax(axis=1) != labels
        if levels is not None:  # waits for the last batch's: one batch of maps in tasks
            drawing_threads.submit("keep levels", [(
                _keep_levels, levels, [rows[i] for i in batch.indices], maps,
                [spatial_max.max(axis=1) for spatial_max in spatial_maxima],
                worker.level_slices, plan.scale)], max_pending=1)
        drawing_threads.submit("draw inputs", [(_draw_inputs, drawing_threads.write,
                                                plan.pictures, batch.images, slugs, cam,
                                                mistaken)],
                               max_pending=2)
        if cache is not None:
            cache[[rows[index] for index in batch.indices]] = batch.images
        indices.append(batch_indices)
        probabilities.append(batch_probabilities)
        if cam is not None:
            cams.append(cam)
    files, size = drawing_threads.finish()
    if worker.top_pool is not None:
        worker.top_pool.absorb(accumulators)
    for folder, rows_kept in ((plan.pixel_cache, cache), (plan.level_cache, levels)):
        if rows_kept is not None:
            timer("write the cache", _save_shard_cache, drawing_threads.site, plan.staging,
                  folder, shard, rows_kept)
    n_classes = plan.class_count
    return FirstPassResult(
        indices=np.concatenate(indices) if indices else np.zeros(0, np.int64),
        probabilities=(np.concatenate(probabilities) if probabilities
                       else np.zeros((0, n_classes), np.float32)),
        accumulators=accumulators,
        cam=_stack_cams(cams) if plan.explain else None,
        unreadable=unreadable, files=files, bytes=size)


def _keep_levels(cache: np.ndarray, rows: list[int], maps: Sequence[np.ndarray],
                 highs: Sequence[np.ndarray], slices: Sequence[tuple[int, tuple[int, int, int]]],
                 scale: str) -> None:
    """Every channel of each layer's maps as the levels a grid draws, into the cache's rows;
    ``highs`` are each layer's per-image maxima.

    An image at a time, so the float temporaries are one image's, not a batch's."""
    for layer_maps, layer_highs, (start, shape) in zip(maps, highs, slices, strict=True):
        stop = start + math.prod(shape)
        for row, image_maps, high in zip(rows, layer_maps, layer_highs, strict=True):
            if scale == "layer":
                drawing.layer_levels_into(cache[row, start:stop], image_maps, high)
            else:
                cache[row, start:stop] = drawing.scale_levels(image_maps[np.newaxis],
                                                              scale).reshape(-1)


def _draw_inputs(write: Callable, picture_format: str, images: np.ndarray, slugs: list[str],
                 cam, mistaken: np.ndarray) -> None:
    from reportgen import overlays

    for offset, (image, slug) in enumerate(zip(images, slugs, strict=True)):
        write(layout.input_asset(slug, picture_format=picture_format),
              drawing.input_picture(image, picture_format))
        if cam is None:
            continue
        write(layout.cam_asset(slug, picture_format=picture_format),
              overlays.overlay_picture(image, cam.predicted_maps[offset], picture_format))
        if mistaken[offset]:
            write(layout.cam_asset(slug, "true", picture_format=picture_format),
                  overlays.overlay_picture(image, cam.true_maps[offset], picture_format))


CAM_FIELDS = ("predicted_maps", "true_maps", "features", "channel_means")


def _stack_cams(cams: list) -> dict | None:
    if not cams:
        return None
    return {name: np.concatenate([getattr(cam, name) for cam in cams]) for name in CAM_FIELDS}


def merge_first(a: FirstPassResult, b: FirstPassResult) -> FirstPassResult:
    """Both shards' results: ``a`` holds the earlier images. Neither input changes."""
    if a.cam is None or b.cam is None:
        cam = a.cam or b.cam
    else:
        cam = {name: np.concatenate([a.cam[name], b.cam[name]]) for name in CAM_FIELDS}
    return FirstPassResult(
        indices=np.concatenate([a.indices, b.indices]),
        probabilities=np.concatenate([a.probabilities, b.probabilities]),
        accumulators=[x.merge(y) for x, y in zip(a.accumulators, b.accumulators, strict=True)],
        cam=cam, unreadable=[*a.unreadable, *b.unreadable],
        files=a.files + b.files, bytes=a.bytes + b.bytes)


# -- pass 2 -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Written:
    files: int
    bytes: int


def add_written(a: Written, b: Written) -> Written:
    return Written(a.files + b.files, a.bytes + b.bytes)


def draw_pass(worker: Worker, shard: Shard, layers: Sequence[DrawLayer]) -> Written:
    """Feature-map grids of one shard's images, every shown layer."""
    plan, timer = worker.plan, worker.timer
    drawing_threads = _Drawing(plan, timer)
    if plan.level_cache is not None:
        rows = _cached_rows(worker, plan.level_cache, shard.indices)
        while (batch := timer("read the level cache", next, rows, None)) is not None:
            chunk, levels = batch
            slugs = [plan.image_slugs[i] for i in chunk]
            drawing_threads.submit("draw feature maps", [
                (_draw_levels, drawing_threads.write, worker.palette,
                 levels[:, start:start + math.prod(shape)].reshape(len(chunk), *shape),
                 slugs, layer)
                for layer, (start, shape) in zip(layers, worker.level_slices, strict=True)],
                max_pending=len(layers))
        return Written(*drawing_threads.finish())
    true_labels = np.asarray(plan.true_labels, dtype=np.int64)
    batches = (_timed(timer, "read the pixel cache", _cached(worker, shard.indices))
               if plan.pixel_cache else _timed(timer, "decode", _decoded(worker, shard.indices)))
    for batch in batches:
        if not batch.records:
            continue
        _, maps, _ = timer("forward", worker.forward, batch.images,
                           true_labels[list(batch.indices)])
        slugs = [plan.image_slugs[i] for i in batch.indices]
        drawing_threads.submit(
            "draw feature maps",
            [(_draw_layer, drawing_threads.write, worker.palette, plan.scale, layer_maps, slugs,
              layer) for layer, layer_maps in zip(layers, maps, strict=True)],
            max_pending=len(layers))
    return Written(*drawing_threads.finish())


def _draw_layer(write: Callable, palette: bytes, scale: str, maps: np.ndarray,
                image_slugs: list[str], layer: DrawLayer) -> None:
    _write_grids(write, drawing.feature_grid_pngs(maps, palette, scale, layer.channels),
                 image_slugs, layer)


def _draw_levels(write: Callable, palette: bytes, levels: np.ndarray,
                 image_slugs: list[str], layer: DrawLayer) -> None:
    _write_grids(write, drawing.level_grid_pngs(levels, palette, layer.channels),
                 image_slugs, layer)


def _write_grids(write: Callable, pictures: list[bytes], image_slugs: list[str],
                 layer: DrawLayer) -> None:
    for image_slug, picture in zip(image_slugs, pictures, strict=True):
        write(layout.map_asset(layer.slug, image_slug), picture)


__all__ = ["DrawLayer", "FirstPassResult", "PassPlan", "Shard", "Worker", "Written",
           "add_written", "create_caches", "create_pixel_cache", "draw_pass", "first_pass",
           "merge_first", "open_worker", "shards", "untimed"]
