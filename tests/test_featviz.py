"""Feature visualization: each picture, decoded and fed through the model on its own, activates
its channel more than every test image does; dead channels are said to be dead; same seed,
same bytes."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reportgen import featviz, layout
from reportgen.decode import InputSpec
from reportgen.inputs import InputContract
from reportgen.stats import LayerStatsAccumulator

SHARE_THAT_MUST_WIN = 0.95  # of the channels alive on the test images


# -- the plan, without a model ------------------------------------------------------------------

class _Stats:
    def __init__(self, std, dead):
        self.channels = tuple(type("C", (), {"std": s, "dead": d})() for s, d in zip(std, dead, strict=True))


class _Layer:
    def __init__(self, index, std, dead=None, shown=None):
        self.index = index
        self.stats = _Stats(std, dead or [False] * len(std))
        self.shown_channels = tuple(shown if shown is not None else range(len(std)))


def test_the_budget_is_shared_in_turns_most_variable_first_dead_ones_free():
    layers = [_Layer(0, [0.1, 0.5, 0.3, 0.0], dead=[False, False, False, True]),
              _Layer(1, [0.2, 0.9]), _Layer(2, [0.4, 0.1, 0.8], shown=[0, 2])]
    assert featviz.plan_features(layers, 3) == {0: (1,), 1: (1,), 2: (2,)}
    assert featviz.plan_features(layers, 5) == {0: (1, 2), 1: (0, 1), 2: (2,)}
    # Every alive drawn channel, however large the budget; the dead one never.
    assert featviz.plan_features(layers, 100) == {0: (0, 1, 2), 1: (0, 1), 2: (0, 2)}
    assert featviz.plan_features(layers, 0) == {0: (), 1: (), 2: ()}


def test_the_default_budget_covers_small_inputs_and_limits_big_ones():
    assert featviz.channel_budget(28, 28) * 28 * 28 <= featviz.DEFAULT_PIXEL_BUDGET
    assert featviz.channel_budget(28, 28) >= 9 * 64  # the article CNN's drawn channels
    assert featviz.channel_budget(224, 224) < 64
    assert featviz.channel_budget(224, 224, 300) == 300


def test_step_transforms_move_the_centre_by_the_jitter_only():
    transforms = featviz.step_transforms(0, 1, 2, steps=50, height=28, width=28)
    c = 13.5
    for a0, a1, a2, b0, b1, b2, *_ in transforms:
        # The output pixel at the centre plus the shift reads the input's centre.
        matrix = np.array([[a0, a1], [b0, b1]])
        scale = 1 / np.sqrt(abs(np.linalg.det(matrix)))
        assert 0.89 < scale < 1.11
        shift = np.linalg.solve(matrix, np.array([c - a2, c - b2])) - c
        assert np.all(np.abs(shift) <= 2 + 1e-4) and np.allclose(shift, np.round(shift), atol=1e-3)


# -- the ascent on small models -----------------------------------------------------------------

def _layers(probe, model_inputs, labels, n_classes):
    from reportgen.stages import layer_entries

    _, maps = probe(model_inputs)
    paths = [f"image-{i}" for i in range(len(model_inputs))]
    accumulators = []
    for feature_maps in maps:
        accumulator = LayerStatsAccumulator(feature_maps.shape[-1], n_classes)
        accumulator.update(feature_maps, labels, paths)
        accumulators.append(accumulator)
    return layer_entries(probe, [f"layer-{i}" for i in range(len(maps))], accumulators, 64)


def _independent_means(model, layer_name, pixels, contract):
    """Spatial means of every channel, through a model Keras builds itself up to the layer."""
    from reportgen.keras_import import keras

    sub = keras.Model(model.inputs[0], model.get_layer(layer_name).output)
    maps = np.asarray(sub(contract.prepare(pixels.astype(np.float32)), training=False), np.float64)
    return maps.mean(axis=(1, 2))


def _decoded(png: bytes, channels: int) -> np.ndarray:
    pixels = np.asarray(Image.open(io.BytesIO(png)), np.float32)
    return pixels[..., np.newaxis] if channels == 1 else pixels


def _visualize(model, contract, test_pixels, layer_names, *, steps=featviz.DEFAULT_STEPS,
               seed=0, budget=10_000, plan=None):
    from reportgen.activations import ActivationProbe

    probe = ActivationProbe(model, patterns=layer_names)
    labels = np.arange(len(test_pixels)) % 2
    layers = _layers(probe, contract.prepare(test_pixels), labels, 2)
    plan = plan if plan is not None else featviz.plan_features(layers, budget)
    found = list(featviz.visualize(probe, contract, layers, plan, seed=seed, steps=steps))
    return probe, layers, found


def _check_pictures_win(model, contract, test_pixels, layers, found):
    """Every drawn picture, decoded from its PNG, against the test images, independently."""
    wins = alive = 0
    for layer_features in found:
        layer = layers[layer_features.layer_index]
        tests = _independent_means(model, layer.path, test_pixels, contract).max(axis=0)
        for feature in layer_features.features:
            alive_on_tests = not layer.stats.channels[feature.channel].dead
            alive += alive_on_tests
            if feature.dead:
                continue
            png = featviz.picture_png(layer_features.pictures[feature.channel])
            reached = _independent_means(model, layer.path, _decoded(png, contract.spec.channels)
                                         [np.newaxis], contract)[0, feature.channel]
            assert reached == pytest.approx(feature.activation, rel=1e-4, abs=1e-5)
            assert feature.best_test == pytest.approx(tests[feature.channel], rel=1e-5)
            wins += alive_on_tests and reached > tests[feature.channel]
    assert alive > 0
    assert wins >= SHARE_THAT_MUST_WIN * alive, f"{wins} of {alive} alive channels beaten"


def _rescaling_model():
    from reportgen.keras_import import keras

    keras.utils.set_random_seed(0)
    image = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Rescaling(1 / 255, name="rescale")(image)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(image, keras.layers.Dense(2, activation="softmax")(x), name="rescaled")


def _test_pixels(shape, n=12, seed=1):
    return np.round(np.random.default_rng(seed).random((n, *shape)) * 255).astype(np.float32)


def test_pictures_beat_every_test_image_through_a_model_that_rescales_its_input():
    model = _rescaling_model()
    contract = InputContract(InputSpec(16, 16, 3), "raw", "the model scales its own input")
    pixels = _test_pixels((16, 16, 3))
    _, layers, found = _visualize(model, contract, pixels, ["conv1", "pool", "conv2"])
    _check_pictures_win(model, contract, pixels, layers, found)


def test_grey_pictures_stay_grey_and_win():
    from reportgen.keras_import import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12, 12, 1)),
                              keras.layers.Conv2D(6, 3, activation="relu", name="conv"),
                              keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    contract = InputContract(InputSpec(12, 12, 1), "unit", "test")
    pixels = _test_pixels((12, 12, 1))
    _, layers, found = _visualize(model, contract, pixels, ["conv"])
    assert next(iter(found[0].pictures.values())).shape == (12, 12, 1)
    assert Image.open(io.BytesIO(featviz.picture_png(found[0].pictures[0]))).mode == "L"
    _check_pictures_win(model, contract, pixels, layers, found)


def _dead_channel_model():
    from reportgen.keras_import import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)),
                              keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(2, activation="softmax")])
    kernel, bias = model.get_layer("conv").get_weights()
    bias[2] = -100.0
    model.get_layer("conv").set_weights([kernel, bias])
    return model


def test_a_dead_channel_is_said_to_be_dead_and_not_drawn():
    model = _dead_channel_model()
    contract = InputContract(InputSpec(8, 8, 3), "unit", "test")
    pixels = _test_pixels((8, 8, 3))
    _, layers, found = _visualize(model, contract, pixels, ["conv"])
    assert layers[0].stats.channels[2].dead
    by_channel = {feature.channel: feature for feature in found[0].features}
    assert sorted(by_channel) == [0, 1, 2, 3]
    assert by_channel[2].dead and by_channel[2].activation is None and 2 not in found[0].pictures
    assert all(not by_channel[c].dead and c in found[0].pictures for c in (0, 1, 3))
    # Given to the ascent anyway, no picture raises it above 0: dead too.
    _, _, forced = _visualize(model, contract, pixels, ["conv"], plan={0: (1, 2)})
    forced_features = {feature.channel: feature for feature in forced[0].features}
    assert forced_features[2].dead and 2 not in forced[0].pictures
    assert not forced_features[1].dead


def test_a_linear_layer_with_tiny_activations_is_drawn_not_called_dead():
    """A channel is dead when no unit of it is above 0, whatever the scale of its mean: an
    untrained network's deep linear layers reach means of 1e-6 and below."""
    from reportgen.keras_import import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10, 10, 3)),
                              keras.layers.Conv2D(4, 3, name="linear"),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(2, activation="softmax")])
    kernel, bias = model.get_layer("linear").get_weights()
    model.get_layer("linear").set_weights([kernel * 1e-8, bias])
    contract = InputContract(InputSpec(10, 10, 3), "unit", "test")
    pixels = _test_pixels((10, 10, 3))
    _, layers, found = _visualize(model, contract, pixels, ["linear"])
    assert all(0 < abs(f.best_test) < 1e-6 for f in found[0].features)
    assert not any(f.dead for f in found[0].features)
    _check_pictures_win(model, contract, pixels, layers, found)


