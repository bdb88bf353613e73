"""The plans: layers from real keras.applications graphs, then channels, memory and site size
as pure functions with exact expectations."""

from __future__ import annotations

from dataclasses import dataclass

import fixture_models
import pytest

from reportgen.activations import ActivationProbe
from reportgen.errors import UserError
from reportgen.plan import (
    SMALL_MODEL_LAYERS,
    gallery_priority,
    grid_bytes,
    plan_channels,
    plan_layers,
    plan_memory,
    plan_site,
)


@dataclass(frozen=True)
class Layer:
    path: str
    type_name: str
    output_shape: tuple[int, int, int] = (4, 4, 2)
    inputs: tuple[str, ...] = ()


def chain(*specs: tuple[str, str]) -> list[Layer]:
    """Layers each fed by the one before."""
    layers, previous = [], ()
    for path, type_name in specs:
        layers.append(Layer(path, type_name, inputs=previous))
        previous = (path,)
    return layers


# -- the graph the plan reads --------------------------------------------------------------------

def test_probe_records_which_layers_feed_which_across_nested_models():
    probe = ActivationProbe(fixture_models.nested())
    assert {layer.path: layer.inputs for layer in probe.all_layers} == {
        "stem": (),
        "block/block_conv": ("stem",),
        "block/inner/inner_conv": ("block/block_conv",),
        "block/inner/inner_relu": ("block/inner/inner_conv",),
        "block/block_pool": ("block/inner/inner_relu",),
    }


def test_probe_records_both_inputs_of_a_residual_add():
    probe = ActivationProbe(fixture_models.residual_bn_grayscale())
    inputs = {layer.path: layer.inputs for layer in probe.all_layers}
    assert inputs["add"] == ("res_block/res_bn", "stem_relu")
    assert inputs["res_block/res_conv"] == ("stem_relu",)
    assert inputs["pool"] == ("add",)


def test_probe_returns_the_layers_select_picks():
    model = fixture_models.functional()
    probe = ActivationProbe(model, select=lambda layers: [layers[-1].path, layers[0].path])
    _, maps = probe(fixture_models.images(model))
    assert [layer.path for layer in probe.layers] == ["conv_wide", "pool"]
    assert [m.shape[1:] for m in maps] == [(8, 8, 4), (4, 4, 6)]
    assert len(probe.all_layers) == 4


# -- layer plan on real architectures --------------------------------------------------------------

APPLICATIONS = {
    "MobileNetV2": (153, ["Conv1_relu", "block_2_add", "block_4_add", "block_5_add", "block_7_add",
                          "block_8_add", "block_9_add", "block_11_add", "block_12_add",
                          "block_14_add", "block_15_add", "out_relu"]),
    "ResNet50": (174, ["conv1_relu", "pool1_pool", "conv2_block1_out", "conv2_block2_out",
                       "conv2_block3_out", "conv3_block1_out", "conv3_block2_out",
                       "conv3_block3_out", "conv3_block4_out", "conv4_block1_out",
                       "conv4_block2_out", "conv4_block3_out", "conv4_block4_out",
                       "conv4_block5_out", "conv4_block6_out", "conv5_block1_out",
                       "conv5_block2_out", "conv5_block3_out"]),
    "EfficientNetB0": (220, ["stem_activation", "block2b_add", "block3b_add", "block4b_add",
                             "block4c_add", "block5b_add", "block5c_add", "block6b_add",
                             "block6c_add", "block6d_add", "top_activation"]),
    # 58 concatenations: one per dense block is kept, folded into its transition's bn + relu.
    "DenseNet121": (426, ["conv1_relu", "pool1", "pool2_relu", "pool2_pool", "pool3_relu",
                          "pool3_pool", "pool4_relu", "pool4_pool", "relu"]),
}


@pytest.fixture(scope="module")
def application_layers(keras_application):
    return {name: ActivationProbe(keras_application(name), select=lambda layers: []).all_layers
            for name in APPLICATIONS}


@pytest.mark.parametrize("name", APPLICATIONS)
def test_layer_plan_of_keras_applications(application_layers, name):
    total, expected = APPLICATIONS[name]
    layers = application_layers[name]
    plan = plan_layers(layers)
    assert len(layers) == total
    assert list(plan.shown) == expected
    assert plan.rule.startswith(f"{len(expected)} of {total} feature-map layers are shown")
    assert "--layers all" in plan.rule


def test_layers_all_and_globs_override_the_plan(application_layers):
    layers = application_layers["MobileNetV2"]
    assert len(plan_layers(layers, ["all"]).shown) == 153
    assert plan_layers(layers, ["block_1_*relu"]).shown == ("block_1_expand_relu",
                                                            "block_1_depthwise_relu")
    with pytest.raises(UserError, match="'nothing\\*' matches no feature-map layer"):
        plan_layers(layers, ["nothing*"])


