"""The probe lists the right layers and returns exactly what the model computes.

Every expected feature map is computed independently of reportgen: layers
applied one by one, or sub-models cut out of the fixture with keras.Model and
chained by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import fixture_models
import keras
import numpy as np
import pytest
from keras import layers

from reportgen.activations import ActivationProbe, FeatureLayer, stream
from reportgen.errors import UserError

TOLERANCE = 1e-5

# Per model: every feature-map layer as (path, type, output shape per image, the paths of the
# feature-map layers that feed it), read off the fixture's graph in tests/fixture_models.py.
EXPECTED_LAYERS: dict[str, list[tuple[str, str, tuple[int, int, int], tuple[str, ...]]]] = {
    "sequential_with_input": [
        ("conv", "Conv2D", (8, 8, 4), ()),
        ("pool", "MaxPooling2D", (4, 4, 4), ("conv",)),
        ("dropout", "Dropout", (4, 4, 4), ("pool",)),
    ],
    "sequential_without_input": [
        ("rescale", "Rescaling", (8, 6, 3), ()),
        ("conv", "Conv2D", (6, 4, 4), ("rescale",)),
        ("dropout", "Dropout", (6, 4, 4), ("conv",)),
    ],
    "sequential_with_input_shape": [
        ("rescale", "Rescaling", (8, 6, 3), ()),
        ("conv", "Conv2D", (6, 4, 4), ("rescale",)),
        ("dropout", "Dropout", (6, 4, 4), ("conv",)),
    ],
    "functional": [
        ("conv_wide", "Conv2D", (8, 8, 4), ()),
        ("conv_narrow", "Conv2D", (8, 8, 2), ()),
        ("concat", "Concatenate", (8, 8, 6), ("conv_narrow", "conv_wide")),
        ("pool", "MaxPooling2D", (4, 4, 6), ("concat",)),
    ],
    "nested": [
        ("stem", "Conv2D", (8, 8, 4), ()),
        ("block/block_conv", "Conv2D", (8, 8, 4), ("stem",)),
        ("block/inner/inner_conv", "Conv2D", (8, 8, 4), ("block/block_conv",)),
        ("block/inner/inner_relu", "Activation", (8, 8, 4), ("block/inner/inner_conv",)),
        ("block/block_pool", "MaxPooling2D", (4, 4, 4), ("block/inner/inner_relu",)),
    ],
    "shared_layer": [
        ("shared_conv", "Conv2D", (8, 8, 3), ()),
        ("shared_conv@2", "Conv2D", (8, 8, 3), ("shared_conv",)),
        ("pool", "MaxPooling2D", (4, 4, 3), ("shared_conv@2",)),
    ],
    "residual_bn_grayscale": [
        ("stem", "Conv2D", (8, 6, 4), ()),
        ("stem_bn", "BatchNormalization", (8, 6, 4), ("stem",)),
        ("stem_relu", "Activation", (8, 6, 4), ("stem_bn",)),
        ("res_block/res_conv", "Conv2D", (8, 6, 4), ("stem_relu",)),
        ("res_block/res_bn", "BatchNormalization", (8, 6, 4), ("res_block/res_conv",)),
        ("add", "Add", (8, 6, 4), ("res_block/res_bn", "stem_relu")),
        ("pool", "MaxPooling2D", (4, 3, 4), ("add",)),
    ],
    "repeated_names": [
        ("block_a/conv", "Conv2D", (8, 8, 4), ()),
        ("block_a/relu", "Activation", (8, 8, 4), ("block_a/conv",)),
        ("block_b/conv", "Conv2D", (8, 8, 4), ("block_a/relu",)),
        ("block_b/relu", "Activation", (8, 8, 4), ("block_b/conv",)),
        ("block_b@2/conv", "Conv2D", (8, 8, 4), ("block_b/relu",)),
        ("block_b@2/relu", "Activation", (8, 8, 4), ("block_b@2/conv",)),
        ("pool", "MaxPooling2D", (4, 4, 4), ("block_b@2/relu",)),
    ],
}


def numpy(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def layer_by_layer(model: keras.Sequential, images: np.ndarray) -> dict[str, np.ndarray]:
    """Every layer's output of a Sequential model, applied one layer at a time."""
    maps, x = {}, images
    for layer in model.layers:
        x = layer(x, training=False)
        maps[layer.name] = numpy(x)
    return maps


