"""reportgen compare: two reports on one test set, every number checked against its own
computation here (NumPy counts, scipy's binomial test), refusals as one-line errors, the
compare site crawled in chromium.

Fast tests compare two tiny reports made by hand (tests/tiny_report.py) with made-up
predictions; the slow ones two real models on one test set.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import browser
import checkers
import numpy as np
import pytest
from click.testing import CliRunner
from test_render_explain import explained
from tiny_report import tiny_report

from reportgen import drawing, layout
from reportgen.cli import main
from reportgen.comparison import compare, comparison_json, mcnemar_exact
from reportgen.errors import UserError
from reportgen.metrics import compute_metrics
from reportgen.render import render_site
from reportgen.render_compare import CompareSites, render_compare, shown_files
from reportgen.report import images_from_predictions

CLASSES = ("circles", "squares", "triangles")
PATHS = tuple(sorted(f"{name}/img_{i}.png" for name in CLASSES for i in range(14)))  # 42 images


# -- independent computations -----------------------------------------------------------------------

def binomial_two_sided(b: int, c: int) -> float:
    """McNemar's exact p: scipy's binomial test where scipy is there, else exact fractions."""
    if b + c == 0:
        return 1.0
    try:
        from scipy.stats import binomtest
    except ImportError:
        n = b + c
        tail = Fraction(sum(math.factorial(n) // (math.factorial(k) * math.factorial(n - k))
                            for k in range(min(b, c) + 1)), 2 ** n)
        return float(min(Fraction(1), 2 * tail))
    return float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)


def counted(report_a: dict, report_b: dict) -> dict:
    """The 2x2 table, the confusion matrices and the per-class scores, from the images alone."""
    by_path = {image["path"]: image for image in report_b["images"]}
    paths = [image["path"] for image in report_a["images"]]
    truth = np.array([image["true_label"] for image in report_a["images"]])
    predicted_a = np.array([image["predicted_label"] for image in report_a["images"]])
    predicted_b = np.array([by_path[path]["predicted_label"] for path in paths])
    right_a, right_b = predicted_a == truth, predicted_b == truth
    n_classes = len(report_a["classes"])

    def confusion(predicted):
        matrix = np.zeros((n_classes, n_classes), dtype=int)
        np.add.at(matrix, (truth, predicted), 1)
        return matrix

    def scores(predicted):
        rows = []
        for c in range(n_classes):
            tp = int(((predicted == c) & (truth == c)).sum())
            precision = tp / max(1, int((predicted == c).sum()))
            recall = tp / max(1, int((truth == c).sum()))
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            rows.append((precision, recall, f1))
        return rows

    return {
        "both_right": int((right_a & right_b).sum()), "only_a_right": int((right_a & ~right_b).sum()),
        "only_b_right": int((~right_a & right_b).sum()), "both_wrong": int((~right_a & ~right_b).sum()),
        "fixed": [p for p, a, b in zip(paths, right_a, right_b, strict=True) if b and not a],
        "broken": [p for p, a, b in zip(paths, right_a, right_b, strict=True) if a and not b],
        "confusion_a": confusion(predicted_a), "confusion_b": confusion(predicted_b),
        "scores_a": scores(predicted_a), "scores_b": scores(predicted_b),
    }


def expected_calibration_error(report: dict, bins: int = 10) -> float:
    """Guo et al.'s ECE written out: bin i holds top probabilities in (i/bins, (i+1)/bins]."""
    total, gap = len(report["images"]), 0.0
    members: dict[int, list[tuple[float, bool]]] = {}
    for image in report["images"]:
        top = max(image["probabilities"])
        members.setdefault(max(0, math.ceil(top * bins) - 1), []).append(
            (top, image["predicted_label"] == image["true_label"]))
    for entries in members.values():
        accuracy = sum(right for _, right in entries) / len(entries)
        confidence = sum(top for top, _ in entries) / len(entries)
        gap += len(entries) / total * abs(accuracy - confidence)
    return gap


