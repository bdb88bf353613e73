"""The model stage: seeded training of the article's CNN, the sidecar, and loading files we do not trust.

Training runs are short (2 epochs of 5 steps on 24 generated images) and shared
by module-scoped fixtures; fit is wrapped to record exactly which images it
was fed and validated on, so the tests can see where the validation data came from.
Each run costs seconds of tracing, so there are four: two alike, one holding out
data, and one through the CLI with another seed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import fixture_models
import numpy as np
import pytest
from click.testing import CliRunner, Result

import reportgen
from reportgen import model as model_stage
from reportgen import shapes
from reportgen.batches import load_split
from reportgen.cli import main
from reportgen.data import Dataset, scan_dataset
from reportgen.decode import load_image
from reportgen.errors import UserError
from reportgen.history import History, read_history
from reportgen.inputs import input_spec
from reportgen.keras_import import keras
from reportgen.options import TrainOptions

SHORT = TrainOptions(epochs=2, steps_per_epoch=5, seed=0)
CLASS_NAMES = ("circles", "squares", "triangles")


# --- Training ---------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Run:
    model: keras.Model
    history: History
    report_lines: tuple[str, ...]
    fed_images: frozenset[bytes]  # every training image fit drew, as raw float32 bytes
    validation_images: np.ndarray
    validation_labels: np.ndarray  # class indices


def image_keys(images: np.ndarray) -> frozenset[bytes]:
    return frozenset(image.tobytes() for image in images)


def train_recording(dataset: Dataset, options: TrainOptions) -> Run:
    """model_stage.train, with keras.Model.fit wrapped to record what it is given."""
    fed: list[np.ndarray] = []
    given: dict = {}
    original_fit = keras.Model.fit

    def recording_fit(self, x, *args, **kwargs):
        given.update(kwargs)

        def recorded():
            for images, labels in x:
                fed.append(images)
                yield images, labels

        return original_fit(self, recorded(), *args, **kwargs)

    lines: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keras.Model, "fit", recording_fit)
        model, history = model_stage.train(dataset, options, report=lines.append)
    validation_images, validation_one_hot = given["validation_data"]
    return Run(model, history, tuple(lines), image_keys(np.concatenate(fed)),
               validation_images, validation_one_hot.argmax(axis=1))


def evaluate(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(accuracy, categorical cross-entropy) in inference mode, computed here, not by Keras."""
    probabilities = np.asarray(model(images, training=False), dtype=np.float64)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == labels))
    loss = float(np.mean(-np.log(probabilities[np.arange(len(labels)), labels])))
    return accuracy, loss


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Dataset:
    root = tmp_path_factory.mktemp("shapes") / "data"
    shapes.generate(root, per_class=12, seed=1)  # 8 training and 4 test images per class
    return scan_dataset(root, require_train=True)


@pytest.fixture(scope="module")
def run(dataset) -> Run:
    return train_recording(dataset, SHORT)


@pytest.fixture(scope="module")
def run_again(dataset) -> Run:
    return train_recording(dataset, SHORT)


@pytest.fixture(scope="module")
def run_held_out(dataset) -> Run:
    return train_recording(dataset, replace(SHORT, validation_split=0.25))


@pytest.mark.slow
def test_same_seed_gives_the_same_weights_and_history(run, run_again):
    weights, weights_again = run.model.get_weights(), run_again.model.get_weights()
    assert len(weights) == len(weights_again) == 16  # kernel and bias of 6 Conv2D, 2 Dense
    for array, array_again in zip(weights, weights_again, strict=True):
        assert np.array_equal(array, array_again)
    assert run.history == run_again.history
    assert run.report_lines == run_again.report_lines


@pytest.mark.slow
def test_other_seed_gives_other_weights(run, cli_trained):
    # The CLI run differs from `run` in its seed only.
    other_seed = model_stage.load(cli_trained.model_path)
    pairs = zip(run.model.get_weights(), other_seed.get_weights(), strict=True)
    assert not any(np.array_equal(array, other) for array, other in pairs)


