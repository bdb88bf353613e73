"""Resize pixels as Keras does: bilinear with half-pixel centres, stretched, cropped or padded.

NumPy only; the arithmetic of tf.image.resize(antialias=False), checked against Keras by
tests/test_inputs.py.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

# How an image of another size becomes the model's size, as Keras' image utilities do it:
# "stretch" is tf.image.resize (image_dataset_from_directory's default), "crop" first cuts
# the centre to the model's aspect ratio (crop_to_aspect_ratio=True), "pad" first pads
# with black to it (keras.ops.image.resize(pad_to_aspect_ratio=True)). All bilinear.
RESIZE_METHODS = ("stretch", "crop", "pad")


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
    # along the 1 to 4 channels of one pixel (benchmarks/results.md, *Measured by hand*).
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
