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


def class_page(class_slug: str) -> str:
    return f"classes/{class_slug}.html"


def cell_page(true_slug: str, predicted_slug: str) -> str:
    return f"cells/{true_slug}--{predicted_slug}.html"


def input_asset(image_slug: str) -> str:
    return f"assets/inputs/{image_slug}.png"


def map_asset(layer_slug: str, image_slug: str) -> str:
    return f"assets/maps/{layer_slug}/{image_slug}.png"


def atlas_asset(layer_slug: str, channel: int) -> str:
    return f"assets/atlas/{layer_slug}/channel-{channel:04d}.png"


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
