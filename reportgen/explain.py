"""Explanations: Grad-CAM, calibration, label quality and an embedding, as functions on arrays.

Grad-CAM (Selvaraju et al.) weighs each channel of a feature-map layer by the mean
gradient of a class's *logit* (the input of the final softmax) with respect to it,
sums, keeps the positive part and divides by the maximum. It is computed for a
whole batch in one taped forward pass: in inference mode images do not interact,
so the gradient of the batch's summed logits is every image's own gradient.

Where the logit comes from: the graph is replayed (the probe's replay,
``reportgen.activations``) with the layer that makes the output, looked for inside
nested models too, replaced by the tensor before its softmax:

- a ``Dense`` (softmax or any activation): its pre-activation,
  ``features @ kernel + bias``, computed from the same weights in the same graph;
- a ``Softmax`` or ``Activation("softmax")`` layer: its input;
- anything else: the log of the probabilities, and ``target`` says ``"log_probability"``.

This is keras-io's "remove the last layer's softmax" without touching the model:
setting ``activation = None`` would change the user's model object, and cloning it
with another activation would have to rebuild nested models and shared layers.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from threadpoolctl import threadpool_limits

from reportgen.errors import UserError

if TYPE_CHECKING:
    from reportgen.activations import FeatureLayer

CALIBRATION_BINS = 10
EMBEDDING_MAX_POINTS = 5000


class NoCamLayer(Exception):
    """The model has no feature map larger than 1x1: there is nothing to localise."""


@dataclass(frozen=True)
class CamBatch:
    predicted_maps: np.ndarray  # (n, h, w) float32 in [0, 1], predicted classes (first of ties)
    true_maps: np.ndarray  # (n, h, w), for the true classes (equal to predicted_maps when right)
    features: np.ndarray  # (n, d) the classifier layer's input
    channel_means: np.ndarray  # (n, channels) the CAM layer's spatial means


def _is_softmax(operation) -> bool:
    from reportgen.keras_import import keras

    if isinstance(operation, keras.layers.Softmax):
        return True
    activation = getattr(operation, "activation", None)
    return isinstance(operation, keras.layers.Activation) and \
        getattr(activation, "__name__", "") == "softmax"


def default_cam_layer(layers: Sequence[FeatureLayer]) -> FeatureLayer:
    """The last feature-map layer larger than 1x1: the most abstract one that still has a where."""
    for layer in reversed(layers):
        if layer.output_shape[0] * layer.output_shape[1] > 1:
            return layer
    raise NoCamLayer("the model has no feature map larger than 1x1, so Grad-CAM has nothing "
                     "to localise")


class GradCam:
    """Grad-CAM maps, classifier features and CAM-layer channel means for batches of images.

    With ``layers`` (feature-map layer paths, as the probe names them) it is also the build's
    one forward pass: ``forward`` returns the probabilities and those layers' maps from the
    same traced call that takes the gradients, so no image goes through the network twice
    to be both measured and explained.
    """

    def __init__(self, model, cam_layer: str | None = None, layers: Sequence[str] = ()):
        import tensorflow as tf

        from reportgen.activations import FeatureLayer, _image_input, _replay
        from reportgen.keras_import import keras
        from reportgen.outputs import output_contract, output_layer

        image_input = _image_input(model)
        final = output_layer(model)
        contract = output_contract(model)

        def replay(watched_call: int | None = None):
            """The model replayed with its output layer's logits exposed; with
            ``watched_call``, that layer call's output (the CAM layer) passes through
            ``_Watched``, so the taped steps record the head only."""
            calls: dict[int, tuple] = {}
            found: dict[str, object] = {}
            call_numbers: dict[int, int] = {}

            def on_call(operation, args, outputs):
                number = len(call_numbers)
                call_numbers[id(outputs)] = number
                calls.setdefault(id(outputs), (operation, args))
                if operation is final and not found:
                    found["logits"], found["classifier"] = _pre_softmax(operation, args, calls)
                    return found["logits"]
                if number == watched_call:
                    return _watched_layer()(outputs)
                return None

            taped = _replay(model, image_input, nested_probes={}, on_call=on_call)
            return taped, found, call_numbers

        replayed, _, call_numbers = replay()
        layers_found = [FeatureLayer(t.path, t.type_name, tuple(int(n) for n in t.output.shape[1:]))
                        for t in replayed.taps]
        if cam_layer is None:
            self.layer = default_cam_layer(layers_found)
        else:
            matches = [layer for layer in layers_found if layer.path == cam_layer]
            if not matches:
                shown = ", ".join(layer.path for layer in layers_found) or "(none)"
                raise UserError(f"--cam-layer {cam_layer!r} is not a feature-map layer of the "
                                f"model; they are: {shown}")
            self.layer = matches[0]
        tapped = {t.path for t in replayed.taps}
        missing = [path for path in layers if path not in tapped]
        if missing:
            raise ValueError(f"not feature-map layers of the model: {missing}")
        # Replayed again with the CAM layer watched: the same graph, one identity layer more.
        cam_tap = replayed.taps[layers_found.index(self.layer)]
        replayed, found, _ = replay(call_numbers[id(cam_tap.made)])
        tap = replayed.taps[layers_found.index(self.layer)]
        by_path = {t.path: t for t in replayed.taps}
        output = replayed.outputs[0]
        classifier, args = found.get("classifier") or (None, ())
        if found.get("logits") is None:
            probabilities = _applied(contract.probabilities, "probabilities")(output)
            logits = _applied(lambda p: keras.ops.log(p + 1e-12), "log_probability")(probabilities)
            features = probabilities
            self.target, self.embedding_layer = "log_probability", "probabilities"
        else:
            # The output layer's own activation on the logits: the same operations as its
            # call (a Dense is matmul, add, activation), so the same numbers, bit for bit;
            # then the output contract's (a softmax of logits, [1 - p, p] of one unit).
            probabilities = _activate(final, output)
            if contract.kind != "probabilities":
                probabilities = _applied(contract.probabilities, "probabilities")(probabilities)
            if any(layer is classifier for layer in model.layers):
                logits, features = output, args[0]
                self.target, self.embedding_layer = "logit", classifier.name
            else:  # the classifier is inside a nested model: its input is not in this graph
                logits, features = output, output
                self.target, self.embedding_layer = "logit", f"{final.name} (its logits)"
            if contract.units == 1:  # [0, z]: one logit per class
                logits = _applied(contract.logits, "class_logits")(logits)
        self.layers = tuple(layer for layer in layers_found if layer.path in set(layers))
        shown_taps = [by_path[layer.path] for layer in self.layers]
        self._image_dtype = image_input.dtype
        self._n_classes = contract.n_classes
        self._forward_model = keras.Model(
            image_input, [probabilities, tap.output, features, logits,
                          *(t.output for t in shown_taps)], name=f"{model.name}_forward")
        # One trace for every batch size (the last batch is usually smaller).
        image_spec = tf.TensorSpec((None, *image_input.shape[1:]), image_input.dtype)
        labels_spec = tf.TensorSpec((None,), tf.int32)
        # No AutoGraph: the step has no control flow on tensors, so converting its
        # source would only add to the trace.
        self._forward_step = tf.function(self._forward, autograph=False,
                                         input_signature=[image_spec, labels_spec])

    def _forward(self, images, true):
        with _taping() as tape:
            probabilities, feature_maps, features, logits, *shown = self._forward_model(
                images, training=False)
            scores = _class_scores(logits, _first_argmax(probabilities), true)
        return (probabilities, *self._cams(tape, feature_maps, features, scores), *shown)

    @staticmethod
    def _cams(tape, feature_maps, features, scores):
        import tensorflow as tf

        maps = []
        for score in scores:
            gradients = tape.gradient(score, feature_maps)
            if gradients is None:  # the layer does not lead to the output
                gradients = tf.zeros_like(feature_maps)
            weights = tf.reduce_mean(gradients, axis=(1, 2))
            maps.append(tf.einsum("nhwk,nk->nhw", feature_maps, weights))
        del tape
        channel_means = tf.reduce_mean(feature_maps, axis=(1, 2))
        return maps[0], maps[1], tf.reshape(features, (tf.shape(features)[0], -1)), channel_means

    def forward(self, images: np.ndarray, true: np.ndarray
                ) -> tuple[np.ndarray, list[np.ndarray], CamBatch]:
        """One taped pass: (probabilities, the ``layers``' maps, Grad-CAM of each image's
        predicted class, the first of equal maxima, and of its ``true`` class)."""
        images = np.asarray(images, dtype=self._image_dtype)
        probabilities, predicted_raw, true_raw, features, channel_means, *shown = (
            np.asarray(x, dtype=np.float32)
            for x in self._forward_step(images, np.asarray(true, np.int32)))
        return probabilities, shown, CamBatch(normalise_maps(predicted_raw),
                                              normalise_maps(true_raw), features, channel_means)


# The tape a taped step is being traced under, for the CAM layer's _Watched layer to reach.
_TAPES = threading.local()


@contextlib.contextmanager
def _taping():
    """A persistent tape that watches no variables and no input: only the CAM layer's output
    (``_Watched``), so it records the head from there to the logits, not the whole network.
    Its gradients are the same; tracing them walks a few operations instead of every one
    of the backbone (most of MobileNetV2's trace: benchmarks/results.md, *Measured by hand*)."""
    import tensorflow as tf

    with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
        _TAPES.tape = tape
        try:
            yield tape
        finally:
            _TAPES.tape = None


@functools.cache
def _watched_layer_class():
    from reportgen.keras_import import keras

    class _Watched(keras.layers.Layer):
        """The identity, whose input the tape of ``_taping`` watches while a step is traced."""

        def call(self, inputs):
            tape = getattr(_TAPES, "tape", None)
            if tape is not None:
                tape.watch(inputs)
            return inputs

    return _Watched


def _watched_layer():
    return _watched_layer_class()(name="reportgen_cam_layer_watched")


def _class_scores(logits, predicted, true):
    """The batch's summed logits of the predicted and of the true classes: in inference mode
    images do not interact, so the gradient of a sum is every image's own gradient."""
    import tensorflow as tf

    return (tf.reduce_sum(tf.gather(logits, predicted, batch_dims=1)),
            tf.reduce_sum(tf.gather(logits, true, batch_dims=1)))


def _first_argmax(probabilities):
    """numpy's argmax in the graph: the first of equal maxima (tf.argmax leaves ties open)."""
    import tensorflow as tf

    classes = tf.range(tf.shape(probabilities)[1], dtype=tf.int32)
    is_max = tf.equal(probabilities, tf.reduce_max(probabilities, axis=1, keepdims=True))
    return tf.reduce_min(tf.where(is_max, classes, tf.int32.max), axis=1)


def _activate(final, logits):
    """The output layer's activation on ``logits``: what it returns from its pre-activation."""
    from reportgen.keras_import import keras

    if isinstance(final, keras.layers.Dense):
        return _applied(final.activation, f"{final.name}_activation")(logits)
    return final(logits)  # a Softmax or Activation layer holds no weights: called again


def _dense_logits(dense):
    """A Dense layer's pre-activation from its own weights, as its call computes it."""
    from reportgen.keras_import import keras

    def logits(features):
        product = keras.ops.matmul(features, dense.kernel)
        return keras.ops.add(product, dense.bias) if dense.use_bias else product

    return logits


def _applied(function, name: str):
    """``function`` as a layer named ``reportgen_<name>``: keras.ops called on symbolic tensors
    become graph operations with default names ("add", "log") that can clash with the model's
    own layers of that name."""
    from reportgen.keras_import import keras

    class Applied(keras.layers.Layer):
        def call(self, inputs):
            return function(inputs)

    return Applied(name=f"reportgen_{name}")


def _pre_softmax(operation, args, calls: dict[int, tuple]) -> tuple:
    """(logits, (classifier layer, its call's args)) of the output layer; (None, None) when
    it is neither a Dense nor a softmax."""
    from reportgen.keras_import import keras

    if isinstance(operation, keras.layers.Dense):
        return _applied(_dense_logits(operation), f"{operation.name}_logits")(args[0]), \
            (operation, args)
    if _is_softmax(operation):
        producer = calls.get(id(args[0]))
        is_dense = producer is not None and isinstance(producer[0], keras.layers.Dense)
        return args[0], producer if is_dense else None
    return None, None


def normalise_maps(maps: np.ndarray) -> np.ndarray:
    """ReLU, then each map divided by its maximum; a map whose maximum is 0 stays all zeros."""
    positive = np.maximum(maps, 0.0)
    peak = positive.max(axis=(1, 2), keepdims=True) if len(maps) else positive
    return np.divide(positive, peak, out=np.zeros_like(positive), where=peak > 0)


# -- calibration, label quality, hardness -------------------------------------------------------

@dataclass(frozen=True)
class Calibration:
    bins: int
    ece: float
    counts: tuple[int, ...]
    accuracy: tuple[float | None, ...]  # None for an empty bin
    confidence: tuple[float | None, ...]


def calibration(probabilities: np.ndarray, true_labels: np.ndarray,
                bins: int = CALIBRATION_BINS) -> Calibration:
    """Reliability diagram data and expected calibration error (Guo et al. 2017).

    Bin ``i`` holds the images whose top probability is in (i/bins, (i+1)/bins]; the
    first bin also holds 0. ECE is the count-weighted mean of |accuracy - confidence|.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1) if len(probabilities) else np.zeros(0)
    correct = probabilities.argmax(axis=1) == np.asarray(true_labels) if len(probabilities) \
        else np.zeros(0, bool)
    inner_edges = np.arange(1, bins) / bins
    which = np.searchsorted(inner_edges, confidence, side="left")
    counts, accuracies, confidences, ece = [], [], [], 0.0
    for i in range(bins):
        members = which == i
        n = int(members.sum())
        counts.append(n)
        if n == 0:
            accuracies.append(None)
            confidences.append(None)
            continue
        accuracy, mean_confidence = float(correct[members].mean()), float(confidence[members].mean())
        accuracies.append(accuracy)
        confidences.append(mean_confidence)
        ece += n / len(confidence) * abs(accuracy - mean_confidence)
    return Calibration(bins, ece, tuple(counts), tuple(accuracies), tuple(confidences))


def label_quality(probabilities: np.ndarray, given_labels: np.ndarray) -> np.ndarray:
    """The probability the model gives each image's given label (cleanlab's self-confidence)."""
    probabilities = np.asarray(probabilities)
    return probabilities[np.arange(len(probabilities)), np.asarray(given_labels)]


def entropy(probabilities: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats of each row; 0 log 0 counts as 0."""
    p = np.asarray(probabilities, dtype=np.float64)
    terms = np.zeros_like(p)
    np.multiply(p, np.log(p, where=p > 0, out=np.zeros_like(p)), out=terms, where=p > 0)
    return -terms.sum(axis=1)


