"""Tools nobody here wrote, run over a built site: the W3C Nu HTML Checker and axe-core.

Both come from the npm registry at the versions pinned in package-lock.json (`npm ci`
installs them into node_modules/); the Nu checker also needs Java. A missing tool fails
the test that needs it, with the command that installs it: these checks are part of the suite.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NODE_MODULES = REPO / "node_modules"
VNU_JAR = NODE_MODULES / "vnu-jar" / "build" / "dist" / "vnu.jar"
AXE_JS = NODE_MODULES / "axe-core" / "axe.min.js"
INSTALL_HINT = ("run `npm ci --ignore-scripts` in the repository (it installs the versions pinned "
                "in package-lock.json){}; .ci/run does both")


def _require(path: Path, what: str, extra: str = "") -> Path:
    if not path.is_file():
        pytest.fail(f"{what} not found at {path}: {INSTALL_HINT.format(extra)}", pytrace=False)
    return path


def vnu_messages(files: list[Path]) -> list[str]:
    """Every error the Nu HTML Checker finds in `files` (HTML, and CSS too), as 'file:line: text'."""
    jar = _require(VNU_JAR, "the Nu HTML Checker (npm package vnu-jar)",
                   " and `apt-get install default-jre-headless`")
    java = shutil.which("java")
    if java is None:
        pytest.fail("java not found: the Nu HTML Checker needs it; run "
                    "`apt-get install default-jre-headless` (.ci/run does)", pytrace=False)
    result = subprocess.run(
        [java, "-jar", str(jar), "--format", "json", "--errors-only", "--also-check-css",
         *map(str, files)],
        capture_output=True, text=True, check=False)
    if result.returncode not in (0, 1) or not result.stderr.strip():
        pytest.fail(f"the Nu HTML Checker did not run (exit {result.returncode}): "
                    f"{result.stderr.strip()[:500]}", pytrace=False)
    messages = json.loads(result.stderr)["messages"]  # vnu writes its JSON report to stderr
    return [f"{m.get('url', '?').rsplit('/', 1)[-1]}:{m.get('lastLine', '?')}: "
            f"{m['type']}: {m['message']}" for m in messages]


# Runs axe-core with its defaults (every rule that is not experimental: WCAG A and AA, and
# best practices) and returns its violations, one line per rule and element.
AXE_RUN = """
async () => {
  const results = await axe.run(document, {resultTypes: ["violations"]});
  return results.violations.flatMap((rule) => rule.nodes.map((node) =>
    `${rule.id} (${rule.impact}): ${node.target.join(" ")}: ${node.failureSummary.replace(/\\s+/g, " ")}`));
}
"""


def axe_violations(browser, url: str, color_scheme: str, viewport: dict | None = None) -> list[str]:
    """axe-core's violations on the page at `url`, in the given colour scheme ("light", "dark").

    The script is added to the page by the test, not by the site, so the context lets it
    past the site's Content-Security-Policy (which the crawl checks on its own).
    """
    source = _require(AXE_JS, "axe-core (npm package axe-core)").read_text(encoding="utf-8")
    context = browser.new_context(color_scheme=color_scheme, bypass_csp=True,
                                  viewport=viewport or {"width": 1280, "height": 900})
    try:
        tab = context.new_page()
        tab.goto(url, wait_until="load")
        tab.add_script_tag(content=source)
        return tab.evaluate(AXE_RUN)
    finally:
        context.close()


# -- serving a folder over loopback HTTP ---------------------------------------------------------

@dataclass
class Served:
    url: str  # the server's root, ending in "/"
    paths: list[str] = field(default_factory=list)  # every path the browser asked for, in order
    _asked: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def record(self, path: str) -> None:
        with self._asked:
            self.paths.append(path)
            self._asked.notify_all()

    def wait_for(self, path: str, timeout: float) -> bool:
        """Whether `path` is asked for, returning as soon as it is (or after `timeout` s if not)."""
        with self._asked:
            return self._asked.wait_for(lambda: path in self.paths, timeout)


class _Handler(http.server.SimpleHTTPRequestHandler):
    not_found_page: Path | None = None  # served, with status 404, for any missing path
    served: Served

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass

    def send_head(self):
        self.served.record(self.path)
        return super().send_head()

    def send_error(self, code, message=None, explain=None) -> None:
        if code != 404 or self.not_found_page is None:
            return super().send_error(code, message, explain)
        body = self.not_found_page.read_bytes()
        self.send_response(404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


@contextmanager
def serve(folder: Path, not_found_page: Path | None = None) -> Iterator[Served]:
    """Serve `folder` on 127.0.0.1 (a free port) in a thread, recording what is asked for.

    With `not_found_page`, a missing path gets that page with status 404, as GitHub Pages
    answers with a site's 404.html.
    """
    served = Served(url="")
    handler_class = type("Handler", (_Handler,), {"not_found_page": not_found_page,
                                                  "served": served})
    handler = functools.partial(handler_class, directory=str(folder))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        served.url = f"http://127.0.0.1:{server.server_address[1]}/"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield served
        finally:
            server.shutdown()
            thread.join()
