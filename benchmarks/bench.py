"""Measure reportgen's speed, memory and site size; write the tables to benchmarks/results.md.

    python benchmarks/bench.py [--sizes 90,900,9000] [--out benchmarks/results.md] [--work output/bench]
                               [--sections 1,2,3,4,5,6]

Everything is measured in one run on one machine, so the ratios compare like with like:

1. drawing one image's feature maps: the article's matplotlib figures, reportgen's renderer and a
   plain lower bound, all on the same maps;
2. ``reportgen build --model`` end to end (a subprocess) on each size: wall time, peak RSS, site;
3. where the time of a build goes: the build's own stages (``reportgen.pipeline``), each timed;
4. PNG compression settings for the feature-map grids;
5. ``--jobs 1`` against ``--jobs 2``;
6. decoding a folder of 12 MP JPEGs: before and after draft mode, against Pillow alone;
7. Grad-CAM: the batched pass against keras-io's one image at a time and the forward pass
   (``grad_cam_cost.py``, which also runs alone).
Then input pictures and Grad-CAM overlays at 224x224, PNG against JPEG settings
(``pictures.py``, which also runs alone), and feature visualization's channels per second,
batched per layer against one channel at a time (``featviz.py``, which also runs alone).

Datasets and the quick model are kept in the work folder and reused; timings never are.
``--sections 3`` (say) measures only those and replaces only them in ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from reportgen import drawing

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "tests"))
import big_models  # noqa: E402  (a sibling script, not a package)
import featviz  # noqa: E402  (a sibling script, not a package)
import grad_cam_cost  # noqa: E402  (a sibling script, not a package)
import pictures  # noqa: E402  (a sibling script, not a package)
from generated_photos import photo_like  # noqa: E402  (the tests' helper module)

N_CLASSES = 3  # the bundled shapes
ARTICLE_PER_CLASS, ARTICLE_TEST_FRACTION = 100, 0.3  # the article's split
ARTICLE_TEST_IMAGES = 90
ARTICLE_IMAGES_PER_ROW = 16
ARTICLE_IMAGES_TIMED = 5  # a figure per layer: seconds per image
TRAIN_EPOCHS, TRAIN_STEPS = 2, 20  # quality does not matter for speed
REPEATS = 3  # fast in-process timings: best of this many passes
BUILD_REPEATS = 2  # the --jobs builds: best of this many, alternating
STAGE_REPEATS = 3  # section 3: each stage's best of this many passes
PNG_LEVELS = (0, 1, 3, 6, 9)
TIME_LINEAR_TOLERANCE = 1.1  # ms/image on the largest set at most this times that of 900
PEAK_GROWTH_LIMIT = 1.3
PEAK_LIMIT_BYTES = 1.5e9
DRAWING_RATIO_TARGET = 100
LOWER_BOUND_RATIO_TARGET = 2
GRAD_CAM_RATIO_TARGET = 1.5  # Grad-CAM's extra time per image, against the forward pass
MB = 1e6
SECTIONS = (1, 2, 3, 4, 5, 6)


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def best_seconds(run: Callable[[], object], repeats: int = REPEATS) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        timings.append(time.perf_counter() - started)
    return min(timings)


def reportgen_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "reportgen", *args]


# -- datasets and the model ----------------------------------------------------------------------

def dataset_options(n_test: int) -> tuple[int, float]:
    """(per_class, test_fraction) giving exactly n_test test images and few training images.

    The training images cost generation time and are decoded by every build's scan, so beyond
    the article's own split only a ninth as many again are drawn.
    """
    if n_test % N_CLASSES:
        raise SystemExit(f"--sizes: {n_test} is not a multiple of {N_CLASSES} classes")
    if n_test == ARTICLE_TEST_IMAGES:
        return ARTICLE_PER_CLASS, ARTICLE_TEST_FRACTION
    test_per_class = n_test // N_CLASSES
    per_class = test_per_class + math.ceil(test_per_class / 9)
    test_fraction = test_per_class / per_class
    assert round(per_class * test_fraction) == test_per_class  # what shapes.generate computes
    return per_class, test_fraction


def ensure_dataset(work: Path, n_test: int) -> Path:
    per_class, test_fraction = dataset_options(n_test)
    folder = work / "data" / f"shapes-{n_test}"
    if not (folder / "test_set").is_dir():  # generate() moves a finished dataset into place
        log(f"drawing {per_class * N_CLASSES} images into {folder}")
        subprocess.run(reportgen_command("data", "--out", str(folder), "--per-class", str(per_class),
                                         "--test-fraction", repr(test_fraction)),
                       check=True, stdout=subprocess.DEVNULL)
    return folder


def ensure_model(work: Path, data: Path) -> Path:
    model_path = work / "model" / "model.keras"
    if not model_path.exists():
        log(f"training {model_path} ({TRAIN_EPOCHS} epochs of {TRAIN_STEPS} steps)")
        subprocess.run(reportgen_command("train", "--data", str(data), "--out", str(model_path),
                                         "--epochs", str(TRAIN_EPOCHS),
                                         "--steps-per-epoch", str(TRAIN_STEPS)),
                       check=True, stdout=subprocess.DEVNULL)
    return model_path


# -- 2 and 5: whole builds in a subprocess ----------------------------------------------------------

@dataclass(frozen=True)
class BuildRun:
    images: int
    jobs: int
    wall_seconds: float
    peak_rss_bytes: int
    site_bytes: int  # sum of file sizes
    site_disk_bytes: int  # allocated blocks: what a disk or an upload of many small files costs
    files: int
    cpu_seconds: float  # user + system, all threads
    stage_seconds: dict[str, float]  # BuildResult.stage_seconds: BUILD_STAGES
    folders: dict[str, tuple[int, int]]  # top-level site folder -> (files, bytes)
    load_average: float  # the machine's 1-minute load when the build ended: other work shows here

    @property
    def ms_per_image(self) -> float:
        return self.wall_seconds / self.images * 1e3


# `reportgen build --model M --data D --out O --jobs J` through the function the CLI calls, with
# the same options, plus one file out: BuildResult.stage_seconds, which the CLI does not print.
BUILD_DRIVER = """
import json, sys
from pathlib import Path
from reportgen.stages import BuildOptions, build

stages_path, data, model, out, jobs = sys.argv[1:]
result = build(BuildOptions(data=Path(data), model_path=Path(model), out=Path(out),
                            jobs=int(jobs)))
