"""Classification results: confusion matrix and per-class scores, from labels alone."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassScores:
    precision: float
    recall: float
    f1: float
    support: int  # true images of the class


@dataclass(frozen=True)
class Metrics:
    confusion: np.ndarray  # (classes, classes) int64: rows true, columns predicted
    per_class: tuple[ClassScores, ...]

    @property
    def n_images(self) -> int:
        return int(self.confusion.sum())

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / self.n_images) if self.n_images else 0.0

    @property
    def macro_f1(self) -> float:
        return float(np.mean([scores.f1 for scores in self.per_class]))


def _ratio(numerator: float, denominator: float) -> float:
    """Precision or recall with an empty denominator is 0, as scikit-learn's zero_division=0."""
    return float(numerator / denominator) if denominator else 0.0


def _check_labels(true_labels: np.ndarray, predicted_labels: np.ndarray, n_classes: int) -> None:
    """Refuse what np.add.at would count silently in the wrong cell (a label of -1 in the last row)."""
    if n_classes < 1:
        raise ValueError(f"n_classes must be at least 1, got {n_classes}")
    for name, labels in (("true", true_labels), ("predicted", predicted_labels)):
        if labels.ndim != 1:
            raise ValueError(f"{name} labels must be one-dimensional, got shape {labels.shape}")
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"{name} labels must be integers, got {labels.dtype}")
        if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
            raise ValueError(f"{name} labels must lie in 0..{n_classes - 1}, "
                             f"got {labels.min()}..{labels.max()}")
    if true_labels.shape != predicted_labels.shape:
        raise ValueError(f"{len(true_labels)} true labels but {len(predicted_labels)} predicted")


def compute_metrics(true_labels: np.ndarray, predicted_labels: np.ndarray, n_classes: int) -> Metrics:
    """Labels are class indices in 0..n_classes-1; a ValueError names any that are not."""
    true_labels, predicted_labels = np.asarray(true_labels), np.asarray(predicted_labels)
    _check_labels(true_labels, predicted_labels, n_classes)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (true_labels, predicted_labels), 1)
    per_class = []
    for c in range(n_classes):
        hits = confusion[c, c]
        precision = _ratio(hits, confusion[:, c].sum())
        recall = _ratio(hits, confusion[c, :].sum())
        f1 = _ratio(2 * precision * recall, precision + recall)
        per_class.append(ClassScores(precision, recall, f1, int(confusion[c, :].sum())))
    return Metrics(confusion=confusion, per_class=tuple(per_class))
