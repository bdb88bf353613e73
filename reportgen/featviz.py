"""Feature visualization: for each drawn channel, a picture that maximizes its mean activation.

Chollet's second view of a convnet (the input pattern each filter responds to), made with
Lucid's robustness recipe (Olah et al., "Feature Visualization", Distill 2017): the picture is
parameterized by its Fourier spectrum scaled by 1/frequency, with decorrelated colours for
three-channel inputs, and the steps of gradient ascent see it jittered, scaled and slightly
rotated, so the picture cannot rely on high-frequency patterns no real image has; the last
quarter of the steps see it as it is measured. A channel whose picture still falls short of
its best test image goes on for up to two more ascents.

The ascent works in the model's own input space: pixels in [0, 255] (a sigmoid keeps them
there) go through the input contract's preprocessing, as test images do, into a model that
ends at the layer (``ActivationProbe.layer_model``). All of a layer's channels are optimized
together, one batch row each (row i maximizes channel i's spatial mean), in one traced
TensorFlow loop. What the report records is measured afterwards on the picture exactly as
written: rounded to 8-bit pixels and fed like a test image.

Randomness (the first spectrum, each step's transform) comes from NumPy generators seeded by
the build's seed, the layer and the channel, so a channel's picture does not depend on which
other channels share its batch, and rebuilds give the same bytes.

TensorFlow is imported inside the functions: the report model imports ``ChannelFeature``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from reportgen.options import BuildOptions, default

DEFAULT_STEPS = default(BuildOptions, "feature_steps")  # benchmarks/results.md
# Channels visualized per build by default: as many as this many input pixels allow, in all
# (channels x height x width). Every drawn channel of a 28x28 or 32x32 model, a few per layer
# of a 224x224 one (benchmarks/results.md, "Feature visualization").
DEFAULT_PIXEL_BUDGET = 1_000_000
# Adam's step on the spectrum: Lucid's 0.05 is for 512 steps. At 64 steps a larger one wins
# more often, up to about 0.4 (benchmarks/results.md, "Feature visualization").
LEARNING_RATE = 0.4
SPECTRUM_SD = 0.01  # the first spectrum's standard deviation (Lucid's)
# The last quarter of each ascent's steps sees the picture as it is measured and shown, without
# jitter, scale or rotation: the transforms keep the picture free of pixel-level tricks, these
# steps settle it where it stands.
SETTLING_SHARE = 0.25
# A channel whose picture falls short of its best test image gets up to this many more
# ascents of the same length, each going on from where the last one ended (new transforms).
EXTRA_ROUNDS = 2
# Square root of the colour correlation of ImageNet pixels (Lucid's color.py), and its largest
# column norm: decorrelated colours are mixed by it so each parameter moves all three.
COLOR_CORRELATION_SVD_SQRT = np.array([[0.26, 0.09, 0.02],
                                       [0.27, 0.00, -0.05],
                                       [0.27, -0.09, 0.03]], np.float32)
COLOR_MIX = (COLOR_CORRELATION_SVD_SQRT
             / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))).T
# Lucid's transforms at 224 pixels (jitter 8 then 4, scale 0.9-1.1, rotation up to 10 degrees),
# jitter scaled to the input's size so a 28x28 picture is not shifted by a third of itself.
JITTER_AT_224 = 12
SCALES = tuple(1 + (i - 5) / 50 for i in range(11))
ANGLES_DEG = (*range(-10, 11), 0, 0, 0, 0, 0)
IDENTITY_TRANSFORM = (1, 0, 0, 0, 1, 0, 0, 0)


@dataclass(frozen=True)
class ChannelFeature:
    """One channel's feature visualization, as the report shows it."""

    channel: int
    best_test: float  # the highest spatial mean of the channel over the test images
    activation: float | None  # the spatial mean the written picture reaches; None when dead
    dead: bool  # never active on a test image, or no picture found raises it above 0

    @property
    def drawn(self) -> bool:
        return not self.dead


@dataclass(frozen=True)
class LayerFeatures:
    """A layer's visualized channels and their pictures, (n, height, width, channels) uint8."""

    layer_index: int
    features: tuple[ChannelFeature, ...]  # in channel order
    pictures: dict[int, np.ndarray]  # by channel, the drawn ones only


