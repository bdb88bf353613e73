"""Grad-CAM pictures: an input with its heatmap laid over it, a bare heatmap, the colour legend.

Like ``drawing``, functions take arrays and return bytes. Colour comes from a
256-entry lookup table indexed by uint8 levels (keras-io's ``jet[heatmap]``), here
matplotlib's "turbo" (jet's perceptually smoother successor): dark blue at 0, dark
red at the map's maximum.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

from reportgen.drawing import colormap_palette, encode_picture, encode_png

CAM_COLORMAP = "turbo"
HEATMAP_OPACITY = 0.5  # the overlay's share of each pixel; the input keeps the rest
LEGEND_STOPS = 11
LEGEND = (f"Grad-CAM colour ({CAM_COLORMAP}): dark blue where the map is 0, through green and "
          "yellow, to dark red at the map's highest value (each map scaled to its own maximum).")


@lru_cache(maxsize=1)
def cam_lut() -> np.ndarray:
    """(255, 3) uint8 colours of the CAM colormap, bottom to top."""
    return np.frombuffer(colormap_palette(CAM_COLORMAP), np.uint8).reshape(256, 3)[:255]


def _levels(cam: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(cam, np.float32) * 254 + 0.5, 0, 254).astype(np.uint8)


def upsample(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """The (h, w) map stretched bilinearly to the input's size, as keras-io does before overlaying."""
    picture = Image.fromarray(np.ascontiguousarray(cam, np.float32))  # mode "F"
    return np.asarray(picture.resize((width, height), Image.Resampling.BILINEAR), np.float32)


def overlay_picture(image: np.ndarray, cam: np.ndarray, picture_format: str) -> bytes:
    """An RGB picture ("png" or "jpeg") at the input's size: the input (0-255, 1 or 3 channels)
    with the heatmap over it."""
    return encode_picture(overlay_pixels(image, cam), picture_format)


def overlay_pixels(image: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """``overlay_picture``'s (h, w, 3) uint8 pixels."""
    height, width = image.shape[:2]
    pixels = np.asarray(image, np.float32)
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    # (1 - opacity) * pixels + opacity * colours + 0.5, in float32, with as few passes over
    # the picture as that arithmetic allows: the colours' share is looked up ready-made, by
    # np.take (a quarter of the time of indexing, lut[levels], which gathers the same rows).
    blended = pixels * np.float32(1 - HEATMAP_OPACITY)
    blended += np.take(_weighted_lut(), _levels(upsample(cam, height, width)), axis=0)
    blended += np.float32(0.5)
    return np.clip(blended, 0, 255, out=blended).astype(np.uint8)


@lru_cache(maxsize=1)
def _weighted_lut() -> np.ndarray:
    """The CAM colours in float32, already multiplied by the heatmap's opacity."""
    return cam_lut().astype(np.float32) * np.float32(HEATMAP_OPACITY)


def heatmap_png(cam: np.ndarray) -> bytes:
    """A palette PNG of one map at its own resolution (the browser enlarges it, pixelated)."""
    return encode_png(_levels(cam), colormap_palette(CAM_COLORMAP))


def legend_stops() -> list[dict]:
    """Gradient stops for the legend: offset in percent and colour as #rrggbb."""
    lut = cam_lut()
    stops = []
    for i in range(LEGEND_STOPS):
        r, g, b = lut[round(i * 254 / (LEGEND_STOPS - 1))]
        stops.append({"offset": f"{100 * i / (LEGEND_STOPS - 1):.0f}%",
                      "colour": f"#{r:02x}{g:02x}{b:02x}"})
    return stops
