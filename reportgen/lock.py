"""One build at a time per site folder.

Two builds writing the same ``--out`` would clean up each other's staging folders
next to it. A build therefore holds an exclusive ``flock`` on a small file beside
the site (``.<name>.reportgen-lock``) from before it trains until the new site is
in place. The kernel drops the lock when its process dies, however it dies, so a
lock left by a crashed or killed build is taken over without asking. The file
itself stays: removing a lock file that another process may be opening races.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reportgen.errors import UserError


def lock_path(target: Path) -> Path:
    target = Path(target).resolve()
    return target.parent / f".{target.name}.reportgen-lock"


@contextmanager
def build_lock(target: Path) -> Iterator[Path]:
    """Hold the lock on ``target`` or raise a UserError naming the build that holds it."""
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 64, 0).decode("ascii", "replace").strip() or "unknown"
            raise UserError(f"another reportgen build (process {holder}) is writing {target}; "
                            "wait for it to finish or stop it, then build again") from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode("ascii"), 0)
        yield path
    finally:
        os.close(descriptor)  # closing drops the lock


__all__ = ["build_lock", "lock_path"]
