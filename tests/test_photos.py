"""Image folders as people have them: phone-photo formats, big JPEGs, a plain class folder, labels.csv."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest
from generated_photos import photo_like
from PIL import Image, features

from reportgen import decode
from reportgen.batches import iter_batches
from reportgen.data import scan_dataset
from reportgen.decode import InputSpec, load_image
from reportgen.errors import UserError
from reportgen.resize import resize_pixels

RGB_8x6 = InputSpec(height=6, width=8, channels=3)
# The guide states it (docs/your-data.md, Big photos): a 12 MP photo decoded in JPEG draft
# mode then resized to 96x96 differs from a full decode by less than this, in mean absolute 0-255 units.
DRAFT_TOLERANCE = 2.5


def pattern(width: int = 8, height: int = 6) -> Image.Image:
    """Eight distinct colours a lossless format must keep exactly."""
    values = np.arange(width * height * 3, dtype=np.uint8).reshape(height, width, 3) * 5
    return Image.fromarray(values)


def save(path: Path, image: Image.Image, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


def full_decode(path: Path, spec: InputSpec) -> np.ndarray:
    """Every pixel decoded, then the same resize: what load_image did before draft mode."""
    with Image.open(path) as image:
        values = np.asarray(image.convert("RGB"))
    return resize_pixels(values, spec.height, spec.width, spec.resize)


# --- Formats ----------------------------------------------------------------


LOSSLESS = {
    "webp": ("x.webp", {"lossless": True}),
    "tiff": ("x.tiff", {}),
    "tif, compressed": ("x.tif", {"compression": "tiff_lzw"}),
}


@pytest.mark.parametrize("name, options", LOSSLESS.values(), ids=LOSSLESS.keys())
def test_webp_and_tiff_are_read_pixel_for_pixel(tmp_path, name, options):
    path = save(tmp_path / "test_set" / "a" / name, pattern(), **options)

    split = scan_dataset(tmp_path).test

    assert [r.path for r in split.images] == [f"a/{name}"] and split.skipped == ()
    np.testing.assert_array_equal(load_image(path, RGB_8x6), np.asarray(pattern(), np.float32))


def test_a_16_bit_tiff_is_scaled_not_clipped(tmp_path):
    path = save(tmp_path / "deep.tif", Image.fromarray(np.full((6, 8), 32768, np.uint16)))

    np.testing.assert_allclose(load_image(path, InputSpec(6, 8, 1)), 32768 / 65535 * 255, rtol=1e-5)


@pytest.mark.parametrize("suffix, options", [(".webp", {"lossless": True}), (".gif", {}),
                                             (".tiff", {})])
def test_animations_and_multi_page_files_give_their_first_frame(tmp_path, suffix, options):
    red, blue = Image.new("RGB", (8, 6), (255, 0, 0)), Image.new("RGB", (8, 6), (0, 0, 255))
    path = save(tmp_path / f"anim{suffix}", red, save_all=True, append_images=[blue], **options)
    with Image.open(path) as opened:
        assert getattr(opened, "n_frames", 1) == 2  # really two frames

    pixels = load_image(path, RGB_8x6)

    np.testing.assert_allclose(pixels[..., 0], 255, atol=2)
    np.testing.assert_allclose(pixels[..., 2], 0, atol=2)


def test_exif_orientation_is_applied_to_webp_as_to_jpeg(tmp_path):
    stored = pattern(8, 6)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: turn 90 degrees clockwise to display
    path = save(tmp_path / "phone.webp", stored, lossless=True, exif=exif.tobytes())

    pixels = load_image(path, InputSpec(height=8, width=6, channels=3))

    np.testing.assert_array_equal(pixels, np.rot90(np.asarray(stored, np.float32), k=-1))


PHOTO_FORMATS = {"heic": (".heic", "HEIF"), "avif": (".avif", "AVIF")}


@pytest.mark.parametrize("suffix, pillow_format", PHOTO_FORMATS.values(), ids=PHOTO_FORMATS.keys())
def test_phone_formats_are_read_when_reportgen_photos_is_installed(tmp_path, suffix,
                                                                   pillow_format):
    if pillow_format not in decode.pillow_formats():
        pytest.skip(f"{pillow_format} needs the optional extra: pip install 'reportgen[photos]'")
    picture = Image.new("RGB", (16, 12), (200, 40, 90))
    path = save(tmp_path / "test_set" / "a" / f"photo{suffix}", picture, format=pillow_format,
                quality=95)

    split = scan_dataset(tmp_path).test

    assert [r.path for r in split.images] == [f"a/photo{suffix}"] and split.skipped == ()
    pixels = load_image(path, InputSpec(12, 16, 3))
    np.testing.assert_allclose(pixels.mean(axis=(0, 1)), [200, 40, 90], atol=6)


@pytest.mark.parametrize("suffix, pillow_format", PHOTO_FORMATS.values(), ids=PHOTO_FORMATS.keys())
def test_without_the_plugin_a_phone_photo_is_skipped_naming_the_extra(tmp_path, monkeypatch,
                                                                      suffix, pillow_format):
    monkeypatch.setattr(decode, "pillow_formats", lambda: decode.PILLOW_FORMATS)
    (tmp_path / "test_set" / "a").mkdir(parents=True)
    (tmp_path / "test_set" / "a" / f"photo{suffix}").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(40))
    save(tmp_path / "test_set" / "a" / "ok.png", pattern())

    split = scan_dataset(tmp_path).test

    assert {s.path: s.reason for s in split.skipped} == {
        f"test_set/a/photo{suffix}": f"{pillow_format} image needs the optional extra "
                                     "reportgen[photos] (pip install 'reportgen[photos]')"}


def test_avif_support_matches_what_pillow_reports():
    assert ("AVIF" in decode.pillow_formats()) == bool(features.check("avif"))


# --- Big JPEGs: draft mode ----------------------------------------------------


@pytest.fixture(scope="module")
def twelve_megapixel_jpeg(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "photo.jpg"
    photo_like(4000, 3000).save(path, quality=90)
    return path


@pytest.mark.parametrize("spec, decoded_size", [
    (InputSpec(96, 96, 3), (500, 375)),  # 1/8: the smallest scale still >= 192 pixels a side
    (InputSpec(224, 224, 3), (1000, 750)),  # 1/4: 1/8 would give 375 < 448
    (InputSpec(300, 300, 3), (1000, 750)),  # 1/4 still holds 600 pixels a side
    (InputSpec(500, 500, 3), (2000, 1500)),  # 1/2
    (InputSpec(800, 800, 3), (4000, 3000)),  # in full
], ids=["96", "224", "300", "500", "800"])
def test_a_big_jpeg_is_decoded_at_reduced_scale_but_never_below_twice_the_model_size(
        twelve_megapixel_jpeg, monkeypatch, spec, decoded_size):
    sizes: list[tuple[int, int]] = []
    real_decode = decode._decode

    def recording_decode(*args, **kwargs):
        image = real_decode(*args, **kwargs)
        sizes.append(image.size)
        return image

    monkeypatch.setattr(decode, "_decode", recording_decode)

    load_image(twelve_megapixel_jpeg, spec)

    assert sizes == [decoded_size]


@pytest.mark.parametrize("spec", [InputSpec(96, 96, 3), InputSpec(224, 224, 3, "crop"),
                                  InputSpec(64, 64, 1)], ids=["96", "224 crop", "64 grey"])
def test_draft_decoding_stays_within_the_stated_tolerance_of_a_full_decode(
        twelve_megapixel_jpeg, spec):
    full = full_decode(twelve_megapixel_jpeg, InputSpec(spec.height, spec.width, 3, spec.resize))
    if spec.channels == 1:
        with Image.open(twelve_megapixel_jpeg) as image:
            grey = np.asarray(image.convert("L"))[..., np.newaxis]
        full = resize_pixels(grey, spec.height, spec.width, spec.resize)

    drafted = load_image(twelve_megapixel_jpeg, spec)

    difference = np.abs(drafted - full)
    assert difference.mean() < DRAFT_TOLERANCE
    assert difference.mean() > 0  # it really was a reduced decode


def test_a_big_phone_jpeg_is_turned_upright_after_its_reduced_decode(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: turn 90 degrees clockwise to display
    path = save(tmp_path / "phone.jpg", photo_like(1600, 1200), quality=90, exif=exif.tobytes())

    assert decode._decode(path, draft_size=(192, 192)).size == (300, 400)  # 1/4, then upright


def test_a_jpeg_below_four_times_the_model_size_is_decoded_in_full(tmp_path):
    path = save(tmp_path / "small.jpg", photo_like(300, 200), quality=90)

    np.testing.assert_array_equal(load_image(path, InputSpec(96, 96, 3)),
                                  full_decode(path, InputSpec(96, 96, 3)))


def test_the_pixel_cap_still_refuses_a_huge_jpeg_before_decoding(tmp_path, monkeypatch):
    path = save(tmp_path / "huge.jpg", photo_like(400, 300), quality=80)
    monkeypatch.setattr(decode, "MAX_IMAGE_PIXELS", 400 * 300 - 1)

    with pytest.raises(UserError, match=r"too large \(400x300 pixels\)"):
        load_image(path, InputSpec(8, 8, 3))


# --- Decoded once -------------------------------------------------------------


def truncated_jpeg() -> bytes:
    path_bytes = _jpeg_bytes(photo_like(64, 48))
    return path_bytes[: len(path_bytes) // 2]


def _jpeg_bytes(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_the_scan_does_not_decode_and_the_batches_decode_each_image_once(tmp_path, monkeypatch):
    for index, suffix in enumerate((".jpg", ".png", ".webp", ".tif")):
        save(tmp_path / ("cats" if index % 2 else "dogs") / f"{index}{suffix}", photo_like(64, 48))
    (tmp_path / "dogs" / "cut.jpg").write_bytes(truncated_jpeg())
    decoded: list[str] = []
    real_decode = decode._decode

    def counting_decode(path, *args, **kwargs):
        decoded.append(Path(path).name)
        return real_decode(path, *args, **kwargs)

    monkeypatch.setattr(decode, "_decode", counting_decode)
    split = scan_dataset(tmp_path, scan_train=False).test
    assert decoded == []  # a cut-off JPEG passes the header check...
    assert len(split.images) == 5

    batches = list(iter_batches(split, InputSpec(16, 16, 3), batch_size=2))

    assert sorted(decoded) == sorted(Path(r.path).name for r in split.images)
    unreadable = [(record.path, reason) for b in batches for record, reason in b.unreadable]
    assert unreadable == [("dogs/cut.jpg", "truncated image data")]  # ...and is skipped here
    assert sum(len(b.records) for b in batches) == 4


# --- A plain folder of class folders ----------------------------------------------


def test_a_plain_class_folder_is_the_test_set_of_a_report_on_a_given_model(tmp_path):
    save(tmp_path / "dogs" / "a.jpg", photo_like(32, 24))
    save(tmp_path / "cats" / "holiday" / "2024" / "b.png", pattern())
    save(tmp_path / "cats" / "c.webp", pattern())
    (tmp_path / "notes.txt").write_text("my photos")

    dataset = scan_dataset(tmp_path, scan_train=False)

    assert dataset.class_names == ("cats", "dogs") and dataset.train is None
    assert dataset.test.root == tmp_path
    assert [(r.path, r.label) for r in dataset.test.images] == [
        ("cats/c.webp", 0), ("cats/holiday/2024/b.png", 0), ("dogs/a.jpg", 1)]
    assert [(s.path, s.reason) for s in dataset.test.skipped] == [
        ("notes.txt", "not an image file (.txt)")]


def test_training_still_needs_training_set(tmp_path):
    save(tmp_path / "dogs" / "a.png", pattern())

    with pytest.raises(UserError, match="has no training_set/ folder"):
        scan_dataset(tmp_path, require_train=True)
    with pytest.raises(UserError, match="has no test_set/ folder"):
        scan_dataset(tmp_path)


def test_a_folder_of_loose_images_says_what_it_needs(tmp_path):
    save(tmp_path / "a.png", pattern())

    with pytest.raises(UserError, match="neither a test_set/ folder nor class folders"):
        scan_dataset(tmp_path, scan_train=False)


def test_a_training_set_without_test_set_is_not_taken_for_a_class(tmp_path):
    save(tmp_path / "training_set" / "dogs" / "a.png", pattern())

    with pytest.raises(UserError, match="has no test_set/ folder"):
        scan_dataset(tmp_path, scan_train=False)


# --- labels.csv ----------------------------------------------------------------


def labelled_folder(root: Path, rows: str) -> Path:
    save(root / "images" / "1.png", pattern())
    save(root / "images" / "2.jpg", photo_like(32, 24))
    save(root / "images" / "sub" / "3.webp", pattern())
    labels = root / "labels.csv"
    labels.write_text(rows, encoding="utf-8")
    return labels


def test_a_labels_file_names_the_images_and_its_labels_are_the_classes(tmp_path):
    labels = labelled_folder(tmp_path, "path,label\nimages/2.jpg,dog\nimages/1.png,cat\n"
                                       "images/sub/3.webp,cat\nimages/missing.png,dog\n\n")

    dataset = scan_dataset(tmp_path, scan_train=False, labels=labels)

    assert dataset.class_names == ("cat", "dog") and dataset.test.root == tmp_path
    assert [(r.path, r.label) for r in dataset.test.images] == [
        ("images/1.png", 0), ("images/sub/3.webp", 0), ("images/2.jpg", 1)]
    assert [(s.path, s.reason) for s in dataset.skipped] == [
        ("images/missing.png", "listed in labels.csv but not found")]


def test_a_labels_file_may_start_with_a_byte_order_mark_and_use_windows_lines(tmp_path):
    labels = labelled_folder(tmp_path, "")
    labels.write_bytes("\ufeffpath,label\r\nimages\\1.png,cat\r\n".encode())

    dataset = scan_dataset(tmp_path, scan_train=False, labels=labels)

    assert [r.path for r in dataset.test.images] == ["images/1.png"]


BAD_LABELS = {
    "unknown columns": ("id,label\n1.png,cat\n", "must start with the header row path,label; "
                                                 "found 'id,label'"),
    "extra column": ("path,label,split\nimages/1.png,cat,test\n", "found 'path,label,split'"),
    "empty": ("", "found 'an empty file'"),
    "no rows": ("path,label\n", "lists no images"),
    "short row": ("path,label\nimages/1.png\n", r"line 2: expected a path and a label"),
    "empty label": ("path,label\nimages/1.png, \n", r"line 2: expected a path and a label"),
    "duplicate": ("path,label\nimages/1.png,cat\n./images/1.png,dog\n",
                  r"line 3: images/1.png is listed twice \(first on line 2\)"),
    "outside": ("path,label\n../elsewhere.png,cat\n", "line 2: '../elsewhere.png' is not a path "
                                                      "inside the data folder"),
    "absolute": ("path,label\n/etc/passwd,cat\n", "not a path inside the data folder"),
}


@pytest.mark.parametrize("rows, message", BAD_LABELS.values(), ids=BAD_LABELS.keys())
def test_a_malformed_labels_file_is_one_clear_error(tmp_path, rows, message):
    labels = labelled_folder(tmp_path, rows)

    with pytest.raises(UserError, match=message):
        scan_dataset(tmp_path, scan_train=False, labels=labels)


def test_a_labels_file_that_is_missing_or_not_text_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        scan_dataset(tmp_path, scan_train=False, labels=tmp_path / "nope.csv")
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00path")
    with pytest.raises(UserError, match="is not UTF-8 text"):
        scan_dataset(tmp_path, scan_train=False, labels=tmp_path / "binary.csv")


def test_labels_are_for_a_report_on_a_given_model_not_for_training(tmp_path):
    labels = labelled_folder(tmp_path, "path,label\nimages/1.png,cat\n")

    with pytest.raises(UserError, match="--labels names the test images"):
        scan_dataset(tmp_path, labels=labels)


def test_listed_files_that_are_not_usable_images_are_skipped_with_their_reason(tmp_path):
    labels = labelled_folder(tmp_path, "path,label\nimages/1.png,cat\nlabels.csv,cat\n"
                                       "images/sub,dog\n")

    dataset = scan_dataset(tmp_path, scan_train=False, labels=labels)

    assert [(s.path, s.reason) for s in dataset.skipped] == [
        ("images/sub", "a folder, not an image file"),
        ("labels.csv", "not an image file (.csv)")]
    assert dataset.class_names == ("cat", "dog") and dataset.test.empty_classes == ("dog",)


# --- A whole build ---------------------------------------------------------------


def tiny_model(path: Path, n_classes: int) -> Path:
    from reportgen.keras_import import keras

    keras.utils.set_random_seed(3)
    layers = keras.layers
    image = keras.Input((16, 16, 3), name="image")
    x = layers.Conv2D(4, 3, activation="relu", name="conv")(image)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(image, layers.Dense(n_classes, activation="softmax", name="out")(x))
    model.save(path)
    return path


@pytest.mark.slow
def test_a_build_on_photos_reads_each_once_and_predicts_what_the_model_says(tmp_path,
                                                                            monkeypatch):
    from reportgen.keras_import import keras
    from reportgen.stages import BuildOptions, build

    photos = tmp_path / "photos"
    save(photos / "dogs" / "big.jpg", photo_like(1600, 1200, seed=1), quality=90)
    save(photos / "dogs" / "x.webp", photo_like(40, 30, seed=2))
    save(photos / "cats" / "y.tiff", photo_like(30, 40, seed=3))
    (photos / "cats" / "cut.jpg").write_bytes(truncated_jpeg())
    model_path = tiny_model(tmp_path / "tiny.keras", 2)
    decoded: list[str] = []
    real_decode = decode._decode
    monkeypatch.setattr(decode, "_decode", lambda path, *args, **kwargs: (
        decoded.append(Path(path).name), real_decode(path, *args, **kwargs))[1])
    log: list[str] = []

    build(BuildOptions(data=photos, out=tmp_path / "site", model_path=model_path,
                       preprocess="unit", jobs=1), echo=log.append)

    # The scan decodes nothing; the first pass decodes every image once, and the drawing
    # pass reads the planned ones from its pixel cache. The cut file fails once.
    counts = collections.Counter(decoded)
    assert counts == {"cut.jpg": 1, "big.jpg": 1, "x.webp": 1, "y.tiff": 1}
    report = json.loads((tmp_path / "site" / "report.json").read_text())
    assert report["data"]["skipped"] == [{"path": "cats/cut.jpg", "reason": "truncated image data"}]
    assert "skipped cats/cut.jpg: truncated image data" in log
    paths = [image["path"] for image in report["images"]]
    assert paths == ["cats/y.tiff", "dogs/big.jpg", "dogs/x.webp"]
    model = keras.saving.load_model(model_path)
    pixels = np.stack([load_image(photos / path, InputSpec(16, 16, 3)) for path in paths])
    expected = model.predict_on_batch(pixels / np.float32(255))
    np.testing.assert_allclose([image["probabilities"] for image in report["images"]], expected,
                               atol=1e-4)

    site_before = (tmp_path / "site" / "report.json").read_bytes()
    with pytest.raises(UserError, match=r"1 file\(s\) in .* could not be read .* --strict"):
        build(BuildOptions(data=photos, out=tmp_path / "site", model_path=model_path,
                           preprocess="unit", jobs=1, strict=True), echo=log.append)
    assert (tmp_path / "site" / "report.json").read_bytes() == site_before


def test_the_command_line_says_labels_go_with_a_model(tmp_path):
    from click.testing import CliRunner

    from reportgen.cli import main

    labels = labelled_folder(tmp_path, "path,label\nimages/1.png,cat\n")
    result = CliRunner().invoke(main, ["build", "--data", str(tmp_path), "--labels", str(labels),
                                       "--out", str(tmp_path / "site")])

    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "Error: --labels goes with --model: training reads training_set/ and test_set/ class "
        "folders")
    assert not (tmp_path / "site").exists()


@pytest.mark.slow
def test_a_build_from_a_labels_file_reports_the_listed_images(tmp_path):
    from click.testing import CliRunner

    from reportgen.cli import main

    labels = labelled_folder(tmp_path / "kaggle", "path,label\nimages/2.jpg,dog\nimages/1.png,cat\n"
                                                  "images/gone.png,cat\n")
    model_path = tiny_model(tmp_path / "tiny.keras", 2)

    result = CliRunner().invoke(main, [
        "build", "--data", str(tmp_path / "kaggle"), "--labels", str(labels),
        "--model", str(model_path), "--preprocess", "unit", "--out", str(tmp_path / "site")])

    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "site" / "report.json").read_text())
    assert report["classes"] == ["cat", "dog"]
    assert [(i["path"], i["true_label"]) for i in report["images"]] == [
        ("images/1.png", 0), ("images/2.jpg", 1)]
    assert report["data"]["skipped"] == [{"path": "images/gone.png",
                                          "reason": "listed in labels.csv but not found"}]
