"""The page process (reportgen.pages): the build's pages rendered beside its drawing.

The render functions are toys from page_tasks.py, which the spawned process imports by name.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import page_tasks
import pytest

from reportgen.errors import UserError
from reportgen.pages import PageProcess, write_pages
from reportgen.site import SiteWriter


@pytest.fixture
def staging(tmp_path):
    with SiteWriter(tmp_path / "site") as site:
        yield site


def test_the_pages_are_written_into_the_staging_folder_and_counted(staging):
    with PageProcess() as pages:
        pages.start(page_tasks.toy_pages, ["a", "b", "c"], "https://x.test/", staging.temp,
                    staging.target)
        files, size = pages.wait()
    here = SiteWriter.into(staging.temp, staging.target)  # the same pages, in this process
    write_pages(page_tasks.toy_pages, ["a", "b", "c"], "https://x.test/", here)
    assert (files, size) == (here.files_written, here.bytes_written) == (3, 3 * 24)
    assert (staging.temp / "b.html").read_bytes() == b"<p>b https://x.test/</p>"


@pytest.mark.parametrize("error", [UserError("the disk is full"), ValueError("a bug")],
                         ids=["user error", "bug"])
def test_its_error_is_raised_in_the_build_with_the_process_traceback(staging, error):
    render = functools.partial(page_tasks.pages_then, error=error)
    with PageProcess() as pages:
        pages.start(render, ["a"], None, staging.temp, staging.target)
        with pytest.raises(type(error), match=str(error)) as raised:
            pages.wait()
    # A UserError is still one (the CLI prints its one line); its note is for the curious.
    assert "In the page-rendering process; traceback" in raised.value.__notes__[0]
    assert "pages_then" in raised.value.__notes__[0]
    assert (staging.temp / "a.html").exists()


def test_a_killed_process_is_an_error_not_a_wait_for_ever(staging, tmp_path):
    ready = tmp_path / "ready"
    with PageProcess() as pages:
        pages.start(functools.partial(page_tasks.pages_then_wait, ready=ready), ["a"], None,
                    staging.temp, staging.target)
        _wait_for(ready)
        os.kill(int(ready.read_text()), signal.SIGKILL)
        with pytest.raises(RuntimeError, match="ended without finishing"):
            pages.wait()


def test_ctrl_c_is_left_to_the_build_and_close_stops_the_process(staging, tmp_path):
    ready = tmp_path / "ready"
    pages = PageProcess()
    pages.start(functools.partial(page_tasks.pages_then_wait, ready=ready), ["a"], None,
                staging.temp, staging.target)
    _wait_for(ready)
    os.kill(int(ready.read_text()), signal.SIGINT)  # a terminal sends it to the whole group
    time.sleep(0.5)
    assert pages._process.poll() is None
    pages.close()  # what the build does when it fails or is interrupted: no wait of ten minutes
    assert pages._process.returncode == -signal.SIGTERM
    pages.close()  # and again, harmlessly


def test_a_process_given_no_report_ends_when_closed():
    pages = PageProcess()
    pages.close()
    assert pages._process.returncode in (0, -signal.SIGTERM)


def _wait_for(path, seconds: float = 60) -> None:
    for _ in range(int(seconds * 10)):
        if path.exists():
            return
        time.sleep(0.1)
    raise AssertionError(f"{path} never appeared")


UNGUARDED_SCRIPT = """
import sys
from pathlib import Path
print("the script ran", flush=True)
from reportgen.pages import PageProcess
import page_tasks
staging = Path(sys.argv[1])
with PageProcess() as pages:
    pages.start(page_tasks.toy_pages, ["a"], None, staging, staging.parent / "site")
    print(pages.wait(), flush=True)
"""


def test_a_script_without_a_main_guard_runs_once(tmp_path):
    """multiprocessing's spawn would run a script that builds, unguarded, again in the page
    process (and build twice); the page process is a plain subprocess."""
    script = tmp_path / "build_my_site.py"
    script.write_text(UNGUARDED_SCRIPT)
    staging = tmp_path / "staging"
    staging.mkdir()
    tests = str(Path(__file__).parent)
    result = subprocess.run([sys.executable, str(script), str(staging)], capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": tests}, check=True)
    assert result.stdout.splitlines() == ["the script ran", "(1, 13)"], result.stderr
