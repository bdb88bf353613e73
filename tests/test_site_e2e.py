"""One honest end-to-end run: a real (tiny) training, a real site, browsed in chromium.

Every page is opened from file:// as a reader would; the numbers in report.json are
recomputed from its own per-image labels; builds that fail, are interrupted or aim at
someone else's folder must leave everything as it was.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import os
import posixpath
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import browser
import page_tasks
import pytest

# Tests marked slow need the session's trained site, or a process that imports TensorFlow.
CSP_NAME = "Content-Security-Policy"
LOCAL_SOURCES = {"'none'", "'self'"}


def read_report(site: Path) -> dict:
    return json.loads((site / "report.json").read_text(encoding="utf-8"))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith((".reportgen-tmp-",
                                                                         ".reportgen-old-")))


def confusion_links(site: Path, n_classes: int) -> list[list[tuple[str, int]]]:
    """(cell page, count shown) for every cell of results.html's confusion matrix, by row."""
    html = (site / "results.html").read_text(encoding="utf-8")
    table = re.search(r'<table class="confusion">(.*?)</table>', html, re.S)
    assert table, "results.html has no confusion table"
    # An empty cell has no page and no link: (None, 0).
    cells = re.findall(r'<td class="[^"]*">(?:<a href="([^"]+)"|<span class="empty-cell")'
                       r' title="[^"]*">(\d+)<span', table.group(1))
    assert len(cells) == n_classes * n_classes, cells
    return [[(href or None, int(count))
             for href, count in cells[row * n_classes:(row + 1) * n_classes]]
            for row in range(n_classes)]


def thumb_targets(site: Path, page: str) -> list[str]:
    """Site-relative pages that the thumbnails on `page` link to, in page order."""
    html = (site / page).read_text(encoding="utf-8")
    hrefs = re.findall(r'<a class="thumb[^"]*" href="([^"]+)"', html)
    return [posixpath.normpath(posixpath.join(posixpath.dirname(page), href)) for href in hrefs]


# -- the whole site in the browser ---------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.browser
def test_every_page_loads_cleanly_in_chromium(small_site, small_site_crawl):
    pages = browser.html_pages(small_site)
    assert sorted(small_site_crawl) == pages
    assert len(pages) > 40  # overview, results, non-empty cells, classes, images, layers, 404
    assert browser.problems(small_site_crawl) == []


@pytest.mark.slow
@pytest.mark.browser
def test_the_crawl_checks_lazy_images_and_links(small_site_crawl, small_site):
    """The crawl must have seen the lazy gallery images and the anchors it checks."""
    layer_page = read_report(small_site)["feature_layers"][0]["page"]
    report = small_site_crawl[layer_page]
    assert report.ids >= {"atlas", "gallery"}
    assert any(anchor.startswith("img-") for _, anchor in
               small_site_crawl[read_report(small_site)["images"][0]["page"]].fragment_links)


@pytest.mark.slow
@pytest.mark.browser
def test_the_crawl_catches_broken_pages(small_site, chromium, tmp_path):
    """A control: the same crawl over a damaged copy reports each kind of damage."""
    site = tmp_path / "site"
    shutil.copytree(small_site, site)
    report = read_report(site)
    image_page = report["images"][0]["page"]
    html = (site / image_page).read_text(encoding="utf-8")
    # The last grid: lazy, and far below the fold, so only an eager check decodes it.
    grid = re.findall(r'<figure class="grid"[^>]*>\s*<img class="pixelated" src="([^"]+)"', html)[-1]
    (site / posixpath.normpath(posixpath.join("images", grid))).write_bytes(b"not a png")
    html = html.replace("</main>", '<a href="https://example.com/x">x</a><a href="gone.html">y</a>'
                                   '<a href="../results.html#nowhere">z</a></main>')
    (site / image_page).write_text(html, encoding="utf-8")
    # A page without the CSP, to show that dialogs, script errors and the network are seen.
    (site / "evil.html").write_text(
        '<!doctype html><title>evil</title><img src="http://127.0.0.1:9/x.png">'
        '<script>alert("hi"); console.error("oops"); throw new Error("boom")</script>')
    found = browser.crawl(site, chromium, pages=[image_page, "results.html", "evil.html"])
    broken = found[image_page]
    assert broken.undecoded_images
    assert any("not a relative link" in link for link in broken.broken_links)
    assert any("gone.html" in link for link in broken.broken_links)
    assert any("#nowhere" in link for link in broken.broken_links)
    assert found["results.html"].problems() == []
    evil = found["evil.html"]
    assert evil.dialogs == ["alert: hi"]
    assert any("oops" in line for line in evil.console)
    assert any("boom" in line for line in evil.page_errors)
    assert evil.network == ["http://127.0.0.1:9/x.png"]
    assert evil.undecoded_images and evil.broken_links


