"""Drawing: honest colour scales, grid layout, deterministic PNG and SVG bytes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from reportgen import drawing
from reportgen.curves import learning_curve_svg
from reportgen.history import History


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_layer_scale_draws_a_dead_channel_in_the_bottom_colour():
    maps = np.random.default_rng(0).random((1, 5, 5, 3), dtype=np.float32)
    maps[..., 1] = 0.0
    levels = drawing.layer_scale_levels(maps)
    assert (levels[..., 1] == 0).all()
    assert levels.max() == drawing.TOP_LEVEL
    # the article's per-channel standardisation turns the same dead channel into the middle colour
    assert (drawing.channel_scale_levels(maps)[..., 1] == drawing.TOP_LEVEL // 2).all()


def test_layer_scale_keeps_negative_values_below_zero():
    maps = np.array([-1.0, 0.0, 1.0], dtype=np.float32).reshape(1, 1, 3, 1)
    assert drawing.layer_scale_levels(maps).ravel().tolist() == [0, 127, 254]


def test_each_image_of_a_batch_gets_its_own_scale():
    maps = np.stack([np.full((2, 2, 1), 1.0), np.full((2, 2, 1), 100.0)]).astype(np.float32)
    maps[:, 0, 0, 0] = 0.0
    levels = drawing.layer_scale_levels(maps)
    assert levels[0, 1, 1, 0] == levels[1, 1, 1, 0] == drawing.TOP_LEVEL


# Maps of one image with any finite values up to 2**100 (beyond about 2**127 the span itself
# overflows): negative and positive, tiny and huge spans, runs of equal values. No subnormals:
# TensorFlow, once imported, flushes them to zero in this process.
image_maps = hnp.arrays(np.float32, hnp.array_shapes(min_dims=3, max_dims=3, max_side=5),
                        elements=st.floats(-2.0**100, 2.0**100, width=32, allow_subnormal=False))


@given(image_maps)
# A span so small that 254 / span overflows float32 (Hypothesis found it): no warning, the
# same bytes, and the top value not on the top colour but on the scale of MIN_SPAN.
@example(np.full((1, 1, 1), 1.1754944e-38, np.float32))
def test_the_first_passs_unclipped_levels_are_the_clipped_ones(maps):
    out = np.full(maps.size, 255, np.uint8)
    drawing.layer_levels_into(out, maps, maps.max())
    np.testing.assert_array_equal(out.reshape(maps.shape),
                                  drawing.layer_scale_levels(maps[np.newaxis])[0])


def test_all_zero_layer_is_all_bottom_colour():
    assert (drawing.layer_scale_levels(np.zeros((1, 2, 2, 4), np.float32)) == 0).all()


def test_channel_grid_places_every_channel():
    height, width, channels = 3, 2, 20
    levels = np.arange(channels, dtype=np.uint8)[None, None, None, :].repeat(height, 1).repeat(width, 2)
    grid = drawing.channel_grids(levels)[0]
    rows, columns, grid_height, grid_width = drawing.grid_shape(height, width, channels)
    assert (rows, columns) == (2, 16)
    assert grid.shape == (grid_height, grid_width) == (7, 47)
    for channel in range(channels):
        row, column = divmod(channel, columns)
        tile = grid[row * (height + 1): row * (height + 1) + height,
                    column * (width + 1): column * (width + 1) + width]
        assert (tile == channel).all(), channel
    assert (grid[3, :] == drawing.GAP_INDEX).all()  # the gap between rows
    # the slots after the last channel are background, not a repeated tile
    assert (grid[4:, 4 * 3:] == drawing.GAP_INDEX).all()


def test_png_bytes_are_deterministic_and_decode_to_the_colours():
    maps = np.random.default_rng(1).random((6, 6, 4), dtype=np.float32)
    palette = drawing.colormap_palette("viridis")
    first = drawing.feature_grid_png(maps, palette)
    assert first == drawing.feature_grid_png(maps, palette)
    colours = np.frombuffer(palette, dtype=np.uint8).reshape(256, 3)
    expected = colours[drawing.channel_grids(drawing.layer_scale_levels(maps[np.newaxis]))[0]]
    np.testing.assert_array_equal(decode(first), expected)
    assert b"tIME" not in first and b"tEXt" not in first
    assert tuple(colours[drawing.GAP_INDEX]) == drawing.GAP_RGB


def test_batch_and_single_pictures_agree():
    maps = np.random.default_rng(2).random((3, 4, 4, 5), dtype=np.float32)
    palette = drawing.colormap_palette("magma")
    assert drawing.feature_grid_pngs(maps, palette) == [drawing.feature_grid_png(m, palette)
                                                         for m in maps]


def test_input_png_keeps_grayscale_and_rgb():
    gray = decode(drawing.input_png(np.full((4, 4, 1), 127.6, np.float32)))
    assert gray.shape == (4, 4, 3) and (gray == 128).all()
    rgb = np.zeros((4, 4, 3), np.float32)
    rgb[..., 0] = 255.0
    assert (decode(drawing.input_png(rgb))[..., 0] == 255).all()


def test_strip_shares_one_scale():
    grey = bytes(np.repeat(np.arange(256, dtype=np.uint8), 3))  # colour == level
    maps = [np.full((2, 2), 1.0, np.float32), np.full((2, 2), 2.0, np.float32)]
    strip = decode(drawing.strip_png(maps, 0.0, 2.0, grey))
    assert strip.shape == (2, 5, 3)
    assert strip[0, 0, 0] == 127 and strip[0, 3, 0] == drawing.TOP_LEVEL
    assert strip[0, 2, 0] == drawing.GAP_INDEX


def test_unknown_colormap_is_a_user_error():
    from reportgen.errors import UserError

    with pytest.raises(UserError, match="colormap"):
        drawing.colormap_palette("no-such-map")


def test_learning_curves_are_deterministic_svg():
    history = History.from_keras({"accuracy": [0.4, 0.8], "val_accuracy": [0.5, 0.7],
                                  "loss": [1.2, 0.4], "val_loss": [1.0, 0.9]})
    svg = learning_curve_svg(history, "accuracy")
    assert svg == learning_curve_svg(history, "accuracy")
    assert svg.startswith(b"<?xml") and b"<svg" in svg
    # text is drawn as paths, so no font is ever looked up
    assert b"<text" not in svg and b"@font-face" not in svg


def test_wide_maps_get_fewer_columns_so_a_grid_fits_the_page():
    assert drawing.grid_shape(112, 112, 64)[:2] == (8, 8)  # 960 // 113 columns
    assert drawing.grid_shape(7, 7, 1280)[:2] == (80, 16)
    assert drawing.grid_shape(2000, 2000, 3)[:2] == (3, 1)
    assert drawing.grid_shape(112, 112, 64)[3] <= drawing.MAX_GRID_WIDTH_PX


def test_a_subset_of_channels_keeps_the_whole_layers_scale():
    maps = np.zeros((1, 1, 1, 3), np.float32)
    maps[..., :] = [1.0, 4.0, 2.0]
    levels = drawing.layer_scale_levels(maps, channels=[0, 2])
    assert levels.ravel().tolist() == [round(254 / 4), 127]  # 4.0, not 2.0, is the top
    grid = drawing.channel_grids(drawing.scale_levels(maps, "channel", channels=[2]))
    assert grid.shape == (1, 1, 1)
