"""Session fixtures shared by the end-to-end tests: one small dataset, one site, one browser.

The site is built once per session with a very short training run; tests that change a
site work on a copy of it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import browser
import pytest
from hypothesis import HealthCheck, settings

# Property tests check results, never speed: on a busy shared machine (or under mutation
# testing) an example may take seconds, which must not fail a test.
settings.register_profile("reportgen", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("reportgen")

SMALL_PER_CLASS = 12  # 4 test images per class: 12 in all
SMALL_IMAGES_PER_PAGE = 4  # so each layer gallery has 3 pages


@dataclass(frozen=True)
class BuiltSite:
    path: Path
    model: Path  # the trained model the build cached (with its sidecar)
    options: object  # the reportgen.stages.BuildOptions it was built with
    log: tuple[str, ...]  # what the build reported, one line each


# Under mutation testing (tests/mutation.py), the mutated module's own tests run first, so a
# mutant they kill costs one test file, not every test that happens to call the module.
OWN_TESTS = {"site": "test_site_writer.py", "report": "test_render.py"}


def pytest_collection_modifyitems(config, items):
    mutant = os.environ.get("MUTANT_UNDER_TEST", "")
    if not mutant.startswith("reportgen."):
        return
    module = mutant.split(".")[1]
    own = OWN_TESTS.get(module, f"test_{module}.py")
    items.sort(key=lambda item: item.path.name != own)  # stable: otherwise in collection order


def _refuse(what: str, nodeid: str):
    def refused(*args, **kwargs):
        pytest.fail(f"{nodeid} {what} but is not marked slow; mark it @pytest.mark.slow")
    return refused


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    with _fast_tests_stay_fast(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    with _fast_tests_stay_fast(item):
        return (yield)


@contextlib.contextmanager
def _fast_tests_stay_fast(item) -> Iterator[None]:
    """A test not marked slow (fixtures included) may neither train a network nor build a site.

    `pytest -m "not slow"` must stay a quick loop. Builds in a subprocess are out of sight
    here: those tests are marked by hand.
    """
    if item.get_closest_marker("slow"):
        yield
        return
    import reportgen.pipeline

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reportgen.pipeline, "first_pass",
                      _refuse("builds a real site", item.nodeid))
        if "keras" in sys.modules:  # nothing can train before Keras is imported
            patch.setattr(sys.modules["keras"].Model, "fit",
                          _refuse("trains a network", item.nodeid))
        yield


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> Path:
    from reportgen import shapes

    path = tmp_path_factory.mktemp("data") / "shapes"
    shapes.generate(path, per_class=SMALL_PER_CLASS, seed=3)
    return path


@pytest.fixture(scope="session")
def small_build(tmp_path_factory, small_dataset) -> BuiltSite:
    """The small site, built once: 1 epoch of 5 steps, 4 images per gallery page."""
    from reportgen.options import TrainOptions
    from reportgen.stages import BuildOptions, build

    if os.environ.get("SOURCE_DATE_EPOCH"):
        pytest.fail("unset SOURCE_DATE_EPOCH: these tests expect sites without a build date")
    folder = tmp_path_factory.mktemp("small")
    log: list[str] = []
    options = BuildOptions(data=small_dataset, out=folder / "site",
                           model_cache=folder / "model" / "model.keras",
                           images_per_page=SMALL_IMAGES_PER_PAGE, jobs=2,
                           train=TrainOptions(epochs=1, steps_per_epoch=5))
    build(options, echo=log.append)
    return BuiltSite(path=folder / "site", model=options.model_cache, options=options,
                     log=tuple(log))


@pytest.fixture(scope="session")
def small_site(small_build) -> Path:
    """A built site; read it, never change it (copy it first)."""
    return small_build.path


@pytest.fixture(scope="session")
def small_model(small_build) -> Path:
    """The .keras model behind the small site, for builds with --model."""
    return small_build.model


@pytest.fixture(scope="session")
def keras_application():
    """keras.applications.NAME untrained at 32x32x3 with 3 classes, built once a session.

    Building one takes seconds; the layer plan and the input contract tests read the same
    graphs. Read them, never change them.
    """
    from reportgen.keras_import import keras

    built: dict[str, object] = {}

    def get(name: str):
        if name not in built:
            built[name] = getattr(keras.applications, name)(weights=None, input_shape=(32, 32, 3),
                                                            classes=3)
        return built[name]
    return get


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    """One headless chromium for the whole session."""
    with browser.launch() as launched:
        yield launched


@pytest.fixture(scope="session")
def small_site_crawl(small_site, chromium) -> dict[str, browser.PageReport]:
    return browser.crawl(small_site, chromium)