@pytest.mark.slow
@pytest.mark.browser
def test_click_through_from_overview_to_a_gallery_page(small_site, chromium):
    report = read_report(small_site)
    confusion = report["metrics"]["confusion_matrix"]
    # An off-diagonal cell is the interesting one; a 1-epoch model may have none.
    cells = [(t, p) for t, row in enumerate(confusion) for p, count in enumerate(row) if count]
    t, p = sorted(cells, key=lambda cell: cell[0] == cell[1])[0]
    names = report["classes"]
    root = small_site.resolve()

    def url(relative: str) -> str:
        return (root / relative).as_uri()

    context = chromium.new_context()
    tab = context.new_page()
    try:
        tab.goto(url("index.html"))
        if os.environ.get("REPORTGEN_SCREENSHOTS"):
            shots = Path(os.environ["REPORTGEN_SCREENSHOTS"])
            shots.mkdir(parents=True, exist_ok=True)
            tab.screenshot(path=shots / "index.png", full_page=True)
        tab.locator("header nav a", has_text="Results").click()
        tab.wait_for_url(url("results.html"))

        row = tab.locator("table.confusion tbody tr").nth(t)
        row.locator("td").nth(p).locator("a").click()
        assert re.fullmatch(re.escape(url("cells") + "/") + r"[a-z0-9-]+--[a-z0-9-]+\.html", tab.url)
        assert tab.locator("h1").inner_text() == f"True {names[t]}, predicted {names[p]}"
        thumbs = tab.locator(".thumbs a.thumb")
        assert thumbs.count() == confusion[t][p]

        image_path = thumbs.first.get_attribute("title")
        thumbs.first.click()
        image = next(i for i in report["images"] if i["path"] == image_path)
        assert (image["true_label"], image["predicted_label"]) == (t, p)
        tab.wait_for_url(url(image["page"]))
        assert re.fullmatch(re.escape(url("images") + "/") + r"[a-z0-9-]+\.html", tab.url)
        assert tab.locator("h1").inner_text() == image_path

        first_layer = report["feature_layers"][0]
        tab.locator("section.layer h2 a").first.click()
        per_page = report["drawing"]["images_per_page"]
        page_number = report["images"].index(image) // per_page + 1
        layer_index = posixpath.dirname(first_layer["page"])
        expected = first_layer["page"] if page_number == 1 else \
            f"{layer_index}/page-{page_number}.html"
        anchor = "img-" + posixpath.splitext(posixpath.basename(image["page"]))[0]
        tab.wait_for_url(url(expected) + "#" + anchor)
        assert tab.locator(f"[id='{anchor}'] code").inner_text() == image_path

        if page_number > 1:
            tab.locator("nav.pager a[rel=first]").first.click()
        assert tab.url.split("#")[0] == url(first_layer["page"])
        tab.locator("nav.pager").first.get_by_role("link", name="2", exact=True).click()
        tab.wait_for_url(url(f"{layer_index}/page-2.html"))
        assert tab.locator("nav.pager .current").first.inner_text() == "2"
        assert tab.locator("nav.pager .current").first.get_attribute("aria-current") == "page"
    finally:
        context.close()


@pytest.mark.slow
@pytest.mark.browser
def test_arrow_keys_follow_previous_and_next(small_site, chromium):
    report = read_report(small_site)
    first, second = (small_site.resolve() / image["page"] for image in report["images"][:2])
    context = chromium.new_context()
    tab = context.new_page()
    try:
        tab.goto(first.as_uri())
        tab.keyboard.press("ArrowRight")
        tab.wait_for_url(second.as_uri())
        tab.keyboard.press("ArrowLeft")
        tab.wait_for_url(first.as_uri())
    finally:
        context.close()


# -- what the pages say --------------------------------------------------------------------------

