"""Confusion matrix and per-class scores against hand-computed values and a brute-force count."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from reportgen.metrics import compute_metrics


def test_scores_match_a_hand_computation():
    true = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 2, 2])
    metrics = compute_metrics(true, predicted, 3)
    assert metrics.confusion.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert metrics.accuracy == pytest.approx(4 / 6)
    circles, squares, triangles = metrics.per_class
    assert (circles.precision, circles.recall, circles.support) == (1.0, pytest.approx(2 / 3), 3)
    assert circles.f1 == pytest.approx(0.8)
    assert (squares.precision, squares.recall) == (0.5, 0.5)
    assert (triangles.precision, triangles.recall) == (0.5, 1.0)
    assert metrics.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_a_class_never_predicted_scores_zero_not_nan():
    metrics = compute_metrics(np.array([0, 1]), np.array([0, 0]), 3)
    assert metrics.per_class[1].precision == 0.0 and metrics.per_class[1].f1 == 0.0
    assert metrics.per_class[2].support == 0
    assert np.isfinite(metrics.macro_f1)


def brute_force(true: list[int], predicted: list[int], n_classes: int) -> dict:
    """Every number by counting pairs one at a time; 0 wherever a ratio has nothing below it."""
    confusion = [[sum(1 for t, p in zip(true, predicted, strict=True) if (t, p) == (row, column))
                  for column in range(n_classes)] for row in range(n_classes)]
    per_class = []
    for c in range(n_classes):
        hits = sum(1 for t, p in zip(true, predicted, strict=True) if t == p == c)
        predicted_c = sum(1 for p in predicted if p == c)
        support = sum(1 for t in true if t == c)
        precision = hits / predicted_c if predicted_c else 0.0
        recall = hits / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class.append((precision, recall, f1, support))
    correct = sum(1 for t, p in zip(true, predicted, strict=True) if t == p)
    return {"confusion": confusion, "per_class": per_class,
            "accuracy": correct / len(true) if true else 0.0,
            "macro_f1": sum(f1 for _, _, f1, _ in per_class) / n_classes}


@st.composite
def labelled(draw) -> tuple[list[int], list[int], int]:
    """Labels of up to 6 classes, often with classes that no image has or no image is predicted as."""
    n_classes = draw(st.integers(1, 6))
    used = draw(st.lists(st.integers(0, n_classes - 1), min_size=1, unique=True))
    pairs = draw(st.lists(st.tuples(st.sampled_from(used), st.integers(0, n_classes - 1)),
                          max_size=40))
    return [t for t, _ in pairs], [p for _, p in pairs], n_classes


@given(labelled())
@example(([0, 0, 3], [0, 3, 3], 5))  # classes 1, 2 and 4: no image, never predicted
@example(([], [], 3))
@example(([2, 2], [0, 1], 3))  # no hits at all
def test_metrics_match_a_brute_force_count(case):
    true, predicted, n_classes = case
    metrics = compute_metrics(np.array(true, dtype=np.int64), np.array(predicted, dtype=np.int64),
                              n_classes)
    expected = brute_force(true, predicted, n_classes)
    assert metrics.confusion.dtype == np.int64
    assert metrics.confusion.tolist() == expected["confusion"]
    assert metrics.n_images == len(true)
    for scores, (precision, recall, f1, support) in zip(metrics.per_class, expected["per_class"],
                                                        strict=True):
        assert (scores.precision, scores.recall, scores.f1) == pytest.approx((precision, recall, f1),
                                                                             rel=1e-12)
        assert scores.support == support
    assert metrics.accuracy == pytest.approx(expected["accuracy"], rel=1e-12)
    assert metrics.macro_f1 == pytest.approx(expected["macro_f1"], rel=1e-12)


BAD_LABELS = {
    "true -1": ([0, -1], [0, 0], "true labels must lie in 0..2, got -1..0"),
    "true too big": ([0, 3], [0, 0], "true labels must lie in 0..2, got 0..3"),
    "predicted -1": ([0, 1], [-1, 0], "predicted labels must lie in 0..2, got -1..0"),
    "predicted too big": ([0, 1], [0, 7], "predicted labels must lie in 0..2, got 0..7"),
    "floats": ([0.0, 1.0], [0, 1], "true labels must be integers"),
    "two-dimensional": ([[0, 1]], [[0, 1]], "true labels must be one-dimensional"),
    "lengths differ": ([0, 1, 2], [0, 1], "3 true labels but 2 predicted"),
}


@pytest.mark.parametrize(("true", "predicted", "message"), BAD_LABELS.values(), ids=BAD_LABELS)
def test_labels_outside_the_classes_are_refused(true, predicted, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        compute_metrics(np.array(true), np.array(predicted), 3)


def test_no_classes_is_refused():
    with pytest.raises(ValueError, match="n_classes must be at least 1"):
        compute_metrics(np.array([], dtype=np.int64), np.array([], dtype=np.int64), 0)