class _ScriptedAscent:
    """Each call's means, by channel, in turn: the rounds' bookkeeping without a model."""

    def __init__(self, rounds):
        self.rounds, self.calls = list(rounds), []

    def pictures(self, channels, seed, layer_index, attempt=0, start=None):
        self.calls.append((tuple(channels), attempt, None if start is None else start.copy()))
        means = self.rounds[len(self.calls) - 1]
        pictures = np.stack([np.full((2, 2, 1), means[c] * 10, np.uint8) for c in channels])
        spectra = np.stack([np.full((3,), 100 * attempt + c, np.float32) for c in channels])
        return pictures, spectra[np.newaxis]

    def activations(self, pictures, channels):
        means = np.asarray([self.rounds[len(self.calls) - 1][c] for c in channels], np.float64)
        return means, means


def test_channels_short_of_their_best_test_image_go_on_and_keep_only_a_rise():
    best = [1.0, 1.0, 1.0]
    # Round 0: channel 0 wins at once; 1 and 2 fall short. Round 1: 1 rises past its best,
    # 2 falls (kept at round 0's). Round 2: only 2 goes on, and rises but stays short.
    ascent = _ScriptedAscent([{0: 2.0, 1: 0.5, 2: 0.4}, {1: 1.5, 2: 0.1}, {2: 0.9}])
    drawn, reached, _ = featviz._best_pictures(ascent, (0, 1, 2), 0, 0, best)
    assert [(c, a) for c, a, _ in ascent.calls] == [((0, 1, 2), 0), ((1, 2), 1), ((2,), 2)]
    assert list(reached) == [2.0, 1.5, 0.9]
    assert [int(d[0, 0, 0]) for d in drawn] == [20, 15, 9]
    # Round 2 went on from round 0's spectrum for channel 2 (round 1 fell, so was not kept).
    assert ascent.calls[2][2][0, 0].tolist() == [2.0, 2.0, 2.0]
    assert ascent.calls[1][2][0, 1].tolist() == [2.0, 2.0, 2.0]
    # No more rounds than EXTRA_ROUNDS, however short a channel stays.
    stuck = _ScriptedAscent([{0: 0.1}] + [{0: 0.1 + r} for r in range(1, 9)])
    featviz._best_pictures(stuck, (0,), 0, 0, [100.0])
    assert len(stuck.calls) == 1 + featviz.EXTRA_ROUNDS


