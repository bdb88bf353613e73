"""Read and validate an image folder laid out the Keras way, or as people have it.

``<root>/training_set/<class>/*`` and ``<root>/test_set/<class>/*``; or, for a
report on a given model, ``<root>/<class>/*`` alone or any folder plus a CSV of
``path,label`` rows. Classes sorted by name give the label indices. Scanning
reads each file's header and structure only (cheap); the one full decode comes
with the file's batch, and a file that fails there is skipped and listed like
those the scan found. Numpy and Pillow only: no TensorFlow here.
"""

from __future__ import annotations

import csv
import functools
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError, features

from reportgen.errors import UserError

# Formats Pillow always reads, and those that need the optional extra reportgen[photos].
BASE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
PHOTO_SUFFIXES = {".heic": "HEIF", ".heif": "HEIF", ".avif": "AVIF"}
IMAGE_SUFFIXES = BASE_SUFFIXES | frozenset(PHOTO_SUFFIXES)
# Below Pillow's own bomb limit (~89 million pixels) so that our check, which
# knows the size, answers first; 40 million RGB pixels already decode to 120 MB.
MAX_IMAGE_PIXELS = 40_000_000

TRAIN_FOLDER = "training_set"
TEST_FOLDER = "test_set"

# Only the decoders the suffixes promise: Pillow would otherwise also sniff
# formats such as EPS, whose decoder runs Ghostscript. HEIF and AVIF join when
# their decoders are present (``pillow_formats``).
PILLOW_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")
PHOTOS_EXTRA = "pip install 'reportgen[photos]'"
# JPEG decodes at 1/2, 1/4 or 1/8 scale for free (draft mode); we ask for at least this
# many times the model's input size so the final bilinear resize still has the detail.
DRAFT_FACTOR = 2
LABELS_COLUMNS = ("path", "label")
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
    root: Path  # image paths are relative to it
    class_names: tuple[str, ...]
    images: tuple[ImageRecord, ...]  # sorted by (label, path)
    skipped: tuple[SkippedFile, ...]  # sorted by path
    empty_classes: tuple[str, ...]  # class folders with no readable image
    data_root: Path | None = None  # skipped paths are relative to it; None: root

    def skipped_file(self, record: ImageRecord, reason: str) -> SkippedFile:
        return SkippedFile(_display_path(self.root / record.path, self.data_root or self.root), reason)

    def without(self, unreadable: Sequence[tuple[ImageRecord, str]]) -> Split:
        """This split less images that failed to decode after the scan, listed as skipped."""
        if not unreadable:
            return self
        gone = {record for record, _ in unreadable}
        images = tuple(record for record in self.images if record not in gone)
        skipped = (*self.skipped, *(self.skipped_file(record, reason) for record, reason in unreadable))
        return replace(self, images=images, skipped=tuple(sorted(skipped, key=lambda s: s.path)),
                       empty_classes=_empty_classes(self.class_names, images))


@dataclass(frozen=True)
class Dataset:
    root: Path
    class_names: tuple[str, ...]
    train: Split | None
    test: Split

    @property
    def skipped(self) -> tuple[SkippedFile, ...]:
        return (self.train.skipped if self.train else ()) + self.test.skipped


class _Unusable(Exception):
    """An image we refuse on purpose; the message is the reason."""


# --- Scanning folders -------------------------------------------------------


def scan_dataset(root: Path, *, require_train: bool = False, scan_train: bool = True,
                 labels: Path | None = None) -> Dataset:
    """Scan ``root/training_set`` (optional unless require_train) and ``root/test_set``.

    scan_train=False skips training_set/ altogether: a report on a given model
    reads only the test images, and then ``root`` may also be a plain folder of
    class folders, or any folder whose images a ``labels`` CSV names. Training
    splits are decoded in full while scanning (training loads them all at once);
    test splits of a report on a given model only have their headers checked.
    """
    root = Path(root)
    if not root.exists():
        raise UserError(f"Data folder {root} does not exist.")
    if not root.is_dir():
        raise UserError(f"Data folder {root} is not a folder.")
    training = scan_train or require_train
    if labels is not None:
        if training:
            raise UserError("--labels names the test images of a report on a given model "
                            f"(--model); training reads {TRAIN_FOLDER}/ and {TEST_FOLDER}/.")
        test = scan_labelled(root, labels)
        _require_images(test, root)
        return Dataset(root=root, class_names=test.class_names, train=None, test=test)
    train_root, test_root = root / TRAIN_FOLDER, root / TEST_FOLDER
    if require_train and not train_root.is_dir():
        raise UserError(f"Data folder {root} has no {TRAIN_FOLDER}/ folder of class folders.")
    if not test_root.is_dir():
        if training or train_root.is_dir():
            raise UserError(f"Data folder {root} has no {TEST_FOLDER}/ folder of class folders.")
        if not any(entry.is_dir() and not _is_ignored(entry.name) for entry in _entries(root)):
            raise UserError(f"Data folder {root} has neither a {TEST_FOLDER}/ folder nor class "
                            "folders (one subfolder per class), and no --labels file names its "
                            "images.")
        test_root = root  # a plain folder of class folders is the test set

    train = scan_split(train_root, relative_to=root, decode=True) \
        if train_root.is_dir() and training else None
    if train is not None:
        _require_same_classes(_class_folders(test_root), train.class_names, test_root,
                              expected_from=f"{TRAIN_FOLDER}/")
    test = scan_split(test_root, train.class_names if train else None, relative_to=root,
                      decode=training)
    _require_images(test, root)
    if train is not None and require_train:
        _require_images(train, root)
    return Dataset(root=root, class_names=test.class_names, train=train, test=test)


