"""What runs inside a Dask worker process; imported only where Dask is installed."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin, get_worker


class OpenedWorker(WorkerPlugin):
    """Opens reportgen's worker (loads the model) once per worker process, from the plan it carries."""

    def __init__(self, name: str, plan, open_worker: Callable[[Any], Any], tf_threads: int | None):
        self.name, self.plan, self.open_worker, self.tf_threads = name, plan, open_worker, tf_threads
        self.opened = None

    def setup(self, worker) -> None:
        # Read by TensorFlow when it creates its thread pools, at its first operation, so
        # workers sharing a machine do not oversubscribe its cores. A LocalCluster sets them
        # in the worker's environment before it starts; `dask worker --nworkers N` gives each
        # worker cores / N threads, and TensorFlow gets as many.
        threads = self.tf_threads or worker.state.nthreads
        for variable in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
            os.environ.setdefault(variable, str(threads))
        self.opened = self.open_worker(self.plan)

    def teardown(self, worker) -> None:
        self.opened = None


def run_task(plugin_name: str, task: Callable, shard):
    """A task as the cluster runs it: the opened worker comes from the plugin, not over the wire."""
    return task(get_worker().plugins[plugin_name].opened, shard)


def check_paths(read_paths: Sequence[str], write_folder: str | None) -> dict:
    """Run on every worker: what it cannot see or write, and its reportgen version."""
    from reportgen import __version__

    problems = [f"cannot see {path}" for path in read_paths if not os.path.exists(path)]
    if write_folder is not None:
        probe = Path(write_folder) / f".reportgen-probe-{socket.gethostname()}-{os.getpid()}"
        try:
            probe.write_bytes(b"reportgen")
            probe.unlink()
        except OSError as error:
            problems.append(f"cannot write into {write_folder} ({error.strerror or error})")
    return {"host": socket.gethostname(), "problems": problems, "version": __version__}


def dask_setup(worker) -> None:
    """Preloaded into the workers of a LocalCluster that reportgen starts (Dask calls it).

    They share the terminal's process group, so Ctrl-C reaches them too: they ignore it and
    let ``reportgen build`` cancel their work and close the cluster, with no traceback each.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)