@pytest.mark.slow
def test_every_test_image_has_its_page(small_site, small_dataset):
    report = read_report(small_site)
    on_disk = sorted(p.relative_to(small_dataset / "test_set").as_posix()
                     for p in (small_dataset / "test_set").rglob("*.png"))
    assert sorted(image["path"] for image in report["images"]) == on_disk
    assert report["data"]["test_images"] == len(on_disk)
    pages = [image["page"] for image in report["images"]]
    assert len(set(pages)) == len(pages)
    assert sorted(pages) == sorted(p.relative_to(small_site).as_posix()
                                   for p in (small_site / "images").glob("*.html"))


@pytest.mark.slow
def test_each_confusion_cell_lists_exactly_its_images(small_site):
    report = read_report(small_site)
    n = len(report["classes"])
    confusion = report["metrics"]["confusion_matrix"]
    for t, row in enumerate(confusion_links(small_site, n)):
        for p, (href, shown) in enumerate(row):
            expected = sorted(i["page"] for i in report["images"]
                              if (i["true_label"], i["predicted_label"]) == (t, p))
            assert shown == confusion[t][p] == len(expected), (t, p)
            if not expected:
                assert href is None, (t, p)
                continue
            listed = thumb_targets(small_site, href)
            assert sorted(listed) == expected, href
    results = (small_site / "results.html").read_text(encoding="utf-8")
    class_pages = re.findall(r'<th scope="row"><a href="([^"]+)"', results)
    assert len(class_pages) == n
    for label, page in enumerate(class_pages):
        heading = re.search(r"<h1>(.*?)</h1>", (small_site / page).read_text(encoding="utf-8"))
        assert browser.page_text(heading.group(1)) == report["classes"][label]
        assert sorted(thumb_targets(small_site, page)) == sorted(
            i["page"] for i in report["images"] if i["true_label"] == label), page


@pytest.mark.slow
def test_report_json_numbers_agree_with_its_own_labels(small_site):
    report = read_report(small_site)
    images, n = report["images"], len(report["classes"])
    assert report["schema_version"] == 1
    confusion = [[0] * n for _ in range(n)]
    for image in images:
        probabilities = image["probabilities"]
        assert len(probabilities) == n and math.isclose(sum(probabilities), 1, abs_tol=1e-5)
        assert image["predicted_label"] == probabilities.index(max(probabilities))
        confusion[image["true_label"]][image["predicted_label"]] += 1
    metrics = report["metrics"]
    assert metrics["confusion_matrix"] == confusion
    correct = sum(image["true_label"] == image["predicted_label"] for image in images)
    assert math.isclose(metrics["accuracy"], correct / len(images), rel_tol=1e-12)
    f1s = []
    for c, scores in enumerate(metrics["per_class"]):
        hits = confusion[c][c]
        predicted = sum(row[c] for row in confusion)
        actual = sum(confusion[c])
        precision = hits / predicted if predicted else 0.0
        recall = hits / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        f1s.append(f1)
        assert scores["class"] == report["classes"][c]
        assert scores["support"] == actual
        for name, value in (("precision", precision), ("recall", recall), ("f1", f1)):
            assert math.isclose(scores[name], value, rel_tol=1e-12, abs_tol=1e-15), (c, name)
    assert math.isclose(metrics["macro_f1"], sum(f1s) / n, rel_tol=1e-12, abs_tol=1e-15)
    index = browser.page_text((small_site / "index.html").read_text(encoding="utf-8"))
    assert f"{correct / len(images) * 100:.1f}% of the {len(images)} test images" in index


@pytest.mark.slow
def test_csp_forbids_the_network_on_every_page(small_site):
    for page in browser.html_pages(small_site):
        html = (small_site / page).read_text(encoding="utf-8")
        metas = re.findall(r'<meta http-equiv="([^"]+)" content="([^"]*)">', html)
        policies = [content for name, content in metas if name.lower() == CSP_NAME.lower()]
        assert len(policies) == 1, page
        directives = {d.split()[0]: d.split()[1:] for d in policies[0].split(";") if d.strip()}
        assert directives.get("default-src") == ["'none'"], page
        for name, sources in directives.items():
            assert set(sources) <= LOCAL_SOURCES, (page, name, sources)
        # A meta CSP only governs what comes after it.
        head = html.split("</head>")[0]
        assert head.index(CSP_NAME) < min(head.index("<link"), head.index("<script")), page
    assert (small_site / ".nojekyll").read_bytes() == b""
    assert "Page not found" in (small_site / "404.html").read_text(encoding="utf-8")


