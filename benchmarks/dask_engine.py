"""The Dask engine against the local one, on this machine, in one run.

    python benchmarks/dask_engine.py [--shapes-images 9000] [--big-images 300] [--workers 2]

Measures what a cluster adds (starting a LocalCluster, the scheduler's cost per shard),
then `reportgen build --model` with `--engine local` and with `--engine dask --workers N`
on the shapes and on MobileNetV2 at 224x224: wall time, their ratio, and whether the two
sites are byte-identical. From those it projects a build on N machines. Run on its own it
replaces its section of benchmarks/results.md; `main()` is the only entry point.
"""

from __future__ import annotations

import argparse
import json
import math
import operator
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402, I001
import big_models  # noqa: E402  (sibling scripts, not a package)

SECTION_START, SECTION_END = "<!-- dask-engine -->", "<!-- /dask-engine -->"
OVERHEAD_SHARDS = 200
# The stages whose work the engine spreads over the workers; the rest stays in `reportgen build`.
SPREAD_STAGES = ("statistics", "drawing", "explain")
PROJECTED_MACHINES = (1, 2, 4, 8, 16)


def log(message: str) -> None:
    print(f"[dask-engine] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class _Shard:
    number: int
    indices: tuple[int, ...]


def _open_nothing(plan) -> None:
    return None


def _count(worker, shard: _Shard) -> int:
    return len(shard.indices)


@dataclass(frozen=True)
class Overhead:
    start_seconds: float  # LocalCluster up, workers checked, plugin registered
    close_seconds: float
    local_ms_per_shard: float
    dask_ms_per_shard: float  # a task and its share of the merges, on an idle cluster


def measure_overhead(workers: int, staging: Path) -> Overhead:
    """What the engine itself costs: tasks that do nothing, on 1-image shards."""
    from reportgen.engines import DaskEngine, LocalEngine

    staging.mkdir(parents=True, exist_ok=True)
    shards = [_Shard(number, (number,)) for number in range(OVERHEAD_SHARDS)]
    with LocalEngine(None, _open_nothing) as local:
        started = time.perf_counter()
        local.map_reduce(_count, shards, operator.add, label="no-op shards")
        local_seconds = time.perf_counter() - started
    started = time.perf_counter()
    engine = DaskEngine(None, _open_nothing, workers=workers, write_folder=staging)
    with engine:
        start_seconds = time.perf_counter() - started
        engine.map_reduce(_count, shards[:10], operator.add, label="warm-up")
        started = time.perf_counter()
        assert engine.map_reduce(_count, shards, operator.add, label="no-op shards") == len(shards)
        dask_seconds = time.perf_counter() - started
        closing = time.perf_counter()
    close_seconds = time.perf_counter() - closing
    return Overhead(start_seconds, close_seconds, local_seconds / len(shards) * 1e3,
                    dask_seconds / len(shards) * 1e3)


@dataclass(frozen=True)
class EngineBuild:
    engine: str
    wall_seconds: float
    stage_seconds: dict[str, float]
    site: Path

    @property
    def spread_seconds(self) -> float:
        return sum(self.stage_seconds.get(stage, 0.0) for stage in SPREAD_STAGES)


def run_build(model: Path, data: Path, site: Path, engine_args: list[str]) -> EngineBuild:
    """`reportgen build --model` as the CLI runs it, with its stage seconds kept (bench.BUILD_DRIVER)."""
    stages_path = site.with_suffix(".stages.json")
    log_path = site.with_suffix(".log")
    site.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-c", bench.BUILD_DRIVER, str(stages_path), "build",
               "--model", str(model), "--data", str(data), "--out", str(site), *engine_args]
    log(" ".join(["build", site.name, *engine_args]))
    started = time.perf_counter()
    with log_path.open("wb") as log_file:
        subprocess.run(command, stdout=log_file, stderr=subprocess.STDOUT, check=True)
    wall = time.perf_counter() - started
    return EngineBuild(" ".join(engine_args) or "local", wall, json.loads(stages_path.read_text()),
                       site)


def differing_files(first: Path, second: Path) -> list[str]:
    """Relative paths whose bytes differ, or that only one of the two sites has."""
    def files(site: Path) -> dict[str, Path]:
        return {str(path.relative_to(site)): path for path in site.rglob("*") if path.is_file()}

    a, b = files(first), files(second)
    return sorted(name for name in a.keys() | b.keys()
                  if name not in a or name not in b or a[name].read_bytes() != b[name].read_bytes())


