"""A tiny report model built by hand: renders without TensorFlow, a disk or a model."""

from __future__ import annotations

import numpy as np

from reportgen import drawing
from reportgen.data import SkippedFile
from reportgen.decode import InputSpec
from reportgen.history import History
from reportgen.inputs import InputContract
from reportgen.metrics import compute_metrics
from reportgen.report import (
    LayerEntry,
    ModelInfo,
    ModelRow,
    Report,
    image_slug,
    images_from_predictions,
    layer_slug,
    slugify,
)
from reportgen.stats import LayerStatsAccumulator

CLASS_NAMES = ("circles", "squares", "triangles")


def tiny_report(class_names=CLASS_NAMES, paths=None, images_per_page: int = 2,
                with_history: bool = True, conv_channels: int = 3) -> Report:
    """Six 8x8 images, two layers (4x4x3 and 2x2x2), one dead channel, two mistakes;
    ``conv_channels`` for a first layer of more channels (over 64: an atlas of pages)."""
    rng = np.random.default_rng(0)
    n_classes = len(class_names)
    if paths is None:
        paths = [f"{class_names[i % n_classes]}/img_{i}.png" for i in range(6)]
    true_labels = np.array([i % n_classes for i in range(len(paths))])
    probabilities = rng.dirichlet(np.ones(n_classes), size=len(paths)).astype(np.float32)
    for i, label in enumerate(true_labels):  # make all but two images correct
        if i not in (1, 4):
            probabilities[i] = np.roll(np.sort(probabilities[i])[::-1], label)
    layers = []
    for index, (path, shape) in enumerate((("block/conv", (4, 4, conv_channels)),
                                           ("pool", (2, 2, 2)))):
        maps = rng.random((len(paths), *shape), dtype=np.float32)
        maps[..., 0] = 0.0 if index == 0 else maps[..., 0]  # one dead channel
        accumulator = LayerStatsAccumulator(shape[2], n_classes)
        accumulator.update(maps, true_labels, list(paths))
        _, _, grid_height, grid_width = drawing.grid_shape(*shape)
        layers.append(LayerEntry(index=index, path=path, slug=layer_slug(path), type_name="Conv2D",
                                 output_shape=shape, grid_size_px=(grid_width, grid_height),
                                 stats=accumulator.result(), shown_channels=tuple(range(shape[2]))))
    history = History.from_keras({"accuracy": [0.5, 0.8], "val_accuracy": [0.6, 0.7],
                                  "loss": [1.0, 0.5], "val_loss": [0.9, 0.8]},
                                 validation="the test set (as in the article)") if with_history else None
    return Report(
        title="tiny on fixtures",
        class_names=tuple(class_names),
        class_slugs=tuple(slugify(name) for name in class_names),
        model=ModelInfo(name="tiny", source="trained by reportgen", input_shape=(8, 8, 3),
                        rows=(ModelRow("conv", "Conv2D", "(batch, 4, 4, 3)", 84),
                              ModelRow("predictions", "Dense", f"(batch, {n_classes})", 27)),
                        total_params=111),
        images=images_from_predictions(list(paths), [image_slug(p) for p in paths], true_labels,
                                       probabilities),
        layers=tuple(layers),
        metrics=compute_metrics(true_labels, probabilities.argmax(axis=1), n_classes),
        history=history,
        validation=history.validation if history else "unknown (no training history)",
        data_name="fixtures",
        skipped=(SkippedFile("test_set/circles/broken.png", "truncated image data"),),
        empty_classes=(),
        scale="layer",
        colormap="viridis",
        images_per_page=images_per_page,
        drawn_indices=tuple(range(len(paths))),
        reportgen_version="0.0.test",
        warnings=("1 unreadable file(s) skipped; each is listed with its reason.",),
        input_contract=InputContract(InputSpec(8, 8, 3), "unit",
                                     "the model's reportgen sidecar says training used unit"),
    )
