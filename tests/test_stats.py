"""The layer atlas statistics against a brute-force recomputation, and merge == one pass."""

from __future__ import annotations

import dataclasses
import math
import re
import statistics
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reportgen.stats import MEAN_REL_TOL, TOP_K, LayerStats, LayerStatsAccumulator

N_CLASSES = 5
PRESENT_CLASSES = (0, 2, 3)  # classes 1 and 4 have no images
ZERO_CHANNEL, NEGATIVE_CHANNEL, CONSTANT_CHANNEL = 0, 1, 2  # dead, dead, every score tied


def make_layer(seed: int, n_images: int = 40, map_shape: tuple[int, int] = (4, 3),
               n_channels: int = 7) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """ReLU-like maps with dead channels, many tied spatial maxima and two absent classes."""
    rng = np.random.default_rng(seed)
    shape = (n_images, *map_shape, n_channels)
    # Half-steps collide often, so tied scores are everywhere; smooth values cover the rest.
    stepped = rng.integers(-2, 4, size=shape) * 0.5
    smooth = rng.normal(size=shape)
    feature_maps = np.where(np.arange(n_channels) % 2 == 0, stepped, smooth)
    feature_maps = np.maximum(feature_maps, 0).astype(np.float32)
    feature_maps[..., ZERO_CHANNEL] = 0.0
    feature_maps[..., NEGATIVE_CHANNEL] = -rng.random(shape[:3]) - 0.1
    feature_maps[..., CONSTANT_CHANNEL] = 0.75
    labels = rng.choice(PRESENT_CLASSES, size=n_images)
    # Path order is unrelated to image order, and "img10" sorts before "img2".
    paths = [f"test/img{number}.png" for number in rng.permutation(n_images)]
    return feature_maps, labels, paths


def brute_force(feature_maps: np.ndarray, labels: np.ndarray, paths: list[str],
                n_classes: int, top_k: int) -> list[dict]:
    """Every statistic per channel with plain loops, exact sums and a sort."""
    n_images, height, width, n_channels = feature_maps.shape
    channels = []
    for channel in range(n_channels):
        values = [feature_maps[i, :, :, channel].ravel().tolist() for i in range(n_images)]
        spatial_means = [math.fsum(v) / (height * width) for v in values]
        spatial_maxes = [max(v) for v in values]
        active = [any(x > 0 for x in v) for v in values]
        class_means = []
        for label in range(n_classes):
            members = [spatial_means[i] for i in range(n_images) if labels[i] == label]
            class_means.append(math.fsum(members) / len(members) if members else math.nan)
        present = [m for m in class_means if not math.isnan(m)]
        average = math.fsum(present) / len(present)
        ranked = sorted(range(n_images), key=lambda i: (-spatial_maxes[i], paths[i]))
        channels.append({
            "mean": math.fsum(spatial_means) / n_images,
            "std": statistics.pstdev(spatial_means),
            "max": max(spatial_maxes),
            "active_share": sum(active) / n_images,
            "dead": not any(active),
            "class_means": class_means,
            "selectivity": 0.0 if average == 0 else (max(present) - min(present)) / average,
            "top": [(paths[i], int(labels[i]), spatial_maxes[i], feature_maps[i, :, :, channel])
                    for i in ranked[:top_k]],
        })
    return channels


def assert_matches(stats: LayerStats, expected: list[dict], n_images: int) -> None:
    assert stats.n_images == n_images
    assert [channel.index for channel in stats.channels] == list(range(len(expected)))
    for channel, want in zip(stats.channels, expected, strict=True):
        assert channel.mean == pytest.approx(want["mean"], rel=1e-12, abs=0)
        assert channel.std == pytest.approx(want["std"], rel=1e-9, abs=1e-12)
        assert channel.max == want["max"]
        assert channel.active_share == want["active_share"]
        assert channel.dead == want["dead"]
        assert channel.class_means == pytest.approx(want["class_means"], rel=1e-12, abs=0,
                                                    nan_ok=True)
        assert channel.selectivity == pytest.approx(want["selectivity"], rel=1e-12, abs=1e-12)
        got_top = [(t.path, t.label, t.score) for t in channel.top]
        assert got_top == [(path, label, score) for path, label, score, _ in want["top"]]
        for top_image, (*_, feature_map) in zip(channel.top, want["top"], strict=True):
            assert top_image.feature_map.dtype == np.float32
            np.testing.assert_array_equal(top_image.feature_map, feature_map, strict=True)


