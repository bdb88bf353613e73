"""The explanations as rendered: pure, from a tiny report with made-up maps; no model."""

from __future__ import annotations

import dataclasses
import json
import posixpath
import re

import numpy as np
import pytest
from test_render import _once_per_module_unless_mutating, parse
from tiny_report import tiny_report

from reportgen import explain, layout
from reportgen.render import render_site

CAM_ASSETS = (r"assets/inputs/.+\.png", r"assets/maps/.+\.png", r"assets/atlas/.+\.png",
              r"assets/curves/(accuracy|loss)\.svg", r"assets/cam/.+\.png",
              r"assets/cam-means/.+\.png")


def explained(report, seed: int = 0):
    rng = np.random.default_rng(seed)
    n, n_classes = len(report.images), len(report.class_names)
    probabilities = np.array([image.probabilities for image in report.images])
    true = np.array([image.true_label for image in report.images])
    maps = explain.normalise_maps(rng.normal(size=(n, 3, 2)).astype(np.float32))
    true_maps = explain.normalise_maps(rng.normal(size=(n, 3, 2)).astype(np.float32))
    explanations = explain.Explanations(
        cam_layer="block/conv", cam_target="logit", cam_maps=maps, cam_true_maps=true_maps,
        label_quality=explain.label_quality(probabilities, true),
        entropy=explain.entropy(probabilities), embedding_layer="predictions",
        embedding=explain.pca_2d(rng.normal(size=(n, 5))),
        calibration=explain.calibration(probabilities, true),
        cell_means={},
        class_means=np.zeros((n_classes, 3, 2), np.float32),
        # The channels behind a confusion exist only for cells that hold images.
        confusion_channels=((*first_mistake_cell(report), ((2, 0.5),)),))
    return dataclasses.replace(report, explanations=explanations)


def first_mistake_cell(report) -> tuple[int, int]:
    return next((t, p) for t, row in enumerate(report.metrics.confusion.tolist())
                for p, count in enumerate(row) if t != p and count)


@pytest.fixture(scope=_once_per_module_unless_mutating)
def site():
    return dict(render_site(explained(tiny_report())))


def test_the_explanation_pages_have_their_own_titles(site):
    def title(page: str) -> str:
        return re.search(r"<title>(.*?)</title>", site[page].decode()).group(1)

    assert title(layout.LABEL_ERRORS_PAGE) == "Likely label errors · tiny on fixtures"
    assert title(layout.EMBEDDING_PAGE) == "Embedding map · tiny on fixtures"


def test_every_link_resolves_including_the_svg_points(site):
    for page in (path for path in site if path.endswith(".html")):
        for link in parse(site[page]).links:
            target, _, fragment = link.partition("#")
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(page), target)) \
                if target else page
            assert resolved in site or any(re.fullmatch(p, resolved) for p in CAM_ASSETS), \
                f"{page}: {link} points nowhere"
            if fragment and resolved.endswith(".html"):
                assert fragment in parse(site[resolved]).ids, f"{page}: no #{fragment} in {resolved}"


def test_embedding_map_links_every_image_once(site):
    report = json.loads(site["report.json"])
    html = site[layout.EMBEDDING_PAGE].decode()
    links = re.findall(r'<a href="([^"]+)"><title>', html)
    assert sorted(links) == sorted(image["page"] for image in report["images"])
    assert html.count('stroke="#000000" stroke-width="1.5"/></a>') == \
        sum(i["true_label"] != i["predicted_label"] for i in report["images"])
    svg = html[html.index('<svg class="embedding"'):]
    assert "<script" not in svg and " on" not in svg.split("</svg>")[0].replace(" one", "")


