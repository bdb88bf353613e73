"""Inspect a built site: drive Debian's chromium over every page (from file:// or a local
HTTP server), read its files.

Never downloads a browser: ``playwright install`` cannot work offline, and the browser
checks are part of the suite, so a missing chromium fails the run instead of skipping it.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

CHROMIUM = os.environ.get("REPORTGEN_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
IMAGE_TIMEOUT_MS = 10_000

# Runs once per page after `load`: lazy images are switched to eager and decoded, then
# every image's state and every link, as written in the HTML, is reported back.
PAGE_SCRIPT = """
async (timeoutMs) => {
  const images = Array.from(document.images);
  for (const img of images) img.loading = "eager";
  const decoded = Promise.all(images.map((img) => img.decode().catch(() => null)));
  const timeout = new Promise((resolve) => setTimeout(resolve, timeoutMs));
  await Promise.race([decoded, timeout]);
  const attr = (selector, name) =>
    Array.from(document.querySelectorAll(selector), (el) => el.getAttribute(name));
  return {
    images: images.map((img) => ({src: img.getAttribute("src"),
                                  ok: img.complete && img.naturalWidth > 0})),
    links: [...attr("a[href]", "href"), ...attr("img[src]", "src"),
            ...attr("link[href]", "href"), ...attr("script[src]", "src")],
    ids: Array.from(document.querySelectorAll("[id]"), (el) => el.id),
  };
}
"""


@dataclass
class PageReport:
    """What went wrong on one page; every list is empty on a good page."""

    page: str  # relative to the site root, POSIX
    console: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    network: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    undecoded_images: list[str] = field(default_factory=list)
    broken_links: list[str] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    fragment_links: list[tuple[str, str]] = field(default_factory=list)  # (target page, anchor)

    def problems(self) -> list[str]:
        kinds = ("console", "page_errors", "failed_requests", "network", "dialogs",
                 "undecoded_images", "broken_links")
        return [f"{self.page}: {kind}: {item}" for kind in kinds for item in getattr(self, kind)]


@contextmanager
def launch() -> Iterator[object]:
    """A headless chromium Browser; fails the test if Debian's chromium is missing."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"chromium not found at {CHROMIUM}: the browser tests are part of the suite; "
                    "run `apt-get install chromium` (or set REPORTGEN_CHROMIUM to its path). "
                    "`playwright install` is not an option: it downloads a browser.",
                    pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def resolve_link(site: Path, page: str, url: str) -> tuple[str | None, str | None]:
    """(site-relative target, error) for a link written on `page`; the target is None if broken."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or url.startswith("/"):
        return None, f"{url!r} is not a relative link"
    if parts.query:
        return None, f"{url!r} has a query string"
    if not parts.path:  # "#anchor" on the page itself
        return page, None
    target = posixpath.normpath(posixpath.join(posixpath.dirname(page), unquote(parts.path)))
    if target == ".." or target.startswith("../"):
        return None, f"{url!r} leads outside the site"
    if not (site / target).is_file():
        return None, f"{url!r} -> {target} does not exist"
    return target, None


def html_pages(site: Path) -> list[str]:
    return sorted(path.relative_to(site).as_posix() for path in site.rglob("*.html"))


def crawl(site: Path, browser=None, pages: list[str] | None = None,
          base_url: str | None = None) -> dict[str, PageReport]:
    """Open every .html page of `site` (or `pages`) and report its problems.

    Pages are opened from file://, or from `base_url` (ending in "/") where a server serves
    `site`. Any request outside the site's own folder or URL is reported as network traffic.
    One browser page is reused for the whole site; each page is waited on only until `load`,
    then its images are decoded. Broken #anchors across pages are listed as broken links too.
    """
    if browser is None:
        with launch() as own:
            return crawl(site, own, pages, base_url)
    site = site.resolve()
    pages = html_pages(site) if pages is None else pages
    own_prefix = base_url or site.as_uri() + "/"
    reports: dict[str, PageReport] = {}
    context = browser.new_context(service_workers="block")
    tab = context.new_page()
    current: list[PageReport] = []

    def record(kind: str, text: str) -> None:
        getattr(current[-1], kind).append(text)

    def on_dialog(dialog) -> None:
        record("dialogs", f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def on_request(request) -> None:
        if not request.url.startswith(own_prefix):
            record("network", request.url)

    def on_request_failed(request) -> None:
        # The browser fetches the page's icon after `load`, and going on to the next page
        # cancels it. A cancelled request is not a broken file: a missing one fails with its
        # own error (or a 404 on the console), and every image is decoded on its own.
        if request.failure != "net::ERR_ABORTED":
            record("failed_requests", f"{request.url}: {request.failure}")

    tab.on("console", lambda message: message.type in ("error", "warning")
           and record("console", f"{message.type}: {message.text}"))
    tab.on("pageerror", lambda error: record("page_errors", str(error)))
    tab.on("requestfailed", on_request_failed)
    tab.on("request", on_request)
    tab.on("dialog", on_dialog)
    try:
        for page in pages:
            report = reports[page] = PageReport(page)
            current.append(report)
            tab.goto(base_url + page if base_url else (site / page).as_uri(), wait_until="load")
            found = tab.evaluate(PAGE_SCRIPT, IMAGE_TIMEOUT_MS)
            report.undecoded_images = [image["src"] for image in found["images"] if not image["ok"]]
            report.ids = set(found["ids"])
            for url in found["links"]:
                target, error = resolve_link(site, page, url)
                if error:
                    report.broken_links.append(error)
                elif "#" in url and target.endswith(".html"):
                    report.fragment_links.append((target, url.split("#", 1)[1]))
    finally:
        context.close()
    _check_fragments(site, reports)
    return reports


def _check_fragments(site: Path, reports: dict[str, PageReport]) -> None:
    ids_elsewhere: dict[str, set[str]] = {}
    for report in reports.values():
        for target, anchor in report.fragment_links:
            if target in reports:
                ids = reports[target].ids
            else:
                ids = ids_elsewhere.setdefault(target, set(re.findall(
                    r'\bid="([^"]*)"', (site / target).read_text(encoding="utf-8"))))
            if unquote(anchor) not in ids:
                report.broken_links.append(f"#{anchor} is not an id on {target}")


def problems(reports: dict[str, PageReport]) -> list[str]:
    return [line for report in reports.values() for line in report.problems()]


# -- reading a site without a browser ------------------------------------------------------------

def read_tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by its relative path, so that two trees compare with ==."""
    return {path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


class _TextParser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)


def page_text(html: str) -> str:
    """The text a reader sees (entities decoded, tags dropped), attribute values excluded."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    return "".join(parser.chunks)
