"""The input contract: what pixels a model was trained on, decided once and shown everywhere.

Images are read as float32 pixels in [0, 255] at the model's size (``reportgen.decode``);
the contract's preprocessing turns them into what the model takes. Families of
networks differ (``keras.applications``: [-1, 1], "caffe" BGR minus ImageNet means,
"torch" mean/std, or 0-255 with the scaling inside the model), and a model fed the
wrong range gives a report that looks right and is entirely wrong. So ``auto`` reads
the answer from the model (or its sidecar) when it can, says plainly when it guesses,
and the collapse check warns when the predictions look like a mis-fed model.

TensorFlow is imported only when a Keras preprocessing function is called, so the
command line can list the choices at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from reportgen.decode import InputSpec
from reportgen.errors import UserError

# Formulas reportgen names itself; "caffe" and "torch" are computed by Keras' imagenet_utils.
RANGE_MODES = ("unit", "raw", "symmetric", "caffe", "torch")
COLOUR_BLIND_MODES = ("unit", "raw", "symmetric")  # the others need three channels
# keras.applications modules with a preprocess_input of their own (resolved to Keras' function).
APPLICATION_MODULES = (
    "convnext", "densenet", "efficientnet", "efficientnet_v2", "inception_resnet_v2",
    "inception_v3", "mobilenet", "mobilenet_v2", "mobilenet_v3", "nasnet", "resnet", "resnet50",
    "resnet_v2", "vgg16", "vgg19", "xception",
)
PREPROCESS_CHOICES = ("auto", *RANGE_MODES, *APPLICATION_MODULES)
RANGE_DESCRIPTIONS = {
    "unit": "pixels / 255, in [0, 1]",
    "raw": "pixels as they are, 0-255",
    "symmetric": "pixels / 127.5 - 1, in [-1, 1]",
    "caffe": "BGR, ImageNet channel means subtracted",
    "torch": "[0, 1], then ImageNet mean and standard deviation",
}
HOW_TO_SET = ("set --preprocess to unit, raw, symmetric, caffe, torch or a keras.applications "
              "module name")

# Layers that scale the input inside the model: it must be fed 0-255 pixels.
SCALING_LAYERS = frozenset({"Rescaling", "Normalization"})
# Layers that leave the value range as it is at inference (augmentation, noise, resizing).
RANGE_KEEPING_LAYERS = frozenset({
    "InputLayer", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
    "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Resizing",
    "CenterCrop", "RandAugment", "AugMix", "CutMix", "MixUp",
})


@dataclass(frozen=True)
class Family:
    """A keras.applications architecture, recognised by its model name or its layer names."""

    module: str  # the keras.applications module whose preprocess_input it was trained with
    title: str
    name_pattern: str
    layer_names: frozenset[str]  # all present: the architecture, even when renamed


# Order matters: ResNet v2 and DenseNet share ResNet v1's stem layer names.
FAMILIES = (
    Family("mobilenet_v2", "MobileNetV2", r"mobilenetv2_", frozenset({"expanded_conv_project",
                                                                     "block_1_expand", "Conv1"})),
    Family("mobilenet_v3", "MobileNetV3", r"mobilenetv3", frozenset()),
    Family("mobilenet", "MobileNet", r"mobilenet_\d", frozenset({"conv_dw_1", "conv_pw_1"})),
    Family("resnet_v2", "ResNet v2", r"resnet\d+v2$", frozenset({"conv1_conv", "post_bn"})),
    Family("densenet", "DenseNet", r"densenet\d+$", frozenset({"conv1_conv",
                                                              "conv2_block1_concat"})),
    Family("resnet", "ResNet", r"resnet\d+$", frozenset({"conv1_conv", "conv2_block1_out"})),
    Family("vgg16", "VGG16", r"vgg16$", frozenset()),
    Family("vgg19", "VGG19", r"vgg19$", frozenset()),
    Family("inception_resnet_v2", "InceptionResNetV2", r"inception_resnet_v2$",
           frozenset({"mixed_5b", "block35_1"})),
    Family("inception_v3", "InceptionV3", r"inception_v3$", frozenset({"mixed0", "mixed10"})),
    Family("xception", "Xception", r"xception$", frozenset({"block1_conv1_act",
                                                            "block14_sepconv2"})),
    Family("nasnet", "NASNet", r"nasnet", frozenset({"stem_conv1", "reduction_conv_1_stem_1"})),
    Family("efficientnet_v2", "EfficientNetV2", r"efficientnetv2-", frozenset()),
    Family("efficientnet", "EfficientNet", r"efficientnetb\d$", frozenset()),
    Family("convnext", "ConvNeXt", r"convnext_", frozenset()),
)


@dataclass(frozen=True)
class InputContract:
    """How a test image becomes the model's input: size, colours, resizing, preprocessing."""

    spec: InputSpec
    preprocess: str  # one of PREPROCESS_CHOICES except "auto"
    reason: str  # why, one sentence
    guessed: bool = False  # True when nothing said what the model was trained on

    def prepare(self, pixels: np.ndarray) -> np.ndarray:
        """(n, h, w, c) pixels in [0, 255] -> the model's input."""
        return preprocess_function(self.preprocess, self.spec.channels)(pixels)

    @property
    def description(self) -> str:
        """One line for the console and the overview."""
        spec = self.spec
        return (f"{spec.height} × {spec.width} {spec.color_mode}, resized by {spec.resize}, "
                f"preprocess {self.preprocess} ({describe(self.preprocess)}): {self.reason}")

    def to_json(self) -> dict:
        spec = self.spec
        return {"height": spec.height, "width": spec.width, "color_mode": spec.color_mode,
                "resize": spec.resize, "preprocess": self.preprocess, "reason": self.reason,
                "guessed": self.guessed}


