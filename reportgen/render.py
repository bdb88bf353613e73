"""Rendering: the report model in, ``{relative path: bytes}`` out. No disk, no model.

Each page gets a small view (plain dicts of display-ready strings) built here;
the templates only loop and branch over it.
"""

from __future__ import annotations

import json
import math
import posixpath
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from xml.sax.saxutils import escape

import jinja2

from reportgen import layout
from reportgen.report import ImageEntry, LayerEntry, Report, image_slug

STATIC_FILES = ("style.css", "site.js", "favicon.svg")
THUMB_TARGET_PX = 84
IMAGE_PAGE_TARGET_PX = 224
MAP_TILE_TARGET_PX = 56
GRID_MAX_WIDTH_PX = 960
ATLAS_TILE_TARGET_PX = 30
TOP_MISTAKES = 12
PAGER_NEIGHBOURS = 2


def templates_dir() -> Path:
    """Templates ship inside the wheel as reportgen/templates; a checkout keeps them at the top."""
    packaged = Path(__file__).parent / "templates"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "templates"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
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


# -- views -----------------------------------------------------------------------------------

class Views:
    """Builds page views from one report; caches what many pages share."""

    def __init__(self, report: Report):
        self.report = report
        height, width = report.model.input_shape[:2]
        self.thumb_scale = integer_scale(THUMB_TARGET_PX, max(height, width))
        self.input_size = (height, width)

    def class_name(self, label: int) -> str:
        return self.report.class_names[label]

    def thumb(self, image: ImageEntry) -> dict:
        height, width = self.input_size
        return {
            "href": layout.image_page(image.slug),
            "src": layout.input_asset(image.slug),
            "path": image.path,
            "name": posixpath.basename(image.path),
            "width": width * self.thumb_scale,
            "height": height * self.thumb_scale,
            "true_name": self.class_name(image.true_label),
            "predicted_name": self.class_name(image.predicted_label),
            "correct": image.correct,
            "confidence": percent(image.confidence),
            "css": "correct" if image.correct else "wrong",
        }

    def grid(self, layer: LayerEntry, image: ImageEntry) -> dict:
        width, height = layer.grid_size_px
        # Tiles about MAP_TILE_TARGET_PX wide, as long as the whole grid fits GRID_MAX_WIDTH_PX.
        scale = max(1, min(integer_scale(MAP_TILE_TARGET_PX, layer.output_shape[1]),
                           GRID_MAX_WIDTH_PX // width))
        return {
            "src": layout.map_asset(layer.slug, image.slug),
            "width": width * scale,
            "height": height * scale,
            "alt": f"{layer.output_shape[2]} channels of {layer.path} for {image.path}",
        }

    def scale_note(self) -> str:
        if self.report.scale == "layer":
            return (f"Colour ({self.report.colormap}): one linear scale per layer and image, from "
                    "0 (or the layer's lowest value, if negative) at the bottom colour to the "
                    "layer's highest value on that image at the top; a channel that is zero "
                    "everywhere is drawn in the bottom colour.")
        return (f"Colour ({self.report.colormap}): each channel standardised on its own (mean to "
                "the middle colour, 64 levels per standard deviation), as in Chollet's book; "
                "brightness cannot be compared between channels.")


def _pager(layer_slug: str, number: int, total: int) -> dict:
    def href(page: int) -> str:
        return layout.layer_page(layer_slug, page)

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

def overview_view(report: Report, views: Views) -> dict:
    metrics = report.metrics
    history = report.history
    cards = [
        {"value": percent(metrics.accuracy), "label": "test accuracy"},
        {"value": number(metrics.macro_f1), "label": "macro F1"},
        {"value": str(history.best_epoch) if history else "—",
         "label": f"best epoch of {history.epochs}" if history else "no training history"},
        {"value": str(metrics.n_images), "label": "test images"},
        {"value": str(len(report.class_names)), "label": "classes"},
    ]
    facts = [
        {"label": "Data", "value": report.data_name},
        {"label": "Classes", "value": ", ".join(report.class_names)},
        {"label": "Model", "value": f"{report.model.name} ({report.model.source})"},
        {"label": "Validation data", "value": report.validation},
        *([{"label": "Input", "value": report.input_contract.description}]
          if report.input_contract else []),
        {"label": "Feature maps drawn", "value": f"{report.drawn_images} of {len(report.images)} "
                                                 "test images"},
    ]
    curves = []
    if history:
        curves = [{"src": layout.curve_asset(metric), "alt": f"{metric} per epoch"}
                  for metric in ("accuracy", "loss")]
        curves_note = (f"Best epoch {history.best_epoch} of {history.epochs} by validation "
                       f"accuracy (dashed line); validation data: {report.validation}.")
    else:
        curves_note = "No training history was given, so there are no learning curves."
    layers = [{
        "href": layout.layer_page(layer.slug),
        "path": layer.path,
        "type_name": layer.type_name,
        "shape": " × ".join(str(d) for d in layer.output_shape),
        "channels": layer.output_shape[2],
        "dead_count": layer.stats.dead_count,
        "dead_share": percent(layer.stats.dead_share),
        "dead_share_value": f"{layer.stats.dead_share:.4f}",
        "mean_activation": number(layer.stats.mean_activation),
    } for layer in report.layers]
    return {
        "lead": (f"{report.model.name} ({report.model.source}) on {report.data_name}: "
                 f"{metrics.n_images} test images in {len(report.class_names)} classes, every "
                 f"feature map of {len(report.layers)} layers."),
        "cards": cards,
        "facts": facts,
        "warnings": list(report.warnings),
        "skipped": [{"path": f.path, "reason": f.reason} for f in report.skipped],
        "results_sentence": (f"{percent(metrics.accuracy)} of the {metrics.n_images} test images "
                             f"are classified correctly; macro F1 {number(metrics.macro_f1)}."),
        "curves": curves,
        "curves_note": curves_note,
        "layers": layers,
        "scale_note": views.scale_note(),
        "model_sentence": (f"Input {' × '.join(map(str, report.model.input_shape))}, "
                           f"{report.model.total_params:,} parameters."),
        "model_rows": [{"name": r.name, "type_name": r.type_name, "output_shape": r.output_shape,
                        "params": f"{r.params:,}"} for r in report.model.rows],
        "total_params": f"{report.model.total_params:,}",
    }


def results_view(report: Report, views: Views) -> dict:
    confusion = report.metrics.confusion
    slugs = report.class_slugs
    rows = []
    for t, name in enumerate(report.class_names):
        row_total = int(confusion[t].sum())
        cells = []
        for p, predicted_name in enumerate(report.class_names):
            count = int(confusion[t, p])
            share = count / row_total if row_total else 0.0
            cells.append({
                "href": layout.cell_page(slugs[t], slugs[p]),
                "count": count,
                "share": percent(share),
                "css": shade_class(share) + (" diagonal" if t == p else ""),
                "title": f"{count} {name} predicted as {predicted_name}",
            })
        rows.append({"name": name, "href": layout.class_page(slugs[t]), "cells": cells})
    per_class = [{
        "name": name, "href": layout.class_page(slugs[c]),
        "precision": f"{s.precision:.3f}", "recall": f"{s.recall:.3f}", "f1": f"{s.f1:.3f}",
        "support": s.support,
    } for c, (name, s) in enumerate(zip(report.class_names, report.metrics.per_class, strict=True))]
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
        "class_names": list(report.class_names),
        "rows": rows,
        "per_class": per_class,
        "macro": macro,
        "mistakes": [views.thumb(i) for i in mistakes],
    }


def listing_pages(report: Report, views: Views) -> Iterator[tuple[str, str, dict]]:
    """(page path, title, view) for every confusion cell and every class."""
    names, slugs = report.class_names, report.class_slugs
    results_link = {"href": "results.html", "label": "Results"}
    for t, p in ((t, p) for t in range(len(names)) for p in range(len(names))):
        items = sorted((i for i in report.images
                        if i.true_label == t and i.predicted_label == p),
                       key=lambda i: (-i.confidence, i.path))
        verb = "correctly" if t == p else f"as {names[p]}"
        yield layout.cell_page(slugs[t], slugs[p]), f"{names[t]} → {names[p]}", {
            "heading": f"True {names[t]}, predicted {names[p]}",
            "lead": f"{len(items)} test images of {names[t]} classified {verb}, most confident first.",
            "thumbs": [views.thumb(i) for i in items],
            "empty": "No test image falls in this cell.",
            "nav": _nav(None, None, results_link),
        }
    for c, name in enumerate(names):
        items = sorted((i for i in report.images if i.true_label == c),
                       key=lambda i: (i.correct, -i.confidence if not i.correct else 0, i.path))
        wrong = sum(not i.correct for i in items)
        yield layout.class_page(slugs[c]), name, {
            "heading": name,
            "lead": f"{len(items)} test images, {wrong} misclassified; mistakes first.",
            "thumbs": [views.thumb(i) for i in items],
            "empty": "This class has no test images.",
            "nav": _nav(None, None, results_link),
        }


def image_view(report: Report, views: Views, image: ImageEntry, previous: ImageEntry | None,
               next_: ImageEntry | None) -> dict:
    height, width = views.input_size
    scale = integer_scale(IMAGE_PAGE_TARGET_PX, max(height, width))
    drawn = image.index < report.drawn_images
    page = layout.page_of(image.index, report.images_per_page)
    layers = []
    for layer in report.layers:
        layers.append({
            "anchor": f"layer-{layer.slug}",
            "href": layout.layer_page(layer.slug, page) + f"#img-{image.slug}" if drawn
            else layout.layer_page(layer.slug),
            "path": layer.path,
            "type_name": layer.type_name,
            "shape": " × ".join(str(d) for d in layer.output_shape),
            "grid": views.grid(layer, image) if drawn else None,
            "missing": "Feature maps were not drawn for this image (--max-gallery-images).",
        })
    bars = [{"name": name, "value": f"{p:.4f}", "text": percent(p),
             "css": "predicted" if c == image.predicted_label else ""}
            for c, (name, p) in enumerate(zip(report.class_names, image.probabilities, strict=True))]

    def link(other: ImageEntry | None) -> dict | None:
        return {"href": layout.image_page(other.slug), "label": other.path} if other else None

    return {
        "path": image.path,
        "src": layout.input_asset(image.slug),
        "width": width * scale,
        "height": height * scale,
        "true_name": views.class_name(image.true_label),
        "predicted_name": views.class_name(image.predicted_label),
        "confidence": percent(image.confidence),
        "css": "correct" if image.correct else "wrong",
        "bars": bars,
        "layers": layers,
        "scale_note": views.scale_note(),
        "nav": _nav(link(previous), link(next_),
                    {"href": layout.class_page(report.class_slugs[image.true_label]),
                     "label": f"All {views.class_name(image.true_label)}"}),
    }


def atlas_view(report: Report, layer: LayerEntry, views: Views) -> dict:
    stats = layer.stats
    height, width = views.input_size
    tile_scale = integer_scale(ATLAS_TILE_TARGET_PX, max(height, width))
    map_h, map_w = layer.output_shape[:2]
    strip_scale = max(1, (width * tile_scale + 1) // (map_w + 1))
    max_class_mean = max((m for ch in stats.channels for m in ch.class_means if math.isfinite(m)),
                         default=0.0)
    channels = []
    for ch in stats.channels:
        top = [{"href": layout.image_page(image_slug(t.path)),
                "src": layout.input_asset(image_slug(t.path)),
                "title": f"{t.path}: {report.class_names[t.label]}, max {number(t.score)}"}
               for t in ch.top]
        channels.append({
            "index": ch.index,
            "anchor": f"c{ch.index}",
            "dead": ch.dead,
            "css": "dead" if ch.dead else "alive",
            "active_share": percent(ch.active_share),
            "max": number(ch.max),
            "mean": number(ch.mean),
            "selectivity": number(ch.selectivity),
            "profile": [{"name": name, "value": number(mean)}
                        for name, mean in zip(report.class_names, ch.class_means, strict=True)],
            "top": top,
            "tile": width * tile_scale,
            "tile_height": height * tile_scale,
            "strip": {
                "src": layout.atlas_asset(layer.slug, ch.index),
                "width": (len(ch.top) * (map_w + 1) - 1) * strip_scale,
                "height": map_h * strip_scale,
                "alt": f"channel {ch.index} on its top images",
            } if ch.top else None,
        })
    heatmap = [{"name": name, "cells": [{
        "css": shade_class(ch.class_means[c] / max_class_mean) if max_class_mean > 0 and
        math.isfinite(ch.class_means[c]) else "shade-0",
        "title": f"channel {ch.index}, {name}: {number(ch.class_means[c])}",
    } for ch in stats.channels]} for c, name in enumerate(report.class_names)]
    ranking = [{"index": ch.index, "anchor": f"c{ch.index}", "selectivity": number(ch.selectivity),
                "preferred": _preferred_class(report, ch.class_means)}
               for ch in stats.by_selectivity()]
    return {
        "note": (f"For each channel: its top {len(stats.channels[0].top) if stats.channels else 0} "
                 "test images by the channel's highest value, then the channel's own map on each "
                 "(one scale per channel, from 0 to its highest value). Dead channels never "
                 "exceed 0 on any test image."),
        "selectivity_note": ("Selectivity: spread of the per-class mean activations (highest "
                             "minus lowest) divided by their mean; 0 for a channel that treats "
                             "all classes alike."),
        "channels": channels,
        "heatmap": heatmap,
        "ranking": ranking,
    }


def _preferred_class(report: Report, class_means: tuple[float, ...]) -> str:
    finite = [(m, c) for c, m in enumerate(class_means) if math.isfinite(m)]
    if not finite or max(finite)[0] <= 0:
        return "none"
    return report.class_names[max(finite, key=lambda mc: (mc[0], -mc[1]))[1]]


def layer_views(report: Report, views: Views) -> Iterator[tuple[str, str, dict]]:
    drawn = list(report.drawn)
    total = layout.page_count(len(drawn), report.images_per_page)
    for previous, layer, next_ in _neighbours(list(report.layers)):
        atlas = atlas_view(report, layer, views)
        for number_ in range(1, total + 1):
            start = (number_ - 1) * report.images_per_page
            entries = []
            for image in drawn[start:start + report.images_per_page]:
                thumb = views.thumb(image)
                entries.append({
                    "anchor": f"img-{image.slug}", "href": thumb["href"], "path": image.path,
                    "input_src": thumb["src"], "input_width": thumb["width"],
                    "input_height": thumb["height"], "true_name": thumb["true_name"],
                    "predicted_name": thumb["predicted_name"], "wrong": not image.correct,
                    "confidence": thumb["confidence"], "css": thumb["css"],
                    "grid": views.grid(layer, image),
                })
            yield layout.layer_page(layer.slug, number_), layer.path, {
                "path": layer.path,
                "type_name": layer.type_name,
                "shape": " × ".join(str(d) for d in layer.output_shape),
                "lead": (f"Layer {layer.index + 1} of {len(report.layers)}: "
                         f"{layer.output_shape[2]} channels of {layer.output_shape[0]} × "
                         f"{layer.output_shape[1]}; {layer.stats.dead_count} dead "
                         f"({percent(layer.stats.dead_share)})."),
                "atlas": atlas if number_ == 1 else None,
                "scale_note": views.scale_note(),
                "pager": _pager(layer.slug, number_, total),
                "entries": entries,
                "nav": _nav(
                    {"href": layout.layer_page(previous.slug), "label": previous.path}
                    if previous else None,
                    {"href": layout.layer_page(next_.slug), "label": next_.path} if next_ else None,
                    {"href": "index.html#layers", "label": "All layers"}),
            }


# -- report.json --------------------------------------------------------------------------------

def report_json(report: Report) -> dict:
    metrics = report.metrics
    return {
        "schema_version": 1,
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
        },
        "history": report.history.to_json() if report.history else None,
        "drawing": {"scale": report.scale, "colormap": report.colormap,
                    "images_per_page": report.images_per_page,
                    "drawn_images": report.drawn_images},
        "feature_layers": [{
            "path": layer.path,
            "type": layer.type_name,
            "output_shape": list(layer.output_shape),
            "page": layout.layer_page(layer.slug),
            "channels": layer.output_shape[2],
            "dead_channels": layer.stats.dead_count,
            "dead_share": layer.stats.dead_share,
            "mean_activation": layer.stats.mean_activation,
            "channel_stats": [{
                "index": ch.index, "mean": ch.mean, "max": ch.max,
                "active_share": ch.active_share, "dead": ch.dead,
                "class_means": [m if math.isfinite(m) else None for m in ch.class_means],
                "selectivity": ch.selectivity,
                "top_images": [{"path": t.path, "label": t.label, "score": t.score}
                               for t in ch.top],
            } for ch in layer.stats.channels],
        } for layer in report.layers],
        "images": [{"path": i.path, "page": layout.image_page(i.slug),
                    "true_label": i.true_label, "predicted_label": i.predicted_label,
                    "probabilities": list(i.probabilities)} for i in report.images],
    }


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
    yield page("results.html", "results.html", "Results", results=results_view(report, views))
    for path, title, view in listing_pages(report, views):
        yield page("images.html", path, title, listing=view)
    for previous, image, next_ in _neighbours(list(report.images)):
        yield page("image.html", layout.image_page(image.slug), image.path,
                   image=image_view(report, views, image, previous, next_))
    for path, title, view in layer_views(report, views):
        yield page("layer.html", path, title, layer=view)
    yield "404.html", env.get_template("404.html").render(
        root=site_url or layout.root_prefix("404.html"), page_title="Not found", canonical=None,
        **common).encode("utf-8")
    if site_url:
        yield "sitemap.xml", sitemap_xml(site_url, listed)
    yield "report.json", (json.dumps(report_json(report), indent=1, ensure_ascii=False,
                                     allow_nan=False) + "\n").encode("utf-8")
    for name in STATIC_FILES:
        yield f"static/{name}", (templates_dir() / "static" / name).read_bytes()
    yield ".nojekyll", b""
