"""Hostile names and bad files: the site must escape every name, skip every bad file out loud,
ignore operating-system litter, and keep every link working.

One real build on a dataset whose class and file names are made to break HTML, URLs and
file systems; then a property test that feeds the renderer arbitrary text, no TensorFlow.
"""

from __future__ import annotations

import json
import posixpath
import re
import shutil
from html.parser import HTMLParser
from itertools import cycle
from pathlib import Path
from urllib.parse import urlsplit

import browser
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SITE_NAME = re.compile(r"^[a-z0-9._/-]+$")

# Sorted, as reportgen orders classes: "<" < "a" < "e" < "ü".
SCRIPT_CLASS = "<script>alert(1)<"  # with its subfolder "script>", paths hold "</script>"
TAG_CLASS = 'a<b>&"c'
EMPTY_CLASS = "empty ☐"  # no test image at all
UNICODE_CLASS = "ü ñ 東京 #1?%"
CLASSES = (SCRIPT_CLASS, TAG_CLASS, EMPTY_CLASS, UNICODE_CLASS)

TEST_IMAGES = (
    f"{SCRIPT_CLASS}/script>/x.png",  # the path reads <script>alert(1)</script>/x.png
    f"{SCRIPT_CLASS}/<img src=x onerror=alert(1)>.png",
    f"{SCRIPT_CLASS}/plain.png",
    f'{TAG_CLASS}/a<b>"c&d#e?f%g h.png',
    f"{TAG_CLASS}/кошка 1.png",
    f"{TAG_CLASS}/%2e%2e%2f.png",
    f"{TAG_CLASS}/#top.png",
    f"{UNICODE_CLASS}/?q=1&x=2.png",
    f"{UNICODE_CLASS}/100% ü.png",
    f'{UNICODE_CLASS}/名前 "quoted".png',
)
# Bad files that must be listed as skipped, with a reason.
SKIPPED = {
    f"test_set/{TAG_CLASS}/truncated.png": "truncated",
    f"test_set/{UNICODE_CLASS}/notes.png": "not a PNG",
    f"test_set/{TAG_CLASS}/._x.png": "macOS resource fork",
    f"test_set/{SCRIPT_CLASS}/readme.txt": "not an image file",
}
# Litter that must appear nowhere: not in the site, not in the build output.
IGNORED = (f"test_set/{TAG_CLASS}/.DS_Store", f"test_set/{UNICODE_CLASS}/Thumbs.db",
           "test_set/__MACOSX/._stray.png", f"test_set/{TAG_CLASS}/__MACOSX/._y.png",
           f"training_set/{TAG_CLASS}/.DS_Store", f"test_set/{EMPTY_CLASS}/.DS_Store")
IGNORED_MARKS = (".DS_Store", "DS_Store", "Thumbs.db", "__MACOSX", "._stray", "._y.png")
RAW_MARKUP = ("<script>alert(1)</script>", "<script>alert(1)<", "<img src=x onerror=alert(1)>",
              'a<b>&"c', 'a<b>"c&d')


def make_hostile_dataset(root: Path, source: Path) -> None:
    pngs = cycle(sorted(source.rglob("*.png")))
    for name in CLASSES:
        for i in range(4):
            path = root / "training_set" / name / f"train {i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(next(pngs), path)
    (root / "test_set" / EMPTY_CLASS).mkdir(parents=True)
    for relative in TEST_IMAGES:
        path = root / "test_set" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(next(pngs), path)
    good = next(pngs).read_bytes()
    bad = {
        f"test_set/{TAG_CLASS}/truncated.png": good[: len(good) // 2],
        f"test_set/{UNICODE_CLASS}/notes.png": b"these are notes, not a picture\n",
        f"test_set/{TAG_CLASS}/._x.png": b"\x00\x05\x16\x07 AppleDouble",
        f"test_set/{SCRIPT_CLASS}/readme.txt": b"read me\n",
    }
    for relative in IGNORED:
        bad[relative] = good if relative.endswith(".png") else b"\x00\x01 litter"
    for relative, data in bad.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)


@pytest.fixture(scope="module")
def hostile_data(tmp_path_factory) -> Path:
    from reportgen import shapes

    folder = tmp_path_factory.mktemp("hostile")
    shapes.generate(folder / "shapes", per_class=4, seed=5)
    make_hostile_dataset(folder / "data", folder / "shapes")
    return folder / "data"


def run_cli(args: list[str], cwd: Path):
    """`reportgen ARGS` in this process (TensorFlow is imported once), from `cwd`."""
    import signal

    from click.testing import CliRunner

    from reportgen.cli import main

    handler = signal.getsignal(signal.SIGTERM)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        try:
            return CliRunner().invoke(main, args)
        finally:
            signal.signal(signal.SIGTERM, handler)


@pytest.fixture(scope="module")
def hostile_build(hostile_data):
    work = hostile_data.parent
    result = run_cli(["build", "--data", str(hostile_data), "--out", "site", "--epochs", "1",
                      "--steps-per-epoch", "3", "--per-page", "4", "--jobs", "2"], work)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return work / "site", result