def describe(preprocess: str) -> str:
    if preprocess in RANGE_DESCRIPTIONS:
        return RANGE_DESCRIPTIONS[preprocess]
    return f"keras.applications.{preprocess}.preprocess_input"


def preprocess_function(name: str, channels: int = 3) -> Callable[[np.ndarray], np.ndarray]:
    """A function from float32 pixels in [0, 255] to the model's input; never changes its argument."""
    if name == "unit":
        return lambda pixels: np.asarray(pixels, np.float32) / np.float32(255)
    if name == "raw":
        return lambda pixels: np.asarray(pixels, np.float32)
    if name == "symmetric":
        return lambda pixels: np.asarray(pixels, np.float32) / np.float32(127.5) - np.float32(1)
    if name not in PREPROCESS_CHOICES or name == "auto":
        raise UserError(f"unknown preprocessing {name!r}; choose one of "
                        f"{', '.join(PREPROCESS_CHOICES[1:])}")
    if channels != 3:  # every other choice treats the three channels differently
        raise UserError(f"--preprocess {name} works on colour images, but the model takes "
                        f"{channels}-channel input; use unit, raw or symmetric")
    keras_function = _keras_preprocess_input(name)
    # Keras' NumPy preprocessing works in place on float arrays: always hand it a copy.
    return lambda pixels: np.asarray(keras_function(np.array(pixels, np.float32, copy=True)),
                                     np.float32)


def _keras_preprocess_input(name: str) -> Callable:
    from reportgen.keras_import import keras

    if name in ("caffe", "torch"):
        imagenet_utils = keras.applications.imagenet_utils
        return lambda x: imagenet_utils.preprocess_input(x, mode=name)
    return getattr(keras.applications, name).preprocess_input


# --- deciding "auto" --------------------------------------------------------------------


def input_spec(model) -> InputSpec:
    """What the model takes, always read from the model itself."""
    from reportgen.activations import image_classifier

    image, _ = image_classifier(model)
    shape = tuple(image.shape)
    if shape[3] not in (1, 3):
        raise UserError(f"the model's input shape {shape} is not (batch, height, width, 1 or 3)")
    return InputSpec(height=int(shape[1]), width=int(shape[2]), channels=int(shape[3]))


def decide(model, sidecar: dict | None, requested: str = "auto", *,
           resize: str = "stretch") -> InputContract:
    """The contract for ``model``: --preprocess when given, else what the model says, else a guess."""
    base = input_spec(model)
    spec = InputSpec(base.height, base.width, base.channels, resize)
    if requested != "auto":
        preprocess_function(requested, spec.channels)  # refuse a bad choice before any work
        return InputContract(spec, requested, "set with --preprocess")
    preprocess, reason, guessed = _auto(model, sidecar)
    if preprocess not in COLOUR_BLIND_MODES and spec.channels != 3:
        # An ImageNet-style preprocessing cannot apply to a grayscale network.
        preprocess, reason, guessed = "unit", _guess_reason(), True
    return InputContract(spec, preprocess, reason, guessed)


def _guess_reason() -> str:
    return ("a guess: neither the model nor a reportgen sidecar says what it was trained on; "
            f"if it was trained on another range, {HOW_TO_SET}")


def _auto(model, sidecar: dict | None) -> tuple[str, str, bool]:
    if sidecar is not None:
        preprocess = sidecar.get("preprocess", "unit")
        if preprocess in PREPROCESS_CHOICES and preprocess != "auto":
            # Sidecars written before "preprocess" was recorded come from training on [0, 1].
            return preprocess, f"the model's reportgen sidecar says training used {preprocess}", False
    leading = _leading_operation(model)
    if leading is not None and leading[0] == "scaling":
        return "raw", (f"the model scales its own input: its graph starts with {leading[1]}, "
                       "so it takes 0-255 pixels"), False
    family = application_family(model)
    if family is not None:
        return _family_preprocess(family, "the model is")
    if leading is not None and leading[0] == "family":
        return _family_preprocess(leading[1], "the model is built on")
    return "unit", _guess_reason(), True


