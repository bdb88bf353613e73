"""The site writer: atomic swaps, a marker, and never touching folders it did not make."""

from __future__ import annotations

import errno
import os
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


def make_folder(folder: Path, pages: dict[str, bytes], ours: bool = True) -> None:
    folder.mkdir()
    if ours:
        (folder / MARKER).write_text("x")
    for path, data in pages.items():
        (folder / path).write_bytes(data)


def test_leftovers_of_a_killed_build_are_removed(tmp_path):
    write_site(tmp_path / "site", {"index.html": b"old"})
    leftovers = [tmp_path / ".reportgen-tmp-site-deadbeef", tmp_path / ".reportgen-old-site-deadbeef"]
    for leftover in leftovers:
        make_folder(leftover, {"index.html": b"leftover"})
    not_ours = tmp_path / ".reportgen-tmp-site-cafecafe"
    make_folder(not_ours, {"keep.txt": b"mine"}, ours=False)
    write_site(tmp_path / "site", {"index.html": b"x"})
    assert not any(leftover.exists() for leftover in leftovers)
    assert (not_ours / "keep.txt").read_text() == "mine"


def fail_renames(monkeypatch, *which: str) -> None:
    """Make some of the swap's renames fail, as on a full, read-only or flaky disk.

    "aside": the old site to a side folder; "into place": the new site to the target;
    "back": the old site from its side folder to the target again.
    """
    real_rename, real_replace = os.rename, os.replace

    def kind(source, destination) -> str:
        if Path(source).name.startswith(".reportgen-tmp-"):
            return "into place"
        if Path(destination).name.startswith(".reportgen-old-"):
            return "aside"
        return "back" if Path(source).name.startswith(".reportgen-old-") else "other"

    def failing(real):
        def rename(source, destination, *args, **kwargs):
            if kind(source, destination) in which:
                raise OSError(errno.EIO, "Input/output error")
            return real(source, destination, *args, **kwargs)
        return rename

    monkeypatch.setattr(os, "rename", failing(real_rename))
    monkeypatch.setattr(os, "replace", failing(real_replace))


