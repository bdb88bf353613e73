"""A model reportgen did not train: functional, grayscale, nested, batch-norm, residual Add,
with its history as a CSVLogger file; the report's numbers against an independent computation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from reportgen.keras_import import keras

layers = keras.layers
CLASSES = ("circles", "squares", "triangles")


def residual_block() -> keras.Model:
    block_input = keras.Input((12, 12, 8), name="block_input")
    x = layers.Conv2D(8, 3, padding="same", name="conv")(block_input)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.Add(name="add")([x, block_input])
    return keras.Model(block_input, layers.Activation("relu", name="relu")(x), name="res")


def foreign_model() -> keras.Model:
    keras.utils.set_random_seed(7)
    image = keras.Input((24, 24, 1), name="scan")
    x = layers.Conv2D(8, 3, activation="relu", padding="same", name="stem")(image)
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = residual_block()(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(image, layers.Dense(len(CLASSES), activation="softmax", name="out")(x),
                        name="foreign")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """A grayscale 32x32 dataset (resized to 24x24 by reportgen), a trained model, its CSV log."""
    from reportgen import shapes
    from reportgen.batches import load_split
    from reportgen.data import scan_dataset
    from reportgen.decode import InputSpec

    root = tmp_path_factory.mktemp("foreign")
    shapes.generate(root / "colour", per_class=10, seed=5, size=32)
    for path in sorted((root / "colour").rglob("*.png")):
        target = root / "scans" / path.relative_to(root / "colour")
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.open(path).convert("L").save(target)
    dataset = scan_dataset(root / "scans", require_train=True)
    spec = InputSpec(24, 24, 1)
    # Trained on [0, 1] without a Rescaling layer: what reportgen's guess ("unit") assumes.
    x_train, y_train = load_split(dataset.train, spec)
    x_test, y_test = load_split(dataset.test, spec)
    x_train, x_test = x_train / np.float32(255), x_test / np.float32(255)
    model = foreign_model()
    csv_path = root / "training.csv"
    model.fit(x_train, y_train, epochs=3, batch_size=8, validation_data=(x_test, y_test),
              callbacks=[keras.callbacks.CSVLogger(str(csv_path))], verbose=0)
    model.save(root / "foreign.keras")
    return root, x_test, y_test, model


@pytest.mark.slow
def test_report_numbers_match_an_independent_computation(foreign):
    from click.testing import CliRunner

    from reportgen.cli import main

    root, x_test, y_test, model = foreign
    result = CliRunner().invoke(main, [
        "build", "--data", str(root / "scans"), "--model", str(root / "foreign.keras"),
        "--history", str(root / "training.csv"), "--out", str(root / "site"), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads((root / "site" / "report.json").read_text())

    probabilities = model.predict(x_test, verbose=0)
    predicted = probabilities.argmax(axis=1)
    assert [image["true_label"] for image in report["images"]] == y_test.tolist()
    assert [image["predicted_label"] for image in report["images"]] == predicted.tolist()
    np.testing.assert_allclose([image["probabilities"] for image in report["images"]],
                               probabilities, atol=1e-5)
    confusion = np.zeros((3, 3), int)
    np.add.at(confusion, (y_test, predicted), 1)
    assert report["metrics"]["confusion_matrix"] == confusion.tolist()
    assert report["metrics"]["accuracy"] == pytest.approx(float((predicted == y_test).mean()))

    paths = [layer["path"] for layer in report["feature_layers"]]
    assert paths == ["stem", "pool", "res/conv", "res/bn", "res/add", "res/relu"]
    assert report["model"]["input_shape"] == [24, 24, 1]
    history = report["history"]
    csv_rows = (root / "training.csv").read_text().splitlines()[1:]
    assert history["epochs"] == len(csv_rows) == 3
    assert history["val_accuracy"] == pytest.approx(
        [float(row.split(",")[3]) for row in csv_rows])

    # the dead channels and top images of res/relu, computed directly from the model
    inner = model.get_layer("res")
    after_pool = keras.Model(model.inputs[0], model.get_layer("pool").output)(x_test, training=False)
    maps = np.asarray(inner(after_pool, training=False))
    stats = report["feature_layers"][5]
    alive = (maps > 0).any(axis=(1, 2))
    assert [c["dead"] for c in stats["channel_stats"]] == (~alive.any(axis=0)).tolist()
    test_paths = [image["path"] for image in report["images"]]
    for channel in stats["channel_stats"]:
        scores = maps[..., channel["index"]].max(axis=(1, 2))
        expected = sorted(range(len(test_paths)), key=lambda i: (-scores[i], test_paths[i]))[:9]
        assert [t["path"] for t in channel["top_images"]] == [test_paths[i] for i in expected]


@pytest.mark.slow
def test_explanations_match_independent_computations(foreign):
    """Every image's Grad-CAM against a one-image tape on the model, the ECE and the PCA."""
    import tensorflow as tf
    from click.testing import CliRunner

    from reportgen.cli import main

    root, x_test, y_test, model = foreign
    site = root / "site-explained"
    result = CliRunner().invoke(main, [
        "build", "--data", str(root / "scans"), "--model", str(root / "foreign.keras"),
        "--out", str(site), "--jobs", "1", "--layers", "res/*"])
    assert result.exit_code == 0, result.output
    report = json.loads((site / "report.json").read_text())
    assert report["explanations"]["cam_layer"] == "res/relu"
    assert report["explanations"]["cam_target"] == "logit"

    # the nested block's output is res/relu; its logits are the Dense's input times its kernel
    gap = model.get_layer("gap")
    grad_model = keras.Model(model.inputs[0], [gap.input, gap.output])
    kernel, bias = model.get_layer("out").get_weights()
    for image, entry in zip(x_test, report["images"], strict=True):
        targets = [("cam", entry["predicted_label"])]
        if entry["true_label"] != entry["predicted_label"]:
            targets.append(("cam_true", entry["true_label"]))
        assert ("cam_true" in entry) == (len(targets) == 2)
        for key, label in targets:
            with tf.GradientTape() as tape:
                maps, pooled = grad_model(image[np.newaxis])
                logit = tf.matmul(pooled, kernel[:, label:label + 1])[0, 0] + bias[label]
            weights = tf.reduce_mean(tape.gradient(logit, maps), axis=(0, 1, 2)).numpy()
            heatmap = np.maximum(np.tensordot(maps[0].numpy(), weights, axes=1), 0)
            heatmap = heatmap / heatmap.max() if heatmap.max() > 0 else heatmap
            assert entry[key]["class"] == label
            np.testing.assert_allclose(entry[key]["map"], heatmap, atol=2e-3)

    probabilities = np.array([entry["probabilities"] for entry in report["images"]])
    top = probabilities.max(axis=1)
    right = probabilities.argmax(axis=1) == y_test
    ece = 0.0
    for low in np.arange(10) / 10:
        members = (top > low) & (top <= low + 0.1) if low > 0 else top <= 0.1
        if members.any():
            ece += members.mean() * abs(right[members].mean() - top[members].mean())
    assert report["metrics"]["calibration"]["ece"] == pytest.approx(ece, abs=1e-6)
    np.testing.assert_allclose([entry["label_quality"] for entry in report["images"]],
                               probabilities[np.arange(len(y_test)), y_test], atol=1e-7)

    features = np.asarray(grad_model(x_test)[1], dtype=np.float64)
    centred = features - features.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    embedding = np.array([entry["embedding"] for entry in report["images"]])
    for axis in range(2):
        assert abs(np.corrcoef(centred @ vt[axis], embedding[:, axis])[0, 1]) >= 0.999