def accumulate(feature_maps, labels, paths, batch_starts=(0,), *, n_classes=N_CLASSES,
               top_k=TOP_K) -> LayerStatsAccumulator:
    accumulator = LayerStatsAccumulator(feature_maps.shape[3], n_classes, top_k)
    bounds = [*batch_starts, len(paths)]
    for start, stop in pairwise(bounds):
        accumulator.update(feature_maps[start:stop], labels[start:stop], paths[start:stop])
    return accumulator


def shard(feature_maps, labels, paths, image_indices) -> LayerStatsAccumulator:
    indices = np.asarray(image_indices)
    return accumulate(feature_maps[indices], labels[indices], [paths[i] for i in indices])


# --- against the brute force --------------------------------------------------------------

def test_one_batch_matches_brute_force():
    feature_maps, labels, paths = make_layer(seed=1)
    stats = accumulate(feature_maps, labels, paths).result()
    assert_matches(stats, brute_force(feature_maps, labels, paths, N_CLASSES, TOP_K), 40)


def test_many_uneven_batches_match_brute_force():
    feature_maps, labels, paths = make_layer(seed=2, n_images=50)
    stats = accumulate(feature_maps, labels, paths, batch_starts=(0, 1, 2, 9, 10, 33)).result()
    assert_matches(stats, brute_force(feature_maps, labels, paths, N_CLASSES, TOP_K), 50)


def test_the_fixture_really_has_ties_dead_channels_and_absent_classes():
    feature_maps, labels, paths = make_layer(seed=1)
    spatial_max = feature_maps.max(axis=(1, 2))
    tied_channel = spatial_max[:, 4]
    assert len(set(tied_channel.tolist())) < len(tied_channel) - 10
    assert set(labels.tolist()) == set(PRESENT_CLASSES)
    assert (spatial_max[:, [ZERO_CHANNEL, NEGATIVE_CHANNEL]] <= 0).all()


def test_batch_boundaries_do_not_matter():
    feature_maps, labels, paths = make_layer(seed=3, n_images=64)
    one_pass = accumulate(feature_maps, labels, paths).result()
    for starts in [(0, 32), (0, 5, 6, 7, 40), tuple(range(64))]:
        batched = accumulate(feature_maps, labels, paths, batch_starts=starts).result()
        assert batched.differences(one_pass) == []


def test_ties_are_broken_by_path_whatever_the_batch_order():
    feature_maps, labels, paths = make_layer(seed=4, n_images=30)
    reverse = np.arange(30)[::-1]
    stats = accumulate(feature_maps[reverse], labels[reverse], [paths[i] for i in reverse],
                       batch_starts=(0, 7, 19)).result()
    constant = stats.channels[CONSTANT_CHANNEL]
    assert [t.path for t in constant.top] == sorted(paths)[:TOP_K]
    assert {t.score for t in constant.top} == {0.75}


