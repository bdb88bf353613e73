"""Test data given in memory: NumPy ``(x, y)`` or a ``tf.data.Dataset`` of (images, labels).

This is the Python API's (``reportgen.build(model, data=...)``) and the training callback's
(``reportgen.keras.ReportCallback``) data. It is iterated exactly once, at the build's plan
stage, and written as float32 pixels into the staging folder in the layout of the pipeline's
pixel cache; the passes read their batches from there. So a shuffled dataset (as
``keras.utils.image_dataset_from_directory`` makes by default) gives every image one identity
for the whole build, memory holds one batch at a time, and a dataset that cannot be iterated
twice is fine.

The arrays are what the model is fed, as ``model.predict`` takes them. reportgen draws
pictures from 0-255 pixels, so it reads the values' range: 0-255 (what
``image_dataset_from_directory`` yields; a model that rescales inside takes these), [0, 1] or
[-1, 1]; the pixels are the values scaled to 0-255 and the input contract scales them back
(``unit`` or ``symmetric``). With an explicit ``preprocess=`` the arrays are taken as 0-255
pixels and that preprocessing is applied, as for image files.

Labels: integers (``label_mode="int"``), one-hot rows (``"categorical"``) or 0/1 values
(``"binary"``). Images are named by their position in the order they were read, ``0``,
``1``, ... (``x[i]`` for NumPy arrays).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reportgen.data import Dataset, ImageRecord, Split
from reportgen.decode import InputSpec
from reportgen.errors import UserError

FOLDER = ".reportgen-given"  # in the staging folder; removed before the swap
CHUNK = 256  # NumPy arrays are written in files of this many images
# The ranges reportgen can draw, and the contract's preprocessing that gives the values back.
RANGES = (("unit", 0.0, 1.0), ("symmetric", -1.0, 1.0), ("raw", 0.0, 255.0))
TO_PIXELS = {"unit": lambda x: x * np.float32(255), "raw": lambda x: x,
             "symmetric": lambda x: (x + np.float32(1)) * np.float32(127.5)}


@dataclass(frozen=True)
class GivenData:
    """Data in memory, not yet read."""

    batches: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]  # (images, labels) batches
    class_names: tuple[str, ...]  # () when the data does not say
    description: str  # what the data is, for the title: "a tf.data.Dataset", "NumPy arrays"

    @classmethod
    def of(cls, data, class_names=None) -> GivenData:
        """``data``: ``(x, y)`` arrays, or a tf.data.Dataset of (images, labels[, weights])
        batches or single examples; ``class_names`` or the dataset's own ``class_names``."""
        names = tuple(class_names) if class_names is not None else ()
        if isinstance(data, tuple | list) and len(data) == 2:
            x, y = data
            return cls(lambda: _array_chunks(x, y), names, "NumPy arrays")
        if hasattr(data, "element_spec") and hasattr(data, "as_numpy_iterator"):
            names = names or tuple(str(name) for name in getattr(data, "class_names", None) or ())
            return cls(lambda: _dataset_batches(data), names, "a tf.data.Dataset")
        raise UserError(f"data must be a folder, a tf.data.Dataset of (images, labels) or a "
                        f"tuple (x, y) of arrays, not {type(data).__name__}")

    def read_into(self, site, model, class_names: tuple[str, ...], preprocess: str,
                  echo: Callable[[str], None]):
        """(the pixels' folder in the staging folder, a Dataset of the test split, the input
        contract): every batch read once and written through ``site``."""
        from reportgen.inputs import InputContract, input_spec, preprocess_function

        spec = input_spec(model)
        folder = site.temp / FOLDER
        labels: list[np.ndarray] = []
        low, high, count, files = math.inf, -math.inf, 0, []
        for images, batch_labels in self.batches():
            images = _images(images, spec)
            batch_labels = _labels(batch_labels, len(images), len(class_names))
            if not len(images):
                continue
            stem = f"{FOLDER}/{count:09d}"
            _write_npy(site, f"{stem}-indices.npy", np.arange(count, count + len(images)))
            _write_npy(site, f"{stem}-rows.npy", images)
            files.append(site.temp / f"{stem}-rows.npy")
            low, high = min(low, float(images.min())), max(high, float(images.max()))
            labels.append(batch_labels)
            count += len(images)
        if not count:
            raise UserError(f"{self.description} has no images")
        if not (np.isfinite(low) and np.isfinite(high)):
            raise UserError(f"{self.description} holds values that are not finite numbers")
        spec = InputSpec(spec.height, spec.width, spec.channels)
        if preprocess != "auto":
            preprocess_function(preprocess, spec.channels)  # refuses a bad choice
            if low < 0 or high > 255:
                raise UserError(f"with preprocess={preprocess!r} the data must be 0-255 pixels, "
                                f"but its values span [{low:g}, {high:g}]")
            contract = InputContract(spec, preprocess, "set with preprocess=; the data given "
                                     "in memory is its 0-255 pixels")
        else:
            found = next((name for name, lo, hi in RANGES if low >= lo and high <= hi), None)
            if found is None:
                raise UserError(f"{self.description}'s values span [{low:g}, {high:g}]: "
                                "reportgen reads arrays in [0, 1], [-1, 1] or 0-255; give it "
                                "0-255 pixels and preprocess= the model's preprocessing")
            if found != "raw":
                for path in files:  # the pixel files the passes read hold 0-255 pixels
                    _write_npy(site, path.relative_to(site.temp).as_posix(),
                               TO_PIXELS[found](np.load(path)))
            contract = InputContract(spec, found, f"data given in memory is fed as given, as "
                                     f"model.predict takes it: its values lie in "
                                     f"{_span(found)}")
        all_labels = np.concatenate(labels)
        echo(f"Read {count} images from {self.description}")
        return folder, _dataset(folder, class_names, all_labels), contract