@pytest.mark.slow
def test_one_report_line_per_epoch(run):
    assert len(run.report_lines) == SHORT.epochs
    for epoch, line in enumerate(run.report_lines, start=1):
        assert line.startswith(f"epoch {epoch:>3}/{SHORT.epochs}")
    # "*best" marks each new best so far: always the first epoch, last the best one.
    marked = [epoch for epoch, line in enumerate(run.report_lines, start=1) if line.endswith("*best")]
    assert marked[0] == 1
    assert marked[-1] == run.history.best_epoch


@pytest.mark.slow
def test_history_has_one_value_per_epoch(run):
    history = run.history
    assert history.epochs == SHORT.epochs
    for series in (history.accuracy, history.val_accuracy, history.loss, history.val_loss):
        assert len(series) == SHORT.epochs
        assert all(np.isfinite(series))


@pytest.mark.slow
def test_best_epoch_is_the_first_with_the_highest_val_accuracy(run, run_held_out, cli_trained):
    other_seed = model_stage.load_with_sidecar(cli_trained.model_path).history
    for history in (run.history, run_held_out.history, other_seed):
        assert history.best_epoch == 1 + int(np.argmax(history.val_accuracy))  # argmax: first max


@pytest.mark.slow
def test_returned_model_has_the_best_epochs_weights(run):
    history = run.history
    # Otherwise the final weights would pass without any restoring.
    assert history.best_epoch < history.epochs, "pick a seed whose last epoch is not the best"
    accuracy, loss = evaluate(run.model, run.validation_images, run.validation_labels)
    assert accuracy == pytest.approx(history.val_accuracy[history.best_epoch - 1], abs=1e-6)
    # Accuracies tie often on 12 images; the loss tells the epochs apart.
    assert loss == pytest.approx(history.val_loss[history.best_epoch - 1], abs=1e-5)
    assert loss != pytest.approx(history.val_loss[-1], abs=1e-5)


@pytest.mark.slow
def test_default_validates_on_the_test_set(run, dataset):
    assert "test set" in run.history.validation
    spec = input_spec(run.model)
    test_images, test_labels = load_split(dataset.test, spec)
    assert np.array_equal(run.validation_images, test_images / np.float32(255))
    assert np.array_equal(run.validation_labels, test_labels)
    train_images, _ = load_split(dataset.train, spec)
    assert run.fed_images == image_keys(train_images / np.float32(255))


@pytest.mark.slow
def test_validation_split_holds_out_part_of_the_training_set(run_held_out, dataset):
    assert "25% of the training set" in run_held_out.history.validation
    train_images, _ = load_split(dataset.train, input_spec(run_held_out.model))
    train_images = train_images / np.float32(255)
    held_out = image_keys(run_held_out.validation_images)
    assert np.bincount(run_held_out.validation_labels).tolist() == [2, 2, 2]  # 25% of 8, per class
    assert len(held_out) == 6
    assert held_out.isdisjoint(run_held_out.fed_images)
    assert held_out | run_held_out.fed_images == image_keys(train_images)


ARTICLE_LAYERS = [
    ("Conv2D", {"filters": 32, "kernel_size": (3, 3), "padding": "same", "activation": "relu"}),
    ("Conv2D", {"filters": 32, "kernel_size": (3, 3), "padding": "valid", "activation": "relu"}),
    ("MaxPooling2D", {"pool_size": (2, 2)}),
    ("Dropout", {"rate": 0.5}),
    ("Conv2D", {"filters": 64, "kernel_size": (3, 3), "padding": "same", "activation": "relu"}),
    ("Conv2D", {"filters": 64, "kernel_size": (3, 3), "padding": "valid", "activation": "relu"}),
    ("MaxPooling2D", {"pool_size": (2, 2)}),
    ("Dropout", {"rate": 0.5}),
    ("Conv2D", {"filters": 64, "kernel_size": (3, 3), "padding": "same", "activation": "relu"}),
    ("Conv2D", {"filters": 64, "kernel_size": (3, 3), "padding": "valid", "activation": "relu"}),
    ("MaxPooling2D", {"pool_size": (2, 2)}),
    ("Dropout", {"rate": 0.5}),
    ("Flatten", {}),
    ("Dense", {"units": 512, "activation": "relu"}),
    ("Dropout", {"rate": 0.5}),
    ("Dense", {"units": len(CLASS_NAMES), "activation": "softmax"}),
]


