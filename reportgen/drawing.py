"""Pixels: feature maps to colour grids, inputs to thumbnails, atlas strips.

Functions here take arrays and return PNG bytes; they never touch the disk.
Colour comes from a colormap turned into a PNG palette: a grid is a reshape of
uint8 levels, coloured by the PNG decoder, never a matplotlib figure per map.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image
from zlib_ng import zlib_ng

from reportgen.options import BuildOptions, default

GRID_COLUMNS = 16  # the article draws 16 channels per row
# Fewer columns for big maps, so a grid at one pixel per value fits a page (render.py).
MAX_GRID_WIDTH_PX = 960
# Pictures are palette PNGs: one byte per pixel instead of three, so zlib has a third
# of the work and files shrink (benchmarks/results.md). Indices 0..254 are the
# colormap from its bottom to its top colour; 255 is the white gap between tiles.
TOP_LEVEL = 254
GAP_INDEX = 255
GAP_RGB = (255, 255, 255)
# zlib level 1: measured in `nox -s bench` (PNG levels table), the site grows a few
# percent over level 6 and encoding is several times faster.
PNG_COMPRESS_LEVEL = 1
# zlib's run-length strategy (Z_RLE): matches only repeats of the previous byte, which is
# what runs of equal levels in a feature map are. Measured on MobileNetV2's grids (PNG
# settings table): half the encoding time of the default strategy at level 1, files no bigger.
PNG_STRATEGY = zlib.Z_RLE
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_COLOUR_TYPES = {2: 0, 3: 2}  # grey (h, w) and RGB (h, w, 3); a palette is colour type 3
SCALES = ("layer", "channel")


@lru_cache(maxsize=8)
def colormap_palette(name: str = default(BuildOptions, "colormap")) -> bytes:
    """A 768-byte PNG palette: 255 colours of a matplotlib colormap, then the gap colour."""
    from matplotlib import colormaps

    try:
        cmap = colormaps[name]
    except KeyError:
        from reportgen.errors import UserError

        raise UserError(f"unknown colormap {name!r}; try viridis, magma, gray") from None
    rgba = cmap(np.linspace(0.0, 1.0, TOP_LEVEL + 1))
    colours = np.round(rgba[:, :3] * 255).astype(np.uint8)
    return colours.tobytes() + bytes(GAP_RGB)


# The smallest span a scale is drawn on: 254 / span overflows float32 below about 7.5e-37.
# A layer whose values all lie closer together than this is drawn on this span (dark).
MIN_SPAN = np.float32(1e-36)


def _to_levels(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    span = np.where(high > low, np.maximum(high - low, MIN_SPAN), 1.0)
    levels = values - low  # then in place: the same arithmetic, one temporary instead of four
    levels *= TOP_LEVEL / span
    levels += 0.5
    return np.clip(levels, 0, TOP_LEVEL, out=levels).astype(np.uint8)


def layer_scale_levels(feature_maps: np.ndarray, channels: Sequence[int] | None = None) -> np.ndarray:
    """(n, h, w, c) float -> uint8 levels; per image one linear scale for all channels.

    The scale runs from min(0, lowest value) to the highest, so zero stays at the
    bottom colour and a channel that never fires looks dead, not grey. With ``channels``
    only those are returned, still on the scale of the whole layer.
    """
    low = np.minimum(feature_maps.min(axis=(1, 2, 3), keepdims=True), 0.0)
    high = feature_maps.max(axis=(1, 2, 3), keepdims=True)
    return _to_levels(_only(feature_maps, channels), low, high)


def layer_levels_into(out: np.ndarray, image_maps: np.ndarray, high) -> None:
    """``layer_scale_levels`` of one image's maps (h, w, c) written into ``out`` (uint8, as
    many values), given their maximum ``high``: the same bytes in fewer passes over the maps.

    The first pass keeps every image's levels this way; its statistics have the maxima
    already. No clipping: with low = min(0, lowest value) and span = high - low, rounding
    is monotonic, so (x - low) * (254 / span) + 0.5 stays within [0.5, 254.5] and truncates
    to 0..254, as the clipped levels do (a test compares them on maps with extreme values).
    """
    low = np.float32(min(image_maps.min(), 0.0))
    levels = image_maps - low
    levels *= TOP_LEVEL / (max(np.float32(high) - low, MIN_SPAN) if high > low else np.float32(1.0))
    levels += np.float32(0.5)
    out[...] = levels.reshape(out.shape)  # truncates to uint8, as astype does


def _only(values: np.ndarray, channels: Sequence[int] | None) -> np.ndarray:
    """The listed channels of (..., c) values (no copy when they are all, in order)."""
    if channels is None or tuple(channels) == tuple(range(values.shape[-1])):
        return values
    return np.take(values, list(channels), axis=-1)


def channel_scale_levels(feature_maps: np.ndarray) -> np.ndarray:
    """The article's (Chollet's) per-channel standardisation: mean to the middle, 64 per std."""
    maps = feature_maps.astype(np.float32)
    maps = maps - maps.mean(axis=(1, 2), keepdims=True)
    std = maps.std(axis=(1, 2), keepdims=True)
    maps = np.divide(maps, std, out=np.zeros_like(maps), where=std > 0)
    return np.clip(maps * 64.0 + TOP_LEVEL // 2 + 0.5, 0, TOP_LEVEL).astype(np.uint8)


def scale_levels(feature_maps: np.ndarray, scale: str,
                 channels: Sequence[int] | None = None) -> np.ndarray:
    if scale == "layer":
        return layer_scale_levels(feature_maps, channels)
    return channel_scale_levels(_only(feature_maps, channels))


def grid_shape(height: int, width: int, channels: int) -> tuple[int, int, int, int]:
    """(rows, columns, grid height px, grid width px) of a channel grid with 1-px gaps.

    16 columns as in the article, fewer when the maps are so wide that 16 would pass
    MAX_GRID_WIDTH_PX (a 112-pixel map gets 8).
    """
    columns = min(channels, GRID_COLUMNS, max(1, MAX_GRID_WIDTH_PX // (width + 1)))
    rows = math.ceil(channels / columns)
    return rows, columns, rows * (height + 1) - 1, columns * (width + 1) - 1


def channel_grids(levels: np.ndarray) -> np.ndarray:
    """(n, h, w, c) uint8 levels -> (n, H, W) palette indices: every channel in a grid."""
    n, height, width, channels = levels.shape
    rows, columns, grid_height, grid_width = grid_shape(height, width, channels)
    padded = np.full((n, height + 1, width + 1, rows * columns), GAP_INDEX, dtype=np.uint8)
    padded[:, :height, :width, :channels] = levels
    # (n, h+1, w+1, rows, cols) -> (n, rows, h+1, cols, w+1): one reshape lays the tiles out.
    tiles = padded.reshape(n, height + 1, width + 1, rows, columns).transpose(0, 3, 1, 4, 2)
    return tiles.reshape(n, rows * (height + 1), columns * (width + 1))[:, :grid_height, :grid_width]


def encode_png(pixels: np.ndarray, palette: bytes | None = None) -> bytes:
    """PNG bytes of (h, w) grey or palette indices or (h, w, 3) RGB uint8 pixels, with fixed
    settings and no metadata, so the same pixels give the same bytes.

    Written here rather than by Pillow, for one reason: the compressor. zlib-ng's deflate
    at the same level and strategy is faster than the zlib inside Pillow, for files of the
    same size (the PNG encoders table in ``nox -s bench``), and a build spends
    more of its CPU encoding feature maps than anywhere but the network. The rest of a PNG is
    three short chunks; every row is stored with filter type 0, as Pillow stores palette
    pictures.
    """
    pixels = np.asarray(pixels, np.uint8)
    height, width = pixels.shape[:2]
    colour_type = 3 if palette is not None else PNG_COLOUR_TYPES[pixels.ndim]
    rows = np.zeros((height, 1 + pixels[0].size), np.uint8)  # a filter byte, then the row
    rows[:, 1:] = pixels.reshape(height, -1)
    compressor = zlib_ng.compressobj(PNG_COMPRESS_LEVEL, zlib_ng.DEFLATED, zlib_ng.MAX_WBITS,
                                     zlib_ng.DEF_MEM_LEVEL, PNG_STRATEGY)
    chunks = [_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0))]
    if palette is not None:
        chunks.append(_png_chunk(b"PLTE", palette))
    chunks += [_png_chunk(b"IDAT", compressor.compress(rows) + compressor.flush()),
               _png_chunk(b"IEND", b"")]
    return PNG_SIGNATURE + b"".join(chunks)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind))))


def feature_grid_pngs(feature_maps: np.ndarray, palette: bytes, scale: str = "layer",
                      channels: Sequence[int] | None = None) -> list[bytes]:
    """One PNG per image of one layer's channels (all, or those listed), for a batch (n, h, w, c)."""
    return level_grid_pngs(scale_levels(feature_maps, scale, channels), palette)


