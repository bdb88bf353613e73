"""Where every file of the site lives, relative to the site's root folder.

The one place that names files: the drawing pipeline writes to these paths and
the renderer links to them, so the two cannot drift apart.
"""

from __future__ import annotations

import math

MARKER = ".reportgen-site"


def image_page(image_slug: str) -> str:
    return f"images/{image_slug}.html"


def layer_page(layer_slug: str, page: int = 1) -> str:
    return f"layers/{layer_slug}/index.html" if page == 1 else f"layers/{layer_slug}/page-{page}.html"


def atlas_page(layer_slug: str, page: int = 1) -> str:
    """The atlas' first page shares the layer's index.html with the gallery's first page."""
    return layer_page(layer_slug) if page == 1 else f"layers/{layer_slug}/atlas-{page}.html"


ATLAS_CHANNELS_PER_PAGE = 64


def atlas_page_of(channel: int) -> int:
    """The atlas page (from 1) that shows ``channel``."""
    return channel // ATLAS_CHANNELS_PER_PAGE + 1


def channel_link(layer_slug: str, channel: int) -> str:
    """A channel's entry in its layer's atlas, on whichever page of it the channel is."""
    return f"{atlas_page(layer_slug, atlas_page_of(channel))}#c{channel}"


def class_page(class_slug: str, page: int = 1) -> str:
    return f"classes/{class_slug}.html" if page == 1 else f"classes/{class_slug}-page-{page}.html"


def cell_page(true_slug: str, predicted_slug: str, page: int = 1) -> str:
    stem = f"cells/{true_slug}--{predicted_slug}"
    return f"{stem}.html" if page == 1 else f"{stem}-page-{page}.html"


def confusion_asset() -> str:
    return "assets/confusion.png"


# Input pictures and Grad-CAM overlays are PNG or JPEG (reportgen.drawing.picture_format); the
# format is the report's, so the pass that writes them and the pages that link them agree.
PICTURE_SUFFIXES = {"png": ".png", "jpeg": ".jpg"}


def input_asset(image_slug: str, *, picture_format: str) -> str:
    """What the model saw, in the report's picture format ("png" or "jpeg")."""
    return f"assets/inputs/{image_slug}{PICTURE_SUFFIXES[picture_format]}"


def map_asset(layer_slug: str, image_slug: str) -> str:
    return f"assets/maps/{layer_slug}/{image_slug}.png"


def atlas_asset(layer_slug: str, channel: int) -> str:
    return f"assets/atlas/{layer_slug}/channel-{channel:04d}.png"


def feature_asset(layer_slug: str, channel: int) -> str:
    """A channel's feature visualization (reportgen.featviz), at the model's input size."""
    return f"assets/features/{layer_slug}/channel-{channel:04d}.png"


def curve_asset(metric: str) -> str:
    return f"assets/curves/{metric}.svg"


def page_url(site_url: str, page_path: str) -> str:
    """The absolute URL of a page, a folder's index.html named by its folder ("…/layers/x/")."""
    if page_path == "index.html" or page_path.endswith("/index.html"):
        page_path = page_path.removesuffix("index.html")
    return site_url + page_path


def root_prefix(page_path: str) -> str:
    """The relative way back to the site root from a page: "" or "../" per folder level."""
    return "../" * page_path.count("/")


def page_count(n_items: int, per_page: int) -> int:
    return max(1, math.ceil(n_items / per_page))


def page_of(index: int, per_page: int) -> int:
    """1-based gallery page holding item ``index`` (0-based)."""
    return index // per_page + 1


# -- explanations (Grad-CAM, label quality, embedding) ----------------------------------------

LABEL_ERRORS_PAGE = "labels.html"
EMBEDDING_PAGE = "embedding.html"


def cam_asset(image_slug: str, target: str = "predicted", *, picture_format: str) -> str:
    """The overlay of one image's Grad-CAM for its predicted (or, for a mistake, true) class,
    in the report's picture format ("png" or "jpeg")."""
    stem = f"assets/cam/{image_slug}" if target == "predicted" else f"assets/cam/{image_slug}--true"
    return stem + PICTURE_SUFFIXES[picture_format]


def cam_cell_asset(true_slug: str, predicted_slug: str) -> str:
    return f"assets/cam-means/{true_slug}--{predicted_slug}.png"


def cam_class_asset(class_slug: str) -> str:
    return f"assets/cam-means/class-{class_slug}.png"