def _family_preprocess(family: Family, where: str) -> tuple[str, str, bool]:
    if family.module == "mobilenet_v3":
        # Keras' mobilenet_v3.preprocess_input passes pixels through because the model
        # normally rescales them itself; without that Rescaling it takes [-1, 1].
        return "symmetric", (f"{where} keras.applications' {family.title} without its "
                             "Rescaling layer (include_preprocessing=False), which takes [-1, 1]"), False
    return family.module, (f"{where} keras.applications' {family.title}, trained with "
                           f"{family.module}.preprocess_input"), False


def application_family(model) -> Family | None:
    """The keras.applications architecture ``model`` is, by its name or else its layer names."""
    name = model.name.lower()
    for family in FAMILIES:
        if re.match(family.name_pattern, name):
            return family
    try:
        layer_names = {layer.name for layer in model.layers}
    except AttributeError:
        return None
    for family in FAMILIES:
        if family.layer_names and family.layer_names <= layer_names:
            return family
    return None


def _leading_operation(model) -> tuple[str, object] | None:
    """What first changes the input's values: ("scaling", layer type), ("family", Family),
    ("plain", operation type) or None when nothing does.

    Walks from the input past layers that keep the value range at inference
    (augmentation, dropout, noise, resizing), into nested models.
    """
    from reportgen.activations import is_graph_model
    from reportgen.keras_import import keras

    operations = model.layers if isinstance(model, keras.Sequential) else model.operations
    for operation in operations:
        type_name = type(operation).__name__
        if is_graph_model(operation):
            inner = _leading_operation(operation)
            if inner is not None and inner[0] == "scaling":
                return inner
            family = application_family(operation)
            if family is not None:
                return "family", family
            if inner is not None:
                return inner
            continue
        if type_name in SCALING_LAYERS:
            return "scaling", type_name
        if type_name in RANGE_KEEPING_LAYERS or type_name.startswith("Random"):
            continue
        if not isinstance(operation, keras.Layer):
            # Arithmetic on the input in the graph itself, e.g. preprocess_input(inputs).
            return "scaling", f"{type_name} (keras.ops arithmetic)"
        return "plain", type_name
    return None


# --- the collapse check -----------------------------------------------------------------

COLLAPSE_SHARE = 0.9  # one class takes at least this share of the predictions ...
BALANCED_SHARE = 0.5  # ... while no class is this large a share of the test set
UNIFORM_MARGIN = 0.05  # mean top probability this close to 1 / classes: no signal at all
HISTORY_GAP = 0.25  # best validation accuracy this far above the test accuracy


def collapse_warnings(true_labels: np.ndarray, probabilities: np.ndarray,
                      class_names: Sequence[str], contract: InputContract,
                      best_val_accuracy: float | None = None) -> list[str]:
    """Warnings when the predictions look like those of a model fed the wrong input."""
    n_images, n_classes = probabilities.shape
    if n_images == 0 or n_classes < 2:
        return []
    predicted = probabilities.argmax(axis=1)
    accuracy = float(np.mean(predicted == true_labels))
    findings = []
    predicted_share = np.bincount(predicted, minlength=n_classes) / n_images
    largest_true_share = float(np.bincount(true_labels, minlength=n_classes).max() / n_images)
    top = int(predicted_share.argmax())
    if predicted_share[top] >= COLLAPSE_SHARE and largest_true_share < BALANCED_SHARE:
        findings.append(f"{predicted_share[top]:.0%} of the test images are predicted as "
                        f"{class_names[top]!r}, though no class is more than "
                        f"{largest_true_share:.0%} of the test set")
    mean_top = float(probabilities.max(axis=1).mean())
    if abs(mean_top - 1 / n_classes) <= UNIFORM_MARGIN:
        findings.append(f"the mean top probability is {mean_top:.3f}, next to the "
                        f"{1 / n_classes:.3f} of a uniform guess over {n_classes} classes")
    if best_val_accuracy is not None and best_val_accuracy - accuracy >= HISTORY_GAP:
        findings.append(f"the training history reached validation accuracy "
                        f"{best_val_accuracy:.1%}, but the test accuracy is {accuracy:.1%}")
    if not findings:
        return []
    return [f"predictions look like a model fed the wrong input (or one that never learned): "
            f"{'; '.join(findings)}. "
            f"Input used: preprocess {contract.preprocess} ({describe(contract.preprocess)}), "
            f"{'a guess' if contract.guessed else contract.reason}. If the model was trained "
            f"on other pixels, {HOW_TO_SET}."]


__all__ = ["InputContract", "PREPROCESS_CHOICES", "collapse_warnings", "decide",
           "preprocess_function"]
