"""The embedding map's t-SNE option: deterministic, the even sample, tiny sets, a missing extra."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from click.testing import CliRunner

from reportgen import explain
from reportgen.errors import UserError


def clusters(n_per_class: int, n_classes: int = 3, width: int = 64, seed: int = 0):
    """Features in ``n_classes`` tight, far-apart clusters (wider than TSNE_INPUT_DIMENSIONS,
    so the PCA reduction runs too), rows of the classes in random order; and their labels."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.tile(np.arange(n_classes), n_per_class))
    centres = rng.normal(scale=10.0, size=(n_classes, width))
    return centres[labels] + rng.normal(size=(len(labels), width)), labels


def nearest_neighbours(points: np.ndarray) -> np.ndarray:
    distances = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    return distances.argmin(axis=1)


def test_tsne_keeps_clusters_together_and_repeats_byte_for_byte():
    features, labels = clusters(7)
    first = explain.embed_2d(features, labels, "tsne")
    again = explain.embed_2d(features, labels, "tsne")
    assert (first.method, first.explained_variance, first.fallback) == ("tsne", None, None)
    assert first.perplexity == pytest.approx(20 / 3)  # (21 - 1) / 3: under 30 for 21 points
    assert first.coordinates.shape == (21, 2) and np.isfinite(first.coordinates).all()
    assert first.coordinates.tobytes() == again.coordinates.tobytes()
    # Each image's nearest neighbour on the map is of its own cluster: the map is a t-SNE of
    # these features, each point in its own row.
    np.testing.assert_array_equal(labels[nearest_neighbours(first.coordinates)], labels)


def test_tsne_maps_only_the_even_sample(monkeypatch):
    features, labels = clusters(8)
    monkeypatch.setattr(explain, "even_sample",
                        lambda labels: np.arange(0, len(labels), 2))  # a sample of half
    embedding = explain.embed_2d(features, labels, "tsne")
    mapped = np.isfinite(embedding.coordinates).all(axis=1)
    np.testing.assert_array_equal(mapped, np.arange(24) % 2 == 0)
    assert np.isnan(embedding.coordinates[~mapped]).all()
    assert embedding.perplexity == pytest.approx(11 / 3)
    sample = labels[mapped]
    np.testing.assert_array_equal(sample[nearest_neighbours(embedding.coordinates[mapped])],
                                  sample)


def test_tsne_on_four_images_and_pca_below():
    features, labels = clusters(2, n_classes=2, width=5)
    four = explain.embed_2d(features, labels, "tsne")
    assert (four.method, four.perplexity, four.fallback) == ("tsne", 1.0, None)
    assert np.isfinite(four.coordinates).all()
    for n in (3, 1, 0):
        embedding = explain.embed_2d(features[:n], labels[:n], "tsne")
        assert embedding.method == "pca" and embedding.explained_variance is not None
        assert embedding.fallback == (f"t-SNE needs at least 4 images and there are {n}, so "
                                      "PCA drew this map")
        np.testing.assert_array_equal(embedding.coordinates,
                                      explain.pca_2d(features[:n]).coordinates)


def test_features_that_do_not_vary_fall_back_to_pca():
    embedding = explain.embed_2d(np.ones((10, 4)), np.arange(10) % 2, "tsne")
    assert embedding.method == "pca" and "the same features" in embedding.fallback
    np.testing.assert_array_equal(embedding.coordinates, np.zeros((10, 2)))


def test_pca_stays_the_default_and_an_unknown_method_is_refused():
    features, labels = clusters(5)
    pca = explain.embed_2d(features, labels)
    assert pca.method == "pca" and pca.fallback is None
    np.testing.assert_array_equal(pca.coordinates, explain.pca_2d(features).coordinates)
    with pytest.raises(ValueError, match="umap"):
        explain.embed_2d(features, labels, "umap")


@pytest.fixture
def without_scikit_learn(monkeypatch):
    """Imports of scikit-learn fail, as where the extra is not installed."""
    for name in ("sklearn", "sklearn.manifold"):
        monkeypatch.setitem(sys.modules, name, None)


def test_a_missing_extra_is_named(without_scikit_learn):
    features, labels = clusters(5)
    for call in (explain.require_tsne, lambda: explain.embed_2d(features, labels, "tsne")):
        with pytest.raises(UserError, match=r"pip install 'reportgen\[tsne\]'"):
            call()


def test_the_cli_refuses_tsne_without_the_extra_before_any_work(without_scikit_learn, tmp_path):
    from reportgen.cli import main

    result = CliRunner().invoke(main, ["build", "--data", str(tmp_path / "none"),
                                       "--out", str(tmp_path / "site"), "--embedding", "tsne"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [
        "Error: --embedding tsne needs scikit-learn, which is not installed: "
        "pip install 'reportgen[tsne]'"]
    assert not (tmp_path / "site").exists()


def test_the_cli_offers_pca_and_tsne():
    from reportgen.cli import main

    result = CliRunner().invoke(main, ["build", "--embedding", "umap"])
    assert result.exit_code == 2 and "'umap' is not one of 'pca', 'tsne'" in result.output