def cut(model: keras.Model, layer_name: str) -> keras.Model:
    """The part of a one-input functional model up to one of its own layers."""
    (image,) = model.inputs  # a bare tensor: a list of one would warn when called on an array
    return keras.Model(image, model.get_layer(layer_name).output)


def cut_outputs(model: keras.Model, names: list[str], images: np.ndarray) -> dict[str, np.ndarray]:
    return {name: numpy(cut(model, name)(images, training=False)) for name in names}


def functional_reference(model: keras.Model, images: np.ndarray) -> dict[str, np.ndarray]:
    return cut_outputs(model, ["conv_wide", "conv_narrow", "concat", "pool"], images)


def nested_reference(model: keras.Model, images: np.ndarray) -> dict[str, np.ndarray]:
    block = model.get_layer("block")
    inner = block.get_layer("inner")
    stem = cut(model, "stem")(images)
    block_conv = block.get_layer("block_conv")(stem)
    inner_relu = inner(block_conv)
    return {
        "stem": numpy(stem),
        "block/block_conv": numpy(block_conv),
        "block/inner/inner_conv": numpy(cut(inner, "inner_conv")(block_conv)),
        "block/inner/inner_relu": numpy(inner_relu),
        "block/block_pool": numpy(block.get_layer("block_pool")(inner_relu)),
    }


def shared_layer_reference(model: keras.Model, images: np.ndarray) -> dict[str, np.ndarray]:
    shared = model.get_layer("shared_conv")
    once = shared(images)
    twice = shared(once)
    return {"shared_conv": numpy(once), "shared_conv@2": numpy(twice),
            "pool": numpy(model.get_layer("pool")(twice))}


def residual_reference(model: keras.Model, images: np.ndarray) -> dict[str, np.ndarray]:
    maps = cut_outputs(model, ["stem", "stem_bn", "stem_relu", "add", "pool"], images)
    res_block = model.get_layer("res_block")
    maps["res_block/res_conv"] = numpy(cut(res_block, "res_conv")(maps["stem_relu"]))
    maps["res_block/res_bn"] = numpy(res_block(maps["stem_relu"], training=False))
    return maps


def repeated_names_reference(model: keras.Model, images: np.ndarray) -> dict[str, np.ndarray]:
    block_a, block_b = model.get_layer("block_a"), model.get_layer("block_b")
    a = block_a(images)
    b = block_b(a)
    b2 = block_b(b)
    return {
        "block_a/conv": numpy(block_a.get_layer("conv")(images)), "block_a/relu": numpy(a),
        "block_b/conv": numpy(block_b.get_layer("conv")(a)), "block_b/relu": numpy(b),
        "block_b@2/conv": numpy(block_b.get_layer("conv")(b)), "block_b@2/relu": numpy(b2),
        "pool": numpy(model.get_layer("pool")(b2)),
    }


REFERENCES: dict[str, Callable[[keras.Model, np.ndarray], dict[str, np.ndarray]]] = {
    "sequential_with_input": layer_by_layer,
    "sequential_without_input": layer_by_layer,
    "sequential_with_input_shape": layer_by_layer,
    "functional": functional_reference,
    "nested": nested_reference,
    "shared_layer": shared_layer_reference,
    "residual_bn_grayscale": residual_reference,
    "repeated_names": repeated_names_reference,
}


def build(name: str) -> keras.Model:
    return getattr(fixture_models, name)()


@pytest.mark.parametrize("name", EXPECTED_LAYERS)
def test_probe_lists_feature_map_layers_in_model_order(name):
    probe = ActivationProbe(build(name))
    assert probe.layers == tuple(FeatureLayer(*layer) for layer in EXPECTED_LAYERS[name])
    assert probe.all_layers == probe.layers


@pytest.mark.parametrize("name", EXPECTED_LAYERS)
def test_each_layer_knows_the_feature_map_layers_that_feed_it(name):
    """The graph the layer plan reads (FeatureLayer equality leaves it out)."""
    probe = ActivationProbe(build(name))
    assert [(layer.path, layer.inputs) for layer in probe.all_layers] == [
        (path, inputs) for path, _, _, inputs in EXPECTED_LAYERS[name]]


