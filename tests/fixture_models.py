"""Tiny seeded Keras models, one per shape of graph the report must handle.

Each builder returns a fresh, untrained model with 8x8 (or 8x6) images and
explicitly named layers, so tests can name the layers they expect. Weights come
from ``keras.utils.set_random_seed``: the same builder gives the same weights.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
from keras import layers

SEED = 0


def images(model: keras.Model, n_images: int = 5, seed: int = SEED) -> np.ndarray:
    """Random float32 images of the size and channel count the model takes."""
    shape = tuple(model.inputs[0].shape[1:])
    return np.random.default_rng(seed).random((n_images, *shape), dtype=np.float32)


def sequential_with_input() -> keras.Sequential:
    """The article's layout in miniature: conv, pool, dropout, dense."""
    keras.utils.set_random_seed(SEED)
    return keras.Sequential([
        keras.Input((8, 8, 3), name="image"),
        layers.Conv2D(4, 3, padding="same", activation="relu", name="conv"),
        layers.MaxPooling2D(2, name="pool"),
        layers.Dropout(0.5, name="dropout"),
        layers.Flatten(name="flatten"),
        layers.Dense(3, activation="softmax", name="predictions"),
    ], name="sequential_with_input")


def _sequential_layers() -> list[keras.Layer]:
    return [
        layers.Rescaling(0.5, name="rescale"),
        layers.Conv2D(4, 3, activation="relu", name="conv"),
        layers.Dropout(0.5, name="dropout"),
        layers.GlobalAveragePooling2D(name="gap"),
        layers.Dense(2, activation="softmax", name="predictions"),
    ]


def sequential_without_input() -> keras.Sequential:
    """No keras.Input: built by model.build() on non-square 8x6 images."""
    keras.utils.set_random_seed(SEED)
    model = keras.Sequential(_sequential_layers(), name="sequential_without_input")
    model.build((None, 8, 6, 3))
    return model


def sequential_with_input_shape() -> keras.Sequential:
    """No keras.Input: the first layer is given input_shape=, the Keras 2 way."""
    keras.utils.set_random_seed(SEED)
    first, *rest = _sequential_layers()
    with warnings.catch_warnings():
        # Keras 3 warns against input_shape=; models in the wild still use it.
        warnings.simplefilter("ignore", UserWarning)
        first = layers.Rescaling(0.5, name=first.name, input_shape=(8, 6, 3))
    return keras.Sequential([first, *rest], name="sequential_with_input_shape")


def functional() -> keras.Model:
    """Two branches joined by a Concatenate, then pooled."""
    keras.utils.set_random_seed(SEED)
    image = keras.Input((8, 8, 3), name="image")
    wide = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_wide")(image)
    narrow = layers.Conv2D(2, 1, name="conv_narrow")(image)
    joined = layers.Concatenate(name="concat")([wide, narrow])
    pooled = layers.MaxPooling2D(2, name="pool")(joined)
    flat = layers.Flatten(name="flatten")(pooled)
    predictions = layers.Dense(3, activation="softmax", name="predictions")(flat)
    return keras.Model(image, predictions, name="functional")


def nested_inner_block() -> keras.Model:
    """The innermost level of nested(): a functional block."""
    block_input = keras.Input((8, 8, 4), name="inner_input")
    conv = layers.Conv2D(4, 3, padding="same", name="inner_conv")(block_input)
    relu = layers.Activation("relu", name="inner_relu")(conv)
    return keras.Model(block_input, relu, name="inner")


def nested() -> keras.Model:
    """A functional model holding a Sequential block (no Input) holding a functional block."""
    keras.utils.set_random_seed(SEED)
    block = keras.Sequential([
        layers.Conv2D(4, 1, name="block_conv"),
        nested_inner_block(),
        layers.MaxPooling2D(2, name="block_pool"),
    ], name="block")
    image = keras.Input((8, 8, 3), name="image")
    stem = layers.Conv2D(4, 3, padding="same", name="stem")(image)
    features = block(stem)
    flat = layers.Flatten(name="flatten")(features)
    predictions = layers.Dense(3, activation="softmax", name="predictions")(flat)
    return keras.Model(image, predictions, name="nested")


def shared_layer() -> keras.Model:
    """One Conv2D object called twice in a row."""
    keras.utils.set_random_seed(SEED)
    image = keras.Input((8, 8, 3), name="image")
    shared = layers.Conv2D(3, 3, padding="same", activation="tanh", name="shared_conv")
    twice = shared(shared(image))
    pooled = layers.MaxPooling2D(2, name="pool")(twice)
    flat = layers.Flatten(name="flatten")(pooled)
    predictions = layers.Dense(3, activation="softmax", name="predictions")(flat)
    return keras.Model(image, predictions, name="shared_layer")


def _randomize_batch_norm(model: keras.Model, rng: np.random.Generator) -> None:
    """Moving statistics far from (0, 1), so inference and training modes disagree."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            _randomize_batch_norm(layer, rng)
        elif isinstance(layer, layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([
                rng.uniform(0.5, 2.0, gamma.shape), rng.normal(0, 1, beta.shape),
                rng.normal(0, 1, mean.shape), rng.uniform(0.5, 4.0, variance.shape),
            ])


def residual_bn_grayscale() -> keras.Model:
    """Grayscale 8x6 images, batch norm, a nested residual block and an Add."""
    keras.utils.set_random_seed(SEED)
    block_input = keras.Input((8, 6, 4), name="res_input")
    res_conv = layers.Conv2D(4, 3, padding="same", name="res_conv")(block_input)
    res_bn = layers.BatchNormalization(name="res_bn")(res_conv)
    res_block = keras.Model(block_input, res_bn, name="res_block")

    image = keras.Input((8, 6, 1), name="image")
    stem = layers.Conv2D(4, 3, padding="same", name="stem")(image)
    stem_bn = layers.BatchNormalization(name="stem_bn")(stem)
    stem_relu = layers.Activation("relu", name="stem_relu")(stem_bn)
    added = layers.Add(name="add")([stem_relu, res_block(stem_relu)])
    pooled = layers.MaxPooling2D(2, name="pool")(added)
    flat = layers.GlobalAveragePooling2D(name="gap")(pooled)
    predictions = layers.Dense(2, activation="softmax", name="predictions")(flat)
    model = keras.Model(image, predictions, name="residual_bn_grayscale")
    _randomize_batch_norm(model, np.random.default_rng(SEED))
    return model


def _conv_block(name: str) -> keras.Sequential:
    """Same inner layer names in every block, as a block-building helper would give."""
    return keras.Sequential([
        layers.Conv2D(4, 3, padding="same", name="conv"),
        layers.Activation("relu", name="relu"),
    ], name=name)


def repeated_names() -> keras.Model:
    """Two blocks whose layers share names; the second block is called twice."""
    keras.utils.set_random_seed(SEED)
    image = keras.Input((8, 8, 4), name="image")
    block_b = _conv_block("block_b")
    features = block_b(block_b(_conv_block("block_a")(image)))
    pooled = layers.MaxPooling2D(2, name="pool")(features)
    flat = layers.Flatten(name="flatten")(pooled)
    predictions = layers.Dense(3, activation="softmax", name="predictions")(flat)
    return keras.Model(image, predictions, name="repeated_names")
