"""Toy plans and tasks for the engine tests: plain Python, no TensorFlow.

Dask workers import this module by name, so it lives in tests/ (on sys.path in pytest and,
through multiprocessing's spawn, in the workers a LocalCluster starts; `dask worker`
subprocesses get it through PYTHONPATH).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Shard:
    number: int
    indices: tuple[int, ...]


@dataclass(frozen=True)
class ToyPlan:
    staging: Path  # tasks write a file per shard here, as the real passes write pictures
    kill_marker: Path  # kill_first_time kills its worker unless this file exists
    offset: int = 1000  # something a task can only know from the plan


@dataclass(frozen=True)
class ToyWorker:
    plan: ToyPlan
    pid: int


def open_toy_worker(plan: ToyPlan) -> ToyWorker:
    """Records every opening, so a test can count them per process."""
    (plan.staging / "opened").mkdir(exist_ok=True)
    with open(plan.staging / "opened" / str(os.getpid()), "a") as log:
        log.write("opened\n")
    return ToyWorker(plan, os.getpid())


def shard_shards(n_items: int, shard_size: int) -> list[Shard]:
    """``n_items`` indices cut into shards of ``shard_size``, listed in reverse order."""
    starts = range(0, n_items, shard_size)
    shards = [Shard(number, tuple(range(start, min(start + shard_size, n_items))))
              for number, start in enumerate(starts)]
    return shards[::-1]  # engines order by number, not by the order they are given


def offset_indices(worker: ToyWorker, shard: Shard) -> list[tuple[int, int]]:
    """Each index with the plan's offset added, and a file written into staging."""
    (worker.plan.staging / f"shard-{shard.number}.txt").write_text(" ".join(map(str, shard.indices)))
    return [(index, index + worker.plan.offset) for index in shard.indices]


def process_id(worker: ToyWorker, shard: Shard) -> list[tuple[int, int, str, str]]:
    """Which process ran the shard, and the TensorFlow thread settings it has."""
    return [(shard.number, worker.pid, os.environ.get("TF_NUM_INTRAOP_THREADS", ""),
             os.environ.get("TF_NUM_INTEROP_THREADS", ""))]


def shard_name(worker: ToyWorker, shard: Shard) -> str:
    return str(shard.number)


def parenthesize(left: str, right: str) -> str:
    """Neither commutative nor associative: the result spells out the merge tree."""
    return f"({left}+{right})"


def concatenate(left: list, right: list) -> list:
    return left + right


def kill_first_time(worker: ToyWorker, shard: Shard) -> list[tuple[int, int]]:
    """Kills its own worker process the first time shard 1 runs, as a crash or the OOM killer would."""
    if shard.number == 1 and not worker.plan.kill_marker.exists():
        worker.plan.kill_marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return offset_indices(worker, shard)


def slow_offset_indices(worker: ToyWorker, shard: Shard) -> list[tuple[int, int]]:
    """Like offset_indices, a second per shard: long enough to lose the workers in between."""
    result = offset_indices(worker, shard)
    time.sleep(1)
    return result


def interrupted_pass(folder: str) -> None:
    """A slow pass on a LocalCluster of 2, for a test to interrupt with Ctrl-C (SIGINT)."""
    import sys

    from reportgen.engines import DaskEngine

    plan = ToyPlan(Path(folder), Path(folder) / "killed")
    try:
        with DaskEngine(plan, open_toy_worker, workers=2, write_folder=plan.staging) as engine:
            print("started", flush=True)
            engine.map_reduce(slow_offset_indices, shard_shards(40, 1), concatenate, label="Slow")
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)


def first_pass_killing_once(worker, shard):
    """The build's first pass, but the worker that first gets shard 1 dies (SIGKILL) first."""
    from reportgen import pipeline

    marker = worker.plan.target.parent / "killed-once"
    if shard.number == 1 and not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return pipeline.first_pass(worker, shard)