def test_the_atlas_keeps_the_9_most_activating_images_by_default():
    """The guide promises 9 (docs/site.md): a literal here, not TOP_K, so changing the constant is caught."""
    feature_maps, labels, paths = make_layer(seed=7, n_images=25)
    accumulator = LayerStatsAccumulator(feature_maps.shape[3], N_CLASSES)  # the default top_k
    for start, stop in pairwise((0, 4, 13, 25)):
        accumulator.update(feature_maps[start:stop], labels[start:stop], paths[start:stop])
    stats = accumulator.result()
    assert {len(channel.top) for channel in stats.channels} == {9}
    assert_matches(stats, brute_force(feature_maps, labels, paths, N_CLASSES, top_k=9), 25)
    # Scores tie across the cut after the 9th place, so the order by path decides who is in.
    scores = feature_maps.max(axis=(1, 2))[:, 4]
    ninth = sorted(scores, reverse=True)[8]
    assert (scores > ninth).sum() < 9 < (scores >= ninth).sum()


def test_top_k_with_fewer_images_than_k():
    feature_maps, labels, paths = make_layer(seed=5, n_images=4)
    stats = accumulate(feature_maps, labels, paths, batch_starts=(0, 3)).result()
    assert all(len(channel.top) == 4 for channel in stats.channels)
    assert_matches(stats, brute_force(feature_maps, labels, paths, N_CLASSES, TOP_K), 4)


# --- merging ------------------------------------------------------------------------------

def test_merging_two_halves_equals_one_pass():
    feature_maps, labels, paths = make_layer(seed=6, n_images=45)
    one_pass = accumulate(feature_maps, labels, paths).result()
    order = np.random.default_rng(6).permutation(45)
    first = shard(feature_maps, labels, paths, order[:20])
    second = shard(feature_maps, labels, paths, order[20:])
    assert first.merge(second).result().differences(one_pass) == []
    assert second.merge(first).result().differences(one_pass) == []


def test_three_shards_merge_in_any_order_to_one_pass():
    feature_maps, labels, paths = make_layer(seed=7, n_images=50)
    one_pass = accumulate(feature_maps, labels, paths).result()
    shard_of_image = np.random.default_rng(7).integers(0, 3, size=50)
    a, b, c = (shard(feature_maps, labels, paths, np.flatnonzero(shard_of_image == s))
               for s in range(3))
    for merged in (a.merge(b).merge(c), c.merge(a.merge(b)), b.merge(c).merge(a)):
        assert merged.result().differences(one_pass) == []


def test_merge_leaves_its_inputs_unchanged():
    feature_maps, labels, paths = make_layer(seed=8, n_images=30)
    first = shard(feature_maps, labels, paths, range(15))
    second = shard(feature_maps, labels, paths, range(15, 30))
    first_before, second_before = first.result(), second.result()
    merged = first.merge(second)
    more_maps, more_labels, more_paths = make_layer(seed=9, n_images=10)
    merged.update(more_maps + 10, more_labels, [f"more/{path}" for path in more_paths])
    assert first.result().differences(first_before) == []
    assert second.result().differences(second_before) == []


def test_merging_with_an_empty_shard_changes_nothing():
    feature_maps, labels, paths = make_layer(seed=10, n_images=12)
    full = accumulate(feature_maps, labels, paths)
    empty = LayerStatsAccumulator(feature_maps.shape[3], N_CLASSES)
    full_before = full.result()
    assert full.merge(empty).result().differences(full_before) == []
    merged = empty.merge(full)
    assert merged.result().differences(full_before) == []
    merged.update(feature_maps + 10, labels, [f"more/{path}" for path in paths])
    assert full.result().differences(full_before) == []


@settings(max_examples=60, deadline=None)
@given(n_images=st.integers(1, 24), height=st.integers(1, 4), width=st.integers(1, 4),
       n_channels=st.integers(3, 6), top_k=st.integers(1, 6), seed=st.integers(0, 2**32 - 1),
       data=st.data())
