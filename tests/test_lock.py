"""One build at a time per site folder: a second is refused with one line, a dead one's lock is taken over."""

from __future__ import annotations

import subprocess
import sys

import pytest

from reportgen.errors import UserError
from reportgen.lock import build_lock, lock_path

HOLDER = """
import sys
from pathlib import Path
from reportgen.lock import build_lock
with build_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.read()  # hold it until the test closes our stdin (or kills us)
"""


@pytest.fixture
def holder(tmp_path):
    """Another process that holds the lock on tmp_path/site until it ends."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "site")],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "locked\n"  # an event, not a sleep
    yield process
    process.kill()
    process.communicate()  # reaps it and closes its pipes


def test_a_second_build_on_the_same_folder_is_refused_naming_the_first(tmp_path, holder):
    refusal = rf"another reportgen build \(process {holder.pid}\) is writing .*site; wait for it"
    with pytest.raises(UserError, match=refusal), build_lock(tmp_path / "site"):
        pass


def test_the_lock_of_a_killed_build_is_taken_over(tmp_path, holder):
    holder.kill()
    holder.communicate()
    with build_lock(tmp_path / "site") as path:
        assert path == lock_path(tmp_path / "site")
        assert path.read_text() == f"{__import__('os').getpid()}\n"


def test_the_lock_is_released_after_a_build_and_after_a_failure(tmp_path):
    with build_lock(tmp_path / "site"):
        pass
    with pytest.raises(RuntimeError), build_lock(tmp_path / "site"):
        raise RuntimeError("the build failed")
    with build_lock(tmp_path / "site"):  # free again
        pass


def test_the_lock_file_sits_beside_the_site_not_inside_it(tmp_path):
    assert lock_path(tmp_path / "out" / "site") == (tmp_path / "out" / ".site.reportgen-lock")


def test_a_locked_build_exits_with_one_line_and_leaves_the_folder_alone(tmp_path, holder):
    from click.testing import CliRunner

    from reportgen.cli import main

    result = CliRunner().invoke(main, ["build", "--data", str(tmp_path / "nowhere"),
                                       "--out", str(tmp_path / "site")])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "another reportgen build" in result.output
    assert not (tmp_path / "site").exists()
