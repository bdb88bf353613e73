"""The image-folder reader: what it accepts, what it skips and why, what the model gets."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, UnidentifiedImageError

from reportgen import batches as batch_module
from reportgen import data, decode
from reportgen.batches import iter_batches, load_split
from reportgen.data import scan_dataset, scan_split
from reportgen.decode import InputSpec, check_image, load_image
from reportgen.errors import UserError

RGB_8x8 = InputSpec(height=8, width=8, channels=3)
GREY_8x8 = InputSpec(height=8, width=8, channels=1)


def save(path: Path, image: Image.Image | None = None, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = image if image is not None else Image.new("RGB", (8, 8), (0, 128, 255))
    image.save(path, format=options.pop("format", None) or "PNG", **options)
    return path


def write_bytes(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a size in its header and holds no pixels at all."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        checksum = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + checksum

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def shapes_dataset(root: Path, *, per_class: int = 2, train: bool = True) -> Path:
    # Written out of name order on purpose: the reader must sort.
    splits = ("test_set", "training_set") if train else ("test_set",)
    for split in splits:
        for class_name in ("triangles", "circles", "squares"):
            for index in reversed(range(per_class)):
                save(root / split / class_name / f"{class_name[:-1]}_{index:04d}.png")
    return root


def skipped_reasons(split: data.Split) -> dict[str, str]:
    return {skip.path: skip.reason for skip in split.skipped}


# --- Ordering and labels ----------------------------------------------------


def test_classes_sorted_by_name_give_labels_and_images_are_sorted(tmp_path):
    dataset = scan_dataset(shapes_dataset(tmp_path))

    assert dataset.class_names == ("circles", "squares", "triangles")
    assert [(r.path, r.label, r.class_name) for r in dataset.test.images] == [
        ("circles/circle_0000.png", 0, "circles"),
        ("circles/circle_0001.png", 0, "circles"),
        ("squares/square_0000.png", 1, "squares"),
        ("squares/square_0001.png", 1, "squares"),
        ("triangles/triangle_0000.png", 2, "triangles"),
        ("triangles/triangle_0001.png", 2, "triangles"),
    ]
    assert dataset.train is not None and len(dataset.train.images) == 6
    assert dataset.test.root == tmp_path / "test_set"
    assert dataset.skipped == () and dataset.test.empty_classes == ()


def test_class_order_is_plain_string_order_not_locale_or_case_folded(tmp_path):
    for name in ("b", "B", "a", "_z", "10", "9"):
        save(tmp_path / "test_set" / name / "x.png")

    assert scan_dataset(tmp_path).class_names == ("10", "9", "B", "_z", "a", "b")


def test_images_in_nested_subfolders_are_included_with_their_subfolder(tmp_path):
    save(tmp_path / "test_set" / "circles" / "zz.png")
    save(tmp_path / "test_set" / "circles" / "batch2" / "deeper" / "a.png")
    save(tmp_path / "test_set" / "circles" / "b.png")

    paths = [record.path for record in scan_dataset(tmp_path).test.images]

    assert paths == ["circles/b.png", "circles/batch2/deeper/a.png", "circles/zz.png"]


def test_images_are_sorted_by_whole_relative_path_not_folder_by_folder(tmp_path):
    # "-" sorts before "/", so a folder walk alone would put a/x.png first.
    save(tmp_path / "test_set" / "circles" / "a" / "x.png")
    save(tmp_path / "test_set" / "circles" / "a-b.png")

    paths = [record.path for record in scan_dataset(tmp_path).test.images]

    assert paths == ["circles/a-b.png", "circles/a/x.png"]


def test_training_set_is_optional_unless_required(tmp_path):
    shapes_dataset(tmp_path, train=False)

    assert scan_dataset(tmp_path).train is None
    with pytest.raises(UserError, match="training_set"):
        scan_dataset(tmp_path, require_train=True)


def test_given_class_names_fix_the_label_order(tmp_path):
    shapes_dataset(tmp_path, per_class=1)

    split = scan_split(tmp_path / "test_set", ["triangles", "circles", "squares"])

    assert [(r.class_name, r.label) for r in split.images] == [
        ("triangles", 0), ("circles", 1), ("squares", 2)]


def test_an_empty_class_folder_is_reported_not_raised(tmp_path):
    shapes_dataset(tmp_path, train=False)
    (tmp_path / "test_set" / "hexagons").mkdir()
    write_bytes(tmp_path / "test_set" / "stars" / "broken.png", b"not a png")

    test = scan_dataset(tmp_path).test

    assert test.class_names == ("circles", "hexagons", "squares", "stars", "triangles")
    assert test.empty_classes == ("hexagons", "stars")
    assert {r.label for r in test.images} == {0, 2, 4}


ODD_NAMES = ['a <b> & "c"', "#1 ? 100%", "кириллица", "漢字 空白", "it's"]


@pytest.mark.parametrize("name", ODD_NAMES)
def test_odd_file_and_class_names_round_trip_unchanged(tmp_path, name):
    save(tmp_path / "test_set" / name / f"{name}.png")
    save(tmp_path / "test_set" / "plain" / "x.png")
    write_bytes(tmp_path / "test_set" / name / f"{name} bad.png", b"text")

    dataset = scan_dataset(tmp_path)

    assert dataset.class_names == tuple(sorted([name, "plain"]))
    record = next(r for r in dataset.test.images if r.class_name == name)
    assert record.path == f"{name}/{name}.png"
    assert dataset.skipped[0].path == f"test_set/{name}/{name} bad.png"
    assert load_image(dataset.test.root / record.path, RGB_8x8).shape == (8, 8, 3)


def test_a_file_name_that_is_not_utf8_is_skipped_with_a_printable_path(tmp_path):
    shapes_dataset(tmp_path, per_class=1, train=False)
    circles = os.fsencode(tmp_path / "test_set" / "circles")
    try:
        with open(circles + b"/caf\xe9.png", "wb") as file:  # Latin-1, not UTF-8
            file.write(png_bytes(Image.new("L", (8, 8))))
    except OSError:
        pytest.skip("this file system only takes valid UTF-8 names")

    assert skipped_reasons(scan_dataset(tmp_path).test) == {
        "test_set/circles/caf\ufffd.png": "file name is not valid UTF-8"}


# --- Batches ----------------------------------------------------------------


def test_batches_cover_every_image_once_in_order(tmp_path):
    split = scan_dataset(shapes_dataset(tmp_path, per_class=3, train=False)).test

    batches = list(iter_batches(split, GREY_8x8, batch_size=4))

    assert [len(batch.records) for batch in batches] == [4, 4, 1]
    assert tuple(r for batch in batches for r in batch.records) == split.images
    for batch in batches:
        assert batch.images.shape == (len(batch.records), 8, 8, 1)
        assert batch.images.dtype == np.float32
        assert batch.images.min() >= 0.0 and batch.images.max() <= 255.0
    # The fixture colour (0, 128, 255) has a luminance of 0.587 * 128 + 0.114 * 255 = 104.2.
    np.testing.assert_array_equal(batches[0].images, 104.0)


def test_batches_load_one_batch_at_a_time(tmp_path, monkeypatch):
    split = scan_dataset(shapes_dataset(tmp_path, per_class=4, train=False)).test
    loaded: list[Path] = []
    real_read_image = batch_module.read_image

    def counting_read_image(path, spec, **kwargs):
        loaded.append(path)
        return real_read_image(path, spec, **kwargs)

    monkeypatch.setattr(batch_module, "read_image", counting_read_image)
    batches = iter_batches(split, RGB_8x8, batch_size=5)
    assert loaded == []

    first = next(batches)

    assert len(first.records) == 5
    assert loaded == [split.root / r.path for r in split.images[:5]]


def test_batch_size_must_be_positive(tmp_path):
    split = scan_dataset(shapes_dataset(tmp_path, train=False)).test
    with pytest.raises(ValueError, match="batch_size"):
        iter_batches(split, RGB_8x8, batch_size=0)


def test_a_file_that_fails_to_decode_in_its_batch_is_left_out_and_listed(tmp_path):
    split = scan_dataset(shapes_dataset(tmp_path, train=False)).test
    damaged = split.images[-1]
    (split.root / damaged.path).write_bytes(b"gone")

    batches = list(iter_batches(split, RGB_8x8, batch_size=4))

    assert [batch.indices for batch in batches] == [(0, 1, 2, 3), (4,)]
    assert batches[1].records == (split.images[4],) and len(batches[1].images) == 1
    assert batches[1].unreadable == ((damaged, "not a " + ", ".join(decode.pillow_formats())
                                      + " image Pillow can read"),)
    remaining = split.without(batches[1].unreadable)
    assert remaining.images == split.images[:-1]
    assert [s.path for s in remaining.skipped] == ["test_set/triangles/triangle_0001.png"]


def test_the_images_after_a_failed_one_fill_its_place_in_the_batch(tmp_path):
    split = scan_dataset(shapes_dataset(tmp_path, train=False)).test
    (split.root / split.images[1].path).write_bytes(b"gone")
    grey = split.root / split.images[2].path  # read into the batch through a copy (L to RGB)
    with Image.open(grey) as picture:
        picture.convert("L").save(grey)

    [batch] = iter_batches(split, RGB_8x8, batch_size=len(split.images))

    assert batch.indices == (0, *range(2, len(split.images)))
    np.testing.assert_array_equal(batch.images, np.stack(
        [load_image(split.root / split.images[i].path, RGB_8x8) for i in batch.indices]))


def test_load_split_returns_every_image_with_its_label(tmp_path):
    split = scan_dataset(shapes_dataset(tmp_path, train=False)).test

    images, labels = load_split(split, RGB_8x8)

    assert images.shape == (6, 8, 8, 3) and images.dtype == np.float32
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]


# --- Files that are skipped, and files that are ignored ----------------------


def truncated_png() -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    content = png_bytes(Image.fromarray(noise))
    return content[: len(content) // 2]


BAD_FILES = {
    "truncated PNG": ("cut.png", truncated_png(), "truncated image data"),
    "PNG missing its end": ("end.png", png_bytes(Image.new("L", (4, 4)))[:-12], "truncated"),
    "text named .png": ("notes.png", b"hello, I am text\n", "not a PNG, JPEG, BMP, GIF, WEBP, TIFF"),
    "empty file": ("empty.png", b"", "empty file"),
    "AppleDouble fork": ("._photo.png", b"\x00\x05\x16\x07" + bytes(60),
                         "macOS resource fork, not an image"),
    "not an image suffix": ("notes.txt", b"hello", "not an image file (.txt)"),
    "no suffix": ("README", b"hello", "not an image file (no extension)"),
    "over our pixel cap": ("big.png", png_header_only(8000, 6000),
                           "image too large (8000x6000 pixels)"),
    "over Pillow's bomb limit": ("bomb.png", png_header_only(50_000, 50_000), "image too large"),
}


@pytest.mark.parametrize("name, content, reason", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_files_are_skipped_with_a_reason(tmp_path, name, content, reason):
    shapes_dataset(tmp_path, per_class=1, train=False)
    write_bytes(tmp_path / "test_set" / "circles" / name, content)

    dataset = scan_dataset(tmp_path)

    assert reason in skipped_reasons(dataset.test)[f"test_set/circles/{name}"]
    assert [r.path for r in dataset.test.images if r.label == 0] == ["circles/circle_0000.png"]


def test_the_pixel_cap_is_checked_before_decoding(tmp_path, monkeypatch):
    path = save(tmp_path / "wide.png", Image.new("L", (20, 10)))
    monkeypatch.setattr(decode, "MAX_IMAGE_PIXELS", 199)

    assert check_image(path) == "image too large (20x10 pixels)"
    with pytest.raises(UserError, match="too large"):
        load_image(path, GREY_8x8)


def test_pillows_decompression_bomb_warning_refuses_the_image(tmp_path, monkeypatch):
    path = save(tmp_path / "small.png", Image.new("L", (20, 10)))
    # Pillow warns above its limit and raises above twice it: 150 pixels only warns.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 150)

    assert "too large" in check_image(path)


def test_symlinks_outside_the_data_folder_are_not_followed(tmp_path):
    root, outside = tmp_path / "data", tmp_path / "elsewhere"
    shapes_dataset(root, per_class=1, train=False)
    secret = save(outside / "secret.png")
    save(outside / "folder" / "more.png")
    circles = root / "test_set" / "circles"
    (circles / "link.png").symlink_to(secret)
    (circles / "linked_folder").symlink_to(outside / "folder", target_is_directory=True)
    (circles / "inside.png").symlink_to(circles / "circle_0000.png")
    (circles / "dangling.png").symlink_to(circles / "deleted.png")

    test = scan_dataset(root).test

    assert skipped_reasons(test) == {
        "test_set/circles/dangling.png": "broken symlink",
        "test_set/circles/link.png": "symlink pointing outside the data folder",
        "test_set/circles/linked_folder": "symlink pointing outside the data folder",
    }
    assert [r.path for r in test.images if r.label == 0] == [
        "circles/circle_0000.png", "circles/inside.png"]


def test_a_split_folder_symlinked_outside_the_data_folder_is_not_followed(tmp_path):
    shapes_dataset(tmp_path / "elsewhere", per_class=1, train=False)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "test_set").symlink_to(tmp_path / "elsewhere" / "test_set")

    with pytest.raises(UserError, match="no readable image.*outside the data folder"):
        scan_dataset(tmp_path / "data")


def test_a_symlink_loop_is_reported_once_not_followed_forever(tmp_path):
    shapes_dataset(tmp_path, per_class=1, train=False)
    circles = tmp_path / "test_set" / "circles"
    (circles / "again").symlink_to(circles, target_is_directory=True)

    test = scan_dataset(tmp_path).test

    assert skipped_reasons(test) == {"test_set/circles/again": "symlink loop"}


def test_os_litter_is_ignored_silently(tmp_path):
    shapes_dataset(tmp_path, per_class=1, train=False)
    test_set, circles = tmp_path / "test_set", tmp_path / "test_set" / "circles"
    for litter in (circles / ".DS_Store", circles / "Thumbs.db", circles / "desktop.ini",
                   circles / ".hidden.png", test_set / ".DS_Store", tmp_path / ".DS_Store"):
        write_bytes(litter, b"\x00\x01junk")
    save(test_set / "__MACOSX" / "circles" / "circle_0000.png")
    save(circles / "__MACOSX" / "x.png")
    save(test_set / ".ipynb_checkpoints" / "y.png")
    save(circles / ".cache" / "z.png")

    test = scan_dataset(tmp_path).test

    assert test.class_names == ("circles", "squares", "triangles")
    assert test.skipped == ()
    assert [r.path for r in test.images if r.label == 0] == ["circles/circle_0000.png"]


def test_files_beside_the_class_folders_are_skipped(tmp_path):
    shapes_dataset(tmp_path, per_class=1, train=False)
    save(tmp_path / "test_set" / "stray.png")
    write_bytes(tmp_path / "test_set" / "labels.csv", b"a,b\n")

    assert skipped_reasons(scan_dataset(tmp_path).test) == {
        "test_set/labels.csv": "not an image file (.csv)",
        "test_set/stray.png": "not inside a class folder",
    }


def test_format_comes_from_the_content_not_the_suffix(tmp_path):
    shapes_dataset(tmp_path, per_class=1, train=False)
    circles = tmp_path / "test_set" / "circles"
    save(circles / "really_png.jpg")
    save(circles / "SHOUTING.PNG")
    save(circles / "bitmap.bmp", format="BMP")
    save(circles / "photo.jpeg", format="JPEG")
    # A real image in a format the suffixes do not promise is refused.
    save(circles / "ppm_inside.png", format="PPM")

    test = scan_dataset(tmp_path).test

    assert [r.path for r in test.images if r.label == 0] == [
        "circles/SHOUTING.PNG", "circles/bitmap.bmp", "circles/circle_0000.png",
        "circles/photo.jpeg", "circles/really_png.jpg"]
    assert list(skipped_reasons(test)) == ["test_set/circles/ppm_inside.png"]


def test_skipped_files_are_sorted_by_path_and_dataset_lists_train_then_test(tmp_path):
    shapes_dataset(tmp_path, per_class=1)
    for path in ("test_set/zz.txt", "test_set/squares/b.png", "test_set/circles/z.png",
                 "training_set/circles/a.png"):
        write_bytes(tmp_path / path, b"junk")

    dataset = scan_dataset(tmp_path)

    assert [s.path for s in dataset.test.skipped] == [
        "test_set/circles/z.png", "test_set/squares/b.png", "test_set/zz.txt"]
    assert [s.path for s in dataset.skipped] == [
        "training_set/circles/a.png",
        "test_set/circles/z.png", "test_set/squares/b.png", "test_set/zz.txt"]


# --- Conversions ------------------------------------------------------------


def load_one(tmp_path: Path, image: Image.Image, spec: InputSpec, **options) -> np.ndarray:
    path = save(tmp_path / "one.png", image, **options)
    assert check_image(path) is None
    pixels = load_image(path, spec)
    assert pixels.shape == (spec.height, spec.width, spec.channels)
    assert pixels.dtype == np.float32
    return pixels


def test_grayscale_becomes_three_equal_channels(tmp_path):
    pixels = load_one(tmp_path, Image.new("L", (8, 8), 51), RGB_8x8)
    np.testing.assert_array_equal(pixels, 51.0)


def test_rgb_becomes_luminance_as_keras_load_img_reads_it(tmp_path):
    pixels = load_one(tmp_path, Image.new("RGB", (8, 8), (255, 0, 0)), GREY_8x8)
    np.testing.assert_array_equal(pixels, 76.0)  # round(0.299 * 255), 8-bit as Pillow's "L"


def test_transparent_pixels_are_laid_on_white(tmp_path):
    image = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    image.putpixel((0, 0), (0, 0, 0, 255))

    pixels = load_one(tmp_path, image, RGB_8x8)

    assert pixels[0, 0].tolist() == [0.0, 0.0, 0.0]
    assert pixels[7, 7].tolist() == [255.0, 255.0, 255.0]


def test_grey_with_alpha_is_laid_on_white(tmp_path):
    pixels = load_one(tmp_path, Image.new("LA", (8, 8), (0, 0)), GREY_8x8)
    np.testing.assert_allclose(pixels, 255.0)


def test_palette_images_with_transparency_use_their_colours(tmp_path):
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255])
    image.putpixel((1, 0), 2)

    pixels = load_one(tmp_path, image, RGB_8x8, transparency=0)

    assert pixels[0, 0].tolist() == [255.0, 0.0, 0.0]
    assert pixels[0, 1].tolist() == [0.0, 0.0, 255.0]
    image.putpixel((2, 0), 0)
    pixels = load_one(tmp_path, image, RGB_8x8, transparency=0)
    assert pixels[0, 2].tolist() == [255.0, 255.0, 255.0]


@pytest.mark.parametrize(("image", "transparent", "spec", "kept"), [
    # A PNG's tRNS chunk: one colour (or grey level) of an image without alpha is transparent.
    (Image.new("RGB", (8, 8), (0, 0, 0)), (0, 0, 0), RGB_8x8, [200.0, 0.0, 0.0]),
    (Image.new("L", (8, 8), 0), 0, GREY_8x8, [200.0]),
])
def test_a_transparent_colour_is_laid_on_white(tmp_path, image, transparent, spec, kept):
    image.putpixel((0, 0), (200, 0, 0) if image.mode == "RGB" else 200)

    pixels = load_one(tmp_path, image, spec, transparency=transparent)

    assert pixels[0, 0].tolist() == kept
    np.testing.assert_array_equal(pixels[1:], 255.0)


def test_sixteen_bit_grey_is_scaled_by_its_range_not_clipped(tmp_path):
    image = Image.fromarray(np.array([[32768, 65535], [0, 16384]], np.uint16))
    assert image.mode == "I;16"

    pixels = load_one(tmp_path, image, InputSpec(2, 2, 1))

    np.testing.assert_allclose(pixels[..., 0], [[127.5, 255.0], [0.0, 63.75]], atol=0.01)


def test_sixteen_bit_transparent_grey_is_laid_on_white(tmp_path):
    image = Image.fromarray(np.array([[5, 6]], np.uint16))

    pixels = load_one(tmp_path, image, InputSpec(1, 2, 1), transparency=5)

    np.testing.assert_allclose(pixels[..., 0], [[255.0, 6 / 65535 * 255]], atol=1e-4)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("L", (4, 2), 0)
    image.paste(255, (2, 0, 4, 2))
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"

    pixels = load_one(tmp_path, image, InputSpec(4, 2, 1), exif=exif)

    assert pixels[..., 0].tolist() == [[0, 0], [0, 0], [255, 255], [255, 255]]


def test_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("L", (8, 8), 0), Image.new("L", (8, 8), 255)]

    pixels = load_one(tmp_path, frames[0], GREY_8x8, format="GIF", save_all=True,
                      append_images=frames[1:])

    assert pixels.max() == 0.0


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    pixels = load_one(tmp_path, Image.new("CMYK", (8, 8), (0, 255, 255, 0)), RGB_8x8,
                      format="JPEG")
    np.testing.assert_allclose(pixels.mean(axis=(0, 1)), [255.0, 0.0, 0.0], atol=5)


# --- Errors -----------------------------------------------------------------


def test_a_missing_data_folder_is_a_user_error_naming_it(tmp_path):
    with pytest.raises(UserError, match="nowhere"):
        scan_dataset(tmp_path / "nowhere")


def test_a_file_given_as_data_folder_is_a_user_error(tmp_path):
    write_bytes(tmp_path / "data.zip", b"PK")
    with pytest.raises(UserError, match="not a folder"):
        scan_dataset(tmp_path / "data.zip")


def test_a_missing_test_set_is_a_user_error(tmp_path):
    save(tmp_path / "training_set" / "circles" / "x.png")
    with pytest.raises(UserError, match="test_set"):
        scan_dataset(tmp_path)


def test_no_class_folders_is_a_user_error(tmp_path):
    save(tmp_path / "test_set" / "loose.png")
    with pytest.raises(UserError, match="no class folders"):
        scan_dataset(tmp_path)


def test_different_class_folders_in_training_and_test_set_is_a_user_error(tmp_path):
    shapes_dataset(tmp_path, per_class=1)
    (tmp_path / "test_set" / "squares" / "square_0000.png").unlink()
    (tmp_path / "test_set" / "squares").rmdir()
    save(tmp_path / "test_set" / "stars" / "x.png")

    with pytest.raises(UserError, match=r"missing \['squares'\], unexpected \['stars'\]"):
        scan_dataset(tmp_path)


def test_a_test_set_with_nothing_readable_is_a_user_error(tmp_path):
    write_bytes(tmp_path / "test_set" / "circles" / "a.png", b"junk")
    write_bytes(tmp_path / "test_set" / "squares" / "b.png", b"")

    with pytest.raises(UserError, match="no readable image.*2 files skipped"):
        scan_dataset(tmp_path)


def test_a_test_set_with_no_files_is_a_user_error(tmp_path):
    (tmp_path / "test_set" / "circles").mkdir(parents=True)
    with pytest.raises(UserError, match="no image files"):
        scan_dataset(tmp_path)


def test_input_spec_refuses_other_channel_counts():
    with pytest.raises(ValueError, match="channels"):
        InputSpec(8, 8, 4)


# --- Hostile bytes ----------------------------------------------------------


def valid_images() -> list[bytes]:
    out = []
    for image, kind in ((Image.new("RGB", (5, 3), (9, 99, 199)), "PNG"),
                        (Image.new("L", (4, 4), 7), "GIF"),
                        (Image.new("RGB", (3, 3), (1, 2, 3)), "BMP"),
                        (Image.new("RGB", (6, 6), (200, 10, 10)), "JPEG")):
        buffer = io.BytesIO()
        image.save(buffer, format=kind)
        out.append(buffer.getvalue())
    return out


@st.composite
def damaged_images(draw) -> bytes:
    content = bytearray(draw(st.sampled_from(valid_images())))
    for _ in range(draw(st.integers(0, 4))):
        content[draw(st.integers(0, len(content) - 1))] = draw(st.integers(0, 255))
    length = draw(st.one_of(st.just(len(content)), st.integers(0, len(content))))
    return bytes(content[:length])


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(st.binary(max_size=200), damaged_images()))
def test_any_bytes_either_load_or_get_a_reason(tmp_path, content):
    path = write_bytes(tmp_path / "x.png", content)

    reason = check_image(path)

    if reason is None:
        pixels = load_image(path, RGB_8x8)
        assert pixels.shape == (8, 8, 3) and 0.0 <= pixels.min() <= pixels.max() <= 255.0
    else:
        assert isinstance(reason, str) and reason and "\n" not in reason


REASONS = {
    "bomb": (Image.DecompressionBombError("huge"),
             "image too large (Pillow refuses it as a possible decompression bomb)"),
    "unknown format": (UnidentifiedImageError("cannot identify image file"),
                       "not a PNG, JPEG, BMP, GIF, WEBP, TIFF, HEIF, AVIF image Pillow can read"),
    "missing": (FileNotFoundError(2, "No such file"), "file not found"),
    "permission": (PermissionError(13, "Permission denied"), "permission denied"),
    "end of file": (EOFError(), "truncated image data"),
    "truncated": (OSError("image file is Truncated (3 bytes not processed)"), "truncated image data"),
    "first line": (ValueError("bad tile\nmore"), "damaged image data (bad tile)"),
    "long": (ValueError("x" * 100), f"damaged image data ({'x' * 80})"),
    "no message": (KeyError(), "damaged image data (KeyError)"),
}


@pytest.mark.parametrize(("error", "reason"), REASONS.values(), ids=REASONS)
def test_each_decoding_error_gets_its_one_sentence(error, reason):
    assert decode.reason(error) == reason


@pytest.mark.parametrize("mode", ["L", "LA"])
def test_grey_images_reach_a_grey_model_exactly(tmp_path, mode):
    """Every grey level exactly, untouched by a detour through RGB and back."""
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    image = Image.fromarray(levels).convert(mode)
    image.save(tmp_path / "grey.png")
    loaded = decode.load_image(tmp_path / "grey.png", decode.InputSpec(16, 16, 1))
    np.testing.assert_array_equal(loaded, levels.astype(np.float32)[..., np.newaxis],
                                  strict=True)
