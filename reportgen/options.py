"""Training options: plain data, importable without TensorFlow (the CLI builds them first)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainOptions:
    """The article's schedule by default: 20 epochs of 100 steps of 16 images."""

    epochs: int = 20
    steps_per_epoch: int = 100
    batch_size: int = 16
    validation_split: float = 0.0  # 0: validate on the test set, as the article does
    seed: int = 0
