"""The activations stage: one probe model that returns every feature map with the probabilities.

A layer's ``.output`` is useless for this in Keras 3: inside a nested model it is
wired to the nested model's own inputs, and a Sequential model may not even have
an ``input``. So the probe replays the model's graph on a fresh ``keras.Input``,
calling the original layer objects (so it shares their weights), and keeps the
symbolic output of every layer whose output is a feature map (rank 4).

Each nested model is replayed into a probe of its own, which the outer replay
calls in its place: a single flat graph would fail whenever two nested models
both contain a layer called, say, "conv", since Keras wants unique operation
names within one graph.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import numpy as np

# Keras has no public name for "a model built from a graph"; we need it to replay one.
from reportgen.errors import UserError
from reportgen.keras_import import keras
from reportgen.plan import select_by_patterns

# isort: split
# After the quiet import above, so TensorFlow's start-up noise stays silenced.
from keras.src.models.functional import Functional


@dataclass(frozen=True)
class FeatureLayer:
    path: str  # "conv2d"; "block2/conv" inside a nested model; "name@2" for a second call
    type_name: str  # the layer's class name, e.g. "Conv2D"
    output_shape: tuple[int, int, int]  # (height, width, channels) per image
    # Paths of the feature-map layers whose outputs feed this one (through any non-feature-map
    # operations in between); empty for a layer fed by the image. The graph the layer plan reads.
    inputs: tuple[str, ...] = field(default=(), compare=False)


# The image input's stand-in among a nested model's sources, replaced by the outer sources.
_INPUT = ""


@dataclass(frozen=True)
class _Tap:
    """One call of a feature-map layer during a replay, with its symbolic output."""

    order: tuple[int, ...]  # (position in its model's layers, call number) per nesting level
    path: str
    type_name: str
    output: keras.KerasTensor
    inputs: frozenset[str] = frozenset()  # tap paths (or _INPUT) that feed this one
    # What the layer call returned, as ``on_call`` saw it: ``output`` itself, except for a
    # tap inside a nested model, whose ``output`` is the nested model's output in this graph.
    made: keras.KerasTensor | None = None


@dataclass(frozen=True)
class _Replay:
    outputs: list[keras.KerasTensor]  # the replayed model's outputs, flattened
    taps: list[_Tap]  # in model order
    output_sources: list[frozenset[str]] = field(default_factory=list)  # per output


@dataclass(frozen=True)
class _NestedProbe:
    """A nested model rebuilt to output [*its outputs, *its taps' outputs]."""

    model: keras.Model
    n_outputs: int
    taps: list[_Tap]
    output_sources: list[frozenset[str]]


def _unpack_singleton(tensors: list):
    """A one-input model (a Sequential above all) wants a tensor, not a list of one."""
    return tensors[0] if len(tensors) == 1 else tensors


def is_graph_model(operation) -> bool:
    """A Sequential or functional model: one reportgen can look inside."""
    return isinstance(operation, keras.Sequential | Functional)


def _is_feature_map(outputs) -> bool:
    return isinstance(outputs, keras.KerasTensor) and len(outputs.shape) == 4


def _replay(model: keras.Model, inputs, nested_probes: dict[int, _NestedProbe],
            on_call: Callable | None = None) -> _Replay:
    """Call ``model``'s layers on symbolic ``inputs``; nested models go through their probes.

    ``on_call(operation, args, outputs)``, if given, sees every layer call, nested ones too,
    and may return a tensor to use in place of ``outputs`` (reportgen.explain replaces the
    final softmax by its input, the logits).
    """
    positions = {id(layer): i for i, layer in enumerate(model.layers)}
    calls: collections.Counter[int] = collections.Counter()
    taps: list[_Tap] = []
    # Which taps each symbolic tensor depends on (through non-tap operations), by tensor id.
    sources: dict[int, frozenset[str]] = {id(x): frozenset({_INPUT})
                                          for x in keras.tree.flatten(inputs)}

    def sources_of(*values) -> frozenset[str]:
        return frozenset().union(*(sources.get(id(x), frozenset())
                                   for x in keras.tree.flatten(values)))

    def call(operation, *args, **kwargs):
        calls[id(operation)] += 1
        n_call = calls[id(operation)]
        path = operation.name if n_call == 1 else f"{operation.name}@{n_call}"
        # Operations that are not layers (keras.ops in a functional graph) sort last.
        order = (positions.get(id(operation), len(positions)), n_call)
        fed_by = sources_of(args, kwargs)
        if is_graph_model(operation):
            # Call-time kwargs (training=, mask=) are dropped: the probe only ever
            # runs in inference mode, which Keras passes down to nested layers.
            nested = _nested_probe(operation, nested_probes, on_call)
            flat = keras.tree.flatten(nested.model(_unpack_singleton(keras.tree.flatten(args))))

            def outer(inner: frozenset[str]) -> frozenset[str]:
                named = frozenset(f"{path}/{source}" for source in inner if source != _INPUT)
                return named | fed_by if _INPUT in inner else named

            for tap, output in zip(nested.taps, flat[nested.n_outputs:], strict=True):
                taps.append(_Tap(order + tap.order, f"{path}/{tap.path}", tap.type_name, output,
                                 outer(tap.inputs), tap.made))
            for output, inner in zip(flat[: nested.n_outputs], nested.output_sources, strict=True):
                sources[id(output)] = outer(inner)
            return _unpack_singleton(flat[: nested.n_outputs])
        outputs = made = operation(*args, **kwargs)
        if on_call is not None:
            replacement = on_call(operation, args, outputs)
            outputs = outputs if replacement is None else replacement
        if isinstance(operation, keras.Layer) and _is_feature_map(outputs):
            taps.append(_Tap(order, path, type(operation).__name__, outputs, fed_by, made))
            sources[id(outputs)] = frozenset({path})
        else:
            for output in keras.tree.flatten(outputs):
                sources[id(output)] = fed_by
        return outputs

    if isinstance(model, keras.Sequential):
        outputs = inputs
        for layer in model.layers:
            outputs = call(layer, outputs)
    else:
        # Private, but it is what Functional.call and keras.models.clone_model use to
        # walk the graph node by node; operation_fn maps each operation to a callable.
        outputs = model._run_through_graph(
            inputs, operation_fn=lambda operation: lambda *a, **k: call(operation, *a, **k)
        )
    flat_outputs = keras.tree.flatten(outputs)
    return _Replay(flat_outputs, sorted(taps, key=lambda tap: tap.order),
                   [sources_of(output) for output in flat_outputs])


def _fresh_inputs(model: keras.Model) -> list[keras.KerasTensor]:
    return [keras.Input(batch_shape=x.shape, dtype=x.dtype) for x in model.inputs]


def _nested_probe(model: keras.Model, nested_probes: dict[int, _NestedProbe],
                  on_call: Callable | None = None) -> _NestedProbe:
    """The probe of a nested model, built once even when the model is called twice."""
    if id(model) not in nested_probes:
        inputs = _unpack_singleton(_fresh_inputs(model))
        replay = _replay(model, inputs, nested_probes, on_call)
        outputs = [*replay.outputs, *(tap.output for tap in replay.taps)]
        # Named like the model it replaces, so names stay unique in the outer graph.
        probe = keras.Model(inputs, outputs, name=model.name)
        nested_probes[id(model)] = _NestedProbe(probe, len(replay.outputs), replay.taps,
                                                replay.output_sources)
    return nested_probes[id(model)]


def image_classifier(model: keras.Model) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """The model's one image input and one class output, after checking it is an image classifier:
    a Sequential or functional model, (batch, height, width, channels) in, (batch, classes) out.

    The one place a model's inputs and outputs are checked; anything else that reads them
    (``reportgen.inputs.input_spec``, the probe, Grad-CAM) goes through here.
    """
    if not is_graph_model(model):
        raise UserError(f"model '{model.name}' is a subclassed {type(model).__name__}; "
                        "reportgen can only look inside Sequential and functional Keras models")
    try:
        inputs, outputs = model.inputs, model.outputs
    except AttributeError:
        raise UserError(f"model '{model.name}' has no input shape yet; give it a keras.Input(...) "
                        "first layer or call model.build(...) before saving it") from None
    if len(inputs) != 1 or len(outputs) != 1:
        raise UserError("reportgen needs an image classifier with one input and one output; "
                        f"this model has {len(inputs)} inputs and {len(outputs)} outputs")
    image_shape = tuple(inputs[0].shape)
    if len(image_shape) != 4 or None in image_shape[1:]:
        raise UserError(f"the model's input shape {image_shape} is not "
                        "(batch, height, width, channels) with a fixed image size")
    if len(outputs[0].shape) != 2:
        raise UserError(f"the model's output shape {tuple(outputs[0].shape)} is not "
                        "(batch, classes)")
    return inputs[0], outputs[0]


def _image_input(model: keras.Model) -> keras.KerasTensor:
    """A fresh input like the model's one image input, after checking it is a classifier."""
    image_classifier(model)
    return _fresh_inputs(model)[0]


def _select(taps: list[_Tap], patterns: Sequence[str] | None) -> list[_Tap]:
    """The taps whose path matches any of the glob ``patterns`` (all of them when none)."""
    if not patterns:
        return taps
    chosen = set(select_by_patterns([tap.path for tap in taps], patterns))
    return [tap for tap in taps if tap.path in chosen]


def _feature_layer(tap: _Tap) -> FeatureLayer:
    return FeatureLayer(tap.path, tap.type_name, tuple(int(n) for n in tap.output.shape[1:]),
                        tuple(sorted(tap.inputs - {_INPUT})))


class ActivationProbe:
    """The model's probabilities and its feature maps, from one forward pass per batch.

    ``all_layers`` is every feature-map layer with the graph between them; ``layers`` the
    ones the probe returns: those matching ``patterns``, or, when ``select`` is given, the
    paths it picks from ``all_layers`` (the layer plan).
    """

    def __init__(self, model: keras.Model, patterns: Sequence[str] | None = None,
                 select: Callable[[tuple[FeatureLayer, ...]], Sequence[str]] | None = None):
        image_input = _image_input(model)
        replay = _replay(model, image_input, nested_probes={})
        self.all_layers: tuple[FeatureLayer, ...] = tuple(_feature_layer(t) for t in replay.taps)
        if select is not None:
            chosen = set(select(self.all_layers))
            taps = [tap for tap in replay.taps if tap.path in chosen]
        else:
            taps = _select(replay.taps, patterns)
        self.layers: tuple[FeatureLayer, ...] = tuple(_feature_layer(tap) for tap in taps)
        self._image_shape = tuple(image_input.shape[1:])
        self._image_dtype = image_input.dtype
        self._n_classes = int(replay.outputs[0].shape[1])
        self._probe = keras.Model(image_input, [replay.outputs[0], *(tap.output for tap in taps)],
                                  name=f"{model.name}_probe")

    def layer_model(self, index: int) -> keras.Model:
        """A model from the image to the feature map of ``layers[index]`` alone, sharing the
        model's weights (``reportgen.featviz`` takes gradients through it)."""
        return keras.Model(self._probe.inputs[0], self._probe.outputs[1 + index],
                           name=f"{self._probe.name}_{index}")

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """One batched forward pass in inference mode: (probabilities, one map per layer)."""
        images = np.asarray(images, dtype=self._image_dtype)
        if images.ndim != 4 or images.shape[1:] != self._image_shape:
            raise ValueError(f"expected images of shape (n, *{self._image_shape}), "
                             f"got {images.shape}")
        if len(images) == 0:
            return (np.zeros((0, self._n_classes), np.float32),
                    [np.zeros((0, *layer.output_shape), np.float32) for layer in self.layers])
        # predict_on_batch runs a traced tf.function in inference mode: after a one-off
        # trace, faster per batch than an eager probe(images, training=False)
        # (benchmarks/results.md, *Measured by hand*).
        outputs = keras.tree.flatten(self._probe.predict_on_batch(images))
        probabilities, *feature_maps = (np.asarray(x, dtype=np.float32) for x in outputs)
        return probabilities, feature_maps


class _HasImages(Protocol):
    images: np.ndarray


B = TypeVar("B", bound=_HasImages)


def stream(probe: ActivationProbe, batches: Iterable[B],
           prepare: Callable[[np.ndarray], np.ndarray] | None = None
           ) -> Iterator[tuple[B, np.ndarray, list[np.ndarray]]]:
    """For each batch, yield (batch, probabilities, feature_maps) before computing the next.

    ``prepare`` turns a batch's pixels into the model's input (the input contract).
    """
    for batch in batches:
        probabilities, feature_maps = probe(prepare(batch.images) if prepare else batch.images)
        yield batch, probabilities, feature_maps
