"""Benchmarks of models people actually have: MobileNetV2 at 224x224, and 1,000 classes.

    python benchmarks/big_models.py [--big-images 1000] [--classes 1000] [--class-images 2000]

Run on its own it replaces its section of benchmarks/results.md; `bench.py` also calls
`sections()` for its full run. Builds run as `reportgen build` subprocesses under
/usr/bin/time, so peak memory is the whole process' as a user would see it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SECTION_START, SECTION_END = "<!-- big-models -->", "<!-- /big-models -->"
BATCH = 64
# The bound and the build are measured in turns, this many times each, and each side's best
# is compared: on this shared 2-core VM the same build varies by several seconds between runs
# (more after other runs' writes), so one run of each would compare luck, not code.
TURNS = 2
TIME = "/usr/bin/time"


def write_section(path: Path, start: str, end: str, block: str) -> None:
    """Replace the part of ``path`` (results.md) between the markers ``start`` and ``end`` with
    ``block``, which begins and ends with them; append it if the file has none."""
    text = path.read_text() if path.exists() else ""
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text,
                      flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def log(message: str) -> None:
    print(f"[big-models] {message}", file=sys.stderr, flush=True)


@dataclass
class Build:
    wall_seconds: float
    peak_rss_mb: float
    site_mb: float
    files: int
    pages: int
    biggest_page_kb: float
    drawn_images: int
    layers_shown: str
    batch: str


def photos(folder: Path, classes: list[str], per_class: int, size: tuple[int, int],
           seed: int = 0) -> Path:
    """Noisy one-colour JPEGs (or PNGs for tiny ones) in test_set/<class>/; reused if present."""
    from PIL import Image

    test = folder / "test_set"
    if test.exists():
        return folder
    rng = np.random.default_rng(seed)
    suffix = ".jpg" if min(size) >= 64 else ".png"
    for name in classes:
        (test / name).mkdir(parents=True)
        for i in range(per_class):
            base = rng.integers(0, 255, 3)
            pixels = np.clip(base + rng.normal(0, 40, (*size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(test / name / f"{i:04d}{suffix}")
    return folder


def mobilenet(path: Path, classes: int) -> Path:
    if not path.exists():
        from reportgen.keras_import import keras

        keras.utils.set_random_seed(0)
        keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3),
                                       classes=classes).save(path)
    return path


def small_cnn(path: Path, classes: int) -> Path:
    """A small CNN at 32x32 with many outputs: the classes, not the network, are the load."""
    if not path.exists():
        from reportgen.keras_import import keras

        layers = keras.layers
        keras.utils.set_random_seed(0)
        keras.Sequential([
            keras.Input((32, 32, 3)),
            layers.Conv2D(16, 3, activation="relu", name="conv1"),
            layers.MaxPooling2D(2, name="pool1"),
            layers.Conv2D(32, 3, activation="relu", name="conv2"),
            layers.MaxPooling2D(2, name="pool2"),
            layers.Flatten(),
            layers.Dense(classes, activation="softmax"),
        ], name="many_classes").save(path)
    return path


def forward_pass_seconds(model_path: Path, data: Path) -> float:
    """The lower bound: decoded images through the plain model in batches of 64, best of two."""
    from PIL import Image

    from reportgen.keras_import import keras

    model = keras.saving.load_model(model_path, compile=False)
    files = sorted((data / "test_set").rglob("*.jpg"))
    images = np.stack([np.asarray(Image.open(f).convert("RGB").resize((224, 224)), np.float32)
                       / 255.0 for f in files])
    model.predict_on_batch(images[:BATCH])  # trace once, as a build does
    runs = []
    for _ in range(2):
        started = time.perf_counter()
        for start in range(0, len(images), BATCH):
            model.predict_on_batch(images[start:start + BATCH])
        runs.append(time.perf_counter() - started)
    return min(runs)


def build(model: Path, data: Path, site: Path) -> Build:
    command = [TIME, "-v", sys.executable, "-m", "reportgen", "build", "--model", str(model),
               "--data", str(data), "--out", str(site)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)[1])
    sizes = [p.stat().st_size for p in site.rglob("*") if p.is_file()]
    pages = [p.stat().st_size for p in site.rglob("*.html")]
    report = json.loads((site / "report.json").read_text())
    shown = re.search(r"(\d+ of \d+) feature-map layers", result.stderr)
    batch = re.search(r"Batches of (\d+)", result.stderr)
    return Build(wall_seconds=wall, peak_rss_mb=peak_kb / 1000, site_mb=sum(sizes) / 1e6,
                 files=len(sizes), pages=len(pages), biggest_page_kb=max(pages) / 1000,
                 drawn_images=report["drawing"]["drawn_images"],
                 layers_shown=shown[1] if shown else "?", batch=batch[1] if batch else "?")


def sections(work: Path, big_images: int, classes: int, class_images: int) -> list[str]:
    work.mkdir(parents=True, exist_ok=True)
    per_class = max(1, big_images // 3)
    data = photos(work / f"photos-{per_class * 3}", ["cats", "dogs", "owls"], per_class,
                  (240, 300))
    model = mobilenet(work / "mobilenetv2-224.keras", 3)
    log(f"MobileNetV2 over {per_class * 3} images")
    lowers, builds = [], []
    for _ in range(TURNS):
        os.sync()  # the previous run's writes are not flushed during this one
        lowers.append(forward_pass_seconds(model, data))
        shutil.rmtree(work / "site-mobilenet", ignore_errors=True)  # a fresh --out, untimed
        os.sync()
        builds.append(build(model, data, work / "site-mobilenet"))
    lower = min(lowers)
    big = min(builds, key=lambda b: b.wall_seconds)
    n = per_class * 3

    def each(seconds: list[float]) -> str:
        return ", ".join(f"{s / n * 1000:.1f}" for s in seconds)
    lines = [SECTION_START, "", "## Models people have: MobileNetV2 at 224×224", "",
             f"`keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3), "
             f"classes=3)` over {n} generated 240×300 JPEGs, default options "
             "(`--memory-budget 2000`, `--max-site-mb 1000`, `--max-channels 64`).", "",
             "| measure | value |", "|---|---|",
             f"| plain batched forward pass (lower bound), ms per image: best of {TURNS} "
             f"({each(lowers)}) | {lower / n * 1000:.1f} |",
             f"| `reportgen build`, ms per image (start-up included): best of {TURNS} "
             f"({each([b.wall_seconds for b in builds])}), taking turns with the bound | "
             f"{big.wall_seconds / n * 1000:.1f} |",
             f"| build ÷ lower bound (target ≤ 3) | {big.wall_seconds / lower:.2f} |",
             f"| peak memory (max RSS) | {big.peak_rss_mb:,.0f} MB |",
             f"| batch chosen by the memory plan | {big.batch} |",
             f"| layers shown | {big.layers_shown} |",
             f"| site | {big.site_mb:,.1f} MB in {big.files:,} files, {big.pages:,} pages |",
             f"| images with feature maps | {big.drawn_images} of {n} |",
             f"| biggest page | {big.biggest_page_kb:,.0f} kB of HTML |", ""]
    per = max(1, class_images // classes)
    names = [f"class-{i:04d}" for i in range(classes)]
    log(f"{classes} classes over {per * classes} images")
    many = build(small_cnn(work / f"cnn-{classes}.keras", classes),
                 photos(work / f"classes-{classes}x{per}", names, per, (32, 32)),
                 work / "site-classes")
    lines += [f"## {classes:,} classes over {per * classes:,} images", "",
              "A small CNN at 32×32 (two convolutions and poolings) with a "
              f"{classes:,}-way softmax, untrained, so mistakes are everywhere.", "",
              "| measure | value |", "|---|---|",
              f"| build, wall | {many.wall_seconds:.1f} s |",
              f"| pages (target < 6,000) | {many.pages:,} |",
              f"| files | {many.files:,} |",
              f"| site | {many.site_mb:,.1f} MB |",
              f"| biggest page | {many.biggest_page_kb:,.0f} kB of HTML |",
              f"| peak memory | {many.peak_rss_mb:,.0f} MB |", "", SECTION_END]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big-images", type=int, default=1000, help="MobileNetV2 test images")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--class-images", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    parser.add_argument("--work", type=Path, default=HERE.parent / "output" / "bench-big")
    args = parser.parse_args(argv)
    lines = sections(args.work.resolve(), args.big_images, args.classes, args.class_images)
    write_section(args.out, SECTION_START, SECTION_END, "\n".join(lines))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
