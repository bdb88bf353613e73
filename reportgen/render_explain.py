"""Rendering of the explanations: views for Grad-CAM overlays, the mean maps beside the matrix,
the reliability diagram, the likely-label-errors page and the embedding map; their report.json.

Pure, like ``render``: the report model in, display-ready dicts out. The two diagrams are
inline SVG written by templates from coordinates decided here, so every point can be a
plain link and no script is needed.
"""

from __future__ import annotations

import math

import numpy as np

from reportgen import layout, overlays
from reportgen.explain import EMBEDDING_MAX_POINTS, TSNE_RANDOM_STATE, even_sample
from reportgen.plan import class_pairs_shown
from reportgen.report import ImageEntry, Report

LABEL_ERRORS_SHOWN = 24
HARDEST_CORRECT_SHOWN = 12
CAM_TILE_PX = 72
MAP_DECIMALS = 4  # report.json: map values are rounded, so the file stays small and stable
# matplotlib's tab10, then tab20's light shades: a colour per class for up to 20 classes.
CLASS_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896",
                 "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5")
DIAGRAM = {"left": 44, "top": 12, "size": 240, "bottom": 50}
EMBEDDING_SIZE_PX = 560
EMBEDDING_MARGIN_PX = 10


def class_colour(label: int) -> str:
    return CLASS_COLOURS[label % len(CLASS_COLOURS)]


def cam_src(report: Report, image: ImageEntry) -> str | None:
    if report.explanations is None:
        return None
    return layout.cam_asset(image.slug, picture_format=report.pictures)


def legend() -> dict:
    return {"text": overlays.LEGEND, "stops": overlays.legend_stops()}


def image_cam_view(report: Report, image: ImageEntry, width: int, height: int) -> dict | None:
    """The overlays on an image page: the predicted class, and the true class for a mistake."""
    explanations = report.explanations
    if explanations is None:
        return None
    names = report.class_names
    overlays_ = [{"src": layout.cam_asset(image.slug, picture_format=report.pictures),
                  "caption": f"Where it looks for {names[image.predicted_label]} (predicted)",
                  "alt": f"Grad-CAM of {image.path} for {names[image.predicted_label]}"}]
    if not image.correct:
        overlays_.append({"src": layout.cam_asset(image.slug, "true",
                                                  picture_format=report.pictures),
                          "caption": f"Where it looks for {names[image.true_label]} (true)",
                          "alt": f"Grad-CAM of {image.path} for {names[image.true_label]}"})
    quality = float(explanations.label_quality[image.index])
    return {
        "overlays": overlays_, "width": width, "height": height,
        "note": (f"Grad-CAM on layer {explanations.cam_layer}, for the class's "
                 f"{explanations.cam_target.replace('_', ' ')}; stretched bilinearly from "
                 f"{explanations.cam_maps.shape[1]} × {explanations.cam_maps.shape[2]} to the "
                 "input's size and laid over it at half opacity."),
        "label_quality": f"{quality:.3f}",
        "entropy": f"{float(explanations.entropy[image.index]):.3f}",
    }


# -- results page: mean maps, reliability diagram, channels behind a confusion ----------------

def results_explain_view(report: Report) -> dict | None:
    explanations = report.explanations
    if explanations is None:
        return None
    names, slugs = report.class_names, report.class_slugs
    confusion = report.metrics.confusion
    # Beyond the classes the matrix shows as a table, a map per cell would cost classes²
    # pictures: only each class's own mean map is shown then.
    with_cells = class_pairs_shown(len(names))
    cells = [{"name": names[t], "cells": [{
        "src": layout.cam_cell_asset(slugs[t], slugs[p]),
        # Correct predictions have no cell page: the class page lists them.
        "href": layout.class_page(slugs[t]) if t == p else layout.cell_page(slugs[t], slugs[p]),
        "count": int(confusion[t, p]),
        "alt": f"mean Grad-CAM of {names[t]} predicted as {names[p]}",
        "empty": int(confusion[t, p]) == 0,
    } for p in range(len(names))] if with_cells else []} for t in range(len(names))]
    classes = [{"name": names[c], "href": layout.class_page(slugs[c]),
                "src": layout.cam_class_asset(slugs[c]),
                "alt": f"mean Grad-CAM of {names[c]} for its own class"}
               for c in range(len(names))]
    layer_slugs = {layer.path: layer.slug for layer in report.layers}
    cam_slug = layer_slugs.get(explanations.cam_layer)
    channels = []
    for t, p, top in explanations.confusion_channels:
        channels.append({
            "cell": f"{names[t]} → {names[p]}",
            "href": layout.cell_page(slugs[t], slugs[p]),
            "channels": [{"label": f"channel {c} (+{excess:.3g})",
                          "href": layout.channel_link(cam_slug, c) if cam_slug else None}
                         for c, excess in top],
        })
    return {
        "cam_note": (f"Mean Grad-CAM ({explanations.cam_layer}, "
                     f"{explanations.cam_maps.shape[1]} × {explanations.cam_maps.shape[2]}) of "
                     "the images in each cell, for the predicted class; empty cells are blank. "
                     "Per class: the mean map for the true class over all its images."),
        "cell_rows": cells,
        "class_names": list(names) if with_cells else [],
        "classes": classes,
        "tile": CAM_TILE_PX,
        "legend": legend(),
        "reliability": reliability_view(report),
        "channels": channels,
        "channels_note": ("For every off-diagonal cell with at least 3 images: the channels of "
                          f"{explanations.cam_layer} whose mean activation on those images most "
                          "exceeds their mean on the correctly classified images of the true "
                          "class."),
        "labels_href": layout.LABEL_ERRORS_PAGE,
        "embedding_href": layout.EMBEDDING_PAGE,
    }