def test_report_json_carries_the_explanations(site):
    report = json.loads(site["report.json"])
    assert report["explanations"] == {
        "cam_layer": "block/conv", "cam_target": "logit",
        "embedding": {"layer": "predictions", "method": "pca",
                      "explained_variance": report["explanations"]["embedding"][
                          "explained_variance"]}}
    calibration = report["metrics"]["calibration"]
    assert calibration["bins"] == 10 and sum(calibration["counts"]) == 6
    for image in report["images"]:
        assert image["label_quality"] == image["probabilities"][image["true_label"]]
        assert image["cam"]["class"] == image["predicted_label"]
        assert np.array(image["cam"]["map"]).shape == (3, 2)
        assert ("cam_true" in image) == (image["true_label"] != image["predicted_label"])
        assert len(image["embedding"]) == 2


def test_reliability_diagram_and_ece_on_the_results_page(site):
    report = json.loads(site["report.json"])
    html = site["results.html"].decode()
    assert f"{report['metrics']['calibration']['ece']:.4f}" in html
    assert html.count('fill="#4c78a8"') == sum(1 for c in report["metrics"]["calibration"]["counts"] if c)
    assert "channel 2 (+0.5)" in html


def test_label_errors_page_ranks_by_label_quality(site):
    report = json.loads(site["report.json"])
    html = site[layout.LABEL_ERRORS_PAGE].decode()
    expected = sorted(report["images"], key=lambda i: (i["label_quality"], i["path"]))
    found = re.findall(r'<td class="num">([0-9.]+)</td>', html)
    assert found == [f"{i['label_quality']:.3f}" for i in expected]


def test_no_explain_renders_as_before():
    plain = dict(render_site(tiny_report()))
    assert layout.LABEL_ERRORS_PAGE not in plain and layout.EMBEDDING_PAGE not in plain
    report = json.loads(plain["report.json"])
    assert report["explanations"] is None and report["metrics"]["calibration"] is None
    assert "cam" not in report["images"][0]


def test_even_sample_caps_the_embedding_points(monkeypatch):
    from reportgen import render_explain

    monkeypatch.setattr(render_explain, "even_sample",
                        lambda labels: explain.even_sample(labels, max_points=3))
    html = dict(render_site(explained(tiny_report())))[layout.EMBEDDING_PAGE].decode()
    assert len(re.findall(r"<a href=\"[^\"]+\"><title>", html)) == 3
    assert "3 of 6 test images" in html


def with_embedding(report, embedding):
    explanations = explained(report).explanations
    return dataclasses.replace(report, explanations=dataclasses.replace(explanations,
                                                                        embedding=embedding))


def test_the_map_says_which_method_drew_it(site, monkeypatch):
    pca_page = site[layout.EMBEDDING_PAGE].decode()
    assert "<h1>Embedding map: PCA</h1>" in pca_page and 'aria-label="embedding map drawn by PCA' \
        in pca_page and "PCA axis 1 (" in pca_page and "t-SNE" not in pca_page

    from reportgen import render_explain

    sample = np.array([0, 1, 2, 4])
    monkeypatch.setattr(render_explain, "even_sample", lambda labels: sample)
    coordinates = np.full((6, 2), np.nan)  # what embed_2d gives for that sample
    coordinates[sample] = np.random.default_rng(1).normal(size=(len(sample), 2))
    embedding = explain.Embedding(coordinates, None, "tsne", perplexity=1.0)
    rendered = dict(render_site(with_embedding(tiny_report(), embedding)))
    page = rendered[layout.EMBEDDING_PAGE].decode()
    assert "<h1>Embedding map: t-SNE</h1>" in page
    assert 'aria-label="embedding map drawn by t-SNE' in page
    assert ">t-SNE axis 1 →</text>" in page and "PCA" not in page.replace("PCA initialisation", "")
    assert "by t-SNE (scikit-learn, perplexity 1, PCA initialisation, random state 0)" in page
    assert "4 of 6 test images" in page and "nan" not in page
    report_json = json.loads(rendered["report.json"])
    assert report_json["explanations"]["embedding"] == {
        "layer": "predictions", "method": "tsne", "explained_variance": None}
    mapped = [image["embedding"] != [None, None] for image in report_json["images"]]
    assert mapped == [True, True, True, False, True, False]
    assert all(None not in image["embedding"] for image, shown
               in zip(report_json["images"], mapped, strict=True) if shown)


