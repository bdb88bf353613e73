"""Confusion matrix and per-class scores against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

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
