"""The output contract: how a classifier's output becomes one probability per class.

Most classifiers end in a softmax, and their output is read as it is. The Keras guides
also build two others, which a report must not read as probabilities:

- **logits**: the last layer has no activation (``Dense(n, activation=None)`` with a
  ``from_logits=True`` loss): a softmax gives the probabilities.
- **one unit** (a binary classifier, ``label_mode="binary"``): ``Dense(1, "sigmoid")``
  gives the probability of class 1, ``Dense(1)`` its logit. The report has two classes,
  with probabilities ``[1 - p, p]`` and, for Grad-CAM, logits ``[0, z]`` (whose softmax is
  that ``[1 - p, p]``).

The same keras.ops run in the traced Grad-CAM step (``graph``) and on the probe's NumPy
output (``to_probabilities``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reportgen.activations import image_classifier, is_graph_model
from reportgen.errors import UserError
from reportgen.keras_import import keras

KINDS = ("probabilities", "logits", "sigmoid", "logit")


@dataclass(frozen=True)
class OutputContract:
    kind: str  # one of KINDS
    units: int  # the output's width: 1 for a binary classifier

    @property
    def n_classes(self) -> int:
        return 2 if self.units == 1 else self.units

    @property
    def description(self) -> str:
        return {"probabilities": "class probabilities",
                "logits": "logits (its last layer has no activation): a softmax gives the "
                          "probabilities",
                "sigmoid": "one sigmoid unit, the probability of the second class",
                "logit": "one unit without activation, the logit of the second class"}[self.kind]

    def probabilities(self, outputs):
        """keras.ops from the model's output to (n, classes) probabilities."""
        if self.kind == "logits":
            return keras.ops.softmax(outputs, axis=-1)
        if self.kind in ("sigmoid", "logit"):
            p = keras.ops.sigmoid(outputs) if self.kind == "logit" else outputs
            return keras.ops.concatenate([1 - p, p], axis=-1)
        return outputs

    def logits(self, logits):
        """keras.ops from the output layer's pre-activation to one logit per class."""
        if self.units == 1:
            return keras.ops.concatenate([keras.ops.zeros_like(logits), logits], axis=-1)
        return logits

    def to_probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """The same, on a batch of the model's NumPy output."""
        if self.kind == "probabilities":
            return outputs
        if len(outputs) == 0:
            return np.zeros((0, self.n_classes), np.float32)
        return np.asarray(keras.ops.convert_to_numpy(self.probabilities(outputs)), np.float32)


def output_layer(model):
    """The layer that makes the model's output, looking into nested models."""
    operation = model
    while is_graph_model(operation):
        if isinstance(operation, keras.Sequential):
            operation = operation.layers[-1]
        else:
            operation = operation.outputs[0]._keras_history.operation
    return operation


def output_contract(model) -> OutputContract:
    """What the model's output is, read from its last layer's activation."""
    _, output = image_classifier(model)  # one image input, one (batch, classes) output
    if output.shape[1] is None:
        raise UserError(f"the model's output shape {tuple(output.shape)} is not (batch, classes)")
    units = int(output.shape[1])
    final = output_layer(model)
    activation = getattr(getattr(final, "activation", None), "__name__", None)
    if isinstance(final, keras.layers.Softmax):
        activation = "softmax"
    if units == 1:
        if activation == "sigmoid":
            return OutputContract("sigmoid", 1)
        if activation == "linear":
            return OutputContract("logit", 1)
        raise UserError(f"the model has one output unit whose activation is {activation!r}: "
                        "reportgen reads one unit as a binary classifier's sigmoid or logit")
    if activation == "linear" and isinstance(final, keras.layers.Dense):
        return OutputContract("logits", units)
    return OutputContract("probabilities", units)


__all__ = ["OutputContract", "output_contract", "output_layer"]
