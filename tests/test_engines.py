"""Engines: a pass's shards in this process or on a Dask cluster, merged the same way.

The toy plans and tasks are in engine_tasks.py, a module Dask workers can import.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import engine_tasks as toy
import pytest

from reportgen.engines import DaskEngine, LocalEngine, make_engine
from reportgen.errors import UserError

TESTS = Path(__file__).resolve().parent
SHARD_SIZES = (1, 3, 4, 23)  # one image a shard, uneven, even, a single shard
N_ITEMS = 23


def toy_plan(folder: Path, **changes) -> toy.ToyPlan:
    staging = folder / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    return toy.ToyPlan(staging=staging, kill_marker=folder / "killed", **changes)


def expected_offsets(plan: toy.ToyPlan) -> list[tuple[int, int]]:
    return [(index, index + plan.offset) for index in range(N_ITEMS)]


def openings(plan: toy.ToyPlan) -> dict[str, int]:
    """How often each process opened a worker."""
    return {log.name: log.read_text().count("opened") for log in (plan.staging / "opened").iterdir()}


def test_local_engine_merges_in_shard_order_and_opens_its_worker_once(tmp_path, capsys):
    plan = toy_plan(tmp_path)
    with LocalEngine(plan, toy.open_toy_worker) as engine:
        for size in SHARD_SIZES:
            shards = toy.shard_shards(N_ITEMS, size)
            assert engine.map_reduce(toy.offset_indices, shards, toy.concatenate,
                                     label="Toy pass") == expected_offsets(plan)
    assert openings(plan) == {str(os.getpid()): 1}
    assert "Toy pass" in capsys.readouterr().err


def test_local_engine_counts_images_not_shards_on_its_bar(tmp_path, monkeypatch):
    import reportgen.engines

    counted = []

    class RecordingBar:
        def __init__(self, length, label):
            counted.append(("length", length))

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            pass

        def update(self, n):
            counted.append(("update", n))

    monkeypatch.setattr(reportgen.engines, "_progressbar", RecordingBar)
    with LocalEngine(toy_plan(tmp_path), toy.open_toy_worker) as engine:
        engine.map_reduce(toy.offset_indices, toy.shard_shards(N_ITEMS, 10), toy.concatenate,
                          label="Toy pass", count=lambda shard: 2 * len(shard.indices))
    assert counted == [("length", 46), ("update", 20), ("update", 20), ("update", 6)]


class Overlap:
    """Tasks that record how many run at once; shard ``hold`` waits for the next to start."""

    def __init__(self, hold: int = 0, fail: int | None = None):
        self.hold, self.fail = hold, fail
        self.lock = threading.Lock()
        self.running = self.most = 0
        self.started: list[int] = []
        self.next_started = threading.Event()

    def task(self, worker, shard):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.started.append(shard.number)
        try:
            if shard.number == self.hold + 1:
                self.next_started.set()
            if shard.number == self.hold:  # finishes after the next shard has begun
                assert self.next_started.wait(timeout=10), "the next shard never started"
                time.sleep(0.05)
            if shard.number == self.fail:
                raise RuntimeError(f"shard {shard.number} failed on purpose")
            return [shard.number]
        finally:
            with self.lock:
                self.running -= 1


def test_local_engine_runs_two_shards_at_once_and_merges_them_in_order(tmp_path):
    overlap = Overlap(hold=1)
    with LocalEngine(toy_plan(tmp_path), toy.open_toy_worker) as engine:
        merged = engine.map_reduce(overlap.task, toy.shard_shards(N_ITEMS, 4), toy.concatenate,
                                   label="Toy pass")
    assert merged == list(range(6))  # shard 2 finished before shard 1; order is by number
    assert overlap.most == 2


def test_a_failing_shard_stops_the_local_pass_once_the_other_running_one_is_done(tmp_path):
    overlap = Overlap(hold=1, fail=2)
    with LocalEngine(toy_plan(tmp_path), toy.open_toy_worker) as engine, \
            pytest.raises(RuntimeError, match="shard 2 failed on purpose"):
        engine.map_reduce(overlap.task, toy.shard_shards(N_ITEMS, 2), toy.concatenate,
                          label="Toy pass")
    assert overlap.running == 0  # nothing left running behind the error
    assert max(overlap.started) <= 3  # no shard was started after the failure was seen


def test_the_dask_engine_without_the_extra_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` fails
    with pytest.raises(UserError, match=r"pip install 'reportgen\[dask\]'"), \
            DaskEngine(toy_plan(tmp_path), toy.open_toy_worker, workers=1):
        pass


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_scheduler_is_one_line_naming_it(tmp_path):
    address = f"tcp://127.0.0.1:{_free_port()}"
    engine = DaskEngine(toy_plan(tmp_path), toy.open_toy_worker, scheduler=address,
                        connect_timeout_s=1)
    with pytest.raises(UserError, match="cannot reach the Dask scheduler at " + address) as raised, \
            engine:
        pass
    assert "\n" not in str(raised.value)
    assert engine.client is None


@pytest.mark.parametrize(("name", "options", "message"), [
    ("local", {"workers": 2}, "go with --engine dask"),
    ("local", {"scheduler": "tcp://127.0.0.1:8786"}, "go with --engine dask"),
    ("dask", {"workers": 2, "scheduler": "tcp://127.0.0.1:8786"}, "only one of them"),
    ("dask", {"workers": 0}, "at least 1"),
    ("spark", {}, "unknown engine"),
])
def test_engine_options_that_do_not_go_together(tmp_path, name, options, message):
    with pytest.raises(UserError, match=message):
        make_engine(name, toy_plan(tmp_path), toy.open_toy_worker, **options)


@pytest.fixture(scope="module")
def local_cluster(tmp_path_factory):
    """A DaskEngine on a LocalCluster of 2 worker processes, for the module's toy plan."""
    plan = toy_plan(tmp_path_factory.mktemp("cluster"))
    engine = DaskEngine(plan, toy.open_toy_worker, workers=2, read_paths=[TESTS],
                        write_folder=plan.staging)
    with _dask_default_port_taken():  # as when another cluster runs: no warning, no failure
        engine.__enter__()
    with engine:
        yield engine