# -- two tiny reports -------------------------------------------------------------------------------

def predicted(report, seed: int, right_share: float):
    """The report with new predictions: about ``right_share`` of the images right."""
    rng = np.random.default_rng(seed)
    truth = np.array([image.true_label for image in report.images])
    n_classes = len(report.class_names)
    probabilities = rng.dirichlet(np.ones(n_classes), size=len(truth)).astype(np.float32)
    for i, label in enumerate(truth):
        order = np.sort(probabilities[i])[::-1]
        shift = label if rng.random() < right_share else (label + 1 + rng.integers(n_classes - 1))
        probabilities[i] = np.roll(order, int(shift) % n_classes)
    images = images_from_predictions([i.path for i in report.images],
                                     [i.slug for i in report.images], truth, probabilities)
    return dataclasses.replace(report, images=images,
                               metrics=compute_metrics(truth, probabilities.argmax(axis=1), n_classes))


def tiny(seed: int, right_share: float, *, with_cam: bool = True, paths=PATHS, **options):
    report = predicted(tiny_report(paths=list(paths), **options), seed, right_share)
    return explained(report, seed) if with_cam else report


def report_json(report) -> dict:
    return json.loads(dict(render_site(report))["report.json"])


PICTURE = drawing.encode_png(np.kron(np.eye(2, dtype=np.uint8) * 200, np.ones((4, 4), np.uint8)),
                             drawing.colormap_palette("viridis"))


def write_site(report, folder: Path) -> Path:
    """The report's pages, and a real PNG at every picture and overlay report.json names (the
    build's passes write those; the renderer does not)."""
    files = dict(render_site(report))
    files[layout.MARKER] = b"This folder was written by reportgen.\n"
    for image in json.loads(files["report.json"])["images"]:
        for key in ("cam", "cam_true"):
            if key in image:
                files[image[key]["overlay"]] = PICTURE
        files[image["picture"]] = PICTURE
    for path, data in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    return folder


@pytest.fixture(scope="module")
def pair():
    return report_json(tiny(1, 0.55)), report_json(tiny(2, 0.7))


# -- numbers -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("b", "c"), [(0, 0), (1, 0), (0, 5), (3, 3), (4, 9), (12, 30), (1, 60),
                                      (250, 210), (1000, 1130)])
def test_mcnemar_is_the_exact_two_sided_binomial_test(b, c):
    assert mcnemar_exact(b, c) == pytest.approx(binomial_two_sided(b, c), rel=1e-9, abs=1e-300)
    assert mcnemar_exact(b, c) == mcnemar_exact(c, b)


def test_the_counts_and_p_value_are_those_of_the_two_reports_images(pair):
    report_a, report_b = pair
    expected = counted(report_a, report_b)
    data = comparison_json(compare(report_a, report_b))
    assert data["agreement"] == {key: expected[key] for key in
                                 ("both_right", "only_a_right", "only_b_right", "both_wrong")}
    assert expected["only_a_right"] and expected["only_b_right"]  # both galleries have images
    assert sum(data["agreement"].values()) == data["test_images"] == len(PATHS)
    assert data["mcnemar"]["b"] == expected["only_a_right"]
    assert data["mcnemar"]["c"] == expected["only_b_right"]
    assert data["mcnemar"]["p_value"] == pytest.approx(
        binomial_two_sided(expected["only_a_right"], expected["only_b_right"]), rel=1e-9)
    assert [entry["path"] for entry in data["fixed"]] == expected["fixed"]
    assert [entry["path"] for entry in data["broken"]] == expected["broken"]


def test_both_predictions_of_every_fixed_and_broken_image(pair):
    report_a, report_b = pair
    images_a = {image["path"]: image for image in report_a["images"]}
    images_b = {image["path"]: image for image in report_b["images"]}
    data = comparison_json(compare(report_a, report_b))
    for entry in data["fixed"] + data["broken"]:
        for side, images in (("a", images_a), ("b", images_b)):
            probabilities = images[entry["path"]]["probabilities"]
            assert entry[side]["predicted_label"] == int(np.argmax(probabilities))
            assert entry[side]["confidence"] == max(probabilities)
    assert all(e["b"]["predicted_label"] == e["true_label"] != e["a"]["predicted_label"]
               for e in data["fixed"])