Path(stages_path).write_text(json.dumps(result.stage_seconds))
"""
BUILD_STAGES = ("model", "statistics", "drawing", "render")  # BuildResult.stage_seconds' keys


def run_build(work: Path, data: Path, model: Path, n_images: int, jobs: int) -> BuildRun:
    site = work / "sites" / f"site-{n_images}-jobs{jobs}"
    shutil.rmtree(site, ignore_errors=True)
    log_path = work / "logs" / f"build-{n_images}-jobs{jobs}.log"
    stages_path = log_path.with_suffix(".stages.json")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-c", BUILD_DRIVER, str(stages_path), str(data), str(model),
               str(site), str(jobs)]
    log(f"build: {n_images} images, --jobs {jobs}")
    with log_path.open("wb") as log_file:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
        # wait4 gives this one child's own peak RSS; RUSAGE_CHILDREN would be the max of all so far.
        _, status, usage = os.wait4(process.pid, 0)
        wall_seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed; see {log_path}")
    load_average = os.getloadavg()[0]
    files, size, disk, folders = site_size(site)
    shutil.rmtree(site)
    return BuildRun(n_images, jobs, wall_seconds, usage.ru_maxrss * 1024, size, disk, files,
                    usage.ru_utime + usage.ru_stime, json.loads(stages_path.read_text()), folders,
                    load_average)


def site_size(site: Path) -> tuple[int, int, int, dict[str, tuple[int, int]]]:
    """(files, bytes, bytes on disk, {folder such as "assets/maps" or "images": (files, bytes)})."""
    files = size = disk = 0
    folders: dict[str, tuple[int, int]] = defaultdict(lambda: (0, 0))
    for folder, _, names in os.walk(site):
        relative = Path(folder).relative_to(site).parts
        key = "/".join(relative[:2] if relative[:1] == ("assets",) else relative[:1]) or "."
        for name in names:
            stat = os.stat(os.path.join(folder, name))
            files, size, disk = files + 1, size + stat.st_size, disk + stat.st_blocks * 512
            folders[key] = (folders[key][0] + 1, folders[key][1] + stat.st_size)
    return files, size, disk, dict(sorted(folders.items()))


STARTUP_SCRIPT = """
import json, sys, time
import numpy as np
times = {}
t = time.perf_counter()
from reportgen.keras_import import keras
times["import TensorFlow and Keras"] = time.perf_counter() - t
t = time.perf_counter()
from reportgen.model import load_with_sidecar
loaded = load_with_sidecar(__import__("pathlib").Path(sys.argv[1]))
times["load the model"] = time.perf_counter() - t
t = time.perf_counter()
from reportgen.activations import ActivationProbe
from reportgen.explain import GradCam
from reportgen.plan import plan_layers
probe = ActivationProbe(loaded.model, select=lambda layers: plan_layers(layers).shown)
grad_cam = GradCam(loaded.model, layers=[layer.path for layer in probe.layers])
times["build the probe and Grad-CAM models"] = time.perf_counter() - t
batch = np.zeros((64, *loaded.model.inputs[0].shape[1:]), np.float32)
t = time.perf_counter()
grad_cam.forward(batch, np.zeros(64, np.int64))
times["first forward pass (tracing the taped pass)"] = time.perf_counter() - t
t = time.perf_counter()
from reportgen import render
render.environment()
times["import and load the templates"] = time.perf_counter() - t
print(json.dumps(times))
"""


def startup_seconds(model: Path) -> dict[str, float]:
    """Fixed costs of a build, in a fresh interpreter as a build pays them; best of REPEATS."""
    runs = []
    for _ in range(REPEATS):
        result = subprocess.run([sys.executable, "-c", STARTUP_SCRIPT, str(model)], check=True,
                                capture_output=True, text=True)
        runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    return {stage: min(run[stage] for run in runs) for stage in runs[0]}


# -- 1: drawing the same feature maps three ways ----------------------------------------------------

def article_figure_png(draw: Callable, figsize: tuple[float, float]) -> bytes:
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=figsize)
    draw(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def article_standardise(channel: np.ndarray) -> np.ndarray:
    """Chollet's 5.4.1, guarded only against a constant channel (his code would divide by 0)."""
    channel_image = channel.astype(np.float64)
    channel_image -= channel_image.mean()
    std = channel_image.std()
    if std > 0:
        channel_image /= std
    channel_image *= 64
    channel_image += 128
    return np.clip(channel_image, 0, 255).astype("uint8")


def article_layer_png(feature_maps: np.ndarray, name: str) -> bytes:
    """One figure per layer, one subplot per channel, 16 a row, about an inch per channel."""
    channels = feature_maps.shape[-1]
    rows = math.ceil(channels / ARTICLE_IMAGES_PER_ROW)

    def draw(figure):
        figure.suptitle(name)
        for channel in range(channels):
            axes = figure.add_subplot(rows, ARTICLE_IMAGES_PER_ROW, channel + 1)
            axes.imshow(article_standardise(feature_maps[:, :, channel]), aspect="auto",
                        cmap="viridis")
            axes.axis("off")

    return article_figure_png(draw, (ARTICLE_IMAGES_PER_ROW, rows))


def article_draw_image(image: np.ndarray, image_maps: list[np.ndarray], names: list[str]) -> int:
    pictures = [article_figure_png(lambda figure: figure.add_subplot().imshow(image), (3, 3))]
    pictures += [article_layer_png(maps, name) for maps, name in zip(image_maps, names, strict=True)]
    return sum(map(len, pictures))


def batches(n_images: int, batch_size: int | None = None) -> list[slice]:
    """The build's inference batches: reportgen draws a batch and a layer at a time."""
    from reportgen.stages import INFERENCE_BATCH

    size = batch_size or INFERENCE_BATCH
    return [slice(start, min(start + size, n_images)) for start in range(0, n_images, size)]


def reportgen_draw(images: np.ndarray, maps: list[np.ndarray], palette: bytes, scale: str) -> int:
    """Every input picture and feature-map grid as the build draws them; returns their bytes."""
    total = 0
    for batch in batches(len(images)):
        total += sum(len(drawing.input_png(image)) for image in images[batch])
        for layer_maps in maps:
            total += sum(map(len, drawing.feature_grid_pngs(layer_maps[batch], palette, scale)))
    return total


def plain_grid_pngs(feature_maps: np.ndarray, colours: np.ndarray, palette: bytes | None,
                    compress_level: int) -> list[bytes]:
    """The least work that draws a layer for a batch: a scale per image, tiles by reshape, Pillow.

    With a palette the PNG holds the levels and the decoder colours them; without one the
    colours are looked up here (the issue's recipe). No gaps between tiles.
    """
    n, height, width, channels = feature_maps.shape
    low = np.minimum(feature_maps.min(axis=(1, 2, 3), keepdims=True), 0.0)
    span = np.maximum(feature_maps.max(axis=(1, 2, 3), keepdims=True) - low, 1e-12)
    levels = ((feature_maps - low) * (254.0 / span)).astype(np.uint8)
    columns = min(channels, ARTICLE_IMAGES_PER_ROW)
    rows = -(-channels // columns)
    tiles = np.zeros((n, rows * columns, height, width), np.uint8)
    tiles[:, :channels] = levels.transpose(0, 3, 1, 2)
    grids = tiles.reshape(n, rows, columns, height, width).transpose(0, 1, 3, 2, 4).reshape(
        n, rows * height, columns * width)
    pictures = []
    for grid in grids:
        image = Image.fromarray(grid) if palette is not None else Image.fromarray(colours[grid])
        if palette is not None:
            image.putpalette(palette)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=compress_level)
        pictures.append(buffer.getvalue())
    return pictures