@pytest.mark.slow
def test_architecture_is_the_articles_layer_for_layer(run):
    model = run.model
    assert [type(layer).__name__ for layer in model.layers] == [name for name, _ in ARTICLE_LAYERS]
    for layer, (_, expected) in zip(model.layers, ARTICLE_LAYERS, strict=True):
        config = layer.get_config()
        assert {key: config[key] for key in expected} == expected, layer.name
    assert tuple(model.inputs[0].shape) == (None, 28, 28, 3)
    assert isinstance(model.optimizer, keras.optimizers.RMSprop)
    assert model.loss == "categorical_crossentropy"


@pytest.mark.parametrize("layout", ["no training_set", "empty class folders"])
def test_training_without_training_images_is_a_user_error(dataset, tmp_path, layout):
    root = tmp_path / "data"
    shutil.copytree(dataset.root / "test_set", root / "test_set")
    if layout == "empty class folders":
        for name in CLASS_NAMES:
            (root / "training_set" / name).mkdir(parents=True)
    without_training = scan_dataset(root)
    with pytest.raises(UserError, match="has no training images"):
        model_stage.train(without_training, SHORT, report=pytest.fail)


# --- Saving with the sidecar ---------------------------------------------------


@pytest.fixture(scope="module")
def saved(run, dataset, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("saved") / "shapes.keras"
    model_stage.save(run.model, run.history, dataset.class_names, SHORT, path)
    return path


@pytest.mark.slow
def test_save_writes_the_model_and_its_sidecar(saved, run):
    assert zipfile.is_zipfile(saved)
    sidecar_path = saved.with_name("shapes.reportgen.json")
    assert model_stage.sidecar_path(saved) == sidecar_path
    sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
    assert sidecar["format"] == "reportgen-model/1"
    assert sidecar["class_names"] == list(CLASS_NAMES)
    assert sidecar["input"] == {"height": 28, "width": 28, "channels": 3, "resize": "stretch"}
    assert sidecar["color_mode"] == "rgb"
    assert sidecar["preprocess"] == "unit"  # what train() fed the network: pixels / 255
    assert sidecar["training"] == asdict(SHORT)
    assert sidecar["seed"] == SHORT.seed
    assert sidecar["versions"]["keras"] == keras.__version__
    assert sidecar["versions"]["reportgen"] == reportgen.__version__
    assert set(sidecar["versions"]) >= {"tensorflow", "numpy", "python"}
    assert sidecar["history"]["val_accuracy"] == list(run.history.val_accuracy)
    assert History.from_json(sidecar["history"]) == run.history


@pytest.mark.slow
def test_load_with_sidecar_round_trips_predictions_and_history(saved, run):
    loaded = model_stage.load_with_sidecar(saved)
    assert loaded.class_names == CLASS_NAMES
    assert loaded.history == run.history
    expected = np.asarray(run.model(run.validation_images, training=False))
    np.testing.assert_allclose(np.asarray(loaded.model(run.validation_images, training=False)),
                               expected, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_history_from_a_real_csvlogger(run, tmp_path):
    # Keras's own CSVLogger, fed the logs of the recorded run.
    path = tmp_path / "log.csv"
    logger = keras.callbacks.CSVLogger(str(path))
    logger.set_model(run.model)
    logger.on_train_begin()
    for epoch in range(run.history.epochs):
        logger.on_epoch_end(epoch, {key: getattr(run.history, key)[epoch]
                                    for key in ("accuracy", "loss", "val_accuracy", "val_loss")})
    logger.on_train_end()
    history = read_history(path)
    assert replace(history, validation=run.history.validation) == run.history


@pytest.mark.slow
def test_history_from_a_csvlogger_without_validation(run, tmp_path):
    path = tmp_path / "log.csv"
    logger = keras.callbacks.CSVLogger(str(path))
    logger.set_model(run.model)
    logger.on_train_begin()
    for epoch in range(run.history.epochs):
        logger.on_epoch_end(epoch, {"accuracy": run.history.accuracy[epoch],
                                    "loss": run.history.loss[epoch]})
    logger.on_train_end()
    assert "NA" in path.read_text(encoding="utf-8")  # Keras writes empty val_* columns
    history = read_history(path)
    assert history.loss == run.history.loss
    assert history.val_accuracy == ()


# --- Loading files we do not trust --------------------------------------------


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message
    return message


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[keras.Model, Path]:
    """A small built-in-layers model and its .keras file."""
    model = fixture_models.sequential_with_input()
    path = tmp_path_factory.mktemp("tiny") / "tiny.keras"
    model.save(path)
    return model, path


@pytest.fixture(scope="module")
def lambda_file(tmp_path_factory) -> Path:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 3), name="image"),
        keras.layers.Lambda(lambda x: x * 2, name="double"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(3, activation="softmax", name="predictions"),
    ])
    path = tmp_path_factory.mktemp("lambda") / "lambda.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def h5_file(tiny) -> Path:
    model, path = tiny
    h5_path = path.with_name("tiny.h5")
    model.save(h5_path)  # legacy HDF5: Keras 3 still writes it
    return h5_path


