"""The layer atlas: per-channel statistics of one layer's feature maps over the test set.

Everything is accumulated in mergeable form (float64 sums, counts, bounded top-k lists), so
shards of the test set can be processed apart and merged into what one pass would give:
counts, maxima, dead flags and top-k lists exactly, means up to float64 summation order.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

TOP_K = 9

# Means are float64 sums taken in batch/shard order, so they agree to rounding, not bit for bit.
MEAN_REL_TOL = 1e-12


@dataclass(frozen=True)
class TopImage:
    path: str
    label: int
    score: float  # the channel's spatial maximum on this image
    feature_map: np.ndarray  # (h, w) float32, read-only

    def __eq__(self, other: object) -> bool:
        # The generated __eq__ would ask numpy for the truth value of a whole array.
        if not isinstance(other, TopImage):
            return NotImplemented
        return ((self.path, self.label, self.score) == (other.path, other.label, other.score)
                and self.feature_map.dtype == other.feature_map.dtype
                and np.array_equal(self.feature_map, other.feature_map))

    __hash__ = None  # holds an array


@dataclass(frozen=True)
class ChannelStats:
    index: int
    mean: float  # mean over images of the spatial mean
    max: float  # over all images and positions
    active_share: float  # 0..1: share of images with any value > 0
    dead: bool  # active on no image
    class_means: tuple[float, ...]  # per true class, NaN where the class has no images
    selectivity: float  # (max - min) / mean of the class means of classes with images
    top: tuple[TopImage, ...]  # best first: spatial max descending, then path ascending
    std: float = 0.0  # standard deviation over images of the spatial mean (the channel plan's rank)
    max_mean: float = 0.0  # the highest spatial mean of any image (what featviz must beat)


@dataclass(frozen=True)
class LayerStats:
    n_images: int
    channels: tuple[ChannelStats, ...]

    @property
    def dead_count(self) -> int:
        return sum(channel.dead for channel in self.channels)

    @property
    def dead_share(self) -> float:
        return self.dead_count / len(self.channels)

    @property
    def mean_activation(self) -> float:
        """The mean of the channel means."""
        return math.fsum(channel.mean for channel in self.channels) / len(self.channels)

    def by_selectivity(self) -> tuple[ChannelStats, ...]:
        """Most selective first; ties by channel index."""
        return tuple(sorted(self.channels, key=lambda channel: (-channel.selectivity,
                                                                channel.index)))

    def differences(self, other: LayerStats, rel_tol: float = MEAN_REL_TOL) -> list[str]:
        """What differs from `other`, one line each; empty when they agree.

        Counts, maxima, dead flags and top lists must match exactly; means, class means and
        selectivity (a ratio of means) within `rel_tol`.
        """
        if self.n_images != other.n_images:
            return [f"n_images {self.n_images} != {other.n_images}"]
        if len(self.channels) != len(other.channels):
            return [f"{len(self.channels)} channels != {len(other.channels)}"]
        return [line for mine, theirs in zip(self.channels, other.channels, strict=True)
                for line in _channel_differences(mine, theirs, rel_tol)]


def _channel_differences(a: ChannelStats, b: ChannelStats, rel_tol: float) -> list[str]:
    exact = [(name, getattr(a, name), getattr(b, name))
             for name in ("index", "max", "max_mean", "active_share", "dead")]
    lines = [f"{name} {x!r} != {y!r}" for name, x, y in exact if x != y]
    # Selectivity is dimensionless and can be ~0 from a difference of means: absolute tolerance too.
    close = [("mean", (a.mean,), (b.mean,), 0.0),
             ("std", (a.std,), (b.std,), rel_tol * max(1.0, abs(a.mean))),
             ("class_means", a.class_means, b.class_means, 0.0),
             ("selectivity", (a.selectivity,), (b.selectivity,), rel_tol * len(a.class_means))]
    lines += [f"{name} {x} != {y}" for name, x, y, abs_tol in close
              if not _all_close(x, y, rel_tol, abs_tol)]
    if a.top != b.top:
        lines.append(f"top {[t.path for t in a.top]} != {[t.path for t in b.top]} "
                     "(or their labels, scores or maps differ)")
    return [f"channel {a.index}: {line}" for line in lines]


def _all_close(xs: tuple[float, ...], ys: tuple[float, ...], rel_tol: float,
               abs_tol: float) -> bool:
    return len(xs) == len(ys) and all(
        (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=rel_tol, abs_tol=abs_tol)
        for x, y in zip(xs, ys, strict=True))


@dataclass(frozen=True)
class _TopLists:
    """Per channel, the best images so far, best first. Row r of every array is rank r.

    Never modified in place, so accumulators may share one.
    """

    scores: np.ndarray  # (m, c) float32 spatial maxima
    labels: np.ndarray  # (m, c) int64
    paths: np.ndarray  # (m, c) object array of str
    maps: np.ndarray  # (m, c, h, w) float32 copies of the channel maps

    @classmethod
    def from_batch(cls, feature_maps: np.ndarray, spatial_max: np.ndarray, labels: np.ndarray,
                   paths: np.ndarray, top_k: int) -> _TopLists:
        _, path_rank = np.unique(paths, return_inverse=True)
        rows = _best_rows(spatial_max, np.broadcast_to(path_rank[:, None], spatial_max.shape),
                          top_k)
        channels = np.arange(spatial_max.shape[1])[None, :]
        return cls(scores=np.take_along_axis(spatial_max, rows, axis=0),
                   labels=labels[rows].astype(np.int64),
                   paths=paths[rows],
                   # Fancy indexing copies: the caller's batch array is not kept alive.
                   maps=feature_maps[rows, :, :, channels])

    def combine(self, other: _TopLists, top_k: int) -> _TopLists:
        paths = np.concatenate([self.paths, other.paths])
        _, path_rank = np.unique(paths, return_inverse=True)
        path_rank = path_rank.reshape(paths.shape)
        _reject_repeated_paths(paths, path_rank)
        scores = np.concatenate([self.scores, other.scores])
        rows = _best_rows(scores, path_rank, top_k)
        channels = np.arange(scores.shape[1])[None, :]
        return _TopLists(scores=scores[rows, channels],
                         labels=np.concatenate([self.labels, other.labels])[rows, channels],
                         paths=paths[rows, channels],
                         maps=self._pick_maps(other, rows))

    def _pick_maps(self, other: _TopLists, rows: np.ndarray) -> np.ndarray:
        """The maps at ``rows`` (k, c) of both lists stacked (self's first), gathered from
        each without stacking them: for ResNet50 that stack was twice 227 MB at every merge."""
        first_rows = len(self.maps)
        channels = np.broadcast_to(np.arange(rows.shape[1])[None, :], rows.shape)
        mine = rows < first_rows
        maps = np.empty((*rows.shape, *self.maps.shape[2:]), self.maps.dtype)
        maps[mine] = self.maps[rows[mine], channels[mine]]
        maps[~mine] = other.maps[rows[~mine] - first_rows, channels[~mine]]
        return maps

    def channel(self, index: int) -> tuple[TopImage, ...]:
        return tuple(TopImage(path=self.paths[rank, index], label=int(self.labels[rank, index]),
                              score=float(self.scores[rank, index]),
                              feature_map=_read_only(self.maps[rank, index]))
                     for rank in range(len(self.scores)))


def _combine(first: _TopLists | None, second: _TopLists | None, top_k: int) -> _TopLists | None:
    if first is None or second is None:
        return first or second
    return first.combine(second, top_k)


def _best_rows(scores: np.ndarray, path_rank: np.ndarray, top_k: int) -> np.ndarray:
    """Per column, the rows of the `top_k` best candidates: score descending, then path ascending.

    With unique paths this is a total order, so the result does not depend on how the images
    were split into batches or shards.
    """
    order = np.lexsort((path_rank, -scores), axis=0)
    return order[:top_k]


def _reject_repeated_paths(paths: np.ndarray, path_rank: np.ndarray) -> None:
    ranks_sorted = np.sort(path_rank, axis=0)
    repeated = ranks_sorted[1:] == ranks_sorted[:-1]
    if repeated.any():
        row, column = np.argwhere(repeated)[0]
        path = paths[path_rank[:, column] == ranks_sorted[row, column], column][0]
        raise ValueError(f"image {path!r} was added more than once")


def _read_only(array: np.ndarray) -> np.ndarray:
    array = array.copy()
    array.flags.writeable = False
    return array


def _selectivity(class_means: np.ndarray, class_has_images: np.ndarray) -> np.ndarray:
    """(max - min) / mean over the classes with images, per channel; 0.0 where that mean is 0."""
    means = class_means[class_has_images]
    average = means.mean(axis=0)
    spread = means.max(axis=0) - means.min(axis=0)
    return np.divide(spread, average, out=np.zeros_like(average), where=average != 0)


class TopPool:
    """Each layer's top images, gathered from the shards of a pass as they finish.

    The best images of a union do not depend on the order they are gathered in (score, then
    path, decide), so unlike the sums, which are added in the fold's fixed tree, they need not
    travel with the partial results: a build in one process pools them at once. The partial
    results held a set of top-9 maps each, about six sets alive at once, 227 MB a set for
    ResNet50's 18 shown layers at 224x224 (3.3 GB peak, now 2.7 GB at the same batch).
    """

    def __init__(self) -> None:
        self._tops: dict[int, _TopLists | None] = {}
        self._lock = threading.Lock()

    def absorb(self, accumulators: Sequence[LayerStatsAccumulator]) -> None:
        """Take the top images out of a shard's accumulators (one per layer, in order)."""
        for index, accumulator in enumerate(accumulators):
            top = accumulator.take_top()
            with self._lock:
                self._tops[index] = _combine(self._tops.get(index), top, accumulator.top_k)

    def restore(self, accumulators: Sequence[LayerStatsAccumulator]) -> None:
        """Give the pooled top images to the pass' merged accumulators."""
        for index, accumulator in enumerate(accumulators):
            accumulator.put_top(self._tops.pop(index, None))


class LayerStatsAccumulator:
    """Per-channel statistics of one layer, fed batch by batch and mergeable across shards."""

    def __init__(self, n_channels: int, n_classes: int, top_k: int = TOP_K):
        if min(n_channels, n_classes, top_k) < 1:
            raise ValueError("n_channels, n_classes and top_k must all be at least 1")
        self.n_channels = n_channels
        self.n_classes = n_classes
        self.top_k = top_k
        self._n_images = 0
        self._spatial_mean_sum = np.zeros(n_channels, np.float64)
        self._spatial_mean_square_sum = np.zeros(n_channels, np.float64)
        self._class_spatial_mean_sum = np.zeros((n_classes, n_channels), np.float64)
        self._class_image_count = np.zeros(n_classes, np.int64)
        self._active_image_count = np.zeros(n_channels, np.int64)
        self._channel_max = np.full(n_channels, -np.inf, np.float32)
        self._max_spatial_mean = np.full(n_channels, -np.inf, np.float64)
        self._map_shape: tuple[int, int] | None = None  # (h, w), known from the first batch
        self._top: _TopLists | None = None

    def take_top(self) -> _TopLists | None:
        """The top images so far, handed over: this accumulator keeps none (``TopPool``)."""
        top, self._top = self._top, None
        return top

    def put_top(self, top: _TopLists | None) -> None:
        """Top images gathered elsewhere, joined to this accumulator's own."""
        self._top = _combine(self._top, top, self.top_k)

    def update(self, feature_maps: np.ndarray, labels: np.ndarray, paths: Sequence[str],
               spatial_max: np.ndarray | None = None) -> None:
        """feature_maps (n, h, w, c) float32 for one batch; labels (n,) int true class;
        paths (n,) unique image ids; ``spatial_max``, if the caller has it already, is
        ``feature_maps.max(axis=(1, 2))``."""
        feature_maps = np.asarray(feature_maps, dtype=np.float32)
        labels = np.asarray(labels)
        paths = list(paths)
        self._check_batch(feature_maps, labels, paths)
        if len(paths) == 0:
            return
        path_ids = np.array([str(path) for path in paths], dtype=object)  # str, not np.str_
        n_pixels = feature_maps.shape[1] * feature_maps.shape[2]
        if spatial_max is None:
            spatial_max = feature_maps.max(axis=(1, 2))  # (n, c)
        spatial_mean = feature_maps.sum(axis=(1, 2), dtype=np.float64) / n_pixels  # (n, c)
        # NaN and +inf reach the max, -inf the sum: no need to scan the maps a third time.
        if not (np.isfinite(spatial_max).all() and np.isfinite(spatial_mean).all()):
            raise ValueError("feature maps contain NaN or infinity")

        # First what can still refuse the batch (an image seen before), so a refused batch
        # leaves the accumulator as it was.
        top = _TopLists.from_batch(feature_maps, spatial_max, labels, path_ids, self.top_k)
        self._top = _combine(self._top, top, self.top_k)
        self._map_shape = feature_maps.shape[1:3]
        self._n_images += len(paths)
        self._spatial_mean_sum += spatial_mean.sum(axis=0)
        self._spatial_mean_square_sum += np.square(spatial_mean).sum(axis=0)
        np.add.at(self._class_spatial_mean_sum, labels, spatial_mean)
        self._class_image_count += np.bincount(labels, minlength=self.n_classes)
        self._active_image_count += (spatial_max > 0).sum(axis=0)
        np.maximum(self._channel_max, spatial_max.max(axis=0), out=self._channel_max)
        np.maximum(self._max_spatial_mean, spatial_mean.max(axis=0), out=self._max_spatial_mean)

    def merge(self, other: LayerStatsAccumulator) -> LayerStatsAccumulator:
        """A new accumulator holding both; neither input changes."""
        self._check_compatible(other)
        merged = LayerStatsAccumulator(self.n_channels, self.n_classes, self.top_k)
        merged._n_images = self._n_images + other._n_images
        merged._spatial_mean_sum = self._spatial_mean_sum + other._spatial_mean_sum
        merged._spatial_mean_square_sum = (self._spatial_mean_square_sum
                                           + other._spatial_mean_square_sum)
        merged._class_spatial_mean_sum = (self._class_spatial_mean_sum
                                          + other._class_spatial_mean_sum)
        merged._class_image_count = self._class_image_count + other._class_image_count
        merged._active_image_count = self._active_image_count + other._active_image_count
        merged._channel_max = np.maximum(self._channel_max, other._channel_max)
        merged._max_spatial_mean = np.maximum(self._max_spatial_mean, other._max_spatial_mean)
        merged._map_shape = self._map_shape or other._map_shape
        merged._top = _combine(self._top, other._top, self.top_k)
        return merged

    def result(self) -> LayerStats:
        if self._n_images == 0:
            raise ValueError("no images have been added, so there are no statistics")
        channel_mean = self._spatial_mean_sum / self._n_images
        active_share = self._active_image_count / self._n_images
        # E[x^2] - E[x]^2 can come out a rounding error below 0.
        channel_std = np.sqrt(np.maximum(
            self._spatial_mean_square_sum / self._n_images - np.square(channel_mean), 0.0))
        class_has_images = self._class_image_count > 0
        class_means = np.divide(self._class_spatial_mean_sum, self._class_image_count[:, None],
                                out=np.full_like(self._class_spatial_mean_sum, np.nan),
                                where=class_has_images[:, None])
        selectivity = _selectivity(class_means, class_has_images)
        channels = tuple(
            ChannelStats(index=index, mean=float(channel_mean[index]),
                         max=float(self._channel_max[index]),
                         active_share=float(active_share[index]),
                         dead=bool(self._active_image_count[index] == 0),
                         class_means=tuple(float(m) for m in class_means[:, index]),
                         selectivity=float(selectivity[index]),
                         top=self._top.channel(index),
                         std=float(channel_std[index]),
                         max_mean=float(self._max_spatial_mean[index]))
            for index in range(self.n_channels))
        return LayerStats(n_images=self._n_images, channels=channels)

    def _check_batch(self, feature_maps: np.ndarray, labels: np.ndarray,
                     paths: list[str]) -> None:
        if feature_maps.ndim != 4 or feature_maps.shape[3] != self.n_channels:
            raise ValueError(f"feature maps must be (n, h, w, {self.n_channels}), "
                             f"got {feature_maps.shape}")
        if 0 in feature_maps.shape[1:3]:
            raise ValueError(f"feature maps have no positions: {feature_maps.shape}")
        if self._map_shape is not None and feature_maps.shape[1:3] != self._map_shape:
            raise ValueError(f"feature maps are {feature_maps.shape[1:3]} but earlier batches "
                             f"were {self._map_shape}")
        if labels.shape != (len(paths),) or feature_maps.shape[0] != len(paths):
            raise ValueError(f"{feature_maps.shape[0]} maps, {labels.shape} labels and "
                             f"{len(paths)} paths do not match")
        if len(paths) and not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be integers, got {labels.dtype}")
        if len(paths) and (labels.min() < 0 or labels.max() >= self.n_classes):
            raise ValueError(f"labels must lie in 0..{self.n_classes - 1}")
        if not all(isinstance(path, str) for path in paths):
            raise ValueError("paths must be str")
        if len(set(paths)) != len(paths):
            raise ValueError("a batch holds the same image path twice")

    def _check_compatible(self, other: LayerStatsAccumulator) -> None:
        mine = (self.n_channels, self.n_classes, self.top_k)
        theirs = (other.n_channels, other.n_classes, other.top_k)
        if mine != theirs:
            raise ValueError(f"cannot merge (channels, classes, top_k) {mine} with {theirs}")
        if None not in (self._map_shape, other._map_shape) and self._map_shape != other._map_shape:
            raise ValueError(f"cannot merge {self._map_shape} maps with {other._map_shape} maps")