def test_a_pca_map_drawn_instead_of_tsne_says_why():
    report = tiny_report()
    labels = np.array([image.true_label for image in report.images])
    embedding = explain.embed_2d(np.ones((len(labels), 5)), labels, "tsne")
    rendered = dict(render_site(with_embedding(report, embedding)))
    page = rendered[layout.EMBEDDING_PAGE].decode()
    assert "<h1>Embedding map: PCA</h1>" in page
    assert ("Asked for t-SNE, but every image has the same features, which t-SNE cannot spread "
            "out, so PCA drew this map.") in page
    assert json.loads(rendered["report.json"])["explanations"]["embedding"]["method"] == "pca"


def test_every_image_page_shows_the_cam_legend_of_the_results_page(site):
    legend = re.search(r'<figure class="cam-legend">.*?</figure>', site["results.html"].decode(),
                       re.S).group(0)
    assert legend.count("<stop ") > 2
    images = [page for page in site if page.startswith("images/")]
    assert images and all(site[page].decode().count(legend) == 1 for page in images)
    plain = dict(render_site(tiny_report()))
    assert not any(b"cam-legend" in plain[page] for page in images)


@pytest.mark.browser
def test_long_tables_scroll_in_a_box_of_their_own_so_no_page_grows_past_twenty_screens(
        chromium, tmp_path):
    """600 classes and a model of 600 layers: the per-class table, the classes' mean maps and
    the overview's two tables of layers each made a page of 20,000 px and more (146,000 px
    for the results page of 1,000 classes)."""
    import browser

    from reportgen.report import FeatureLayerRow, ModelRow

    names = [f"class {i:04d}" for i in range(600)]
    report = explained(tiny_report(class_names=names, images_per_page=24,
                                   paths=[f"{names[i]}/img_{i}.png" for i in range(600)]))
    rows = tuple(ModelRow(f"layer_{i}", "Conv2D", "(batch, 8, 8, 4)", 148) for i in range(600))
    hidden = tuple(FeatureLayerRow(f"layer_{i}", "Conv2D", (8, 8, 4), False) for i in range(600))
    report = dataclasses.replace(report, model=dataclasses.replace(report.model, rows=rows),
                                 feature_layers=report.feature_layers + hidden)
    for path, data in render_site(report):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(data)
    found = browser.crawl(tmp_path, chromium, pages=["index.html", "results.html"])
    assert {page: found[page].height_px for page in found
            if found[page].height_px > browser.MAX_PAGE_HEIGHT_PX} == {}
    assert [page for page in found if found[page].overflow_px] == []


def test_a_channel_behind_a_confusion_links_to_the_atlas_page_that_shows_it():
    """The atlas of a layer of over 64 channels is paged (DenseNet121's CAM layer has 1,024):
    the link to channel 100 goes to the page that shows it (a crawl of a DenseNet121 site
    found links to the first page instead)."""
    report = explained(tiny_report(conv_channels=130))
    cell = first_mistake_cell(report)
    report = dataclasses.replace(report, explanations=dataclasses.replace(
        report.explanations, confusion_channels=((*cell, ((100, 0.5), (5, 0.25))),)))
    site = dict(render_site(report))
    channels = re.search(r"<h3>Channels behind a confusion</h3>(.*?)</ul>",
                         site["results.html"].decode(), re.S)[1]
    links = re.findall(r'href="([^"#]+)#(c\d+)"', channels)
    assert [anchor for _, anchor in links] == ["c100", "c5"]
    for page, anchor in links:
        assert f'id="{anchor}"' in site[page].decode(), (page, anchor)
    assert links[0][0] != links[1][0]  # two pages of the atlas