def html_files(site: Path) -> dict[str, str]:
    return {page: (site / page).read_text(encoding="utf-8") for page in browser.html_pages(site)}


# -- the real build ------------------------------------------------------------------------------

@pytest.mark.slow
def test_bad_files_are_skipped_out_loud_and_litter_is_ignored(hostile_build):
    site, result = hostile_build
    report = json.loads((site / "report.json").read_text(encoding="utf-8"))
    skipped = {entry["path"]: entry["reason"] for entry in report["data"]["skipped"]}
    assert sorted(skipped) == sorted(SKIPPED)
    for path, reason in SKIPPED.items():
        assert reason in skipped[path], (path, skipped[path])
        assert f"skipped {path}: {skipped[path]}" in result.stderr, path
    index = browser.page_text((site / "index.html").read_text(encoding="utf-8"))
    for path, reason in skipped.items():
        assert path in index and reason in index, path
    assert report["data"]["empty_classes"] == [EMPTY_CLASS]
    assert f"class folder test_set/{EMPTY_CLASS} has no readable images." in index
    assert sorted(image["path"] for image in report["images"]) == sorted(TEST_IMAGES)
    everything = [result.output, *(p.read_bytes().decode("utf-8", "replace")
                                   for p in site.rglob("*") if p.is_file())]
    for mark in IGNORED_MARKS:
        assert not any(mark in text for text in everything), mark


@pytest.mark.slow
def test_names_are_escaped_everywhere(hostile_build):
    site, _ = hostile_build
    pages = html_files(site)
    for page, html in pages.items():
        for raw in RAW_MARKUP:
            assert raw not in html, (page, raw)
    everything = "".join(pages.values())
    assert "&lt;script&gt;alert(1)&lt;/script&gt;/x.png" in everything
    assert "&lt;img src=x onerror=alert(1)&gt;" in everything
    results = browser.page_text(pages["results.html"])
    assert all(name in results for name in CLASSES)
    report = json.loads((site / "report.json").read_text(encoding="utf-8"))
    for image in report["images"]:
        h1 = re.search(r"<h1>(.*?)</h1>", pages[image["page"]], re.S).group(1)
        assert browser.page_text(h1) == image["path"]


@pytest.mark.slow
def test_every_output_file_name_is_plain(hostile_build):
    site, _ = hostile_build
    names = [p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()]
    assert len(names) > 100
    assert [name for name in names if not SITE_NAME.match(name)] == []


@pytest.mark.slow
@pytest.mark.browser
def test_hostile_site_is_clean_in_chromium(hostile_build, chromium):
    site, _ = hostile_build
    reports = browser.crawl(site, chromium)
    assert len(reports) == len(browser.html_pages(site)) > 30
    assert [line for report in reports.values() for line in report.dialogs] == []
    assert browser.problems(reports) == []


@pytest.mark.slow
def test_strict_refuses_skips_and_keeps_the_old_site(hostile_build, hostile_data):
    site, _ = hostile_build
    before = browser.read_tree(site)
    result = run_cli(["build", "--data", str(hostile_data), "--out", "site", "--strict",
                      "--epochs", "1", "--steps-per-epoch", "3"], hostile_data.parent)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "--strict" in errors[0], result.stderr
    assert all(f"skipped {path}: " in result.stderr for path in SKIPPED), result.stderr
    assert "Training" not in result.stderr
    assert browser.read_tree(site) == before
    assert not list(hostile_data.parent.glob(".reportgen-*"))


# -- the renderer on arbitrary text --------------------------------------------------------------

# As st.text(): no surrogates, which data.py never lets through (not valid UTF-8).
NAME = st.text(st.characters(exclude_characters="/\x00", exclude_categories=("Cs",)),
               min_size=1, max_size=10)
PATH = st.lists(NAME, min_size=1, max_size=3).map("/".join)


