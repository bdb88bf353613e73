"""Where a build's passes run: this process (``local``) or a Dask cluster (``dask``).

A pass is a map and a reduce: ``task(worker, shard)`` for every shard of test images,
then the results folded with ``merge``. Both engines fold along the same tree, fixed by
shard number (``fold_in_order``), so the merged result never depends on which worker
finished first, and a Dask build gives the bytes a local one gives.

On Dask, each worker process opens its worker (loads the model) once, in a
``WorkerPlugin`` that carries the plan: the plan travels once per worker, tasks carry
only their shard. Workers write pictures straight into the build's staging folder, so
they must see it and the data at the same paths (a shared file system on a real cluster);
that is checked before any work starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import click

from reportgen.errors import UserError

ENGINES = ("local", "dask")
LOCAL_SHARDS_AT_ONCE = 2  # one in the network while the other's pictures are encoded
DEFAULT_DASK_WORKERS = 2
CONNECT_TIMEOUT_S = 10  # an unreachable scheduler is reported after this long
WORKERLESS_GRACE_S = 30  # a cluster may go this long without workers (restarts) before we give up
POLL_S = 0.5
DASK_EXTRA_MISSING = "the dask engine needs the dask extra: pip install 'reportgen[dask]'"

T = TypeVar("T")


def shard_images(shard) -> int:
    """How many images a shard counts for on the progress bar."""
    return len(shard.indices)


def fold_in_order(items: Iterable[T], merge: Callable[[T, T], T]) -> T:
    """Merge ``items`` pairwise along a balanced tree whose shape depends only on their order.

    Neighbours are merged as soon as both halves have the same size (a binary counter), so
    a local run holds about log2(n) partial results, and a cluster gets a tree of depth
    log2(n) whose pairs are the same whatever finishes first.
    """
    stack: list[tuple[int, T]] = []
    for item in items:
        size, value = 1, item
        while stack and stack[-1][0] == size:
            left_size, left = stack.pop()
            size, value = left_size + size, merge(left, value)
        stack.append((size, value))
    if not stack:
        raise ValueError("nothing to merge: no shards")
    _, value = stack.pop()
    while stack:
        _, left = stack.pop()
        value = merge(left, value)
    return value


def _progressbar(length: int, label: str):
    return click.progressbar(length=length, label=label, file=sys.stderr)


class LocalEngine:
    """Every shard in this process, two at a time in threads, merged in shard order.

    An error or Ctrl-C in one shard is raised once the other running shard has finished
    (at most a batch), so nothing writes into the staging folder after the build lets go."""

    def __init__(self, plan, open_worker: Callable[[Any], Any]):
        self.plan, self._open_worker = plan, open_worker
        self._worker = None

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._worker = None

    @property
    def worker(self):
        if self._worker is None:
            self._worker = self._open_worker(self.plan)
        return self._worker

    def map_reduce(self, task: Callable, shards: Sequence, merge: Callable, *, label: str,
                   count: Callable[[Any], int] = shard_images):
        """Two shards at a time, in threads: while one waits for its pictures to be encoded
        and written, the next is read and computed (the worker lets one batch at a time into
        the network). Results are folded in shard order as they come."""
        shards = sorted(shards, key=lambda shard: shard.number)
        worker = self.worker
        with _progressbar(sum(count(shard) for shard in shards), label) as bar, \
                ThreadPoolExecutor(max_workers=LOCAL_SHARDS_AT_ONCE,
                                   thread_name_prefix="reportgen-shard") as pool:

            def results():
                running: deque = deque()
                for shard in shards:
                    running.append((shard, pool.submit(task, worker, shard)))
                    if len(running) == LOCAL_SHARDS_AT_ONCE:
                        yield finished(*running.popleft())
                while running:
                    yield finished(*running.popleft())

            def finished(shard, future: Future):
                result = future.result()
                bar.update(count(shard))
                return result

            return fold_in_order(results(), merge)


def _local_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (not Linux)
        return os.cpu_count() or 1


class DaskEngine:
    """The shards on a Dask cluster: a ``LocalCluster`` we start, or one at ``scheduler``.

    ``read_paths`` are what every worker must see (the data folder, the model file) and
    ``write_folder`` the folder they write into (the staging folder): absolute paths,
    the same on every machine.
    """

    def __init__(self, plan, open_worker: Callable[[Any], Any], *, workers: int | None = None,
                 scheduler: str | None = None, read_paths: Sequence[Path] = (),
                 write_folder: Path | None = None, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 workerless_grace_s: float = WORKERLESS_GRACE_S):
        _check_cluster_options(workers, scheduler)
        self.plan, self._open_worker = plan, open_worker
        self.workers = DEFAULT_DASK_WORKERS if workers is None and scheduler is None else workers
        self.scheduler = scheduler
        self.read_paths = tuple(str(Path(path).resolve()) for path in read_paths)
        self.write_folder = str(Path(write_folder).resolve()) if write_folder is not None else None
        self.connect_timeout_s, self.workerless_grace_s = connect_timeout_s, workerless_grace_s
        self.client = self.cluster = None
        self._plugin_name = f"reportgen-{uuid.uuid4().hex}"

    # -- starting and stopping -------------------------------------------------------------

    def __enter__(self) -> DaskEngine:
        try:
            import distributed
        except ImportError:
            raise UserError(DASK_EXTRA_MISSING) from None
        try:
            self._start(distributed)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _start(self, distributed) -> None:
        from reportgen.dask_worker import OpenedWorker

        tf_threads = None
        if self.scheduler is None:
            tf_threads = max(1, _local_cores() // self.workers)
            threads = {name: str(tf_threads) for name in
                       ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")}
            # Spawned, not forked (Dask's default): TensorFlow must not be forked.
            self.cluster = distributed.LocalCluster(
                n_workers=self.workers, threads_per_worker=1, processes=True,
                # Its HTTP routes on a free loopback port: with None they still take :8787,
                # with a warning whenever another cluster holds it.
                dashboard_address="127.0.0.1:0", env=threads, preload=["reportgen.dask_worker"],
                silence_logs=logging.ERROR)  # a worker restarted after a crash is routine
            self.client = distributed.Client(self.cluster)
            where = f"the local cluster of {self.workers} workers"
        else:
            self.client = self._connect(distributed)
            where = f"the Dask cluster at {self.scheduler}"
            try:
                self.client.wait_for_workers(1, timeout=self.connect_timeout_s)
            except TimeoutError:
                raise UserError(f"{where} has no workers; start some with "
                                f"`dask worker {self.scheduler}`") from None
        self._check_workers(where)
        # The plugin runs open_worker on every worker now and on any that joins later.
        self.client.register_plugin(OpenedWorker(self._plugin_name, self.plan, self._open_worker,
                                                  tf_threads), name=self._plugin_name)

    def _connect(self, distributed):
        address = self.scheduler if "://" in self.scheduler else f"tcp://{self.scheduler}"
        try:
            return distributed.Client(address, timeout=self.connect_timeout_s)
        except (OSError, TimeoutError) as error:
            reason = str(error).splitlines()[0] if str(error) else ""
            timed_out = isinstance(error, TimeoutError) or "timed out" in reason.lower()
            because = "" if timed_out or not reason else f" ({reason})"
            raise UserError(f"cannot reach the Dask scheduler at {self.scheduler} within "
                            f"{self.connect_timeout_s:g} s{because}") from None
        except ValueError as error:
            raise UserError(f"--scheduler {self.scheduler}: {error}") from None

    def _check_workers(self, where: str) -> None:
        from reportgen import __version__
        from reportgen.dask_worker import check_paths

        answers = self.client.run(check_paths, self.read_paths, self.write_folder)
        if not answers:
            raise UserError(f"{where} has no workers")
        for address, answer in sorted(answers.items()):
            if answer["problems"]:
                raise UserError(f"Dask worker {address} on {answer['host']} "
                                f"{'; '.join(answer['problems'])}: workers need the data and "
                                "the output folder at the same paths (a shared file system)")
            if answer["version"] != __version__:
                raise UserError(f"Dask worker {address} on {answer['host']} runs reportgen "
                                f"{answer['version']}, this is {__version__}: install the same "
                                "version everywhere")

    def close(self) -> None:
        client, cluster, self.client, self.cluster = self.client, self.cluster, None, None
        if client is not None:
            if cluster is None and client.status == "running":
                # A cluster we did not start keeps running: free the models its workers hold
                # (unless the plugin never got registered, or the cluster is going away).
                with contextlib.suppress(Exception):
                    client.unregister_worker_plugin(self._plugin_name)
            client.close()
        if cluster is not None:
            cluster.close()

    # -- the work ---------------------------------------------------------------------------

    def map_reduce(self, task: Callable, shards: Sequence, merge: Callable, *, label: str,
                   count: Callable[[Any], int] = shard_images):
        from reportgen.dask_worker import run_task

        shards = sorted(shards, key=lambda shard: shard.number)
        client, run = self.client, uuid.uuid4().hex[:8]
        task_name = getattr(getattr(task, "func", task), "__name__", "task")  # a partial's too
        mapped = {client.submit(run_task, self._plugin_name, task, shard,
                                key=f"reportgen-{task_name}-{run}-{shard.number}"): shard
                  for shard in shards}
        merges = iter(range(len(shards)))

        def merge_later(left, right):
            return client.submit(merge, left, right, key=f"reportgen-merge-{run}-{next(merges)}")

        merged = fold_in_order(list(mapped), merge_later)
        try:
            with _progressbar(sum(count(shard) for shard in shards), label) as bar:
                for future in self._completed([*mapped, merged]):
                    if future.status == "error":
                        self._raise(future, mapped.get(future), label)
                    if future.status == "cancelled":
                        raise UserError(f"the Dask cluster dropped the work of {label!r}; "
                                        "was the scheduler stopped?")
                    if future in mapped:
                        bar.update(count(mapped.pop(future)))
            return merged.result()
        except BaseException:  # Ctrl-C or an error: leave nothing of this pass running
            if self.client is not None and self.client.status == "running":
                # The merged result first: that releases the merges no future holds (Dask cannot
                # cancel a task whose dependents nobody wants), then the shards' tasks.
                self.client.cancel([merged])
                self.client.cancel(list(mapped))
            raise

    def _completed(self, futures: list) -> Iterator:
        """The futures as they finish; a UserError if the cluster stays without workers."""
        from distributed import as_completed

        completed = as_completed(futures, raise_errors=False)
        checked, workerless_since = time.monotonic(), None
        while not completed.is_empty():
            finished = completed.next_batch(block=False)
            yield from finished
            if finished or time.monotonic() - checked < POLL_S:
                time.sleep(0 if finished else 0.01)
                continue
            checked = time.monotonic()
            if self.client.status != "running":
                raise UserError("lost the connection to the Dask scheduler"
                                + (f" at {self.scheduler}" if self.scheduler else ""))
            if self.client.nthreads():
                workerless_since = None
            elif workerless_since is None:
                workerless_since = checked
            elif checked - workerless_since > self.workerless_grace_s:
                raise UserError(f"every Dask worker is gone (none for {self.workerless_grace_s:g} s); "
                                "the build stopped")

    @staticmethod
    def _raise(future, shard, label: str):
        from distributed import KilledWorker

        try:
            future.result()
        except KilledWorker:
            what = f"shard {shard.number}" if shard is not None else "a merge"
            raise UserError(f"{label}: {what} killed every Dask worker that ran it (out of "
                            "memory?); see the workers' logs") from None
        raise AssertionError("unreachable: the future had an error")  # pragma: no cover


def _check_cluster_options(workers: int | None, scheduler: str | None) -> None:
    if workers is not None and scheduler is not None:
        raise UserError("--workers starts a cluster here and --scheduler uses a running one: "
                        "give only one of them")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1, not {workers}")


def check_engine_options(name: str, workers: int | None = None, scheduler: str | None = None) -> None:
    """A UserError for options that do not go together, or a dask engine without Dask.

    The CLI calls this before anything slow, so a mistake costs no training run.
    """
    if name not in ENGINES:
        raise UserError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")
    if name == "local":
        if workers is not None or scheduler is not None:
            raise UserError("--workers and --scheduler go with --engine dask")
        return
    _check_cluster_options(workers, scheduler)
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise UserError(DASK_EXTRA_MISSING) from None


def make_engine(name: str, plan, open_worker: Callable[[Any], Any], *, workers: int | None = None,
                scheduler: str | None = None, read_paths: Sequence[Path] = (),
                write_folder: Path | None = None):
    """The engine ``--engine`` names; ``workers`` and ``scheduler`` only go with ``dask``.

    For ``dask``, ``read_paths`` (data folder, model file) and ``write_folder`` (staging)
    are checked on every worker when the engine starts.
    """
    check_engine_options(name, workers, scheduler)
    if name == "local":
        return LocalEngine(plan, open_worker)
    return DaskEngine(plan, open_worker, workers=workers, scheduler=scheduler,
                      read_paths=read_paths, write_folder=write_folder)


__all__ = ["ENGINES", "DaskEngine", "LocalEngine", "check_engine_options", "fold_in_order", "make_engine"]
