"""The model stage: the article's CNN, seeded training, safe loading, the sidecar.

A trained model is saved as ``NAME.keras`` plus ``NAME.reportgen.json`` (the
sidecar: class names, input, options, versions and the per-epoch history).
"""

from __future__ import annotations

import json
import platform
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from reportgen import __version__
from reportgen.batches import load_split
from reportgen.data import Dataset
from reportgen.decode import InputSpec
from reportgen.errors import UserError
from reportgen.history import History
from reportgen.inputs import InputContract, input_spec, preprocess_function
from reportgen.keras_import import keras
from reportgen.options import TrainOptions

layers = keras.layers

SIDECAR_FORMAT = "reportgen-model/1"
# The article's network is trained on pixels / 255, stretched to its input size.
TRAINING_PREPROCESS = "unit"
TRAINING_RESIZE = "stretch"
ZIP_MAGIC = b"PK\x03\x04"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class LoadedModel:
    model: keras.Model
    class_names: tuple[str, ...] | None  # None when there is no sidecar
    history: History | None
    sidecar: dict | None


def article_cnn(spec: InputSpec, n_classes: int) -> keras.Model:
    """The article's network, layer for layer (three conv blocks, dropout 0.5)."""
    model = keras.Sequential(name="article_cnn")
    model.add(keras.Input(shape=(spec.height, spec.width, spec.channels), name="image"))
    for block, filters in enumerate((32, 64, 64), start=1):
        model.add(layers.Conv2D(filters, 3, padding="same", activation="relu",
                                name=f"block{block}_conv1"))
        model.add(layers.Conv2D(filters, 3, activation="relu", name=f"block{block}_conv2"))
        model.add(layers.MaxPooling2D(2, name=f"block{block}_pool"))
        model.add(layers.Dropout(0.5, name=f"block{block}_dropout"))
    model.add(layers.Flatten(name="flatten"))
    model.add(layers.Dense(512, activation="relu", name="dense"))
    model.add(layers.Dropout(0.5, name="dense_dropout"))
    model.add(layers.Dense(n_classes, activation="softmax", name="predictions"))
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def seed_everything(seed: int) -> None:
    """Python, numpy and TensorFlow seeds plus deterministic kernels: same seed, same weights."""
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _stratified_holdout(labels: np.ndarray, fraction: float, rng: np.random.Generator
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation), with ``fraction`` of every class held out."""
    train_idx, val_idx = [], []
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n_val = max(1, round(len(idx) * fraction))
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


def _repeating_batches(x: np.ndarray, y: np.ndarray, batch_size: int,
                       rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless shuffled batches: the article's 100 steps/epoch repeat its 210 images."""
    order = np.empty(0, dtype=np.int64)
    while True:
        while len(order) < batch_size:
            order = np.concatenate([order, rng.permutation(len(x))])
        batch, order = order[:batch_size], order[batch_size:]
        yield x[batch], y[batch]


class _KeepBest(keras.callbacks.Callback):
    """ModelCheckpoint(save_best_only=True) in memory: first epoch with the highest val_accuracy."""

    def __init__(self, report: Callable[[str], None], epochs: int):
        super().__init__()
        self.best_accuracy = -np.inf
        self.best_epoch = 0
        self.best_weights: list[np.ndarray] | None = None
        self._report = report
        self._epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        val_accuracy = float(logs["val_accuracy"])
        mark = ""
        if val_accuracy > self.best_accuracy:
            self.best_accuracy, self.best_epoch = val_accuracy, epoch + 1
            self.best_weights = self.model.get_weights()
            mark = "  *best"
        self._report(
            f"epoch {epoch + 1:>3}/{self._epochs}  loss {logs['loss']:.4f}  "
            f"accuracy {logs['accuracy']:.4f}  val_loss {logs['val_loss']:.4f}  "
            f"val_accuracy {val_accuracy:.4f}{mark}"
        )


def train(dataset: Dataset, options: TrainOptions, report: Callable[[str], None] = print
          ) -> tuple[keras.Model, History]:
    """Train the article's CNN on ``dataset`` and return it restored to its best epoch."""
    if dataset.train is None or not dataset.train.images:
        raise UserError(f"{dataset.root} has no training images (training_set/<class>/*) to train on")
    spec = _spec_from_data(dataset)
    seed_everything(options.seed)
    rng = np.random.default_rng(options.seed)
    n_classes = len(dataset.class_names)
    scale = preprocess_function(TRAINING_PREPROCESS)
    x_train, y_train = load_split(dataset.train, spec)
    x_train = scale(x_train)
    if options.validation_split > 0:
        train_idx, val_idx = _stratified_holdout(y_train, options.validation_split, rng)
        x_val, y_val = x_train[val_idx], y_train[val_idx]
        x_train, y_train = x_train[train_idx], y_train[train_idx]
        validation = f"{options.validation_split:.0%} of the training set, held out"
    else:
        x_val, y_val = load_split(dataset.test, spec)
        x_val = scale(x_val)
        validation = "the test set (as in the article)"
    one_hot = np.eye(n_classes, dtype="float32")
    model = article_cnn(spec, n_classes)
    keep_best = _KeepBest(report, options.epochs)
    fit = model.fit(
        _repeating_batches(x_train, one_hot[y_train], options.batch_size, rng),
        steps_per_epoch=options.steps_per_epoch,
        epochs=options.epochs,
        shuffle=False,  # the generator shuffles; Keras warns that it would ignore shuffle=True
        validation_data=(x_val, one_hot[y_val]),
        validation_batch_size=options.batch_size,
        callbacks=[keep_best],
        verbose=0,
    )
    model.set_weights(keep_best.best_weights)
    history = History.from_keras(fit.history, best_epoch=keep_best.best_epoch,
                                 validation=validation)
    return model, history