@pytest.mark.parametrize("name", EXPECTED_LAYERS)
def test_feature_maps_equal_the_layers_own_outputs(name):
    model = build(name)
    images = fixture_models.images(model)
    probabilities, feature_maps = ActivationProbe(model)(images)
    expected = REFERENCES[name](model, images)
    assert len(feature_maps) == len(EXPECTED_LAYERS[name])
    for (path, _, shape, _), feature_map in zip(EXPECTED_LAYERS[name], feature_maps, strict=True):
        assert feature_map.dtype == np.float32
        assert feature_map.shape == (len(images), *shape)
        np.testing.assert_allclose(feature_map, expected[path], atol=TOLERANCE, err_msg=path)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, numpy(model(images, training=False)), atol=TOLERANCE)
    np.testing.assert_allclose(probabilities, model.predict(images, verbose=0), atol=TOLERANCE)


def test_dropout_is_off():
    model = fixture_models.sequential_with_input()
    images = fixture_models.images(model, n_images=8)
    probe = ActivationProbe(model, ["pool", "dropout"])
    first_probabilities, (pool, dropout) = probe(images)
    second_probabilities, (_, dropout_again) = probe(images)
    np.testing.assert_array_equal(first_probabilities, second_probabilities)
    np.testing.assert_array_equal(dropout, dropout_again)
    np.testing.assert_array_equal(dropout, pool)
    # The fixture's dropout does act in training mode, so the checks above can fail.
    trained = numpy(model.get_layer("dropout")(pool, training=True))
    assert not np.allclose(trained, pool)


def test_batch_norm_uses_moving_statistics():
    model = fixture_models.residual_bn_grayscale()
    images = fixture_models.images(model, n_images=8)
    _, (stem, stem_bn) = ActivationProbe(model, ["stem", "stem_bn"])(images)
    batch_norm = model.get_layer("stem_bn")
    np.testing.assert_allclose(stem_bn, numpy(batch_norm(stem, training=False)), atol=TOLERANCE)
    assert not np.allclose(stem_bn, numpy(batch_norm(stem, training=True)), atol=1e-2)


@pytest.mark.parametrize("name", ["sequential_without_input", "sequential_with_input_shape"])
def test_sequential_without_input_survives_a_save_and_load(name, tmp_path):
    model = build(name)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    images = fixture_models.images(model)

    probe = ActivationProbe(loaded)
    probabilities, feature_maps = probe(images)

    assert probe.layers == tuple(FeatureLayer(*layer) for layer in EXPECTED_LAYERS[name])
    original_probabilities, original_maps = ActivationProbe(model)(images)
    np.testing.assert_allclose(probabilities, original_probabilities, atol=TOLERANCE)
    for feature_map, original in zip(feature_maps, original_maps, strict=True):
        np.testing.assert_allclose(feature_map, original, atol=TOLERANCE)


def test_layers_that_are_keras_ops_are_replayed_but_not_listed():
    image = keras.Input((8, 8, 3), name="image")
    conv = layers.Conv2D(4, 3, padding="same", name="conv")(image)
    doubled = keras.ops.multiply(conv, 2.0)
    pooled = layers.MaxPooling2D(2, name="pool")(doubled)
    flat = layers.Flatten(name="flatten")(pooled)
    model = keras.Model(image, layers.Dense(2, activation="softmax", name="out")(flat))
    images = fixture_models.images(model)

    probe = ActivationProbe(model)
    _, (conv_map, pool_map) = probe(images)

    assert [(layer.path, layer.inputs) for layer in probe.layers] == [("conv", ()), ("pool", ("conv",))]
    np.testing.assert_allclose(pool_map, numpy(cut(model, "pool")(images)), atol=TOLERANCE)
    np.testing.assert_allclose(conv_map, numpy(cut(model, "conv")(images)), atol=TOLERANCE)


def test_a_layer_called_with_keyword_arguments_gets_them():
    """Attention over the image's pixels, called as attention(query=..., value=...)."""
    keras.utils.set_random_seed(fixture_models.SEED)
    image = keras.Input((4, 4, 3), name="image")
    conv = layers.Conv2D(4, 1, name="conv")(image)
    attention = layers.MultiHeadAttention(num_heads=2, key_dim=2, attention_axes=(1, 2),
                                          name="attention")
    attended = attention(query=conv, value=image)
    flat = layers.Flatten(name="flatten")(attended)
    model = keras.Model(image, layers.Dense(3, activation="softmax", name="predictions")(flat))
    images = fixture_models.images(model)

    probe = ActivationProbe(model)
    probabilities, (conv_map, attention_map) = probe(images)

    assert probe.layers == (FeatureLayer("conv", "Conv2D", (4, 4, 4)),
                            FeatureLayer("attention", "MultiHeadAttention", (4, 4, 4)))
    assert probe.layers[1].inputs == ("conv",)  # given as query=
    np.testing.assert_allclose(attention_map, numpy(attention(query=conv_map, value=images)),
                               atol=TOLERANCE)
    np.testing.assert_allclose(probabilities, model.predict(images, verbose=0), atol=TOLERANCE)