# -- embedding -------------------------------------------------------------------------------

EMBEDDING_METHODS = ("pca", "tsne")
TSNE_MIN_POINTS = 4  # below, perplexity ((points - 1) / 3) is under one neighbour
TSNE_MAX_PERPLEXITY = 30.0  # scikit-learn's default, where there are enough points
TSNE_INPUT_DIMENSIONS = 50  # scikit-learn's advice: reduce wide features by PCA first
TSNE_RANDOM_STATE = 0


@dataclass(frozen=True)
class Embedding:
    coordinates: np.ndarray  # (n, 2); NaN for an image a t-SNE map leaves out (even_sample)
    explained_variance: tuple[float, float] | None  # PCA: each axis's share of the variance
    method: str = "pca"  # what drew the map: "pca" or "tsne"
    perplexity: float | None = None  # t-SNE's
    fallback: str | None = None  # why PCA drew a map that t-SNE was asked for


def _principal_axes(x: np.ndarray, k: int) -> tuple[np.ndarray, list[float]]:
    """(n, k) coordinates on the first ``k`` principal components of the rows of ``x`` (zeros
    beyond its rank) and each one's share of the total variance.

    Signs are fixed so that each axis's largest-magnitude coordinate is positive (as
    scikit-learn's svd_flip), so the picture does not flip between equal builds.
    """
    coordinates = np.zeros((len(x), k))
    shares = [0.0] * k
    if len(x) >= 2:
        centred = x - x.mean(axis=0)
        # The eigenvectors of the smaller Gram matrix: for 5,000 images of 1,280 features a
        # matrix product and a 1,280-square eigh, several times faster than the thin SVD.
        wide = len(centred) <= centred.shape[1]
        # One BLAS thread: OpenBLAS's spinning threads beside TensorFlow's and the drawing's
        # made this step ten to sixty times slower on a busy 2-core machine
        # (benchmarks/results.md, *Measured by hand*).
        with threadpool_limits(limits=1, user_api="blas"):
            gram = centred @ centred.T if wide else centred.T @ centred
            variances, vectors = np.linalg.eigh(gram)  # ascending
        variances, vectors = np.maximum(variances[::-1], 0.0), vectors[:, ::-1]
        total = float(variances.sum())
        for axis in range(min(k, len(variances))):
            if variances[axis] <= total * 1e-12:  # beyond the rank: rounding noise
                break
            column = (vectors[:, axis] * np.sqrt(variances[axis]) if wide
                      else centred @ vectors[:, axis])
            if column[np.argmax(np.abs(column))] < 0:
                column = -column
            coordinates[:, axis] = column
            shares[axis] = float(variances[axis] / total)
    return coordinates, shares


