"""The input contract: resizing as Keras does it, each preprocessing against its formula,
``auto`` on real keras.applications graphs and the models Keras' guides build, and the
collapse warning both ways."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from reportgen.decode import InputSpec, load_image
from reportgen.errors import UserError
from reportgen.inputs import (
    PREPROCESS_CHOICES,
    InputContract,
    collapse_warnings,
    decide,
    input_spec,
    preprocess_function,
)
from reportgen.keras_import import keras
from reportgen.resize import resize_pixels

layers = keras.layers
applications = keras.applications
CLASSES = ("circles", "squares", "triangles")


# --- resizing ---------------------------------------------------------------------------


def keras_resize(pixels: np.ndarray, height: int, width: int, method: str) -> np.ndarray:
    return np.asarray(keras.ops.image.resize(
        pixels.astype("float32"), (height, width), interpolation="bilinear",
        crop_to_aspect_ratio=method == "crop", pad_to_aspect_ratio=method == "pad"))


@settings(max_examples=60, deadline=None)
@given(source=st.tuples(st.integers(1, 40), st.integers(1, 40)),
       target=st.tuples(st.integers(1, 24), st.integers(1, 24)),
       method=st.sampled_from(["stretch", "crop", "pad"]), seed=st.integers(0, 2**16))
def test_resize_matches_keras(source, target, method, seed):
    pixels = np.random.default_rng(seed).integers(0, 256, (*source, 3)).astype(np.uint8)

    ours = resize_pixels(pixels, *target, method)

    # Bit for bit: the same float32 operations in the same order as tf.image.resize.
    np.testing.assert_array_equal(ours, keras_resize(pixels, *target, method))


@pytest.mark.parametrize("method", ["stretch", "crop", "pad"])
def test_an_odd_sized_image_is_read_as_keras_resizes_it(tmp_path, method):
    pixels = np.random.default_rng(1).integers(0, 256, (13, 31, 3)).astype(np.uint8)
    path = tmp_path / "odd.png"
    Image.fromarray(pixels).save(path)

    loaded = load_image(path, InputSpec(12, 16, 3, method))

    np.testing.assert_allclose(loaded, keras_resize(pixels, 12, 16, method), atol=1e-3)


@pytest.mark.parametrize(("mode", "channels", "color_mode"),
                         [("RGB", 1, "grayscale"), ("L", 3, "rgb"), ("RGB", 3, "rgb")])
def test_colour_modes_are_read_as_keras_load_img_reads_them(tmp_path, mode, channels, color_mode):
    rng = np.random.default_rng(3)
    shape = (9, 7, 3) if mode == "RGB" else (9, 7)
    path = tmp_path / "image.png"
    Image.fromarray(rng.integers(0, 256, shape).astype(np.uint8), mode).save(path)

    loaded = load_image(path, InputSpec(9, 7, channels))

    expected = keras.utils.img_to_array(keras.utils.load_img(path, color_mode=color_mode))
    np.testing.assert_array_equal(loaded, expected)


def test_crop_and_pad_differ_from_stretch_where_the_aspect_ratio_differs():
    pixels = np.zeros((10, 30, 1), np.uint8)
    pixels[:, :10] = 255  # the left third is white
    stretched = resize_pixels(pixels, 10, 10, "stretch")
    cropped = resize_pixels(pixels, 10, 10, "crop")
    padded = resize_pixels(pixels, 10, 10, "pad")
    assert stretched[:, :3].min() == 255 and cropped.max() == 0  # the crop keeps the black middle
    assert padded[0].max() == 0 and padded[4:6, :3].max() == 255  # black bars above and below


# --- preprocessing ----------------------------------------------------------------------

PIXELS = np.random.default_rng(2).integers(0, 256, (2, 4, 4, 3)).astype(np.float32)
IMAGENET_MEAN_RGB = np.array([123.68, 116.779, 103.939], np.float32)
TORCH_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
TORCH_STD = np.array([0.229, 0.224, 0.225], np.float32)
FORMULAS = {
    "unit": lambda x: x / 255,
    "raw": lambda x: x,
    "symmetric": lambda x: x / 127.5 - 1,
    "caffe": lambda x: (x - IMAGENET_MEAN_RGB)[..., ::-1],
    "torch": lambda x: (x / 255 - TORCH_MEAN) / TORCH_STD,
    "mobilenet_v2": lambda x: x / 127.5 - 1,
    "inception_v3": lambda x: x / 127.5 - 1,
    "resnet50": lambda x: (x - IMAGENET_MEAN_RGB)[..., ::-1],
    "vgg16": lambda x: (x - IMAGENET_MEAN_RGB)[..., ::-1],
    "densenet": lambda x: (x / 255 - TORCH_MEAN) / TORCH_STD,
    "efficientnet": lambda x: x,
    "convnext": lambda x: x,
    "mobilenet": lambda x: x / 127.5 - 1,
    "resnet_v2": lambda x: x / 127.5 - 1,
    "xception": lambda x: x / 127.5 - 1,
    "inception_resnet_v2": lambda x: x / 127.5 - 1,
    "nasnet": lambda x: x / 127.5 - 1,
    "resnet": lambda x: (x - IMAGENET_MEAN_RGB)[..., ::-1],
    "vgg19": lambda x: (x - IMAGENET_MEAN_RGB)[..., ::-1],
    "mobilenet_v3": lambda x: x,  # Keras' is a pass-through: the model rescales itself
    "efficientnet_v2": lambda x: x,
}


def test_every_choice_has_a_formula_here():
    assert set(FORMULAS) == set(PREPROCESS_CHOICES) - {"auto"}


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_each_preprocessing_matches_its_formula_and_leaves_the_pixels_alone(name):
    pixels = PIXELS.copy()

    prepared = preprocess_function(name)(pixels)

    np.testing.assert_allclose(prepared, FORMULAS[name](PIXELS), rtol=1e-5, atol=1e-4)
    assert prepared.dtype == np.float32
    np.testing.assert_array_equal(pixels, PIXELS)  # Keras works in place; we must not


def test_colour_only_preprocessing_is_refused_for_a_grayscale_model():
    with pytest.raises(UserError, match="caffe works on colour images"):
        preprocess_function("caffe", channels=1)


def test_an_unknown_preprocessing_is_a_user_error():
    with pytest.raises(UserError, match="unknown preprocessing 'mobilenet_v9'"):
        preprocess_function("mobilenet_v9")


# --- auto: what the model says ----------------------------------------------------------

SMALL = (32, 32, 3)


def small_head(features, n_classes: int = 3):
    x = layers.GlobalAveragePooling2D(name="gap")(features)
    return layers.Dense(n_classes, activation="softmax", name="predictions")(x)


def guide_model(nested_augmentation: bool = False) -> keras.Model:
    """Keras' image-classification-from-scratch pattern: augmentation, Rescaling(1/255), convs."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(SMALL, name="image")
    x = inputs
    if nested_augmentation:
        x = keras.Sequential([layers.RandomFlip("horizontal"), layers.RandomRotation(0.1)],
                             name="augmentation")(x)
    x = layers.Rescaling(1.0 / 255, name="rescaling")(x)
    for block, filters in enumerate((16, 32), start=1):
        x = layers.Conv2D(filters, 3, activation="relu", name=f"conv{block}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{block}")(x)
    x = layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, layers.Dense(3, activation="softmax", name="predictions")(x),
                       name="guide")