def predictions(model: keras.Model) -> np.ndarray:
    return np.asarray(model(fixture_models.images(model), training=False))


def _random_bytes(folder: Path, real: Path) -> Path:
    path = folder / "random.keras"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    return path


def _truncated(folder: Path, real: Path) -> Path:
    path = folder / "truncated.keras"
    data = real.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _saved_model_folder(folder: Path, real: Path) -> Path:
    path = folder / "exported"
    (path / "variables").mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"\x08\x01")
    return path


def _plain_folder(folder: Path, real: Path) -> Path:
    path = folder / "models.keras"
    path.mkdir()
    return path


def _zip_without_config(folder: Path, real: Path) -> Path:
    path = folder / "other.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not a model")
    return path


UNLOADABLE = {
    "missing file": (lambda folder, real: folder / "absent.keras", "does not exist"),
    "folder": (_plain_folder, "is a folder, not a model file"),
    "SavedModel folder": (_saved_model_folder, "is a TensorFlow SavedModel folder; Keras 3 cannot "
                          "load it as a model: save it as a .keras file with model.save('model.keras')"),
    "random bytes": (_random_bytes, "is not a Keras model file"),
    "truncated .keras": (_truncated, "truncated or damaged"),
    "zip that is no model": (_zip_without_config, "cannot load"),
}


@pytest.mark.parametrize(("make", "expected"), UNLOADABLE.values(), ids=UNLOADABLE)
@pytest.mark.parametrize("trust", [False, True], ids=["safe", "trusted"])
def test_unloadable_files_are_one_line_user_errors(tiny, tmp_path, make, expected, trust):
    path = make(tmp_path, tiny[1])
    with pytest.raises(UserError) as error:
        model_stage.load(path, trust=trust)
    message = one_line(error)
    assert expected in message
    assert str(path) in message


def test_format_comes_from_the_bytes_not_the_name(tiny, tmp_path):
    model, path = tiny
    renamed = tmp_path / "tiny.bin"
    shutil.copy(path, renamed)
    np.testing.assert_allclose(predictions(model_stage.load(renamed)), predictions(model), rtol=1e-6)


@pytest.mark.parametrize("name", ["compiled.keras", "compiled.bin"])
def test_models_load_uncompiled_whatever_their_name(tmp_path, name):
    """compile=False: reportgen only predicts, and a compiled model's optimizer state need not load."""
    model = fixture_models.sequential_with_input()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    path = tmp_path / name
    model.save(path.with_suffix(".keras"))
    path.with_suffix(".keras").rename(path)
    loaded = model_stage.load(path)
    assert loaded.compiled is False
    np.testing.assert_allclose(predictions(loaded), predictions(model), rtol=1e-6)