def _rows(features: np.ndarray) -> np.ndarray:
    """Each image's features as one float64 row (an empty set too)."""
    x = np.asarray(features, dtype=np.float64)
    return x.reshape(len(x), math.prod(x.shape[1:]))


def pca_2d(features: np.ndarray) -> Embedding:
    """The first two principal components of the centred features."""
    x = _rows(features)
    coordinates, shares = _principal_axes(x, 2)
    return Embedding(coordinates, (shares[0], shares[1]))


def require_tsne() -> None:
    """Raise a UserError naming the extra when scikit-learn, which draws t-SNE maps, is missing."""
    try:
        import sklearn.manifold  # noqa: F401
    except ImportError:
        raise UserError("--embedding tsne needs scikit-learn, which is not installed: "
                        "pip install 'reportgen[tsne]'") from None


def tsne_perplexity(n_points: int) -> float:
    """scikit-learn's default 30, or (points - 1) / 3 below 91 points (it meets 30 there):
    perplexity must stay well under the number of points."""
    return min(TSNE_MAX_PERPLEXITY, (n_points - 1) / 3)


def tsne_2d(features: np.ndarray) -> Embedding:
    """t-SNE (scikit-learn, Barnes-Hut) of at least ``TSNE_MIN_POINTS`` rows; deterministic:
    PCA initialisation and a fixed random state. Features wider than
    ``TSNE_INPUT_DIMENSIONS`` are first reduced to that many principal components."""
    require_tsne()
    from sklearn.manifold import TSNE

    x = _rows(features)
    if x.shape[1] > TSNE_INPUT_DIMENSIONS:
        x, _ = _principal_axes(x, TSNE_INPUT_DIMENSIONS)
    perplexity = tsne_perplexity(len(x))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                random_state=TSNE_RANDOM_STATE)
    return Embedding(tsne.fit_transform(x).astype(np.float64), None, "tsne", perplexity)


