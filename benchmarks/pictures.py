"""Input pictures and Grad-CAM overlays of photo-sized inputs: PNG against JPEG settings.

    python benchmarks/pictures.py [--images 32] [--cpu-images 300] [--out benchmarks/results.md]

Run on its own it replaces its section of benchmarks/results.md; `bench.py` also calls
`sections()` for its full run. The pictures are what a MobileNetV2 build at 224x224 writes
for each test image: the input as the model saw it and its Grad-CAM overlay (a 7x7 map
stretched over it), for the big-models benchmark's noisy one-colour photos and for the
tests' photo-like pictures (gradients, sensor noise, hard-edged shapes). Each way is timed
over the same pictures, best of ``REPEATS``; the error is against the exact pixels. It also
measures the CPU time per test image of the first pass's reading (decode and resize) and of its
input picture and overlays, with the parts each spends its time in.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from generated_photos import photo_like  # noqa: E402  (the tests' helper module)

SECTION_START, SECTION_END = "<!-- pictures -->", "<!-- /pictures -->"
SIZE_PX = 224
CAM_PX = 7  # MobileNetV2's last feature map at 224x224
REPEATS = 5
QUALITIES = (85, 90, 95)
SUBSAMPLINGS = ("4:4:4", "4:2:0")


def log(message: str) -> None:
    print(f"[pictures] {message}", file=sys.stderr, flush=True)


def noisy_photos(count: int, seed: int = 0) -> np.ndarray:
    """As benchmarks/big_models.py draws its MobileNetV2 test set (one colour plus noise, saved
    as JPEG with Pillow's defaults), then decoded as a build reads them."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    decoded = []
    for _ in range(count):
        pixels = np.clip(rng.integers(0, 255, 3) + rng.normal(0, 40, (SIZE_PX, SIZE_PX, 3)),
                         0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG")
        decoded.append(np.asarray(Image.open(buffer), np.float32))
    return np.stack(decoded)


def photo_like_photos(count: int) -> np.ndarray:
    return np.stack([np.asarray(photo_like(SIZE_PX, SIZE_PX, seed=seed), np.float32)
                     for seed in range(count)])


@dataclass(frozen=True)
class Way:
    name: str
    encode: Callable[[np.ndarray], bytes]  # uint8 pixels -> file bytes


def ways() -> list[Way]:
    from PIL import Image

    from reportgen import drawing

    def jpeg(quality: int, subsampling: str) -> Callable[[np.ndarray], bytes]:
        def encode(pixels: np.ndarray) -> bytes:
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality,
                                         subsampling=subsampling)
            return buffer.getvalue()
        return encode

    found = [Way("PNG (`encode_png`, as today)", drawing.encode_png)]
    for quality in QUALITIES:
        for subsampling in SUBSAMPLINGS:
            chosen = (quality, subsampling) == (drawing.JPEG_QUALITY, drawing.JPEG_SUBSAMPLING)
            found.append(Way(f"JPEG quality {quality}, {subsampling}" + (" **(chosen)**" * chosen),
                             jpeg(quality, subsampling)))
    return found


@dataclass(frozen=True)
class Row:
    photos: str
    picture: str
    way: str
    ms: float  # encoding, per picture
    kb: float  # per picture
    mean_error: float  # 0-255 levels, all channels
    p99_error: float


def measure(photos: str, picture: str, pixels: np.ndarray, way: Way) -> Row:
    from PIL import Image

    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        encoded = [way.encode(one) for one in pixels]
        best = min(best, time.perf_counter() - started)
    decoded = np.stack([np.asarray(Image.open(io.BytesIO(data))) for data in encoded])
    error = np.abs(decoded.astype(np.int16) - pixels)
    return Row(photos, picture, way.name, best / len(pixels) * 1e3,
               sum(map(len, encoded)) / len(pixels) / 1e3, float(error.mean()),
               float(np.percentile(error, 99)))


def overlay_pixels(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """The overlays' uint8 pixels, as overlays.overlay_picture blends them."""
    from reportgen import overlays

    rng = np.random.default_rng(seed)
    cams = rng.random((len(images), CAM_PX, CAM_PX)).astype(np.float32)
    return np.stack([overlays.overlay_pixels(image, cam)
                     for image, cam in zip(images, cams, strict=True)])


def picture_functions_ms(images: np.ndarray) -> dict[str, float]:
    """ms per picture of the build's own functions (blending included), PNG against the chosen
    JPEG: what the first pass spends per input picture and per overlay."""
    from reportgen import drawing, overlays

    cam = np.random.default_rng(0).random((CAM_PX, CAM_PX)).astype(np.float32)
    times = {}
    for picture_format in ("png", "jpeg"):
        for name, draw in (("input", lambda image, f=picture_format: drawing.input_picture(image, f)),
                           ("overlay", lambda image, f=picture_format:
                            overlays.overlay_picture(image, cam, f))):
            times[f"{name} {picture_format}"] = best_ms(draw, images, time.perf_counter,
                                                        REPEATS)
    return times


PHOTO_SIZE = (240, 300)  # big_models.py's MobileNetV2 test photos, height x width
CPU_REPEATS = 3
DECODE_BATCH = 64  # about what the memory plan picks for MobileNetV2 at 224x224


def best_ms(run: Callable[[object], object], items: list, clock: Callable[[], float],
            repeats: int) -> float:
    """ms per item by ``clock``, the best of ``repeats`` passes over ``items``."""
    best = float("inf")
    for _ in range(repeats):
        started = clock()
        for item in items:
            run(item)
        best = min(best, clock() - started)
    return best / len(items) * 1e3


def cpu_ms(run: Callable[[object], object], items: list) -> float:
    """CPU ms per item (time.process_time, this process), best of CPU_REPEATS passes."""
    return best_ms(run, items, time.process_time, CPU_REPEATS)


def first_pass_cpu(count: int) -> list[tuple[str, float, float]]:
    """(stage or part, CPU ms per test image, share of its stage) of the first pass's two
    per-image CPU costs of a MobileNetV2 build at 224x224 on big_models.py's 240x300 JPEGs:
    reading an image ("decode") and drawing its input picture and two overlays ("draw inputs",
    a mistaken image), each with the parts its functions spend their time in."""
    import tempfile

    from big_models import photos
    from PIL import Image

    from reportgen import batches, data, decode, drawing, overlays
    from reportgen.resize import resize_pixels

    spec = decode.InputSpec(SIZE_PX, SIZE_PX, 3)
    with tempfile.TemporaryDirectory() as folder:
        split = data.scan_dataset(photos(Path(folder), ["photos"], count, PHOTO_SIZE)).test
        # As the first pass reads them: a batch at a time, so the allocator keeps the pages
        # (an image at a time, glibc hands the freed memory back and page-faults it in again).
        read = cpu_ms(lambda _: sum(1 for _ in batches.iter_batches(split, spec, DECODE_BATCH)),
                      [None]) / count
        images = list(np.concatenate([batch.images for batch in
                                      batches.iter_batches(split, spec, DECODE_BATCH)]))
        decoded = []
        for record in split.images:
            with Image.open(split.root / record.path) as photo:
                decoded.append(np.asarray(photo))
    resize = cpu_ms(lambda values: resize_pixels(values, SIZE_PX, SIZE_PX), decoded)
    rng = np.random.default_rng(0)
    cams = {id(image): rng.random((2, CAM_PX, CAM_PX)).astype(np.float32) for image in images}

    def draw(image: np.ndarray) -> None:
        drawing.input_picture(image, "jpeg")
        for cam in cams[id(image)]:
            overlays.overlay_picture(image, cam, "jpeg")

    def stretch_and_blend(image: np.ndarray) -> None:
        for cam in cams[id(image)]:
            overlays.overlay_pixels(image, cam)

    drawn = cpu_ms(draw, images)
    encoded = [drawing._input_pixels(image) for image in images]
    encoding = 3 * cpu_ms(drawing.encode_jpeg, encoded)
    blending = cpu_ms(stretch_and_blend, images)
    return [("decode (`batches.iter_batches`: `read_image` into a batch's rows)", read, 1.0),
            ("… of which the resize to 224×224 (`resize.resize_pixels`)", resize, resize / read),
            ("draw inputs (an input picture and two overlays, JPEG)", drawn, 1.0),
            ("… of which JPEG encoding (three pictures)", encoding, encoding / drawn),
            ("… of which stretching, levels and blending (two overlays)", blending,
             blending / drawn)]


def sections(images: int = 32, cpu_images: int = 300) -> list[str]:
    from reportgen import drawing

    load_before = os.getloadavg()[0]
    log(f"the first pass's CPU per image over {cpu_images} photos")
    cpu = first_pass_cpu(cpu_images)
    rows = []
    functions = {}
    for photos, make in (("noisy one-colour (big_models.py)", noisy_photos),
                         ("photo-like (tests/generated_photos.py)", photo_like_photos)):
        inputs = make(images)
        log(f"{photos}: {images} inputs and overlays at {SIZE_PX}x{SIZE_PX}")
        pictures = {"input": np.clip(inputs + 0.5, 0, 255).astype(np.uint8),
                    "overlay": overlay_pixels(inputs)}
        for picture, pixels in pictures.items():
            rows += [measure(photos, picture, pixels, way) for way in ways()]
        functions[photos] = picture_functions_ms(inputs)
    table = [f"| {r.photos} | {r.picture} | {r.way} | {r.ms:.2f} | {r.kb:.1f} | "
             f"{r.mean_error:.2f} | {r.p99_error:.0f} |" for r in rows]
    per_image = [f"| {photos} | {t['input png'] + 2 * t['overlay png']:.1f} | "
                 f"{t['input jpeg'] + 2 * t['overlay jpeg']:.1f} |"
                 for photos, t in functions.items()]
    return [
        SECTION_START, "",
        f"## Input pictures and Grad-CAM overlays at {SIZE_PX}×{SIZE_PX}: PNG or JPEG",
        "",
        f"`python benchmarks/pictures.py`: {images} pictures of each kind, each way timed over "
        f"the same pictures, best of {REPEATS}; error in 0–255 levels against the exact pixels "
        "(all channels). An overlay is its input blended half and half with a random "
        f"{CAM_PX}×{CAM_PX} Grad-CAM map in turbo colours, as `overlays.overlay_picture` draws it.",
        "",
        "| photos | picture | encoding | ms per picture | kB per picture | mean error | "
        "99th percentile error |",
        "|---|---|---|---|---|---|---|",
        *table,
        "",
        "Per test image of an untrained model (every image a mistake: its input and two "
        "overlays), the build's own picture functions, blending included:",
        "",
        "| photos | PNG ms per image | JPEG ms per image (chosen settings) |",
        "|---|---|---|",
        *per_image,
        "",
        f"The first pass's two CPU costs per test image that these pictures belong to, on "
        f"{cpu_images} of big_models.py's {PHOTO_SIZE[0]}×{PHOTO_SIZE[1]} JPEGs read for a "
        f"{SIZE_PX}×{SIZE_PX} model (`time.process_time`, one thread, best of {CPU_REPEATS} "
        "passes; a part's share is of its stage's row, each part timed on its own):",
        "",
        "| stage, part | CPU ms per image | share |",
        "|---|---|---|",
        *[f"| {name} | {ms:.2f} | {share:.0%} |" for name, ms, share in cpu],
        "",
        f"`--pictures auto` writes JPEG quality {drawing.JPEG_QUALITY}, {drawing.JPEG_SUBSAMPLING} "
        f"from a {drawing.JPEG_MIN_SIDE_PX}-pixel shorter side (the guide's *Input pictures and "
        f"overlays*, docs/drawing.md, says why). 1-minute load average {load_before:.1f} as this "
        f"section began and {os.getloadavg()[0]:.1f} as it ended, on {os.cpu_count()} cores.",
        "", SECTION_END]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--cpu-images", type=int, default=300,
                        help="photos for the first pass's CPU per image")
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    args = parser.parse_args(argv)
    from big_models import write_section

    write_section(args.out, SECTION_START, SECTION_END, "\n".join(sections(args.images, args.cpu_images)))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