def compare(name: str, title: str, model: Path, data: Path, n_images: int, work: Path,
            workers: int) -> list[str]:
    from reportgen.pipeline import SHARD_BATCHES

    local = run_build(model, data, work / f"{name}-local", ["--engine", "local"])
    dask = run_build(model, data, work / f"{name}-dask{workers}",
                     ["--engine", "dask", "--workers", str(workers)])
    batch = re.search(r"Batches of (\d+) images", local.site.with_suffix(".log").read_text())
    shard_images = int(batch[1]) * SHARD_BATCHES if batch else 0
    first_shards = math.ceil(n_images / shard_images) if shard_images else 0
    different = differing_files(local.site, dask.site)
    site_bytes = sum(path.stat().st_size for path in local.site.rglob("*") if path.is_file())
    serial = local.wall_seconds - local.spread_seconds
    # What the cluster adds once, whatever the number of machines: starting it, each worker
    # importing TensorFlow and loading the model (in parallel), the scheduler's round trips.
    # On one machine the workers share the cores the local engine had to itself.
    overhead = max(0.0, dask.spread_seconds - local.spread_seconds)
    lines = [f"### {title}", "",
             "| engine | wall s | passes s (statistics, drawing, explanations) | site identical |",
             "|---|---|---|---|",
             f"| `--engine local` | {local.wall_seconds:.1f} | {local.spread_seconds:.1f} | |",
             f"| `--engine dask --workers {workers}` | {dask.wall_seconds:.1f} | "
             f"{dask.spread_seconds:.1f} | "
             f"{'yes' if not different else f'NO: {len(different)} files differ'} |", "",
             f"Shards of {shard_images} images ({first_shards} in the first pass); the local "
             "first pass took "
             f"{local.stage_seconds.get('statistics', 0) / max(first_shards, 1):.2f} s a shard.", "",
             f"Ratio dask / local: **{dask.wall_seconds / local.wall_seconds:.2f}**. "
             f"Serial part (start-up, model, plans, render, swap, in `reportgen build`): "
             f"{serial:.1f} s; what the cluster added to the passes: {overhead:.1f} s.", "",
             "Projection for N machines like this one, each as fast as the local engine is here, "
             "over a shared disk: serial part + what the cluster adds + local passes / N. The "
             "serial part and the cluster's fixed cost bound it; the site's "
             f"{site_bytes / 1e6:,.0f} MB must cross the shared disk in the passes' time "
             "(column 3), and the merged statistics travel back to one process.", "",
             "| machines | projected wall s | shared-disk write rate needed |", "|---|---|---|"]
    for machines in PROJECTED_MACHINES:
        passes = local.spread_seconds / machines
        lines.append(f"| {machines} | {serial + overhead + passes:.1f} | "
                     f"{site_bytes / 1e6 / passes:,.1f} MB/s |")
    lines.append("")
    if different:
        lines += ["Differing files (first 10): " + ", ".join(f"`{name}`" for name in different[:10]),
                  ""]
    return lines


def sections(work: Path, shapes_images: int, big_images: int, workers: int) -> list[str]:
    work.mkdir(parents=True, exist_ok=True)
    overhead = measure_overhead(workers, work / "staging")
    lines = [SECTION_START, "", f"## The Dask engine: local against {workers} workers", "",
             f"On this machine ({os.cpu_count()} cores, 1-minute load average "
             f"{os.getloadavg()[0]:.1f} as the run began), one run. What the engine itself costs, "
             f"on {OVERHEAD_SHARDS} one-image shards of a task that does nothing:", "",
             "| measure | value |", "|---|---|",
             f"| starting a LocalCluster of {workers} (workers up, folders checked) | "
             f"{overhead.start_seconds:.1f} s |",
             f"| closing it | {overhead.close_seconds:.1f} s |",
             f"| per shard, local engine | {overhead.local_ms_per_shard:.3f} ms |",
             f"| per shard, Dask (task, merge, scheduler round trips) | "
             f"{overhead.dask_ms_per_shard:.1f} ms |", ""]
    data = bench.ensure_dataset(work, shapes_images)
    model = bench.ensure_model(work, bench.ensure_dataset(work, bench.ARTICLE_TEST_IMAGES))
    lines += compare(f"shapes-{shapes_images}", f"shapes, {shapes_images:,} images, the article's CNN",
                     model, data, shapes_images, work / "sites", workers)
    per_class = max(1, big_images // 3)
    photos = big_models.photos(work / f"photos-{per_class * 3}", ["cats", "dogs", "owls"],
                               per_class, (240, 300))
    mobilenet = big_models.mobilenet(work / "mobilenetv2-224.keras", 3)
    lines += compare(f"mobilenet-{per_class * 3}", f"MobileNetV2 at 224x224, {per_class * 3} images",
                     mobilenet, photos, per_class * 3, work / "sites", workers)
    lines += [SECTION_END]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes-images", type=int, default=9000)
    parser.add_argument("--big-images", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("output/bench/dask"))
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    args = parser.parse_args(argv)
    lines = sections(args.work.resolve(), args.shapes_images, args.big_images, args.workers)
    text = args.out.read_text() if args.out.exists() else ""
    section = "\n".join(lines) + "\n"
    if SECTION_START in text:
        before, rest = text.split(SECTION_START, 1)
        text = before + section + rest.split(SECTION_END, 1)[1].lstrip("\n")
    else:
        text = text.rstrip() + "\n\n" + section
    args.out.write_text(text)
    log(f"wrote {args.out}")


if __name__ == "__main__":  # spawned Dask workers import this file; only the main process runs it
    main()