@dataclass(frozen=True)
class LowerBound:
    forward_ms: float  # per image, one batched forward pass over all the images
    draw_ms: dict[str, float]  # per image, by "palette" (reportgen's output) or "RGB" (the issue's)

    def total_ms(self, kind: str) -> float:
        return self.forward_ms + self.draw_ms[kind]


def measure_lower_bound(model, layer_names: list[str], images: np.ndarray,
                        palette: bytes) -> LowerBound:
    """Forward pass and drawing written without reportgen's code, at reportgen's PNG level."""
    from reportgen.keras_import import keras

    feature_model = keras.Model(model.inputs, [model.get_layer(n).output for n in layer_names])
    feature_model.predict_on_batch(images)  # the one-off trace, as any long run amortises it

    def forward():
        return [np.asarray(m) for m in feature_model.predict_on_batch(images)]

    forward_seconds = best_seconds(forward)
    maps = forward()
    colours = np.frombuffer(palette, np.uint8).reshape(-1, 3)
    level = drawing.PNG_COMPRESS_LEVEL
    draw_ms = {}
    for kind, kind_palette in (("palette", palette), ("RGB", None)):
        def draw(kind_palette=kind_palette):
            for image in images:
                thumbnail = io.BytesIO()
                Image.fromarray((image * 255).astype(np.uint8)).save(
                    thumbnail, format="PNG", compress_level=level)
            for layer_maps in maps:
                plain_grid_pngs(layer_maps, colours, kind_palette, level)

        draw_ms[kind] = best_seconds(draw) / len(images) * 1e3
    return LowerBound(forward_seconds / len(images) * 1e3, draw_ms)


@dataclass(frozen=True)
class DrawingResult:
    article_ms: float
    article_kb: float
    reportgen_ms: dict[str, float]  # by --scale
    reportgen_kb: float
    lower_bound: LowerBound
    layers: int
    channels: int  # the article draws a subplot for each


def measure_drawing(model, probe, images: np.ndarray, maps: list[np.ndarray],
                    palette: bytes) -> DrawingResult:
    import matplotlib

    matplotlib.use("Agg")
    names = [layer.path for layer in probe.layers]

    def image_maps(i: int) -> list[np.ndarray]:
        return [layer_maps[i] for layer_maps in maps]

    log(f"article's figures on {ARTICLE_IMAGES_TIMED} images")
    article_draw_image(images[0], image_maps(0), names)  # font cache and the like, once
    started = time.perf_counter()
    article_bytes = sum(article_draw_image(images[i], image_maps(i), names)
                        for i in range(ARTICLE_IMAGES_TIMED))
    article_seconds = (time.perf_counter() - started) / ARTICLE_IMAGES_TIMED

    log(f"reportgen's renderer on {len(images)} images")
    reportgen_ms = {scale: best_seconds(lambda s=scale: reportgen_draw(images, maps, palette, s))
                    / len(images) * 1e3 for scale in drawing.SCALES}
    reportgen_bytes = reportgen_draw(images, maps, palette, "layer")

    log("the plain lower bound")
    return DrawingResult(article_ms=article_seconds * 1e3,
                         article_kb=article_bytes / ARTICLE_IMAGES_TIMED / 1e3,
                         reportgen_ms=reportgen_ms, reportgen_kb=reportgen_bytes / len(images) / 1e3,
                         lower_bound=measure_lower_bound(model, names, images, palette),
                         layers=len(names), channels=sum(m.shape[-1] for m in maps))


# -- 3: the build's own stages, one thread, each timed -------------------------------------------

class StageClock:
    """A worker's timer that adds up seconds and calls per stage, in first-seen order.

    Stages nest (a pass holds its forward passes, a drawing task its writes): a stage is
    named by its path, such as ``("first pass", "draw inputs", "write")``, and its seconds
    leave out the stages timed inside it, so all stages add up to the time measured.
    One thread only: the build's drawing threads would interleave the paths.
    """

    def __init__(self) -> None:
        self.seconds: dict[tuple[str, ...], float] = defaultdict(float)
        self.calls: dict[tuple[str, ...], int] = defaultdict(int)
        self._open: list[tuple[str, float]] = []  # (stage, seconds of the stages inside it)

    def add(self, path: tuple[str, ...], seconds: float) -> None:
        self.seconds[path] += seconds
        self.calls[path] += 1

    def time(self, stage: str, function: Callable, *args):
        self._open.append((stage, 0.0))
        started = time.perf_counter()
        try:
            return function(*args)
        finally:
            elapsed = time.perf_counter() - started
            path = tuple(name for name, _ in self._open)
            _, inside = self._open.pop()
            self.add(path, elapsed - inside)
            if self._open:
                outer, outer_inside = self._open[-1]
                self._open[-1] = (outer, outer_inside + elapsed)


OTHER_PAGES = "render: overview, results, static files"
PAGE_KINDS = (("images/", "render: image pages"), ("layers/", "render: layer pages"),
              ("cells/", "render: class and confusion-cell pages"),
              ("classes/", "render: class and confusion-cell pages"),
              ("report.json", "render: report.json"),
              ("assets/atlas/", "render: atlas strips, drawn and written (report_files)"))


ATLAS_STRIPS = PAGE_KINDS[-1][1]


def page_kind(path: str) -> str:
    return next((kind for prefix, kind in PAGE_KINDS if path.startswith(prefix)), OTHER_PAGES)


# What each stage path measures, in the table's words; paths not listed show as they are.
STAGE_LABELS = {
    ("scan",): "scan the folder, headers only (prepare_data)",
    ("first pass", "decode"): "first pass: decode test images (iter_batches)",
    ("first pass", "forward"): "first pass: forward pass with Grad-CAM's gradients, one taped "
                               "pass (Worker.forward, GradCam.forward)",
    ("first pass", "statistics"): "first pass: channel statistics (LayerStatsAccumulator.update)",
    ("first pass", "draw inputs"): "first pass: draw input pictures and Grad-CAM overlays "
                                   "(input_picture, overlay_picture)",
    ("first pass", "draw inputs", "write"): "first pass: write them (SiteWriter.write)",
    ("first pass", "keep levels"): "first pass: every shown channel's colour levels into the "
                                   "level cache (scale_levels)",
    ("first pass", "write the cache"): "first pass: write the shard's level (or pixel) cache "
                                       "files",
    ("first pass", "merge"): "merge the shards' results (fold, merge_first)",
    ("first pass",): "first pass: the rest (gathering results; channel statistics and plan, "
                     "layer_entries)",
    ("drawing pass", "read the level cache"): "drawing pass: levels from the cache",
    ("drawing pass", "read the pixel cache"): "drawing pass: pixels from the cache (levels over "
                                              "4 GB)",
    ("drawing pass", "forward"): "drawing pass: forward pass again, taped (Worker.forward), "
                                 "without the level cache",
    ("drawing pass", "draw feature maps"): "drawing pass: lay out and encode feature-map grids "
                                           "(level_grid_pngs)",
    ("drawing pass", "draw feature maps", "write"): "drawing pass: write them (SiteWriter.write)",
    ("drawing pass", "merge"): "drawing pass: add up the files written (add_written)",
    ("drawing pass",): "drawing pass: the rest (the site plan, plan_drawing)",
    ("learning curves",): "learning curves, drawn and written (matplotlib SVG)",
    ("explanations",): "explanations: summaries, mean Grad-CAM maps written (summarise)",
    ("assemble the report",): "metrics and the report model (assemble_report)",
    **{(kind,): kind for kind in dict.fromkeys([OTHER_PAGES, *(kind for _, kind in PAGE_KINDS)])},
    ("write pages",): "write pages (SiteWriter.write)",
}


