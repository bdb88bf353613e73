"""Input pictures and Grad-CAM overlays: JPEG for photo-sized inputs, lossless PNG for small ones.

The rule as a pure function, the JPEG encoder's fixed settings, the pages linking exactly the
files the first pass writes (in either format), and a photo-sized build opened in the browser.
"""

from __future__ import annotations

import dataclasses
import io
import json
import posixpath
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import browser
import numpy as np
import pytest
from generated_photos import photo_like
from PIL import Image, JpegImagePlugin
from test_render import parse
from test_render_explain import explained
from tiny_report import tiny_report

from reportgen import drawing, layout, overlays, pipeline
from reportgen.render import render_site

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
MAGIC = {"png": PNG_MAGIC, "jpeg": JPEG_MAGIC}


@pytest.mark.parametrize(("choice", "height", "width", "expected"), [
    ("auto", 28, 28, "png"),  # the bundled shapes: their site keeps its bytes
    ("auto", 32, 32, "png"),
    ("auto", 63, 500, "png"),  # the shorter side decides
    ("auto", 500, 63, "png"),
    ("auto", 64, 64, "jpeg"),
    ("auto", 64, 300, "jpeg"),
    ("auto", 224, 224, "jpeg"),
    ("png", 224, 224, "png"),
    ("jpeg", 28, 28, "jpeg"),
])
def test_the_picture_format_rule(choice, height, width, expected):
    assert drawing.picture_format(choice, height, width) == expected


def test_an_unknown_picture_format_is_refused():
    with pytest.raises(ValueError, match="gif"):
        drawing.picture_format("gif", 224, 224)
    with pytest.raises(ValueError, match="gif"):
        drawing.encode_picture(np.zeros((8, 8), np.uint8), "gif")


def photo_pixels(size: int = 224, seed: int = 0) -> np.ndarray:
    return np.asarray(photo_like(size, size, seed=seed))


def jpeg_markers(data: bytes) -> list[int]:
    """The JPEG markers before the entropy-coded scan (SOI to SOS), in order."""
    markers, position = [], 2
    assert data[:2] == b"\xff\xd8"
    while True:
        marker = data[position + 1]
        markers.append(marker)
        if marker == 0xDA:  # SOS: the compressed data follows
            return markers
        position += 2 + int.from_bytes(data[position + 2:position + 4], "big")


def test_jpeg_bytes_depend_on_the_pixels_only():
    pixels = photo_pixels()
    first = drawing.encode_jpeg(pixels)
    with ThreadPoolExecutor(max_workers=4) as pool:  # as the drawing threads encode
        again = list(pool.map(drawing.encode_jpeg, [pixels.copy() for _ in range(8)]))
    assert again == [first] * 8
    assert drawing.encode_jpeg(photo_pixels(seed=1)) != first


def test_jpeg_is_baseline_full_colour_without_metadata():
    data = drawing.encode_jpeg(photo_pixels())
    assert data.startswith(JPEG_MAGIC) and data.endswith(b"\xff\xd9")
    # APP0 (JFIF), quantisation and Huffman tables, baseline frame (SOF0): no EXIF (APP1), no
    # comment (COM), nothing progressive.
    assert set(jpeg_markers(data)) == {0xE0, 0xDB, 0xC4, 0xC0, 0xDA}
    picture = Image.open(io.BytesIO(data))
    assert picture.mode == "RGB" and picture.size == (224, 224)
    assert JpegImagePlugin.get_sampling(picture) == 0  # 4:4:4: chroma at full resolution
    assert picture.info.get("progressive") is None


def test_a_photo_survives_jpeg_within_a_few_levels():
    pixels = photo_pixels()
    decoded = np.asarray(Image.open(io.BytesIO(drawing.encode_jpeg(pixels))), np.int16)
    error = np.abs(decoded - pixels)
    # Quality 90 at 4:4:4 gives 3.5 and 17 here; quality 85 (4.0, 21) and 4:2:0 (5.7, 51) fail.
    assert error.mean() < 3.6
    assert np.percentile(error, 99) < 20