@pytest.mark.slow
def test_the_same_model_and_data_give_a_byte_identical_site(small_build, tmp_path):
    from reportgen.stages import build

    again = tmp_path / "site"
    log: list[str] = []
    build(dataclasses.replace(small_build.options, out=again), echo=log.append)
    assert any(line.startswith("Reusing the model") for line in log), log
    first, second = browser.read_tree(small_build.path), browser.read_tree(again)
    assert ".reportgen-site" in first
    assert sorted(first) == sorted(second)
    assert [path for path in first if first[path] != second[path]] == []


# -- failing, interrupted and refused builds -----------------------------------------------------

def _fail_rendering_after(count: int, monkeypatch) -> None:
    import reportgen.render

    # By name: with --jobs 2 the build's page process imports it (see page_tasks.py).
    monkeypatch.setattr(reportgen.render, "render_site",
                        functools.partial(page_tasks.render_then_fail, count=count))


def _fail_drawing_after(count: int, monkeypatch) -> None:
    import reportgen.drawing

    real, calls = reportgen.drawing.level_grid_pngs, itertools.count()

    def failing(*args, **kwargs):
        if next(calls) >= count:
            raise RuntimeError("drawing failed on purpose")
        return real(*args, **kwargs)

    monkeypatch.setattr(reportgen.drawing, "level_grid_pngs", failing)


@pytest.mark.slow
# Rendering fails after 20 pages (in the page process with --jobs 2, in the build's own with
# --jobs 1); drawing after 5 of a batch's 12 layer tasks.
@pytest.mark.parametrize(("sabotage", "count", "jobs"), [
    (_fail_rendering_after, 20, 2), (_fail_rendering_after, 20, 1), (_fail_drawing_after, 5, 2)])
def test_a_failed_build_leaves_the_old_site_as_it_was(sabotage, count, jobs, small_site,
                                                      small_dataset, small_model, tmp_path,
                                                      monkeypatch):
    from reportgen.stages import BuildOptions, build

    site = tmp_path / "site"
    shutil.copytree(small_site, site)
    before = browser.read_tree(site)
    options = BuildOptions(data=small_dataset, out=site, model_path=small_model,
                           images_per_page=4, jobs=jobs)
    with monkeypatch.context() as patch:
        sabotage(count, patch)
        with pytest.raises(RuntimeError, match="failed on purpose"):
            build(options, echo=lambda line: None)
    assert browser.read_tree(site) == before
    assert leftovers(tmp_path) == []
    # The control: without the sabotage the same build does replace the site.
    build(options, echo=lambda line: None)
    assert read_report(site)["model"]["source"] == small_model.name
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_a_drawing_failure_stops_the_page_process_before_the_old_site_is_kept(
        small_site, small_dataset, small_model, tmp_path, monkeypatch):
    """The pages are rendered in a process of their own while the drawing goes on; when the
    drawing fails, that process is stopped at once, before the staging folder is removed."""
    import reportgen.render
    from reportgen.stages import BuildOptions, build

    site = tmp_path / "site"
    shutil.copytree(small_site, site)
    before = browser.read_tree(site)
    pid_file = tmp_path / "page-process.pid"
    monkeypatch.setattr(reportgen.render, "render_site",
                        functools.partial(page_tasks.render_forever, pid_file=pid_file))
    # Batches of one image (the budget is too small for more), so the drawing goes on after
    # the first batch, when the pages have begun; it fails in the second batch, once the
    # page process has its report.
    import reportgen.drawing

    real, calls = reportgen.drawing.level_grid_pngs, itertools.count()

    def failing(*args, **kwargs):
        if next(calls) >= 12 + 5:
            for _ in range(600):
                if pid_file.exists():
                    break
                time.sleep(0.1)
            raise RuntimeError("drawing failed on purpose")
        return real(*args, **kwargs)

    monkeypatch.setattr(reportgen.drawing, "level_grid_pngs", failing)
    options = BuildOptions(data=small_dataset, out=site, model_path=small_model,
                           images_per_page=4, jobs=2, memory_budget_mb=1)
    # Were the page process not stopped, the build would wait ten minutes for it: a watchdog
    # ends it sooner and the test fails.
    killed_by_the_watchdog = threading.Event()

    def watchdog() -> None:
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
            killed_by_the_watchdog.set()

    timer = threading.Timer(120, watchdog)
    timer.start()
    try:
        with pytest.raises(RuntimeError, match="drawing failed on purpose"):
            build(options, echo=lambda line: None)
    finally:
        timer.cancel()
    assert pid_file.exists(), "the pages were not being rendered when the drawing failed"
    assert not killed_by_the_watchdog.is_set()
    assert browser.read_tree(site) == before
    assert leftovers(tmp_path) == []