def scan_split(split_root: Path, class_names: Sequence[str] | None = None, *,
               relative_to: Path | None = None, decode: bool = False) -> Split:
    """Check every file under split_root; unusable ones are listed as skipped, never raised.

    class_names, when given, fixes the label order (a trained model's classes)
    and must match the class folders. relative_to is the data folder: skipped
    paths are reported relative to it and symlinks must stay inside it. It
    defaults to split_root. decode=True decodes every file in full (see check_image).
    """
    split_root = Path(split_root)
    data_root = split_root if relative_to is None else Path(relative_to)
    if not split_root.is_dir():
        raise UserError(f"Image folder {split_root} does not exist or is not a folder.")
    class_names = _label_order(split_root, class_names)
    images, skipped = _scan_files(split_root, class_names, data_root, decode)
    return _split(split_root, class_names, images, skipped, data_root)


def _split(root: Path, class_names: tuple[str, ...], images: list[ImageRecord],
           skipped: list[SkippedFile], data_root: Path) -> Split:
    images = sorted(images, key=lambda record: (record.label, record.path))
    return Split(root=root, class_names=class_names, images=tuple(images),
                 skipped=tuple(sorted(skipped, key=lambda skip: skip.path)),
                 empty_classes=_empty_classes(class_names, images), data_root=data_root)


def _empty_classes(class_names: Sequence[str], images: Sequence[ImageRecord]) -> tuple[str, ...]:
    used_labels = {record.label for record in images}
    return tuple(name for label, name in enumerate(class_names) if label not in used_labels)


def _label_order(split_root: Path, class_names: Sequence[str] | None) -> tuple[str, ...]:
    found = _class_folders(split_root)
    if class_names is None:
        return found
    if len(set(class_names)) != len(class_names):
        raise ValueError(f"Duplicate class names in {class_names}.")
    _require_same_classes(found, class_names, split_root, expected_from="the given class names")
    return tuple(class_names)


def _scan_files(split_root: Path, class_names: tuple[str, ...], data_root: Path,
                decode: bool) -> tuple[list[ImageRecord], list[SkippedFile]]:
    boundary = data_root.resolve()
    images: list[ImageRecord] = []
    skipped: list[SkippedFile] = []
    for loose_path in _loose_files(split_root):
        for path, reason in _candidates(loose_path, boundary, frozenset()):
            skipped.append(SkippedFile(_display_path(path, data_root),
                                       reason or "not inside a class folder"))
    for label, class_name in enumerate(class_names):
        for path, reason in _candidates(split_root / class_name, boundary, frozenset()):
            reason = reason or check_image(path, decode=decode)
            if reason:
                skipped.append(SkippedFile(_display_path(path, data_root), reason))
            else:
                relative_path = path.relative_to(split_root).as_posix()
                images.append(ImageRecord(relative_path, label, class_name))
    return images, skipped


def scan_labelled(root: Path, labels: Path) -> Split:
    """The images a CSV of ``path,label`` rows names, paths relative to root (the data folder).

    A malformed file is one UserError; rows naming files that are missing or
    unreadable are skipped and listed, as the scan lists bad files in class folders.
    Classes are the labels found, sorted as class folders are.
    """
    rows = read_labels(labels)
    class_names = tuple(sorted({label for _, label in rows}))
    label_of = {name: index for index, name in enumerate(class_names)}
    boundary = root.resolve()
    images: list[ImageRecord] = []
    skipped: list[SkippedFile] = []
    for relative_path, class_name in rows:
        path = root / relative_path
        if not path.exists() and not path.is_symlink():
            skipped.append(SkippedFile(relative_path, f"listed in {labels.name} but not found"))
            continue
        if path.is_dir():
            skipped.append(SkippedFile(relative_path, "a folder, not an image file"))
            continue
        for candidate, reason in _candidates(path, boundary, frozenset()):
            reason = reason or check_image(candidate, decode=False)
            if reason:
                skipped.append(SkippedFile(_display_path(candidate, root), reason))
            else:
                images.append(ImageRecord(relative_path, label_of[class_name], class_name))
    return _split(root, class_names, images, skipped, root)