# Each build gets the session's keras_application(name): the four plain applications at SMALL,
# which tests/test_plan.py reads too, are built once.
@pytest.mark.parametrize(("build", "expected"), [
    (lambda shared: shared("MobileNetV2"), "mobilenet_v2"),
    (lambda shared: shared("ResNet50"), "resnet"),
    (lambda shared: shared("DenseNet121"), "densenet"),
    (lambda shared: shared("EfficientNetB0"), "raw"),
    (lambda _: applications.MobileNetV3Small(weights=None, input_shape=SMALL, classes=3), "raw"),
    (lambda _: applications.MobileNetV3Small(weights=None, input_shape=SMALL, classes=3,
                                             include_preprocessing=False), "symmetric"),
    (lambda _: applications.MobileNetV2(weights=None, input_shape=SMALL, classes=3,
                                        name="my_backbone"), "mobilenet_v2"),
    (lambda _: guide_model(), "raw"),
    (lambda _: guide_model(nested_augmentation=True), "raw"),
], ids=["MobileNetV2", "ResNet50", "DenseNet121", "EfficientNetB0", "MobileNetV3", "MobileNetV3-raw",
        "renamed-MobileNetV2", "guide", "guide-nested-augmentation"])
def test_auto_reads_the_input_range_from_the_model(keras_application, build, expected):
    contract = decide(build(keras_application), sidecar=None)
    assert contract.preprocess == expected
    assert not contract.guessed


