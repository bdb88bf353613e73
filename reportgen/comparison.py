"""Two reports on one test set, compared image by image: pure computation, no disk, no model.

The input is two ``report.json`` documents (as dicts); the output a ``Comparison`` that holds
exactly what the compare site and ``compare.json`` show. Side A is the baseline, B the
candidate: "fixed" images are the ones only B classifies correctly, "broken" the ones only
A does, and every difference is B minus A.

Test sets are matched by image identity: the path relative to the test set and its true
class. Two reports whose test sets differ are refused, naming the images that differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from reportgen.errors import UserError
from reportgen.explain import calibration

NAMED_DIFFERENCES = 3  # images named in the refusal when the test sets differ


@dataclass(frozen=True)
class ClassScores:
    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Side:
    """One report's headline: what the site shows for A or for B."""

    label: str  # "A" or "B"
    model_name: str
    source: str  # "trained by reportgen", or the model file's name
    total_params: int
    input_shape: tuple[int, ...]
    accuracy: float
    macro_f1: float
    ece: float
    ece_from_report: bool  # False: computed here from the probabilities (a --no-explain build)
    per_class: tuple[ClassScores, ...]
    confusion: np.ndarray  # (classes, classes) int64, rows true, columns predicted
    has_cam: bool  # whether its images carry Grad-CAM overlays

    @property
    def title(self) -> str:
        return f"{self.label}: {self.model_name} ({self.source})"


@dataclass(frozen=True)
class Prediction:
    """One side's verdict on one image, and the files of that side's site that show it."""

    predicted_label: int
    confidence: float  # the probability of the predicted class
    page: str | None  # the image's page in that side's site
    picture: str | None  # what that model saw (None: a report.json from before pictures were named)
    overlay: str | None  # Grad-CAM for the predicted class (None without explanations)


@dataclass(frozen=True)
class ImagePair:
    index: int  # position in A's test set
    path: str
    true_label: int
    a: Prediction
    b: Prediction


@dataclass(frozen=True)
class Agreement:
    """The 2x2 table of right and wrong, and McNemar's exact test on its discordant cells."""

    both_right: int
    only_a_right: int  # McNemar's b: broken by B
    only_b_right: int  # McNemar's c: fixed by B
    both_wrong: int
    p_value: float

    @property
    def discordant(self) -> int:
        return self.only_a_right + self.only_b_right


@dataclass(frozen=True)
class LayerChange:
    """A shown layer that both models have, with the same channel count."""

    path: str
    type_name: str
    channels: int
    dead_a: int
    dead_b: int
    died: tuple[int, ...]  # channels alive in A and dead in B
    revived: tuple[int, ...]  # channels dead in A and alive in B
    selectivity_a: float  # mean over the layer's channels
    selectivity_b: float
    page_a: str  # the layer's page in each side's site
    page_b: str


@dataclass(frozen=True)
class Comparison:
    a: Side
    b: Side
    class_names: tuple[str, ...]
    images: tuple[ImagePair, ...]  # in A's test-set order
    agreement: Agreement
    layers: tuple[LayerChange, ...] | None  # None where the architectures differ
    layers_note: str  # why there is no layer comparison, or what it compares

    @property
    def fixed(self) -> tuple[ImagePair, ...]:
        """Right by B, wrong by A."""
        return tuple(p for p in self.images
                     if p.b.predicted_label == p.true_label != p.a.predicted_label)

    @property
    def broken(self) -> tuple[ImagePair, ...]:
        """Right by A, wrong by B."""
        return tuple(p for p in self.images
                     if p.a.predicted_label == p.true_label != p.b.predicted_label)


def mcnemar_exact(only_a_right: int, only_b_right: int) -> float:
    """McNemar's exact test: the two-sided binomial test of the discordant pairs at 1/2.

    p = min(1, 2 * sum_{k <= min(b, c)} C(b + c, k) / 2^(b + c)); 1 when there are none.
    Exact integers up to the one division, which Python rounds correctly for any size.
    """
    n = only_a_right + only_b_right
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a_right, only_b_right) + 1))
    return min(1.0, 2 * tail / 2 ** n)


# -- reading a report.json ----------------------------------------------------------------------

def _field(report: dict, *keys):
    value = report
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            raise KeyError(".".join(keys))
        value = value[key]
    return value