EXPLANATIONS = {
    "Lambda": ("Refusing to load the `Lambda` layer 'double'.",
               "contains Python code (a Lambda layer or similar)"),
    "unsafe": ("Requested the deserialization of UNSAFE code.",
               "contains Python code (a Lambda layer or similar)"),
    "safe_mode": ("pass safe_mode=False to load this", "contains Python code (a Lambda layer or similar)"),
    "Could not locate": ("Could not locate class 'Doubler'.", "needs custom Python classes"),
    "custom_objects": ("Make sure custom classes are in custom_objects.", "needs custom Python classes"),
    "Unknown layer": ("Unknown layer: 'Doubler'.", "needs custom Python classes"),
}


@pytest.mark.parametrize(("text", "expected"), EXPLANATIONS.values(), ids=EXPLANATIONS)
def test_each_way_keras_words_a_refusal_gets_its_explanation(text, expected):
    """Keras has worded these errors differently across versions: each wording on its own."""
    message = model_stage._explain_load_error(Path("m.keras"), ValueError(text))
    assert message.startswith(f"m.keras {expected}")
    if "Python code" in expected:
        assert message.endswith("that safe mode refuses to run; pass --trust-model only if you "
                                "trust where the file came from")
    else:
        assert message.endswith("that reportgen does not have; save the model with built-in "
                                "Keras layers only")


def test_other_load_errors_show_their_first_line_or_type():
    explain = model_stage._explain_load_error
    assert explain(Path("m.keras"), ValueError("\n  bad weights\nmore detail")) == \
        "cannot load m.keras: bad weights"
    assert explain(Path("m.keras"), KeyError()) == "cannot load m.keras: KeyError"
    assert explain(Path("m.keras"), OSError("  ")) == "cannot load m.keras: OSError"


def test_legacy_hdf5_is_refused_unless_trusted(h5_file, tiny):
    with pytest.raises(UserError) as error:
        model_stage.load(h5_file)
    message = one_line(error)
    assert message == (f"{h5_file} is a legacy HDF5 model, which Keras loads without safe mode; "
                       "pass --trust-model only if you trust where the file came from")
    np.testing.assert_allclose(predictions(model_stage.load(h5_file, trust=True)),
                               predictions(tiny[0]), rtol=1e-6)


def test_renamed_hdf5_is_recognised_too(h5_file, tiny, tmp_path):
    renamed = tmp_path / "tiny.bin"
    shutil.copy(h5_file, renamed)
    with pytest.raises(UserError, match="legacy HDF5"):
        model_stage.load(renamed)
    np.testing.assert_allclose(predictions(model_stage.load(renamed, trust=True)),
                               predictions(tiny[0]), rtol=1e-6)


def test_lambda_layer_is_refused_in_safe_mode(lambda_file):
    with pytest.raises(UserError) as error:
        model_stage.load(lambda_file)
    message = one_line(error)
    assert "Lambda" in message
    assert "--trust-model" in message


def test_lambda_layer_under_another_name_is_refused_too(lambda_file, tmp_path):
    renamed = tmp_path / "model.bin"  # Keras picks its loader by the name: the renamed path
    shutil.copy(lambda_file, renamed)
    with pytest.raises(UserError) as error:
        model_stage.load(renamed)
    message = one_line(error)
    assert "Lambda" in message and str(renamed) in message
    model = model_stage.load(renamed, trust=True)
    image = np.ones((1, 8, 8, 3), np.float32)
    np.testing.assert_allclose(np.asarray(model.get_layer("double")(image)), 2 * image)


