"""Pixels: feature maps to colour grids, inputs to thumbnails, histories to curves.

Functions here take arrays and return PNG/SVG bytes; they never touch the disk.
Colour comes from a 256-entry lookup table indexed by uint8 values, so drawing a
grid is one fancy-indexing operation, not a matplotlib figure per map.
"""

from __future__ import annotations

import io
import math
from functools import lru_cache

import numpy as np
from PIL import Image

GRID_COLUMNS = 16  # the article draws 16 channels per row
GAP_RGB = (255, 255, 255)
# zlib level 1: measured in `nox -s bench` (benchmarks/png_levels), the site grows a few percent
# over level 6 and encoding is several times faster.
PNG_COMPRESS_LEVEL = 1
SCALES = ("layer", "channel")


@lru_cache(maxsize=8)
def colormap_lut(name: str = "viridis") -> np.ndarray:
    """(256, 3) uint8 colours of a matplotlib colormap."""
    from matplotlib import colormaps

    try:
        cmap = colormaps[name]
    except KeyError:
        from reportgen.errors import UserError

        raise UserError(f"unknown colormap {name!r}; try viridis, magma, gray") from None
    rgba = cmap(np.linspace(0.0, 1.0, 256))
    return np.round(rgba[:, :3] * 255).astype(np.uint8)


def layer_scale_indices(feature_maps: np.ndarray) -> np.ndarray:
    """(h, w, c) float -> uint8, one linear scale for all channels from min(0, low) to high.

    Zero stays at the bottom colour, so a channel that never fires looks dead, not grey.
    """
    low = min(0.0, float(feature_maps.min()))
    high = float(feature_maps.max())
    if high <= low:
        return np.zeros(feature_maps.shape, dtype=np.uint8)
    scaled = (feature_maps - low) * (255.0 / (high - low))
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


def channel_scale_indices(feature_maps: np.ndarray) -> np.ndarray:
    """The article's (Chollet's) per-channel standardisation: mean 128, 64 per standard deviation."""
    maps = feature_maps.astype(np.float32)
    maps = maps - maps.mean(axis=(0, 1), keepdims=True)
    std = maps.std(axis=(0, 1), keepdims=True)
    maps = np.divide(maps, std, out=np.zeros_like(maps), where=std > 0)
    return np.clip(maps * 64.0 + 128.0 + 0.5, 0, 255).astype(np.uint8)


def scale_indices(feature_maps: np.ndarray, scale: str) -> np.ndarray:
    return layer_scale_indices(feature_maps) if scale == "layer" else \
        channel_scale_indices(feature_maps)


def grid_shape(height: int, width: int, channels: int) -> tuple[int, int, int, int]:
    """(rows, columns, grid height px, grid width px) of a channel grid with 1-px gaps."""
    columns = min(channels, GRID_COLUMNS)
    rows = math.ceil(channels / columns)
    return rows, columns, rows * (height + 1) - 1, columns * (width + 1) - 1


def channel_grid(indices: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """(h, w, c) uint8 colour indices -> (H, W, 3) uint8 image of all channels in a grid."""
    height, width, channels = indices.shape
    rows, columns, grid_height, grid_width = grid_shape(height, width, channels)
    padded = np.zeros((height + 1, width + 1, rows * columns), dtype=np.uint8)
    padded[:height, :width, :channels] = indices
    # (h+1, w+1, rows, cols) -> (rows, h+1, cols, w+1): one reshape lays the tiles out.
    tiles = padded.reshape(height + 1, width + 1, rows, columns).transpose(2, 0, 3, 1)
    layout = tiles.reshape(rows * (height + 1), columns * (width + 1))[:grid_height, :grid_width]
    rgb = lut[layout]
    gap = np.ones((rows * (height + 1), columns * (width + 1)), dtype=bool)
    gap_view = gap.reshape(rows, height + 1, columns, width + 1)
    gap_view[:, :height, :, :width] = False
    gap = gap[:grid_height, :grid_width]
    # channel slots past the last channel in the final row are gap too
    empty = rows * columns - channels
    if empty:
        gap[(rows - 1) * (height + 1):, (columns - empty) * (width + 1):] = True
    rgb[gap] = GAP_RGB
    return rgb


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes with fixed settings and no metadata, so the same pixels give the same bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def feature_grid_png(feature_maps: np.ndarray, lut: np.ndarray, scale: str = "layer") -> bytes:
    """One PNG of every channel of one layer for one image."""
    return encode_png(channel_grid(scale_indices(feature_maps, scale), lut))


def input_png(image: np.ndarray) -> bytes:
    """The model's input (h, w, 1 or 3) in [0, 1] as an 8-bit PNG."""
    pixels = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    return encode_png(pixels)


def strip_png(maps: list[np.ndarray], low: float, high: float, lut: np.ndarray) -> bytes:
    """A row of 2-D maps on one shared scale (the atlas' top images of one channel)."""
    height, width = maps[0].shape
    stacked = np.stack(maps, axis=-1).astype(np.float32)
    if high > low:
        indices = np.clip((stacked - low) * (255.0 / (high - low)) + 0.5, 0, 255).astype(np.uint8)
    else:
        indices = np.zeros(stacked.shape, dtype=np.uint8)
    padded = np.zeros((height, width + 1, len(maps)), dtype=np.uint8)
    padded[:, :width] = indices
    layout = padded.transpose(0, 2, 1).reshape(height, len(maps) * (width + 1))[:, :-1]
    rgb = lut[layout]
    rgb[:, width::width + 1] = GAP_RGB
    return encode_png(rgb)


def heatmap_png(values: np.ndarray, lut: np.ndarray) -> bytes:
    """(rows, columns) non-negative values -> one pixel each, scaled to the global max."""
    high = float(np.nanmax(values)) if np.isfinite(values).any() else 0.0
    clean = np.nan_to_num(values, nan=0.0)
    indices = np.zeros(values.shape, dtype=np.uint8) if high <= 0 else \
        np.clip(clean / high * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return encode_png(lut[indices])