class _Tags(HTMLParser):
    """Start tags in order, as (tag, attribute names), plus every URL-bearing attribute."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, tuple[str, ...]]] = []
        self.urls: list[tuple[str, str]] = []  # (tag, url)
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, tuple(name for name, _ in attrs)))
        values = dict(attrs)
        if "id" in values:
            self.ids.add(values["id"])
        for attribute in ("href", "src"):
            if attribute in values:
                self.urls.append((tag, values[attribute]))


def parse(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    parser.close()
    return parser


@st.composite
def reports(draw):
    """A tiny report: 1-3 classes, 1-4 images, one layer, every name arbitrary text."""
    classes = draw(st.lists(NAME, min_size=1, max_size=3, unique=True))
    paths = draw(st.lists(PATH, min_size=1, max_size=4, unique=True))
    labels = draw(st.lists(st.integers(0, len(classes) - 1), min_size=len(paths),
                           max_size=len(paths)))
    seed = draw(st.integers(0, 2**32 - 1))
    texts = {key: draw(NAME) for key in ("title", "data", "validation", "reason")}
    layer = draw(PATH)
    skipped = draw(st.lists(PATH, max_size=2, unique=True))
    return dict(classes=classes, paths=paths, labels=labels, seed=seed, layer=layer,
                skipped=skipped, per_page=draw(st.integers(1, 3)),
                drawn=draw(st.integers(1, len(paths))), **texts)


def tiny_report(spec: dict):
    from reportgen.data import SkippedFile
    from reportgen.history import History
    from reportgen.metrics import compute_metrics
    from reportgen.report import (
        LayerEntry,
        ModelInfo,
        ModelRow,
        Report,
        image_slug,
        images_from_predictions,
        layer_slug,
        slugify,
    )
    from reportgen.stats import LayerStatsAccumulator

    rng = np.random.default_rng(spec["seed"])
    classes, paths = spec["classes"], spec["paths"]
    labels = np.array(spec["labels"], dtype=np.int64)
    probabilities = rng.dirichlet(np.ones(len(classes)), size=len(paths)).astype(np.float32)
    accumulator = LayerStatsAccumulator(n_channels=2, n_classes=len(classes), top_k=3)
    accumulator.update(rng.random((len(paths), 3, 3, 2), dtype=np.float32) - 0.3, labels, paths)
    layer = LayerEntry(index=0, path=spec["layer"], slug=layer_slug(spec["layer"]),
                       type_name="Conv2D", output_shape=(3, 3, 2), grid_size_px=(7, 3),
                       stats=accumulator.result(), shown_channels=(0, 1))
    history = History(accuracy=(0.5, 0.7), val_accuracy=(0.6, 0.5), loss=(1.0, 0.8),
                      val_loss=(0.9, 1.1), best_epoch=1, validation=spec["validation"])
    return Report(
        title=spec["title"], class_names=tuple(classes),
        class_slugs=tuple(slugify(name) for name in classes),
        model=ModelInfo(name=spec["title"], source="trained by reportgen", input_shape=(8, 8, 3),
                        rows=(ModelRow(spec["layer"], "Conv2D", "(batch, 3, 3, 2)", 56),),
                        total_params=56),
        images=images_from_predictions(paths, [image_slug(p) for p in paths], labels,
                                       probabilities),
        layers=(layer,),
        metrics=compute_metrics(labels, probabilities.argmax(axis=1), len(classes)),
        history=history, validation=spec["validation"], data_name=spec["data"],
        skipped=tuple(SkippedFile(path, spec["reason"]) for path in spec["skipped"]),
        empty_classes=(), scale="layer", colormap="viridis", images_per_page=spec["per_page"],
        drawn_indices=tuple(range(spec["drawn"])), reportgen_version="0", warnings=(spec["reason"],),
    )


def benign(spec: dict) -> dict:
    """The same report with every name replaced by a plain one of the same role."""
    return {**spec, "classes": [f"class{i}" for i in range(len(spec["classes"]))],
            "paths": [f"dir/image{i}.png" for i in range(len(spec["paths"]))],
            "layer": "block/conv", "skipped": [f"bad{i}" for i in range(len(spec["skipped"]))],
            "title": "title", "data": "data", "validation": "validation", "reason": "reason"}


def resolve(page: str, url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    assert not (parts.scheme or parts.netloc or parts.query or url.startswith("/")), (page, url)
    target = posixpath.normpath(posixpath.join(posixpath.dirname(page), parts.path)) \
        if parts.path else page
    assert not target.startswith(".."), (page, url)
    return target, parts.fragment


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=reports())
def test_rendering_arbitrary_names_escapes_them_and_keeps_links_working(spec):
    from reportgen.render import render_site

    report = tiny_report(spec)
    pages = dict(render_site(report))
    plain = list(render_site(tiny_report(benign(spec))))
    assert len(plain) == len(pages)
    assert all(SITE_NAME.match(path) for path in pages), sorted(pages)
    parsed = {path: parse(data.decode("utf-8")) for path, data in pages.items()
              if path.endswith(".html")}
    for (path, data), (plain_path, plain_data) in zip(pages.items(), plain, strict=True):
        if not path.endswith(".html"):
            continue
        html = data.decode("utf-8")
        plain_html = plain_data.decode("utf-8")
        # Names only ever become text: the tags are those of the plain-named report, and no
        # name adds a raw markup character (plain names have none; escaped ones neither).
        assert parsed[path].tags == parse(plain_html).tags, (path, plain_path)
        for character in "<>\"'":
            assert html.count(character) == plain_html.count(character), (path, character)
        for tag, url in parsed[path].urls:
            target, anchor = resolve(path, url)
            if tag == "img":
                assert target.startswith("assets/") and SITE_NAME.match(target), (path, url)
            else:
                assert target in pages, (path, url)
                if anchor:
                    assert anchor in parsed[target].ids, (path, url)
    for image in report.images:
        text = browser.page_text(pages[f"images/{image.slug}.html"].decode("utf-8"))
        assert image.path in text
    results = browser.page_text(pages["results.html"].decode("utf-8"))
    assert all(name in results for name in spec["classes"])
    data = json.loads(pages["report.json"])
    assert data["classes"] == spec["classes"]
    assert [image["path"] for image in data["images"]] == spec["paths"]
