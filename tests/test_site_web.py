"""The site as a web product, checked by tools nobody here wrote and by a real browser.

The W3C Nu HTML Checker and axe-core (light and dark scheme) over every kind of page; a crawl
over loopback HTTP under a sub-path, as GitHub Pages serves a project; a phone's 390 px
viewport; the keyboard. Each check has a control that shows it can fail.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import browser
import checkers
import pytest
from tiny_report import tiny_report

from reportgen.render import render_site

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
SUB_PATH = "repo/"
PAGE_KINDS = ("404", "cell", "class", "image", "overview", "layer atlas", "layer gallery", "results",
              "label errors", "embedding")


def page_kind(page: str) -> str:
    folder = page.split("/", 1)[0]
    if folder == "layers":
        return "layer atlas" if page.endswith("/index.html") else "layer gallery"
    return {"cells": "cell", "classes": "class", "images": "image", "index.html": "overview",
            "results.html": "results", "404.html": "404", "labels.html": "label errors",
            "embedding.html": "embedding"}[folder]


def one_page_per_kind(site: Path) -> dict[str, str]:
    """The first page of each kind, in PAGE_KINDS order; fails if the site lacks a kind."""
    first: dict[str, str] = {}
    for page in browser.html_pages(site):
        first.setdefault(page_kind(page), page)
    assert sorted(first) == sorted(PAGE_KINDS), sorted(first)
    return {kind: first[kind] for kind in PAGE_KINDS}


def write_site(files, folder: Path) -> Path:
    for path, data in files:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    return folder


# -- the Nu HTML Checker -------------------------------------------------------------------------

@pytest.mark.slow
def test_the_nu_html_checker_finds_no_error_on_any_page(small_site):
    pages = browser.html_pages(small_site)
    one_page_per_kind(small_site)
    files = [small_site / page for page in pages] + [small_site / "static" / "style.css"]
    assert checkers.vnu_messages(files) == []


@pytest.mark.slow  # runs with the check it controls; starting Java is most of the fast suite's wait
def test_the_nu_html_checker_reports_errors(tmp_path):
    """A control: the checker runs and reports a broken page and a broken stylesheet."""
    (tmp_path / "bad.html").write_text('<!doctype html><html lang="en"><title>t</title>'
                                       '<p id="a"><div id="a"></div></html>')
    (tmp_path / "bad.css").write_text("p { colour: red; }\n")
    messages = checkers.vnu_messages([tmp_path / "bad.html", tmp_path / "bad.css"])
    assert any(line.startswith("bad.html:") and "Duplicate ID" in line for line in messages)
    assert any(line.startswith("bad.css:") for line in messages)


# -- axe-core ------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize(("scheme", "viewport"), [("light", DESKTOP), ("dark", DESKTOP),
                                                  ("dark", PHONE)],
                         ids=["light", "dark", "dark-phone"])
def test_axe_finds_no_violation_on_any_kind_of_page(small_site, chromium, scheme, viewport):
    root = small_site.resolve()
    found = {page: checkers.axe_violations(chromium, (root / page).as_uri(), scheme, viewport)
             for page in one_page_per_kind(small_site).values()}
    assert {page: lines for page, lines in found.items() if lines} == {}


@pytest.mark.browser
def test_axe_reports_what_only_the_dark_scheme_breaks(chromium, tmp_path):
    """A control: axe runs in the page and the colour scheme really is emulated."""
    page = tmp_path / "page.html"
    page.write_text('<!doctype html><html lang="en"><title>t</title><style>'
                    "@media (prefers-color-scheme: dark) { body { background: #111; color: #222 } }"
                    "</style><main><h1>Title</h1><p>Some text.</p></main></html>")
    assert checkers.axe_violations(chromium, page.as_uri(), "light") == []
    dark = checkers.axe_violations(chromium, page.as_uri(), "dark")
    assert dark and all(line.startswith("color-contrast (serious)") for line in dark)


# -- served over HTTP under a sub-path, as GitHub Pages serves a project -------------------------

@pytest.mark.slow
@pytest.mark.browser
def test_a_crawl_over_http_under_a_sub_path_stays_inside_the_site(small_site, chromium, tmp_path):
    (tmp_path / SUB_PATH).symlink_to(small_site.resolve(), target_is_directory=True)
    with checkers.serve(tmp_path) as served:
        found = browser.crawl(small_site, chromium, base_url=served.url + SUB_PATH)
    assert sorted(found) == browser.html_pages(small_site)
    assert browser.problems(found) == []
    outside = [path for path in served.paths if not path.startswith("/" + SUB_PATH)]
    assert outside == []
    assert "/" + SUB_PATH + "static/favicon.svg" in served.paths


@pytest.mark.browser
def test_a_page_without_its_own_icon_asks_the_host_root(chromium, tmp_path):
    """A control: without a declared icon the browser asks for /favicon.ico, outside the site."""
    site = write_site(render_site(tiny_report()), tmp_path / SUB_PATH)
    page = site / "index.html"
    page.write_text(re.sub(r'<link rel="icon"[^>]*>\n', "", page.read_text(encoding="utf-8")))
    context = chromium.new_context()
    try:
        with checkers.serve(tmp_path) as served:
            context.new_page().goto(served.url + SUB_PATH + "index.html", wait_until="load")
            # The browser asks for the icon some time after `load`: wait for that request.
            asked = served.wait_for("/favicon.ico", timeout=60)
    finally:
        context.close()
    assert asked, served.paths


@pytest.mark.browser
def test_with_a_site_url_the_404_page_works_at_any_depth(chromium, tmp_path):
    """GitHub Pages answers any missing path with 404.html: its links must not be relative."""
    with checkers.serve(tmp_path, not_found_page=tmp_path / SUB_PATH / "404.html") as served:
        site_url = served.url + SUB_PATH
        styled = {}
        for label, options in (("relative", {}), ("site-url", {"site_url": site_url})):
            site = tmp_path / SUB_PATH
            shutil.rmtree(site, ignore_errors=True)
            write_site(render_site(tiny_report(), **options), site)
            context = chromium.new_context()
            tab = context.new_page()
            failed: list[str] = []
            tab.on("requestfailed", lambda request, failed=failed: failed.append(request.url))
            tab.on("response", lambda response, failed=failed: response.status >= 400
                   and response.request.resource_type != "document" and failed.append(response.url))
            response = tab.goto(site_url + "no/such/deep/page.html", wait_until="load")
            assert response.status == 404
            styled[label] = (tab.evaluate("getComputedStyle(document.querySelector('.site-header'))"
                                          ".display"), list(failed))
            if label == "site-url":
                tab.locator("main").get_by_role("link", name="overview").click()
                tab.wait_for_url(site_url + "index.html")
            context.close()
    assert styled["site-url"] == ("flex", [])
    assert styled["relative"][0] != "flex" and styled["relative"][1]  # the control: it breaks


# -- a phone -------------------------------------------------------------------------------------

# The page's width, the smallest text on it, and how many boxes hold content wider than themselves.
MEASURE = """
() => {
  const sizes = [];
  for (const el of document.querySelectorAll("body *")) {
    const text = Array.from(el.childNodes).some((n) => n.nodeType === 3 && n.textContent.trim());
    if (text && el.getClientRects().length) sizes.push(parseFloat(getComputedStyle(el).fontSize));
  }
  const boxes = Array.from(document.querySelectorAll(".scroll, figure.grid"));
  return {width: document.documentElement.scrollWidth, smallest: Math.min(...sizes),
          scrolling: boxes.filter((box) => box.scrollWidth > box.clientWidth).length};
}
"""


@pytest.mark.slow
@pytest.mark.browser
def test_no_page_scrolls_sideways_on_a_phone(small_site, chromium):
    context = chromium.new_context(viewport=PHONE)
    tab = context.new_page()
    measured = {}
    try:
        for kind, page in one_page_per_kind(small_site).items():
            tab.goto((small_site.resolve() / page).as_uri(), wait_until="load")
            measured[kind] = tab.evaluate(MEASURE)
    finally:
        context.close()
    assert {kind: m["width"] for kind, m in measured.items() if m["width"] > PHONE["width"]} == {}
    assert min(m["smallest"] for m in measured.values()) >= 11
    # Wide feature-map grids are there, and they scroll inside their own box.
    assert measured["image"]["scrolling"] and measured["layer gallery"]["scrolling"]


# -- the keyboard --------------------------------------------------------------------------------

FOCUSED = """
() => {
  const el = document.activeElement;
  const all = Array.from(document.querySelectorAll("*"));
  const style = getComputedStyle(el);
  const box = el.getBoundingClientRect();
  return {index: all.indexOf(el), tag: el.tagName, text: el.textContent.trim().slice(0, 40),
          outline: style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2,
          onScreen: box.bottom > 0 && box.top < innerHeight && box.width > 0};
}
"""
FOCUSABLE = """
() => {
  const all = Array.from(document.querySelectorAll("*"));
  return Array.from(document.querySelectorAll("a[href], [tabindex='0']"),
                    (el) => all.indexOf(el));
}
"""


def tab_through(tab, limit: int = 400) -> list[dict]:
    """Press Tab from the top of the page until focus comes back round; what got focus, in order."""
    seen: list[dict] = []
    for _ in range(limit):
        tab.keyboard.press("Tab")
        focused = tab.evaluate(FOCUSED)
        if focused["tag"] == "BODY" or (seen and focused["index"] == seen[0]["index"]):
            return seen
        seen.append(focused)
    pytest.fail(f"focus did not come round after {limit} presses of Tab")


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("kind", ["image", "results", "layer atlas"])
def test_the_keyboard_reaches_every_control_with_a_visible_focus(small_site, chromium, kind):
    page = one_page_per_kind(small_site)[kind]
    context = chromium.new_context(viewport=PHONE)
    tab = context.new_page()
    try:
        tab.goto((small_site.resolve() / page).as_uri(), wait_until="load")
        order = tab_through(tab)
        assert order[0]["text"] == "Skip to content" and order[0]["onScreen"]
        assert [f["index"] for f in order] == tab.evaluate(FOCUSABLE)
        assert [f for f in order if not f["outline"]] == []

        tab.goto((small_site.resolve() / page).as_uri(), wait_until="load")
        tab.keyboard.press("Tab")
        tab.keyboard.press("Enter")
        tab.keyboard.press("Tab")
        assert tab.evaluate("document.activeElement.closest('main') !== null")
    finally:
        context.close()


# Whether the first grid has scrolled sideways, waiting up to a second (smooth scrolling).
SCROLLED_SIDEWAYS = """
async () => {
  const grid = document.querySelector("figure.grid");
  for (let frame = 0; frame < 60 && grid.scrollLeft === 0; frame++) {
    await new Promise((resolve) => requestAnimationFrame(resolve));
  }
  return grid.scrollLeft > 0;
}
"""


@pytest.mark.slow
@pytest.mark.browser
def test_arrow_keys_scroll_a_focused_wide_grid_instead_of_leaving(small_site, chromium):
    page = json.loads((small_site / "report.json").read_text(encoding="utf-8"))["images"][1]["page"]
    url = (small_site.resolve() / page).as_uri()
    context = chromium.new_context(viewport=PHONE)
    tab = context.new_page()
    try:
        tab.goto(url, wait_until="load")
        grid = tab.locator("figure.grid").first
        grid.focus()
        grid.evaluate("(box) => box.querySelector('img').decode()")
        tab.keyboard.press("ArrowRight")
        assert tab.evaluate(SCROLLED_SIDEWAYS)
        assert tab.url == url
        tab.locator("h1").click()  # focus outside the grid: the arrows go to the next image
        tab.keyboard.press("ArrowRight")
        tab.wait_for_url(lambda new: new != url)
        assert tab.url.startswith((small_site.resolve() / "images").as_uri())
    finally:
        context.close()
