"""The Python API and the training callback, as the Keras guides would use them.

Every number is checked against an independent computation: ``model.predict`` over the same
data, collected here, and ``fit``'s own ``History``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

SHAPES = Path(__file__).resolve().parent.parent / "data" / "shapes"


def _keras():
    from reportgen.keras_import import keras

    return keras


def _report(site: Path) -> dict:
    return json.loads((site / "report.json").read_text())


def _collected(dataset) -> tuple[np.ndarray, np.ndarray]:
    """Every (image, label) of one pass over ``dataset``, as a user would gather them."""
    xs, ys = [], []
    for x, y in dataset:
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def _confusion(true: np.ndarray, predicted: np.ndarray, n: int) -> list[list[int]]:
    matrix = np.zeros((n, n), np.int64)
    for t, p in zip(true, predicted, strict=True):
        matrix[t, p] += 1
    return matrix.tolist()


def _report_probabilities(report: dict) -> tuple[np.ndarray, np.ndarray]:
    true = np.array([image["true_label"] for image in report["images"]])
    probabilities = np.array([image["probabilities"] for image in report["images"]])
    return true, probabilities


def _by_label_and_scores(true: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Rows (label, probabilities...) in a fixed order: a shuffled dataset's images come in
    another order on each pass, and these rows identify them."""
    rows = np.column_stack([true, np.round(probabilities, 4)])
    return rows[np.lexsort(rows.T[::-1])]


@pytest.fixture(scope="module")
def guide_run(tmp_path_factory):
    """The Keras guide's pipeline: shuffled image_dataset_from_directory, Rescaling inside the
    model, EarlyStopping restoring the best weights, and the report callback after it."""
    from reportgen.keras import ReportCallback

    keras = _keras()
    keras.utils.set_random_seed(0)
    out = tmp_path_factory.mktemp("guide") / "site"
    train_ds = keras.utils.image_dataset_from_directory(
        SHAPES / "training_set", image_size=(28, 28), color_mode="grayscale", batch_size=16,
        seed=1337, verbose=False)
    test_ds = keras.utils.image_dataset_from_directory(
        SHAPES / "test_set", image_size=(28, 28), color_mode="grayscale", batch_size=16,
        seed=1337, verbose=False)
    class_names = tuple(train_ds.class_names)
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    for filters in (16, 32):
        x = keras.layers.Conv2D(filters, 3, activation="relu", padding="same")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs, name="guide_cnn")
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    callback = ReportCallback(test_ds, out, jobs=1, verbose=False)
    stopping = keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=3,
                                             restore_best_weights=True)
    with warnings.catch_warnings():  # Keras 3.15 warns of its own default shuffle=True
        warnings.filterwarnings("ignore", "`shuffle=True` was passed", UserWarning)
        history = model.fit(train_ds, validation_data=test_ds, epochs=12,
                            callbacks=[stopping, callback], verbose=0)
    return model, test_ds, history, callback, out, class_names


@pytest.mark.slow
def test_the_callbacks_report_equals_model_predict(guide_run):
    model, test_ds, _, callback, out, class_names = guide_run
    report = _report(out)
    x, y = _collected(test_ds)
    predicted = model.predict(x, verbose=0)
    assert report["classes"] == list(class_names)  # the dataset's own class names
    assert len(report["images"]) == len(y) == 90
    assert report["metrics"]["confusion_matrix"] == _confusion(y, predicted.argmax(axis=1), 3)
    assert report["metrics"]["accuracy"] == pytest.approx(np.mean(predicted.argmax(axis=1) == y))
    assert callback.result.accuracy == pytest.approx(report["metrics"]["accuracy"])
    true, probabilities = _report_probabilities(report)
    np.testing.assert_allclose(_by_label_and_scores(true, probabilities),
                               _by_label_and_scores(y, predicted), atol=2e-4)