def embed_2d(features: np.ndarray, labels: np.ndarray, method: str = "pca") -> Embedding:
    """The embedding map's coordinates for every image, by ``method`` (EMBEDDING_METHODS).

    PCA projects every image. t-SNE costs far more per point, so it maps only the images the
    map shows (``even_sample``) and leaves the others NaN. Under ``TSNE_MIN_POINTS`` images,
    or when the features do not vary, PCA draws the map instead and ``fallback`` says why.
    """
    if method == "pca":
        return pca_2d(features)
    if method != "tsne":
        raise ValueError(f"unknown embedding method {method!r}; one of {EMBEDDING_METHODS}")
    shown = even_sample(labels)
    sample = _rows(features)[shown]
    fallback = None
    if len(shown) < TSNE_MIN_POINTS:
        fallback = f"t-SNE needs at least {TSNE_MIN_POINTS} images and there are {len(shown)}"
    elif not np.ptp(sample, axis=0).any():  # t-SNE's PCA start would divide by zero
        fallback = "every image has the same features, which t-SNE cannot spread out"
    if fallback is not None:
        pca = pca_2d(features)
        return Embedding(pca.coordinates, pca.explained_variance,
                         fallback=f"{fallback}, so PCA drew this map")
    mapped = tsne_2d(sample)
    coordinates = np.full((len(labels), 2), np.nan)
    coordinates[shown] = mapped.coordinates
    return Embedding(coordinates, None, "tsne", mapped.perplexity)