def level_grid_pngs(levels: np.ndarray, palette: bytes,
                    channels: Sequence[int] | None = None) -> list[bytes]:
    """``feature_grid_pngs`` of levels already scaled (every channel of the layer, on the
    layer's scale: ``scale_levels`` without ``channels``), of the channels listed or all."""
    return [encode_png(grid, palette) for grid in channel_grids(_only(levels, channels))]


def feature_grid_png(feature_maps: np.ndarray, palette: bytes, scale: str = "layer") -> bytes:
    """One PNG of every channel of one layer (h, w, c) for one image."""
    return feature_grid_pngs(feature_maps[np.newaxis], palette, scale)[0]


def input_png(image: np.ndarray) -> bytes:
    """What the model saw, resized but not preprocessed: (h, w, 1 or 3) pixels in [0, 255]."""
    return encode_png(_input_pixels(image))


def _input_pixels(image: np.ndarray) -> np.ndarray:
    """(h, w, 1 or 3) pixels in [0, 255] rounded to uint8; grey as (h, w)."""
    pixels = image + 0.5
    pixels = np.clip(pixels, 0, 255, out=pixels).astype(np.uint8)  # in place: one float temporary
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


def strip_png(maps: list[np.ndarray], low: float, high: float, palette: bytes) -> bytes:
    """A row of 2-D maps on one shared scale (the atlas' top images of one channel)."""
    stacked = np.stack(maps, axis=-1).astype(np.float32)[np.newaxis, :, :, np.newaxis, :]
    levels = _to_levels(stacked, np.float32(low), np.float32(high))[0, :, :, 0, :]
    height, width, count = levels.shape
    padded = np.full((height, width + 1, count), GAP_INDEX, dtype=np.uint8)
    padded[:, :width] = levels
    row = padded.transpose(0, 2, 1).reshape(height, count * (width + 1))[:, :-1]
    return encode_png(row, palette)