@contextlib.contextmanager
def _dask_default_port_taken():
    """Hold Dask's default HTTP port, 8787, unless something else already does."""
    with socket.socket() as holder:
        with contextlib.suppress(OSError):
            holder.bind(("0.0.0.0", 8787))
            holder.listen()
        yield


@pytest.mark.slow
def test_dask_gives_the_local_result_for_any_shard_split(local_cluster, tmp_path):
    plan = local_cluster.plan
    with LocalEngine(toy_plan(tmp_path), toy.open_toy_worker) as local:
        for size in SHARD_SIZES:
            shards = toy.shard_shards(N_ITEMS, size)
            assert local_cluster.map_reduce(toy.offset_indices, shards, toy.concatenate,
                                            label="Toy pass") == expected_offsets(plan)
            # The merge tree itself, spelled out by a merge that is neither commutative nor
            # associative: the same pairs whichever worker finished first.
            assert (local_cluster.map_reduce(toy.shard_name, shards, toy.parenthesize, label="Tree")
                    == local.map_reduce(toy.shard_name, shards, toy.parenthesize, label="Tree"))
    written = sorted(path.name for path in plan.staging.glob("shard-*.txt"))
    assert written == sorted(f"shard-{number}.txt" for number in range(N_ITEMS))


@pytest.mark.slow
def test_dask_workers_open_once_each_and_share_the_cores(local_cluster):
    from reportgen.engines import _local_cores

    ran = local_cluster.map_reduce(toy.process_id, toy.shard_shards(N_ITEMS, 1), toy.concatenate,
                                   label="Which process")
    assert [number for number, *_ in ran] == list(range(N_ITEMS))
    processes = {pid for _, pid, _, _ in ran}
    assert os.getpid() not in processes
    opened = openings(local_cluster.plan)
    assert all(opened[str(pid)] == 1 for pid in processes)
    threads = str(max(1, _local_cores() // 2))
    assert {(intra, inter) for _, _, intra, inter in ran} == {(threads, threads)}


@pytest.mark.slow
def test_a_worker_killed_mid_pass_changes_nothing(local_cluster):
    plan = local_cluster.plan
    assert not plan.kill_marker.exists()
    merged = local_cluster.map_reduce(toy.kill_first_time, toy.shard_shards(N_ITEMS, 2),
                                      toy.concatenate, label="Killing pass")
    assert plan.kill_marker.exists()  # the worker did die
    killed = plan.kill_marker.read_text()
    assert merged == expected_offsets(plan)
    # Its replacement opened its own worker, once.
    assert all(count == 1 for count in openings(plan).values())
    assert killed in openings(plan)


@pytest.mark.slow
def test_workers_that_cannot_see_the_folders_are_one_line(local_cluster, tmp_path):
    address = local_cluster.cluster.scheduler_address
    missing = tmp_path / "not-shared"
    with pytest.raises(UserError, match=f"cannot write into {missing}.*shared file system"), \
            DaskEngine(local_cluster.plan, toy.open_toy_worker, scheduler=address,
                       write_folder=missing):
        pass
    with pytest.raises(UserError, match=f"cannot see {missing}"), \
            DaskEngine(local_cluster.plan, toy.open_toy_worker, scheduler=address,
                       read_paths=[TESTS, missing]):
        pass


def _start(command: list[str], **kwargs) -> subprocess.Popen:
    """A process in a session of its own (as a terminal would run it), importing engine_tasks."""
    environment = {**os.environ, "PYTHONPATH": str(TESTS)}
    output = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, **kwargs}
    return subprocess.Popen(command, env=environment, start_new_session=True, **output)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def _scheduler_address(scheduler_file: Path, scheduler: subprocess.Popen) -> str:
    for _ in range(600):
        if scheduler_file.exists():
            try:
                return json.loads(scheduler_file.read_text())["address"]
            except (ValueError, KeyError):
                pass
        assert scheduler.poll() is None, "dask scheduler exited"
        time.sleep(0.1)
    raise AssertionError("dask scheduler did not start")


@pytest.mark.slow
def test_a_cluster_started_with_dasks_command_line(tmp_path):
    """`dask scheduler` and `dask worker --nworkers 2`: same result, Ctrl-C, workers all gone."""
    with _command_line_cluster(tmp_path) as (address, workers):
        plan = toy_plan(tmp_path)
        shards = toy.shard_shards(N_ITEMS, 3)
        with DaskEngine(plan, toy.open_toy_worker, scheduler=address, read_paths=[TESTS],
                        write_folder=plan.staging, workerless_grace_s=2) as engine:
            engine.client.wait_for_workers(2, timeout=60)
            assert engine.map_reduce(toy.offset_indices, shards, toy.concatenate,
                                     label="Toy pass") == expected_offsets(plan)

            # Ctrl-C: the pass's tasks are cancelled on the cluster, and the interrupt goes on.
            for written in plan.staging.glob("shard-*.txt"):
                written.unlink()
            threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT)).start()
            with pytest.raises(KeyboardInterrupt):
                engine.map_reduce(toy.slow_offset_indices, shards, toy.concatenate, label="Slow")
            assert _scheduler_forgets_the_pass(engine.client)
            assert len(list(plan.staging.glob("shard-*.txt"))) < len(shards)

            # Every worker gone for good: one line, not a wait forever.
            killer = threading.Timer(1.5, _stop, (workers,))
            killer.start()
            with pytest.raises(UserError, match="every Dask worker is gone"):
                engine.map_reduce(toy.slow_offset_indices, shards, toy.concatenate, label="Slow")
            killer.join()