def test_per_class_scores_and_confusion_matrices_with_their_differences(pair):
    report_a, report_b = pair
    expected = counted(report_a, report_b)
    data = comparison_json(compare(report_a, report_b))
    assert data["confusion_matrix"]["a"] == expected["confusion_a"].tolist()
    assert data["confusion_matrix"]["b"] == expected["confusion_b"].tolist()
    assert data["confusion_matrix"]["difference"] == (
        expected["confusion_b"] - expected["confusion_a"]).tolist()
    for row, score_a, score_b in zip(data["per_class"], expected["scores_a"], expected["scores_b"],
                                     strict=True):
        for i, name in enumerate(("precision", "recall", "f1")):
            assert row["a"][name] == pytest.approx(score_a[i])
            assert row["b"][name] == pytest.approx(score_b[i])
            assert row["difference"][name] == pytest.approx(score_b[i] - score_a[i])
    assert data["differences"]["accuracy"] == pytest.approx(
        (np.trace(expected["confusion_b"]) - np.trace(expected["confusion_a"])) / len(PATHS))


def test_ece_of_both_from_report_json_or_from_the_probabilities(pair):
    report_a, _ = pair
    without_cam = report_json(tiny(2, 0.7, with_cam=False))
    assert without_cam["metrics"]["calibration"] is None
    data = comparison_json(compare(report_a, without_cam))
    assert data["a"]["ece_source"] == "report.json" and data["b"]["ece_source"] == "computed"
    assert data["a"]["ece"] == pytest.approx(expected_calibration_error(report_a), rel=1e-9)
    assert data["b"]["ece"] == pytest.approx(expected_calibration_error(without_cam), rel=1e-9)
    assert data["a"]["ece"] != pytest.approx(data["b"]["ece"])


def test_the_same_report_twice_agrees_everywhere(pair):
    data = comparison_json(compare(pair[0], pair[0]))
    assert data["agreement"]["only_a_right"] == data["agreement"]["only_b_right"] == 0
    assert data["mcnemar"]["p_value"] == 1.0
    assert data["fixed"] == data["broken"] == []


# -- layers ------------------------------------------------------------------------------------

def _with_dead(report: dict, layer: int, dead: list[int]) -> dict:
    report = json.loads(json.dumps(report))
    stats = report["feature_layers"][layer]["channel_stats"]
    for channel in stats:
        channel["dead"] = channel["index"] in dead
    report["feature_layers"][layer]["dead_channels"] = len(dead)
    return report


def test_dead_channels_and_selectivity_per_layer_where_the_layers_match(pair):
    report_a = _with_dead(pair[0], 0, [0, 2])
    report_b = _with_dead(pair[1], 0, [1, 2])
    layers = comparison_json(compare(report_a, report_b))["layers"]
    assert [layer["path"] for layer in layers] == [la["path"] for la in report_a["feature_layers"]]
    conv = layers[0]
    assert conv["dead_channels"] == {"a": 2, "b": 2}
    assert conv["died"] == [1] and conv["revived"] == [0]
    for layer, la, lb in zip(layers, report_a["feature_layers"], report_b["feature_layers"],
                             strict=True):
        for side, source in (("a", la), ("b", lb)):
            values = [ch["selectivity"] for ch in source["channel_stats"]]
            assert layer["mean_selectivity"][side] == pytest.approx(sum(values) / len(values))


def test_different_architectures_get_a_note_and_no_layer_table(pair):
    wider = report_json(tiny(2, 0.7, conv_channels=5))
    data = comparison_json(compare(pair[0], wider))
    assert data["layers"] is None
    assert "block/conv (3 channels) in A and block/conv (5 channels) in B" in data["layers_note"]


