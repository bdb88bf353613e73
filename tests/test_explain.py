"""Explanations against independent computations: Grad-CAM one image at a time (keras-io's
way), ECE by hand, label quality, entropy, PCA against numpy.linalg.svd."""

from __future__ import annotations

import fixture_models
import numpy as np
import pytest
import tensorflow as tf

from reportgen import explain
from reportgen.decode import InputSpec
from reportgen.errors import UserError
from reportgen.keras_import import keras


def reference_gradcam(model, layer_output, image: np.ndarray, class_index: int) -> np.ndarray:
    """keras-io's make_gradcam_heatmap, one image, the last layer's softmax removed.

    ``layer_output`` is the target layer's symbolic output in the model's graph, or for a
    Sequential model the layer's name: then the model is split there, keras-io's older way
    (a Sequential built with add() leaves stale graphs behind in ``layer.output``).
    """
    with tf.GradientTape() as tape:
        if isinstance(layer_output, str):
            x = tf.convert_to_tensor(image[np.newaxis])
            names = [layer.name for layer in model.layers]
            for layer in model.layers[: names.index(layer_output) + 1]:
                x = layer(x, training=False)
            tape.watch(x)
            target_output = x
            for layer in model.layers[names.index(layer_output) + 1:]:
                x = layer(x, training=False)
            predictions = x
        else:
            grad_model = keras.Model(model.inputs[0], [layer_output, model.outputs[0]])
            target_output, predictions = grad_model(image[np.newaxis])
        class_channel = predictions[:, class_index]
    grads = tape.gradient(class_channel, target_output)
    layer_output = target_output
    pooled_grads = tf.reduce_mean(grads, axis=(0, 1, 2))
    heatmap = tf.squeeze(layer_output[0] @ pooled_grads[..., tf.newaxis], axis=-1)
    heatmap = tf.maximum(heatmap, 0).numpy()
    peak = heatmap.max()
    return heatmap / peak if peak > 0 else np.zeros_like(heatmap)


def batched_and_reference(model, cam_layer, reference_output, images, true):
    cam = explain.GradCam(model, cam_layer)
    probabilities, _, batch = cam.forward(images, true)
    predicted = probabilities.argmax(axis=1)
    model.layers[-1].activation = keras.activations.linear  # as keras-io does, after GradCam
    expected_predicted = np.stack([reference_gradcam(model, reference_output, image, label)
                                   for image, label in zip(images, predicted, strict=True)])
    expected_true = np.stack([reference_gradcam(model, reference_output, image, label)
                              for image, label in zip(images, true, strict=True)])
    return cam, batch, expected_predicted, expected_true


def test_batched_gradcam_equals_one_image_reference_on_the_article_cnn():
    from reportgen.model import article_cnn

    keras.utils.set_random_seed(1)
    model = article_cnn(InputSpec(28, 28, 1), 3)
    images = np.random.default_rng(1).random((6, 28, 28, 1), dtype=np.float32)
    true = np.array([0, 1, 2, 2, 1, 0])
    cam, batch, expected_predicted, expected_true = batched_and_reference(
        model, None, "block3_conv2", images, true)
    assert cam.layer.path == "block3_conv2"  # the 1x1 pool and dropout after it are passed over
    assert cam.target == "logit" and cam.embedding_layer == "predictions"
    assert batch.predicted_maps.shape == (6, 3, 3)
    assert (batch.predicted_maps.max(axis=(1, 2)) == 1).sum() >= 3  # not all-zero maps
    np.testing.assert_allclose(batch.predicted_maps, expected_predicted, atol=1e-5)
    np.testing.assert_allclose(batch.true_maps, expected_true, atol=1e-5)
    assert batch.features.shape == (6, 512)


def test_batched_gradcam_on_a_functional_model_with_a_nested_block_and_batch_norm():
    model = fixture_models.residual_bn_grayscale()
    images = fixture_models.images(model, n_images=7)
    true = np.array([0, 1, 1, 0, 1, 0, 0])
    cam, batch, expected_predicted, expected_true = batched_and_reference(
        model, None, model.get_layer("pool").output, images, true)
    assert cam.layer.path == "pool" and cam.layer.output_shape == (4, 3, 4)
    assert (batch.predicted_maps.max(axis=(1, 2)) == 1).sum() >= 3
    np.testing.assert_allclose(batch.predicted_maps, expected_predicted, atol=1e-5)
    np.testing.assert_allclose(batch.true_maps, expected_true, atol=1e-5)
    assert batch.channel_means.shape == (7, 4)


def test_cam_layer_inside_a_nested_block():
    model = fixture_models.residual_bn_grayscale()
    images = fixture_models.images(model, n_images=4)
    true = np.array([1, 1, 0, 0])
    # The nested block's output is its last layer's: the reference takes it where "add" reads it.
    cam, batch, expected_predicted, expected_true = batched_and_reference(
        model, "res_block/res_bn", model.get_layer("add").input[1], images, true)
    assert cam.layer.output_shape == (8, 6, 4)
    np.testing.assert_allclose(batch.predicted_maps, expected_predicted, atol=1e-5)
    np.testing.assert_allclose(batch.true_maps, expected_true, atol=1e-5)