@pytest.mark.slow
def test_the_callbacks_curves_are_fits_history(guide_run):
    _, _, history, callback, out, _ = guide_run
    recorded = _report(out)["history"]
    for key in ("accuracy", "val_accuracy", "loss", "val_loss"):
        assert recorded[key] == pytest.approx(history.history[key], rel=1e-12)
    assert recorded["epochs"] == len(history.history["loss"])
    assert (out / "assets" / "curves" / "accuracy.svg").is_file()


@pytest.mark.slow
def test_the_callback_says_which_weights_it_describes(guide_run):
    _, _, history, callback, out, _ = guide_run
    val = history.history["val_accuracy"]
    best = 1 + max(range(len(val)), key=lambda i: (val[i], -i))
    # EarlyStopping ran first and restored the best epoch: the report describes those weights.
    assert f"after epoch {best} of {len(val)}" in callback.result.weights
    assert "the best by val_accuracy" in callback.result.weights
    overview = (out / "index.html").read_text()
    assert f"after epoch {best} of {len(val)}" in overview


@pytest.mark.slow
def test_one_hot_labels_on_a_keras_application(tmp_path):
    """label_mode="categorical" into MobileNetV2 (weights=None), as given: numbers equal
    model.predict over the same batches."""
    import reportgen

    keras = _keras()
    keras.utils.set_random_seed(1)
    test_ds = keras.utils.image_dataset_from_directory(
        SHAPES / "test_set", image_size=(32, 32), label_mode="categorical", batch_size=32,
        shuffle=False, verbose=False)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=3,
                                           alpha=0.35)
    result = reportgen.build(model, test_ds, out=tmp_path / "site", preprocess="mobilenet_v2",
                             layer_patterns=("Conv1", "block_1_expand"), explain=False, jobs=1,
                             verbose=False)
    x, y = _collected(test_ds)
    expected = model.predict(keras.applications.mobilenet_v2.preprocess_input(x.copy()),
                             verbose=0)
    report = _report(tmp_path / "site")
    true, probabilities = _report_probabilities(report)
    np.testing.assert_array_equal(true, y.argmax(axis=1))  # not shuffled: the same order
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    assert result.confusion == tuple(map(tuple, _confusion(y.argmax(axis=1),
                                                           expected.argmax(axis=1), 3)))
    assert report["input"]["preprocess"] == "mobilenet_v2"


@pytest.mark.slow
def test_numpy_arrays_in_unit_range_are_fed_as_given(tmp_path, small_model):
    """(x, y) in [0, 1], as a user who divided by 255 has them, into a model that takes
    [0, 1]: every image's probabilities equal model.predict(x), in x's order."""
    import reportgen
    from reportgen.batches import load_split
    from reportgen.data import scan_dataset
    from reportgen.inputs import input_spec
    from reportgen.model import load

    keras = _keras()
    model = load(small_model)
    split = scan_dataset(SHAPES, require_train=False, scan_train=False).test
    pixels, labels = load_split(split, input_spec(model))
    x = pixels / np.float32(255)
    result = reportgen.build(model, (x, labels), out=tmp_path / "site", jobs=1, verbose=False,
                             class_names=split.class_names, max_gallery_images=5)
    expected = model.predict(x, verbose=0)
    report = _report(tmp_path / "site")
    true, probabilities = _report_probabilities(report)
    np.testing.assert_array_equal(true, labels)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    assert [image["path"] for image in report["images"]][:3] == ["00", "01", "02"]
    assert report["input"]["preprocess"] == "unit"
    assert result.accuracy == pytest.approx(np.mean(expected.argmax(axis=1) == labels))
    html = result._repr_html_()
    assert "Confusion matrix" in html and f"{100 * result.accuracy:.1f}%" in html
    assert keras is not None


