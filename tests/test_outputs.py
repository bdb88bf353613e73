"""Logits and one-unit (binary) outputs, as the Keras guides build them, read as probabilities.

Every number is checked against ``model.predict`` over the same arrays, with the softmax or
sigmoid computed here in NumPy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

SHAPES = Path(__file__).resolve().parent.parent / "data" / "shapes"


def _keras():
    from reportgen.keras_import import keras

    return keras


def _guide_model(units: int, activation: str | None, size: int = 28):
    """keras-io's "Image classification from scratch" make_model, small: Rescaling, a
    residual SeparableConv2D block, GlobalAveragePooling, Dropout, Dense(units, activation)."""
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input((size, size, 3))
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(16, 3, strides=2, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    previous = x
    x = layers.SeparableConv2D(32, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    residual = layers.Conv2D(32, 1, strides=2, padding="same")(previous)
    x = layers.add([x, residual])
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.25)(x)
    outputs = layers.Dense(units, activation=activation)(x)
    return keras.Model(inputs, outputs)


def _pixels(class_names, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    keras = _keras()
    dataset = keras.utils.image_dataset_from_directory(
        SHAPES / "test_set", image_size=(size, size), class_names=list(class_names),
        shuffle=False, batch_size=32, verbose=False)
    xs, ys = zip(*((x.numpy(), y.numpy()) for x, y in dataset), strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z.astype(np.float64)))


def _report(site: Path) -> dict:
    return json.loads((site / "report.json").read_text())


@pytest.mark.parametrize("units, activation, kind", [
    (3, "softmax", "probabilities"), (3, None, "logits"), (1, "sigmoid", "sigmoid"),
    (1, None, "logit")])
def test_the_output_contract_reads_the_last_layer(units, activation, kind):
    from reportgen.model import n_classes
    from reportgen.outputs import output_contract

    model = _guide_model(units, activation)
    assert output_contract(model).kind == kind
    assert n_classes(model) == max(units, 2)


def test_one_unit_with_another_activation_is_a_clear_error():
    from reportgen import UserError
    from reportgen.outputs import output_contract

    with pytest.raises(UserError, match="one output unit whose activation is 'relu'"):
        output_contract(_guide_model(1, "relu"))


@pytest.mark.slow
@pytest.mark.parametrize("explain", [True, False])
def test_logits_become_softmax_probabilities(tmp_path, explain):
    import reportgen

    keras = _keras()
    keras.utils.set_random_seed(3)
    model = _guide_model(3, None)
    x, y = _pixels(("circles", "squares", "triangles"))
    result = reportgen.build(model, (x, y), out=tmp_path / "site", explain=explain, jobs=1,
                             verbose=False, class_names=("circles", "squares", "triangles"))
    logits = model.predict(x, verbose=0).astype(np.float64)
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    got = np.array([image["probabilities"] for image in _report(tmp_path / "site")["images"]])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert result.accuracy == pytest.approx(np.mean(logits.argmax(axis=1) == y))


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["sigmoid", None])
def test_a_binary_classifier_has_two_classes(tmp_path, activation):
    """label_mode="binary" data into Dense(1) (sigmoid, or logits as keras-io's guide has it):
    class 1's probability is the model's p, Grad-CAM included."""
    import reportgen

    keras = _keras()
    keras.utils.set_random_seed(4)
    model = _guide_model(1, activation)
    names = ("circles", "squares")
    x, y = _pixels(names)
    binary = y.astype(np.float32)[:, None]  # what label_mode="binary" yields
    result = reportgen.build(model, (x, binary), out=tmp_path / "site", jobs=1, verbose=False,
                             class_names=names)
    output = model.predict(x, verbose=0)[:, 0].astype(np.float64)
    p = output if activation == "sigmoid" else _sigmoid(output)
    report = _report(tmp_path / "site")
    got = np.array([image["probabilities"] for image in report["images"]])
    np.testing.assert_allclose(got, np.column_stack([1 - p, p]), atol=1e-5)
    predicted = (p > 0.5).astype(int)
    confusion = np.zeros((2, 2), int)
    np.add.at(confusion, (y, predicted), 1)
    assert result.confusion == tuple(map(tuple, confusion.tolist()))
    assert all("cam" in image for image in report["images"])
