"""A split's images decoded in batches, one batch in memory at a time."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from reportgen.data import ImageRecord, Split
from reportgen.decode import InputSpec, load_image, read_image, reason


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
                unreadable.append((record, reason(error)))
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
