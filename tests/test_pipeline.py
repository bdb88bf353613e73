"""The build's stages: shards of whole batches, the fixed merge tree (engines.fold_in_order),
the level and pixel caches."""

from __future__ import annotations

import dataclasses
import errno
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import browser
import fixture_models
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reportgen import pipeline
from reportgen.data import ImageRecord, Split
from reportgen.engines import fold_in_order
from reportgen.inputs import decide


def reference_tree(lo: int, hi: int):
    """The merge tree over shards lo..hi-1 written recursively: the left part is the largest
    power of two below the count, as a binary counter groups them."""
    if hi - lo == 1:
        return lo
    left = 1 << ((hi - lo - 1).bit_length() - 1)
    return (reference_tree(lo, lo + left), reference_tree(lo + left, hi))


@given(st.integers(min_value=1, max_value=70))
def test_fold_merges_along_a_tree_that_depends_only_on_the_number_of_shards(n):
    assert fold_in_order(range(n), lambda a, b: (a, b)) == reference_tree(0, n)


def test_fold_keeps_shard_order_and_refuses_nothing_to_merge():
    assert fold_in_order([[0], [1], [2], [3], [4]], lambda a, b: a + b) == [0, 1, 2, 3, 4]
    assert fold_in_order([(2, 5)], lambda a, b: a + b) == (2, 5)
    assert fold_in_order(((x,) for x in range(3)), lambda a, b: a + b) == (0, 1, 2)
    with pytest.raises(ValueError, match="nothing to merge"):
        fold_in_order([], lambda a, b: a + b)


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1, max_size=40))
def test_fold_sums_floats_as_the_reference_tree_does_bit_for_bit(values):
    def evaluate(tree):
        return values[tree] if isinstance(tree, int) else evaluate(tree[0]) + evaluate(tree[1])

    assert fold_in_order(values, lambda a, b: a + b) == evaluate(reference_tree(0, len(values)))


def test_shards_are_whole_batches_in_order():
    cut = pipeline.shards(list(range(100, 123)), batch_size=3, batches_per_shard=2)
    assert [shard.number for shard in cut] == [0, 1, 2, 3]
    assert [shard.indices for shard in cut] == [tuple(range(100 + 6 * k, min(123, 106 + 6 * k)))
                                                for k in range(4)]
    assert pipeline.shards([], batch_size=3) == []


@pytest.mark.slow
def test_the_caches_change_no_byte_of_the_site(small_build, tmp_path, monkeypatch):
    """Drawing from the levels the first pass kept, from its pixels (the network run again) or
    from the files decoded again gives the same site, for a few of the images."""
    from reportgen.stages import build

    options = dataclasses.replace(small_build.options, model_path=small_build.model,
                                  max_gallery_images=5)
    made = []  # (level cache?, pixel cache?) of each build
    real_create = pipeline.create_caches

    def create_caches(*args, **kwargs):
        caches = real_create(*args, **kwargs)
        made.append(tuple(cache is not None for cache in caches))
        return caches

    monkeypatch.setattr(pipeline, "create_caches", create_caches)
    sites = {}
    for name, level_bytes, pixel_bytes in (("levels", None, None), ("pixels", 0, None),
                                           ("decoded", 0, 0)):
        if level_bytes is not None:
            monkeypatch.setattr(pipeline, "LEVEL_CACHE_MAX_BYTES", level_bytes)
        if pixel_bytes is not None:
            monkeypatch.setattr(pipeline, "PIXEL_CACHE_MAX_BYTES", pixel_bytes)
        build(dataclasses.replace(options, out=tmp_path / name), echo=lambda line: None)
        sites[name] = browser.read_tree(tmp_path / name)
    assert made == [(True, False), (False, True), (False, False)]
    assert not any(cache in path for path in sites["levels"]
                   for cache in (pipeline.LEVEL_CACHE_NAME, pipeline.PIXEL_CACHE_NAME))
    assert sum(path.startswith("assets/maps/") for path in sites["levels"]) > 0
    assert sites["levels"] == sites["pixels"] == sites["decoded"]


@pytest.mark.slow
def test_a_full_disk_while_the_cache_is_written_is_one_line_and_the_old_site_stays(
        small_build, tmp_path, monkeypatch):
    from reportgen.errors import UserError
    from reportgen.stages import build

    site = tmp_path / "site"
    shutil.copytree(small_build.path, site)
    before = browser.read_tree(site)
    real_write = Path.write_bytes

    def full_disk(path, data):
        if pipeline.LEVEL_CACHE_NAME in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, data)

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    options = dataclasses.replace(small_build.options, model_path=small_build.model, out=site)
    with pytest.raises(UserError, match="the disk is full"):
        build(options, echo=lambda line: None)
    assert browser.read_tree(site) == before


def test_a_worker_lets_one_batch_at_a_time_into_the_network(tmp_path):
    """The local engine runs two shards in threads; the memory plan counts one forward pass."""
    model = fixture_models.sequential_with_input()
    plan = pipeline.PassPlan(
        model_file=tmp_path / "unused.keras", trust_model=False,
        contract=decide(model, None, "unit"),
        test=Split(tmp_path, ("a", "b", "c"), (ImageRecord("a/1.png", 0, "a"),), (), ()),
        true_labels=(0,), image_slugs=("a",), layer_paths=("conv",), class_count=3,
        batch_size=2, explain=False, cam_layer=None, colormap="viridis", scale="layer", jobs=1,
        target=tmp_path / "site", staging=tmp_path, pictures="png", pixel_cache=None)
    worker = pipeline.Worker(plan, model)
    lock, inside, most = threading.Lock(), [0], [0]
    real_probe = worker.probe

    def probe(inputs):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.02)
        with lock:
            inside[0] -= 1
        return real_probe(inputs)

    worker.probe = probe
    images = np.zeros((2, 8, 8, 3), np.float32)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda _: worker.forward(images, np.zeros(2, np.int64)), range(8)))
    assert most[0] == 1
