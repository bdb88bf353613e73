"""Grad-CAM's cost: reportgen's batched pass against keras-io's one image at a time and the plain
forward pass, side by side on the article's CNN and on MobileNetV2 at 96x96.

    python benchmarks/grad_cam_cost.py [--out benchmarks/results.md]

Run on its own it replaces its section of benchmarks/results.md; `bench.py` also calls
`sections()` for its full run. The models are untrained (weights do not change the time) and
the images are noise in the models' [0, 1] input; the three ways are timed in turn on the
same images, best of ``REPEATS``, so load from other work on the machine hits them alike.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SECTION_START, SECTION_END = "<!-- grad-cam -->", "<!-- /grad-cam -->"
BATCH = 64
REPEATS = 3
ONE_AT_A_TIME_IMAGES = 64  # keras-io's way costs up to a second an image on a shared CPU
GRAD_CAM_RATIO_TARGET = 1.5  # the issue's: Grad-CAM at most 1.5x the forward pass


def log(message: str) -> None:
    print(f"[grad-cam] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class GradCamTiming:
    model: str
    input_size: str
    cam_layer: str
    images: int
    one_at_a_time_images: int
    forward_s: float
    batched_s: float
    one_at_a_time_s: float

    def ms_per_image(self, seconds: float, images: int | None = None) -> float:
        return seconds / (images or self.images) * 1e3


def article_cnn():
    from reportgen.decode import InputSpec
    from reportgen.keras_import import keras
    from reportgen.model import article_cnn

    keras.utils.set_random_seed(0)
    return article_cnn(InputSpec(28, 28, 3), 3)


def mobilenet_96():
    from reportgen.keras_import import keras

    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), classes=3)


def keras_io_grad_model(model, layer_name: str):
    """keras-io's grad model: the image to (the layer's output, the predictions). A Sequential
    built with add() leaves stale graphs in ``layer.output``, so it is split at the layer
    instead, keras-io's older way; both run eagerly, layer by layer."""
    from reportgen.keras_import import keras

    if not isinstance(model, keras.Sequential):
        return keras.Model(model.inputs[0], [model.get_layer(layer_name).output,
                                             model.outputs[0]])
    cut = [layer.name for layer in model.layers].index(layer_name) + 1

    def grad_model(x):
        for layer in model.layers[:cut]:
            x = layer(x)
        layer_output = x
        for layer in model.layers[cut:]:
            x = layer(x)
        return layer_output, x

    return grad_model