@pytest.mark.slow
def test_a_failed_report_warns_and_training_goes_on(tmp_path, small_build):
    """Data the model cannot take: fit finishes, a warning says why, the old site stays."""
    import shutil

    from reportgen.inputs import input_spec
    from reportgen.keras import ReportCallback
    from reportgen.model import load

    site = tmp_path / "site"
    shutil.copytree(small_build.path, site)
    before = (site / "index.html").read_bytes()
    model = load(small_build.model)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    spec = input_spec(model)
    x = np.zeros((4, spec.height, spec.width, spec.channels), np.float32)
    wrong = (np.zeros((4, 9, 9, spec.channels), np.float32), np.zeros(4, np.int64))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, np.zeros(4, np.int64), epochs=2, verbose=0,
                            callbacks=[ReportCallback(wrong, site, verbose=False)])
    assert len(history.history["loss"]) == 2
    messages = [str(w.message) for w in caught if "reportgen" in str(w.message)]
    assert len(messages) == 1
    assert f"(9, 9, {spec.channels})" in messages[0] and "the report was not written" in messages[0]
    assert (site / "index.html").read_bytes() == before


def test_bad_options_are_user_errors_with_the_clis_message():
    from reportgen import UserError
    from reportgen.api import build_options

    with pytest.raises(UserError, match=r"^max_channels=0: 0 is not in the range x>=1"):
        build_options(max_channels=0)
    with pytest.raises(UserError, match=r"^scale='cell': 'cell' is not one of 'layer', 'channel'"):
        build_options(scale="cell")
    with pytest.raises(TypeError, match="unknown option"):
        build_options(max_chanels=3)
    options = build_options("x/site", max_channels=8, epochs=3, layer_patterns="conv*")
    assert (options.max_channels, options.train.epochs, options.layer_patterns) == (8, 3, ("conv*",))


def test_the_apis_defaults_are_the_clis():
    from click.testing import CliRunner

    from reportgen import cli
    from reportgen.api import build_options

    captured = {}

    def fake_build(options):
        captured["options"] = options
        raise SystemExit(0)

    import reportgen.stages

    original = reportgen.stages.build
    reportgen.stages.build = fake_build
    try:
        CliRunner().invoke(cli.main, ["build", "--data", "somewhere"])
    finally:
        reportgen.stages.build = original
    from dataclasses import replace

    from_cli = replace(captured["options"], data=Path("d"), generate_missing_data=False)
    assert from_cli == build_options("output/site", data="d")


@pytest.mark.parametrize("labels, expected", [
    (np.array([0, 2, 1]), [0, 2, 1]),  # label_mode="int"
    (np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], np.float32), [2, 0, 1]),  # "categorical"
    (np.array([[1.0], [0.0], [1.0]], np.float32), [1, 0, 1]),  # "binary"
])
def test_labels_as_keras_gives_them(labels, expected):
    from reportgen.given import _labels

    assert _labels(labels, 3, 3).tolist() == expected


@pytest.mark.parametrize("labels, message", [
    (np.array([0, 3, 1]), "label 3 is not a class index"),
    (np.array([0.5, 1.0, 2.0]), "labels must be class indices"),
    (np.zeros((3, 4)), "one-hot over 4 classes"),
])
def test_bad_labels_are_one_line_errors(labels, message):
    from reportgen import UserError
    from reportgen.given import _labels

    with pytest.raises(UserError, match=message):
        _labels(labels, 3, 3)


