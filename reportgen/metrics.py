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


def compute_metrics(true_labels: np.ndarray, predicted_labels: np.ndarray, n_classes: int) -> Metrics:
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (np.asarray(true_labels), np.asarray(predicted_labels)), 1)
    per_class = []
    for c in range(n_classes):
        hits = confusion[c, c]
        precision = _ratio(hits, confusion[:, c].sum())
        recall = _ratio(hits, confusion[c, :].sum())
        f1 = _ratio(2 * precision * recall, precision + recall)
        per_class.append(ClassScores(precision, recall, f1, int(confusion[c, :].sum())))
    return Metrics(confusion=confusion, per_class=tuple(per_class))