def test_any_shards_and_batches_merge_to_one_pass(n_images, height, width, n_channels, top_k,
                                                  seed, data):
    feature_maps, labels, paths = make_layer(seed, n_images, (height, width), n_channels)
    one_pass = accumulate(feature_maps, labels, paths, top_k=top_k).result()
    shard_of_image = data.draw(st.lists(st.integers(0, 2), min_size=n_images,
                                        max_size=n_images))
    shards = []
    for s in range(3):
        indices = [i for i in range(n_images) if shard_of_image[i] == s]
        starts = sorted({0, *data.draw(st.lists(st.integers(0, max(len(indices) - 1, 0))))})
        shards.append(accumulate(feature_maps[indices], labels[indices],
                                 [paths[i] for i in indices], tuple(starts), top_k=top_k))
    merged = shards[2].merge(shards[0]).merge(shards[1])
    assert merged.result().differences(one_pass) == []


# --- dead channels and selectivity --------------------------------------------------------

def test_dead_count_share_and_active_share():
    feature_maps, labels, paths = make_layer(seed=11, n_images=20, n_channels=5)
    feature_maps[:, :, :, 3] = 0.0
    feature_maps[7, 1, 2, 3] = 0.001  # one image, one position: alive, barely
    stats = accumulate(feature_maps, labels, paths).result()
    assert [channel.dead for channel in stats.channels] == [True, True, False, False, False]
    assert stats.dead_count == 2
    assert stats.dead_share == 0.4
    assert stats.channels[3].active_share == 1 / 20
    assert stats.channels[CONSTANT_CHANNEL].active_share == 1.0
    assert stats.mean_activation == pytest.approx(
        sum(channel.mean for channel in stats.channels) / 5, rel=1e-12)


def test_a_channel_firing_only_for_one_class_is_selective_and_a_uniform_one_is_not():
    labels = np.array([0, 1, 2, 1, 0, 2, 1, 0])
    feature_maps = np.zeros((8, 2, 2, 3), np.float32)
    feature_maps[labels == 1, 0, 0, 0] = 4.0  # fires only for class 1, on one position
    feature_maps[..., 1] = 0.7  # fires the same for every image
    paths = [f"img{i}.png" for i in range(8)]
    stats = accumulate(feature_maps, labels, paths, n_classes=4).result()  # class 3 has none
    only_class_1, uniform, dead = stats.channels
    assert only_class_1.class_means[:3] == (0.0, 1.0, 0.0)
    assert math.isnan(only_class_1.class_means[3])
    # (1 - 0) / mean(0, 1, 0): the empty class 3 is left out, or this would be 4.
    assert only_class_1.selectivity == pytest.approx(3.0, rel=1e-12)
    assert uniform.selectivity == 0.0
    assert dead.selectivity == 0.0
    assert [channel.index for channel in stats.by_selectivity()] == [0, 1, 2]


# --- memory and safety --------------------------------------------------------------------

def test_update_keeps_copies_not_the_callers_batch():
    feature_maps, labels, paths = make_layer(seed=12, n_images=10)
    accumulator = accumulate(feature_maps, labels, paths)
    before = accumulator.result()
    feature_maps[:] = 99.0
    assert accumulator.result().differences(before) == []
    with pytest.raises(ValueError, match="read-only"):
        before.channels[3].top[0].feature_map[0, 0] = 1.0


def test_differences_reports_what_differs():
    feature_maps, labels, paths = make_layer(seed=13, n_images=12)
    stats = accumulate(feature_maps, labels, paths).result()
    channel = stats.channels[4]
    nudged = dataclasses.replace(channel, mean=channel.mean * (1 + 1e-9))
    reordered = dataclasses.replace(channel, top=channel.top[::-1])
    for changed in (nudged, reordered):
        other = dataclasses.replace(stats, channels=(*stats.channels[:4], changed,
                                                     *stats.channels[5:]))
        assert len(stats.differences(other)) == 1
    assert stats.differences(stats) == []