def stage_label(path: tuple[str, ...]) -> str:
    return STAGE_LABELS.get(path, ": ".join(path))


def stage_order(paths) -> list[tuple[str, ...]]:
    """The table's order: STAGE_LABELS', then any other stage as first seen."""
    known = list(STAGE_LABELS)
    return sorted(paths, key=lambda path: known.index(path) if path in known else len(known))


@dataclass(frozen=True)
class StageResult:
    clock: StageClock
    test_images: int
    pages: int
    forward_seconds: float  # the first pass's forward passes, taped for Grad-CAM, best of REPEATS
    plain_forward_seconds: float  # the same batches through --no-explain's probe, best of REPEATS


class SerialEngine:
    """The local engine's work one shard after another in this thread, for ``StageClock``
    (which counts one thread): the build's own stages run on it unchanged."""

    def __init__(self, worker, clock: StageClock):
        self.worker, self.clock = worker, clock

    def map_reduce(self, task: Callable, shards, merge: Callable, *, label: str):
        from reportgen.engines import fold_in_order

        results = [task(self.worker, shard) for shard in sorted(shards, key=lambda s: s.number)]
        return self.clock.time("merge", fold_in_order, results, merge)

    def close(self) -> None:
        pass


def measure_stages(work: Path, data: Path, model_path: Path) -> StageResult:
    """Seconds per stage of a one-thread build: the build's own stages (``reportgen.stages``)
    in their order, on a serial engine whose worker clocks its parts.

    Every test image gets feature maps, as the site plan decides for this set (section 2).
    """
    import reportgen.keras_import  # noqa: F401  before activations, which imports keras.src unmuted
    from reportgen import pipeline, stages
    from reportgen.batches import iter_batches
    from reportgen.site import SiteWriter

    clock = StageClock()
    site_folder = work / "sites" / "stages"
    options = stages.BuildOptions(data=data, out=site_folder, model_path=model_path, jobs=1)
    dataset = clock.time("scan", stages.prepare_data, options, log)
    inputs = stages.Inputs(stages.obtain_model(options, dataset, log), dataset.root.name, dataset)
    model = inputs.obtained.model

    shutil.rmtree(site_folder, ignore_errors=True)
    with SiteWriter(site_folder) as site:
        build_plan = stages.plan_build(options, inputs, site, log)
        pass_plan, batch_size = build_plan.pass_plan, build_plan.memory.batch_size
        worker = pipeline.Worker(pass_plan, model, grad_cam=build_plan.grad_cam,
                                 probe=build_plan.probe, timer=clock.time)
        plain_worker = pipeline.Worker(dataclasses.replace(pass_plan, explain=False), model,
                                       probe=build_plan.probe)
        spec = build_plan.contract.spec
        warm_up = np.zeros((batch_size, spec.height, spec.width, spec.channels), np.float32)
        for traced in (worker, plain_worker):  # traced once before the clock, as start-up is
            traced.forward(warm_up, np.zeros(batch_size, np.int64))
        passes = stages.Passes(SerialEngine(worker, clock), None, batch_size)

        first = clock.time("first pass", stages.first_pass, options, passes, build_plan, site, log)
        test = first.dataset.test
        if len(test.images) != len(pass_plan.test.images):
            raise SystemExit(f"{data}: some test images failed to decode")
        drawing_plan = clock.time("drawing pass", stages.plan_drawing, options, passes,
                                  build_plan, first, site)
        clock.time("drawing pass", stages.draw, passes, site, drawing_plan.rest, first)
        if len(drawing_plan.drawn) != len(test.images):
            raise SystemExit(f"{data}: the site plan left out some images' feature maps")
        for cache in (pass_plan.level_cache, pass_plan.pixel_cache):  # not part of the site
            if cache is not None:
                shutil.rmtree(cache)
        true_labels = first.true_labels
        pixels = np.concatenate([batch.images for batch in iter_batches(test, spec, batch_size)])
        forward_seconds, plain_forward_seconds = (
            best_seconds(lambda w=w: [w.forward(pixels[s], true_labels[s])
                                      for s in batches(len(pixels), batch_size)])
            for w in (worker, plain_worker))

        clock.time("learning curves", stages.write_curves, inputs.obtained.history, site)
        explanations = clock.time("explanations", stages.gather_explanations, build_plan, first,
                                  site, options.embedding)
        report = clock.time("assemble the report", stages.assemble_report, options, inputs,
                            build_plan, first, drawing_plan, explanations, (), None)
        n_pages = render_and_write(clock, site, report)
    shutil.rmtree(site_folder)
    return StageResult(clock, len(test.images), n_pages, forward_seconds, plain_forward_seconds)


def best_stages(results: list[StageResult]) -> StageResult:
    """Each stage's fastest time over several passes: spikes from other work on the machine go."""
    clock = StageClock()
    for stage in results[0].clock.seconds:
        clock.seconds[stage] = min(result.clock.seconds[stage] for result in results)
        clock.calls[stage] = results[0].clock.calls[stage]
    return dataclasses.replace(
        results[0], clock=clock,
        forward_seconds=min(result.forward_seconds for result in results),
        plain_forward_seconds=min(result.plain_forward_seconds for result in results))


def render_and_write(clock: StageClock, site, report) -> int:
    """report_files' strips and pages, each timed under its kind; returns how many pages
    there were."""
    from reportgen.pages import report_files
    from reportgen.render import render_site

    pages, n_pages = report_files(report, render=render_site), 0
    while True:
        started = time.perf_counter()
        page = next(pages, None)
        if page is None:
            return n_pages
        clock.add((page_kind(page[0]),), time.perf_counter() - started)
        clock.time("write pages", site.write, *page)
        n_pages += page_kind(page[0]) != ATLAS_STRIPS


# -- 4: PNG settings ------------------------------------------------------------------------------

@dataclass(frozen=True)
class PngSetting:
    label: str
    ms_per_grid: float
    total_bytes: int


