"""Feature visualization's cost: channels per second, a layer's channels in one batch against
one channel at a time, on the article's CNN (28x28) and MobileNetV2 at 224x224.

    python benchmarks/featviz.py [--out benchmarks/results.md]

Run on its own it replaces its section of benchmarks/results.md; `bench.py` also calls
`sections()` for its full run. The models are untrained (weights do not change the time).
Both ways run ``reportgen.featviz.Ascent`` with the default steps on the same channels, the
same layers, in turn layer by layer, so load from other work on the machine hits them alike;
each includes its one trace per layer, as a build pays it. A last row times the default
build's stage on the article's CNN: every drawn channel of its 9 shown layers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SECTION_START, SECTION_END = "<!-- featviz -->", "<!-- /featviz -->"
ARTICLE_BUDGET_S = 30  # the issue's: the article CNN's drawn channels within about 30 s


def log(message: str) -> None:
    print(f"[featviz] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Timing:
    model: str
    input_size: str
    layers: tuple[str, ...]
    channels: int  # per way, over all the layers
    batched_s: float
    one_at_a_time_s: float


def article_cnn():
    from reportgen.decode import InputSpec
    from reportgen.keras_import import keras
    from reportgen.model import article_cnn

    keras.utils.set_random_seed(0)
    return article_cnn(InputSpec(28, 28, 3), 3), "unit"


def mobilenet_224():
    from reportgen.keras_import import keras

    keras.utils.set_random_seed(0)
    return (keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3), classes=3),
            "mobilenet_v2")


def _setup(model, preprocess: str, layer_names):
    from reportgen.activations import ActivationProbe
    from reportgen.decode import InputSpec
    from reportgen.inputs import InputContract

    height, width, colours = (int(d) for d in model.inputs[0].shape[1:])
    contract = InputContract(InputSpec(height, width, colours), preprocess, "benchmark")
    return ActivationProbe(model, patterns=layer_names), contract


def measure(name: str, model, preprocess: str, layer_names: list[str],
            channels_per_layer: int) -> Timing:
    from reportgen import featviz

    probe, contract = _setup(model, preprocess, layer_names)
    batched = one = 0.0
    total = 0
    for index, layer in enumerate(probe.layers):
        channels = tuple(range(min(channels_per_layer, layer.output_shape[2])))
        total += len(channels)
        started = time.perf_counter()
        ascent = featviz.Ascent(probe.layer_model(index), contract)
        ascent.activations(ascent.pictures(channels, 0, index)[0], channels)
        batched += time.perf_counter() - started
        started = time.perf_counter()
        ascent = featviz.Ascent(probe.layer_model(index), contract)
        for channel in channels:
            ascent.activations(ascent.pictures((channel,), 0, index)[0], (channel,))
        one += time.perf_counter() - started
        log(f"{name} {layer.path}: {len(channels)} channels, batched {batched:.1f} s, "
            f"one at a time {one:.1f} s so far")
    height, width = contract.spec.height, contract.spec.width
    return Timing(name, f"{height}×{width}", tuple(layer.path for layer in probe.layers), total,
                  batched, one)


def article_stage() -> tuple[int, float]:
    """Every drawn channel of the article CNN's shown layers, as the build's stage runs them."""
    from reportgen import featviz, plan
    from reportgen.activations import ActivationProbe
    from reportgen.decode import InputSpec
    from reportgen.inputs import InputContract
    from reportgen.stages import layer_entries
    from reportgen.stats import LayerStatsAccumulator

    model, _ = article_cnn()
    contract = InputContract(InputSpec(28, 28, 3), "unit", "benchmark")
    probe = ActivationProbe(model, select=lambda layers: plan.plan_layers(layers, ()).shown)
    pixels = np.random.default_rng(0).random((90, 28, 28, 3), np.float32) * 255
    _, maps = probe(contract.prepare(pixels))
    accumulators = []
    for feature_maps in maps:
        accumulator = LayerStatsAccumulator(feature_maps.shape[-1], 3)
        accumulator.update(feature_maps, np.arange(90) % 3, [f"{i}" for i in range(90)])
        accumulators.append(accumulator)
    layers = layer_entries(probe, [layer.path for layer in probe.layers], accumulators,
                           plan.DEFAULT_MAX_CHANNELS)
    chosen = featviz.plan_features(layers, featviz.channel_budget(28, 28))
    started = time.perf_counter()
    for _ in featviz.visualize(probe, contract, layers, chosen, seed=0):
        pass
    return sum(map(len, chosen.values())), time.perf_counter() - started


def sections(cnn_channels: int = 32, mobilenet_channels: int = 4) -> list[str]:
    from importlib.metadata import version

    import reportgen.keras_import  # noqa: F401  first: it quiets TensorFlow's import
    from reportgen import featviz

    load_before = os.getloadavg()[0]
    cnn, cnn_preprocess = article_cnn()
    mobilenet, mobilenet_preprocess = mobilenet_224()
    timings = [
        measure("the article's CNN", cnn, cnn_preprocess,
                ["block1_conv1", "block2_conv2", "block3_conv2"], cnn_channels),
        measure("MobileNetV2 (`weights=None`)", mobilenet, mobilenet_preprocess,
                ["block_3_expand_relu", "block_13_expand_relu"], mobilenet_channels)]
    stage_channels, stage_s = article_stage()
    load_after = os.getloadavg()[0]
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                            text=True, cwd=HERE).stdout.strip() or "unknown"
    rows = [f"| {t.model} | {t.input_size} | {', '.join(f'`{p}`' for p in t.layers)} | "
            f"{t.channels} | {t.channels / t.batched_s:.2f} | {t.channels / t.one_at_a_time_s:.2f} "
            f"| {t.one_at_a_time_s / t.batched_s:.1f}× |" for t in timings]
    met = "met" if stage_s <= ARTICLE_BUDGET_S else "**missed**"
    mobilenet = timings[1]
    default_224 = featviz.channel_budget(224, 224)
    return [
        SECTION_START, "", "## Feature visualization: a layer's channels batched, and one at a time",
        "",
        f"`benchmarks/featviz.py` (run alone, or by `bench.py`), at commit {commit}, "
        f"{os.cpu_count()} cores, TensorFlow {version('tensorflow')}; 1-minute load average "
        f"{load_before:.1f} as it began and {load_after:.1f} as it ended (above about "
        f"{os.cpu_count()}, other work shared the cores: absolute times are inflated, the "
        "ratios of a row compare like with like, as the two ways took turns layer by layer). "
        f"Untrained models, {featviz.DEFAULT_STEPS} steps of `reportgen.featviz.Ascent` per "
        "channel (the default), the first channels of each layer, one trace per layer and way "
        "included.",
        "",
        "- *batched*: a layer's channels in one batch, one row each, as a build runs them;",
        "- *one at a time*: the same ascent, one channel per call (what tf-keras-vis and "
        "Lucid's tutorials do), the same channels, seeds and transforms.",
        "",
        "| model | input | layers | channels | batched channels/s | one at a time channels/s "
        "| batched speed-up |",
        "|---|---|---|---|---|---|---|",
        *rows, "",
        f"The default build's stage on the article's CNN (every drawn channel of its 9 shown "
        f"layers, {stage_channels} channels alive on 90 noise images): {stage_s:.1f} s "
        f"(target about {ARTICLE_BUDGET_S} s: {met}).",
        "",
        f"So the default budget (`featviz.DEFAULT_PIXEL_BUDGET`, {featviz.DEFAULT_PIXEL_BUDGET:,} "
        f"channel-pixels) gives every drawn channel of a 28×28 or 32×32 model and "
        f"{default_224} channels of a 224×224 one, about "
        f"{default_224 / (mobilenet.channels / mobilenet.batched_s):.0f} s at MobileNetV2's "
        "batched rate above; `--feature-channels` widens it, `--no-features` turns it off.",
        "", SECTION_END]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cnn-channels", type=int, default=32)
    parser.add_argument("--mobilenet-channels", type=int, default=4)
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    args = parser.parse_args(argv)
    from big_models import write_section

    write_section(args.out, SECTION_START, SECTION_END,
                  "\n".join(sections(args.cnn_channels, args.mobilenet_channels)))
    log(f"wrote {args.out}")

if __name__ == "__main__":
    main()
