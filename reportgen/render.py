"""Rendering: the report model in, ``{relative path: bytes}`` out. No disk, no model.

Each page gets a small view (plain dicts of display-ready strings) built here;
the templates only loop and branch over it.
"""

from __future__ import annotations

import json
import math
import posixpath
from collections.abc import Iterator
from functools import cached_property, lru_cache
from pathlib import Path
from xml.sax.saxutils import escape

import jinja2

from reportgen import drawing, layout, render_explain
from reportgen.plan import (
    CHANNEL_RANKING,
    class_pairs_shown,
)
from reportgen.report import (
    SCHEMA_VERSION,
    FeatureLayerRow,
    ImageEntry,
    LayerEntry,
    Report,
)

STATIC_FILES = ("style.css", "site.js", "favicon.svg")
THUMB_TARGET_PX = 84
IMAGE_PAGE_TARGET_PX = 224
MAP_TILE_TARGET_PX = 56
GRID_MAX_WIDTH_PX = 960
ATLAS_TILE_TARGET_PX = 30
TOP_MISTAKES = 12
PAGER_NEIGHBOURS = 2
CONFUSED_PAIRS = 50
TOP_CLASSES = 10  # probability bars and class means shown per image and channel, many classes
CONFUSION_PICTURE_PX = 800  # the matrix picture is at least this wide
THUMBS_PER_PAGE = 96  # class and cell pages
ATLAS_CHANNELS_PER_PAGE = layout.ATLAS_CHANNELS_PER_PAGE
RANKING_SHOWN = 64
# A gallery page holds at most this many pixels of grids (about 15 screens), so pages of
# big maps hold fewer images.
GALLERY_PAGE_GRID_PX = 8_000
GALLERY_ENTRY_EXTRA_PX = 40  # caption and spacing per gallery entry


def templates_dir() -> Path:
    """Templates ship inside the wheel as reportgen/templates; a checkout keeps them at the top."""
    packaged = Path(__file__).parent / "templates"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "templates"


class _ViewEnvironment(jinja2.Environment):
    """Jinja looks `view.name` up as an attribute first and as a key only after the attribute
    lookup has raised; the views are plain dicts, so their keys are looked up first here. A
    dict's methods are never named in a template."""

    def getattr(self, obj, attribute):
        if type(obj) is dict and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = _ViewEnvironment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # the templates ship with the package: no stat() per page
    )
    env.globals["macros"] = env.get_template("macros.html").make_module()
    return env


# -- formatting: every number on a page is formatted here, never in a template ---------------

def percent(share: float) -> str:
    return f"{share * 100:.1f}%"


def number(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.3g}"


def shade_class(share: float) -> str:
    return f"shade-{round(share * 10)}"