def measure_png(maps: list[np.ndarray], palette: bytes) -> list[PngSetting]:
    """Encode time and size of every feature-map grid of the given images at each setting."""
    levels = [grid for layer_maps in maps
              for grid in drawing.channel_grids(drawing.layer_scale_levels(layer_maps))]
    palette_images = []
    for grid in levels:
        image = Image.fromarray(np.ascontiguousarray(grid))
        image.putpalette(palette)
        palette_images.append(image)
    colours = np.frombuffer(palette, np.uint8).reshape(-1, 3)
    rgb_images = [Image.fromarray(colours[grid]) for grid in levels]
    settings = [(f"palette, level {level}", palette_images, {"compress_level": level})
                for level in PNG_LEVELS]
    settings += [(f"palette, level {level}, run-length strategy", palette_images,
                  {"compress_level": level, "compress_type": zlib.Z_RLE}) for level in (1, 6)]
    settings += [("palette, optimize=True", palette_images, {"optimize": True})]
    settings += [(f"RGB (colours looked up), level {level}", rgb_images, {"compress_level": level})
                 for level in (1, 6)]
    encoders = []
    for label, images, options in settings:
        def encode(images=images, options=options) -> int:
            total = 0
            for image in images:
                buffer = io.BytesIO()
                image.save(buffer, format="PNG", **options)
                total += buffer.tell()
            return total

        encoders.append((label, encode))
    encoders.append((f"palette, level {drawing.PNG_COMPRESS_LEVEL}, run-length strategy, zlib-ng "
                     "(`encode_png`, what the build writes)",
                     lambda: sum(len(drawing.encode_png(grid, palette)) for grid in levels)))
    return [PngSetting(label, best_seconds(encode) / len(levels) * 1e3, encode())
            for label, encode in encoders]


# -- results.md -----------------------------------------------------------------------------------

def git_commit() -> str:
    return subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                          text=True, cwd=Path(__file__).parent).stdout.strip() or "unknown"


def machine_description() -> list[str]:
    from importlib.metadata import version

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), platform.processor() or "unknown")
    memory_kb = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text()
                      .splitlines() if line.startswith("MemTotal")), 0)
    packages = ", ".join(f"{name} {version(name)}"
                         for name in ("numpy", "tensorflow", "keras", "pillow", "matplotlib",
                                      "jinja2"))
    return [f"- reportgen at commit {git_commit()}",
            f"- Machine: {os.cpu_count()} cores ({cpu}), {memory_kb / 1e6:.0f} GB memory, "
            f"{platform.system()} {platform.machine()}",
            f"- Python {platform.python_version()}; {packages}; reportgen "
            f"PNG_COMPRESS_LEVEL = {drawing.PNG_COMPRESS_LEVEL}"]


def verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> list[str]:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def drawing_section(result: DrawingResult, per_image_build: BuildRun, n_drawn: int) -> list[str]:
    layer_ms, channel_ms = result.reportgen_ms["layer"], result.reportgen_ms["channel"]
    bound = result.lower_bound
    build_ratio = per_image_build.ms_per_image / bound.total_ms("palette")
    lines = ["## 1. Drawing one image's feature maps", "",
             f"The same maps of the article's network ({result.layers} feature-map layers the probe "
             "returns, plus the input picture) drawn three ways; PNG bytes in memory, nothing "
             f"written to disk. The article's way is timed on {ARTICLE_IMAGES_TIMED} images, the "
             f"others on {n_drawn} (best of {REPEATS}). The lower bound is written in the benchmark "
             "without reportgen's code: one batched forward pass, one scale per image and layer, "
             "tiles by reshape, Pillow at reportgen's PNG level.", ""]
    lines += table(["method", "ms per image", "PNG kB per image"], [
        [f"article: a matplotlib figure per layer, a subplot per channel ({result.channels} "
         "subplots), `savefig`", f"{result.article_ms:.0f}", f"{result.article_kb:.0f}"],
        ["reportgen `feature_grid_pngs` + `input_png`, `--scale layer` (default)",
         f"{layer_ms:.2f}", f"{result.reportgen_kb:.1f}"],
        ["reportgen, `--scale channel` (the article's standardisation)", f"{channel_ms:.2f}", ""],
        [f"lower bound, palette PNGs as reportgen writes: forward pass ({bound.forward_ms:.2f}) "
         f"+ drawing ({bound.draw_ms['palette']:.2f})", f"{bound.total_ms('palette'):.2f}", ""],
        [f"lower bound, the issue's recipe (colour lookup, RGB PNGs): forward pass "
         f"({bound.forward_ms:.2f}) + drawing ({bound.draw_ms['RGB']:.2f})",
         f"{bound.total_ms('RGB'):.2f}", ""],
    ])
    lines += table(["ratio", "value", "target", ""], [
        ["article / reportgen (`--scale layer`)", f"{result.article_ms / layer_ms:.0f}x",
         f">= {DRAWING_RATIO_TARGET}x", verdict(result.article_ms / layer_ms >= DRAWING_RATIO_TARGET)],
        ["article / reportgen (`--scale channel`)", f"{result.article_ms / channel_ms:.0f}x",
         f">= {DRAWING_RATIO_TARGET}x",
         verdict(result.article_ms / channel_ms >= DRAWING_RATIO_TARGET)],
        [f"whole build per image ({per_image_build.images:,} images, section 2) / palette lower "
         "bound", f"{build_ratio:.1f}x", f"<= {LOWER_BOUND_RATIO_TARGET}x",
         verdict(build_ratio <= LOWER_BOUND_RATIO_TARGET)],
    ])
    return lines


