"""Rendering of a comparison: the ``Comparison`` in, ``{relative path: bytes}`` out. No disk.

The compare site holds its own pages and, under ``a/`` and ``b/``, what it shows of each
side's site: the whole site when the compare built it (so image and layer pages link there),
otherwise copies of the pictures and overlays its pages show (``shown_files``). Pages go
through render.py's Jinja environment, base.html and macros.html; numbers are formatted here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from reportgen import layout, plan
from reportgen.comparison import Comparison, ImagePair, Prediction, Side, comparison_json
from reportgen.render import (
    STATIC_FILES,
    THUMB_TARGET_PX,
    _pager,
    environment,
    fit_size,
    json_text,
    number,
    percent,
    shade_class,
    templates_dir,
)

SIDE_FOLDERS = ("a/", "b/")  # each side's files inside the compare site
PAIRS_PER_PAGE = 48
CHANGED_CELLS = 50  # with too many classes for matrix tables: the cells that changed most
CHANNELS_LISTED = 12  # died or revived channels named per layer (compare.json has all)
GALLERIES = ("fixed", "broken")


@dataclass(frozen=True)
class CompareSites:
    """Where each side's site is: ``given`` as named on the command line (None: the compare
    built it, inside its own folder, and links to its pages)."""

    given: tuple[str | None, str | None] = (None, None)

    def inside(self, side: int) -> bool:
        return self.given[side] is None

    def json_names(self) -> tuple[str, str]:
        return tuple(self.given[i] if self.given[i] is not None else SIDE_FOLDERS[i]
                     for i in range(2))


def gallery_page(kind: str, page: int = 1) -> str:
    return f"{kind}.html" if page == 1 else f"{kind}-page-{page}.html"


def _pictures(side: int, prediction: Prediction) -> tuple[str | None, str | None]:
    """What a gallery row shows of one side: (the image column's picture, the Grad-CAM
    column's). The image column is A's picture; B's own picture stands in for its overlay
    when B has none."""
    if side == 0:
        return prediction.picture, prediction.overlay
    return None, prediction.overlay or prediction.picture


def shown_files(comparison: Comparison) -> list[tuple[int, str]]:
    """(side 0 or 1, path in that side's site) of every picture the galleries show, sorted."""
    found = set()
    for pair in (*comparison.fixed, *comparison.broken):
        for side, prediction in enumerate((pair.a, pair.b)):
            found.update((side, path) for path in _pictures(side, prediction) if path)
    return sorted(found)


# -- formatting -----------------------------------------------------------------------------------

def _signed(value: float, digits: int = 3) -> str:
    return "±0" if round(value, digits) == 0 else f"{value:+.{digits}f}"


def _count_difference(value: int) -> str:
    return f"{value:+,}" if value else "±0"


def _points(share: float) -> str:
    """A difference of two shares in percentage points."""
    return "±0 pp" if round(share * 100, 1) == 0 else f"{share * 100:+.1f} pp"


def _verdict(difference: float, higher_is_better: bool = True, digits: int = 3) -> str:
    if round(difference, digits) == 0:
        return "same"
    return "better" if (difference > 0) == higher_is_better else "worse"


# -- the overview page ------------------------------------------------------------------------------

def _headline(comparison: Comparison) -> list[dict]:
    a, b = comparison.a, comparison.b
    ece_note = "" if a.ece_from_report and b.ece_from_report else (
        " (computed from the probabilities where a build had --no-explain)")
    return [
        {"label": "Test accuracy", "a": percent(a.accuracy), "b": percent(b.accuracy),
         "difference": _points(b.accuracy - a.accuracy),
         "css": _verdict(b.accuracy - a.accuracy, digits=4)},
        {"label": "Macro F1", "a": f"{a.macro_f1:.3f}", "b": f"{b.macro_f1:.3f}",
         "difference": _signed(b.macro_f1 - a.macro_f1), "css": _verdict(b.macro_f1 - a.macro_f1)},
        {"label": "Expected calibration error" + ece_note, "a": f"{a.ece:.4f}",
         "b": f"{b.ece:.4f}", "difference": _signed(b.ece - a.ece, 4),
         "css": _verdict(b.ece - a.ece, higher_is_better=False, digits=4)},
        {"label": "Parameters", "a": f"{a.total_params:,}", "b": f"{b.total_params:,}",
         "difference": _count_difference(b.total_params - a.total_params), "css": "same"},
        {"label": "Input", "a": " × ".join(map(str, a.input_shape)),
         "b": " × ".join(map(str, b.input_shape)), "difference": "", "css": "same"},
    ]


def _mcnemar_sentence(comparison: Comparison) -> str:
    agreement = comparison.agreement
    b, c, p = agreement.only_a_right, agreement.only_b_right, agreement.p_value
    if b + c == 0:
        return ("The two models are right and wrong on exactly the same images: McNemar's test "
                "has nothing to weigh (p = 1).")
    verdict = ("a difference this large would be unlikely if both models were equally "
               "accurate" if p < 0.05 else "a difference this large could well be chance")
    return (f"McNemar's exact test on the {b + c} images where exactly one model is right "
            f"(b = {b} only A, c = {c} only B): p = {number(p)}; at the usual 0.05 level, "
            f"{verdict}.")


def _agreement_view(comparison: Comparison) -> dict:
    agreement = comparison.agreement
    n = len(comparison.images)

    def cell(count: int, href: str | None, css: str) -> dict:
        return {"count": f"{count:,}", "share": percent(count / n) if n else "—",
                "href": href if count else None, "css": css}

    return {
        "rows": [
            {"label": "A right", "cells": [cell(agreement.both_right, None, "agree"),
                                           cell(agreement.only_a_right, gallery_page("broken"),
                                                "worse")]},
            {"label": "A wrong", "cells": [cell(agreement.only_b_right, gallery_page("fixed"),
                                                "better"),
                                           cell(agreement.both_wrong, None, "agree")]},
        ],
        "mcnemar": _mcnemar_sentence(comparison),
        "p_value": number(agreement.p_value),
    }


def _class_rows(comparison: Comparison) -> tuple[list[dict], str]:
    a, b = comparison.a, comparison.b
    order = list(range(len(comparison.class_names)))
    note = "Differences are B minus A."
    if len(order) > plan.MATRIX_TABLE_MAX_CLASSES:
        order = sorted(order, key=lambda c: (-abs(b.per_class[c].f1 - a.per_class[c].f1), c))
        order = order[:plan.MATRIX_TABLE_MAX_CLASSES]
        note = (f"The {len(order)} of {len(comparison.class_names):,} classes whose F1 changed "
                "most; compare.json has every class. Differences are B minus A.")
    rows = []
    for c in order:
        sa, sb = a.per_class[c], b.per_class[c]
        rows.append({"name": sa.name, "support": sa.support, "scores": [
            {"a": f"{getattr(sa, name):.3f}", "b": f"{getattr(sb, name):.3f}",
             "difference": _signed(getattr(sb, name) - getattr(sa, name)),
             "css": _verdict(getattr(sb, name) - getattr(sa, name))}
            for name in ("precision", "recall", "f1")]})
    return rows, note


def _matrix(side: Side, names: tuple[str, ...]) -> dict:
    rows = []
    for t, name in enumerate(names):
        total = int(side.confusion[t].sum())
        rows.append({"name": name, "cells": [{
            "count": int(side.confusion[t, p]),
            # Half the results page's shading: the lighter shades keep dark text, which
            # reads (WCAG AA) on all of them in both colour schemes; white text on the
            # middle shades does not.
            "css": shade_class((side.confusion[t, p] / total if total else 0.0) / 2)
            + (" diagonal" if t == p else ""),
            "title": f"{int(side.confusion[t, p])} {name} predicted as {names[p]} by {side.label}",
        } for p in range(len(names))]})
    return {"caption": side.title, "rows": rows}


def _difference_matrix(comparison: Comparison) -> dict:
    names = comparison.class_names
    difference = comparison.b.confusion - comparison.a.confusion
    rows = []
    for t, name in enumerate(names):
        cells = []
        for p in range(len(names)):
            value = int(difference[t, p])
            cells.append({"count": "0" if value == 0 else f"{value:+d}",
                          "css": "same" if value == 0 else _verdict(value if t == p else -value),
                          "title": f"{name} predicted as {names[p]}: {value:+d} images in B"})
        rows.append({"name": name, "cells": cells})
    return {"caption": "B − A", "rows": rows}


def _confusion_view(comparison: Comparison) -> dict:
    names = comparison.class_names
    if plan.class_pairs_shown(len(names)):
        return {"class_names": list(names), "changed": [],
                "matrices": [_matrix(comparison.a, names), _matrix(comparison.b, names),
                             _difference_matrix(comparison)]}
    a, b = comparison.a.confusion, comparison.b.confusion
    changed = sorted(((int(b[t, p] - a[t, p]), t, p) for t, p in zip(*(a != b).nonzero(),
                                                                       strict=True)),
                     key=lambda cell: (-abs(cell[0]), cell[1], cell[2]))[:CHANGED_CELLS]
    return {"class_names": [], "matrices": [], "changed": [{
        "true_name": names[t], "predicted_name": names[p], "a": int(a[t, p]), "b": int(b[t, p]),
        "difference": f"{d:+d}", "css": _verdict(d if t == p else -d)} for d, t, p in changed]}


def _channel_list(channels: tuple[int, ...]) -> str:
    if not channels:
        return "none"
    listed = ", ".join(str(c) for c in channels[:CHANNELS_LISTED])
    more = ", …" if len(channels) > CHANNELS_LISTED else ""
    return f"{len(channels)}: {listed}{more}"


def _layers_view(comparison: Comparison, sites: CompareSites) -> list[dict]:
    if comparison.layers is None:
        return []
    return [{
        "path": layer.path, "type_name": layer.type_name, "channels": layer.channels,
        "href_a": SIDE_FOLDERS[0] + layer.page_a if sites.inside(0) and sites.inside(1) else None,
        "href_b": SIDE_FOLDERS[1] + layer.page_b if sites.inside(0) and sites.inside(1) else None,
        "dead_a": layer.dead_a, "dead_b": layer.dead_b,
        "dead_difference": _count_difference(layer.dead_b - layer.dead_a),
        "dead_css": _verdict(layer.dead_a - layer.dead_b, digits=0),
        "died": _channel_list(layer.died), "revived": _channel_list(layer.revived),
        "selectivity_a": number(layer.selectivity_a), "selectivity_b": number(layer.selectivity_b),
        "selectivity_difference": _signed(layer.selectivity_b - layer.selectivity_a),
    } for layer in comparison.layers]


def _side_links(comparison: Comparison, sites: CompareSites) -> list[dict]:
    links = []
    for i, side in enumerate((comparison.a, comparison.b)):
        links.append({"title": side.title,
                      "href": SIDE_FOLDERS[i] + "index.html" if sites.inside(i) else None,
                      "folder": sites.given[i]})
    return links


def overview_view(comparison: Comparison, sites: CompareSites) -> dict:
    a, b = comparison.a, comparison.b
    classes, classes_note = _class_rows(comparison)
    fixed, broken = len(comparison.fixed), len(comparison.broken)
    return {
        "lead": (f"{a.title} against {b.title}, on the same {len(comparison.images):,} test "
                 f"images of {len(comparison.class_names):,} classes. A is the baseline: "
                 "differences are B minus A, “fixed” images are the ones only B gets right, "
                 "“broken” the ones only A does."),
        "sides": _side_links(comparison, sites),
        "headline": _headline(comparison),
        "agreement": _agreement_view(comparison),
        "galleries": [{"href": gallery_page("fixed"), "label": f"Fixed by B ({fixed:,})"},
                      {"href": gallery_page("broken"), "label": f"Broken by B ({broken:,})"}],
        "classes": classes,
        "classes_note": classes_note,
        "confusion": _confusion_view(comparison),
        "layers": _layers_view(comparison, sites),
        "layers_note": comparison.layers_note,
    }


# -- the fixed and broken galleries ----------------------------------------------------------------

def _verdict_view(comparison: Comparison, sites: CompareSites, side: int, pair: ImagePair,
                  prediction: Prediction) -> dict:
    model = (comparison.a, comparison.b)[side]
    height, width = fit_size(THUMB_TARGET_PX, *model.input_shape[:2])
    folder = SIDE_FOLDERS[side]
    name = comparison.class_names[prediction.predicted_label]

    def picture(path: str | None) -> dict | None:
        if path is None:
            return None
        alt = (f"Grad-CAM of {model.label} on {pair.path} for {name}" if path == prediction.overlay
               else f"{pair.path} as {model.label} saw it")
        return {"src": folder + path, "width": width, "height": height, "alt": alt}

    image, cam = _pictures(side, prediction)
    return {
        "label": model.label,
        "name": name,
        "confidence": percent(prediction.confidence),
        "css": "correct" if prediction.predicted_label == pair.true_label else "wrong",
        "href": folder + prediction.page if sites.inside(side) and prediction.page else None,
        "picture": picture(image),
        "cam": picture(cam),
    }


def gallery_pages(comparison: Comparison, sites: CompareSites) -> Iterator[tuple[str, str, dict]]:
    names = comparison.class_names
    for kind, pairs in (("fixed", comparison.fixed), ("broken", comparison.broken)):
        heading = "Fixed by B" if kind == "fixed" else "Broken by B"
        lead = (f"{len(pairs):,} test images that B classifies correctly and A does not."
                if kind == "fixed" else
                f"{len(pairs):,} test images that A classifies correctly and B does not.")
        total = layout.page_count(len(pairs), PAIRS_PER_PAGE)
        for page in range(1, total + 1):
            start = (page - 1) * PAIRS_PER_PAGE
            entries = [{"path": pair.path, "true_name": names[pair.true_label],
                        "sides": [_verdict_view(comparison, sites, 0, pair, pair.a),
                                  _verdict_view(comparison, sites, 1, pair, pair.b)]}
                       for pair in pairs[start:start + PAIRS_PER_PAGE]]
            yield gallery_page(kind, page), heading, {
                "heading": heading,
                "lead": lead,
                "entries": entries,
                "empty": ("No image: B gets right every image A gets right."
                          if kind == "broken" else "No image: B gets no image right that A "
                                                   "gets wrong."),
                "pictures_note": ("" if comparison.a.has_cam or comparison.b.has_cam else
                                  "Neither report has Grad-CAM (built with --no-explain)."),
                "pager": _pager(lambda n, kind=kind: gallery_page(kind, n), page, total),
            }


# -- the whole site ---------------------------------------------------------------------------------

def render_compare(comparison: Comparison, sites: CompareSites = CompareSites(),
                   title: str | None = None, version: str = "") -> Iterator[tuple[str, bytes]]:
    """Every page of the compare site, compare.json and the static files, in a fixed order.

    The files ``shown_files`` names must be put under a/ and b/ by the caller, unless the
    compare built the two sites there."""
    env = environment()
    a, b = comparison.a, comparison.b
    common = {"site_title": title or f"{a.model_name} against {b.model_name}", "version": version,
              "generated_at": None, "canonical": None,
              "compare_nav": [{"href": "index.html", "label": "Comparison"},
                              {"href": gallery_page("fixed"), "label": "Fixed"},
                              {"href": gallery_page("broken"), "label": "Broken"},
                              *[{"href": SIDE_FOLDERS[i] + "index.html", "label": f"Site {label}"}
                                for i, label in enumerate("AB") if sites.inside(i)],
                              {"href": "compare.json", "label": "compare.json"}]}

    def page(template: str, path: str, title: str, **context) -> tuple[str, bytes]:
        html = env.get_template(template).render(root=layout.root_prefix(path), page_title=title,
                                                 **common, **context)
        return path, html.encode("utf-8")

    yield page("compare.html", "index.html", "Comparison",
               compare=overview_view(comparison, sites))
    for path, title_, view in gallery_pages(comparison, sites):
        yield page("compare_pairs.html", path, title_, pairs=view)
    yield "compare.json", (json_text(comparison_json(comparison, sites.json_names())) + "\n"
                           ).encode("utf-8")
    for name in STATIC_FILES:
        yield f"static/{name}", (templates_dir() / "static" / name).read_bytes()
    yield ".nojekyll", b""