def channel_budget(height: int, width: int, channels: int | None = None) -> int:
    """Channels per build: ``channels`` when given, else what DEFAULT_PIXEL_BUDGET allows."""
    if channels is not None:
        return channels
    return max(1, DEFAULT_PIXEL_BUDGET // (height * width))


def plan_features(layers: Sequence, budget: int) -> dict[int, tuple[int, ...]]:
    """Which drawn channels of each layer get a picture, ``budget`` channels in all.

    Shared out in turns across the layers, each layer's most variable channels first (the
    channel plan's rank), so a budget smaller than the drawn channels still reaches every
    layer. Channels never active on a test image cost nothing (they are said to be dead) and
    are left out of the count. The result lists each layer's channels in index order.
    """
    queues = []
    for layer in layers:
        channels = layer.stats.channels
        alive = [c for c in layer.shown_channels if not channels[c].dead]
        queues.append(sorted(alive, key=lambda c: (-channels[c].std, c)))
    chosen: list[list[int]] = [[] for _ in layers]
    for turn in range(max(map(len, queues), default=0)):
        for index, queue in enumerate(queues):
            if turn < len(queue) and budget > 0:
                chosen[index].append(queue[turn])
                budget -= 1
    return {layer.index: tuple(sorted(picked)) for layer, picked in zip(layers, chosen, strict=True)}


def spatial_means(feature_maps: np.ndarray) -> np.ndarray:
    """(n, h, w, c) -> (n, c) float64 spatial means, summed as the layer statistics sum them."""
    feature_maps = np.asarray(feature_maps, np.float32)
    return feature_maps.sum(axis=(1, 2), dtype=np.float64) / (feature_maps.shape[1]
                                                              * feature_maps.shape[2])


# -- the parameterization -----------------------------------------------------------------------

def _frequencies(height: int, width: int) -> np.ndarray:
    """The 2-D spectrum's frequencies, as numpy's rfft2 lays them out (Lucid's rfft2d_freqs)."""
    fy = np.fft.fftfreq(height)[:, None]
    # An odd width keeps one more frequency; the extra pixel it makes is cut off.
    fx = np.fft.fftfreq(width)[: width // 2 + 1 + width % 2]
    return np.sqrt(fx * fx + fy * fy)


def spectrum_scale(height: int, width: int) -> np.ndarray:
    """1 / frequency (the spectrum of natural images), times sqrt(pixels) so that the
    transform is about unitary and Adam's step means the same at any size."""
    scale = 1.0 / np.maximum(_frequencies(height, width), 1.0 / max(height, width))
    return (scale * np.sqrt(height * width)).astype(np.float32)


def initial_spectrum(seed: int, layer_index: int, channel: int, colours: int, height: int,
                     width: int) -> np.ndarray:
    """(2, colours, fh, fw) float32: one channel's first spectrum, real and imaginary parts."""
    shape = (2, colours, *_frequencies(height, width).shape)
    rng = np.random.default_rng((seed, layer_index, channel, 0))
    return (rng.standard_normal(shape) * SPECTRUM_SD).astype(np.float32)


def step_transforms(seed: int, layer_index: int, channel: int, steps: int, height: int,
                    width: int, attempt: int = 0) -> np.ndarray:
    """(steps, 8) float32: each step's jitter, scale and rotation about the centre, as the
    output-to-input projective transforms ``ImageProjectiveTransformV3`` takes."""
    rng = np.random.default_rng((seed, layer_index, channel, 2 * attempt + 1))
    jitter = max(1, round(JITTER_AT_224 * max(height, width) / 224))
    shift = rng.integers(-jitter, jitter + 1, size=(steps, 2)).astype(np.float64)
    scale = np.asarray(SCALES)[rng.integers(len(SCALES), size=steps)]
    angle = np.radians(np.asarray(ANGLES_DEG, np.float64)[rng.integers(len(ANGLES_DEG), size=steps)])
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    cx, cy = (width - 1) / 2, (height - 1) / 2
    # input = R(-angle) / scale @ (output - centre - shift) + centre
    ox, oy = cx + shift[:, 0], cy + shift[:, 1]
    transforms = np.stack([cos, sin, cx - cos * ox - sin * oy,
                           -sin, cos, cy + sin * ox - cos * oy,
                           np.zeros(steps), np.zeros(steps)], axis=1)
    transforms[steps - int(steps * SETTLING_SHARE):] = IDENTITY_TRANSFORM
    return transforms.astype(np.float32)


def _unit_pictures(tf, spectrum, scale, height: int, width: int):
    """Spectra (2, n, colours, fh, fw) -> pictures (n, height, width, colours) in (0, 1)."""
    complex_spectrum = tf.complex(spectrum[0], spectrum[1]) * tf.cast(scale, tf.complex64)
    image = tf.signal.irfft2d(complex_spectrum)[:, :, :height, :width]
    image = tf.transpose(image, (0, 2, 3, 1)) / 4.0
    if image.shape[-1] == 3:
        image = tf.reshape(tf.reshape(image, (-1, 3)) @ tf.constant(COLOR_MIX), tf.shape(image))
    return tf.sigmoid(image)


def _tensor_preprocess(name: str) -> Callable:
    """The input contract's preprocessing on a tensor of pixels in [0, 255]."""
    if name == "unit":
        return lambda pixels: pixels / 255.0
    if name == "raw":
        return lambda pixels: pixels
    if name == "symmetric":
        return lambda pixels: pixels / 127.5 - 1.0
    from reportgen.inputs import _keras_preprocess_input

    return _keras_preprocess_input(name)  # Keras' own, which also takes tensors


def _redirected(tf, forward: Callable, upper: float | None = None) -> Callable:
    """A ReLU (or ReLU6, ``upper`` 6) whose gradient is Lucid's redirected one: where a batch
    row gets no gradient through it at all (a channel silent on the whole picture: the ascent
    would never start), the gradient passes as if the unit were linear, except where it
    would push an input further below 0 (or above ``upper``)."""

    @tf.custom_gradient
    def relu(x):
        def gradient(upstream):
            blocked = x < 0 if upper is None else (x < 0) | (x > upper)
            normal = tf.where(blocked, tf.zeros_like(upstream), upstream)
            outward = (x < 0) & (upstream < 0)  # ascent: a negative gradient lowers x
            if upper is not None:
                outward = outward | ((x > upper) & (upstream > 0))
            redirected = tf.where(outward, tf.zeros_like(upstream), upstream)
            rows = tf.reduce_any(tf.not_equal(normal, 0), axis=tuple(range(1, len(x.shape))),
                                 keepdims=True)
            return tf.where(rows, normal, redirected)

        return forward(x), gradient

    return relu


@contextmanager
def _redirected_relus(tf):
    """Keras' ReLUs with redirected gradients while the ascent is traced (Lucid does the same
    with a gradient override map, which TensorFlow 2's GradientTape does not read). Keras'
    TensorFlow backend names ``relu`` and ``relu6`` in one module, looked up at each call."""
    from keras.src.backend.tensorflow import nn as backend_nn

    saved = backend_nn.relu, backend_nn.relu6
    backend_nn.relu = _redirected(tf, tf.nn.relu)
    backend_nn.relu6 = _redirected(tf, tf.nn.relu6, 6.0)
    try:
        yield
    finally:
        backend_nn.relu, backend_nn.relu6 = saved


class _NotRetracing(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


@contextmanager
def _quiet_retracing():
    """Each layer's ascent is a function traced once, for a model of its own: TensorFlow's
    warning that functions keep being traced says nothing a user can act on here."""
    logger = logging.getLogger("tensorflow")
    quiet = _NotRetracing()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


class Ascent:
    """Gradient ascent for one layer's channels, one batch row per channel."""

    def __init__(self, layer_model, contract, steps: int = DEFAULT_STEPS,
                 learning_rate: float = LEARNING_RATE):
        import tensorflow as tf

        self.tf = tf
        self.layer_model = layer_model
        self.contract = contract
        self.steps = steps
        self.learning_rate = learning_rate
        spec = contract.spec
        self.height, self.width, self.colours = spec.height, spec.width, spec.channels
        self.scale = tf.constant(spectrum_scale(self.height, self.width))
        self._check_preprocessing()
        self._ascend = tf.function(self._ascend_eager, reduce_retracing=True)

    def _check_preprocessing(self) -> None:
        """The ascent's preprocessing must be the one test images go through."""
        probe = np.linspace(0, 255, self.height * self.width * self.colours, dtype=np.float32)
        probe = probe.reshape(1, self.height, self.width, self.colours)
        expected = self.contract.prepare(probe)
        got = np.asarray(_tensor_preprocess(self.contract.preprocess)(self.tf.constant(probe)))
        if not np.allclose(got, expected, rtol=1e-5, atol=1e-4):
            raise ValueError(f"preprocessing {self.contract.preprocess!r} differs on tensors")

    def _ascend_eager(self, spectrum, transforms, selected):
        """``steps`` Adam steps up every row's objective; returns the last spectrum."""
        tf = self.tf
        preprocess = _tensor_preprocess(self.contract.preprocess)
        dtype = self.layer_model.inputs[0].dtype
        first_moment = tf.zeros_like(spectrum)
        second_moment = tf.zeros_like(spectrum)
        beta1, beta2, epsilon = 0.9, 0.999, 1e-8
        for step in tf.range(self.steps):
            with tf.GradientTape() as tape:
                tape.watch(spectrum)
                pictures = _unit_pictures(tf, spectrum, self.scale, self.height, self.width)
                moved = tf.raw_ops.ImageProjectiveTransformV3(
                    images=pictures, transforms=transforms[:, step],
                    output_shape=(self.height, self.width), fill_value=0.0,
                    interpolation="BILINEAR", fill_mode="REFLECT")
                maps = self.layer_model(tf.cast(preprocess(moved * 255.0), dtype),
                                        training=False)
                # Row i's objective is its own channel's spatial mean: rows do not mix.
                objective = tf.reduce_sum(tf.reduce_mean(tf.cast(maps, tf.float32) * selected,
                                                         axis=(1, 2)))
            gradient = tape.gradient(objective, spectrum)
            # Each row's gradient at unit RMS: Adam's epsilon would otherwise stall a layer
            # whose activations are tiny (an untrained network's deep layers reach 1e-6).
            rms = tf.sqrt(tf.reduce_mean(tf.square(gradient), axis=(0, 2, 3, 4), keepdims=True))
            gradient = tf.math.divide_no_nan(gradient, rms)
            t = tf.cast(step + 1, tf.float32)
            first_moment = beta1 * first_moment + (1 - beta1) * gradient
            second_moment = beta2 * second_moment + (1 - beta2) * tf.square(gradient)
            step_size = self.learning_rate * tf.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
            spectrum = spectrum + step_size * first_moment / (tf.sqrt(second_moment) + epsilon)
        return spectrum

    def pictures(self, channels: Sequence[int], seed: int, layer_index: int, attempt: int = 0,
                 start: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(len(channels), h, w, colours) uint8: each channel's picture, after the ascent, and
        the spectra it ended at. ``start``: spectra to go on from rather than seeded ones."""
        tf = self.tf
        if start is None:
            start = np.stack([initial_spectrum(seed, layer_index, c, self.colours, self.height,
                                               self.width) for c in channels], axis=1)
        transforms = np.stack([step_transforms(seed, layer_index, c, self.steps, self.height,
                                               self.width, attempt) for c in channels])
        n_channels = int(self.layer_model.outputs[0].shape[-1])
        selected = np.zeros((len(channels), 1, 1, n_channels), np.float32)
        selected[np.arange(len(channels)), 0, 0, list(channels)] = 1.0
        with _redirected_relus(tf), _quiet_retracing():  # traced on the first call
            spectrum = self._ascend(tf.constant(start), tf.constant(transforms),
                                    tf.constant(selected))
        unit = _unit_pictures(tf, spectrum, self.scale, self.height, self.width).numpy()
        return np.clip(unit * 255 + 0.5, 0, 255).astype(np.uint8), spectrum.numpy()

    def activations(self, pictures: np.ndarray, channels: Sequence[int]
                    ) -> tuple[np.ndarray, np.ndarray]:
        """The spatial mean and the largest value each picture gives its channel, fed as a
        test image is."""
        inputs = self.contract.prepare(pictures.astype(np.float32))
        maps = np.asarray(self.layer_model(inputs, training=False))
        rows, channels = np.arange(len(channels)), list(channels)
        return spatial_means(maps)[rows, channels], maps.max(axis=(1, 2))[rows, channels]


def _best_pictures(ascent: Ascent, channels: Sequence[int], seed: int, layer_index: int,
                   best_tests: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each channel's picture, its mean and its largest value: one ascent, then up to
    EXTRA_ROUNDS more for the channels still short of their best test image. A round keeps
    what it finds only where the mean rises, so whether a channel goes on depends on that
    channel alone."""
    drawn, spectra = ascent.pictures(channels, seed, layer_index)
    reached, peaks = ascent.activations(drawn, channels)
    for attempt in range(1, EXTRA_ROUNDS + 1):
        short = [row for row, best in enumerate(best_tests) if not reached[row] > best]
        if not short:
            break
        again = [channels[row] for row in short]
        more, more_spectra = ascent.pictures(again, seed, layer_index, attempt,
                                             start=spectra[:, short])
        more_reached, more_peaks = ascent.activations(more, again)
        for i, row in enumerate(short):
            if more_reached[i] > reached[row]:
                drawn[row], spectra[:, row] = more[i], more_spectra[:, i]
                reached[row], peaks[row] = more_reached[i], more_peaks[i]
    return drawn, reached, peaks


def visualize(probe, contract, layers: Sequence, plan: dict[int, tuple[int, ...]], *, seed: int,
              steps: int = DEFAULT_STEPS, batch_size: int = 64,
              on_layer: Callable[[object, int], None] | None = None) -> Iterator[LayerFeatures]:
    """Each layer's features, for the channels ``plan`` names (``plan_features``), the drawn
    channels that never fired on a test image as dead. Batches of at most ``batch_size``
    channels. ``on_layer(layer, n_channels)`` is told before each layer's ascent."""
    for layer in layers:
        channels = plan.get(layer.index, ())
        stats = layer.stats.channels
        never_active = [c for c in layer.shown_channels if stats[c].dead]
        if not channels and not never_active:
            continue
        features, pictures = [], {}
        if channels:
            if on_layer is not None:
                on_layer(layer, len(channels))
            ascent = Ascent(probe.layer_model(layer.index), contract, steps)
            for start in range(0, len(channels), batch_size):
                chunk = channels[start:start + batch_size]
                drawn, reached, peaks = _best_pictures(ascent, chunk, seed, layer.index,
                                                       [stats[c].max_mean for c in chunk])
                for row, channel in enumerate(chunk):
                    activation = float(reached[row])
                    # Dead as the layer statistics say it: no unit of the channel above 0.
                    # (A mean threshold would call the channels of a linear layer dead,
                    # whose means can be tiny or below 0 however alive they are.)
                    dead = not peaks[row] > 0
                    features.append(ChannelFeature(channel, stats[channel].max_mean,
                                                   None if dead else activation, dead))
                    if not dead:
                        pictures[channel] = drawn[row]
        features += [ChannelFeature(c, stats[c].max_mean, None, True) for c in never_active]
        yield LayerFeatures(layer.index, tuple(sorted(features, key=lambda f: f.channel)),
                            pictures)


def picture_png(picture: np.ndarray) -> bytes:
    """The PNG of a picture (h, w, 1 or 3) uint8, grey as grey: decoded, the same pixels."""
    from reportgen.drawing import encode_png

    return encode_png(picture[..., 0] if picture.shape[-1] == 1 else picture)


__all__ = ["Ascent", "ChannelFeature", "DEFAULT_PIXEL_BUDGET", "DEFAULT_STEPS", "LayerFeatures",
           "channel_budget", "picture_png", "plan_features", "spatial_means", "visualize"]