def scaling_section(builds: list[BuildRun], lower_bound_ms: float) -> list[str]:
    lines = ["## 2. `reportgen build --model` end to end", "",
             f"A subprocess per size, `--jobs {builds[0].jobs}`, the fastest of "
             f"{BUILD_REPEATS} runs. Wall time includes start-up "
             "(TensorFlow import, model load), the scan and the atomic swap. The build runs as "
             "`reportgen build` runs it, through `reportgen.stages.build`; model, statistics "
             "(the first pass: predictions, statistics, Grad-CAM, input pictures; then the "
             "channel plan), drawing (the feature-map pass) and render are its own "
             "`BuildResult.stage_seconds`. CPU s is user + system of all "
             "threads. Peak RSS is the build process's own (`wait4`). Site size: sum of file "
             "sizes, and the blocks they take on this disk. Load: the machine's 1-minute load "
             "average as the build ended (above about 2, other work shared the cores).", ""]
    lines += table(["test images", "wall s", "ms/image", "x lower bound",
                    *(f"{stage} s" for stage in BUILD_STAGES), "CPU s", "peak RSS MB", "site MB",
                    "on disk MB", "files", "load"],
                   [[f"{b.images:,}", f"{b.wall_seconds:.1f}", f"{b.ms_per_image:.1f}",
                     f"{b.ms_per_image / lower_bound_ms:.1f}",
                     *(f"{b.stage_seconds[stage]:.1f}" for stage in BUILD_STAGES),
                     f"{b.cpu_seconds:.1f}", f"{b.peak_rss_bytes / MB:.0f}",
                     f"{b.site_bytes / MB:.1f}", f"{b.site_disk_bytes / MB:.1f}", f"{b.files:,}",
                     f"{b.load_average:.1f}"]
                    for b in builds])
    by_size = {b.images: b for b in builds}
    if 900 in by_size and max(by_size) > 900:
        small, large = by_size[900], by_size[max(by_size)]
        time_ratio = large.ms_per_image / small.ms_per_image
        peak_ratio = large.peak_rss_bytes / small.peak_rss_bytes
        lines += table(["target", "measured", ""], [
            [f"time linear: ms/image at {large.images:,} <= {TIME_LINEAR_TOLERANCE} x at 900",
             f"{time_ratio:.2f} x", verdict(time_ratio <= TIME_LINEAR_TOLERANCE)],
            [f"peak RSS at {large.images:,} <= {PEAK_GROWTH_LIMIT} x at 900",
             f"{peak_ratio:.2f} x", verdict(peak_ratio <= PEAK_GROWTH_LIMIT)],
            [f"peak RSS at {large.images:,} < {PEAK_LIMIT_BYTES / 1e9} GB",
             f"{large.peak_rss_bytes / 1e9:.2f} GB", verdict(large.peak_rss_bytes < PEAK_LIMIT_BYTES)],
        ])
    ordered = sorted(builds, key=lambda b: b.images)
    if len(ordered) > 1:
        steps = [f"{(big.wall_seconds - small.wall_seconds) / (big.images - small.images) * 1e3:.1f} "
                 f"ms from {small.images:,} to {big.images:,}"
                 for small, big in zip(ordered, ordered[1:], strict=False)]
        lines += [f"Each extra image costs {'; '.join(steps)} (equal numbers: time linear in the "
                  "number of images, after a fixed start-up).", ""]
    largest = ordered[-1]
    lines += [f"What the {largest.images:,}-image site holds:", ""]
    lines += table(["folder", "files", "MB", "kB per file"],
                   [[f"`{folder}`", f"{files:,}", f"{size / MB:.1f}", f"{size / files / 1e3:.1f}"]
                    for folder, (files, size) in largest.folders.items()])
    return lines


def stages_section(stages: StageResult, startup: dict[str, float],
                   single_thread_build: BuildRun | None) -> list[str]:
    clock, n = stages.clock, stages.test_images
    total = sum(clock.seconds.values())
    lines = ["## 3. Where a build's time goes", "",
             f"The build's own stages (`reportgen.stages`: `plan_build`, `first_pass`, "
             f"`plan_drawing`, `gather_explanations`, `assemble_report`, then `render_site`) "
             f"called in the build's order on a serial engine, one thread (`--jobs 1`), on the "
             f"{n:,}-image set ({stages.pages:,} "
             "pages, every image with feature maps), with a `StageClock` as the worker's timer; "
             "a stage's seconds leave out the stages timed inside it, so the rows add up (a "
             "pass's calls to read pixels count its last, empty read). Each "
             f"stage's best of {STAGE_REPEATS} passes. Start-up is measured in a fresh "
             f"interpreter, best of {REPEATS}.", ""]
    rows = [[stage_label(stage), f"{seconds:.2f}", f"{seconds / n * 1e3:.2f}",
             f"{seconds / total:.0%}", f"{clock.calls[stage]:,}",
             f"{seconds / clock.calls[stage] * 1e3:.3f}"]
            for stage, seconds in ((stage, clock.seconds[stage])
                                   for stage in stage_order(clock.seconds))]
    rows.append(["**stages together**", f"{total:.2f}", f"{total / n * 1e3:.2f}", "100%", "", ""])
    rows += [[f"start-up: {stage}", f"{seconds:.2f}", "", "", "1", ""]
             for stage, seconds in startup.items()]
    lines += table(["stage", "s", "ms/image", "share", "calls", "ms/call"], rows)
    plain, taped = stages.plain_forward_seconds, stages.forward_seconds
    extra = (taped - plain) / plain
    lines += [f"The first pass's forward passes, taped for Grad-CAM, take {taped / n * 1e3:.2f} ms "
              f"per image; the same batches through `--no-explain`'s forward pass "
              f"(`ActivationProbe`), {plain / n * 1e3:.2f} ms (both best of {REPEATS}, outside "
              f"the clock). Grad-CAM's extra time per image is {extra:+.2f}× the forward pass "
              f"(target: at most {GRAD_CAM_RATIO_TARGET}×; "
              f"{verdict(extra <= GRAD_CAM_RATIO_TARGET)}).", ""]
    if single_thread_build is not None:
        accounted = total + sum(startup.values())
        lines += [f"Stages plus start-up: {accounted:.1f} s; the same build as a subprocess with "
                  f"`--jobs 1`: {single_thread_build.wall_seconds:.1f} s.", ""]
    return lines


def png_section(settings: list[PngSetting], n_images: int) -> list[str]:
    reference = next(s for s in settings if s.label == "palette, level 6")
    lines = ["## 4. PNG settings for the feature-map grids", "",
             f"Encoding only (the grids are laid out beforehand), every layer of {n_images} images. "
             f"reportgen writes palette PNGs at level {drawing.PNG_COMPRESS_LEVEL} with zlib's "
             "run-length strategy (`drawing.PNG_COMPRESS_LEVEL`, `PNG_STRATEGY`), compressed by "
             "zlib-ng (the last row); the other rows are Pillow's encoder; the RGB rows "
             "are the same pictures with the colours "
             "looked up before encoding, as the issue's recipe does.", ""]
    lines += table(["setting", "ms per grid", "MB in all", "size vs palette 6", "time vs palette 6"],
                   [[s.label, f"{s.ms_per_grid:.3f}", f"{s.total_bytes / MB:.2f}",
                     f"{s.total_bytes / reference.total_bytes:.2f}",
                     f"{s.ms_per_grid / reference.ms_per_grid:.2f}"] for s in settings])
    return lines


@dataclass(frozen=True)
class ThreadScaling:
    label: str
    seconds_by_threads: dict[int, float]