def test_an_unknown_cam_layer_names_the_choices():
    with pytest.raises(UserError, match=r"'nope'.*conv, pool"):
        explain.GradCam(fixture_models.sequential_with_input(), "nope")


def test_a_softmax_layer_after_a_linear_dense_gives_the_dense_as_classifier():
    keras.utils.set_random_seed(0)
    image = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(image)
    x = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Dense(3, name="logits")(x)
    model = keras.Model(image, keras.layers.Softmax(name="softmax")(logits))
    cam = explain.GradCam(model)
    assert (cam.target, cam.embedding_layer, cam.layer.path) == ("logit", "logits", "conv")
    images = fixture_models.images(model, n_images=3)
    _, _, batch = cam.forward(images, np.array([0, 1, 2]))
    reference = keras.Model(model.inputs[0], [model.get_layer("conv").output, logits])
    with tf.GradientTape() as tape:
        maps, scores = reference(images[:1])
        score = scores[0, 0]
    weights = tf.reduce_mean(tape.gradient(score, maps), axis=(1, 2))[0]
    expected = np.maximum(np.tensordot(maps[0].numpy(), weights.numpy(), axes=1), 0)
    expected = expected / expected.max() if expected.max() > 0 else expected
    np.testing.assert_allclose(batch.true_maps[0], expected, atol=1e-5)


def test_normalise_maps_relu_and_max_and_all_zero():
    maps = np.array([[[-1.0, 2.0], [4.0, 0.0]], [[-1.0, -2.0], [0.0, -3.0]]], dtype=np.float32)
    np.testing.assert_array_equal(explain.normalise_maps(maps),
                                  [[[0, 0.5], [1, 0]], [[0, 0], [0, 0]]])


def test_calibration_against_a_hand_computation():
    # Top probabilities 0.95, 0.92 (bin 9), 0.65 (bin 6), 0.45 (bin 4), 0.55 (bin 5);
    # correct: yes, no, yes, no, yes.
    probabilities = np.array([[0.95, 0.05, 0.0], [0.92, 0.04, 0.04], [0.2, 0.65, 0.15],
                              [0.25, 0.3, 0.45], [0.55, 0.45, 0.0]])
    labels = np.array([0, 1, 1, 0, 0])
    result = explain.calibration(probabilities, labels)
    assert result.bins == 10
    assert result.counts == (0, 0, 0, 0, 1, 1, 1, 0, 0, 2)
    assert result.accuracy[9] == 0.5 and result.confidence[9] == pytest.approx(0.935)
    assert result.accuracy[4] == 0.0 and result.accuracy[0] is None
    expected_ece = (2 * abs(0.5 - 0.935) + abs(1 - 0.65) + abs(1 - 0.55) + abs(0 - 0.45)) / 5
    assert result.ece == pytest.approx(expected_ece, abs=1e-12)


def test_calibration_bin_edges_are_right_closed():
    probabilities = np.array([[0.3, 0.2, 0.2, 0.2, 0.1], [0.1, 0.1, 0.1, 0.1, 0.6]])
    counts = explain.calibration(probabilities, np.array([0, 4])).counts
    assert counts[2] == 1 and counts[5] == 1  # 0.3 in (0.2, 0.3], 0.6 in (0.5, 0.6]


