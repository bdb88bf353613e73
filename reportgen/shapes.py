"""The bundled dataset: hand-drawn-looking circles, squares and triangles.

It stands in for the article's Kaggle drawings (28x28 RGB, 100 per class, split
70 train / 30 test), which we cannot download. Each image gets its own generator
seeded from ``(seed, class index, image index)``, so the same options always give
byte-identical files, and image *k* of a class is the same drawing whatever the
split or the number of images per class.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from reportgen.errors import UserError

CLASS_NAMES = ("circles", "squares", "triangles")
SPLIT_FOLDERS = ("training_set", "test_set")
ARTICLE_SIZE_PX = 28

# Drawing at 8x and box-filtering down gives exact-coverage anti-aliasing.
SUPERSAMPLE = 8
# Fine enough that the corners of a polygon stay sharp until we round them.
POINTS_PER_OUTLINE = 480
# Fixed so that the same pixels always encode to the same bytes.
PNG_SETTINGS = {"format": "PNG", "optimize": False, "compress_level": 9}


def generate(out: Path, per_class: int = 100, test_fraction: float = 0.3, size: int = 28,
             seed: int = 0) -> int:
    """Write out/training_set/<class>/*.png and out/test_set/<class>/*.png.

    Returns the number of files written.
    """
    out = Path(out)
    test_per_class = _test_count(per_class, test_fraction)
    _check_size_and_seed(size, seed)
    _check_target(out)
    # Build next to the target and move in at the end, so that an interrupted
    # run never leaves half a dataset where a whole one is expected. Resolved,
    # so that an --out of "." still gets a sibling rather than a child.
    target = out.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        count = _write_dataset(staging, per_class, test_per_class, size, seed)
        _move_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return count


def draw(class_name: str, rng: np.random.Generator, size: int = 28) -> Image.Image:
    """Draw one wobbly dark outline of ``class_name`` on light paper, as a size x size RGB image."""
    outline = _wobble(OUTLINES[class_name](rng), rng)
    # Scaled with the image, so that --size changes the resolution, not the drawing.
    stroke_width_px = rng.uniform(1.15, 2.35) * size / ARTICLE_SIZE_PX
    canvas_px = size * SUPERSAMPLE
    outline_px = _place(outline, rng, canvas_px, margin_px=stroke_width_px * SUPERSAMPLE)
    coverage = _stroke_coverage(outline_px, rng, canvas_px, stroke_width_px * SUPERSAMPLE)
    coverage = coverage.resize((size, size), Image.Resampling.BOX)
    return _ink_on_paper(np.asarray(coverage, dtype=np.float64) / 255.0, rng)


# -- arguments and the output folder ------------------------------------------------------


def _test_count(per_class: int, test_fraction: float) -> int:
    if per_class < 2:
        raise UserError(f"Need at least 2 images per class (one to train, one to test), got {per_class}.")
    if not 0 < test_fraction < 1:
        raise UserError(f"The test fraction must lie strictly between 0 and 1, got {test_fraction}.")
    test_per_class = round(per_class * test_fraction)
    if not 1 <= test_per_class <= per_class - 1:
        raise UserError(
            f"A test fraction of {test_fraction} of {per_class} images leaves "
            f"{test_per_class} test and {per_class - test_per_class} training images per class; "
            "each needs at least one.")
    return test_per_class


def _check_size_and_seed(size: int, seed: int) -> None:
    if size < 8:
        raise UserError(f"Images must be at least 8 pixels wide, got {size}.")
    # numpy seeds only from non-negative integers.
    if seed < 0:
        raise UserError(f"The seed must be 0 or more, got {seed}.")


def _check_target(out: Path) -> None:
    """Refuse to write into anything but a missing folder, an empty one or an earlier shapes dataset."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder.")
    if out.is_dir() and any(out.iterdir()) and not _is_shapes_dataset(out):
        raise UserError(
            f"{out} is not empty and does not look like a shapes dataset; "
            "choose another --out so that no files get mixed or deleted.")


def _is_shapes_dataset(folder: Path) -> bool:
    """True if every file under the split folders is one we would have written ourselves."""
    split_folders = [folder / name for name in SPLIT_FOLDERS if (folder / name).exists()]
    if not split_folders:
        return False
    for split_folder in split_folders:
        if not split_folder.is_dir():
            return False
        for class_folder in split_folder.iterdir():
            if class_folder.name not in CLASS_NAMES or not class_folder.is_dir():
                return False
            pattern = re.compile(rf"{_singular(class_folder.name)}_\d+\.png")
            if not all(pattern.fullmatch(path.name) and path.is_file()
                       for path in class_folder.iterdir()):
                return False
    return True


def _move_into_place(staging: Path, out: Path) -> None:
    """Swap the freshly drawn split folders in, replacing only the ones an earlier run wrote."""
    if not out.exists():
        staging.rename(out)
        return
    retired = staging / "retired"
    retired.mkdir()
    for split in SPLIT_FOLDERS:
        if (out / split).exists():
            (out / split).rename(retired / split)
        (staging / split).rename(out / split)


def _write_dataset(folder: Path, per_class: int, test_per_class: int, size: int,
                   seed: int) -> int:
    train_per_class = per_class - test_per_class
    digits = max(4, len(str(per_class)))
    count = 0
    for class_index, class_name in enumerate(CLASS_NAMES):
        for split in SPLIT_FOLDERS:
            (folder / split / class_name).mkdir(parents=True)
        for image_index in range(per_class):
            rng = np.random.default_rng([seed, class_index, image_index])
            split = SPLIT_FOLDERS[0] if image_index < train_per_class else SPLIT_FOLDERS[1]
            # Numbered across both splits, so that a name names one drawing.
            name = f"{_singular(class_name)}_{image_index + 1:0{digits}d}.png"
            draw(class_name, rng, size).save(folder / split / class_name / name, **PNG_SETTINGS)
            count += 1
    return count


def _singular(class_name: str) -> str:
    return class_name.removesuffix("s")


# -- the shapes, in unit coordinates centred on the origin --------------------------------
#
# Each returns POINTS_PER_OUTLINE points evenly spaced along a closed outline.
# The variation is what makes the task non-trivial: elliptic circles, rounded
# squares and lopsided triangles sit near each other's borders.


def _circle(rng: np.random.Generator) -> np.ndarray:
    turns = np.linspace(0, 2 * np.pi, POINTS_PER_OUTLINE, endpoint=False)
    aspect = rng.uniform(0.78, 1.0)
    return np.column_stack([np.cos(turns), aspect * np.sin(turns)])


def _square(rng: np.random.Generator) -> np.ndarray:
    aspect = rng.uniform(0.8, 1.0)
    corners = np.array([[-1, -aspect], [1, -aspect], [1, aspect], [-1, aspect]], dtype=float)
    corners += rng.normal(0, 0.055, corners.shape)
    rounding = rng.uniform(0.0, 0.16)
    return _round_corners(_resample_polygon(corners), rounding)


def _triangle(rng: np.random.Generator) -> np.ndarray:
    angles = np.radians(np.array([90, 210, 330]) + rng.normal(0, 10, 3))
    radii = rng.uniform(0.84, 1.1, 3)
    corners = np.column_stack([radii * np.cos(angles), radii * np.sin(angles)])
    rounding = rng.uniform(0.0, 0.11)
    return _round_corners(_resample_polygon(corners), rounding)


OUTLINES = {"circles": _circle, "squares": _square, "triangles": _triangle}


def _resample_polygon(corners: np.ndarray) -> np.ndarray:
    """Points evenly spaced along the closed polygon through ``corners``."""
    closed = np.vstack([corners, corners[:1]])
    edge_lengths = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    distance_at_corner = np.concatenate([[0], np.cumsum(edge_lengths)])
    distance = np.linspace(0, distance_at_corner[-1], POINTS_PER_OUTLINE, endpoint=False)
    return np.column_stack([np.interp(distance, distance_at_corner, closed[:, axis])
                            for axis in (0, 1)])


def _round_corners(outline: np.ndarray, rounding: float) -> np.ndarray:
    """Smooth a closed outline with a circular moving average ``rounding`` of its length wide."""
    window = int(rounding * len(outline))
    if window < 2:
        return outline
    kernel = np.ones(window) / window
    padded = np.vstack([outline[-window:], outline, outline[:window]])
    smoothed = np.column_stack([np.convolve(padded[:, axis], kernel, mode="same")
                                for axis in (0, 1)])
    return smoothed[window:-window]


# -- the hand: wobble, placement, stroke, ink ---------------------------------------------


def _wobble(outline: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Follow the outline the way a hand does: a slow wander, a start and end that don't quite meet.

    The noise is a few low-frequency sinusoids of the position along the stroke,
    so the line bends smoothly instead of jittering from pixel to pixel.
    """
    start = rng.integers(len(outline))
    overshoot = rng.uniform(-0.04, 0.10)
    points = int(round(len(outline) * (1 + overshoot)))
    along = np.arange(points) / len(outline)
    path = outline[(start + np.arange(points)) % len(outline)]
    offset = np.zeros_like(path)
    for frequency in (1, 2, 3, 5):
        amplitude = rng.uniform(0, 0.05) / frequency ** 0.5
        phase = rng.uniform(0, 2 * np.pi, 2)
        offset += amplitude * np.sin(2 * np.pi * frequency * along[:, None] + phase)
    drift = rng.normal(0, 0.04, 2)
    return path + offset + along[:, None] * drift


def _place(outline: np.ndarray, rng: np.random.Generator, canvas_px: int,
           margin_px: float) -> np.ndarray:
    """Rotate, scale and move the outline to a random spot that keeps the stroke on the canvas."""
    angle = rng.uniform(0, 2 * np.pi)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    rotated = outline @ rotation.T
    low, high = rotated.min(axis=0), rotated.max(axis=0)
    usable_px = canvas_px - 2 * margin_px
    extent_px = rng.uniform(0.58, 0.95) * usable_px
    scaled = (rotated - low) * (extent_px / (high - low).max())
    room_px = usable_px - scaled.max(axis=0)
    return scaled + margin_px + rng.uniform(0, 1, 2) * room_px


def _stroke_coverage(outline_px: np.ndarray, rng: np.random.Generator, canvas_px: int,
                     stroke_width_px: float) -> Image.Image:
    """Stamp round brush dabs along the outline; pressure swells and thins the line slowly."""
    along = np.linspace(0, 1, len(outline_px))
    pressure = 1 + rng.uniform(0, 0.3) * np.sin(2 * np.pi * rng.uniform(1, 3) * along
                                                 + rng.uniform(0, 2 * np.pi))
    radii_px = np.maximum(stroke_width_px * pressure / 2, SUPERSAMPLE / 3)
    # Dabs half a radius apart overlap into a smooth edge; closer ones only cost time.
    dabs_px = _evenly_spaced(np.column_stack([outline_px, radii_px]), radii_px.min() / 2)
    coverage = Image.new("L", (canvas_px, canvas_px), 0)
    pen = ImageDraw.Draw(coverage)
    for x, y, radius_px in dabs_px:
        pen.ellipse((x - radius_px, y - radius_px, x + radius_px, y + radius_px), fill=255)
    return coverage


def _evenly_spaced(path: np.ndarray, spacing_px: float) -> np.ndarray:
    """Resample the rows of ``path`` (x, y, then any extra columns) every ``spacing_px`` along x, y."""
    step_lengths = np.linalg.norm(np.diff(path[:, :2], axis=0), axis=1)
    distance_px = np.concatenate([[0], np.cumsum(step_lengths)])
    wanted_px = np.append(np.arange(0, distance_px[-1], spacing_px), distance_px[-1])
    return np.column_stack([np.interp(wanted_px, distance_px, column) for column in path.T])


def _ink_on_paper(coverage: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Mix a dark ink into a light paper colour by how much of each pixel the stroke covers."""
    paper_rgb = rng.uniform(222, 250) + rng.uniform(-5, 5, 3)
    ink_rgb = rng.uniform(15, 85) + rng.uniform(-12, 12, 3)
    pixels = paper_rgb + coverage[..., None] * (ink_rgb - paper_rgb)
    return Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))