@pytest.mark.parametrize("which", [("aside",), ("into place",)], ids=["aside", "into-place"])
def test_a_failed_rename_in_the_swap_keeps_the_old_site(tmp_path, monkeypatch, which):
    target = tmp_path / "site"
    write_site(target, {"index.html": b"old", "a/b.html": b"b"})
    before = tree(target)
    fail_renames(monkeypatch, *which)
    assert refusal(write_site, target, {"index.html": b"new"}) == (
        f"cannot write the site next to {target}: Input/output error")
    monkeypatch.undo()
    assert tree(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


def test_an_old_site_that_cannot_be_put_back_survives_the_next_build(tmp_path, monkeypatch):
    target = tmp_path / "site"
    write_site(target, {"index.html": b"old", "a/b.html": b"b"})
    before = tree(target)
    fail_renames(monkeypatch, "into place", "back")
    message = refusal(write_site, target, {"index.html": b"new"})
    monkeypatch.undo()
    [aside] = tmp_path.iterdir()  # the new site is gone, the old one kept beside the target
    assert message == (f"cannot move the new site into {target} (Input/output error) nor the "
                       f"previous site back: it is in {aside}, and the next build into {target} "
                       "puts it back first")
    assert tree(aside) == before
    # The next build puts it back first, so even a build that fails leaves it in place...
    with pytest.raises(RuntimeError), SiteWriter(target) as site:
        site.write("index.html", b"newer")
        raise RuntimeError("the next build fails too")
    assert tree(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]
    # ...and one that succeeds replaces it as usual.
    write_site(target, {"index.html": b"newest"})
    assert tree(target)["index.html"] == b"newest"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


def test_the_newest_old_site_is_put_back_when_the_target_is_missing(tmp_path):
    # Named against their age, so only the markers' times can pick the right one.
    newer, older = tmp_path / ".reportgen-old-site-00000000", tmp_path / ".reportgen-old-site-ffffffff"
    make_folder(newer, {"index.html": b"newer"})
    make_folder(older, {"index.html": b"older"})
    os.utime(older / MARKER, ns=(1_000_000_000, 1_000_000_000))
    with pytest.raises(RuntimeError), SiteWriter(tmp_path / "site"):
        raise RuntimeError("a build that fails")
    assert tree(tmp_path / "site")["index.html"] == b"newer"
    assert tree(older)["index.html"] == b"older"  # kept until a site is in place again
    write_site(tmp_path / "site", {"index.html": b"new"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


def test_an_old_site_beside_a_folder_not_ours_is_left_alone(tmp_path):
    aside = tmp_path / ".reportgen-old-site-deadbeef"
    make_folder(aside, {"index.html": b"old"})
    (tmp_path / "site").mkdir()  # empty, so it may be written to
    write_site(tmp_path / "site", {"index.html": b"new"})
    assert tree(aside)["index.html"] == b"old"


def refusal(call, *args) -> str:
    with pytest.raises(UserError) as error:
        call(*args)
    return str(error.value)


def test_refuses_folders_it_did_not_make(tmp_path):
    foreign = tmp_path / "docs"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("precious")
    assert refusal(SiteWriter, foreign) == (f"refusing to replace {foreign}: it holds files reportgen "
                                            "did not make; choose an empty or new folder")
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    assert refusal(check_target, repo) == (f"refusing to replace {repo}: it holds a git repository; "
                                           "choose an empty or new folder")
    assert (foreign / "notes.txt").read_text() == "precious"


def test_refuses_dangerous_targets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for target in (Path("."), Path("/"), Path.home()):
        assert refusal(check_target, target) == (f"refusing to write the site to {target}: choose a "
                                                 "folder of its own, such as output/site")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    data = tmp_path / "data"
    data.mkdir()
    ours = tmp_path / "ours"  # a site of ours that somehow holds the data: still refused
    make_folder(ours, {"index.html": b"x"})
    (ours / "data").mkdir()
    for target, protected in ((data, data), (data / "site", data), (tmp_path, data),
                              (ours, ours / "data")):
        assert refusal(check_target, target, [protected]) == (
            f"refusing to write the site to {target}: it overlaps {protected}, which holds your data")
        assert refusal(SiteWriter, target, [protected]).startswith("refusing")
    (tmp_path / "file").write_text("x")
    assert refusal(check_target, tmp_path / "file") == (
        f"refusing to write the site to {tmp_path / 'file'}: it is a file, not a folder")


def test_a_folder_not_ours_named_like_an_old_site_is_never_put_in_place(tmp_path):
    foreign = tmp_path / ".reportgen-old-site-cafecafe"
    make_folder(foreign, {"notes.txt": b"mine"}, ours=False)
    with pytest.raises(RuntimeError), SiteWriter(tmp_path / "site"):
        raise RuntimeError("a build that fails")
    assert not (tmp_path / "site").exists()
    write_site(tmp_path / "site", {"index.html": b"new"})
    assert tree(foreign) == {"notes.txt": b"mine"}
    assert tree(tmp_path / "site") == {MARKER: tree(tmp_path / "site")[MARKER], "index.html": b"new"}


def test_folders_beside_the_data_and_deep_new_folders_are_fine(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for target in (tmp_path / "site", tmp_path / "data-site", tmp_path / "out" / "a" / "site"):
        assert check_target(target, [data]) == target.resolve()
        write_site(target, {"index.html": b"x", "a/b/c/d.html": b"deep"})
        assert (target / "a/b/c/d.html").read_bytes() == b"deep"


def test_the_writer_counts_files_and_bytes(tmp_path):
    with SiteWriter(tmp_path / "site") as site:
        assert (site.files_written, site.bytes_written) == (0, 0)
        for path, data in {"index.html": b"12345", "a/b.html": b"678", "a/c.png": b""}.items():
            site.write(path, data)
        assert (site.files_written, site.bytes_written) == (3, 8)


def test_writing_outside_the_with_block_is_a_bug(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AssertionError, match=r"^write\(\) outside the with block$"):
        SiteWriter(tmp_path / "site").write("index.html", b"x")
    assert list(tmp_path.iterdir()) == []


def undeletable(monkeypatch, name: str) -> None:
    """Files called `name` cannot be removed, as on a flaky network share."""
    real_unlink = os.unlink

    def unlink(path, *args, **kwargs):
        if os.path.basename(path) == name:
            raise PermissionError(errno.EPERM, "Operation not permitted")
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)


def test_a_failed_clean_up_never_hides_the_error_nor_the_old_site(tmp_path, monkeypatch):
    target = tmp_path / "site"
    write_site(target, {"index.html": b"old"})
    before = tree(target)
    undeletable(monkeypatch, "stuck.html")
    with pytest.raises(RuntimeError, match="the real error"), SiteWriter(target) as site:
        site.write("stuck.html", b"new")
        raise RuntimeError("the real error")
    monkeypatch.undo()
    assert tree(target) == before


def test_an_old_site_that_cannot_be_removed_does_not_fail_the_build(tmp_path, monkeypatch):
    target = tmp_path / "site"
    write_site(target, {"stuck.html": b"old"})
    undeletable(monkeypatch, "stuck.html")
    write_site(target, {"index.html": b"new"})
    monkeypatch.undo()
    assert set(tree(target)) == {MARKER, "index.html"}
    write_site(target, {"index.html": b"newer"})  # nor the next one
    assert tree(target)["index.html"] == b"newer"


def test_a_first_build_whose_rename_fails_has_nothing_to_put_back(tmp_path, monkeypatch):
    fail_renames(monkeypatch, "into place")
    target = tmp_path / "site"
    assert refusal(write_site, target, {"index.html": b"new"}) == (
        f"cannot write the site next to {target}: Input/output error")
    assert list(tmp_path.iterdir()) == []


def test_a_leftover_that_cannot_be_removed_does_not_stop_the_build(tmp_path, monkeypatch):
    leftover = tmp_path / ".reportgen-tmp-site-deadbeef"
    make_folder(leftover, {"stuck.html": b"x"})
    undeletable(monkeypatch, "stuck.html")
    write_site(tmp_path / "site", {"index.html": b"new"})
    assert (tmp_path / "site" / "index.html").read_bytes() == b"new"


def test_an_empty_folder_may_be_used(tmp_path):
    target = tmp_path / "empty"
    target.mkdir()
    write_site(target, {"index.html": b"x"})
    assert (target / "index.html").read_bytes() == b"x"


def test_read_only_target_is_a_clear_error(tmp_path, monkeypatch):
    target = tmp_path / "site"
    write_site(target, {"index.html": b"old"})
    before = tree(target)

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert refusal(write_site, target, {"index.html": b"new"}) == (
        f"cannot write to {tmp_path}: Read-only file system")
    monkeypatch.undo()
    assert tree(target) == before


def test_disk_full_is_a_clear_error_and_keeps_the_old_site(tmp_path, monkeypatch):
    target = tmp_path / "site"
    write_site(target, {"index.html": b"old"})
    before = tree(target)

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(UserError) as error, SiteWriter(target) as site:
        monkeypatch.setattr(Path, "write_bytes", full)
        site.write("index.html", b"new")
    monkeypatch.undo()
    assert str(error.value) == (f"the disk is full while writing the site next to {target}; "
                                "the previous site is unchanged")
    assert tree(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


@pytest.mark.parametrize(("code", "text", "message"), [
    (errno.EACCES, "Permission denied", "no permission to write the site next to {}; "
                                        "the previous site is unchanged"),
    (errno.EIO, "Input/output error", "cannot write the site next to {}: Input/output error"),
], ids=["permission", "other"])
def test_write_errors_are_explained(tmp_path, monkeypatch, code, text, message):
    target = tmp_path / "site"

    def failing(self, data):
        raise OSError(code, text)

    with pytest.raises(UserError) as error, SiteWriter(target) as site:
        monkeypatch.setattr(Path, "write_bytes", failing)
        site.write("index.html", b"new")
    assert str(error.value) == message.format(target)


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
