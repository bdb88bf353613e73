"""The site writer: atomic swaps, a marker, and never touching folders it did not make."""

from __future__ import annotations

from pathlib import Path

import pytest

from reportgen.errors import UserError
from reportgen.layout import MARKER
from reportgen.site import SiteWriter, check_target


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_site(target: Path, pages: dict[str, bytes]) -> None:
    with SiteWriter(target) as site:
        for path, data in pages.items():
            site.write(path, data)


def test_a_site_is_swapped_in_whole(tmp_path):
    target = tmp_path / "site"
    write_site(target, {"index.html": b"one", "a/b.html": b"b"})
    assert tree(target) == {MARKER: tree(target)[MARKER], "index.html": b"one", "a/b.html": b"b"}
    write_site(target, {"index.html": b"two"})
    assert set(tree(target)) == {MARKER, "index.html"}  # stale pages of the old site are gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_a_failed_build_keeps_the_old_site(tmp_path, error):
    target = tmp_path / "site"
    write_site(target, {"index.html": b"old"})
    before = tree(target)
    with pytest.raises(type(error)), SiteWriter(target) as site:
        site.write("index.html", b"new")
        raise error
    assert tree(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


def test_leftovers_of_a_killed_build_are_removed(tmp_path):
    leftover = tmp_path / ".reportgen-tmp-site-deadbeef"
    leftover.mkdir()
    (leftover / MARKER).write_text("x")
    not_ours = tmp_path / ".reportgen-tmp-site-cafecafe"
    not_ours.mkdir()
    (not_ours / "keep.txt").write_text("mine")
    write_site(tmp_path / "site", {"index.html": b"x"})
    assert not leftover.exists()
    assert (not_ours / "keep.txt").read_text() == "mine"


def test_refuses_folders_it_did_not_make(tmp_path):
    foreign = tmp_path / "docs"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("precious")
    with pytest.raises(UserError, match="did not make"):
        SiteWriter(foreign)
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    with pytest.raises(UserError, match="git repository"):
        check_target(repo)
    assert (foreign / "notes.txt").read_text() == "precious"


def test_refuses_dangerous_targets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for target in (Path("."), Path("/"), Path.home()):
        with pytest.raises(UserError, match="refusing"):
            check_target(target)
    data = tmp_path / "data"
    data.mkdir()
    for target in (data, data / "site", tmp_path):
        with pytest.raises(UserError, match="refusing"):
            check_target(target, [data])
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="file"):
        check_target(tmp_path / "file")


def test_an_empty_folder_may_be_used(tmp_path):
    target = tmp_path / "empty"
    target.mkdir()
    write_site(target, {"index.html": b"x"})
    assert (target / "index.html").read_bytes() == b"x"


def test_read_only_target_is_a_clear_error(tmp_path, monkeypatch):
    import errno

    target = tmp_path / "site"
    write_site(target, {"index.html": b"old"})
    before = tree(target)

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(UserError, match="cannot write"):
        write_site(target, {"index.html": b"new"})
    monkeypatch.undo()
    assert tree(target) == before


def test_disk_full_is_a_clear_error_and_keeps_the_old_site(tmp_path, monkeypatch):
    import errno

    target = tmp_path / "site"
    write_site(target, {"index.html": b"old"})
    before = tree(target)

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(UserError, match="disk is full"), SiteWriter(target) as site:
        monkeypatch.setattr(Path, "write_bytes", full)
        site.write("index.html", b"new")
    monkeypatch.undo()
    assert tree(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


def test_interrupts_wait_for_the_swap_to_finish(tmp_path, monkeypatch):
    import os
    import signal

    from reportgen import site as site_module

    target = tmp_path / "site"
    write_site(target, {"index.html": b"old"})
    real_swap = site_module.SiteWriter._swap
    reached_end_of_swap = []

    def swap_interrupted_midway(self):
        os.kill(os.getpid(), signal.SIGTERM)
        real_swap(self)
        reached_end_of_swap.append(True)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)  # what the CLI installs
    monkeypatch.setattr(site_module.SiteWriter, "_swap", swap_interrupted_midway)
    try:
        with pytest.raises(site_module.InterruptedAfterSwap):
            write_site(target, {"index.html": b"new"})
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert reached_end_of_swap == [True]  # the signal waited for the swap...
    assert tree(target)["index.html"] == b"new"  # ...so the site is whole, the new one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]