@pytest.mark.parametrize(("arguments", "message"), [
    (["--workers", "2"], "--workers and --scheduler go with --engine dask"),
    (["--scheduler", "tcp://127.0.0.1:8786"], "--workers and --scheduler go with --engine dask"),
    (["--engine", "local", "--workers", "2"], "--workers and --scheduler go with --engine dask"),
    (["--engine", "dask", "--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"],
     "give only one of them"),
])
def test_build_refuses_cluster_options_that_do_not_fit(tmp_path, arguments, message):
    from click.testing import CliRunner

    from reportgen.cli import main

    result = CliRunner().invoke(main, ["build", "--data", str(tmp_path / "none"),
                                       "--out", str(tmp_path / "site"), *arguments])
    assert result.exit_code == 2
    assert result.output.count("Error:") == 1 and "Traceback" not in result.output
    assert message in result.output
    assert not (tmp_path / "site").exists()


def test_build_without_the_dask_extra_says_so_before_any_work(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from reportgen.cli import main

    monkeypatch.setitem(sys.modules, "distributed", None)
    result = CliRunner().invoke(main, ["build", "--data", str(tmp_path / "none"),
                                       "--out", str(tmp_path / "site"), "--engine", "dask"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "Error: the dask engine needs the dask extra: pip install 'reportgen[dask]'"]


@pytest.mark.slow
def test_ctrl_c_in_a_terminal_stops_the_local_cluster_without_tracebacks(tmp_path):
    """The terminal sends SIGINT to the whole process group, the cluster's workers included."""
    pass_ = _start([sys.executable, "-c", "import sys, engine_tasks; "
                    "engine_tasks.interrupted_pass(sys.argv[1])", str(tmp_path)],
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for _ in range(600):
        if list(tmp_path.glob("shard-*.txt")) or pass_.poll() is not None:
            break
        time.sleep(0.1)
    os.killpg(pass_.pid, signal.SIGINT)
    output, _ = pass_.communicate(timeout=60)
    assert pass_.returncode == 130, output
    assert "interrupted" in output and "Traceback" not in output, output
    assert len(list(tmp_path.glob("shard-*.txt"))) < 40
    assert _group_ends(pass_.pid), "processes of the cluster are still running"


def _scheduler_forgets_the_pass(client) -> bool:
    """Cancelling reaches the scheduler asynchronously: give it a few seconds."""
    for _ in range(100):
        if not client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.tasks)):
            return True
        time.sleep(0.1)
    return False


def _group_ends(group: int) -> bool:
    for _ in range(100):
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


# -- whole builds: the acceptance checks --------------------------------------------------------

@pytest.fixture(scope="module")
def build_inputs(tmp_path_factory) -> Path:
    """36 test images of the shapes and a tiny untrained 8x8 model (tests/fixture_models.py)."""
    import fixture_models

    from reportgen import shapes

    root = tmp_path_factory.mktemp("engine-build")
    shapes.generate(root / "data", per_class=40, seed=3, size=16)
    fixture_models.sequential_with_input().save(root / "model.keras")
    return root


def site_files(site: Path) -> dict[str, bytes]:
    return {str(path.relative_to(site)): path.read_bytes()
            for path in sorted(site.rglob("*")) if path.is_file()}


def differing(first: dict[str, bytes], second: dict[str, bytes]) -> list[str]:
    return sorted(name for name in first.keys() | second.keys() if first.get(name) != second.get(name))


def build_site(inputs: Path, out: Path, monkeypatch, **engine) -> dict[str, bytes]:
    import reportgen.plan
    from reportgen.stages import BuildOptions, build

    # Batches of 4, so 36 images make several shards of whole batches on any engine.
    monkeypatch.setattr(reportgen.plan, "MAX_BATCH", 4)
    build(BuildOptions(data=inputs / "data", model_path=inputs / "model.keras", out=out, **engine),
          echo=lambda line: None)
    return site_files(out)


@pytest.fixture(scope="module")
def local_site(build_inputs, tmp_path_factory) -> dict[str, bytes]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        return build_site(build_inputs, tmp_path_factory.mktemp("local") / "site", monkeypatch)


@pytest.mark.slow
def test_a_dask_build_is_byte_identical_to_a_local_one_even_if_a_worker_dies(
        build_inputs, local_site, tmp_path, monkeypatch):
    import reportgen.pipeline

    # The worker process that first runs shard 1 of the first pass is killed; Dask runs the
    # shard again on a worker the nanny starts anew.
    monkeypatch.setattr(reportgen.pipeline, "first_pass", toy.first_pass_killing_once)
    dask_site = build_site(build_inputs, tmp_path / "site", monkeypatch, engine="dask", workers=2)
    assert (tmp_path / "killed-once").exists()
    assert len(local_site) > 100
    assert differing(local_site, dask_site) == []


@pytest.mark.slow
def test_a_build_on_a_cluster_started_with_dasks_command_line(build_inputs, tmp_path):
    """As acceptance checks it: `dask scheduler`, `dask worker --nworkers 2`, `reportgen build`."""
    from reportgen.stages import BuildOptions, build

    build(BuildOptions(data=build_inputs / "data", model_path=build_inputs / "model.keras",
                       out=tmp_path / "local"), echo=lambda line: None)  # the CLI's batches
    local = site_files(tmp_path / "local")
    with _command_line_cluster(tmp_path) as (address, _):
        site = tmp_path / "site"
        built = _reportgen_build(build_inputs, site, "--engine", "dask", "--scheduler", address)
        assert built.returncode == 0, built.stderr
        assert differing(local, site_files(site)) == []
    # The scheduler is gone: one line of error, and the site stays as it was.
    failed = _reportgen_build(build_inputs, site, "--engine", "dask", "--scheduler", address)
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1] == (
        f"Error: cannot reach the Dask scheduler at {address} within 10 s")
    assert "Traceback" not in failed.stderr
    assert differing(local, site_files(site)) == []


@contextlib.contextmanager
def _command_line_cluster(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """`dask scheduler` and `dask worker --nworkers 2` on loopback: (address, the workers)."""
    dask = str(Path(sys.executable).parent / "dask")
    scheduler_file = tmp_path / "scheduler.json"
    scheduler = _start([dask, "scheduler", "--host", "127.0.0.1", "--port", "0",
                        "--no-dashboard", "--scheduler-file", str(scheduler_file)])
    workers = None
    try:
        address = _scheduler_address(scheduler_file, scheduler)
        workers = _start([dask, "worker", address, "--nworkers", "2", "--no-dashboard"])
        yield address, workers
    finally:
        if workers is not None:
            _stop(workers)
        _stop(scheduler)


def _reportgen_build(inputs: Path, site: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reportgen", "build", "--data", str(inputs / "data"),
                           "--model", str(inputs / "model.keras"), "--out", str(site), *options],
                          capture_output=True, text=True, timeout=600)