def test_a_nested_block_with_two_inputs():
    """A block that takes the features and a skip connection, as in a U-Net."""
    keras.utils.set_random_seed(fixture_models.SEED)
    features, skip = keras.Input((8, 8, 4), name="features"), keras.Input((8, 8, 4), name="skip")
    widened = layers.Conv2D(4, 1, name="widen")(features)
    merge = layers.Add(name="merge")([widened, skip])
    block = keras.Model([features, skip], merge, name="skip_block")
    image = keras.Input((8, 8, 3), name="image")
    stem = layers.Conv2D(4, 3, padding="same", name="stem")(image)
    deep = layers.Conv2D(4, 3, padding="same", name="deep")(stem)
    flat = layers.Flatten(name="flatten")(block([deep, stem]))
    model = keras.Model(image, layers.Dense(3, activation="softmax", name="predictions")(flat))
    images = fixture_models.images(model)

    probe = ActivationProbe(model)
    probabilities, feature_maps = probe(images)

    stem_map = numpy(cut(model, "stem")(images))
    deep_map = numpy(cut(model, "deep")(images))
    widened_map = numpy(block.get_layer("widen")(deep_map))
    expected = {"stem": stem_map, "deep": deep_map, "skip_block/widen": widened_map,
                "skip_block/merge": widened_map + stem_map}
    assert [layer.path for layer in probe.layers] == list(expected)
    for (path, want), got in zip(expected.items(), feature_maps, strict=True):
        np.testing.assert_allclose(got, want, atol=TOLERANCE, err_msg=path)
    np.testing.assert_allclose(probabilities, model.predict(images, verbose=0), atol=TOLERANCE)


def test_the_probe_adds_no_layer_names_that_clash_with_the_models():
    """A model saved in another session may have a layer called what Keras names a new model."""
    keras.utils.set_random_seed(fixture_models.SEED)
    block = keras.Sequential([layers.Conv2D(4, 1, name="block_conv")], name="block")
    image = keras.Input((8, 8, 3), name="image")
    stem = layers.Conv2D(4, 3, padding="same", name="functional")(image)
    flat = layers.Flatten(name="flatten")(block(stem))
    model = keras.Model(image, layers.Dense(3, activation="softmax", name="predictions")(flat))
    keras.backend.clear_session()  # as in a fresh process: the next new model is "functional"
    assert keras.Model(image, stem).name == "functional"  # (so a clash can happen)
    keras.backend.clear_session()

    probe = ActivationProbe(model)
    probabilities, _ = probe(fixture_models.images(model))

    assert [layer.path for layer in probe.layers] == ["functional", "block/block_conv"]
    np.testing.assert_allclose(probabilities, model.predict(fixture_models.images(model), verbose=0),
                               atol=TOLERANCE)


@pytest.mark.parametrize(("patterns", "paths"), [
    (["block/*"], ["block/block_conv", "block/inner/inner_conv", "block/inner/inner_relu",
                   "block/block_pool"]),
    (["block/inner/*", "stem"], ["stem", "block/inner/inner_conv", "block/inner/inner_relu"]),
    (["*pool", "*_conv"], ["block/block_conv", "block/inner/inner_conv", "block/block_pool"]),
    ([], [path for path, _, _, _ in EXPECTED_LAYERS["nested"]]),
])
def test_patterns_select_layers_in_model_order(patterns, paths):
    model = fixture_models.nested()
    probe = ActivationProbe(model, patterns)
    _, feature_maps = probe(fixture_models.images(model))
    assert [layer.path for layer in probe.layers] == paths
    assert [m.shape[1:] for m in feature_maps] == [layer.output_shape for layer in probe.layers]