def reliability_view(report: Report) -> dict:
    """Bars of accuracy per confidence bin over the diagonal of perfect calibration."""
    calibration = report.explanations.calibration
    left, top, size = DIAGRAM["left"], DIAGRAM["top"], DIAGRAM["size"]
    bar_width = size / calibration.bins
    bars = []
    for i, (count, accuracy, confidence) in enumerate(zip(
            calibration.counts, calibration.accuracy, calibration.confidence, strict=True)):
        height = (accuracy or 0.0) * size
        bars.append({
            "x": f"{left + i * bar_width + 1:.1f}", "y": f"{top + size - height:.1f}",
            "width": f"{bar_width - 2:.1f}", "height": f"{height:.1f}",
            "count": str(count), "count_x": f"{left + (i + 0.5) * bar_width:.1f}",
            "count_y": f"{top + size + 14:.1f}",
            "gap_y": f"{top + size - (confidence or 0.0) * size:.1f}",
            "empty": count == 0,
            "title": (f"top probability {i / calibration.bins:.1f}–{(i + 1) / calibration.bins:.1f}"
                      f": {count} images" + ("" if count == 0 else
                                             f", accuracy {accuracy:.3f}, mean confidence "
                                             f"{confidence:.3f}")),
        })
    return {
        "width": left + size + 12, "height": top + size + DIAGRAM["bottom"],
        "left": left, "top": top, "size": size, "right": left + size, "bottom_y": top + size,
        "label_y": top + size + 28, "middle_x": left + size / 2,
        "ticks": [{"value": f"{v / 10:.1f}", "x": f"{left + v * size / 10:.1f}",
                   "y": f"{top + size - v * size / 10:.1f}"} for v in (0, 5, 10)],
        "bars": bars,
        "ece": f"{calibration.ece:.4f}",
        "note": ("10 equal-width bins of the top probability; a bar's height is the accuracy "
                 "of its images, the dark tick their mean confidence, the number below how many "
                 "images it holds. A calibrated model's bars reach the diagonal. Expected "
                 "calibration error (ECE): the count-weighted mean gap between accuracy and "
                 "confidence."),
    }


# -- likely label errors ---------------------------------------------------------------------

def label_errors_view(report: Report, views) -> dict:
    explanations = report.explanations
    names = report.class_names
    quality = explanations.label_quality
    order = sorted(range(len(report.images)), key=lambda i: (float(quality[i]),
                                                             report.images[i].path))
    suspects = []
    for i in order[:LABEL_ERRORS_SHOWN]:
        image = report.images[i]
        suspects.append({
            "thumb": {**views.thumb(image), "cam_src": None},  # the overlays have columns here
            "given": names[image.true_label],
            "model": names[image.predicted_label],
            "quality": f"{float(quality[i]):.3f}",
            "predicted_cam": layout.cam_asset(image.slug, picture_format=report.pictures),
            "true_cam": (layout.cam_asset(image.slug, "true", picture_format=report.pictures)
                         if not image.correct else None),
        })
    correct = [i for i in range(len(report.images)) if report.images[i].correct]
    hardest = sorted(correct, key=lambda i: (-float(explanations.entropy[i]),
                                             report.images[i].path))[:HARDEST_CORRECT_SHOWN]
    return {
        "lead": (f"The {len(suspects)} test images whose given label the model finds least "
                 "likely: label quality is the probability the model gives the given label "
                 "(cleanlab's self-confidence). Low values are mistakes of the model or of "
                 "the label; the overlays show where it looked."),
        "suspects": suspects,
        "hardest": [{**views.thumb(report.images[i]),
                     "entropy": f"{float(explanations.entropy[i]):.3f}"} for i in hardest],
        "hardest_note": ("Classified correctly, but with the most uncertainty (highest entropy "
                         "of the probabilities, in nats)."),
        "legend": legend(),
        "tile": max(views.thumb_size),
    }