def _span(range_name: str) -> str:
    return {"unit": "[0, 1]", "symmetric": "[-1, 1]", "raw": "0-255"}[range_name]


def _write_npy(site, relative_path: str, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    site.write(relative_path, buffer.getbuffer(), counted=False)


def _array_chunks(x, y) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise UserError(f"x has {len(x)} images but y has {len(y)} labels")
    for start in range(0, len(x), CHUNK):
        yield x[start:start + CHUNK], y[start:start + CHUNK]


def _dataset_batches(dataset) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for element in dataset.as_numpy_iterator():
        if not isinstance(element, tuple) or len(element) not in (2, 3):
            raise UserError("the tf.data.Dataset must yield (images, labels) pairs, as "
                            "keras.utils.image_dataset_from_directory does")
        images, labels = element[0], element[1]
        if np.ndim(images) == 3:  # one example, not a batch
            images, labels = images[None], np.asarray(labels)[None]
        yield images, labels


def _images(images, spec: InputSpec) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 3 and spec.channels == 1:  # (n, h, w): grayscale without its axis
        images = images[..., None]
    if images.ndim != 4 or images.shape[1:] != (spec.height, spec.width, spec.channels):
        raise UserError(f"the data's images have shape {images.shape[1:]}, but the model takes "
                        f"{(spec.height, spec.width, spec.channels)}")
    if not (np.issubdtype(images.dtype, np.floating) or np.issubdtype(images.dtype, np.integer)):
        raise UserError(f"the data's images are {images.dtype}, not numbers")
    return np.ascontiguousarray(images, np.float32)


def _labels(labels, n: int, n_classes: int) -> np.ndarray:
    """Class indices from integer, one-hot or binary labels."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] > 1:  # one-hot (label_mode="categorical")
        if labels.shape[1] != n_classes:
            raise UserError(f"the labels are one-hot over {labels.shape[1]} classes, but the "
                            f"model predicts {n_classes}")
        indices = labels.argmax(axis=1)
    else:  # integers (label_mode="int"), or 0/1 (label_mode="binary", shape (n, 1))
        flat = labels.reshape(-1) if labels.ndim <= 2 else labels
        if flat.ndim != 1 or not np.all(np.isfinite(flat)) or np.any(flat != np.round(flat)):
            raise UserError(f"labels must be class indices, one-hot rows or 0/1 values; got "
                            f"an array of shape {labels.shape}")
        indices = flat.astype(np.int64)
    if len(indices) != n:
        raise UserError(f"a batch has {n} images but {len(indices)} labels")
    if len(indices) and (indices.min() < 0 or indices.max() >= n_classes):
        raise UserError(f"label {int(indices.max() if indices.max() >= n_classes else indices.min())} "
                        f"is not a class index of a model that predicts {n_classes} classes")
    return indices.astype(np.int64)


def _dataset(folder: Path, class_names: tuple[str, ...], labels: np.ndarray) -> Dataset:
    width = len(str(len(labels) - 1))
    images = tuple(ImageRecord(f"{index:0{width}d}", int(label), class_names[label])
                   for index, label in enumerate(labels))
    present = set(labels.tolist())
    empty = tuple(name for index, name in enumerate(class_names) if index not in present)
    test = Split(root=folder, class_names=class_names, images=images, skipped=(),
                 empty_classes=empty)
    return Dataset(root=folder, class_names=class_names, train=None, test=test)


__all__ = ["GivenData"]