def _side(label: str, report: dict) -> Side:
    metrics = _field(report, "metrics")
    images = _field(report, "images")
    stored = metrics.get("calibration")
    if stored is not None:
        ece, from_report = float(stored["ece"]), True
    else:  # a --no-explain build: the same function the build uses, on its probabilities
        probabilities = np.array([i["probabilities"] for i in images], dtype=np.float64)
        true_labels = np.array([i["true_label"] for i in images], dtype=np.int64)
        ece, from_report = calibration(probabilities.reshape(len(images), -1), true_labels).ece, False
    model = _field(report, "model")
    return Side(
        label=label, model_name=str(model["name"]), source=str(model["source"]),
        total_params=int(model["total_params"]),
        input_shape=tuple(int(d) for d in model["input_shape"]),
        accuracy=float(metrics["accuracy"]), macro_f1=float(metrics["macro_f1"]),
        ece=ece, ece_from_report=from_report,
        per_class=tuple(ClassScores(str(c["class"]), float(c["precision"]), float(c["recall"]),
                                    float(c["f1"]), int(c["support"]))
                        for c in metrics["per_class"]),
        confusion=np.array(metrics["confusion_matrix"], dtype=np.int64),
        has_cam=any("cam" in i for i in images),
    )


def _prediction(image: dict) -> Prediction:
    predicted = int(image["predicted_label"])
    cam = image.get("cam")
    return Prediction(predicted_label=predicted,
                      confidence=float(image["probabilities"][predicted]),
                      page=image.get("page"), picture=image.get("picture"),
                      overlay=cam.get("overlay") if isinstance(cam, dict) else None)


def _few(paths: list[str]) -> str:
    named = ", ".join(paths[:NAMED_DIFFERENCES])
    return named + (f" and {len(paths) - NAMED_DIFFERENCES} more"
                    if len(paths) > NAMED_DIFFERENCES else "")


def match_images(report_a: dict, report_b: dict) -> list[tuple[dict, dict]]:
    """A's images with B's same image beside each, in A's order; a UserError if the test sets
    (paths, or the true class of a path) differ, naming a few of the images that do."""
    classes_a, classes_b = list(report_a["classes"]), list(report_b["classes"])
    if classes_a != classes_b:
        raise UserError(f"the two reports have different classes ({', '.join(classes_a)} against "
                        f"{', '.join(classes_b)}): compare needs one test set")
    by_path_b = {image["path"]: image for image in report_b["images"]}
    paths_a = [image["path"] for image in report_a["images"]]
    only_a = sorted(set(paths_a) - set(by_path_b))
    only_b = sorted(set(by_path_b) - set(paths_a))
    if only_a or only_b:
        parts = [f"{len(found)} only in {side} ({_few(found)})"
                 for side, found in (("A", only_a), ("B", only_b)) if found]
        raise UserError(f"the two reports' test sets differ: {'; '.join(parts)}; "
                        "compare needs both models run on one test set")
    relabelled = [image["path"] for image in report_a["images"]
                  if by_path_b[image["path"]]["true_label"] != image["true_label"]]
    if relabelled:
        raise UserError(f"the two reports' test sets label {len(relabelled)} image(s) "
                        f"differently ({_few(relabelled)}): compare needs one test set")
    return [(image, by_path_b[image["path"]]) for image in report_a["images"]]


# -- layers ---------------------------------------------------------------------------------------

def _mean_selectivity(layer: dict) -> float:
    values = [ch["selectivity"] for ch in layer["channel_stats"] if ch["selectivity"] is not None]
    return math.fsum(values) / len(values) if values else 0.0


def _layers(report_a: dict, report_b: dict) -> tuple[tuple[LayerChange, ...] | None, str]:
    layers_a, layers_b = report_a["feature_layers"], report_b["feature_layers"]
    shape_a = [(layer["path"], layer["channels"]) for layer in layers_a]
    shape_b = [(layer["path"], layer["channels"]) for layer in layers_b]
    if shape_a != shape_b:
        first = next((i for i, (x, y) in enumerate(zip(shape_a, shape_b, strict=False)) if x != y),
                     min(len(shape_a), len(shape_b)))
        where = (f"layer {first + 1} is {_layer_words(shape_a, first)} in A and "
                 f"{_layer_words(shape_b, first)} in B")
        return None, (f"The architectures differ ({where}), so their channels cannot be "
                      "compared one to one.")
    changes = []
    for layer_a, layer_b in zip(layers_a, layers_b, strict=True):
        dead_a = [bool(ch["dead"]) for ch in layer_a["channel_stats"]]
        dead_b = [bool(ch["dead"]) for ch in layer_b["channel_stats"]]
        changes.append(LayerChange(
            path=layer_a["path"], type_name=layer_a["type"], channels=int(layer_a["channels"]),
            dead_a=int(layer_a["dead_channels"]), dead_b=int(layer_b["dead_channels"]),
            died=tuple(c for c, (x, y) in enumerate(zip(dead_a, dead_b, strict=True)) if y and not x),
            revived=tuple(c for c, (x, y) in enumerate(zip(dead_a, dead_b, strict=True))
                          if x and not y),
            selectivity_a=_mean_selectivity(layer_a), selectivity_b=_mean_selectivity(layer_b),
            page_a=layer_a["page"], page_b=layer_b["page"]))
    return tuple(changes), (f"Both models show the same {len(changes)} layers with the same "
                            "channel counts: channel c of a layer in A is compared with channel c "
                            "of the same layer in B.")


