"""The explanations in a built site: pictures for every image, the pages, the crawl, --no-explain."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil

import browser
import pytest

from reportgen import layout


def read_report(site) -> dict:
    return json.loads((site / "report.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_every_image_has_its_overlays_and_the_pages_exist(small_site):
    report = read_report(small_site)
    assert report["explanations"]["cam_layer"] == "block3_conv2"
    # The shapes are 28x28: pictures stay lossless PNG, so the sample site's bytes do not change.
    assert report["drawing"]["pictures"] == "png"
    assert not list(small_site.glob("assets/**/*.jpg"))
    for image in report["images"]:
        slug = image["page"].removeprefix("images/").removesuffix(".html")
        assert (small_site / layout.input_asset(slug, picture_format="png")).read_bytes().startswith(
            b"\x89PNG")
        assert (small_site / layout.cam_asset(slug, picture_format="png")).read_bytes().startswith(
            b"\x89PNG")
        wrong = image["true_label"] != image["predicted_label"]
        assert (small_site / layout.cam_asset(slug, "true", picture_format="png")).exists() == wrong
        page = (small_site / image["page"]).read_text(encoding="utf-8")
        assert page.count('src="../assets/cam/') == 1 + wrong
    for page in (layout.LABEL_ERRORS_PAGE, layout.EMBEDDING_PAGE):
        assert (small_site / page).exists()
    results = (small_site / "results.html").read_text(encoding="utf-8")
    assert 'class="reliability"' in results and 'href="labels.html"' in results


@pytest.mark.slow
@pytest.mark.browser
def test_the_crawl_follows_the_embedding_map_links(small_site, chromium, tmp_path):
    """A control for the site crawl: a broken point of the inline SVG is reported."""
    site = tmp_path / "site"
    shutil.copytree(small_site, site)
    path = site / layout.EMBEDDING_PAGE
    html = path.read_text(encoding="utf-8")
    damaged = re.sub(r'<a href="images/[^"]+"><title>', '<a href="images/gone.html"><title>',
                     html, count=1)
    assert damaged != html
    path.write_text(damaged, encoding="utf-8")
    found = browser.crawl(site, chromium, pages=[layout.EMBEDDING_PAGE, layout.LABEL_ERRORS_PAGE])
    assert any("images/gone.html" in link for link in found[layout.EMBEDDING_PAGE].broken_links)
    assert found[layout.LABEL_ERRORS_PAGE].problems() == []


@pytest.mark.slow
def test_no_explain_skips_all_of_it(small_build, tmp_path):
    from reportgen.stages import build

    out = tmp_path / "site"
    result = build(dataclasses.replace(small_build.options, out=out, explain=False),
                   echo=lambda line: None)
    assert "explain" not in result.stage_seconds
    report = read_report(out)
    assert report["explanations"] is None and report["metrics"]["calibration"] is None
    assert not any(key in report["images"][0] for key in ("cam", "label_quality", "embedding"))
    assert not (out / "assets" / "cam").exists() and not (out / layout.EMBEDDING_PAGE).exists()
    assert 'class="cam"' not in (out / "results.html").read_text(encoding="utf-8")


@pytest.mark.slow
def test_an_unknown_cam_layer_is_one_clear_error(small_build, tmp_path):
    from click.testing import CliRunner

    from reportgen.cli import main

    result = CliRunner().invoke(main, [
        "build", "--data", str(small_build.options.data), "--model", str(small_build.model),
        "--out", str(tmp_path / "site"), "--cam-layer", "nope"])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "--cam-layer 'nope' is not a feature-map layer" in errors[0]
    assert "block3_conv2" in errors[0] and "Traceback" not in result.output
    assert "Reading test images" not in result.output  # refused before the pass


@pytest.mark.slow
def test_tsne_from_the_cli_gives_byte_identical_sites(small_build, tmp_path):
    from click.testing import CliRunner

    from reportgen.cli import main

    sites = [tmp_path / "first", tmp_path / "second"]
    for site in sites:
        result = CliRunner().invoke(main, [
            "build", "--data", str(small_build.options.data), "--model", str(small_build.model),
            "--out", str(site), "--embedding", "tsne"])
        assert result.exit_code == 0, result.output
    first, second = ({path.relative_to(site).as_posix(): path.read_bytes()
                      for path in site.rglob("*") if path.is_file()} for site in sites)
    assert sorted(first) == sorted(second)
    assert [path for path in sorted(first) if first[path] != second[path]] == []
    report = json.loads(first["report.json"])
    assert report["explanations"]["embedding"]["method"] == "tsne"
    assert report["explanations"]["embedding"]["explained_variance"] is None
    assert all(None not in image["embedding"] for image in report["images"])  # 12: all mapped
    assert "<h1>Embedding map: t-SNE</h1>" in first[layout.EMBEDDING_PAGE].decode()