def test_select_picks_from_every_layer_and_the_maps_follow_model_order():
    """The layer plan's way in: it sees all layers with their graph and names the ones to show."""
    model = fixture_models.residual_bn_grayscale()
    seen = []

    def pick(all_layers):
        seen.append(all_layers)
        return ["pool", "res_block/res_conv"]

    probe = ActivationProbe(model, ["stem"], select=pick)
    _, feature_maps = probe(fixture_models.images(model))

    assert seen == [probe.all_layers]
    assert [(layer.path, layer.inputs) for layer in seen[0]] == [
        (path, inputs) for path, _, _, inputs in EXPECTED_LAYERS["residual_bn_grayscale"]]
    assert [layer.path for layer in probe.layers] == ["res_block/res_conv", "pool"]
    assert [m.shape[1:] for m in feature_maps] == [(8, 6, 4), (4, 3, 4)]


def test_a_pattern_that_matches_nothing_is_a_user_error():
    with pytest.raises(UserError, match=r"'block2/\*'.*block/block_conv"):
        ActivationProbe(fixture_models.nested(), ["stem", "block2/*"])


def two_outputs() -> keras.Model:
    image = keras.Input((8, 8, 3))
    flat = layers.Flatten()(image)
    return keras.Model(image, [layers.Dense(2)(flat), layers.Dense(3)(flat)])


def two_inputs() -> keras.Model:
    first, second = keras.Input((8, 8, 3)), keras.Input((8, 8, 3))
    added = layers.Add()([first, second])
    return keras.Model([first, second], layers.Dense(2)(layers.Flatten()(added)))


def feature_map_output() -> keras.Model:
    image = keras.Input((8, 8, 3))
    return keras.Model(image, layers.Conv2D(2, 3)(image))


def unbuilt_sequential() -> keras.Model:
    return keras.Sequential([layers.Conv2D(2, 3), layers.Flatten(), layers.Dense(2)], name="unbuilt")


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="averaging")
        self.dense = layers.Dense(2)

    def call(self, inputs):
        return self.dense(keras.ops.mean(inputs, axis=(1, 2)))


def subclassed() -> keras.Model:
    model = Subclassed()
    model(np.zeros((1, 8, 8, 3), np.float32))
    return model


def image_input_of_shape(shape: tuple[int | None, ...]) -> Callable[[], keras.Model]:
    def builder() -> keras.Model:
        image = keras.Input(shape)
        pooled = layers.GlobalAveragePooling2D()(image) if len(shape) == 3 else layers.Flatten()(image)
        return keras.Model(image, layers.Dense(2)(pooled))
    return builder


def not_a_fixed_image(shape: str) -> str:
    return (f"the model's input shape {shape} is not (batch, height, width, channels) with a "
            "fixed image size")


@pytest.mark.parametrize(("builder", "message"), [
    (two_outputs, "reportgen needs an image classifier with one input and one output; "
                  "this model has 1 inputs and 2 outputs"),
    (two_inputs, "reportgen needs an image classifier with one input and one output; "
                 "this model has 2 inputs and 1 outputs"),
    (feature_map_output, "the model's output shape (None, 6, 6, 2) is not (batch, classes)"),
    (unbuilt_sequential, "model 'unbuilt' has no input shape yet; give it a keras.Input(...) "
                         "first layer or call model.build(...) before saving it"),
    (subclassed, "model 'averaging' is a subclassed Subclassed; reportgen can only look inside "
                 "Sequential and functional Keras models"),
    # Grey images without a channel axis, and images of any size (fully convolutional models).
    (image_input_of_shape((8, 8)), not_a_fixed_image("(None, 8, 8)")),
    (image_input_of_shape((None, None, 3)), not_a_fixed_image("(None, None, None, 3)")),
    (image_input_of_shape((None, 8, 3)), not_a_fixed_image("(None, None, 8, 3)")),
    (image_input_of_shape((8, None, 3)), not_a_fixed_image("(None, 8, None, 3)")),
])
def test_models_that_are_not_image_classifiers_are_user_errors(builder, message):
    with pytest.raises(UserError) as refused:
        ActivationProbe(builder())
    assert str(refused.value) == message


def test_images_of_the_wrong_size_are_refused():
    probe = ActivationProbe(fixture_models.sequential_with_input())
    with pytest.raises(ValueError, match=r"\(n, \*\(8, 8, 3\)\)"):
        probe(np.zeros((2, 8, 6, 3), np.float32))


