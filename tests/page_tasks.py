"""Sabotaged page renderers for the failure tests of the build's page process.

The build passes its ``render_site`` to that process by name, and the process imports it, so
a test's stand-in must live in a module it can import: this one is in tests/, which is on
sys.path in pytest and, through multiprocessing's spawn, in the page process.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

# The real one, taken before a test puts a stand-in in its place in the test's process.
from reportgen.render import render_site


def render_then_fail(report, *, count: int, site_url: str | None = None):
    """The real pages, until ``count`` of them; then an error."""
    yield from itertools.islice(render_site(report, site_url=site_url), count)
    raise RuntimeError("rendering failed on purpose")


def render_forever(report, *, pid_file: Path, site_url: str | None = None):
    """One real page, then 20,000 tiny ones, each in a folder of its own (a write after the
    staging folder's removal would make it again), then nothing for ten minutes; its
    process id in ``pid_file`` once it has begun."""
    yield from itertools.islice(render_site(report, site_url=site_url), 1)
    Path(pid_file).write_text(str(os.getpid()))
    for number in range(20_000):
        yield f"never-stopped/{number}/page.html", b"a page the build should have stopped"
    time.sleep(600)


def toy_pages(report, *, site_url: str | None = None):
    """A page per name in ``report`` (a list of names), for the page process' own tests."""
    for name in report:
        yield f"{name}.html", f"<p>{name} {site_url}</p>".encode()


def pages_then(report, *, error: BaseException, site_url: str | None = None):
    """The toy pages, then ``error``."""
    yield from toy_pages(report, site_url=site_url)
    raise error


def pages_then_wait(report, *, ready: Path, site_url: str | None = None):
    """The toy pages, ``ready`` written, then a wait of ten minutes (to be killed in)."""
    yield from toy_pages(report, site_url=site_url)
    Path(ready).write_text(str(os.getpid()))
    time.sleep(600)