def test_importing_reportgen_imports_no_tensorflow():
    code = ("import sys, reportgen; reportgen.UserError; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.slow
def test_the_article_notebook_runs_headless(tmp_path, monkeypatch):
    """docs/article.ipynb, executed by nbclient as Jupyter would (a real kernel)."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("REPORTGEN_SHAPES", str(SHAPES))  # the kernel inherits the environment
    monkeypatch.setenv("REPORTGEN_EPOCHS", "5")
    notebook = nbformat.read(Path(__file__).resolve().parent.parent / "docs" / "article.ipynb",
                             as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.get("outputs", ())]
    html = [output["data"]["text/html"] for output in outputs
            if output.get("output_type") == "execute_result" and "text/html" in output["data"]]
    assert any("Confusion matrix" in page and "test accuracy" in page for page in html)
    assert (tmp_path / "output" / "site" / "index.html").is_file()


@pytest.mark.slow
def test_keras_ios_image_classification_from_scratch(tmp_path):
    """keras-io's guide, small: validation_split with subset="both", prefetch (which drops
    class_names), a residual model ending in Dense(1) logits, BinaryCrossentropy(from_logits),
    BinaryAccuracy(name="acc"). The callback reports on val_ds."""
    import tensorflow as tf

    from reportgen.keras import ReportCallback
    from tests.test_outputs import _guide_model

    keras = _keras()
    keras.utils.set_random_seed(5)
    folder = tmp_path / "two"
    for name in ("circles", "squares"):  # a two-class folder, as PetImages' Cat and Dog
        (folder / name).mkdir(parents=True)
        for split in ("training_set", "test_set"):
            for path in sorted((SHAPES / split / name).iterdir()):
                (folder / name / f"{split}-{path.name}").write_bytes(path.read_bytes())
    train_ds, val_ds = keras.utils.image_dataset_from_directory(
        folder, validation_split=0.2, subset="both", seed=1337, image_size=(28, 28),
        batch_size=16, label_mode="binary", verbose=False)
    class_names = tuple(train_ds.class_names)
    train_ds, val_ds = train_ds.prefetch(tf.data.AUTOTUNE), val_ds.prefetch(tf.data.AUTOTUNE)
    model = _guide_model(1, None)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  metrics=[keras.metrics.BinaryAccuracy(name="acc")])
    callback = ReportCallback(val_ds, tmp_path / "site", class_names=class_names, jobs=1,
                              verbose=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`shuffle=True` was passed", UserWarning)
        history = model.fit(train_ds, validation_data=val_ds, epochs=3, callbacks=[callback],
                            verbose=0)
    report = _report(tmp_path / "site")
    x, y = _collected(val_ds)
    p = 1 / (1 + np.exp(-model.predict(x, verbose=0)[:, 0].astype(np.float64)))
    true = y[:, 0].astype(int)
    assert report["classes"] == list(class_names)
    assert report["metrics"]["confusion_matrix"] == _confusion(true, (p > 0.5).astype(int), 2)
    got_true, probabilities = _report_probabilities(report)
    np.testing.assert_allclose(_by_label_and_scores(got_true, probabilities),
                               _by_label_and_scores(true, np.column_stack([1 - p, p])),
                               atol=2e-4)
    assert report["history"]["accuracy"] == pytest.approx(history.history["acc"], rel=1e-12)
    assert report["history"]["val_accuracy"] == pytest.approx(history.history["val_acc"],
                                                              rel=1e-12)
    assert "after epoch 3 of 3 (the last)" in callback.result.weights


@pytest.mark.slow
def test_every_n_epochs_reports_during_fit(tmp_path, small_build):
    """every_n_epochs=2 over 3 epochs: a site after epoch 2 with two epochs of curves, then
    the final one after epoch 3, each as it was when written."""
    from reportgen.batches import load_split
    from reportgen.data import scan_dataset
    from reportgen.inputs import input_spec
    from reportgen.keras import ReportCallback
    from reportgen.model import load

    keras = _keras()
    model = load(small_build.model)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    split = scan_dataset(small_build.options.data, require_train=False, scan_train=False).test
    pixels, labels = load_split(split, input_spec(model))
    x = pixels / np.float32(255)
    site, seen = tmp_path / "site", []

    def look(epoch, logs):
        if (site / "report.json").exists():
            seen.append((epoch + 1, _report(site)["history"]["epochs"]))

    callback = ReportCallback((x, labels), site, every_n_epochs=2, class_names=split.class_names,
                              jobs=1, verbose=False, max_gallery_images=3)
    keras.utils.set_random_seed(0)
    model.fit(x, labels, validation_data=(x, labels), epochs=3, verbose=0,
              callbacks=[callback, keras.callbacks.LambdaCallback(on_epoch_end=look)])
    assert seen == [(2, 2), (3, 2)]  # written after epoch 2; epoch 3 is not a multiple of 2
    assert _report(site)["history"]["epochs"] == 3  # and at the end of fit
    assert "after epoch 3 of 3 (the last)" in callback.result.weights