def integer_scale(target_px: int, size_px: int, max_px: int | None = None) -> int:
    """A whole-number zoom, so upscaled pixels stay square and crisp."""
    scale = max(1, round(target_px / size_px))
    if max_px is not None:
        scale = max(1, min(scale, max_px // size_px))
    return scale


def fit_size(target_px: int, height: int, width: int) -> tuple[int, int]:
    """(height, width) on the page: small pictures zoomed by a whole number (crisp pixels),
    pictures bigger than ``target_px`` shrunk to it, keeping their shape."""
    longest = max(height, width)
    if longest <= target_px:
        scale = integer_scale(target_px, longest)
        return height * scale, width * scale
    return max(1, round(height * target_px / longest)), max(1, round(width * target_px / longest))


# -- views -----------------------------------------------------------------------------------

class Views:
    """Builds page views from one report; caches what many pages share."""

    def __init__(self, report: Report):
        self.report = report
        height, width = report.model.input_shape[:2]
        self.thumb_size = fit_size(THUMB_TARGET_PX, height, width)
        self.input_size = (height, width)
        self.drawn = report.drawn
        # Position of each drawn image in the galleries, by image index.
        self.gallery_position = {i: position for position, i in enumerate(report.drawn_indices)}
        self.many_classes = not class_pairs_shown(len(report.class_names))
        self.macros = environment().globals["macros"]
        # What is the same on every page that shows a layer, worked out once per layer.
        self._layer_grids = {layer.slug: self._layer_grid(layer) for layer in report.layers}
        self._max_class_mean = {layer.slug: max(
            (m for ch in layer.stats.channels for m in ch.class_means if math.isfinite(m)),
            default=0.0) for layer in report.layers}
        self._gallery_heads: dict[tuple[int, str], dict] = {}
        # An atlas names its top images by path: their slugs are the report's (one owner).
        self.path_slug = {image.path: image.slug for image in report.images}.__getitem__

    def class_name(self, label: int) -> str:
        return self.report.class_names[label]

    def thumb(self, image: ImageEntry) -> dict:
        height, width = self.input_size
        return {
            "href": layout.image_page(image.slug),
            "src": layout.input_asset(image.slug, picture_format=self.report.pictures),
            "path": image.path,
            "name": posixpath.basename(image.path),
            "width": self.thumb_size[1],
            "height": self.thumb_size[0],
            "true_name": self.class_name(image.true_label),
            "predicted_name": self.class_name(image.predicted_label),
            "correct": image.correct,
            "confidence": percent(image.confidence),
            "css": "correct" if image.correct else "wrong",
            "cam_src": render_explain.cam_src(self.report, image),
        }

    def _layer_grid(self, layer: LayerEntry) -> tuple[int, int, str]:
        """(width, height) of a layer's grid on the page and the start of its alt text."""
        width, height = layer.grid_size_px
        # Tiles about MAP_TILE_TARGET_PX wide, as long as the whole grid fits GRID_MAX_WIDTH_PX.
        scale = max(1, min(integer_scale(MAP_TILE_TARGET_PX, layer.output_shape[1]),
                           GRID_MAX_WIDTH_PX // width))
        return width * scale, height * scale, f"{self.channels_sentence(layer)} of {layer.path}"

    def grid(self, layer: LayerEntry, image: ImageEntry) -> dict:
        width, height, alt = self._layer_grids[layer.slug]
        return {
            "src": layout.map_asset(layer.slug, image.slug),
            "width": width,
            "height": height,
            "alt": f"{alt} for {image.path}",
        }

    def grid_height(self, layer: LayerEntry) -> int:
        return self._layer_grids[layer.slug][1] if self.report.images else 0

    def gallery_head(self, image: ImageEntry, root: str) -> dict:
        """An image's part of its gallery entries, the same on every layer's gallery: its
        picture and caption are rendered once (macros.html) and reused by every layer."""
        key = (image.index, root)
        head = self._gallery_heads.get(key)
        if head is None:
            thumb = self.thumb(image)
            head = self._gallery_heads[key] = {
                "anchor": f"img-{image.slug}",
                "css": thumb["css"],
                "input_html": self.macros.gallery_input(thumb, root),
                "caption_html": self.macros.gallery_caption(thumb, root),
            }
        return head

    def max_class_mean(self, layer: LayerEntry) -> float:
        """The highest finite class mean of any channel of the layer (the atlas heatmap's top)."""
        return self._max_class_mean[layer.slug]

    @cached_property
    def cam_legend_html(self) -> str:
        """The Grad-CAM colour legend, the same on every image page."""
        return self.macros.cam_legend(render_explain.legend())

    @cached_property
    def layer_sections(self) -> list[dict]:
        """What an image page says about each layer, whichever the image."""
        return [{
            "anchor": f"layer-{layer.slug}",
            "path": layer.path,
            "meta": (f"{layer.type_name} · {' × '.join(str(d) for d in layer.output_shape)} · "
                     f"{self.channels_sentence(layer)}"),
        } for layer in self.report.layers]

    @cached_property
    def layer_jump_html(self) -> str:
        """An image page's list of links to its layers' sections, the same on every one."""
        return self.macros.layer_jump(self.layer_sections)

    def per_page(self, layer: LayerEntry) -> int:
        """Gallery images per page for a layer: fewer when its grids are tall."""
        fit = GALLERY_PAGE_GRID_PX // (self.grid_height(layer) + GALLERY_ENTRY_EXTRA_PX)
        return max(1, min(self.report.images_per_page, fit))

    def gallery_page(self, layer: LayerEntry, image: ImageEntry) -> str | None:
        position = self.gallery_position.get(image.index)
        if position is None:
            return None
        return layout.layer_page(layer.slug, layout.page_of(position, self.per_page(layer)))

    @staticmethod
    def channels_sentence(layer: LayerEntry) -> str:
        total = layer.output_shape[2]
        if len(layer.shown_channels) == total:
            return f"all {total:,} channels"
        return f"{len(layer.shown_channels):,} of {total:,} channels"

    def channels_note(self, layer: LayerEntry) -> str:
        total = layer.output_shape[2]
        if len(layer.shown_channels) == total:
            return f"All {total:,} channels are drawn, in index order."
        listed = ", ".join(str(c) for c in layer.shown_channels)
        return (f"{len(layer.shown_channels):,} of {total:,} channels shown, ranked by "
                f"{CHANNEL_RANKING} (--max-channels); drawn in index order: {listed}. "
                "The atlas and report.json cover every channel.")

    def scale_note(self) -> str:
        if self.report.scale == "layer":
            return (f"Colour ({self.report.colormap}): one linear scale per layer and image, from "
                    "0 (or the layer's lowest value, if negative) at the bottom colour to the "
                    "layer's highest value on that image at the top; a channel that is zero "
                    "everywhere is drawn in the bottom colour.")
        return (f"Colour ({self.report.colormap}): each channel standardised on its own (mean to "
                "the middle colour, 64 levels per standard deviation), as in Chollet's book; "
                "brightness cannot be compared between channels.")


def _pager(href, number: int, total: int) -> dict:
    """Links to pages 1..total around ``number``; ``href(page)`` names a page."""
    shown = sorted({1, total, *range(max(1, number - PAGER_NEIGHBOURS),
                                      min(total, number + PAGER_NEIGHBOURS) + 1)})
    pages = []
    for previous, page in zip([0, *shown[:-1]], shown, strict=True):
        if page - previous > 1:
            pages.append({"gap": True})
        pages.append({"gap": False, "number": page, "href": href(page), "current": page == number})
    return {
        "number": number,
        "pages_total": total,
        "pages": pages,
        "first": href(1),
        "last": href(total),
        "previous": href(number - 1) if number > 1 else None,
        "next": href(number + 1) if number < total else None,
    }


def _nav(previous: dict | None, next_: dict | None, up: dict | None = None) -> dict:
    return {"previous": previous, "next": next_, "up": up}


def _neighbours(items: list) -> Iterator[tuple]:
    """(previous, item, next) for each item: coverage.py's zip trick."""
    padded = [None, *items, None]
    return zip(padded, padded[1:], padded[2:], strict=False)


# -- pages ------------------------------------------------------------------------------------

def _layer_rows(report: Report) -> list[dict]:
    """Every feature-map layer of the model; the shown ones with their statistics and a link."""
    by_path = {layer.path: layer for layer in report.layers}
    rows = report.feature_layers or tuple(
        FeatureLayerRow(layer.path, layer.type_name, layer.output_shape, True)
        for layer in report.layers)
    table = []
    for row in rows:
        layer = by_path.get(row.path)
        entry = {"path": row.path, "type_name": row.type_name,
                 "shape": " × ".join(str(d) for d in row.output_shape),
                 "channels": row.output_shape[2], "shown": layer is not None}
        if layer is not None:
            entry.update({
                "href": layout.layer_page(layer.slug),
                "drawn_channels": len(layer.shown_channels),
                "dead_count": layer.stats.dead_count,
                "dead_share": percent(layer.stats.dead_share),
                "dead_share_value": f"{layer.stats.dead_share:.4f}",
                "mean_activation": number(layer.stats.mean_activation),
            })
        table.append(entry)
    return table


def overview_view(report: Report, views: Views) -> dict:
    metrics = report.metrics
    history = report.history
    n_classes = len(report.class_names)
    cards = [
        {"value": percent(metrics.accuracy), "label": "test accuracy"},
        {"value": number(metrics.macro_f1), "label": "macro F1"},
        {"value": str(history.best_epoch) if history else "—",
         "label": f"best epoch of {history.epochs}" if history else "no training history"},
        {"value": str(metrics.n_images), "label": "test images"},
        {"value": str(n_classes), "label": "classes"},
    ]
    class_list = ", ".join(report.class_names[:TOP_CLASSES * 3])
    if n_classes > TOP_CLASSES * 3:
        class_list += f", … ({n_classes:,} in all, listed on the results page)"
    facts = [
        {"label": "Data", "value": report.data_name},
        {"label": "Classes", "value": class_list},
        {"label": "Model", "value": f"{report.model.name} ({report.model.source})"},
        {"label": "Validation data", "value": report.validation},
        *([{"label": "Input", "value": report.input_contract.description}]
          if report.input_contract else []),
        {"label": "Feature maps drawn", "value": f"{len(report.drawn_indices)} of "
                                                 f"{len(report.images)} test images"},
    ]
    curves = []
    if history:
        curves = [{"src": layout.curve_asset(metric), "alt": f"{metric} per epoch"}
                  for metric in ("accuracy", "loss")]
        curves_note = (f"Best epoch {history.best_epoch} of {history.epochs} by validation "
                       f"accuracy (dashed line); validation data: {report.validation}.")
    else:
        curves_note = "No training history was given, so there are no learning curves."
    n_feature_layers = len(report.feature_layers) or len(report.layers)
    channel_cap = (f" At most {report.max_channels} channels per layer are drawn on image and "
                   f"gallery pages, ranked by {CHANNEL_RANKING} (--max-channels)."
                   if report.max_channels is not None else "")
    return {
        "lead": (f"{report.model.name} ({report.model.source}) on {report.data_name}: "
                 f"{metrics.n_images} test images in {n_classes} classes, "
                 + (f"every feature map of {len(report.layers)} layers."
                    if len(report.layers) == n_feature_layers else
                    f"the feature maps of {len(report.layers)} of its {n_feature_layers} "
                    "feature-map layers.")),
        "cards": cards,
        "facts": facts,
        "warnings": list(report.warnings),
        "skipped": [{"path": f.path, "reason": f.reason} for f in report.skipped],
        "results_sentence": (f"{percent(metrics.accuracy)} of the {metrics.n_images} test images "
                             f"are classified correctly; macro F1 {number(metrics.macro_f1)}."),
        "curves": curves,
        "curves_note": curves_note,
        "layers": _layer_rows(report),
        "layer_rule": (report.layer_rule or f"All {len(report.layers)} feature-map layers are "
                                             "shown.") + channel_cap,
        "scale_note": views.scale_note(),
        "model_sentence": (f"Input {' × '.join(map(str, report.model.input_shape))}, "
                           f"{report.model.total_params:,} parameters."),
        "model_rows": [{"name": r.name, "type_name": r.type_name, "output_shape": r.output_shape,
                        "params": f"{r.params:,}"} for r in report.model.rows],
        "total_params": f"{report.model.total_params:,}",
    }


def confusion_png(confusion, palette: bytes) -> bytes:
    """The row-normalised confusion matrix as a picture, a square of pixels per cell."""
    import numpy as np

    n = confusion.shape[0]
    rows = confusion.sum(axis=1, keepdims=True)
    shares = np.divide(confusion, rows, out=np.zeros(confusion.shape, np.float64), where=rows > 0)
    levels = np.round(shares * drawing.TOP_LEVEL).astype(np.uint8)
    cell = max(1, -(-CONFUSION_PICTURE_PX // n))
    return drawing.encode_png(np.kron(levels, np.ones((cell, cell), np.uint8)), palette)


def _cell_href(report: Report, t: int, p: int) -> str:
    return layout.cell_page(report.class_slugs[t], report.class_slugs[p])


def results_view(report: Report, views: Views) -> dict:
    confusion = report.metrics.confusion
    slugs = report.class_slugs
    names = report.class_names
    rows = []
    if not views.many_classes:
        for t, name in enumerate(names):
            row_total = int(confusion[t].sum())
            cells = []
            for p, predicted_name in enumerate(names):
                count = int(confusion[t, p])
                share = count / row_total if row_total else 0.0
                cells.append({
                    "href": _cell_href(report, t, p) if count else None,
                    "count": count,
                    "share": percent(share),
                    "css": shade_class(share) + (" diagonal" if t == p else ""),
                    "title": f"{count} {name} predicted as {predicted_name}",
                })
            rows.append({"name": name, "href": layout.class_page(slugs[t]), "cells": cells})
    pairs = sorted(((int(confusion[t, p]), t, p) for t, p in zip(*confusion.nonzero(), strict=True)
                    if t != p), key=lambda c: (-c[0], c[1], c[2]))[:CONFUSED_PAIRS]
    supports = confusion.sum(axis=1)
    confused = [{"true_name": names[t], "predicted_name": names[p], "count": count,
                 "share": percent(count / supports[t]), "href": _cell_href(report, t, p)}
                for count, t, p in pairs]
    cell_px = max(1, -(-CONFUSION_PICTURE_PX // len(names)))
    per_class = [{
        "index": c, "name": name, "href": layout.class_page(slugs[c]),
        "precision": f"{s.precision:.3f}", "recall": f"{s.recall:.3f}", "f1": f"{s.f1:.3f}",
        "support": s.support,
    } for c, (name, s) in enumerate(zip(names, report.metrics.per_class, strict=True))]
    scores = report.metrics.per_class
    macro = {
        "precision": f"{sum(s.precision for s in scores) / len(scores):.3f}",
        "recall": f"{sum(s.recall for s in scores) / len(scores):.3f}",
        "f1": f"{report.metrics.macro_f1:.3f}",
        "support": report.metrics.n_images,
    }
    mistakes = sorted((i for i in report.images if not i.correct),
                      key=lambda i: (-i.confidence, i.path))[:TOP_MISTAKES]
    return {
        "lead": (f"Accuracy {percent(report.metrics.accuracy)} on {report.metrics.n_images} "
                 f"test images; macro F1 {number(report.metrics.macro_f1)}."),
        "class_names": list(names),
        "rows": rows,
        "picture": {
            "src": layout.confusion_asset(),
            "size": cell_px * len(names),
            "alt": f"confusion matrix of {len(names)} classes",
            "note": (f"{len(names):,} classes: each class is a row (true) and a column "
                     f"(predicted) of {cell_px} px, in the order of the per-class table below "
                     "(its # column); brightness is the share of the row. The most confused "
                     "pairs follow, each linking to its images."),
        } if views.many_classes else None,
        "confused": confused,
        "per_class": per_class,
        "macro": macro,
        "mistakes": [views.thumb(i) for i in mistakes],
        "explain": render_explain.results_explain_view(report),
    }


def _paged_listing(path_of, title: str, heading: str, lead: str, items: list[ImageEntry],
                   views: Views, empty: str) -> Iterator[tuple[str, str, dict]]:
    total = layout.page_count(len(items), THUMBS_PER_PAGE)
    results_link = {"href": "results.html", "label": "Results"}
    for number_ in range(1, total + 1):
        start = (number_ - 1) * THUMBS_PER_PAGE
        yield path_of(number_), title, {
            "heading": heading,
            "lead": lead,
            "thumbs": [views.thumb(i) for i in items[start:start + THUMBS_PER_PAGE]],
            "empty": empty,
            "pager": _pager(path_of, number_, total),
            "nav": _nav(None, None, results_link),
        }


def listing_pages(report: Report, views: Views) -> Iterator[tuple[str, str, dict]]:
    """(page path, title, view) for every non-empty confusion cell and every class, paged.

    One pass groups the images, so the work grows with images and classes, never with
    classes squared. Beyond plan.MATRIX_TABLE_MAX_CLASSES the diagonal cells get no pages of
    their own: nothing links to them, and their class pages list the same images.
    """
    names, slugs = report.class_names, report.class_slugs
    cells: dict[tuple[int, int], list[ImageEntry]] = {}
    classes: dict[int, list[ImageEntry]] = {c: [] for c in range(len(names))}
    for image in report.images:
        cells.setdefault((image.true_label, image.predicted_label), []).append(image)
        classes[image.true_label].append(image)
    for (t, p), items in sorted(cells.items()):
        if t == p and views.many_classes:
            continue  # the class page lists these; the matrix picture links to no cell
        items.sort(key=lambda i: (-i.confidence, i.path))
        verb = "correctly" if t == p else f"as {names[p]}"
        yield from _paged_listing(
            lambda page, t=t, p=p: layout.cell_page(slugs[t], slugs[p], page),
            f"{names[t]} → {names[p]}", f"True {names[t]}, predicted {names[p]}",
            f"{len(items)} test images of {names[t]} classified {verb}, most confident first.",
            items, views, "No test image falls in this cell.")
    for c, items in classes.items():
        items.sort(key=lambda i: (i.correct, -i.confidence if not i.correct else 0, i.path))
        wrong = sum(not i.correct for i in items)
        yield from _paged_listing(
            lambda page, c=c: layout.class_page(slugs[c], page), names[c], names[c],
            f"{len(items)} test images, {wrong} misclassified; mistakes first.",
            items, views, "This class has no test images.")


def image_view(report: Report, views: Views, image: ImageEntry, previous: ImageEntry | None,
               next_: ImageEntry | None) -> dict:
    height, width = views.input_size
    scale = integer_scale(IMAGE_PAGE_TARGET_PX, max(height, width))
    drawn = image.index in views.gallery_position
    layers = []
    for layer, section in zip(report.layers, views.layer_sections, strict=True):
        gallery = views.gallery_page(layer, image)
        layers.append({
            **section,
            "href": f"{gallery}#img-{image.slug}" if gallery else layout.layer_page(layer.slug),
            "grid": views.grid(layer, image) if drawn else None,
        })
    order = sorted(range(len(report.class_names)), key=lambda c: (-image.probabilities[c], c))
    if views.many_classes:
        order = order[:TOP_CLASSES]
    bars = [{"name": report.class_names[c], "value": f"{image.probabilities[c]:.4f}",
             "text": percent(image.probabilities[c]),
             "css": "predicted" if c == image.predicted_label else ""}
            for c in (order if views.many_classes else range(len(report.class_names)))]

    def link(other: ImageEntry | None) -> dict | None:
        return {"href": layout.image_page(other.slug), "label": other.path} if other else None

    return {
        "path": image.path,
        "src": layout.input_asset(image.slug, picture_format=report.pictures),
        "width": width * scale,
        "height": height * scale,
        "true_name": views.class_name(image.true_label),
        "predicted_name": views.class_name(image.predicted_label),
        "confidence": percent(image.confidence),
        "css": "correct" if image.correct else "wrong",
        "bars": bars,
        "cam": render_explain.image_cam_view(report, image, width * scale, height * scale),
        "cam_legend": views.cam_legend_html,
        "bars_note": (f"The {TOP_CLASSES} most probable of {len(report.class_names):,} classes."
                      if views.many_classes else ""),
        "layers": layers,
        "missing": ("Feature maps were not drawn for this image (the site's size plan; see the "
                    "overview)."),
        "jump": views.layer_jump_html if len(layers) > 1 else None,
        "scale_note": views.scale_note(),
        "nav": _nav(link(previous), link(next_),
                    {"href": layout.class_page(report.class_slugs[image.true_label]),
                     "label": f"All {views.class_name(image.true_label)}"}),
    }


def atlas_view(report: Report, layer: LayerEntry, views: Views, page: int) -> dict:
    """One page of a layer's channel atlas: ATLAS_CHANNELS_PER_PAGE channels."""
    stats = layer.stats
    height, width = views.input_size
    tile_height, tile_width = fit_size(ATLAS_TILE_TARGET_PX, height, width)
    map_h, map_w = layer.output_shape[:2]
    # Each map about as wide as its top image's tile: a whole-number zoom for small maps,
    # shrunk for maps wider than the tile.
    strip_zoom = (max(1, (tile_width + 1) // (map_w + 1)) if map_w <= tile_width
                  else (tile_width + 1) / (map_w + 1))
    max_class_mean = views.max_class_mean(layer)
    start = (page - 1) * ATLAS_CHANNELS_PER_PAGE
    on_page = stats.channels[start:start + ATLAS_CHANNELS_PER_PAGE]
    features = {feature.channel: feature for feature in layer.features}
    channels = []
    for ch in on_page:
        top = [{"href": layout.image_page(views.path_slug(t.path)),
                "src": layout.input_asset(views.path_slug(t.path), picture_format=report.pictures),
                "title": f"{t.path}: {report.class_names[t.label]}, max {number(t.score)}"}
               for t in ch.top]
        classes = range(len(report.class_names))
        if views.many_classes:
            classes = sorted((c for c in classes if math.isfinite(ch.class_means[c])),
                             key=lambda c: (-ch.class_means[c], c))[:TOP_CLASSES]
        channels.append({
            "index": ch.index,
            "anchor": f"c{ch.index}",
            "dead": ch.dead,
            "css": "dead" if ch.dead else "alive",
            "active_share": percent(ch.active_share),
            "max": number(ch.max),
            "mean": number(ch.mean),
            "std": number(ch.std),
            "selectivity": number(ch.selectivity),
            "profile": [{"name": report.class_names[c], "value": number(ch.class_means[c])}
                        for c in classes],
            "top": top,
            "tile": tile_width,
            "tile_height": tile_height,
            "strip": {
                "src": layout.atlas_asset(layer.slug, ch.index),
                "width": round((len(ch.top) * (map_w + 1) - 1) * strip_zoom),
                "height": max(1, round(map_h * strip_zoom)),
                "alt": f"channel {ch.index} on its top images",
            } if ch.top else None,
            "feature": _feature_tile(layer, features.get(ch.index), tile_width, tile_height),
        })
    heatmap = [] if views.many_classes else [{"name": name, "cells": [{
        "css": shade_class(ch.class_means[c] / max_class_mean) if max_class_mean > 0 and
        math.isfinite(ch.class_means[c]) else "shade-0",
        "title": f"channel {ch.index}, {name}: {number(ch.class_means[c])}",
    } for ch in on_page]} for c, name in enumerate(report.class_names)]
    ranking = [{"index": ch.index, "anchor": f"c{ch.index}",
                "page": (layout.atlas_page(layer.slug, layout.atlas_page_of(ch.index))
                         if layout.atlas_page_of(ch.index) != page else ""),
                "selectivity": number(ch.selectivity),
                "preferred": _preferred_class(report, ch.class_means)}
               for ch in stats.by_selectivity()[:RANKING_SHOWN]] if page == 1 else []
    total = layout.page_count(len(stats.channels), ATLAS_CHANNELS_PER_PAGE)
    return {
        "note": (f"For each channel: its top {len(stats.channels[0].top) if stats.channels else 0} "
                 "test images by the channel's highest value, then the channel's own map on each "
                 "(one scale per channel, from 0 to its highest value). Dead channels never "
                 "exceed 0 on any test image."),
        "selectivity_note": ("Selectivity: spread of the per-class mean activations (highest "
                             "minus lowest) divided by their mean; 0 for a channel that treats "
                             "all classes alike."
                             + (f" The {RANKING_SHOWN} most selective of "
                                f"{len(stats.channels):,} channels:"
                                if len(stats.channels) > RANKING_SHOWN else "")),
        "heatmap_note": ("" if not views.many_classes else
                         f"With {len(report.class_names):,} classes each channel lists its "
                         f"{TOP_CLASSES} classes of highest mean activation; every class mean "
                         "is in report.json."),
        "channels": channels,
        "heatmap": heatmap,
        "ranking": ranking,
        "pages_total": total,
        "range": (f"Channels {start} to {start + len(on_page) - 1} of {len(stats.channels):,}"
                  if total > 1 else ""),
        "pager": _pager(lambda n, slug=layer.slug: layout.atlas_page(slug, n), page, total),
    }


def _feature_tile(layer: LayerEntry, feature, width: int, height: int) -> dict | None:
    """A channel's feature visualization as the atlas and the layer's grid show it; None
    when the channel has none (not drawn, over the budget, or --no-features)."""
    if feature is None:
        return None
    if feature.dead:
        return {"dead": True, "src": None, "channel": feature.channel,
                "caption": "no picture raises it above 0: dead"}
    caption = (f"mean {number(feature.activation)}, best test image "
               f"{number(feature.best_test)}")
    return {"dead": False, "channel": feature.channel,
            "src": layout.feature_asset(layer.slug, feature.channel),
            "width": width, "height": height, "caption": caption,
            "href": layout.channel_link(layer.slug, feature.channel),
            "alt": f"channel {feature.channel}'s feature visualization: {caption}"}


def features_view(layer: LayerEntry, views: Views) -> dict | None:
    """The layer's feature visualizations as one grid (the layer page's first page)."""
    if not layer.features:
        return None
    height, width = views.input_size
    tile_height, tile_width = fit_size(ATLAS_TILE_TARGET_PX, height, width)
    tiles = [_feature_tile(layer, feature, tile_width, tile_height) for feature in layer.features]
    drawn = [tile for tile in tiles if not tile["dead"]]
    dead = [tile["channel"] for tile in tiles if tile["dead"]]
    return {
        "tiles": drawn,
        "note": (f"For {len(drawn)} of the layer's {layer.output_shape[2]} channels, a picture "
                 "made by gradient ascent to maximize the channel's mean activation, shown "
                 "beside its top test images in the atlas. Each caption gives the mean "
                 "activation the picture reaches and the best test image's."),
        "dead_note": (f"Dead: {', '.join(f'channel {c}' for c in dead)} (never above 0 on a "
                      "test image, or no picture found raises it above 0)." if dead else ""),
    }


def _preferred_class(report: Report, class_means: tuple[float, ...]) -> str:
    finite = [(m, c) for c, m in enumerate(class_means) if math.isfinite(m)]
    if not finite or max(finite)[0] <= 0:
        return "none"
    return report.class_names[max(finite, key=lambda mc: (mc[0], -mc[1]))[1]]


def _layer_header(report: Report, layer: LayerEntry, views: Views, previous, next_) -> dict:
    return {
        "path": layer.path,
        "type_name": layer.type_name,
        "shape": " × ".join(str(d) for d in layer.output_shape),
        "lead": (f"Layer {layer.index + 1} of {len(report.layers)} shown: "
                 f"{layer.output_shape[2]} channels of {layer.output_shape[0]} × "
                 f"{layer.output_shape[1]}; {layer.stats.dead_count} dead "
                 f"({percent(layer.stats.dead_share)})."),
        "channels_note": views.channels_note(layer),
        "scale_note": views.scale_note(),
        "nav": _nav(
            {"href": layout.layer_page(previous.slug), "label": previous.path}
            if previous else None,
            {"href": layout.layer_page(next_.slug), "label": next_.path} if next_ else None,
            {"href": "index.html#layers", "label": "All layers"}),
    }


def layer_views(report: Report, views: Views) -> Iterator[tuple[str, str, dict]]:
    drawn = list(views.drawn)
    for previous, layer, next_ in _neighbours(list(report.layers)):
        per_page = views.per_page(layer)
        total = layout.page_count(len(drawn), per_page)
        header = _layer_header(report, layer, views, previous, next_)
        root = layout.root_prefix(layout.layer_page(layer.slug))
        for number_ in range(1, total + 1):
            start = (number_ - 1) * per_page
            entries = [{**views.gallery_head(image, root), "grid": views.grid(layer, image)}
                       for image in drawn[start:start + per_page]]
            yield layout.layer_page(layer.slug, number_), layer.path, {
                **header,
                "atlas": atlas_view(report, layer, views, 1) if number_ == 1 else None,
                "features": features_view(layer, views) if number_ == 1 else None,
                "atlas_only": False,
                "pager": _pager(lambda page, slug=layer.slug: layout.layer_page(slug, page),
                                number_, total),
                "entries": entries,
                "gallery_note": (f"{len(drawn)} of {len(report.images)} test images have "
                                 "feature maps drawn (see the overview)."
                                 if len(drawn) < len(report.images) else ""),
            }
        atlas_pages = layout.page_count(len(layer.stats.channels), ATLAS_CHANNELS_PER_PAGE)
        for number_ in range(2, atlas_pages + 1):
            yield layout.atlas_page(layer.slug, number_), f"{layer.path}: atlas {number_}", {
                **header,
                "atlas": atlas_view(report, layer, views, number_),
                "features": None,
                "atlas_only": True,
                "pager": None,
                "entries": [],
                "gallery_note": "",
            }


# -- report.json --------------------------------------------------------------------------------

def report_json(report: Report) -> dict:
    metrics = report.metrics
    drawn = set(report.drawn_indices)
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": report.generated_at,
        "reportgen_version": report.reportgen_version,
        "model": {
            "name": report.model.name,
            "source": report.model.source,
            "input_shape": list(report.model.input_shape),
            "total_params": report.model.total_params,
            "layers": [{"name": r.name, "type": r.type_name, "output_shape": r.output_shape,
                        "params": r.params} for r in report.model.rows],
        },
        "input": report.input_contract.to_json() if report.input_contract else None,
        "data": {
            "name": report.data_name,
            "test_images": len(report.images),
            "skipped": [{"path": f.path, "reason": f.reason} for f in report.skipped],
            "empty_classes": list(report.empty_classes),
        },
        "classes": list(report.class_names),
        "validation": report.validation,
        "metrics": {
            "accuracy": metrics.accuracy,
            "macro_f1": metrics.macro_f1,
            "per_class": [{"class": name, "precision": s.precision, "recall": s.recall,
                           "f1": s.f1, "support": s.support}
                          for name, s in zip(report.class_names, metrics.per_class, strict=True)],
            "confusion_matrix": metrics.confusion.tolist(),
            "calibration": render_explain.calibration_json(report),
        },
        "history": report.history.to_json() if report.history else None,
        "drawing": {"scale": report.scale, "colormap": report.colormap,
                    "pictures": report.pictures,
                    "images_per_page": report.images_per_page,
                    "drawn_images": len(report.drawn_indices),
                    "max_channels": report.max_channels,
                    "channel_ranking": CHANNEL_RANKING},
        "layer_plan": {
            "rule": report.layer_rule,
            "layers": [{"path": row.path, "type": row.type_name,
                        "output_shape": list(row.output_shape), "shown": row.shown}
                       for row in report.feature_layers],
        },
        "feature_layers": [{
            "path": layer.path,
            "type": layer.type_name,
            "output_shape": list(layer.output_shape),
            "page": layout.layer_page(layer.slug),
            "channels": layer.output_shape[2],
            "dead_channels": layer.stats.dead_count,
            "dead_share": layer.stats.dead_share,
            "mean_activation": layer.stats.mean_activation,
            "shown_channels": list(layer.shown_channels),
            "channel_stats": [{
                "index": ch.index, "mean": ch.mean, "std": ch.std, "max": ch.max,
                "active_share": ch.active_share, "dead": ch.dead,
                "class_means": [m if math.isfinite(m) else None for m in ch.class_means],
                "selectivity": ch.selectivity,
                "top_images": [{"path": t.path, "label": t.label, "score": t.score}
                               for t in ch.top],
                **({"feature": _feature_json(layer, features[ch.index])}
                   if ch.index in features else {}),
            } for features in [{feature.channel: feature for feature in layer.features}]
              for ch in layer.stats.channels],
        } for layer in report.layers],
        "explanations": render_explain.explanations_json(report),
        "images": [{"path": i.path, "page": layout.image_page(i.slug),
                    "picture": layout.input_asset(i.slug, picture_format=report.pictures),
                    "true_label": i.true_label, "predicted_label": i.predicted_label,
                    "probabilities": list(i.probabilities), "drawn": i.index in drawn,
                    **render_explain.image_json(report, i)} for i in report.images],
    }


def _feature_json(layer: LayerEntry, feature) -> dict:
    return {"picture": None if feature.dead else layout.feature_asset(layer.slug, feature.channel),
            "activation": feature.activation, "best_test_activation": feature.best_test,
            "dead": feature.dead}


# Strict JSON (a NaN fails the render), names as written (UTF-8, no \\u escapes).
_ENCODE_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
JSON_SPREAD_LEVELS = 4


def json_text(value, levels: int = JSON_SPREAD_LEVELS, indent: str = "") -> str:
    """JSON a person can read, written by json's C encoder.

    Objects, and arrays of objects or arrays, are spread one member per line down to `levels`
    deep (a layer's channels, an image's fields); anything deeper is one line (a channel's
    record, a Grad-CAM map). json.dumps(indent=...) would spread every number over a line of
    its own and takes json's pure-Python encoder, several times slower.
    """
    if levels and value and (isinstance(value, dict) or (
            isinstance(value, list) and isinstance(value[0], dict | list))):
        inner = indent + " "
        if isinstance(value, dict):
            members = [f"{inner}{_ENCODE_JSON(key)}: {json_text(item, levels - 1, inner)}"
                       for key, item in value.items()]
            return "{\n" + ",\n".join(members) + f"\n{indent}}}"
        members = [inner + json_text(item, levels - 1, inner) for item in value]
        return "[\n" + ",\n".join(members) + f"\n{indent}]"
    return _ENCODE_JSON(value)


# -- the whole site -----------------------------------------------------------------------------

def sitemap_xml(site_url: str, pages: list[str]) -> bytes:
    """A sitemaps.org sitemap of `pages` (site-relative) under `site_url`; no dates, so it is stable."""
    urls = "".join(f"<url><loc>{escape(layout.page_url(site_url, page))}</loc></url>\n"
                   for page in pages)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
            f"{urls}</urlset>\n").encode()


def render_site(report: Report, site_url: str | None = None) -> Iterator[tuple[str, bytes]]:
    """Every page, report.json and the static files, as (relative path, bytes), in a fixed order.

    A generator, so a site of thousands of pages is written page by page, not held in memory.
    Links are relative; with `site_url` (an absolute URL ending in "/", where the site will be
    published) pages also name their canonical URL, a sitemap.xml is written, and 404.html,
    which a host serves at any missing path, links to the site's files by absolute URL.
    """
    env = environment()
    views = Views(report)
    common = {"site_title": report.title, "version": report.reportgen_version,
              "generated_at": report.generated_at}
    listed: list[str] = []  # the pages a sitemap names

    def page(template: str, path: str, title: str, **context) -> tuple[str, bytes]:
        canonical = layout.page_url(site_url, path) if site_url else None
        listed.append(path)
        html = env.get_template(template).render(
            root=layout.root_prefix(path), page_title=title, canonical=canonical, **common,
            **context)
        return path, html.encode("utf-8")

    yield page("index.html", "index.html", "Overview", overview=overview_view(report, views))
    results = results_view(report, views)
    yield page("results.html", "results.html", "Results", results=results)
    if results["picture"]:
        yield layout.confusion_asset(), confusion_png(report.metrics.confusion,
                                                      drawing.colormap_palette(report.colormap))
    for path, title, view in listing_pages(report, views):
        yield page("images.html", path, title, listing=view)
    for previous, image, next_ in _neighbours(list(report.images)):
        yield page("image.html", layout.image_page(image.slug), image.path,
                   image=image_view(report, views, image, previous, next_))
    for path, title, view in layer_views(report, views):
        yield page("layer.html", path, title, layer=view)
    if report.explanations is not None:
        yield page("labels.html", layout.LABEL_ERRORS_PAGE, "Likely label errors",
                   labels=render_explain.label_errors_view(report, views))
        yield page("embedding.html", layout.EMBEDDING_PAGE, "Embedding map",
                   embedding=render_explain.embedding_view(report))
    yield "404.html", env.get_template("404.html").render(
        root=site_url or layout.root_prefix("404.html"), page_title="Not found", canonical=None,
        **common).encode("utf-8")
    if site_url:
        yield "sitemap.xml", sitemap_xml(site_url, listed)
    yield "report.json", (json_text(report_json(report)) + "\n").encode("utf-8")
    for name in STATIC_FILES:
        yield f"static/{name}", (templates_dir() / "static" / name).read_bytes()
    yield ".nojekyll", b""