def read_labels(labels: Path) -> list[tuple[str, str]]:
    """(path, label) rows of a labels CSV, paths normalised to POSIX; UserError if malformed."""
    try:
        with open(labels, encoding="utf-8-sig", newline="") as file:
            table = list(csv.reader(file))
    except FileNotFoundError:
        raise UserError(f"Labels file {labels} does not exist.") from None
    except UnicodeDecodeError:
        raise UserError(f"Labels file {labels} is not UTF-8 text.") from None
    except (OSError, csv.Error) as error:
        raise UserError(f"Cannot read labels file {labels}: {error}.") from error
    if not table or tuple(cell.strip().lower() for cell in table[0]) != LABELS_COLUMNS:
        found = ",".join(table[0]) if table else "an empty file"
        raise UserError(f"Labels file {labels} must start with the header row "
                        f"{','.join(LABELS_COLUMNS)}; found {found!r}.")
    rows: list[tuple[str, str]] = []
    first_line: dict[str, int] = {}
    for line, row in enumerate(table[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(LABELS_COLUMNS) or not row[0].strip() or not row[1].strip():
            raise UserError(f"Labels file {labels}, line {line}: expected a path and a label, "
                            f"found {row!r}.")
        relative = PurePosixPath(row[0].strip().replace("\\", "/"))
        if relative.is_absolute() or ".." in relative.parts:
            raise UserError(f"Labels file {labels}, line {line}: {row[0]!r} is not a path inside "
                            "the data folder.")
        path = relative.as_posix()
        if path in first_line:
            raise UserError(f"Labels file {labels}, line {line}: {path} is listed twice "
                            f"(first on line {first_line[path]}).")
        first_line[path] = line
        rows.append((path, row[1].strip()))
    if not rows:
        raise UserError(f"Labels file {labels} lists no images.")
    return rows


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


def check_image(path: Path, *, decode: bool = True) -> str | None:
    """None if path looks readable, else why not (one short sentence).

    decode=False reads the header and lets the format verify its structure (PNG
    checks every chunk's CRC) without decoding pixels; damage only a decode finds
    (a cut-off JPEG) then surfaces when the image's batch is read. decode=True
    decodes every pixel too: None means load_image will read path.
    """
    try:
        with _open_image(path) as image:
            image.verify()  # catches damage a lenient decoder lets through (missing PNG end)
        if decode:
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
    A JPEG at least 2 x DRAFT_FACTOR times the model's size is decoded at 1/2, 1/4 or
    1/8 scale (never below DRAFT_FACTOR times the model's size) before the resize:
    The guide (docs/your-data.md, *Big photos*) states how close that stays to a full decode.
    """
    try:
        return read_image(path, spec)
    except Exception as error:  # as in check_image
        raise UserError(f"Cannot read image {path}: {_reason(error)}.") from error


def read_image(path: Path, spec: InputSpec, out: np.ndarray | None = None) -> np.ndarray:
    """load_image, raising whatever the decoder raises (callers that skip bad files catch it).

    With ``out``, a float32 (height, width, channels) array such as a row of a batch, the
    pixels are written there and ``out`` is returned, so they need no copy into the batch.
    """
    side = DRAFT_FACTOR * max(spec.height, spec.width)
    image = _decode(path, draft_size=(side, side))
    if spec.channels == 1 and image.mode == "RGB":
        # Pillow's own 8-bit grey, as keras.utils.load_img(color_mode="grayscale") gives.
        image = image.convert("L")
    values = np.asarray(image)
    if values.ndim == 2:
        values = values[..., np.newaxis]
    colours = values.shape[-1] - (image.mode in ALPHA_MODES)  # _to_pixels drops the alpha
    pixels = _match_channels(
        resize_pixels(values, spec.height, spec.width, spec.resize,
                      to_float=lambda v: _to_pixels(v, image.mode),
                      out=out if colours == spec.channels else None),
        spec.channels)
    if out is None or pixels is out:
        return pixels
    out[...] = pixels
    return out


def resize_pixels(values: np.ndarray, height: int, width: int, method: str = "stretch",
                  to_float=None, out: np.ndarray | None = None) -> np.ndarray:
    """(h, w, c) -> (height, width, c) float32, bilinear with half-pixel centres, as Keras.

    The same arithmetic as tf.image.resize(antialias=False), which Keras' resize and
    image_dataset_from_directory call; "crop" and "pad" reach the target aspect ratio
    first exactly as keras.ops.image.resize does. Only the source rows and columns some
    output pixel needs are gathered (and converted by ``to_float``) before any float
    arithmetic, so a large photo never exists as float32. With ``out`` (float32, the
    result's shape) the result is written there.
    """
    to_float = to_float or (lambda v: v.astype(np.float32))
    source_height, source_width = values.shape[:2]
    rows = _axis_samples(source_height, height, *_canvas(source_height, source_width, height,
                                                         width, method))
    columns = _axis_samples(source_width, width, *_canvas(source_width, source_height, width,
                                                          height, method))
    # First across, each source row once: an output row's two source rows are mostly
    # also its neighbour's, so this is about half the work of interpolating 2 x height rows.
    source_rows = np.take(values, rows.sources, axis=0)
    left, right = (_column_samples(source_rows, rows, columns, which, to_float)
                   for which in (columns.lower, columns.upper))
    across = right  # in place, the same float32 operations as left + (right - left) * lerp
    across -= left
    # The weights repeated for each channel: numpy's loop then runs along whole rows, not
    # along the 1 to 4 channels of one pixel (three times faster at 224x224 RGB).
    across *= np.repeat(columns.lerp, across.shape[2]).reshape(1, width, -1)
    across += left
    # Then down: top + (bottom - top) * lerp.
    top = np.take(across, rows.lower, axis=0)
    resized = np.take(across, rows.upper, axis=0, out=out, mode="clip")  # "raise" copies to out
    resized -= top
    resized *= rows.lerp[:, None, None]
    resized += top
    return resized.astype(np.float32, copy=False)


def _column_samples(source_rows: np.ndarray, rows: _AxisSamples, columns: _AxisSamples,
                    which: np.ndarray, to_float) -> np.ndarray:
    """One of the two source columns of each output column, of every source row, as floats."""
    samples = to_float(np.take(source_rows, columns.sources[which], axis=1))
    if rows.inside.all() and columns.inside[which].all():
        return samples
    # Pad mode: samples that fall outside the image read the fill value, black.
    return samples * (rows.inside[:, None, None] & columns.inside[which][None, :, None])


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


class _AxisSamples(NamedTuple):
    """Where one axis' output pixels read the source, each distinct source index listed once."""

    sources: np.ndarray  # distinct source indices, clipped into the image
    inside: np.ndarray  # of each source: inside the image (pad mode reads black outside it)
    lower: np.ndarray  # (target,) each output's lower neighbour, as a position in sources
    upper: np.ndarray  # (target,) and its upper one
    lerp: np.ndarray  # (target,) float32 weight of the upper neighbour


@functools.lru_cache(maxsize=64)  # a test set's photos mostly share a few sizes
def _axis_samples(size: int, target: int, start: int, length: int) -> _AxisSamples:
    """tf.image.resize's compute_interpolation_weights with half-pixel centres, in float32.

    Read-only arrays: they are shared by every image of the same size.
    """
    scale = np.float32(length) / np.float32(target)
    centres = (np.arange(target, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(centres)
    lower = np.maximum(floor, 0).astype(np.int64)
    upper = np.minimum(np.ceil(centres), length - 1).astype(np.int64)
    canvas = np.concatenate([lower, upper]) + start
    inside = (canvas >= 0) & (canvas < size)
    keys, positions = np.unique(np.clip(canvas, 0, size - 1) * 2 + inside, return_inverse=True)
    samples = _AxisSamples(keys // 2, keys % 2 == 1, positions[:target], positions[target:],
                           (centres - floor).astype(np.float32))
    for array in samples:
        array.flags.writeable = False
    return samples


@functools.cache
def pillow_formats() -> tuple[str, ...]:
    """PILLOW_FORMATS plus HEIF (the pillow-heif plugin) and AVIF where they can be read."""
    formats = list(PILLOW_FORMATS)
    try:
        import pillow_heif
    except ImportError:
        pass
    else:
        pillow_heif.register_heif_opener()
        formats.append("HEIF")
    # Pillow >= 11.2 built with libavif; older Pillow does not know the name (and warns).
    if "avif" in features.modules and features.check_module("avif"):
        formats.append("AVIF")
    return tuple(formats)


def missing_decoder(suffix: str) -> str | None:
    """Why a file with this suffix cannot be read here, or None if it can."""
    needed = PHOTO_SUFFIXES.get(suffix.lower())
    if needed is None or needed in pillow_formats():
        return None
    return f"{needed} image needs the optional extra reportgen[photos] ({PHOTOS_EXTRA})"


@contextmanager
def _open_image(path: Path) -> Iterator[ImageFile.ImageFile]:
    """Open path with decompression bombs refused and Pillow's other warnings muted."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise _Unusable("empty file")
    if (missing := missing_decoder(path.suffix)) is not None:
        raise _Unusable(missing)
    with warnings.catch_warnings():
        # Pillow warns about cosmetic damage (corrupt EXIF and the like) that
        # does not stop decoding; whether an image is usable is decided here.
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path, formats=pillow_formats()) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise _Unusable(f"image too large ({width}x{height} pixels)")
            yield image


def _decode(path: Path, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Every pixel decoded and upright, as L, LA, RGB, RGBA or (high bit depth) F in [0, 1].

    draft_size: a JPEG is decoded at the smallest of 1/1, 1/2, 1/4, 1/8 scale that is
    still at least this big (libjpeg scales inside its inverse DCT, so the skipped
    work is never done). The mode is left alone: a grey model still gets Pillow's
    convert("L") of the RGB pixels, as for any other image.
    """
    with _open_image(path) as image:
        if draft_size is not None and image.format == "JPEG":
            image.draft(None, draft_size)
        upright = ImageOps.exif_transpose(image)  # decodes too (the first frame of an animation)
        if upright.mode in HIGH_DEPTH_FULL_SCALE:
            return _high_depth_to_unit(upright)
        greyscale = upright.mode in GREYSCALE_MODES
        if upright.mode in ALPHA_MODES or "transparency" in upright.info:
            mode = "LA" if greyscale else "RGBA"
        else:
            mode = "L" if greyscale else "RGB"
        # exif_transpose already made a copy: converting to the same mode would copy again
        # (a fifth of the decoding time of a 300x240 JPEG).
        return upright if upright.mode == mode else upright.convert(mode)


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
        return f"not a {', '.join(pillow_formats())} image Pillow can read"
    if isinstance(error, FileNotFoundError):
        return "file not found"
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, EOFError) or "truncated" in message.lower():
        return "truncated image data"
    detail = message.splitlines()[0][:80] if message else type(error).__name__
    return f"damaged image data ({_printable(detail)})"


# --- Batches ----------------------------------------------------------------


# eq=False: the generated __eq__ and __hash__ would choke on the array.
@dataclass(frozen=True, eq=False)
class Batch:
    images: np.ndarray  # (n, height, width, channels) float32 pixels in [0, 255], resized
    records: tuple[ImageRecord, ...]  # the n images, in the split's order
    indices: tuple[int, ...]  # their positions in split.images
    unreadable: tuple[tuple[ImageRecord, str], ...] = ()  # failed to decode: (record, reason)


def iter_batches(split: Split, spec: InputSpec, batch_size: int) -> Iterator[Batch]:
    """The split's images in its sorted order, one batch in memory at a time.

    Each image is decoded here, once. One that fails (damage the header scan
    cannot see) is left out of the batch and returned in ``unreadable``;
    ``Split.without`` lists it with the skipped files.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}.")
    return _batches(split, spec, batch_size)


def _batches(split: Split, spec: InputSpec, batch_size: int) -> Iterator[Batch]:
    for start in range(0, len(split.images), batch_size):
        stop = min(start + batch_size, len(split.images))
        # Each image decoded straight into its row (a failed one's row is reused by the next).
        images = np.empty((stop - start, spec.height, spec.width, spec.channels), np.float32)
        indices, unreadable = [], []
        for index in range(start, stop):
            record = split.images[index]
            try:
                read_image(split.root / record.path, spec, out=images[len(indices)])
            except Exception as error:  # as in check_image
                unreadable.append((record, _reason(error)))
            else:
                indices.append(index)
        yield Batch(images[:len(indices)], tuple(split.images[i] for i in indices),
                    tuple(indices), tuple(unreadable))


def load_split(split: Split, spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """All images (n, h, w, c) float32 and their int64 labels: for small training sets.

    Training splits are decoded in full by the scan, so a failure here (a file
    changed since) is an error, not a skip.
    """
    labels = np.array([record.label for record in split.images], np.int64)
    images = np.empty((len(split.images), spec.height, spec.width, spec.channels), np.float32)
    for index, record in enumerate(split.images):
        images[index] = load_image(split.root / record.path, spec)
    return images, labels