def test_trusted_lambda_load_leaves_safe_mode_on(lambda_file, monkeypatch):
    from keras.src.saving import serialization_lib

    def forbidden():
        pytest.fail("reportgen turned off safe mode for the whole process")

    monkeypatch.setattr(keras.config, "enable_unsafe_deserialization", forbidden)
    monkeypatch.setattr(serialization_lib, "enable_unsafe_deserialization", forbidden)
    model = model_stage.load(lambda_file, trust=True)
    image = np.ones((1, 8, 8, 3), np.float32)
    np.testing.assert_allclose(np.asarray(model.get_layer("double")(image)), 2 * image)
    # None is Keras's default ("not overridden"); False would disable safe mode everywhere.
    assert serialization_lib.in_safe_mode() is not False
    with pytest.raises(ValueError, match="Lambda"):
        keras.saving.load_model(lambda_file)


def test_reportgen_never_disables_safe_mode_globally():
    package = Path(reportgen.__file__).parent
    sources = sorted(package.rglob("*.py"))
    assert len(sources) > 10
    for source in sources:
        assert "enable_unsafe_deserialization" not in source.read_text(encoding="utf-8"), source



def test_keras_loads_without_the_packages_it_would_import_for_nothing():
    """A fresh process: Keras imported through reportgen leaves scikit-learn and pyplot
    unloaded (a second of every build's start), and both still import afterwards."""
    script = ("import sys\n"
              "from reportgen.keras_import import HELD_BACK, keras\n"
              "assert keras.ops is not None\n"
              "print(sorted(name for name in HELD_BACK if name in sys.modules))\n"
              "import matplotlib.pyplot, sklearn.manifold\n"
              "print(matplotlib.pyplot.__name__, sklearn.manifold.__name__)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True)
    assert result.stdout.splitlines() == ["[]", "matplotlib.pyplot sklearn.manifold"]

@pytest.fixture
def custom_layer_file(tmp_path) -> Path:
    """A model with a registered custom layer, saved, then the class unregistered again."""

    @keras.saving.register_keras_serializable(package="reportgen_test")
    class Doubler(keras.layers.Layer):
        def call(self, inputs):
            return inputs * 2

    path = tmp_path / "custom.keras"
    try:
        keras.Sequential([keras.Input((8, 8, 3)), Doubler(name="double"), keras.layers.Flatten(),
                          keras.layers.Dense(3, activation="softmax")]).save(path)
        # The file is sound: it loads while the class is known.
        keras.saving.load_model(path, compile=False)
    finally:
        del keras.saving.get_custom_objects()["reportgen_test>Doubler"]
    assert keras.saving.get_registered_object("reportgen_test>Doubler") is None
    return path


@pytest.mark.parametrize("trust", [False, True], ids=["safe", "trusted"])
def test_custom_classes_reportgen_lacks_are_user_errors(custom_layer_file, trust):
    with pytest.raises(UserError) as error:
        model_stage.load(custom_layer_file, trust=trust)
    message = one_line(error)
    assert "custom Python classes" in message
    assert "Full object config" not in message


def test_model_without_sidecar_loads_without_class_names(tiny):
    loaded = model_stage.load_with_sidecar(tiny[1])
    assert loaded.class_names is None
    assert loaded.history is None


@pytest.fixture
def tiny_with_sidecar(tiny, tmp_path) -> Path:
    """The tiny model saved by reportgen, sidecar and all, with a made-up history (no training)."""
    history = History.from_keras({"accuracy": [0.5, 0.75], "val_accuracy": [0.25, 0.5],
                                  "loss": [1.0, 0.5], "val_loss": [1.5, 1.0]}, best_epoch=2,
                                 validation="the test set (as in the article)")
    path = tmp_path / "tiny.bin"
    model_stage.save(tiny[0], history, ("東京", "b", "c"), SHORT, path.with_suffix(".keras"))
    path.with_suffix(".keras").rename(path)
    path.with_name("tiny.reportgen.json").rename(model_stage.sidecar_path(path))
    return path


def test_the_sidecar_lies_beside_the_model_and_round_trips(tiny, tiny_with_sidecar):
    path = tiny_with_sidecar
    assert model_stage.sidecar_path(path) == path.with_name("tiny.reportgen.json")
    loaded = model_stage.load_with_sidecar(path)
    assert loaded.class_names == ("東京", "b", "c")
    assert loaded.history == History.from_keras(
        {"accuracy": [0.5, 0.75], "val_accuracy": [0.25, 0.5], "loss": [1.0, 0.5],
         "val_loss": [1.5, 1.0]}, best_epoch=2, validation="the test set (as in the article)")
    assert loaded.sidecar == json.loads(model_stage.sidecar_path(path).read_text(encoding="utf-8"))
    assert loaded.sidecar["format"] == "reportgen-model/1"
    np.testing.assert_allclose(predictions(loaded.model), predictions(tiny[0]), rtol=1e-6)


def test_a_sidecar_without_history_gives_none(tiny_with_sidecar):
    sidecar = model_stage.sidecar_path(tiny_with_sidecar)
    data = json.loads(sidecar.read_text(encoding="utf-8"))
    sidecar.write_text(json.dumps({**data, "history": None}), encoding="utf-8")
    loaded = model_stage.load_with_sidecar(tiny_with_sidecar)
    assert loaded.history is None and loaded.class_names == ("東京", "b", "c")


@pytest.mark.parametrize("content", [{"format": "another-tool/1", "class_names": ["x"]},
                                     [{"format": "reportgen-model/1"}], "reportgen-model/1"],
                         ids=["other format", "a list", "a string"])
def test_a_json_file_that_is_no_sidecar_of_ours_is_ignored(tiny_with_sidecar, content):
    model_stage.sidecar_path(tiny_with_sidecar).write_text(json.dumps(content), encoding="utf-8")
    loaded = model_stage.load_with_sidecar(tiny_with_sidecar)
    assert (loaded.class_names, loaded.history, loaded.sidecar) == (None, None, None)


def test_load_with_sidecar_is_safe_by_default(lambda_file):
    with pytest.raises(UserError, match="Lambda"):
        model_stage.load_with_sidecar(lambda_file)
    assert model_stage.load_with_sidecar(lambda_file, trust=True).class_names is None


def test_damaged_sidecar_is_a_user_error(tiny, tmp_path):
    path = tmp_path / "tiny.keras"
    shutil.copy(tiny[1], path)
    model_stage.sidecar_path(path).write_text("{not json", encoding="utf-8")
    with pytest.raises(UserError) as error:
        model_stage.load_with_sidecar(path)
    assert "sidecar" in one_line(error)


# --- The command line ---------------------------------------------------------


@dataclass(frozen=True)
class CliRun:
    result: Result
    model_path: Path


@pytest.fixture(scope="module")
def cli_trained(dataset, tmp_path_factory) -> CliRun:
    """`reportgen train` with SHORT's schedule and another seed."""
    out = tmp_path_factory.mktemp("cli") / "model" / "m.keras"
    result = CliRunner().invoke(main, [
        "train", "--data", str(dataset.root), "--out", str(out), "--epochs", str(SHORT.epochs),
        "--steps-per-epoch", str(SHORT.steps_per_epoch), "--seed", str(SHORT.seed + 1)])
    return CliRun(result, out)


@pytest.fixture(scope="module")
def sample_images(dataset) -> list[Path]:
    by_class = {record.class_name: record for record in dataset.test.images}
    return [dataset.test.root / by_class[name].path for name in CLASS_NAMES]


@pytest.mark.slow
def test_cli_train_writes_the_model_and_sidecar(cli_trained):
    result, out = cli_trained.result, cli_trained.model_path
    assert result.exit_code == 0, result.output
    assert out.is_file()
    sidecar = json.loads(out.with_name("m.reportgen.json").read_text(encoding="utf-8"))
    assert sidecar["training"] == asdict(replace(SHORT, seed=SHORT.seed + 1))
    *epoch_lines, best_line, saved_line = result.stdout.splitlines()
    assert [line.split()[:2] for line in epoch_lines] == [["epoch", "1/2"], ["epoch", "2/2"]]
    assert best_line.startswith(f"Best epoch {sidecar['history']['best_epoch']} of 2: ")
    assert saved_line == f"Saved {out} and {out.with_name('m.reportgen.json')}"


PREDICT_LINE = re.compile(r"(?P<path>.+): (?P<name>\w+)  \((?P<shares>.+)\)")


@pytest.mark.slow
def test_cli_predict_prints_one_line_per_image(cli_trained, sample_images):
    model_path = cli_trained.model_path
    result = CliRunner().invoke(main, ["predict", "--model", str(model_path), *map(str, sample_images)])
    assert result.exit_code == 0, result.output
    # Independently: the sidecar says the network was trained on pixels / 255.
    model = model_stage.load(model_path)
    spec = input_spec(model)
    pixels = np.stack([load_image(path, spec) for path in sample_images])
    expected = np.asarray(model.predict_on_batch(pixels / 255.0))
    lines = result.stdout.splitlines()
    assert len(lines) == len(sample_images)
    for line, image, probabilities in zip(lines, sample_images, expected, strict=True):
        match = PREDICT_LINE.fullmatch(line)
        assert match, line
        assert match["path"] == str(image)
        assert match["name"] == CLASS_NAMES[int(probabilities.argmax())]
        shares = match["shares"].split("  ")
        assert [share.split()[0] for share in shares] == list(CLASS_NAMES)
        printed = [float(share.split()[1]) for share in shares]
        assert printed == pytest.approx(probabilities, abs=5e-4)


@pytest.mark.slow
def test_cli_predict_json(cli_trained, sample_images):
    model_path = cli_trained.model_path
    result = CliRunner().invoke(main, ["predict", "--json", "--model", str(model_path),
                                       *map(str, sample_images)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(sample_images)
    for line, image in zip(lines, sample_images, strict=True):
        record = json.loads(line)
        assert record["path"] == str(image)
        probabilities = record["probabilities"]
        assert list(probabilities) == list(CLASS_NAMES)
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert record["class"] == max(probabilities, key=probabilities.get)


def test_cli_predict_lambda_model_needs_trust(lambda_file, sample_images):
    arguments = ["predict", "--model", str(lambda_file), str(sample_images[0])]
    refused = CliRunner().invoke(main, arguments)
    assert refused.exit_code == 2
    assert "--trust-model" in refused.stderr
    trusted = CliRunner().invoke(main, [*arguments[:1], "--trust-model", *arguments[1:]])
    # The Lambda model takes 8x8 images; the 28x28 test image is resized.
    assert trusted.exit_code == 0, trusted.output
    assert len(trusted.stdout.splitlines()) == 1


def _missing_model(folder: Path, model: Path, image: Path) -> list[str]:
    return ["--model", str(folder / "absent.keras"), str(image)]


def _random_bytes_model(folder: Path, model: Path, image: Path) -> list[str]:
    return ["--model", str(_random_bytes(folder, model)), str(image)]


def _text_image(folder: Path, model: Path, image: Path) -> list[str]:
    text = folder / "note.png"
    text.write_text("this is not a picture\n", encoding="utf-8")
    return ["--model", str(model), str(image), str(text)]


BAD_PREDICT_INPUT = {
    "missing model": (_missing_model, "does not exist"),
    "random-bytes model": (_random_bytes_model, "is not a Keras model file"),
    "text file as image": (_text_image, "cannot read"),
}


@pytest.mark.parametrize(("make_arguments", "expected"), BAD_PREDICT_INPUT.values(),
                         ids=BAD_PREDICT_INPUT)
def test_cli_predict_bad_input_is_a_one_line_error(tiny, sample_images, tmp_path,
                                                    make_arguments, expected):
    model_path = tiny[1]  # any loadable model: nothing here needs a trained one
    arguments = make_arguments(tmp_path, model_path, sample_images[0])
    result = CliRunner().invoke(main, ["predict", *arguments])
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1
    assert expected in errors[0]
    assert "Traceback" not in result.output
    assert result.stdout == ""
