"""The pages (and the atlas strips) rendered in a process of their own, beside the drawing.

Once the first drawn batch has fixed which images get feature maps, the report is complete
and its pages can be rendered while the drawing pass goes on. Jinja is Python and holds the
GIL, so rendering in a thread beside the drawing threads slowed both: together they took
longer than one after the other (benchmarks/results.md, *Measured by hand*). A process has a GIL
of its own. It is spawned when the build begins, so Python, Jinja and the templates load
while TensorFlow imports and a core is idle; it then waits for its one report.

The process writes into the build's staging folder through a ``SiteWriter`` of its own and
sends back what it wrote, or the exception that stopped it, which the build raises as its
own. It ignores Ctrl-C (the terminal sends it to the whole process group; the build decides),
and the build stops it before the staging folder is removed, so nothing is written after.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

from reportgen import drawing, layout
from reportgen.site import SiteWriter

Render = Callable[..., Iterator[tuple[str, bytes]]]  # (report, site_url=...): files


def report_files(report, *, render: Render, site_url: str | None = None
                 ) -> Iterator[tuple[str, bytes]]:
    """What is made of the finished report alone: the atlas strips (each channel's top
    images, kept in its statistics), then every page ``render`` makes. The build renders
    ``functools.partial(report_files, render=render_site)``."""
    palette = drawing.colormap_palette(report.colormap)
    for layer in report.layers:
        for channel in layer.stats.channels:
            if channel.top and not channel.dead:
                yield layout.atlas_asset(layer.slug, channel.index), _strip(channel, palette)
    yield from render(report, site_url=site_url)


def _strip(channel, palette: bytes) -> bytes:
    maps = [top.feature_map for top in channel.top]
    low = min(0.0, min(float(feature_map.min()) for feature_map in maps))
    return drawing.strip_png(maps, low, max(channel.max, low), palette)


def write_pages(render: Render, report, site_url: str | None, site: SiteWriter) -> None:
    """Every file ``render`` makes of ``report``, written by ``site``."""
    for path, data in render(report, site_url=site_url):
        site.write(path, data)


class PageProcess:
    """``start`` a report's rendering, go on with other work, then ``wait`` for it.

    A context manager: leaving it stops the process, finished or not.

    A plain subprocess (``python -c``), not multiprocessing's spawn, which would run the
    caller's own script again in the new process when it lacks an ``if __name__ ==
    "__main__":`` guard: a script that calls ``build()`` would build twice. The job goes
    down its stdin as a pickle, the outcome comes back up its stdout; it imports modules
    from this process' ``sys.path``.
    """

    def __init__(self) -> None:
        path = os.pathsep.join(entry or os.getcwd() for entry in sys.path)
        self._process = subprocess.Popen(
            [sys.executable, "-c", "from reportgen.pages import serve; serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": path})
        self._started = False

    def start(self, render: Render, report, site_url: str | None, staging: Path,
              target: Path) -> None:
        """Render ``report`` into ``staging``; ``render`` is passed by name (a module's
        function, or a partial of one), the report by value."""
        assert not self._started, "a page process renders one report"
        self._started = True
        try:
            pickle.dump((render, report, site_url, staging, target), self._process.stdin,
                        protocol=pickle.HIGHEST_PROTOCOL)
            self._process.stdin.close()
        except BrokenPipeError:  # it died before it was given anything; wait() says how
            pass

    def wait(self) -> tuple[int, int]:
        """(files, bytes) written, once every page is; the process' exception is raised here."""
        assert self._started, "wait() before start()"
        try:
            outcome = pickle.load(self._process.stdout)
        except EOFError:  # killed (out of memory, a signal to it alone): no message, no pages
            raise RuntimeError(f"the page-rendering process ended without finishing "
                               f"(exit code {self._process.wait()})") from None
        if outcome[0] == "error":
            raise outcome[1]
        return outcome[1], outcome[2]

    def close(self) -> None:
        """Stop the process (at once, if it is still rendering) and wait for it to end; a
        second call does nothing."""
        for pipe in (self._process.stdin, self._process.stdout):
            with contextlib.suppress(BrokenPipeError):  # unsent data of a job it never read
                pipe.close()
        if self._process.poll() is None:
            self._process.terminate()
        self._process.wait()

    def __enter__(self) -> PageProcess:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def serve() -> None:
    """The page process: ready the templates, render the one report it is sent, report back."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the build decides
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever else writes to stdout goes to stderr, not into the replies
    from reportgen import render

    environment = render.environment()
    for name in environment.list_templates():  # compiled now, while the build is busy
        environment.get_template(name)
    try:
        render_function, report, site_url, staging, target = pickle.load(sys.stdin.buffer)
    except EOFError:  # the build ended before it had pages to render
        return
    # The report is millions of small objects that live as long as this process: the cycle
    # collector is told to leave them be (and so is the process' end).
    gc.freeze()
    site = SiteWriter.into(staging, target)
    try:
        write_pages(render_function, report, site_url, site)
    except Exception as error:  # noqa: BLE001 - sent to the build, which raises it
        error.add_note("".join(traceback.format_exception(error)).rstrip()
                       .replace("Traceback", "In the page-rendering process; traceback", 1))
        outcome = ("error", _picklable(error))
    else:
        outcome = ("done", site.files_written, site.bytes_written)
    pickle.dump(outcome, replies, protocol=pickle.HIGHEST_PROTOCOL)
    replies.close()


def _picklable(error: Exception) -> Exception:
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001 - an exception type that does not pickle
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


__all__ = ["PageProcess", "report_files", "write_pages"]