def transfer_model(preprocessing_inside: bool) -> keras.Model:
    """Keras' transfer-learning guide: a keras.applications base inside a model of one's own."""
    base = applications.MobileNetV2(weights=None, input_shape=SMALL, include_top=False)
    inputs = keras.Input(SMALL)
    x = layers.RandomFlip("horizontal")(inputs)
    if preprocessing_inside:
        x = applications.mobilenet_v2.preprocess_input(x)
    return keras.Model(inputs, small_head(base(x)), name="transfer")


def test_auto_finds_the_application_a_model_is_built_on():
    contract = decide(transfer_model(preprocessing_inside=False), sidecar=None)
    assert contract.preprocess == "mobilenet_v2" and "built on" in contract.reason


def test_auto_sees_preprocess_input_called_inside_the_model():
    assert decide(transfer_model(preprocessing_inside=True), sidecar=None).preprocess == "raw"


def plain_model() -> keras.Model:
    inputs = keras.Input((28, 28, 1))
    return keras.Model(inputs, small_head(layers.Conv2D(4, 3)(inputs)), name="plain")


def test_auto_says_plainly_when_it_guesses():
    contract = decide(plain_model(), sidecar=None)
    assert contract.preprocess == "unit" and contract.guessed
    assert "a guess" in contract.reason and "--preprocess" in contract.reason


def test_a_sidecar_says_what_training_used():
    assert decide(plain_model(), {"preprocess": "symmetric"}).preprocess == "symmetric"
    # Sidecars from before the key existed: reportgen always trained on [0, 1].
    contract = decide(plain_model(), {"format": "reportgen-model/1"})
    assert contract.preprocess == "unit" and not contract.guessed


def test_preprocess_and_resize_given_on_the_command_line_win():
    contract = decide(guide_model(), None, "torch", resize="pad")
    assert (contract.preprocess, contract.reason, contract.spec.resize) == (
        "torch", "set with --preprocess", "pad")


def test_the_contract_is_recorded_for_report_json():
    contract = decide(guide_model(), None, resize="crop")
    assert contract.to_json() == {
        "height": 32, "width": 32, "color_mode": "rgb", "resize": "crop", "preprocess": "raw",
        "reason": contract.reason, "guessed": False}


def small_classifier(shape: tuple[int, int, int]) -> keras.Model:
    image = keras.Input(shape)
    return keras.Model(image, layers.Dense(2)(layers.GlobalAveragePooling2D()(image)))


def test_input_spec_reads_the_size_and_colour_mode_from_the_model():
    assert input_spec(small_classifier((6, 10, 1))) == InputSpec(6, 10, 1)


def test_input_spec_refuses_what_is_not_an_image_classifier():
    with pytest.raises(UserError, match=r"^the model's input shape \(None, 8, 8, 4\) is not "
                                        r"\(batch, height, width, 1 or 3\)$"):
        input_spec(small_classifier((8, 8, 4)))
    # the checks every reader of a model shares (reportgen.activations.image_classifier)
    with pytest.raises(UserError, match="with a fixed image size"):
        input_spec(small_classifier((None, None, 3)))


# --- the collapse warning ---------------------------------------------------------------

CONTRACT = InputContract(InputSpec(8, 8, 3), "unit", "a guess", guessed=True)
BALANCED = np.repeat([0, 1, 2], 10)