def test_differences_name_each_field_and_its_values():
    feature_maps, labels, paths = make_layer(seed=13, n_images=12)
    stats = accumulate(feature_maps, labels, paths).result()
    channel = stats.channels[4]

    def lines(**changes) -> list[str]:
        changed = dataclasses.replace(channel, **changes)
        return stats.differences(dataclasses.replace(stats, channels=(
            *stats.channels[:4], changed, *stats.channels[5:])))

    means = channel.class_means
    assert lines(max=channel.max + 1, mean=channel.mean * 2) == [
        f"channel 4: max {channel.max!r} != {channel.max + 1!r}",
        f"channel 4: mean ({channel.mean},) != ({channel.mean * 2},)"]
    # 1e-10 apart: math.isclose's own default (1e-9) would call this equal.
    assert lines(mean=channel.mean * (1 + 1e-10)) == [
        f"channel 4: mean ({channel.mean},) != ({channel.mean * (1 + 1e-10)},)"]
    assert lines(class_means=(means[0] + 0.5, *means[1:])) == [
        f"channel 4: class_means {means} != {(means[0] + 0.5, *means[1:])}"]
    assert math.isnan(means[1])  # class 1 has no images
    assert lines(class_means=(means[0], 1.0, *means[2:])) == [
        f"channel 4: class_means {means} != {(means[0], 1.0, *means[2:])}"]
    assert lines(selectivity=channel.selectivity + 1) == [
        f"channel 4: selectivity ({channel.selectivity},) != ({channel.selectivity + 1},)"]
    assert lines(top=channel.top[::-1]) == [
        f"channel 4: top {[t.path for t in channel.top]} != {[t.path for t in channel.top[::-1]]} "
        "(or their labels, scores or maps differ)"]


@pytest.mark.parametrize("mean", [0.5, 1.5, 10.0])
def test_std_is_compared_within_rel_tol_of_the_means_size_or_of_1(mean):
    """A spread of values about their mean: absolute rounding scales with the mean (at least 1)."""
    feature_maps, labels, paths = make_layer(seed=13, n_images=12)
    stats = accumulate(feature_maps, labels, paths).result()
    base = dataclasses.replace(stats.channels[4], mean=mean, std=0.25)
    allowed = MEAN_REL_TOL * max(1.0, mean)

    def lines(std: float) -> list[str]:
        def with_channel(channel):
            return dataclasses.replace(stats, channels=(*stats.channels[:4], channel,
                                                        *stats.channels[5:]))
        return with_channel(base).differences(with_channel(dataclasses.replace(base, std=std)))

    assert lines(0.25 + 0.9 * allowed) == []
    assert lines(0.25 + 1.1 * allowed) == [f"channel 4: std (0.25,) != ({0.25 + 1.1 * allowed},)"]


def test_selectivity_near_zero_is_compared_with_an_absolute_tolerance():
    """Selectivity can be a tiny difference of means: within 1e-12 per class it agrees."""
    labels = np.array([0, 1, 2, 3, 4] * 2)
    feature_maps = np.zeros((10, 1, 1, 1), np.float32)
    paths = [f"img{i}.png" for i in range(10)]
    stats = accumulate(feature_maps, labels, paths).result()
    assert stats.channels[0].selectivity == 0.0

    def with_selectivity(value: float) -> LayerStats:
        return dataclasses.replace(stats, channels=(
            dataclasses.replace(stats.channels[0], selectivity=value),))

    assert with_selectivity(0.0).differences(with_selectivity(4e-12)) == []  # within 5 x 1e-12
    assert with_selectivity(0.0).differences(with_selectivity(6e-12)) != []


def test_top_images_are_equal_only_with_equal_maps_of_equal_type():
    feature_maps, labels, paths = make_layer(seed=17, n_images=12)
    top = accumulate(feature_maps, labels, paths).result().channels[4].top[0]
    assert top == dataclasses.replace(top, feature_map=top.feature_map.copy())
    assert top != dataclasses.replace(top, feature_map=top.feature_map + 1)
    assert top != dataclasses.replace(top, feature_map=top.feature_map.astype(np.float64))
    assert top != dataclasses.replace(top, path="other.png")