def keras_io_gradcam(grad_model, image: np.ndarray):
    """keras-io's make_gradcam_heatmap (examples/vision/grad_cam.py), as written there: one image,
    eager, the gradient of the top class's score."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        conv_output, predictions = grad_model(image[None])
        top_class = tf.argmax(predictions[0])
        class_channel = predictions[:, top_class]
    gradients = tape.gradient(class_channel, conv_output)
    pooled = tf.reduce_mean(gradients, axis=(0, 1, 2))
    heatmap = tf.squeeze(conv_output[0] @ pooled[..., tf.newaxis])
    return tf.maximum(heatmap, 0) / tf.math.reduce_max(heatmap)


def best_of(runs: dict[str, list[Callable[[], object]]]) -> dict[str, float]:
    """Each run's time: the sum over its units (a batch, an image) of each unit's best of
    REPEATS, the runs taking turns unit by unit, so a burst of load elsewhere costs one unit
    one try, not a whole run."""
    best = {name: [float("inf")] * len(units) for name, units in runs.items()}
    for _ in range(REPEATS):
        for i in range(max(map(len, runs.values()))):
            for name, units in runs.items():
                if i < len(units):
                    started = time.perf_counter()
                    units[i]()
                    best[name][i] = min(best[name][i], time.perf_counter() - started)
    return {name: sum(times) for name, times in best.items()}


def measure(name: str, model, n_images: int) -> GradCamTiming:
    import tensorflow as tf

    from reportgen.explain import GradCam

    height, width, channels = model.inputs[0].shape[1:]
    images = np.random.default_rng(0).random((n_images, height, width, channels), np.float32)
    true = np.arange(n_images) % 3
    forward = tf.function(lambda x: model(x, training=False),
                          input_signature=[tf.TensorSpec((None, height, width, channels))])
    grad_cam = GradCam(model)
    grad_model = keras_io_grad_model(model, grad_cam.layer.path)
    batches = [slice(start, start + BATCH) for start in range(0, n_images, BATCH)]
    grad_cam.forward(images[:BATCH], true[:BATCH])  # trace, as a build does first
    keras_io_gradcam(grad_model, images[0])
    one_at_a_time = images[:ONE_AT_A_TIME_IMAGES]
    log(f"{name}: {n_images} images ({len(one_at_a_time)} one at a time), CAM layer "
        f"{grad_cam.layer.path}")
    best = best_of({
        "forward": [lambda b=b: forward(images[b]).numpy() for b in batches],
        "batched": [lambda b=b: grad_cam.forward(images[b], true[b]) for b in batches],
        "one": [lambda image=image: keras_io_gradcam(grad_model, image).numpy()
                for image in one_at_a_time]})
    return GradCamTiming(name, f"{height}×{width}", grad_cam.layer.path, n_images,
                         len(one_at_a_time), best["forward"], best["batched"], best["one"])


def sections(cnn_images: int = 512, mobilenet_images: int = 256) -> list[str]:
    from importlib.metadata import version

    import reportgen.keras_import  # noqa: F401  first: it quiets TensorFlow's import
    load_before = os.getloadavg()[0]
    timings = [measure("the article's CNN", article_cnn(), cnn_images),
               measure("MobileNetV2 (`weights=None`)", mobilenet_96(), mobilenet_images)]
    load_after = os.getloadavg()[0]
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                            text=True, cwd=HERE).stdout.strip() or "unknown"
    rows = []
    for t in timings:
        forward, batched = t.ms_per_image(t.forward_s), t.ms_per_image(t.batched_s)
        one = t.ms_per_image(t.one_at_a_time_s, t.one_at_a_time_images)
        rows.append(f"| {t.model} | {t.input_size} | `{t.cam_layer}` | {t.images} | "
                    f"{forward:.2f} | {batched:.2f} | {batched / forward:.2f} "
                    f"({'met' if batched / forward <= GRAD_CAM_RATIO_TARGET else '**missed**'}) | "
                    f"{one:.1f} ({t.one_at_a_time_images} images) | {one / batched:.0f}× |")
    return [
        SECTION_START, "", "## 7. Grad-CAM: batched, one image at a time, and the forward pass",
        "",
        f"`benchmarks/grad_cam_cost.py` (run alone, or by `bench.py`), at commit {commit}, "
        f"{os.cpu_count()} cores, TensorFlow {version('tensorflow')}; 1-minute load average "
        f"{load_before:.1f} as it began and {load_after:.1f} as it ended (above about "
        f"{os.cpu_count()}, other work shared the cores: absolute times are inflated, the "
        "ratios of a row compare like with like, as its three ways took turns). Untrained "
        f"models, noise images in [0, 1], batches of {BATCH}; each batch's (or image's) best of "
        f"{REPEATS} tries, the three ways taking turns batch by batch.",
        "",
        "- *forward pass*: the model alone, traced (`tf.function`), the lower bound;",
        "- *batched Grad-CAM*: `reportgen.explain.GradCam.forward`, the build's one taped pass "
        "per batch giving the probabilities, two maps per image (predicted and true class), "
        "the classifier features and the CAM layer's channel means;",
        "- *one at a time*: keras-io's `make_gradcam_heatmap` as written there (eager, one "
        f"image per tape, one map: the top class), on the first {ONE_AT_A_TIME_IMAGES} of "
        "the images.",
        "",
        "That taped pass is also the build's forward pass (`reportgen.pipeline`), so "
        "Grad-CAM's extra time per image is the difference of the two columns.",
        "",
        "| model | input | CAM layer | images | forward pass ms/image | batched Grad-CAM "
        f"ms/image | batched ÷ forward (target ≤ {GRAD_CAM_RATIO_TARGET}) | one at a time "
        "ms/image | one at a time ÷ batched |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows, "", SECTION_END]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cnn-images", type=int, default=512)
    parser.add_argument("--mobilenet-images", type=int, default=256)
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    args = parser.parse_args(argv)
    from big_models import write_section

    write_section(args.out, SECTION_START, SECTION_END,
                  "\n".join(sections(args.cnn_images, args.mobilenet_images)))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