# -- embedding map ---------------------------------------------------------------------------

def embedding_view(report: Report) -> dict:
    explanations = report.explanations
    coordinates = explanations.embedding.coordinates
    true_labels = np.array([i.true_label for i in report.images], dtype=np.int64)
    shown = even_sample(true_labels)
    size, margin = EMBEDDING_SIZE_PX, EMBEDDING_MARGIN_PX
    low = coordinates[shown].min(axis=0) if len(shown) else np.zeros(2)
    high = coordinates[shown].max(axis=0) if len(shown) else np.ones(2)
    span = np.where(high > low, high - low, 1.0)
    points = []
    for i in shown:
        image = report.images[int(i)]
        x, y = (coordinates[i] - low) / span
        points.append({
            "href": layout.image_page(image.slug),
            "x": f"{margin + x * (size - 2 * margin):.1f}",
            "y": f"{margin + (1 - y) * (size - 2 * margin):.1f}",
            "fill": class_colour(image.true_label),
            "wrong": not image.correct,
            "title": (f"{image.path}: {report.class_names[image.true_label]}"
                      + ("" if image.correct else
                         f", predicted {report.class_names[image.predicted_label]}")),
        })
    embedding = explanations.embedding
    sample_note = (f"All {len(report.images)} test images." if len(shown) == len(report.images)
                   else f"{len(shown)} of {len(report.images)} test images: an even sample of "
                        f"every class, in proportion to its size (at most "
                        f"{EMBEDDING_MAX_POINTS:,} points).")
    if embedding.method == "tsne":
        method = "t-SNE"
        axis_labels = {"x": "t-SNE axis 1 →", "y": "t-SNE axis 2 →"}
        projection = (f"mapped to two dimensions by t-SNE (scikit-learn, perplexity "
                      f"{embedding.perplexity:.3g}, PCA initialisation, random state "
                      f"{TSNE_RANDOM_STATE}): close points are images whose features are "
                      "alike; the axes, and distances between clusters, mean little.")
    else:
        method = "PCA"
        first, second = embedding.explained_variance
        axis_labels = {"x": f"PCA axis 1 ({first:.1%}) →", "y": f"PCA axis 2 ({second:.1%}) →"}
        projection = (f"projected on its first two principal components (PCA): axis 1 explains "
                      f"{first:.1%} of the variance, axis 2 {second:.1%}.")
    fallback = f" Asked for t-SNE, but {embedding.fallback}." if embedding.fallback else ""
    return {
        "size": size,
        "method": method,
        "axis_labels": {**axis_labels, "bottom": size - 3, "middle": size / 2},
        "points": points,
        "legend": [{"name": name, "fill": class_colour(c)}
                   for c, name in enumerate(report.class_names)],
        "lead": (f"The input of the classifier layer {explanations.embedding_layer} for every "
                 f"test image, {projection}{fallback} {sample_note} Each point links to its "
                 "image; colour is the true class, a black ring marks a mistake."),
    }


# -- report.json ---------------------------------------------------------------------------------

def _rounded(values: np.ndarray) -> list:
    return np.round(values.astype(np.float64), MAP_DECIMALS).tolist()


def explanations_json(report: Report) -> dict | None:
    explanations = report.explanations
    if explanations is None:
        return None
    embedding = explanations.embedding
    return {
        "cam_layer": explanations.cam_layer,
        "cam_target": explanations.cam_target,
        "embedding": {"layer": explanations.embedding_layer, "method": embedding.method,
                      "explained_variance": None if embedding.explained_variance is None
                      else list(embedding.explained_variance)},
    }


def calibration_json(report: Report) -> dict | None:
    if report.explanations is None:
        return None
    calibration = report.explanations.calibration
    return {"bins": calibration.bins, "ece": calibration.ece, "counts": list(calibration.counts),
            "accuracy": list(calibration.accuracy), "confidence": list(calibration.confidence)}


def image_json(report: Report, image: ImageEntry) -> dict:
    """The per-image fields: cam, cam_true (mistakes only), label_quality, embedding."""
    explanations = report.explanations
    if explanations is None:
        return {}
    i = image.index
    fields = {"cam": {"class": image.predicted_label, "map": _rounded(explanations.cam_maps[i]),
                      "overlay": layout.cam_asset(image.slug, picture_format=report.pictures)}}
    if not image.correct:
        fields["cam_true"] = {"class": image.true_label,
                              "map": _rounded(explanations.cam_true_maps[i]),
                              "overlay": layout.cam_asset(image.slug, "true",
                                                          picture_format=report.pictures)}
    x, y = explanations.embedding.coordinates[i]
    fields["label_quality"] = float(explanations.label_quality[i])
    fields["embedding"] = [float(x) if math.isfinite(x) else None,
                           float(y) if math.isfinite(y) else None]
    return fields