def confident(predicted: np.ndarray, top: float = 0.9) -> np.ndarray:
    probabilities = np.full((len(predicted), 3), (1 - top) / 2, np.float32)
    probabilities[np.arange(len(predicted)), predicted] = top
    return probabilities


def test_collapse_warns_when_one_class_takes_the_predictions():
    predicted = np.array([1] * 28 + [0, 2])
    (warning,) = collapse_warnings(BALANCED, confident(predicted), CLASSES, CONTRACT)
    assert "93% of the test images are predicted as 'squares'" in warning
    assert "--preprocess" in warning


def test_collapse_warns_when_the_model_is_no_better_than_uniform():
    probabilities = np.full((30, 3), 1 / 3, np.float32)
    probabilities[np.arange(30), BALANCED] += 0.02
    (warning,) = collapse_warnings(BALANCED, probabilities, CLASSES, CONTRACT)
    assert "uniform guess" in warning


def test_collapse_warns_when_the_history_promised_far_more():
    predicted = BALANCED.copy()
    predicted[:12] = (predicted[:12] + 1) % 3  # 60% correct, spread over all classes
    probabilities = confident(predicted)
    (warning,) = collapse_warnings(BALANCED, probabilities, CLASSES, CONTRACT, 0.91)
    assert "validation accuracy 91.0%, but the test accuracy is 60.0%" in warning
    assert collapse_warnings(BALANCED, probabilities, CLASSES, CONTRACT, 0.8) == []


def test_collapse_is_silent_on_a_good_model_and_on_a_lopsided_test_set():
    assert collapse_warnings(BALANCED, confident(BALANCED), CLASSES, CONTRACT, 0.95) == []
    lopsided = np.array([0] * 27 + [1, 2, 2])  # one class really is 90% of the test set
    assert collapse_warnings(lopsided, confident(np.zeros(30, int)), CLASSES, CONTRACT) == []


# --- end to end: the report's numbers against Keras on the same pixels -------------------


@pytest.fixture(scope="module")
def colour_shapes(tmp_path_factory):
    """32x32 colour shapes (the smallest input keras.applications accept) and their pixels."""
    from reportgen import shapes
    from reportgen.batches import load_split
    from reportgen.data import scan_dataset

    root = tmp_path_factory.mktemp("inputs") / "shapes"
    shapes.generate(root, per_class=40, seed=11, size=32)
    dataset = scan_dataset(root, require_train=True)
    spec = InputSpec(32, 32, 3)
    x_train, y_train = load_split(dataset.train, spec)
    x_test, y_test = load_split(dataset.test, spec)
    for array in (x_train, x_test):  # what a user's own loader gives: exact 8-bit values
        assert np.array_equal(array, np.round(array)) and array.max() <= 255
    return root, dataset, x_train, y_train, x_test, y_test


def fit_and_save(model, x_train, y_train, path, epochs: int, csv=None, validation=None):
    keras.utils.set_random_seed(0)
    # XLA compiles a 200-layer network for longer than these few steps take to run.
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=False)
    callbacks = [keras.callbacks.CSVLogger(str(csv))] if csv else []
    model.fit(x_train, y_train, epochs=epochs, batch_size=8, validation_data=validation,
              callbacks=callbacks, verbose=0)
    model.save(path)
    return model


def build_report(root, model_path, out, *options):
    import json

    from click.testing import CliRunner

    from reportgen.cli import main

    result = CliRunner().invoke(main, ["build", "--data", str(root), "--model", str(model_path),
                                       "--out", str(out), "--jobs", "1", *options])
    assert result.exit_code == 0, result.output
    return json.loads((out / "report.json").read_text()), result.output


def assert_report_matches(report, probabilities, y_test):
    predicted = probabilities.argmax(axis=1)
    np.testing.assert_allclose([image["probabilities"] for image in report["images"]],
                               probabilities, atol=1e-5)
    assert [image["true_label"] for image in report["images"]] == y_test.tolist()
    assert [image["predicted_label"] for image in report["images"]] == predicted.tolist()
    confusion = np.zeros((3, 3), int)
    np.add.at(confusion, (y_test, predicted), 1)
    assert report["metrics"]["confusion_matrix"] == confusion.tolist()
    assert report["metrics"]["accuracy"] == pytest.approx(float((predicted == y_test).mean()))