def _spec_from_data(dataset: Dataset) -> InputSpec:
    """The article's CNN takes the size and colour mode of the first training image."""
    from PIL import Image

    first = dataset.train.root / dataset.train.images[0].path
    with Image.open(first) as image:
        width, height = image.size
        channels = 1 if image.mode in ("1", "L", "I", "I;16", "F") else 3
    return InputSpec(height=height, width=width, channels=channels)


def n_classes(model: keras.Model) -> int:
    """Classes the model tells apart: its output's width, two for one unit (binary)."""
    from reportgen.outputs import output_contract

    return output_contract(model).n_classes


def sidecar_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.stem + ".reportgen.json")


def save(model: keras.Model, history: History, class_names: Sequence[str],
         options: TrainOptions, path: Path, fingerprint: str = "") -> None:
    """Write ``path`` (.keras) and its JSON sidecar."""
    import tensorflow as tf

    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    spec = input_spec(model)
    sidecar = {
        "format": SIDECAR_FORMAT,
        "class_names": list(class_names),
        "input": asdict(spec),
        "color_mode": spec.color_mode,
        "preprocess": TRAINING_PREPROCESS,
        "resize": TRAINING_RESIZE,
        "training": asdict(options),
        "seed": options.seed,
        "fingerprint": fingerprint,
        "versions": {
            "reportgen": __version__,
            "keras": keras.__version__,
            "tensorflow": tf.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "history": history.to_json(),
    }
    sidecar_path(path).write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")


def read_sidecar(model_path: Path) -> dict | None:
    path = sidecar_path(model_path)
    if not path.is_file():
        return None
    try:
        sidecar = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read the model's sidecar {path}: {error}") from None
    if not isinstance(sidecar, dict) or sidecar.get("format") != SIDECAR_FORMAT:
        return None
    return sidecar


def _model_format(path: Path) -> str:
    """'keras' or 'hdf5', decided from the first bytes, never from the extension."""
    if not path.exists():
        raise UserError(f"model file {path} does not exist")
    if path.is_dir():
        if (path / "saved_model.pb").exists():
            raise UserError(f"{path} is a TensorFlow SavedModel folder; Keras 3 cannot load it "
                            "as a model: save it as a .keras file with model.save('model.keras')")
        raise UserError(f"{path} is a folder, not a model file")
    with path.open("rb") as file:
        head = file.read(8)
    if head.startswith(ZIP_MAGIC):
        if not zipfile.is_zipfile(path):
            raise UserError(f"{path} looks like a .keras file but the archive is truncated or damaged")
        return "keras"
    if head == HDF5_MAGIC:
        return "hdf5"
    raise UserError(f"{path} is not a Keras model file (neither a .keras archive nor HDF5)")


def _explain_load_error(path: Path, error: Exception) -> str:
    text = str(error)
    if "Lambda" in text or "unsafe" in text.lower() or "safe_mode" in text:
        return (f"{path} contains Python code (a Lambda layer or similar) that safe mode refuses "
                "to run; pass --trust-model only if you trust where the file came from")
    if "Could not locate" in text or "custom_objects" in text or "Unknown layer" in text:
        return (f"{path} needs custom Python classes that reportgen does not have; "
                "save the model with built-in Keras layers only")
    first_line = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return f"cannot load {path}: {first_line}"


def load(path: Path, *, trust: bool = False) -> keras.Model:
    """Load a Keras 3 model safely: safe_mode on, no compile; HDF5 only when trusted."""
    fmt = _model_format(path)
    if fmt == "hdf5" and not trust:
        raise UserError(f"{path} is a legacy HDF5 model, which Keras loads without safe mode; "
                        "pass --trust-model only if you trust where the file came from")
    try:
        suffix = ".keras" if fmt == "keras" else ".h5"
        if path.suffix != suffix:
            # Keras picks the loader by extension; hand it a correctly named link.
            return _load_renamed(path, trust, suffix)
        return keras.saving.load_model(path, safe_mode=not trust, compile=False)
    except UserError:
        raise
    except Exception as error:  # Keras raises many types for a bad file; all mean "can't load"
        raise UserError(_explain_load_error(path, error)) from None


def _load_renamed(path: Path, trust: bool, suffix: str) -> keras.Model:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="reportgen-") as folder:
        link = Path(folder) / f"model{suffix}"
        link.symlink_to(path.resolve())
        return keras.saving.load_model(link, safe_mode=not trust, compile=False)


def load_with_sidecar(path: Path, *, trust: bool = False) -> LoadedModel:
    model = load(path, trust=trust)
    sidecar = read_sidecar(path)
    if sidecar is None:
        return LoadedModel(model, None, None, None)
    history = History.from_json(sidecar["history"]) if sidecar.get("history") else None
    return LoadedModel(model, tuple(sidecar["class_names"]), history, sidecar)


def predict_files(model: keras.Model, paths: Sequence[Path], contract: InputContract) -> np.ndarray:
    """Probabilities for images outside any dataset, as the article does with one triangle."""
    from reportgen.decode import check_image, load_image

    images = []
    for path in paths:
        reason = check_image(path, decode=False)  # load_image decodes, and says if that fails
        if reason is not None:
            raise UserError(f"cannot read {path}: {reason}")
        images.append(load_image(path, contract.spec))
    from reportgen.outputs import output_contract

    outputs = np.asarray(model.predict_on_batch(contract.prepare(np.stack(images))), dtype="float32")
    return output_contract(model).to_probabilities(outputs)