# -- input pictures and overlays: JPEG for photo-sized inputs ----------------------------------
# What the model saw and its Grad-CAM overlays are photos at photo sizes: there JPEG takes a
# fraction of PNG's bytes and time (benchmarks/results.md, "Input pictures and Grad-CAM
# overlays"). Small inputs (drawings, 28x28 digits, 32x32 CIFAR) are shown enlarged with crisp
# pixels, where JPEG's 8x8 blocks would show and PNG costs a few kB: they stay lossless.
PICTURE_FORMATS = ("png", "jpeg")  # named by reportgen.layout's asset functions
PICTURE_CHOICES = ("auto", *PICTURE_FORMATS)  # --pictures
JPEG_MIN_SIDE_PX = 64  # auto: JPEG when the model input's shorter side is at least this
JPEG_QUALITY = 90
# Full-resolution colour: 4:2:0 saves some bytes but blurs sharp colour edges, in photos and
# in the overlay's colours over them (measured in the same section).
JPEG_SUBSAMPLING = "4:4:4"


def picture_format(choice: str, height: int, width: int) -> str:
    """"png" or "jpeg": the format of the input pictures and Grad-CAM overlays of a model whose
    input is ``height`` x ``width``, for ``--pictures`` ``choice`` (one of PICTURE_CHOICES)."""
    if choice == "auto":
        return "jpeg" if min(height, width) >= JPEG_MIN_SIDE_PX else "png"
    if choice not in PICTURE_FORMATS:
        raise ValueError(f"unknown picture format {choice!r}; choose from {PICTURE_CHOICES}")
    return choice


def encode_jpeg(pixels: np.ndarray) -> bytes:
    """Baseline JPEG bytes of (h, w) grey or (h, w, 3) RGB uint8 pixels, with fixed settings and
    no metadata (no EXIF, no comment), so the same pixels give the same bytes.

    No ``optimize``: Pillow then encodes into a buffer of one byte per pixel, which noisy
    photos at 4:4:4 overflow ("Suspension not allowed here", Pillow issue #148).
    """
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(
        buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=JPEG_SUBSAMPLING)
    return buffer.getvalue()


def encode_picture(pixels: np.ndarray, picture_format: str) -> bytes:
    """``pixels`` as ``picture_format`` ("png" or "jpeg"; see ``picture_format``)."""
    if picture_format == "jpeg":
        return encode_jpeg(pixels)
    if picture_format == "png":
        return encode_png(pixels)
    raise ValueError(f"unknown picture format {picture_format!r}")


def input_picture(image: np.ndarray, picture_format: str) -> bytes:
    """``input_png``'s picture in ``picture_format``: what the model saw, resized but not
    preprocessed, (h, w, 1 or 3) pixels in [0, 255]; grey stays grey ("L")."""
    return encode_picture(_input_pixels(image), picture_format)