def test_a_grey_input_stays_grey_and_png_input_pictures_are_unchanged():
    grey = np.random.default_rng(0).uniform(0, 255, (64, 64, 1)).astype(np.float32)
    assert Image.open(io.BytesIO(drawing.input_picture(grey, "jpeg"))).mode == "L"
    colour = np.random.default_rng(1).uniform(0, 255, (64, 64, 3)).astype(np.float32)
    assert Image.open(io.BytesIO(drawing.input_picture(colour, "jpeg"))).mode == "RGB"
    for image in (grey, colour):  # PNG sites keep their bytes
        assert drawing.input_picture(image, "png") == drawing.input_png(image)


@pytest.mark.parametrize("channels", [3, 1])
def test_an_overlay_is_half_its_input_and_half_the_colour_of_the_stretched_map(channels):
    rng = np.random.default_rng(4)
    image = rng.uniform(0, 255, (40, 56, channels)).astype(np.float32)
    cam = rng.random((5, 7)).astype(np.float32)

    pixels = overlays.overlay_pixels(image, cam)

    levels = np.clip(np.floor(overlays.upsample(cam, 40, 56).astype(np.float64) * 254 + 0.5), 0, 254)
    colours = overlays.cam_lut()[levels.astype(np.uint8)].astype(np.float64)
    expected = np.floor(0.5 * image.astype(np.float64) + 0.5 * colours + 0.5)
    # float32 in the code, float64 here: a rounding at most one level apart.
    np.testing.assert_allclose(pixels, expected, atol=1)


def test_an_overlay_keeps_its_colours_in_jpeg():
    image = photo_pixels().astype(np.float32)
    cam = np.random.default_rng(0).random((7, 7)).astype(np.float32)
    png = np.asarray(Image.open(io.BytesIO(overlays.overlay_picture(image, cam, "png"))), np.int16)
    data = overlays.overlay_picture(image, cam, "jpeg")
    assert data.startswith(JPEG_MAGIC)
    jpeg = np.asarray(Image.open(io.BytesIO(data)), np.int16)
    assert jpeg.shape == png.shape == (224, 224, 3)
    assert np.abs(jpeg - png).mean() < 2.6  # 2.4; at 4:2:0 3.5, at quality 85 2.75


@pytest.mark.parametrize("picture_format", ["png", "jpeg"])
def test_the_pages_link_exactly_the_pictures_the_first_pass_writes(picture_format):
    report = dataclasses.replace(explained(tiny_report()), pictures=picture_format)
    height, width, channels = report.model.input_shape
    images = np.random.default_rng(0).uniform(
        0, 255, (len(report.images), height, width, channels)).astype(np.float32)
    cam = SimpleNamespace(predicted_maps=report.explanations.cam_maps,
                          true_maps=report.explanations.cam_true_maps)
    mistaken = np.array([not image.correct for image in report.images])
    assert mistaken.any()
    written: dict[str, bytes] = {}

    pipeline._draw_inputs(written.__setitem__, picture_format, images,
                          [image.slug for image in report.images], cam, mistaken)
    site = dict(render_site(report))

    linked = set()
    for page, html in site.items():
        if page.endswith(".html"):
            for link in parse(html).links:
                target = posixpath.normpath(posixpath.join(posixpath.dirname(page),
                                                           link.partition("#")[0]))
                if target.startswith(("assets/inputs/", "assets/cam/")):
                    linked.add(target)
    assert linked == set(written)
    assert len(written) == 2 * len(report.images) + mistaken.sum()
    assert all(data.startswith(MAGIC[picture_format]) for data in written.values())
    assert json.loads(site["report.json"])["drawing"]["pictures"] == picture_format


# -- a photo-sized build ----------------------------------------------------------------------

PHOTO_INPUT_PX = 64  # the smallest input that gets JPEG: the cheapest photo-sized build


