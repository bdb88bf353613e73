"""Build and training options: plain data, importable without TensorFlow (the CLI builds them
first), and the one place their defaults are written: the CLI shows and uses these."""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from reportgen import plan


@dataclass(frozen=True)
class TrainOptions:
    """The article's schedule by default: 20 epochs of 100 steps of 16 images."""

    epochs: int = 20
    steps_per_epoch: int = 100
    batch_size: int = 16
    validation_split: float = 0.0  # 0: validate on the test set, as the article does
    seed: int = 0


@dataclass(frozen=True)
class BuildOptions:
    data: Path
    out: Path
    labels: Path | None = None  # a path,label CSV naming the test images instead of class folders
    model_path: Path | None = None
    history_path: Path | None = None
    model_cache: Path = Path("output/model/model.keras")
    retrain: bool = False
    trust_model: bool = False
    preprocess: str = "auto"  # reportgen.inputs.PREPROCESS_CHOICES
    resize: str = "stretch"  # reportgen.resize.RESIZE_METHODS
    layer_patterns: tuple[str, ...] = ()
    scale: str = "layer"
    colormap: str = "viridis"
    pictures: str = "auto"  # input pictures and CAM overlays: reportgen.drawing.PICTURE_CHOICES
    images_per_page: int = 24
    max_gallery_images: int | None = None
    max_channels: int = plan.DEFAULT_MAX_CHANNELS
    memory_budget_mb: int = plan.DEFAULT_MEMORY_BUDGET_MB
    max_site_mb: int = plan.DEFAULT_MAX_SITE_MB
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    strict: bool = False
    title: str | None = None
    explain: bool = True  # Grad-CAM, calibration, label quality, embedding (reportgen.explain)
    cam_layer: str | None = None  # None: the last feature-map layer larger than 1x1
    embedding: str = "pca"  # the embedding map's method: reportgen.explain.EMBEDDING_METHODS
    site_url: str | None = None  # where the site will be published, ending in "/" (publish.site_url)
    engine: str = "local"  # reportgen.engines.ENGINES: where the passes run
    workers: int | None = None  # --engine dask: a LocalCluster of this many processes
    scheduler: str | None = None  # --engine dask: the address of a running cluster's scheduler
    features: bool = True  # feature visualization of the drawn channels (reportgen.featviz)
    feature_steps: int = 64  # gradient-ascent steps per channel (benchmarks/featviz.py)
    feature_channels: int | None = None  # channels visualized per build; None: featviz's budget
    generate_missing_data: bool = False
    train: TrainOptions = field(default_factory=TrainOptions)


def default(options: type, name: str):
    """The default of one field of an options dataclass, as the CLI shows it."""
    for option in fields(options):
        if option.name == name:
            if option.default_factory is not MISSING:
                return option.default_factory()
            return option.default
    raise KeyError(name)