def test_label_quality_and_entropy():
    probabilities = np.array([[0.7, 0.2, 0.1], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(explain.label_quality(probabilities, np.array([1, 0])), [0.2, 1.0])
    expected = -(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1))
    np.testing.assert_allclose(explain.entropy(probabilities), [expected, 0.0])


def test_pca_against_numpy_svd():
    rng = np.random.default_rng(4)
    features = rng.normal(size=(40, 6)) @ rng.normal(size=(6, 6)) + 3.0
    embedding = explain.pca_2d(features)
    centred = features - features.mean(axis=0)
    _, s, vt = np.linalg.svd(centred)
    for axis in range(2):
        projected = centred @ vt[axis]
        r = np.corrcoef(projected, embedding.coordinates[:, axis])[0, 1]
        assert abs(r) > 0.999999
        np.testing.assert_allclose(np.abs(embedding.coordinates[:, axis]), np.abs(projected),
                                   atol=1e-9)
    np.testing.assert_allclose(embedding.explained_variance, (s[:2] ** 2) / (s ** 2).sum())


def test_even_sample_keeps_every_class_in_proportion():
    labels = np.array([0] * 90 + [1] * 10)
    chosen = explain.even_sample(labels, max_points=20)
    assert len(chosen) == 20 and (labels[chosen] == 1).sum() == 2
    assert chosen[0] == 0 and 89 in chosen  # evenly spread, ends included
    np.testing.assert_array_equal(explain.even_sample(labels, max_points=100), np.arange(100))


def test_default_cam_layer_passes_over_1x1_maps_and_says_when_none_is_left():
    from reportgen.activations import FeatureLayer

    layers = [FeatureLayer("conv", "Conv2D", (4, 1, 8)), FeatureLayer("pool", "MaxPooling2D",
                                                                      (1, 1, 8))]
    assert explain.default_cam_layer(layers).path == "conv"
    with pytest.raises(explain.NoCamLayer):
        explain.default_cam_layer(layers[1:])


def test_a_softmax_inside_a_nested_head_is_still_removed():
    keras.utils.set_random_seed(2)
    head = keras.Sequential([keras.layers.GlobalAveragePooling2D(name="gap"),
                             keras.layers.Dense(3, activation="softmax", name="predictions")],
                            name="head")
    image = keras.Input((8, 8, 3), name="image")
    conv = keras.layers.Conv2D(6, 3, activation="relu", name="conv")(image)
    model = keras.Model(image, head(conv), name="nested_head")
    images = fixture_models.images(model, n_images=5)
    true = np.array([2, 1, 0, 0, 1])
    cam = explain.GradCam(model)
    _, _, batch = cam.forward(images, true)
    assert (cam.target, cam.layer.path) == ("logit", "conv")
    assert cam.embedding_layer == "predictions (its logits)"
    head.layers[-1].activation = keras.activations.linear
    expected = np.stack([reference_gradcam(model, model.get_layer("conv").output, image, label)
                         for image, label in zip(images, true, strict=True)])
    np.testing.assert_allclose(batch.true_maps, expected, atol=1e-5)
    logits = model(images, training=False).numpy()  # eager: predict() keeps its old trace
    np.testing.assert_allclose(batch.features, logits, atol=1e-5)


@pytest.mark.parametrize("builder", [fixture_models.functional, fixture_models.nested,
                                     fixture_models.residual_bn_grayscale])
def test_the_builds_one_taped_pass_gives_what_the_probe_and_gradcam_give_apart(builder):
    """GradCam.forward is the build's only forward pass: its probabilities and maps are the
    probe's, bit for bit, and its Grad-CAM that of the predicted and the true class."""
    from reportgen.activations import ActivationProbe

    model = builder()
    images = fixture_models.images(model, 6)
    true = np.array([0, 1, 2, 0, 1, 2]) % int(model.outputs[0].shape[-1])
    probe = ActivationProbe(model)
    probabilities, maps = probe(images)
    shown = [layer.path for layer in probe.layers][::2]
    cam = explain.GradCam(model, layers=shown)
    fused_probabilities, fused_maps, fused = cam.forward(images, true)
    np.testing.assert_array_equal(fused_probabilities, probabilities)
    assert [layer.path for layer in cam.layers] == shown
    for got, expected in zip(fused_maps, maps[::2], strict=True):
        np.testing.assert_array_equal(got, expected)
    # The predicted class's map is the true class's map when the true class is the prediction.
    _, _, as_true = cam.forward(images, probabilities.argmax(axis=1))
    np.testing.assert_array_equal(fused.predicted_maps, as_true.true_maps)
    np.testing.assert_array_equal(fused.features, as_true.features)


def test_the_one_taped_pass_explains_the_first_of_tied_classes_as_numpy_argmax_does():
    inputs = keras.Input((8, 8, 1))
    features = keras.layers.Conv2D(3, 3, name="conv")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    # Logits 30 to 60 apart from small terms: sigmoid rounds every probability to 1.0 in
    # float32, a four-way tie, while each class's logit has a gradient of its own.
    outputs = keras.layers.Dense(4, activation="sigmoid", bias_initializer=keras.initializers.
                                 Constant([30.0, 40.0, 50.0, 60.0]))(pooled)
    model = keras.Model(inputs, outputs)
    images = np.random.default_rng(0).random((3, 8, 8, 1), dtype=np.float32)
    cam = explain.GradCam(model, layers=["conv"])
    probabilities, _, fused = cam.forward(images, np.array([3, 3, 3]))
    assert (probabilities == 1.0).all()
    *_, first = cam.forward(images, np.zeros(3, np.int64))
    *_, last = cam.forward(images, np.full(3, 3))
    assert not np.allclose(first.true_maps, last.true_maps)
    np.testing.assert_array_equal(fused.predicted_maps, first.true_maps)


def test_models_with_layers_named_like_keras_ops_are_explained():
    """The logits are computed in the model's graph: as bare keras.ops they would be graph
    operations auto-named "add" or "log", which a layer of the model may already be named."""
    keras.backend.clear_session()  # restart Keras' name counters: the next auto "add" is "add"
    inputs = keras.Input((8, 8, 1))
    conv = keras.layers.Conv2D(2, 3, padding="same", name="conv")(inputs)
    merged = keras.layers.Add(name="add")([conv, conv])
    logged = keras.layers.Activation("relu", name="log")(merged)
    pooled = keras.layers.GlobalAveragePooling2D()(logged)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(pooled))
    images = np.random.default_rng(1).random((2, 8, 8, 1), dtype=np.float32)
    probabilities, maps, cam = explain.GradCam(model, layers=["add"]).forward(images,
                                                                              np.array([0, 1]))
    np.testing.assert_allclose(probabilities, model.predict(images, verbose=0), rtol=1e-6)
    assert maps[0].shape == (2, 8, 8, 2) and cam.predicted_maps.shape == (2, 8, 8)