def test_a_merge_keeps_checking_the_map_size():
    feature_maps, labels, paths = make_layer(seed=18, n_images=6)
    empty = LayerStatsAccumulator(feature_maps.shape[3], N_CLASSES)
    full = accumulate(feature_maps, labels, paths)
    for merged in (full.merge(empty), empty.merge(full)):
        with pytest.raises(ValueError, match=r"feature maps are \(2, 3\) but earlier batches were "
                                             r"\(4, 3\)"):
            merged.update(feature_maps[:, :2], labels, [f"more/{path}" for path in paths])
    other_size = accumulate(feature_maps[:, :2], labels, [f"more/{path}" for path in paths])
    with pytest.raises(ValueError, match=r"^cannot merge \(4, 3\) maps with \(2, 3\) maps$"):
        full.merge(other_size)


@pytest.mark.parametrize(("change", "message"), [
    (lambda fm, lb, pt: (fm[..., :3], lb, pt), "must be"),
    (lambda fm, lb, pt: (fm, lb + N_CLASSES, pt), "labels must lie"),
    (lambda fm, lb, pt: (fm, lb, [pt[0]] * len(pt)), "same image path twice"),
    (lambda fm, lb, pt: (np.where(fm > 0, np.nan, fm), lb, pt), "NaN"),
    (lambda fm, lb, pt: (fm[:, :2], lb, pt), "earlier batches"),
])
def test_bad_batches_are_refused(change, message):
    feature_maps, labels, paths = make_layer(seed=14, n_images=6)
    accumulator = accumulate(feature_maps, labels, paths)
    more_maps, more_labels, more_paths = make_layer(seed=15, n_images=6)
    more_paths = [f"more/{path}" for path in more_paths]
    with pytest.raises(ValueError, match=message):
        accumulator.update(*change(more_maps, more_labels, more_paths))


def test_an_image_added_twice_is_refused():
    feature_maps, labels, paths = make_layer(seed=16, n_images=6)
    first = accumulate(feature_maps, labels, paths)
    before = first.result()
    with pytest.raises(ValueError, match="more than once"):
        first.update(feature_maps[:2], labels[:2], paths[:2])
    assert first.result().differences(before) == []
    with pytest.raises(ValueError, match="more than once"):
        first.merge(accumulate(feature_maps, labels, paths))


def test_the_repeated_image_is_named():
    maps = np.arange(5, dtype=np.float32).reshape(5, 1, 1, 1)
    labels = np.zeros(5, np.int64)
    first = accumulate(maps[:3], labels[:3], ["a.png", "c.png", "e.png"], n_classes=1)
    second = accumulate(maps[3:], labels[3:], ["d.png", "c.png"], n_classes=1)
    with pytest.raises(ValueError, match=r"^image 'c.png' was added more than once$"):
        first.merge(second)


def test_selectivity_is_zero_where_the_class_means_average_zero():
    """Class means of -1 and +1 (maps need not be ReLU outputs) average to 0: no division."""
    labels = np.array([0, 1] * 4)
    feature_maps = np.where(labels == 0, -1.0, 1.0).astype(np.float32).reshape(8, 1, 1, 1)
    feature_maps = np.repeat(feature_maps, 9, axis=3)
    stats = accumulate(feature_maps, labels, [f"img{i}.png" for i in range(8)], n_classes=2).result()
    assert [channel.selectivity for channel in stats.channels] == [0.0] * 9


def test_paths_labels_and_maps_come_back_as_plain_types():
    feature_maps, labels, paths = make_layer(seed=19, n_images=8)
    stats = accumulate(feature_maps.astype(np.float64), labels, paths).result()
    for channel in stats.channels:
        for top in channel.top:
            assert type(top.path) is str and type(top.label) is int and type(top.score) is float
            assert top.feature_map.dtype == np.float32