def measure_threads(maps: list[np.ndarray], palette: bytes, thread_counts: list[int]
                    ) -> list[ThreadScaling]:
    """The drawing work in a thread pool, beside plain zlib (which releases the GIL) as a yardstick."""
    layer_batches = [layer_maps[batch] for layer_maps in maps for batch in batches(len(maps[0]))]
    grids = [grid for layer_maps in maps
             for grid in drawing.channel_grids(drawing.layer_scale_levels(layer_maps))]
    # Large pictures, so per-call overhead cannot hide whether the GIL is let go.
    rng = np.random.default_rng(0)
    large = [rng.integers(0, 32, (1024, 1024, 3), dtype=np.uint8) for _ in range(2 * max(thread_counts))]
    work = [("`feature_grid_pngs` a layer and a batch a task, as the build's threads do",
             lambda m: drawing.feature_grid_pngs(m, palette), layer_batches),
            ("`encode_png` alone on each grid (zlib-ng)", lambda g: drawing.encode_png(g, palette),
             grids),
            (f"`encode_png` on {len(large)} pictures of 1024 x 1024 (zlib-ng)", drawing.encode_png,
             large),
            (f"`zlib.compress` of the same {len(large)} pictures, level 1 (lets the GIL go)",
             lambda a: zlib.compress(a.tobytes(), 1), large)]
    results = []
    for label, function, inputs in work:
        seconds = {}
        for threads in thread_counts:
            with ThreadPoolExecutor(threads) as pool:
                seconds[threads] = best_seconds(lambda p=pool, f=function, i=inputs: list(p.map(f, i)))
        results.append(ThreadScaling(label, seconds))
    return results


def jobs_section(runs: list[BuildRun], threads: list[ThreadScaling], n_grids: int) -> list[str]:
    base = runs[0]
    lines = ["## 5. `--jobs`", "",
             f"`reportgen build --model` on {base.images:,} images, {os.cpu_count()} cores, best of "
             f"{BUILD_REPEATS} runs each (alternating).", ""]
    lines += table(["--jobs", "wall s", "ms/image", "speed-up", "statistics s", "drawing s",
                    "CPU s", "peak RSS MB", "load"],
                   [[r.jobs, f"{r.wall_seconds:.1f}", f"{r.ms_per_image:.1f}",
                     f"{base.wall_seconds / r.wall_seconds:.2f}x",
                     f"{r.stage_seconds['statistics']:.1f}", f"{r.stage_seconds['drawing']:.1f}",
                     f"{r.cpu_seconds:.1f}",
                     f"{r.peak_rss_bytes / MB:.0f}", f"{r.load_average:.1f}"] for r in runs])
    counts = sorted(threads[0].seconds_by_threads)
    lines += [f"The drawing work alone in a thread pool ({n_grids:,} grids of section 4); the "
              "last row shows how far threads can go on this machine right now:", ""]
    lines += table(["work", *(f"{n} thread{'s' * (n > 1)} ms" for n in counts), "speed-up"],
                   [[t.label, *(f"{t.seconds_by_threads[n] * 1e3:.0f}" for n in counts),
                     f"{t.seconds_by_threads[counts[0]] / t.seconds_by_threads[counts[-1]]:.2f}x"]
                    for t in threads])
    return lines


# -- 6: decoding big photos ------------------------------------------------------------------------
# Self-contained: the folder, the three ways of reading it and the table all live here.

PHOTO_SIZE = (4000, 3000)  # 12 MP, what a phone saves
PHOTO_COUNT = 12
PHOTO_MODEL_SIDES = (96, 224)
PHOTO_SPEED_UP_TARGET, PHOTO_BOUND_RATIO_TARGET = 5, 1.5


def ensure_photos(work: Path) -> Path:
    """A plain class folder of PHOTO_COUNT 12 MP JPEGs (quality 90), kept for later runs."""
    folder = work / "data" / f"photos-{PHOTO_COUNT}"
    if not folder.is_dir():
        log(f"drawing {PHOTO_COUNT} photos into {folder}")
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        for index in range(PHOTO_COUNT):
            path = partial / ("cats", "dogs")[index % 2] / f"photo_{index:02d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            photo_like(*PHOTO_SIZE, seed=index).save(path, quality=90)
        partial.rename(folder)
    return folder


@dataclass(frozen=True)
class PhotoTiming:
    side: int
    before_ms: float  # per image: a decoding scan, then a full decode and resize per batch
    now_ms: float  # per image: a header scan, then one draft decode and resize per batch
    bound_ms: float  # per image: Pillow's draft decode and its own C resize, nothing else
    full_bound_ms: float  # per image: Pillow's full decode and its own C resize
    drafted_mad: float  # mean |draft - full decode| after reportgen's resize, 0-255 units


def measure_photo_decoding(folder: Path) -> list[PhotoTiming]:
    from reportgen import decode
    from reportgen.batches import iter_batches
    from reportgen.data import scan_split
    from reportgen.decode import DRAFT_FACTOR, InputSpec
    from reportgen.resize import resize_pixels

    paths = sorted(folder.rglob("*.jpg"))
    results = []
    for side in PHOTO_MODEL_SIDES:
        spec = InputSpec(side, side, 3)
        log(f"decoding {len(paths)} photos for a {side}-pixel model")

        def before(side=side):  # reportgen before draft mode: every file decoded twice
            split = scan_split(folder, decode=True)
            return [resize_pixels(np.asarray(decode._decode(folder / r.path)), side, side)
                    for r in split.images]

        def now(spec=spec):
            return list(iter_batches(scan_split(folder), spec, 64))

        def bound(draft=True, side=side):
            for path in paths:
                with Image.open(path) as image:
                    if draft:
                        image.draft(None, (DRAFT_FACTOR * side,) * 2)
                    image = image.convert("RGB")
                    np.asarray(image.resize((side, side), Image.Resampling.BILINEAR))

        drafted = np.concatenate([b.images for b in now()])
        full = np.stack(before())
        per_image = 1000 / len(paths)
        results.append(PhotoTiming(
            side=side, before_ms=best_seconds(before) * per_image,
            now_ms=best_seconds(now) * per_image, bound_ms=best_seconds(bound) * per_image,
            full_bound_ms=best_seconds(lambda: bound(draft=False)) * per_image,
            drafted_mad=float(np.abs(drafted - full).mean())))
    return results


def photo_section(timings: list[PhotoTiming]) -> list[str]:
    lines = ["## 6. Big photos", "",
             f"{PHOTO_COUNT} JPEGs of {PHOTO_SIZE[0]} x {PHOTO_SIZE[1]} pixels (generated: "
             "gradients, noise, hard edges; quality 90) as a plain class folder, read for a model "
             f"of each size, best of {REPEATS}. *Before*: the scan decoded every file in full, then "
             "its batch decoded it again in full. *Now*: the scan reads headers only and the batch "
             "decodes once, in JPEG draft mode down to no less than twice the model's size. The "
             "*bound* is Pillow alone: the same draft decode and Pillow's own C resize, nothing "
             "checked or converted. *Difference* is the mean absolute difference of the model's "
             "pixels, draft against full decode (0-255 units).", "",
             "| model side | before ms/image | now ms/image | speed-up | bound ms/image | "
             "now vs bound | full decode + resize ms/image | difference |",
             "|---|---|---|---|---|---|---|---|"]
    for t in timings:
        lines.append(f"| {t.side} | {t.before_ms:.0f} | {t.now_ms:.1f} | "
                     f"{t.before_ms / t.now_ms:.1f}x | {t.bound_ms:.1f} | "
                     f"{t.now_ms / t.bound_ms:.2f}x | {t.full_bound_ms:.0f} | "
                     f"{t.drafted_mad:.2f} |")
    speed_ups = [t.before_ms / t.now_ms for t in timings]
    ratios = [t.now_ms / t.bound_ms for t in timings]
    lines += ["", f"At least {PHOTO_SPEED_UP_TARGET}x faster than before: "
              f"{verdict(min(speed_ups) >= PHOTO_SPEED_UP_TARGET)}; within "
              f"{PHOTO_BOUND_RATIO_TARGET}x of the bound: "
              f"{verdict(max(ratios) <= PHOTO_BOUND_RATIO_TARGET)}.", ""]
    return lines