# `reportgen build`, held still mid-build: once the first feature maps are written to the
# temporary folder it says so on stderr and waits, so the signal lands mid-build, not by timing.
# It waits in the main thread, where signals land (the engine runs shards in threads).
PAUSED_BUILD = """
import sys, time
from reportgen.engines import LocalEngine
from reportgen.cli import main

map_reduce = LocalEngine.map_reduce

def pause_after_the_first_maps(self, *args, **kwargs):
    result = map_reduce(self, *args, **kwargs)  # returns when its shards' files are out
    if kwargs["label"] == "Drawing feature maps":  # the first drawn batch; the rest to come
        print("paused mid-pass", file=sys.stderr, flush=True)
        time.sleep(300)  # the signal's KeyboardInterrupt ends this
    return result

LocalEngine.map_reduce = pause_after_the_first_maps
main(sys.argv[1:], prog_name="reportgen")
"""


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_interrupted_build_leaves_the_old_site_as_it_was(signum, small_site, small_model,
                                                            small_dataset, tmp_path):
    site = tmp_path / "site"
    shutil.copytree(small_site, site)
    before = browser.read_tree(site)
    command = [sys.executable, "-c", PAUSED_BUILD, "build", "--data", str(small_dataset),
               "--out", str(site), "--model", str(small_model), "--per-page", "4", "--jobs", "2"]
    stderr: list[str] = []
    paused = threading.Event()
    with subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as process:

        def read_stderr() -> None:
            for line in process.stderr:
                stderr.append(line)
                if line.startswith("paused mid-pass"):
                    paused.set()

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        try:
            assert paused.wait(timeout=120), "".join(stderr)
            [temporary] = tmp_path.glob(".reportgen-tmp-*")
            assert list(temporary.glob("assets/maps/*/*.png")), "the build was not writing yet"
            process.send_signal(signum)
            stdout = process.stdout.read()
            returncode = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
            reader.join(timeout=10)
    text = "".join(stderr)
    assert returncode == 130, text + stdout
    assert "Interrupted; the previous site is unchanged." in text
    assert "Traceback" not in text
    assert browser.read_tree(site) == before
    assert leftovers(tmp_path) == []


def _snapshot(folder: Path) -> dict[str, bytes]:
    if folder == Path("/"):
        return {name: b"" for name in os.listdir(folder)}  # the names, not the whole disk
    return browser.read_tree(folder)


@pytest.fixture
def keep_sigterm_handler() -> Iterator[None]:
    """`reportgen build` installs its SIGTERM handler; an in-process run must not leave it."""
    import reportgen.model  # noqa: F401  the CLI imports it (and Keras) before refusing

    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)


def _folders(tmp_path: Path, data: Path) -> dict[str, tuple[str | Path, Path]]:
    """case -> (--out value, folder that must stay untouched)."""
    cwd = tmp_path / "work"
    (cwd / "notes.txt").parent.mkdir()
    (cwd / "notes.txt").write_text("mine\n")
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    (home / ".config" / "settings").write_text("mine\n")
    repository = tmp_path / "repository"
    (repository / ".git").mkdir(parents=True)
    (repository / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repository / "README").write_text("mine\n")
    published = tmp_path / "published"  # a clone of the gh-pages branch: the marker and .git
    shutil.copytree(repository, published)
    (published / ".reportgen-site").write_text("This folder was written by reportgen.\n")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "index.html").write_text("somebody else's site\n")
    return {"cwd": (".", cwd), "home": (home, home), "root": (Path("/"), Path("/")),
            "data": (data, data), "inside data": (data / "site", data),
            "git": (repository, repository), "git with marker": (published, published),
            "foreign files": (foreign, foreign)}


@pytest.mark.parametrize("case", ["cwd", "home", "root", "data", "inside data", "git",
                                  "git with marker", "foreign files"])