@pytest.mark.parametrize(("shape", "message"), [
    ((2, 0, 3, 7), "feature maps have no positions: (2, 0, 3, 7)"),
    ((2, 3, 0, 7), "feature maps have no positions: (2, 3, 0, 7)"),
])
def test_maps_without_positions_are_refused(shape, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        LayerStatsAccumulator(7, N_CLASSES).update(np.zeros(shape, np.float32), np.zeros(2, np.int64),
                                                   ["a.png", "b.png"])


def test_labels_of_the_wrong_length_are_refused():
    feature_maps, labels, paths = make_layer(seed=20, n_images=5)
    with pytest.raises(ValueError, match=r"^5 maps, \(4,\) labels and 5 paths do not match$"):
        LayerStatsAccumulator(7, N_CLASSES).update(feature_maps, labels[:4], paths)


@pytest.mark.parametrize(("labels", "paths", "message"), [
    ([0, 5], ["a.png", "b.png"], "labels must lie in 0..4"),
    ([-1, 0], ["a.png", "b.png"], "labels must lie in 0..4"),
    ([0.0, 1.0], ["a.png", "b.png"], "labels must be integers, got float64"),
    ([0, 1], ["a.png", Path("b.png")], "paths must be str"),
    ([0, 1], ["a.png", "a.png"], "a batch holds the same image path twice"),
], ids=["label = classes", "label -1", "float labels", "a Path", "same path"])
def test_bad_labels_and_paths_are_refused_by_name(labels, paths, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        LayerStatsAccumulator(7, N_CLASSES).update(np.ones((2, 2, 2, 7), np.float32),
                                                   np.array(labels), paths)


@pytest.mark.parametrize("sizes", [(0, 2, 9), (3, 0, 9), (3, 2, 0)],
                         ids=["no channels", "no classes", "top 0"])
def test_an_accumulator_needs_a_channel_a_class_and_a_top_image(sizes):
    with pytest.raises(ValueError, match="^n_channels, n_classes and top_k must all be at least 1$"):
        LayerStatsAccumulator(*sizes)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_maps_are_refused(bad):
    feature_maps, labels, paths = make_layer(seed=21, n_images=4)
    feature_maps[2, 1, 1, 5] = bad  # one value: -inf leaves every maximum finite
    with pytest.raises(ValueError, match="^feature maps contain NaN or infinity$"):
        LayerStatsAccumulator(7, N_CLASSES).update(feature_maps, labels, paths)


def test_mismatched_accumulators_and_empty_results_are_refused():
    with pytest.raises(ValueError, match="cannot merge"):
        LayerStatsAccumulator(3, 2).merge(LayerStatsAccumulator(4, 2))
    with pytest.raises(ValueError, match="^no images have been added, so there are no statistics$"):
        LayerStatsAccumulator(3, 2).result()


@pytest.mark.parametrize("order", [(0, 1, 2, 3), (3, 1, 0, 2), (2, 3, 1, 0)])
def test_top_images_pooled_in_any_order_are_those_of_one_accumulator(order):
    """A build in one process pools each shard's top images as the shard finishes (TopPool),
    whatever the order, while the sums go through the fold: the same statistics, maps too."""
    from reportgen.stats import TopPool

    layers = [make_layer(seed=23, n_images=40), make_layer(seed=29, n_images=40, n_channels=3)]
    whole = [accumulate(*layer).result() for layer in layers]
    cuts = [(0, 9), (9, 20), (20, 33), (33, 40)]
    shards = [[accumulate(maps[a:b], labels[a:b], paths[a:b]) for maps, labels, paths in layers]
              for a, b in cuts]
    pool = TopPool()
    for shard in order:
        pool.absorb(shards[shard])
        assert all(accumulator.take_top() is None for accumulator in shards[shard])
    merged = [shards[0][i].merge(shards[1][i]).merge(shards[2][i].merge(shards[3][i]))
              for i in range(len(layers))]
    pool.restore(merged)
    for got, want in zip((m.result() for m in merged), whole, strict=True):
        assert got.differences(want) == []