def _layer_words(shape: list[tuple[str, int]], index: int) -> str:
    if index >= len(shape):
        return "missing"
    path, channels = shape[index]
    return f"{path} ({channels} channels)"


# -- the comparison -------------------------------------------------------------------------------

def compare(report_a: dict, report_b: dict) -> Comparison:
    """Compare two report.json documents; a UserError if they are not on one test set, or if
    either lacks what a comparison reads."""
    try:
        return _compare(report_a, report_b)
    except (KeyError, TypeError, IndexError, ValueError) as error:
        detail = f"no {error.args[0]}" if isinstance(error, KeyError) else str(error)
        raise UserError(f"a report.json does not have what compare reads ({detail}); "
                        "build both sites with this version of reportgen") from None


def _compare(report_a: dict, report_b: dict) -> Comparison:
    pairs = match_images(report_a, report_b)
    images = tuple(ImagePair(index=i, path=str(a["path"]), true_label=int(a["true_label"]),
                             a=_prediction(a), b=_prediction(b))
                   for i, (a, b) in enumerate(pairs))
    right_a = np.array([p.a.predicted_label == p.true_label for p in images], dtype=bool)
    right_b = np.array([p.b.predicted_label == p.true_label for p in images], dtype=bool)
    only_a, only_b = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    agreement = Agreement(both_right=int((right_a & right_b).sum()), only_a_right=only_a,
                          only_b_right=only_b, both_wrong=int((~right_a & ~right_b).sum()),
                          p_value=mcnemar_exact(only_a, only_b))
    layers, layers_note = _layers(report_a, report_b)
    return Comparison(a=_side("A", report_a), b=_side("B", report_b),
                      class_names=tuple(report_a["classes"]), images=images,
                      agreement=agreement, layers=layers, layers_note=layers_note)


# -- compare.json -------------------------------------------------------------------------------

def _side_json(side: Side, site: str | None) -> dict:
    return {
        "label": side.label, "site": site,
        "model": {"name": side.model_name, "source": side.source,
                  "input_shape": list(side.input_shape), "total_params": side.total_params},
        "accuracy": side.accuracy, "macro_f1": side.macro_f1,
        "ece": side.ece, "ece_source": "report.json" if side.ece_from_report else "computed",
    }


def _pair_json(pair: ImagePair) -> dict:
    def verdict(prediction: Prediction) -> dict:
        return {"predicted_label": prediction.predicted_label,
                "confidence": prediction.confidence}
    return {"path": pair.path, "true_label": pair.true_label, "a": verdict(pair.a),
            "b": verdict(pair.b)}


def comparison_json(comparison: Comparison, sites: tuple[str | None, str | None] = (None, None)
                    ) -> dict:
    """compare.json (docs/compare.md): ``sites`` are the two sites' folders as given, or their
    place inside the compare site ("a/", "b/") when it built them."""
    a, b, agreement = comparison.a, comparison.b, comparison.agreement
    return {
        "schema_version": 1,
        "a": _side_json(a, sites[0]),
        "b": _side_json(b, sites[1]),
        "classes": list(comparison.class_names),
        "test_images": len(comparison.images),
        "differences": {"accuracy": b.accuracy - a.accuracy, "macro_f1": b.macro_f1 - a.macro_f1,
                        "ece": b.ece - a.ece},
        "agreement": {"both_right": agreement.both_right, "only_a_right": agreement.only_a_right,
                      "only_b_right": agreement.only_b_right, "both_wrong": agreement.both_wrong},
        "mcnemar": {"b": agreement.only_a_right, "c": agreement.only_b_right,
                    "p_value": agreement.p_value,
                    "test": "exact: two-sided binomial test of b against b + c at 1/2"},
        "per_class": [{
            "class": sa.name, "support": sa.support,
            "a": {"precision": sa.precision, "recall": sa.recall, "f1": sa.f1},
            "b": {"precision": sb.precision, "recall": sb.recall, "f1": sb.f1},
            "difference": {"precision": sb.precision - sa.precision,
                           "recall": sb.recall - sa.recall, "f1": sb.f1 - sa.f1},
        } for sa, sb in zip(a.per_class, b.per_class, strict=True)],
        "confusion_matrix": {"a": a.confusion.tolist(), "b": b.confusion.tolist(),
                             "difference": (b.confusion - a.confusion).tolist()},
        "fixed": [_pair_json(pair) for pair in comparison.fixed],
        "broken": [_pair_json(pair) for pair in comparison.broken],
        "layers": None if comparison.layers is None else [{
            "path": layer.path, "type": layer.type_name, "channels": layer.channels,
            "dead_channels": {"a": layer.dead_a, "b": layer.dead_b},
            "died": list(layer.died), "revived": list(layer.revived),
            "mean_selectivity": {"a": layer.selectivity_a, "b": layer.selectivity_b},
        } for layer in comparison.layers],
        "layers_note": comparison.layers_note,
    }