# -- refusals ------------------------------------------------------------------------------------

def test_different_test_sets_are_refused_naming_the_images(pair):
    other_paths = tuple(sorted(set(PATHS) - {"circles/img_0.png", "squares/img_3.png"}
                               | {"triangles/extra.png"}))
    other = report_json(tiny(2, 0.7, paths=other_paths))
    with pytest.raises(UserError) as refused:
        compare(pair[0], other)
    message = str(refused.value)
    assert "\n" not in message
    assert "2 only in A (circles/img_0.png, squares/img_3.png)" in message
    assert "1 only in B (triangles/extra.png)" in message


def test_many_differing_images_are_named_a_few_at_a_time(pair):
    other = report_json(tiny(2, 0.7, paths=[p.replace(".png", ".jpg") for p in PATHS]))
    with pytest.raises(UserError, match=r"42 only in A \([^)]*, [^)]*, [^)]* and 39 more\)"):
        compare(pair[0], other)


def test_the_same_paths_with_other_labels_are_refused(pair):
    relabelled = json.loads(json.dumps(pair[1]))
    relabelled["images"][5]["true_label"] = (relabelled["images"][5]["true_label"] + 1) % 3
    with pytest.raises(UserError, match=f"label 1 image.*{relabelled['images'][5]['path']}"):
        compare(pair[0], relabelled)


def test_other_classes_are_refused(pair):
    renamed = json.loads(json.dumps(pair[1]))
    renamed["classes"][0] = "discs"
    with pytest.raises(UserError, match="different classes"):
        compare(pair[0], renamed)


def test_a_report_without_the_fields_compare_reads_is_refused(pair):
    broken = json.loads(json.dumps(pair[1]))
    del broken["metrics"]["per_class"]
    with pytest.raises(UserError, match=r"does not have what compare reads \(no per_class\)"):
        compare(pair[0], broken)


# -- rendering -----------------------------------------------------------------------------------

def test_every_link_of_the_compare_pages_resolves(pair):
    comparison = compare(*pair)
    files = dict(render_compare(comparison, CompareSites(("x", "y"))))
    files.update({f"{'ab'[side]}/{path}": b"" for side, path in shown_files(comparison)})
    pages = [path for path in files if path.endswith(".html")]
    assert {"index.html", "fixed.html", "broken.html"} <= set(pages)
    for page in pages:
        for url in _links(files[page].decode()):
            target = str(Path(page).parent / url.split("#")[0]).removeprefix("./")
            assert target in files, f"{page}: {url}"
    # A row shows A's picture and both overlays: every file shown is one the caller copies.
    shown = {p for page in pages for p in _links(files[page].decode()) if p.startswith(("a/", "b/"))}
    assert shown == {f"{'ab'[side]}/{path}" for side, path in shown_files(comparison)}
    assert len(shown) == 3 * (len(comparison.fixed) + len(comparison.broken))


def _links(html: str) -> list[str]:
    import re

    return [url for url in re.findall(r'(?:href|src)="([^"]+)"', html) if not url.startswith("#")]


def test_names_are_escaped(pair):
    hostile = [p.replace("img_1.", "<script>alert(1)</script>.") for p in PATHS]
    report_a = report_json(tiny(1, 0.2, paths=sorted(hostile)))
    report_b = report_json(tiny(2, 0.9, paths=sorted(hostile)))
    files = dict(render_compare(compare(report_a, report_b)))
    html = b"".join(data for path, data in files.items() if path.endswith(".html"))
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert b"<script>alert" not in html


def test_rendering_is_deterministic(pair):
    assert dict(render_compare(compare(*pair))) == dict(render_compare(compare(*pair)))


# -- the command line -------------------------------------------------------------------------------

@pytest.fixture
def sites(tmp_path) -> tuple[Path, Path]:
    return (write_site(tiny(1, 0.55), tmp_path / "site-a"),
            write_site(tiny(2, 0.7, with_cam=False), tmp_path / "site-b"))


