"""Read and validate an image folder laid out the Keras way, or as people have it.

``<root>/training_set/<class>/*`` and ``<root>/test_set/<class>/*``; or, for a
report on a given model, ``<root>/<class>/*`` alone or any folder plus a CSV of
``path,label`` rows. Classes sorted by name give the label indices. Scanning
reads each file's header and structure only (cheap); the one full decode comes
with the file's batch (``reportgen.batches``), and a file that fails there is
skipped and listed like those the scan found. Decoding one file is
``reportgen.decode``'s job. No TensorFlow here.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from reportgen.decode import IMAGE_SUFFIXES, check_image, printable
from reportgen.errors import UserError

TRAIN_FOLDER = "training_set"
TEST_FOLDER = "test_set"

LABELS_COLUMNS = ("path", "label")
# Operating-system litter that nobody put there on purpose (hidden names too).
IGNORED_NAMES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini", "__macosx"})
RESOURCE_FORK = "macOS resource fork, not an image"
OUTSIDE_SYMLINK = "symlink pointing outside the data folder"


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
            raise UserError(f"Class folder {printable(name)!r} in {split_root} "
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


def _display_path(path: Path, data_root: Path) -> str:
    return printable(path.relative_to(data_root).as_posix())
