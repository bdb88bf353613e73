"""The report model: plain data that holds exactly what the site shows.

Everything a page needs is decided here or in ``render``: names, slugs, links,
rounding. Templates only loop over it.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np

from reportgen.data import SkippedFile
from reportgen.explain import Explanations
from reportgen.featviz import ChannelFeature
from reportgen.history import History
from reportgen.inputs import InputContract
from reportgen.metrics import Metrics
from reportgen.stats import LayerStats

# report.json's "schema_version": raised when a field changes meaning or goes away.
SCHEMA_VERSION = 1


@functools.lru_cache(maxsize=1 << 16)  # pages name the same images many times (the atlas)
def slugify(name: str, *, hash_length: int = 12) -> str:
    """A file-name-safe slug: readable ASCII part plus a short hash of the exact name.

    The hash keeps names that differ only in punctuation or script apart
    ("a<b" vs "a>b"), and the readable part keeps URLs recognisable.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    readable = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:40].strip("-")
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:hash_length]
    return f"{readable}-{digest}" if readable else digest


@dataclass(frozen=True)
class ModelRow:
    """One line of the model summary, as Keras' ``summary()`` prints it."""

    name: str
    type_name: str
    output_shape: str
    params: int


@dataclass(frozen=True)
class ModelInfo:
    name: str
    source: str  # "trained by reportgen" or the model file's name
    input_shape: tuple[int, int, int]
    rows: tuple[ModelRow, ...]
    total_params: int


@dataclass(frozen=True)
class ImageEntry:
    index: int  # position in the sorted test set
    path: str  # relative to test_set/, as on disk
    slug: str
    true_label: int
    predicted_label: int
    probabilities: tuple[float, ...]

    @property
    def correct(self) -> bool:
        return self.true_label == self.predicted_label

    @property
    def confidence(self) -> float:
        return self.probabilities[self.predicted_label]


@dataclass(frozen=True)
class LayerEntry:
    index: int
    path: str  # "block2/conv" for a layer inside a nested model
    slug: str
    type_name: str
    output_shape: tuple[int, int, int]  # (height, width, channels)
    grid_size_px: tuple[int, int]  # (width, height) of one drawn channel grid
    stats: LayerStats  # every channel, drawn or not
    shown_channels: tuple[int, ...]  # the channel plan: drawn in grids, in this order
    # Feature visualizations of the drawn channels (reportgen.featviz), in channel order; ()
    # without them (--no-features).
    features: tuple[ChannelFeature, ...] = ()


@dataclass(frozen=True)
class FeatureLayerRow:
    """A feature-map layer of the model, shown or not (the overview lists them all)."""

    path: str
    type_name: str
    output_shape: tuple[int, int, int]
    shown: bool


@dataclass(frozen=True)
class Report:
    title: str
    class_names: tuple[str, ...]
    class_slugs: tuple[str, ...]
    model: ModelInfo
    images: tuple[ImageEntry, ...]
    layers: tuple[LayerEntry, ...]
    metrics: Metrics
    history: History | None
    validation: str
    data_name: str
    skipped: tuple[SkippedFile, ...]
    empty_classes: tuple[str, ...]
    scale: str  # "layer" or "channel"
    colormap: str
    images_per_page: int
    drawn_indices: tuple[int, ...]  # images with feature maps drawn, ascending (the site plan)
    generated_at: str | None = None  # only when SOURCE_DATE_EPOCH is set
    reportgen_version: str = ""
    warnings: tuple[str, ...] = field(default=())
    feature_layers: tuple[FeatureLayerRow, ...] = ()  # every feature-map layer; () when all shown
    layer_rule: str = ""  # how the shown layers were chosen
    max_channels: int | None = None  # the channel plan's cap (None: every channel)
    input_contract: InputContract | None = None  # how test images became the model's input
    explanations: Explanations | None = None  # None with --no-explain
    pictures: str = "png"  # input pictures and CAM overlays: "png" or "jpeg" (layout names them)

    @property
    def drawn(self) -> tuple[ImageEntry, ...]:
        return tuple(self.images[i] for i in self.drawn_indices)


def image_slug(path: str) -> str:
    return slugify(path)


def layer_slug(path: str) -> str:
    return slugify(path)


def model_info(model, source: str) -> ModelInfo:
    """The top-level layers with their output shapes and parameter counts."""
    rows = []
    for layer in model.layers:
        try:
            shape = str(tuple(layer.output.shape))
        except (AttributeError, ValueError):  # a layer called more than once has no single output
            shape = "multiple"
        rows.append(ModelRow(layer.name, type(layer).__name__, shape.replace("None", "batch"),
                             int(layer.count_params())))
    input_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    return ModelInfo(name=model.name, source=source, input_shape=input_shape, rows=tuple(rows),
                     total_params=int(model.count_params()))


def images_from_predictions(paths: list[str], slugs: list[str], true_labels: np.ndarray,
                            probabilities: np.ndarray) -> tuple[ImageEntry, ...]:
    predicted = probabilities.argmax(axis=1)
    return tuple(
        ImageEntry(index=i, path=path, slug=slugs[i], true_label=int(true_labels[i]),
                   predicted_label=int(predicted[i]),
                   probabilities=tuple(float(p) for p in probabilities[i]))
        for i, path in enumerate(paths)
    )
