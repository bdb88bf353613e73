"""The only code that writes the output folder.

A site is built in a temporary folder beside the target and swapped in at the
end, so a failed or interrupted build leaves the previous site as it was.
reportgen only ever replaces a folder that carries its marker file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

from reportgen.errors import UserError
from reportgen.layout import MARKER

TEMP_PREFIX = ".reportgen-tmp-"
OLD_PREFIX = ".reportgen-old-"


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_target(target: Path, protected: list[Path] = ()) -> Path:
    """The resolved target, or a UserError if writing there could destroy someone's files."""
    resolved = target.expanduser().resolve()
    home = Path.home().resolve()
    cwd = Path.cwd().resolve()
    if resolved == Path(resolved.anchor) or resolved in (home, cwd):
        raise UserError(f"refusing to write the site to {target}: choose a folder of its own, "
                        "such as output/site")
    for folder in protected:
        folder = folder.resolve()
        if _is_within(resolved, folder) or _is_within(folder, resolved):
            raise UserError(f"refusing to write the site to {target}: it overlaps {folder}, "
                            "which holds your data")
    if resolved.exists() and not resolved.is_dir():
        raise UserError(f"refusing to write the site to {target}: it is a file, not a folder")
    # .git even beside the marker: a clone of the published gh-pages branch carries the marker.
    is_repository = (resolved / ".git").exists()
    if resolved.is_dir() and (is_repository or any(resolved.iterdir())
                              and not (resolved / MARKER).is_file()):
        what = "a git repository" if is_repository else "files reportgen did not make"
        raise UserError(f"refusing to replace {target}: it holds {what}; "
                        "choose an empty or new folder")
    return resolved


def _remove_ours(folder: Path) -> None:
    """Delete a folder only if it is one of ours (it carries the marker)."""
    if folder.is_dir() and (folder / MARKER).is_file():
        shutil.rmtree(folder, ignore_errors=True)


class InterruptedAfterSwap(KeyboardInterrupt):
    """Ctrl-C or SIGTERM arrived during the swap, which finished: the new site is in place."""


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block is done, then raise KeyboardInterrupt.

    The swap of old and new site must not stop halfway. Python runs signal handlers
    in the main thread whichever thread the signal reaches, so swapping handlers
    (not masking one thread) is what defers them.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        raise KeyboardInterrupt


class SiteWriter:
    """Context manager: ``with SiteWriter(target) as site: site.write(path, data)``.

    On a clean exit the new site replaces the old one; on any exception (Ctrl-C
    included) the temporary folder is removed and the old site is untouched.
    """

    def __init__(self, target: Path, protected: list[Path] = ()):
        self.target = check_target(target, list(protected))
        self.temp: Path | None = None
        self.bytes_written = 0
        self.files_written = 0
        self._made_dirs: set[str] = set()
        self._count_lock = threading.Lock()  # write() is called from drawing threads

    @classmethod
    def into(cls, temp: Path, target: Path) -> SiteWriter:
        """A writer into the staging folder another SiteWriter made (a build's worker, in
        this process or another): ``write`` only; the owner counts its files with ``count``."""
        writer = cls(target)
        writer.temp = temp
        return writer

    def count(self, files: int, size: int) -> None:
        """Add files that were written into the staging folder by other writers."""
        with self._count_lock:
            self.files_written += files
            self.bytes_written += size

    def __enter__(self) -> SiteWriter:
        parent = self.target.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self._clean_leftovers(parent)
            self.temp = parent / f"{TEMP_PREFIX}{self.target.name}-{uuid.uuid4().hex[:8]}"
            self.temp.mkdir()
            (self.temp / MARKER).write_text("This folder was written by reportgen.\n")
        except OSError as error:
            raise UserError(f"cannot write to {parent}: {error.strerror or error}") from None
        return self

    def _clean_leftovers(self, parent: Path) -> None:
        """Folders left by a build that was killed outright (SIGKILL, power loss) or whose swap failed.

        A moved-aside old site is the only copy of the previous site while the target is
        missing: it is put back, never deleted. Only beside a site of ours is it a stale copy.
        """
        for folder in parent.glob(f"{TEMP_PREFIX}{self.target.name}-*"):
            _remove_ours(folder)
        old_sites = [folder for folder in parent.glob(f"{OLD_PREFIX}{self.target.name}-*")
                     if folder.is_dir() and (folder / MARKER).is_file()]
        if not old_sites:
            return
        if not self.target.exists():
            # The newest: its marker was written when that site's build began.
            newest = max(old_sites, key=lambda folder: (folder / MARKER).stat().st_mtime_ns)
            newest.rename(self.target)
        elif (self.target / MARKER).is_file():
            for folder in old_sites:
                _remove_ours(folder)

    def write(self, relative_path: str, data: bytes, *, counted: bool = True) -> None:
        """``data`` into the staging folder; ``counted=False`` for the build's own working
        files there (caches), which are removed before the swap and are not the site's."""
        assert self.temp is not None, "write() outside the with block"
        path = self.temp / relative_path
        folder = os.path.dirname(relative_path)
        try:
            if folder not in self._made_dirs:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._made_dirs.add(folder)
            path.write_bytes(data)
        except OSError as error:
            raise UserError(self._explain(error)) from None
        if not counted:
            return
        with self._count_lock:
            self.bytes_written += len(data)
            self.files_written += 1

    def _explain(self, error: OSError) -> str:
        if error.errno == errno.ENOSPC:
            return (f"the disk is full while writing the site next to {self.target}; "
                    "the previous site is unchanged")
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return (f"no permission to write the site next to {self.target}; "
                    "the previous site is unchanged")
        return f"cannot write the site next to {self.target}: {error.strerror or error}"

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self._commit()
        else:
            self._abort()
        return False

    def _abort(self) -> None:
        if self.temp is not None:
            shutil.rmtree(self.temp, ignore_errors=True)

    def _commit(self) -> None:
        """Swap the new site in: two renames, the old site removed only after the swap."""
        try:
            with deferred_interrupts():
                self._swap()
        except KeyboardInterrupt:
            raise InterruptedAfterSwap from None

    def _swap(self) -> None:
        assert self.temp is not None
        old = None
        try:
            if self.target.exists():
                old = self.target.parent / f"{OLD_PREFIX}{self.target.name}-{uuid.uuid4().hex[:8]}"
                self.target.rename(old)
            self.temp.rename(self.target)
        except OSError as error:
            self._abort()
            if old is not None and not self.target.exists():
                self._roll_back(old, error)
            raise UserError(self._explain(error)) from None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def _roll_back(self, old: Path, error: OSError) -> None:
        """Put the previous site back; if even that fails, say where it is (the next build restores it)."""
        try:
            old.rename(self.target)
        except OSError:
            raise UserError(f"cannot move the new site into {self.target} "
                            f"({error.strerror or error}) nor the previous site back: it is in "
                            f"{old}, and the next build into {self.target} puts it back first"
                            ) from None