@pytest.mark.slow
@pytest.mark.parametrize("nested_augmentation", [False, True], ids=["rescaling", "augmentation"])
def test_a_model_that_rescales_itself_is_fed_0_255(colour_shapes, tmp_path, nested_augmentation):
    root, _, x_train, y_train, x_test, y_test = colour_shapes
    model = fit_and_save(guide_model(nested_augmentation), x_train, y_train,
                         tmp_path / "guide.keras", epochs=25)

    report, output = build_report(root, tmp_path / "guide.keras", tmp_path / "site")

    assert report["input"]["preprocess"] == "raw" and not report["input"]["guessed"]
    assert "Rescaling" in report["input"]["reason"]
    assert "preprocess raw" in output
    assert_report_matches(report, np.asarray(model.predict(x_test, verbose=0)), y_test)
    assert "fed the wrong input" not in output  # a good build stays silent
    assert "fed the wrong input" not in (tmp_path / "site" / "index.html").read_text()


@pytest.mark.slow
def test_a_mis_fed_model_warns_on_the_console_and_the_overview(colour_shapes, tmp_path):
    root, _, x_train, y_train, _, _ = colour_shapes
    # Validated on what it learned, so the curves promise far more than a mis-fed test run.
    fit_and_save(guide_model(), x_train, y_train, tmp_path / "guide.keras", epochs=25,
                 csv=tmp_path / "training.csv", validation=(x_train, y_train))

    _, output = build_report(root, tmp_path / "guide.keras", tmp_path / "site",
                             "--preprocess", "unit", "--history", str(tmp_path / "training.csv"))

    warning = next(line for line in output.splitlines() if "fed the wrong input" in line)
    assert "--preprocess" in warning and "validation accuracy" in warning
    overview = (tmp_path / "site" / "index.html").read_text()
    assert "fed the wrong input" in overview and "--preprocess" in overview


APPLICATION_CASES = {
    # name: (builder, the preprocess_input its training used, first conv layer)
    "MobileNetV2": (applications.MobileNetV2, applications.mobilenet_v2.preprocess_input, "Conv1"),
    "ResNet50": (applications.ResNet50, applications.resnet50.preprocess_input, "conv1_conv"),
    "EfficientNetB0": (applications.EfficientNetB0, None, "stem_conv"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(APPLICATION_CASES))
def test_applications_are_fed_their_familys_preprocessing(colour_shapes, tmp_path, name):
    root, dataset, x_train, y_train, x_test, y_test = colour_shapes
    builder, preprocess_input, first_conv = APPLICATION_CASES[name]
    keras.utils.set_random_seed(0)
    model = builder(weights=None, input_shape=SMALL, classes=3)
    for layer in model.layers:
        # So that a few steps move the moving statistics: with the default 0.99 a fresh
        # network answers nearly the same whatever it is fed, and the check below is idle.
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = 0.5
    feed = (lambda x: preprocess_input(x.copy())) if preprocess_input else (lambda x: x)
    fit_and_save(model, feed(x_train), y_train, tmp_path / "app.keras", epochs=2)

    report, _ = build_report(root, tmp_path / "app.keras", tmp_path / "site",
                             "--layers", first_conv, "--max-gallery-images", "2")

    expected = np.asarray(model.predict(feed(x_test), verbose=0))
    assert_report_matches(report, expected, y_test)
    # The probabilities depend on the input range: the check above could fail.
    assert np.abs(np.asarray(model.predict(x_test / 255.0, verbose=0)) - expected).max() > 1e-3
    # The page shows what the model saw (resized pixels), never the preprocessed tensor.
    first = report["images"][0]
    drawn = np.asarray(Image.open(tmp_path / "site" / "assets" / "inputs" /
                                  (first["page"].split("/")[-1].removesuffix(".html") + ".png")))
    source = np.asarray(Image.open(dataset.test.root / first["path"]).convert("RGB"))
    np.testing.assert_array_equal(drawn, source)