def test_small_model_shows_every_layer_but_the_identity_ones():
    layers = chain(("aug", "RandomFlip"), ("conv", "Conv2D"), ("bn", "BatchNormalization"),
                   ("noise", "GaussianNoise"), ("pool", "MaxPooling2D"),
                   ("drop", "SpatialDropout2D"), ("reg", "ActivityRegularization"),
                   ("drop2", "Dropout"), ("conv2", "Conv2D"))
    plan = plan_layers(layers)
    assert plan.shown == ("conv", "bn", "pool", "conv2")
    assert "5 left out" in plan.rule


def test_the_small_model_limit_counts_layers_that_are_not_the_identity():
    convs = [(f"conv{i}", "Conv2D") for i in range(SMALL_MODEL_LAYERS)]
    at_limit = chain(*convs, ("drop", "Dropout"))
    assert len(plan_layers(at_limit).shown) == SMALL_MODEL_LAYERS
    over = chain(*convs, ("conv_last", "Conv2D"))
    # No merges or pooling: the first convolution and the last layer.
    assert plan_layers(over).shown == ("conv0", "conv_last")


def test_folding_stops_at_a_layer_with_two_consumers():
    layers = chain(*[(f"c{i}", "Conv2D") for i in range(30)])
    layers += [Layer("bn", "BatchNormalization", inputs=("c29",)),
               Layer("relu", "ReLU", inputs=("bn",)),
               Layer("side", "Conv2D", inputs=("relu",)),
               Layer("add", "Add", inputs=("relu", "side")),
               Layer("act", "Activation", inputs=("add",))]
    assert plan_layers(layers).shown == ("c0", "act")  # c0 has one consumer, a Conv2D
    layers[1] = Layer("c1", "BatchNormalization", inputs=("c0",))
    assert plan_layers(layers).shown[0] == "c1"


# -- channels -----------------------------------------------------------------------------------

def test_channel_plan_keeps_the_most_variable_in_index_order():
    std = [0.5, 0.0, 2.0, 1.0, 2.0, 0.1]
    assert plan_channels(std, 3) == (2, 3, 4)
    assert plan_channels(std, 4) == (0, 2, 3, 4)
    assert plan_channels(std, 10) == (0, 1, 2, 3, 4, 5)
    assert plan_channels([1.0, 1.0, 1.0], 2) == (0, 1)  # ties to the lower index


# -- memory -------------------------------------------------------------------------------------

def test_memory_plan_sizes_the_batch_from_the_selected_maps():
    # One 10x10x10 layer (4,000 bytes); the biggest layer of the model 20x20x10 (16,000).
    plan = plan_memory([(10, 10, 10)], [(10, 10, 10), (20, 20, 10)], (8, 8, 3), top_k=9,
                       budget_bytes=1_000_000)
    assert plan.bytes_per_image == 4 * 4_000 + 4 * 16_000 + 768
    assert plan.fixed_bytes == 4 * 9 * 4_000
    assert plan.batch_size == (1_000_000 - 144_000) // 80_768 == 10
    assert not plan.over_budget


def test_memory_plan_caps_the_batch_and_never_goes_below_one():
    assert plan_memory([(2, 2, 1)], [(2, 2, 1)], (2, 2, 1), 9, 10**12).batch_size == 64
    tight = plan_memory([(100, 100, 100)], [(100, 100, 100)], (8, 8, 3), 9, 1_000_000)
    assert tight.batch_size == 1
    assert tight.over_budget


# -- site size ----------------------------------------------------------------------------------

def test_gallery_priority_puts_confident_mistakes_first_then_classes_in_turn():
    true = [0, 0, 0, 1, 1, 2, 2, 2, 0]
    predicted = [0, 1, 0, 1, 0, 2, 2, 2, 0]
    confidence = [0.9, 0.6, 0.8, 0.7, 0.95, 0.5, 0.5, 0.5, 0.9]
    assert gallery_priority(true, predicted, confidence) == [4, 1, 0, 3, 5, 2, 6, 8, 7]


def test_site_plan_draws_as_many_images_as_the_budget_allows():
    per_image = grid_bytes(1000) + grid_bytes(200)
    assert per_image == 600 + 850 + 900 + 120 + 850 + 900
    priority = [4, 1, 0, 3, 5, 2]
    plan = plan_site(priority, [1000, 200], fixed_bytes=10_000,
                     budget_bytes=10_000 + 3 * per_image + per_image // 2)
    assert plan.drawn == (0, 1, 4)
    assert plan.left_out == 3
    assert plan.bytes_per_image == per_image
    assert plan_site(priority, [1000, 200], 0, 10**9).drawn == (0, 1, 2, 3, 4, 5)
    assert plan_site(priority, [1000, 200], 0, 10**9, max_images=2).drawn == (1, 4)
    assert plan_site(priority, [1000, 200], 20_000, 10_000).drawn == ()
