"""The worker's timer: the seam through which the benchmark times the build's own passes."""

from __future__ import annotations

import shutil
from pathlib import Path

import browser
import fixture_models
import numpy as np
import pytest
from PIL import Image

from reportgen import pipeline
from reportgen.data import scan_split
from reportgen.inputs import decide
from reportgen.site import SiteWriter

N_IMAGES, BATCH = 6, 4  # two batches, the second a short one
COMMON = {"decode", "forward", "statistics", "draw inputs", "write", "write the cache",
          "draw feature maps"}
STAGES = {"levels": COMMON | {"keep levels", "read the level cache"},
          "pixels": COMMON | {"read the pixel cache"}}
FORWARD_PASSES = {"levels": 2, "pixels": 4}  # per batch: the first pass's, and the drawing's


def run_passes(model, folder: Path, site: Path, timer,
               cache: str) -> tuple[pipeline.FirstPassResult, dict]:
    """Both passes over every image into ``site``: (the first pass's result, {file: bytes})."""
    test = scan_split(folder)
    contract = decide(model, None, "unit")
    every_image = pipeline.Shard(0, tuple(range(N_IMAGES)))
    with SiteWriter(site) as writer:
        level_cache, pixel_cache = pipeline.create_caches(
            test, contract, [(8, 8, 4), (4, 4, 4)], writer.temp)
        if cache == "pixels":
            level_cache.rmdir()
            level_cache, pixel_cache = None, pipeline.create_pixel_cache(test, contract,
                                                                         writer.temp)
        plan = pipeline.PassPlan(
            model_file=folder / "unused.keras", trust_model=False, contract=contract, test=test,
            true_labels=tuple(record.label for record in test.images),
            image_slugs=tuple(f"image-{i}" for i in range(N_IMAGES)),
            layer_paths=("conv", "pool"), class_count=3, batch_size=BATCH, explain=True,
            cam_layer=None, colormap="viridis", scale="layer", jobs=1, target=writer.target,
            staging=writer.temp, level_cache=level_cache, pixel_cache=pixel_cache,
            pictures="png")
        worker = pipeline.Worker(plan, model, timer=timer)
        first = pipeline.first_pass(worker, every_image)
        pipeline.draw_pass(worker, every_image, [pipeline.DrawLayer("conv", (0, 2)),
                                                 pipeline.DrawLayer("pool", (1,))])
        shutil.rmtree(level_cache or pixel_cache)
    return first, browser.read_tree(site)


@pytest.mark.slow  # runs the passes, which the quick loop refuses
@pytest.mark.parametrize("cache", ["levels", "pixels"])
def test_a_timer_runs_every_stage_of_both_passes_and_changes_nothing(tmp_path, cache):
    model = fixture_models.sequential_with_input()
    rng = np.random.default_rng(0)
    for index in range(N_IMAGES):
        path = tmp_path / "data" / "abc"[index % 3] / f"{index}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)
    calls: list[str] = []

    def recording(stage, function, *args):
        calls.append(stage)
        return function(*args)

    untimed, untimed_files = run_passes(model, tmp_path / "data", tmp_path / "untimed",
                                        pipeline.untimed, cache)
    timed, timed_files = run_passes(model, tmp_path / "data", tmp_path / "timed", recording,
                                    cache)

    assert set(calls) == STAGES[cache]
    assert calls.count("forward") == FORWARD_PASSES[cache]  # two batches
    assert calls.count("write") == len(timed_files) - 1  # all but SiteWriter's own marker
    assert timed_files == untimed_files
    np.testing.assert_array_equal(timed.probabilities, untimed.probabilities)
    np.testing.assert_array_equal(timed.cam["predicted_maps"], untimed.cam["predicted_maps"])