def invoke(*args: str):
    return CliRunner().invoke(main, ["compare", *map(str, args)])


def test_compare_writes_the_site_copies_the_pictures_and_reruns_byte_identical(sites, tmp_path):
    out = tmp_path / "compare"
    result = invoke(*sites, "--out", out)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    assert data["a"]["site"] == str(sites[0]) and data["b"]["site"] == str(sites[1])
    expected = counted(*(json.loads((site / "report.json").read_text()) for site in sites))
    assert data["agreement"]["only_b_right"] == expected["only_b_right"]
    assert f"{expected['only_b_right']} images fixed by B, {expected['only_a_right']} broken" \
        in result.output
    copied = [path for path in browser.read_tree(out) if path.startswith(("a/", "b/"))]
    assert copied and all((sites["ab".index(p[0])] / p[2:]).read_bytes() == (out / p).read_bytes()
                          for p in copied)
    assert any(p.startswith("b/assets/inputs/") for p in copied)  # B has pictures, no overlays
    assert not any(p.startswith("b/assets/cam/") for p in copied)
    first = browser.read_tree(out)
    assert invoke(*sites, "--out", out).exit_code == 0
    assert browser.read_tree(out) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == [".compare.reportgen-lock", "compare",
                                                          "site-a", "site-b"]