def test_out_refuses_folders_reportgen_does_not_own(case, small_dataset, tmp_path, monkeypatch,
                                                    keep_sigterm_handler):
    from click.testing import CliRunner

    from reportgen.cli import main

    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    out, watched = _folders(tmp_path, data)[case]
    monkeypatch.chdir(tmp_path / "work")
    before = _snapshot(watched)
    result = CliRunner().invoke(main, ["build", "--data", str(data), "--out", str(out),
                                       "--epochs", "1", "--steps-per-epoch", "1"],
                                env={"HOME": str(tmp_path / "home")})
    assert result.exit_code == 2, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "refus" in errors[0], result.stderr
    assert "Training" not in result.stderr, "refused only after training a model"
    assert _snapshot(watched) == before
    assert not (tmp_path / "work" / "output").exists()
    assert leftovers(watched.parent if watched != Path("/") else watched) == []


@pytest.mark.slow
def test_out_refusal_is_one_line_and_exit_2_from_the_shell(small_dataset, tmp_path):
    """The same refusal as a user sees it: a real process, its exit status and its stderr."""
    command = [sys.executable, "-m", "reportgen", "build", "--data", str(small_dataset),
               "--out", "/", "--epochs", "1", "--steps-per-epoch", "1"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("Error:")] == [
        "Error: refusing to write the site to /: choose a folder of its own, such as output/site"]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_out_accepts_a_new_or_empty_folder_and_its_own_site(small_dataset, tmp_path):
    """The control for the refusals: the same check passes the folders that are fine."""
    from reportgen.site import check_target

    empty = tmp_path / "empty"
    empty.mkdir()
    ours = tmp_path / "ours"
    (ours / "images").mkdir(parents=True)
    (ours / "index.html").write_text("an old site\n")
    (ours / ".reportgen-site").write_text("This folder was written by reportgen.\n")
    for folder in (tmp_path / "new", empty, ours):
        assert check_target(folder, [small_dataset]) == folder.resolve()


@pytest.mark.slow
def test_the_site_budget_leaves_out_galleries_not_predictions(small_dataset, small_model,
                                                              tmp_path, monkeypatch):
    from reportgen import plan
    from reportgen import stages as build_module

    plans, original = [], plan.plan_site

    def plan_site(*args, **kwargs):
        plans.append((args, original(*args, **kwargs)))
        return plans[-1][1]

    monkeypatch.setattr(plan, "plan_site", plan_site)
    build_module.build(build_module.BuildOptions(data=small_dataset, out=tmp_path / "full",
                                                 model_path=small_model, jobs=2))
    n_images = read_report(tmp_path / "full")["data"]["test_images"]
    (_, _, fixed_bytes, _, _), full_plan = plans[-1]
    assert len(full_plan.drawn) == n_images
    # Count --max-site-mb in kB and leave room for three and a half images' feature maps.
    monkeypatch.setattr(build_module, "MB", 1000)
    budget_kb = int(fixed_bytes + 3.5 * full_plan.bytes_per_image) // 1000
    log: list[str] = []
    build_module.build(build_module.BuildOptions(data=small_dataset, out=tmp_path / "site",
                                                 model_path=small_model, jobs=2,
                                                 max_site_mb=budget_kb), echo=log.append)
    report = read_report(tmp_path / "site")
    drawn = [image for image in report["images"] if image["drawn"]]
    assert len(drawn) == report["drawing"]["drawn_images"] == 3
    assert len(report["images"]) == n_images  # predictions and statistics cover every image
    assert all(layer["channel_stats"][0]["top_images"] for layer in report["feature_layers"])
    mistakes = [image for image in report["images"]
                if image["true_label"] != image["predicted_label"]]
    mistakes.sort(key=lambda image: -max(image["probabilities"]))  # most confident first
    assert [image["drawn"] for image in mistakes] == [i < len(drawn) for i in range(len(mistakes))]
    warning = [line for line in log if "feature maps drawn for" in line]
    assert len(warning) == 1 and "--max-site-mb" in warning[0]
    assert not [line for line in log if "over --max-site-mb" in line]
    overview = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert f"feature maps drawn for {len(drawn)} of {n_images} test images" in overview
    n_maps = len(list((tmp_path / "site" / "assets" / "maps").rglob("*.png")))
    assert n_maps == len(drawn) * len(report["feature_layers"])

    monkeypatch.undo()
    log.clear()
    build_module.build(build_module.BuildOptions(data=small_dataset, out=tmp_path / "site",
                                                 model_path=small_model, jobs=2,
                                                 max_gallery_images=1), echo=log.append)
    report = read_report(tmp_path / "site")
    assert report["drawing"]["drawn_images"] == 1
    assert len(list((tmp_path / "site" / "assets" / "maps").rglob("*.png"))) == len(
        report["feature_layers"])