def test_an_empty_batch_gives_empty_arrays_like_a_full_one():
    probe = ActivationProbe(fixture_models.functional())
    probabilities, feature_maps = probe(np.zeros((0, 8, 8, 3), np.float32))
    assert probabilities.shape == (0, 3)
    assert [m.shape for m in feature_maps] == [(0, 8, 8, 4), (0, 8, 8, 2), (0, 8, 8, 6),
                                               (0, 4, 4, 6)]
    # float32 as from a full batch, so that joining batches keeps the maps float32
    assert [probabilities.dtype, *(m.dtype for m in feature_maps)] == [np.float32] * 5


def test_maps_are_float32_whatever_the_model_computes_in():
    image = keras.Input((8, 8, 3), dtype="float64")
    conv = layers.Conv2D(2, 3, padding="same", name="conv", dtype="float64")(image)
    flat = layers.Flatten(dtype="float64")(conv)
    model = keras.Model(image, layers.Dense(2, activation="softmax", dtype="float64")(flat))
    images = fixture_models.images(model)
    assert model.predict_on_batch(images).dtype == np.float64  # so the check below can fail

    probabilities, (conv_map,) = ActivationProbe(model)(images)

    assert (probabilities.dtype, conv_map.dtype) == (np.float32, np.float32)
    np.testing.assert_allclose(probabilities, model.predict_on_batch(images), atol=TOLERANCE)
    np.testing.assert_allclose(conv_map, numpy(cut(model, "conv")(images)), atol=TOLERANCE)


def test_a_model_that_takes_8_bit_pixels_gets_them_as_its_own_predict_does():
    """Fractional pixels (from a resize) are cut to whole 8-bit values, as Keras does."""
    keras.utils.set_random_seed(fixture_models.SEED)
    image = keras.Input((8, 8, 3), dtype="uint8")
    rescaled = layers.Rescaling(1 / 255, name="rescale")(image)
    conv = layers.Conv2D(4, 3, padding="same", name="conv")(rescaled)
    model = keras.Model(image, layers.Dense(2, activation="softmax")(layers.Flatten()(conv)))
    images = np.random.default_rng(0).uniform(0, 255, (4, 8, 8, 3)).astype(np.float32)

    probabilities, (rescale_map, conv_map) = ActivationProbe(model)(images)

    np.testing.assert_allclose(rescale_map, np.floor(images) / 255, atol=TOLERANCE)
    assert not np.allclose(rescale_map, images / 255, atol=TOLERANCE)  # the cut shows
    np.testing.assert_allclose(conv_map, numpy(cut(model, "conv")(images.astype(np.uint8))),
                               atol=TOLERANCE)
    np.testing.assert_allclose(probabilities, model.predict(images, verbose=0), atol=TOLERANCE)


@dataclass(frozen=True)
class Batch:
    images: np.ndarray


def test_stream_computes_one_batch_at_a_time():
    model = fixture_models.functional()
    probe = ActivationProbe(model)
    all_images = fixture_models.images(model, n_images=7)
    consumed = []

    def batches() -> Iterator[Batch]:
        for start in range(0, len(all_images), 3):
            consumed.append(start)
            yield Batch(all_images[start:start + 3])

    items = stream(probe, batches())
    assert consumed == []
    batch, probabilities, feature_maps = next(items)
    assert consumed == [0]
    np.testing.assert_array_equal(batch.images, all_images[:3])
    expected_probabilities, expected_maps = probe(all_images[:3])
    np.testing.assert_array_equal(probabilities, expected_probabilities)
    for feature_map, expected in zip(feature_maps, expected_maps, strict=True):
        np.testing.assert_array_equal(feature_map, expected)
    rest = list(items)
    assert consumed == [0, 3, 6]
    assert [len(item[0].images) for item in rest] == [3, 1]
    assert [item[1].shape for item in rest] == [(3, 3), (1, 3)]


def test_stream_feeds_the_probe_what_prepare_makes_of_the_pixels():
    model = fixture_models.functional()
    probe = ActivationProbe(model)
    pixels = fixture_models.images(model, n_images=4) * 255

    [(batch, probabilities, feature_maps)] = stream(probe, [Batch(pixels)], prepare=lambda x: x / 255)

    assert batch.images is pixels  # the batch as it came, pixels untouched
    expected_probabilities, expected_maps = probe(pixels / 255)
    np.testing.assert_array_equal(probabilities, expected_probabilities)
    for feature_map, expected in zip(feature_maps, expected_maps, strict=True):
        np.testing.assert_array_equal(feature_map, expected)
    assert not np.allclose(probe(pixels)[0], expected_probabilities)  # so prepare shows