def even_sample(labels: np.ndarray, max_points: int = EMBEDDING_MAX_POINTS) -> np.ndarray:
    """Indices of at most ``max_points`` images: all of them, or per class an evenly spaced
    share proportional to the class's size (at least one image per non-empty class)."""
    labels = np.asarray(labels)
    if len(labels) <= max_points:
        return np.arange(len(labels))
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        keep = max(1, len(members) * max_points // len(labels))
        chosen.append(members[np.linspace(0, len(members) - 1, keep).round().astype(int)])
    return np.sort(np.concatenate(chosen))


def mean_maps(maps: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """(n_groups, h, w): the mean map of each group; zeros for an empty group."""
    means = np.zeros((n_groups, *maps.shape[1:]), dtype=np.float32)
    for group in np.unique(groups):  # only the groups that occur: never classes² work
        means[group] = maps[groups == group].mean(axis=0)
    return means


def cell_mean_maps(maps: np.ndarray, true_labels: np.ndarray,
                   predicted: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
    """{(true, predicted): mean map} for the confusion cells that hold images."""
    cells = sorted(set(zip(true_labels.tolist(), predicted.tolist(), strict=True)))
    return {(t, p): maps[(true_labels == t) & (predicted == p)].mean(axis=0).astype(np.float32)
            for t, p in cells}


def confusion_channels(channel_means: np.ndarray, true_labels: np.ndarray,
                       predicted: np.ndarray, min_images: int = 3,
                       top: int = 3) -> tuple[tuple[int, int, tuple[tuple[int, float], ...]], ...]:
    """For each off-diagonal cell with at least ``min_images`` images: (true, predicted,
    ((channel, excess), ...)), the ``top`` channels whose mean activation on the cell's images
    most exceeds their mean on the correctly classified images of the true class (excess > 0)."""
    cells = []
    counts = collections.Counter(zip(true_labels.tolist(), predicted.tolist(), strict=True))
    # Only the cells that hold enough images: never classes² work.
    for (t, p), count in sorted(counts.items()):
        right = (true_labels == t) & (predicted == t)
        if p == t or count < min_images or not right.any():
            continue
        baseline = channel_means[right].mean(axis=0)
        members = (true_labels == t) & (predicted == p)
        excess = channel_means[members].mean(axis=0) - baseline
        order = sorted(range(len(excess)), key=lambda c: (-excess[c], c))[:top]
        cells.append((t, p, tuple((c, float(excess[c])) for c in order if excess[c] > 0)))
    return tuple(cells)


# -- the stage: every test image, batch by batch -------------------------------------------------

@dataclass(frozen=True)
class Explanations:
    cam_layer: str  # the feature-map layer's path, as in feature_layers
    cam_target: str  # "logit" (or "log_probability" when the model has no reachable logit)
    cam_maps: np.ndarray  # (n, h, w) for each image's predicted class
    cam_true_maps: np.ndarray  # (n, h, w) for each image's true class
    label_quality: np.ndarray  # (n,)
    entropy: np.ndarray  # (n,)
    embedding_layer: str
    embedding: Embedding
    calibration: Calibration
    cell_means: dict  # {(true, predicted): (h, w)} mean predicted-class map of each non-empty cell
    class_means: np.ndarray  # (classes, h, w): mean true-class map over each true class
    confusion_channels: tuple  # confusion_channels(...) on the CAM layer


def summarise(cam: GradCam, cam_maps: dict, true_labels: np.ndarray,
              probabilities: np.ndarray, embedding_method: str = "pca") -> Explanations:
    """The explanations of the test set from every image's Grad-CAM (``GradCam.forward``'s
    arrays, stacked in test-set order: predicted_maps, true_maps, features, channel_means);
    ``embedding_method`` is ``embed_2d``'s."""
    n_classes = probabilities.shape[1]
    predicted = probabilities.argmax(axis=1)
    maps, true_maps = cam_maps["predicted_maps"], cam_maps["true_maps"]
    return Explanations(
        cam_layer=cam.layer.path, cam_target=cam.target, cam_maps=maps, cam_true_maps=true_maps,
        label_quality=label_quality(probabilities, true_labels),
        entropy=entropy(probabilities),
        embedding_layer=cam.embedding_layer,
        embedding=embed_2d(cam_maps["features"], true_labels, embedding_method),
        calibration=calibration(probabilities, true_labels),
        cell_means=cell_mean_maps(maps, true_labels, predicted),
        class_means=mean_maps(true_maps, true_labels, n_classes),
        confusion_channels=confusion_channels(cam_maps["channel_means"], true_labels, predicted))