def test_same_seed_same_bytes_and_rows_do_not_mix():
    model = _rescaling_model()
    contract = InputContract(InputSpec(16, 16, 3), "raw", "test")
    pixels = _test_pixels((16, 16, 3))

    def pngs(seed, plan):
        _, _, found = _visualize(model, contract, pixels, ["conv1"], steps=16, seed=seed,
                                 plan=plan)
        return {c: featviz.picture_png(p) for c, p in found[0].pictures.items()}, found

    first, found = pngs(0, {0: (0, 1, 2, 5)})
    again, _ = pngs(0, {0: (0, 1, 2, 5)})
    other, _ = pngs(1, {0: (0, 1, 2, 5)})
    assert first == again
    assert all(first[c] != other[c] for c in first)
    # A channel's picture does not depend on the channels that share its batch.
    alone, found_alone = pngs(0, {0: (2,)})
    batched = np.asarray(found[0].pictures[2], np.int16)
    assert np.abs(np.asarray(found_alone[0].pictures[2], np.int16) - batched).max() <= 1


@pytest.mark.slow
def test_pictures_beat_every_test_image_on_a_small_mobilenet_v2(keras_application):
    from reportgen.inputs import decide

    model = keras_application("MobileNetV2")
    contract = decide(model, None)
    assert contract.preprocess == "mobilenet_v2"
    pixels = _test_pixels((32, 32, 3), n=8)
    layers_shown = ["Conv1_relu", "block_3_expand_relu", "block_6_project_BN"]
    _, layers, found = _visualize(model, contract, pixels, layers_shown, budget=24)
    assert sum(len(f.pictures) for f in found) >= 20
    _check_pictures_win(model, contract, pixels, layers, found)


# -- in the built site ---------------------------------------------------------------------------

