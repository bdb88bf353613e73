"""Read and validate an image folder laid out the Keras way.

``<root>/training_set/<class>/*`` and ``<root>/test_set/<class>/*``; classes
sorted by name give the label indices. Every file is decoded once while
scanning, so anything that would fail later is listed as skipped, with a
reason, before the slow work starts. Numpy and Pillow only: no TensorFlow here.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from reportgen.errors import UserError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif"})
# Below Pillow's own bomb limit (~89 million pixels) so that our check, which
# knows the size, answers first; 40 million RGB pixels already decode to 120 MB.
MAX_IMAGE_PIXELS = 40_000_000

TRAIN_FOLDER = "training_set"
TEST_FOLDER = "test_set"

# Only the decoders the suffixes promise: Pillow would otherwise also sniff
# formats such as EPS, whose decoder runs Ghostscript.
PILLOW_FORMATS = ("PNG", "JPEG", "BMP", "GIF")
# Operating-system litter that nobody put there on purpose (hidden names too).
IGNORED_NAMES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini", "__macosx"})
# Full-scale value of each high-bit-depth mode; Pillow's own convert("L")
# clips these at 255, which would turn a 16-bit mid-grey white.
HIGH_DEPTH_FULL_SCALE = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535,
                         "I": 65535, "F": 1.0}
GREYSCALE_MODES = frozenset({"1", "L", "LA", "La"})
ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
LUMINANCE_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2, as Pillow's "L"

RESOURCE_FORK = "macOS resource fork, not an image"
OUTSIDE_SYMLINK = "symlink pointing outside the data folder"


# How an image of another size becomes the model's size, as Keras' image utilities do it:
# "stretch" is tf.image.resize (image_dataset_from_directory's default), "crop" first cuts
# the centre to the model's aspect ratio (crop_to_aspect_ratio=True), "pad" first pads
# with black to it (keras.ops.image.resize(pad_to_aspect_ratio=True)). All bilinear.
RESIZE_METHODS = ("stretch", "crop", "pad")


@dataclass(frozen=True)
class InputSpec:
    """What the model takes: one image is (height, width, channels), reached by ``resize``."""

    height: int
    width: int
    channels: int  # 1 (grayscale) or 3 (RGB)
    resize: str = "stretch"

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1 or self.channels not in (1, 3):
            raise ValueError(f"Unusable {self}: needs a positive size and 1 or 3 channels.")
        if self.resize not in RESIZE_METHODS:
            raise ValueError(f"Unknown resize method {self.resize!r}: one of {RESIZE_METHODS}.")

    @property
    def color_mode(self) -> str:
        return "grayscale" if self.channels == 1 else "rgb"


@dataclass(frozen=True)
class ImageRecord:
    path: str  # relative to the split folder, POSIX, e.g. "circles/circle_0001.png"
    label: int
    class_name: str


@dataclass(frozen=True)
class SkippedFile:
    path: str  # relative to the data folder, POSIX, e.g. "test_set/circles/bad.png"
    reason: str  # one short sentence, no final full stop


@dataclass(frozen=True)
class Split:
    root: Path
    class_names: tuple[str, ...]
    images: tuple[ImageRecord, ...]  # sorted by (label, path)
    skipped: tuple[SkippedFile, ...]  # sorted by path
    empty_classes: tuple[str, ...]  # class folders with no readable image


@dataclass(frozen=True)
class Dataset:
    root: Path
    class_names: tuple[str, ...]
    train: Split | None
    test: Split

    @property
    def skipped(self) -> tuple[SkippedFile, ...]:
        return (self.train.skipped if self.train else ()) + self.test.skipped


# eq=False: the generated __eq__ and __hash__ would choke on the array.
@dataclass(frozen=True, eq=False)
class Batch:
    images: np.ndarray  # (n, height, width, channels) float32 pixels in [0, 255], resized
    records: tuple[ImageRecord, ...]


class _Unusable(Exception):
    """An image we refuse on purpose; the message is the reason."""


# --- Scanning folders -------------------------------------------------------


def scan_dataset(root: Path, *, require_train: bool = False, scan_train: bool = True) -> Dataset:
    """Scan ``root/training_set`` (optional unless require_train) and ``root/test_set``.

    scan_train=False skips training_set/ altogether: a report on a given model
    reads only the test images.
    """
    root = Path(root)
    if not root.exists():
        raise UserError(f"Data folder {root} does not exist.")
    if not root.is_dir():
        raise UserError(f"Data folder {root} is not a folder.")
    train_root, test_root = root / TRAIN_FOLDER, root / TEST_FOLDER
    if not test_root.is_dir():
        raise UserError(f"Data folder {root} has no {TEST_FOLDER}/ folder of class folders.")
    if require_train and not train_root.is_dir():
        raise UserError(f"Data folder {root} has no {TRAIN_FOLDER}/ folder of class folders.")

    train = scan_split(train_root, relative_to=root) \
        if train_root.is_dir() and (scan_train or require_train) else None
    if train is not None:
        _require_same_classes(_class_folders(test_root), train.class_names, test_root,
                              expected_from=f"{TRAIN_FOLDER}/")
    test = scan_split(test_root, train.class_names if train else None, relative_to=root)
    _require_images(test, root)
    if train is not None and require_train:
        _require_images(train, root)
    return Dataset(root=root, class_names=test.class_names, train=train, test=test)


def scan_split(split_root: Path, class_names: Sequence[str] | None = None, *,
               relative_to: Path | None = None) -> Split:
    """Check every file under split_root; unusable ones are listed as skipped, never raised.

    class_names, when given, fixes the label order (a trained model's classes)
    and must match the class folders. relative_to is the data folder: skipped
    paths are reported relative to it and symlinks must stay inside it. It
    defaults to split_root.
    """
    split_root = Path(split_root)
    data_root = split_root if relative_to is None else Path(relative_to)
    if not split_root.is_dir():
        raise UserError(f"Image folder {split_root} does not exist or is not a folder.")
    class_names = _label_order(split_root, class_names)
    images, skipped = _scan_files(split_root, class_names, data_root)
    used_labels = {record.label for record in images}
    empty = tuple(name for label, name in enumerate(class_names) if label not in used_labels)
    return Split(root=split_root, class_names=class_names,
                 images=tuple(sorted(images, key=lambda record: (record.label, record.path))),
                 skipped=tuple(sorted(skipped, key=lambda skip: skip.path)),
                 empty_classes=empty)


def _label_order(split_root: Path, class_names: Sequence[str] | None) -> tuple[str, ...]:
    found = _class_folders(split_root)
    if class_names is None:
        return found
    if len(set(class_names)) != len(class_names):
        raise ValueError(f"Duplicate class names in {class_names}.")
    _require_same_classes(found, class_names, split_root, expected_from="the given class names")
    return tuple(class_names)


def _scan_files(split_root: Path, class_names: tuple[str, ...],
                data_root: Path) -> tuple[list[ImageRecord], list[SkippedFile]]:
    boundary = data_root.resolve()
    images: list[ImageRecord] = []
    skipped: list[SkippedFile] = []
    for loose_path in _loose_files(split_root):
        for path, reason in _candidates(loose_path, boundary, frozenset()):
            skipped.append(SkippedFile(_display_path(path, data_root),
                                       reason or "not inside a class folder"))
    for label, class_name in enumerate(class_names):
        for path, reason in _candidates(split_root / class_name, boundary, frozenset()):
            reason = reason or check_image(path)
            if reason:
                skipped.append(SkippedFile(_display_path(path, data_root), reason))
            else:
                relative_path = path.relative_to(split_root).as_posix()
                images.append(ImageRecord(relative_path, label, class_name))
    return images, skipped


def _class_folders(split_root: Path) -> tuple[str, ...]:
    """Names of the class folders, sorted the same way on every machine."""
    names = sorted(entry.name for entry in _entries(split_root)
                   if entry.is_dir() and not _is_ignored(entry.name))
    if not names:
        raise UserError(f"Image folder {split_root} has no class folders "
                        "(one subfolder per class).")
    for name in names:
        if not _is_utf8(name):
            raise UserError(f"Class folder {_printable(name)!r} in {split_root} "
                            "is not valid UTF-8.")
    return tuple(names)


def _loose_files(split_root: Path) -> list[Path]:
    return sorted(Path(entry.path) for entry in _entries(split_root) if not entry.is_dir())


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError as error:
        raise UserError(f"Cannot read image folder {folder}: {error.strerror}.") from error


def _require_same_classes(found: Sequence[str], expected: Sequence[str], split_root: Path, *,
                          expected_from: str) -> None:
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or unexpected:
        raise UserError(f"Class folders in {split_root} differ from {expected_from}: "
                        f"missing {missing}, unexpected {unexpected}.")


def _require_images(split: Split, data_root: Path) -> None:
    if split.images:
        return
    if not split.skipped:
        raise UserError(f"Image folder {split.root} has no image files.")
    first = split.skipped[0]
    raise UserError(f"Image folder {split.root} has no readable image: {len(split.skipped)} "
                    f"files skipped, e.g. {data_root / first.path} ({first.reason}).")


def _candidates(path: Path, boundary: Path,
                ancestors: frozenset[Path]) -> Iterator[tuple[Path, str | None]]:
    """path and every file below it, sorted, each with why it is unusable (None: decode it).

    ancestors holds the real paths of the folders above, to stop at symlink loops.
    """
    name = path.name
    if _is_resource_fork(name):
        yield path, RESOURCE_FORK
        return
    if _is_ignored(name):
        return
    if not _is_utf8(name):
        yield path, "file name is not valid UTF-8"
        return
    try:
        real = path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop, before Python 3.13
        yield path, "symlink loop"
        return
    # Every path, not only symlinks: a symlinked split folder leads outside too.
    if not real.is_relative_to(boundary):
        yield path, OUTSIDE_SYMLINK
    elif path.is_symlink() and not path.exists():
        yield path, "broken symlink"
    elif path.is_dir():
        yield from _folder_candidates(path, real, boundary, ancestors)
    elif not path.is_file():
        yield path, "not a regular file"
    elif path.suffix.lower() not in IMAGE_SUFFIXES:
        yield path, f"not an image file ({path.suffix or 'no extension'})"
    else:
        yield path, None


def _folder_candidates(folder: Path, real: Path, boundary: Path,
                       ancestors: frozenset[Path]) -> Iterator[tuple[Path, str | None]]:
    if real in ancestors:
        yield folder, "symlink loop"
        return
    try:
        names = sorted(os.listdir(folder))
    except OSError as error:
        yield folder, f"folder cannot be read ({error.strerror or 'unknown error'})"
        return
    for name in names:
        yield from _candidates(folder / name, boundary, ancestors | {real})


def _is_resource_fork(name: str) -> bool:
    # AppleDouble files ("._photo.png") look like images in a file list, so we
    # say why they are left out instead of hiding them with the other litter.
    return name.startswith("._") and Path(name).suffix.lower() in IMAGE_SUFFIXES


def _is_ignored(name: str) -> bool:
    return name.startswith(".") or name.lower() in IGNORED_NAMES


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes, kept by Python as surrogates
        return False
    return True


def _printable(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _display_path(path: Path, data_root: Path) -> str:
    return _printable(path.relative_to(data_root).as_posix())


# --- Decoding one image -----------------------------------------------------


def check_image(path: Path) -> str | None:
    """None if load_image will read path, else why not (one short sentence)."""
    try:
        with _open_image(path) as image:
            image.verify()  # catches damage a lenient decoder lets through (missing PNG end)
        _decode(path)
    # Pillow's decoders raise many exception types on hostile bytes
    # (ValueError, struct.error, IndexError, ...); every one means "unusable".
    except Exception as error:
        return _reason(error)
    return None


def load_image(path: Path, spec: InputSpec) -> np.ndarray:
    """The image as the model sees it before preprocessing: (h, w, c) float32 pixels in [0, 255].

    Pixels stay 0-255 (what Keras' image_dataset_from_directory yields); scaling them
    to the model's input range is the input contract's job (``reportgen.inputs``).
    """
    try:
        image = _decode(path)
    except Exception as error:  # as in check_image
        raise UserError(f"Cannot read image {path}: {_reason(error)}.") from error
    if spec.channels == 1 and image.mode == "RGB":
        # Pillow's own 8-bit grey, as keras.utils.load_img(color_mode="grayscale") gives.
        image = image.convert("L")
    values = np.asarray(image)
    if values.ndim == 2:
        values = values[..., np.newaxis]
    pixels = resize_pixels(values, spec.height, spec.width, spec.resize,
                           to_float=lambda v: _to_pixels(v, image.mode))
    return _match_channels(pixels, spec.channels)


def resize_pixels(values: np.ndarray, height: int, width: int, method: str = "stretch",
                  to_float=None) -> np.ndarray:
    """(h, w, c) -> (height, width, c) float32, bilinear with half-pixel centres, as Keras.

    The same arithmetic as tf.image.resize(antialias=False), which Keras' resize and
    image_dataset_from_directory call; "crop" and "pad" reach the target aspect ratio
    first exactly as keras.ops.image.resize does. Only the two source rows and columns
    each output pixel needs are gathered (and converted by ``to_float``) before any
    float arithmetic, so a large photo never exists as float32.
    """
    to_float = to_float or (lambda v: v.astype(np.float32))
    source_height, source_width = values.shape[:2]
    rows = _axis_samples(source_height, height, *_canvas(source_height, source_width, height,
                                                         width, method))
    columns = _axis_samples(source_width, width, *_canvas(source_width, source_height, width,
                                                          height, method))
    (row_index, row_inside, row_lerp), (column_index, column_inside, column_lerp) = rows, columns
    gathered = to_float(values[row_index][:, column_index])
    # Pad mode: samples that fall outside the image read the fill value, black.
    gathered = gathered * (row_inside[:, None, None] & column_inside[None, :, None])
    top, bottom = gathered[:height], gathered[height:]
    column_lerp = column_lerp[None, :, None]
    top = top[:, :width] + (top[:, width:] - top[:, :width]) * column_lerp
    bottom = bottom[:, :width] + (bottom[:, width:] - bottom[:, :width]) * column_lerp
    return (top + (bottom - top) * row_lerp[:, None, None]).astype(np.float32)


def _canvas(size: int, other_size: int, target: int, other_target: int,
            method: str) -> tuple[int, int]:
    """(first source index, length) of the stretch of one axis that is resized to ``target``.

    Keras' formulas, in its own integer arithmetic (keras.ops.image.resize).
    """
    if method == "crop":
        crop = max(min(size, int(float(other_size * target) / other_target)), 1)
        return int(float(size - crop) / 2), crop
    if method == "pad":
        padded = max(size, int(float(other_size * target) / other_target))
        start = int(float(padded - size) / 2)
        return -start, size + 2 * start  # Keras pads both sides by the same amount
    return 0, size


def _axis_samples(size: int, target: int, start: int, length: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (lower then upper, 2 x target), which are inside the image, and lerps.

    tf.image.resize's compute_interpolation_weights with half-pixel centres, in float32.
    """
    scale = np.float32(length) / np.float32(target)
    centres = (np.arange(target, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(centres)
    lower = np.maximum(floor, 0).astype(np.int64)
    upper = np.minimum(np.ceil(centres), length - 1).astype(np.int64)
    canvas = np.concatenate([lower, upper]) + start
    inside = (canvas >= 0) & (canvas < size)
    return np.clip(canvas, 0, size - 1), inside, (centres - floor).astype(np.float32)


@contextmanager
def _open_image(path: Path) -> Iterator[ImageFile.ImageFile]:
    """Open path with decompression bombs refused and Pillow's other warnings muted."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise _Unusable("empty file")
    with warnings.catch_warnings():
        # Pillow warns about cosmetic damage (corrupt EXIF and the like) that
        # does not stop decoding; whether an image is usable is decided here.
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path, formats=PILLOW_FORMATS) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise _Unusable(f"image too large ({width}x{height} pixels)")
            yield image


def _decode(path: Path) -> Image.Image:
    """Every pixel decoded and upright, as L, LA, RGB, RGBA or (high bit depth) F in [0, 1]."""
    with _open_image(path) as image:
        upright = ImageOps.exif_transpose(image)  # decodes too (a GIF's first frame)
        if upright.mode in HIGH_DEPTH_FULL_SCALE:
            return _high_depth_to_unit(upright)
        greyscale = upright.mode in GREYSCALE_MODES
        if upright.mode in ALPHA_MODES or "transparency" in upright.info:
            return upright.convert("LA" if greyscale else "RGBA")
        return upright.convert("L" if greyscale else "RGB")


def _high_depth_to_unit(image: Image.Image) -> Image.Image:
    values = np.asarray(image).astype(np.float32)
    unit = np.clip(np.nan_to_num(values / HIGH_DEPTH_FULL_SCALE[image.mode]), 0.0, 1.0)
    transparent_value = image.info.get("transparency")
    if isinstance(transparent_value, int):
        unit[values == transparent_value] = 1.0  # white, as for 8-bit images
    return Image.fromarray(unit)


def _to_pixels(values: np.ndarray, mode: str) -> np.ndarray:
    """Decoded values (.., 1-4) -> float32 pixels in [0, 255], transparency laid on white."""
    if mode == "F":  # high bit depth, already scaled to [0, 1] by _high_depth_to_unit
        return values.astype(np.float32) * np.float32(255)
    pixels = values.astype(np.float32)
    if mode in ("L", "RGB"):
        return pixels
    colour, alpha = pixels[..., :-1], pixels[..., -1:] / np.float32(255)
    # On white, so that dark strokes on a transparent background stay visible.
    return colour * alpha + np.float32(255) * (1.0 - alpha)


def _match_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    if pixels.shape[-1] == channels:
        return pixels
    if channels == 3:
        return np.repeat(pixels, 3, axis=-1)
    return (pixels @ LUMINANCE_WEIGHTS)[..., np.newaxis]


def _reason(error: Exception) -> str:
    """One short sentence for a user, from whatever Pillow or the OS raised."""
    message = str(error).strip()
    if isinstance(error, _Unusable):
        return message
    if isinstance(error, Image.DecompressionBombError | Image.DecompressionBombWarning):
        return "image too large (Pillow refuses it as a possible decompression bomb)"
    if isinstance(error, UnidentifiedImageError):
        return "not a PNG, JPEG, BMP or GIF image Pillow can read"
    if isinstance(error, FileNotFoundError):
        return "file not found"
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, EOFError) or "truncated" in message.lower():
        return "truncated image data"
    detail = message.splitlines()[0][:80] if message else type(error).__name__
    return f"damaged image data ({_printable(detail)})"


# --- Batches ----------------------------------------------------------------


def iter_batches(split: Split, spec: InputSpec, batch_size: int) -> Iterator[Batch]:
    """The split's images in its sorted order, one batch in memory at a time."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}.")
    return _batches(split, spec, batch_size)


def _batches(split: Split, spec: InputSpec, batch_size: int) -> Iterator[Batch]:
    for start in range(0, len(split.images), batch_size):
        records = split.images[start:start + batch_size]
        yield Batch(_load_records(split.root, records, spec), records)


def load_split(split: Split, spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """All images (n, h, w, c) float32 and their int64 labels: for small training sets."""
    labels = np.array([record.label for record in split.images], np.int64)
    return _load_records(split.root, split.images, spec), labels


def _load_records(split_root: Path, records: Sequence[ImageRecord], spec: InputSpec) -> np.ndarray:
    images = np.empty((len(records), spec.height, spec.width, spec.channels), np.float32)
    for index, record in enumerate(records):
        images[index] = load_image(split_root / record.path, spec)
    return images