# -- the command --------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", default="90,900,9000",
                        help="test-set sizes for the end-to-end builds, comma-separated")
    parser.add_argument("--out", type=Path, default=here / "results.md", help="results file")
    parser.add_argument("--work", type=Path, default=here.parent / "output" / "bench",
                        help="datasets, model, logs and sites (git-ignored; reused)")
    parser.add_argument("--big-images", type=int, default=1000,
                        help="MobileNetV2 test images (big_models.py)")
    parser.add_argument("--classes", type=int, default=1000, help="classes of the many-class build")
    parser.add_argument("--class-images", type=int, default=2000,
                        help="test images of the many-class build")
    parser.add_argument("--sections", default=",".join(map(str, SECTIONS)),
                        help="sections to measure, comma-separated; a subset replaces only those "
                             "sections of --out (big_models.py and grad_cam_cost.py, which also "
                             "run alone, run only with all of them)")
    args = parser.parse_args(argv)
    args.sizes = sorted({int(size) for size in args.sizes.split(",")})
    args.sections = sorted({int(number) for number in args.sections.split(",")})
    if not set(args.sections) <= set(SECTIONS):
        parser.error(f"--sections: choose from {', '.join(map(str, SECTIONS))}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    wanted = set(args.sections)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    article_data = ensure_dataset(work, ARTICLE_TEST_IMAGES)  # the model and section 1 use it
    datasets = {n: ensure_dataset(work, n) for n in args.sizes}
    model_path = ensure_model(work, article_data)
    split_size = 900 if 900 in args.sizes else max(args.sizes)

    load_before = os.getloadavg()[0]
    builds = ([min((run_build(work, datasets[n], model_path, n, cores)
                    for _ in range(BUILD_REPEATS)), key=lambda r: r.wall_seconds)
               for n in args.sizes] if wanted & {1, 2} else [])
    job_counts = sorted({1, 2, cores})
    jobs_runs = []
    if 5 in wanted:
        tries = [run_build(work, datasets[split_size], model_path, split_size, jobs)
                 for _ in range(BUILD_REPEATS) for jobs in job_counts]
        jobs_runs = [min((r for r in tries if r.jobs == jobs), key=lambda r: r.wall_seconds)
                     for jobs in job_counts]
    sections: dict[int, list[str]] = {}
    if 3 in wanted:
        startup = startup_seconds(model_path)
        log(f"stages on {split_size} images")
        stages = best_stages([measure_stages(work, datasets[split_size], model_path)
                              for _ in range(STAGE_REPEATS)])
        sections[3] = stages_section(stages, startup,
                                     next((r for r in jobs_runs if r.jobs == 1), None))

    if wanted & {1, 2, 4, 5}:
        from reportgen.activations import ActivationProbe
        from reportgen.batches import load_split
        from reportgen.data import scan_dataset
        from reportgen.model import input_spec, load_with_sidecar

        model = load_with_sidecar(model_path).model
        images, _ = load_split(scan_dataset(article_data).test, input_spec(model))
        images /= np.float32(255)  # the article's network takes [0, 1] ("unit")
        probe = ActivationProbe(model)
        _, maps = probe(images)
        palette = drawing.colormap_palette()
        if 1 in wanted:
            drawing_result = measure_drawing(model, probe, images, maps, palette)
            sections[1] = drawing_section(drawing_result, max(builds, key=lambda b: b.images),
                                          len(images))
            lower_bound = drawing_result.lower_bound
        elif 2 in wanted:
            log("the plain lower bound")
            lower_bound = measure_lower_bound(model, [layer.path for layer in probe.layers],
                                              images, palette)
        if 2 in wanted:
            sections[2] = scaling_section(builds, lower_bound.total_ms("palette"))
        if 4 in wanted:
            log("PNG settings")
            sections[4] = png_section(measure_png(maps, palette), len(images))
        if 5 in wanted:
            log("threads")
            sections[5] = jobs_section(jobs_runs, measure_threads(maps, palette, job_counts),
                                       len(maps) * len(images))
    if 6 in wanted:
        sections[6] = photo_section(measure_photo_decoding(ensure_photos(work)))
    load_after = os.getloadavg()[0]

    if wanted != set(SECTIONS):
        note = (f"Measured in a run of section{'s' * (len(wanted) > 1)} "
                f"{', '.join(map(str, sorted(wanted)))} alone (`bench.py --sections`) at commit "
                f"{git_commit()}, the 1-minute load average {load_before:.1f} as it began and "
                f"{load_after:.1f} as it ended (on {cores} cores: above about {cores}, other work "
                "shared them).")
        args.out.write_text(replace_sections(args.out.read_text(), sections, note))
        log(f"updated section(s) {sorted(wanted)} of {args.out}")
        return
    lines = ["# reportgen benchmark", "",
             "Written by `nox -s bench` (`python benchmarks/bench.py`); every number below comes "
             "from one run on this machine:", "", *machine_description(),
             f"- 1-minute load average: {load_before:.1f} as the run began, {load_after:.1f} as it "
             "ended (the benchmark itself keeps one or two cores busy)", ""]
    for number in range(1, 6):
        lines += sections[number]
    lines += ["", *big_models.sections(work / "big", args.big_images, args.classes,
                                       args.class_images)]
    lines += sections[6]
    lines += ["", *grad_cam_cost.sections()]
    lines += ["", *featviz.sections()]
    lines += ["", *pictures.sections()]
    args.out.write_text("\n".join(lines).rstrip() + "\n")
    log(f"wrote {args.out}")


def replace_sections(text: str, sections: dict[int, list[str]], note: str) -> str:
    """``text`` with each numbered section ("## N. ...") replaced, ``note`` under its heading."""
    for number, (heading, *rest) in sorted(sections.items()):
        block = "\n".join([heading, "", note, *rest]).rstrip() + "\n\n"
        text, found = re.subn(rf"^## {number}\. .*?(?=^## |^<!-- |\Z)", lambda _, b=block: b,
                              text, count=1, flags=re.S | re.M)
        if not found:
            raise SystemExit(f"no section {number} to replace: run every section")
    return text.rstrip() + "\n"


if __name__ == "__main__":
    main()