def photo_model(path: Path) -> Path:
    from reportgen.keras_import import keras

    layers = keras.layers
    keras.utils.set_random_seed(0)
    image = keras.Input((PHOTO_INPUT_PX, PHOTO_INPUT_PX, 3), name="image")
    x = layers.Conv2D(4, 3, strides=2, activation="relu", name="conv1")(image)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(4, 3, activation="relu", name="conv2")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(image, layers.Dense(2, activation="softmax", name="out")(x))
    model.save(path)
    return path


def build_cli(*args: str) -> None:
    from click.testing import CliRunner

    from reportgen.cli import main

    result = CliRunner().invoke(main, ["build", "--preprocess", "unit", "--jobs", "1", *args])
    assert result.exit_code == 0, result.output


def asset_files(site: Path, folder: str) -> list[Path]:
    return sorted(path for path in (site / "assets" / folder).rglob("*") if path.is_file())


@pytest.mark.slow
@pytest.mark.browser
def test_a_photo_sized_build_writes_jpeg_that_its_pages_show_and_png_when_asked(tmp_path, chromium):
    photos = tmp_path / "photos"
    for number, name in enumerate(["cats/a.jpg", "cats/b.jpg", "dogs/c.jpg", "dogs/d.jpg"]):
        (photos / name).parent.mkdir(parents=True, exist_ok=True)
        photo_like(96, 80, seed=number).save(photos / name, quality=90)
    model = photo_model(tmp_path / "photo.keras")
    auto, png = tmp_path / "auto", tmp_path / "png"

    build_cli("--data", str(photos), "--model", str(model), "--out", str(auto))
    build_cli("--data", str(photos), "--model", str(model), "--out", str(png), "--pictures", "png")

    report = json.loads((auto / "report.json").read_text(encoding="utf-8"))
    assert report["drawing"]["pictures"] == "jpeg"
    mistakes = sum(i["true_label"] != i["predicted_label"] for i in report["images"])
    assert mistakes  # so the true class's overlays are written and shown too
    pictures = asset_files(auto, "inputs") + asset_files(auto, "cam")
    assert len(pictures) == 2 * len(report["images"]) + mistakes
    for picture in pictures:
        assert picture.suffix == ".jpg" and picture.read_bytes().startswith(JPEG_MAGIC), picture
    # Feature maps and mean heatmaps stay PNG.
    for picture in asset_files(auto, "maps") + asset_files(auto, "cam-means"):
        assert picture.suffix == ".png" and picture.read_bytes().startswith(PNG_MAGIC), picture

    first = report["images"][0]
    image_page = first["page"]
    html = (auto / image_page).read_text(encoding="utf-8")
    assert len(re.findall(r'src="\.\./assets/inputs/[^"]+\.jpg"', html)) == 1
    assert len(re.findall(r'src="\.\./assets/cam/[^"]+\.jpg"', html)) == \
        1 + (first["true_label"] != first["predicted_label"])
    found = browser.crawl(auto, chromium)  # every page, every picture decoded by chromium
    assert image_page in found and layout.LABEL_ERRORS_PAGE in found
    assert browser.problems(found) == []

    # --pictures png: the same site with PNG pictures; the feature maps do not change.
    assert json.loads((png / "report.json").read_text(encoding="utf-8"))["drawing"]["pictures"] == "png"
    png_pictures = asset_files(png, "inputs") + asset_files(png, "cam")
    assert [p.relative_to(png).with_suffix("") for p in png_pictures] == \
        [p.relative_to(auto).with_suffix("") for p in pictures]
    for picture in png_pictures:
        assert picture.suffix == ".png" and picture.read_bytes().startswith(PNG_MAGIC), picture
    assert not re.findall(r'src="[^"]+\.jpg"', (png / image_page).read_text(encoding="utf-8"))
    assert browser.read_tree(png / "assets" / "maps") == browser.read_tree(auto / "assets" / "maps")
