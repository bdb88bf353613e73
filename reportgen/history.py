"""A training history: per-epoch accuracy and loss, read from Keras, a sidecar or a CSVLogger file."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from reportgen.errors import UserError

# Keras 2 logs said "acc"; Keras 3 says "accuracy". Old CSVLogger files still exist, and the
# Keras guides name their metric "acc" (keras-io's BinaryAccuracy(name="acc")) or leave
# a metric class's own name.
_ACCURACY_NAMES = ("acc", "binary_accuracy", "categorical_accuracy",
                   "sparse_categorical_accuracy")
_ALIASES = {**dict.fromkeys(_ACCURACY_NAMES, "accuracy"),
            **{f"val_{name}": "val_accuracy" for name in _ACCURACY_NAMES}}


def canonical(logs: dict) -> dict:
    """``logs`` with accuracy under "accuracy" and "val_accuracy", whatever Keras named it;
    a key already canonical is never replaced by an alias."""
    renamed = {key: value for key, value in logs.items() if key not in _ALIASES}
    for key, value in logs.items():
        renamed.setdefault(_ALIASES.get(key, key), value)
    return renamed
_SERIES = ("accuracy", "val_accuracy", "loss", "val_loss")


@dataclass(frozen=True)
class History:
    accuracy: tuple[float, ...]
    val_accuracy: tuple[float, ...]
    loss: tuple[float, ...]
    val_loss: tuple[float, ...]
    best_epoch: int  # 1-based; the epoch with the highest val_accuracy (first one on ties)
    validation: str  # what served as validation data, in words

    @property
    def epochs(self) -> int:
        return len(self.loss)

    @classmethod
    def from_keras(cls, logs: dict, *, best_epoch: int | None = None,
                   validation: str = "not recorded") -> History:
        logs = canonical(logs)
        series = {key: tuple(float(v) for v in logs.get(key, ())) for key in _SERIES}
        lengths = {len(v) for v in series.values() if v}
        if not lengths:
            raise UserError("the training history has none of accuracy, val_accuracy, loss, val_loss")
        if len(lengths) > 1:
            raise UserError("the training history's series have different numbers of epochs")
        if best_epoch is None:
            val = series["val_accuracy"] or series["accuracy"]
            best_epoch = 1 + max(range(len(val)), key=lambda i: (val[i], -i)) if val else 0
        return cls(best_epoch=best_epoch, validation=validation, **series)

    def to_json(self) -> dict:
        return {
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            "validation": self.validation,
            **{key: list(getattr(self, key)) for key in _SERIES},
        }

    @classmethod
    def from_json(cls, data: dict) -> History:
        data = canonical(data)
        return cls.from_keras({k: data.get(k, ()) for k in _SERIES},
                              best_epoch=data.get("best_epoch"),
                              validation=data.get("validation", "not recorded"))


def read_history(path: Path) -> History:
    """A history from a reportgen sidecar / Keras history JSON, or a CSVLogger CSV."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read the history file {path}: {error}") from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        return _from_json_text(path, text)
    return _from_csv_text(path, text)


def _from_json_text(path: Path, text: str) -> History:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} does not hold a training history")
    if isinstance(data.get("history"), dict):  # a reportgen sidecar
        data = data["history"]
    try:
        return History.from_json(data)
    except (TypeError, ValueError) as error:
        raise UserError(f"{path} holds a training history value that is not a number: {error}") from None


def _from_csv_text(path: Path, text: str) -> History:
    rows = list(csv.DictReader(text.splitlines()))
    if not rows:
        raise UserError(f"{path} has no rows of training history")
    try:
        rows.sort(key=lambda row: int(row.get("epoch", 0)))
        # CSVLogger writes val_* columns of "NA" when there was no validation data.
        columns = {key: [float(row[key]) for row in rows] for key in rows[0]
                   if key != "epoch" and any(row[key] != "NA" for row in rows)}
    except (TypeError, ValueError) as error:
        raise UserError(f"{path} is not a CSVLogger file of numbers: {error}") from None
    return History.from_keras(columns, validation="not recorded (history read from a CSV file)")