def test_compare_of_sites_never_imports_tensorflow(sites, tmp_path):
    code = ("import sys\nfrom reportgen.cli import main\n"
            f"main(['compare', {str(sites[0])!r}, {str(sites[1])!r}, '--out', "
            f"{str(tmp_path / 'compare')!r}], standalone_mode=False)\n"
            "print('loaded', sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'keras')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "loaded []" in result.stdout
    assert (tmp_path / "compare" / "compare.json").is_file()


def _refused(result, *expected: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for text in expected:
        assert text in lines[0]


def test_refusals_are_one_line_and_leave_the_previous_compare_site(sites, tmp_path):
    out = tmp_path / "compare"
    assert invoke(*sites, "--out", out).exit_code == 0
    before = browser.read_tree(out)
    other = write_site(tiny(2, 0.7, paths=PATHS[1:]), tmp_path / "other")
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    cases = [
        ((sites[0], other, "--out", out), ("test sets differ", "1 only in A", PATHS[0])),
        ((sites[0], tmp_path / "empty", "--out", out), ("has no report.json",)),
        ((sites[0], tmp_path / "missing", "--out", out), ("does not exist",)),
        ((sites[0], tmp_path / "file.txt", "--out", out), ("is a file",)),
        ((sites[0], sites[1], "--out", sites[0] / "compare"), ("overlaps",)),
        ((sites[0], sites[1], "--out", sites[1]), ("overlaps",)),
        ((sites[0],), ("two built sites",)),
        ((sites[0], sites[1], "--data", tmp_path), ("go with --model",)),
        (("--model", tmp_path / "m.keras", "--data", tmp_path), ("--model goes twice",)),
        ((sites[0], "--model", tmp_path / "m.keras"), ("not both",)),
        (("--model", "a.keras", "--model", "b.keras"), ("needs --data",)),
    ]
    for args, expected in cases:
        _refused(invoke(*args), *expected)
    assert browser.read_tree(out) == before
    assert browser.read_tree(sites[0] / "assets") and not (sites[0] / "compare").exists()


def test_a_report_json_naming_a_file_outside_its_site_is_refused(sites, tmp_path):
    """Refused while the new site is being written: the previous one stays as it was."""
    out = tmp_path / "compare"
    assert invoke(*sites, "--out", out).exit_code == 0
    before = browser.read_tree(out)
    report = json.loads((sites[1] / "report.json").read_text())
    fixed_or_broken = comparison_json(compare(json.loads((sites[0] / "report.json").read_text()),
                                              report))["fixed"][0]["path"]
    entry = next(image for image in report["images"] if image["path"] == fixed_or_broken)
    (tmp_path / "secret.png").write_bytes(b"secret")
    entry["picture"] = "../secret.png"
    (sites[1] / "report.json").write_text(json.dumps(report))
    _refused(invoke(*sites, "--out", out), "'../secret.png'", "not a file of the site")
    assert browser.read_tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".compare.reportgen-lock", "compare", "secret.png", "site-a", "site-b"]


def test_compare_has_help_with_defaults():
    result = CliRunner().invoke(main, ["compare", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "compare [OPTIONS] [SITE_A SITE_B]" in text
    assert "--model PATH" in text and "[default: output/compare]" in text


# -- in a browser -----------------------------------------------------------------------------------

@pytest.fixture
def compare_site(sites, tmp_path) -> Path:
    out = tmp_path / "compare"
    assert invoke(*sites, "--out", out).exit_code == 0
    return out


@pytest.mark.browser
def test_the_compare_site_crawls_clean(compare_site, chromium):
    found = browser.crawl(compare_site, chromium)
    assert sorted(found) == ["broken.html", "fixed.html", "index.html"]
    assert browser.problems(found) == []


@pytest.mark.slow
@pytest.mark.browser
def test_the_compare_pages_pass_the_nu_checker_and_axe(compare_site, chromium):
    pages = browser.html_pages(compare_site)
    assert checkers.vnu_messages([compare_site / page for page in pages]
                                 + [compare_site / "static" / "style.css"]) == []
    phone = {"width": 390, "height": 844}
    for scheme, viewport in (("light", None), ("dark", None), ("light", phone)):
        for page in pages:
            url = (compare_site.resolve() / page).as_uri()
            assert checkers.axe_violations(chromium, url, scheme, viewport) == [], (page, scheme)


# -- two real models on one test set ------------------------------------------------------------------

@pytest.fixture(scope="module")
def second_model(small_dataset, tmp_path_factory) -> Path:
    """The article's CNN again, trained longer from another seed than the small site's."""
    from reportgen import model as model_stage
    from reportgen.data import scan_dataset
    from reportgen.options import TrainOptions

    dataset = scan_dataset(small_dataset, require_train=True)
    options = TrainOptions(epochs=3, steps_per_epoch=8, seed=5)
    trained, history = model_stage.train(dataset, options, report=lambda line: None)
    path = tmp_path_factory.mktemp("second") / "second.keras"
    model_stage.save(trained, history, dataset.class_names, options, path)
    return path


def predictions_of(model_path: Path, dataset: Path) -> dict[str, tuple[int, int]]:
    """(true label, predicted label) of every test image, by Keras directly: the article's
    CNN takes [0, 1] pixels of the training images' size and colour mode."""
    from PIL import Image

    from reportgen.keras_import import keras

    model = keras.saving.load_model(model_path, safe_mode=True)
    height, width, channels = (int(d) for d in model.inputs[0].shape[1:])
    classes = sorted(p.name for p in (dataset / "test_set").iterdir() if p.is_dir())
    paths = sorted((dataset / "test_set").rglob("*.png"))
    pixels = np.stack([np.asarray(Image.open(path).convert("L" if channels == 1 else "RGB")
                                  .resize((width, height)), dtype=np.float32)
                       .reshape(height, width, channels) / 255 for path in paths])
    predicted = model.predict(pixels, verbose=0).argmax(axis=1)
    return {path.relative_to(dataset / "test_set").as_posix():
            (classes.index(path.parent.name), int(label))
            for path, label in zip(paths, predicted, strict=True)}


@pytest.mark.slow
@pytest.mark.browser
def test_two_models_on_one_test_set(small_dataset, small_model, second_model, tmp_path, chromium):
    out = tmp_path / "compare"
    args = ["--model", small_model, "--model", second_model, "--data", small_dataset,
            "--out", out, "--jobs", "2"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "compare.json").read_text(encoding="utf-8"))

    # Every count and the p-value from the two models' own predictions, made here.
    a, b = predictions_of(small_model, small_dataset), predictions_of(second_model, small_dataset)
    assert sorted(a) == sorted(b) and len(a) == data["test_images"]
    right_a = {path for path, (truth, label) in a.items() if truth == label}
    right_b = {path for path, (truth, label) in b.items() if truth == label}
    assert data["agreement"] == {"both_right": len(right_a & right_b),
                                 "only_a_right": len(right_a - right_b),
                                 "only_b_right": len(right_b - right_a),
                                 "both_wrong": len(set(a) - right_a - right_b)}
    assert data["mcnemar"]["p_value"] == pytest.approx(
        binomial_two_sided(len(right_a - right_b), len(right_b - right_a)), rel=1e-9)
    assert [e["path"] for e in data["fixed"]] == sorted(right_b - right_a)
    assert [e["path"] for e in data["broken"]] == sorted(right_a - right_b)
    assert data["a"]["accuracy"] == pytest.approx(len(right_a) / len(a))
    assert data["b"]["accuracy"] == pytest.approx(len(right_b) / len(b))
    for side, predictions in (("a", a), ("b", b)):
        matrix = np.zeros((3, 3), dtype=int)
        for truth, label in predictions.values():
            matrix[truth, label] += 1
        assert data["confusion_matrix"][side] == matrix.tolist()

    # Both sites are inside, whole; the same architecture gives the layer table.
    assert data["a"]["site"] == "a/" and data["b"]["site"] == "b/"
    assert [layer["path"] for layer in data["layers"]] == [
        layer["path"] for layer in json.loads((out / "a" / "report.json").read_text())
        ["feature_layers"]]
    for side in ("a", "b"):
        for image in json.loads((out / side / "report.json").read_text())["images"]:
            assert (out / side / image["picture"]).is_file()
            assert (out / side / image["cam"]["overlay"]).is_file()
    assert not list(out.rglob("*.reportgen-lock")) and not list(out.rglob(".reportgen-tmp-*"))

    found = browser.crawl(out, chromium)
    assert {"index.html", "fixed.html", "broken.html", "a/index.html", "b/index.html"} <= set(found)
    assert browser.problems(found) == []
    pages = ["index.html", "fixed.html", "broken.html"]
    assert checkers.vnu_messages([out / page for page in pages]) == []
    for page in pages:
        assert checkers.axe_violations(chromium, (out.resolve() / page).as_uri(), "dark") == []

    first = browser.read_tree(out)
    assert invoke(*args).exit_code == 0
    assert browser.read_tree(out) == first


@pytest.mark.slow
@pytest.mark.browser
def test_a_keras_application_against_the_article_cnn(small_dataset, small_site, keras_application,
                                                     tmp_path, chromium):
    """Sites given: a MobileNetV2 (untrained, 32x32) site against the small site."""
    from reportgen.stages import BuildOptions, build

    model_path = tmp_path / "mobilenet.keras"
    keras_application("MobileNetV2").save(model_path)
    other = tmp_path / "mobilenet-site"
    build(BuildOptions(data=small_dataset, out=other, model_path=model_path,
                       preprocess="mobilenet_v2", jobs=2), echo=lambda line: None)
    out = tmp_path / "compare"
    result = invoke(small_site, other, "--out", out)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    reports = [json.loads((site / "report.json").read_text()) for site in (small_site, other)]
    expected = counted(*reports)
    assert data["agreement"]["only_a_right"] == expected["only_a_right"]
    assert data["agreement"]["only_b_right"] == expected["only_b_right"]
    assert data["mcnemar"]["p_value"] == pytest.approx(
        binomial_two_sided(expected["only_a_right"], expected["only_b_right"]), rel=1e-9)
    assert data["layers"] is None and "architectures differ" in data["layers_note"]
    assert data["a"]["model"]["input_shape"] != data["b"]["model"]["input_shape"]
    assert browser.problems(browser.crawl(out, chromium)) == []