@pytest.mark.slow
def test_the_sites_pictures_beat_every_test_image_of_the_article_cnn(small_build):
    """Decoded from the site and fed through the article's CNN, as a reader would check."""
    from reportgen.data import scan_split
    from reportgen.decode import load_image
    from reportgen.inputs import InputContract
    from reportgen.keras_import import keras

    report = json.loads((small_build.path / "report.json").read_text())
    model = keras.saving.load_model(small_build.model, safe_mode=True)
    contract = InputContract(InputSpec(**{k: report["input"][k] for k in ("height", "width")},
                                       channels=3), report["input"]["preprocess"], "")
    test = scan_split(small_build.options.data / "test_set")
    test_pixels = np.stack([load_image(test.root / r.path, contract.spec) for r in test.images])
    wins = alive = drawn = 0
    for layer in report["feature_layers"]:
        tests = _independent_means(model, layer["path"], test_pixels, contract).max(axis=0)
        for channel in layer["channel_stats"]:
            feature = channel.get("feature")
            if channel["index"] not in layer["shown_channels"]:
                assert feature is None
                continue
            assert feature is not None  # the default budget covers every drawn channel
            assert feature["best_test_activation"] == pytest.approx(tests[channel["index"]],
                                                                    rel=1e-4, abs=1e-6)
            alive += not channel["dead"]
            if feature["dead"]:
                assert feature["picture"] is None and feature["activation"] is None
                continue
            drawn += 1
            picture = load_image(small_build.path / feature["picture"], contract.spec)
            reached = _independent_means(model, layer["path"], picture[np.newaxis],
                                         contract)[0, channel["index"]]
            assert reached == pytest.approx(feature["activation"], rel=1e-4, abs=1e-6)
            wins += not channel["dead"] and reached > tests[channel["index"]]
    assert drawn > 100
    assert wins >= SHARE_THAT_MUST_WIN * alive, f"{wins} of {alive} alive channels beaten"
    # The atlas and the layer page show them.
    first = report["feature_layers"][0]
    page = (small_build.path / first["page"]).read_text()
    drawn_first = [c for c in first["channel_stats"] if c.get("feature") and c["feature"]["picture"]]
    assert 'id="features"' in page
    assert all(page.count(c["feature"]["picture"]) == 2 for c in drawn_first)


@pytest.mark.slow
def test_no_features_leaves_the_site_without_them(small_build, tmp_path):
    from reportgen.stages import build

    options = replace(small_build.options, out=tmp_path / "site", features=False)
    build(options, echo=lambda line: None)
    report = json.loads((tmp_path / "site/report.json").read_text())
    assert not (tmp_path / "site/assets/features").exists()
    assert all("feature" not in c for layer in report["feature_layers"]
               for c in layer["channel_stats"])
    assert 'id="features"' not in (tmp_path / "site" / layout.layer_page(
        Path(report["feature_layers"][0]["page"]).parent.name)).read_text()


# -- rendered, from a report model made by hand -------------------------------------------------

def test_the_atlas_the_layer_grid_and_report_json_show_the_features():
    from tiny_report import tiny_report

    from reportgen.featviz import ChannelFeature
    from reportgen.render import render_site

    report = tiny_report()
    conv = report.layers[0]  # channel 0 is dead on the test images
    features = (ChannelFeature(0, 0.0, None, True), ChannelFeature(1, 0.5, 1.25, False),
                ChannelFeature(2, 0.75, 2.5, False))
    report = replace(report, layers=(replace(conv, features=features), *report.layers[1:]))
    site = dict(render_site(report))
    page = site[layout.layer_page(conv.slug)].decode()
    for channel in (1, 2):
        # Once in the grid at the top, once in the atlas beside its top images.
        assert page.count(layout.feature_asset(conv.slug, channel)) == 2
    assert layout.feature_asset(conv.slug, 0) not in page
    assert "Dead: channel 0" in page
    assert page.index('id="features"') < page.index('id="atlas"')
    atlas_entry = page[page.index('id="c2"'):]
    assert atlas_entry.index(layout.feature_asset(conv.slug, 2)) < atlas_entry.index("top-inputs")
    assert "mean 2.5, best test image 0.75" in page
    channels = json.loads(site["report.json"])["feature_layers"][0]["channel_stats"]
    assert channels[2]["feature"] == {"picture": layout.feature_asset(conv.slug, 2),
                                      "activation": 2.5, "best_test_activation": 0.75,
                                      "dead": False}
    assert channels[0]["feature"] == {"picture": None, "activation": None,
                                      "best_test_activation": 0.0, "dead": True}
    pool = json.loads(site["report.json"])["feature_layers"][1]
    assert all("feature" not in c for c in pool["channel_stats"])
    assert 'id="features"' not in site[layout.layer_page(report.layers[1].slug)].decode()
