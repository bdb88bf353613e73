"""Plans made before any drawing: which layers, channels and images a site shows, and in
what batches the forward pass runs. Pure functions of shapes, statistics and predictions,
so each is tested with exact expectations and no model.

Why plans: a 150-layer network at 224x224 drawn in full is a 200,000-pixel-tall image
page and a site of gigabytes. The references (OpenAI Microscope, Lucid) show about a
dozen block outputs and a handful of channels at a time; these plans do the same.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from reportgen.errors import UserError

# -- layers -----------------------------------------------------------------------------------

SMALL_MODEL_LAYERS = 24  # up to this many feature-map layers, every one is shown
MAX_BLOCK_OUTPUTS = 24  # beyond this many block outputs, one per stage is kept
ALL_LAYERS = "all"  # --layers all
PATHS_SHOWN_IN_ERRORS = 8

# The identity at inference: their maps repeat their input's.
IDENTITY_TYPES = frozenset({"Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
                            "GaussianNoise", "GaussianDropout", "AlphaDropout",
                            "ActivityRegularization"})
# Applied to a block's output in place: shown as that block's output, not as layers of their own.
FOLDED_TYPES = frozenset({"BatchNormalization", "LayerNormalization", "GroupNormalization",
                          "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax"})
MERGE_TYPES = frozenset({"Add", "Concatenate"})
CONV_TYPES = frozenset({"Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose"})


class GraphLayer(Protocol):
    """What the plan reads of a feature-map layer (activations.FeatureLayer is one)."""

    path: str
    type_name: str
    output_shape: tuple[int, int, int]
    inputs: tuple[str, ...]


@dataclass(frozen=True)
class LayerPlan:
    shown: tuple[str, ...]  # paths, in model order
    rule: str  # one sentence: how they were chosen and how to show the rest


def is_identity(type_name: str) -> bool:
    return type_name in IDENTITY_TYPES or type_name.startswith("Random")


def is_pooling(type_name: str) -> bool:
    return type_name.endswith(("Pooling2D", "Pool2D")) and not type_name.startswith("Global")


def select_by_patterns(paths: Sequence[str], patterns: Sequence[str]) -> list[str]:
    """The paths matching any glob, in their order; a pattern that matches nothing is an error."""
    for pattern in patterns:
        if not fnmatch.filter(paths, pattern):
            shown = ", ".join(paths[:PATHS_SHOWN_IN_ERRORS])
            more = f", ... ({len(paths)} in all)" if len(paths) > PATHS_SHOWN_IN_ERRORS else ""
            raise UserError(f"layer pattern {pattern!r} matches no feature-map layer; "
                            f"the layers are: {shown or '(none)'}{more}")
    return [path for path in paths if any(fnmatch.fnmatchcase(path, p) for p in patterns)]


def plan_layers(layers: Sequence[GraphLayer], patterns: Sequence[str] = ()) -> LayerPlan:
    """Which feature-map layers to show: ``--layers`` globs or ``all`` if given, else by size.

    Small models (at most SMALL_MODEL_LAYERS layers that are not the identity at inference)
    show all of those. Larger ones show the first convolution, every block output (residual
    Add and Concatenate merges, pooling) and the last feature-map layer, each followed
    through the batch-norm and activation layers applied to it alone; if that is still more
    than MAX_BLOCK_OUTPUTS, a run of merges at one resolution keeps only its last.
    """
    paths = [layer.path for layer in layers]
    total = len(layers)
    if list(patterns) == [ALL_LAYERS]:
        return LayerPlan(tuple(paths), f"All {total} feature-map layers are shown (--layers all).")
    if patterns:
        shown = select_by_patterns(paths, patterns)
        return LayerPlan(tuple(shown), f"{len(shown)} of {total} feature-map layers are shown, "
                                       f"those matching --layers {' '.join(patterns)}.")
    candidates = [layer for layer in layers if not is_identity(layer.type_name)]
    hidden_identity = total - len(candidates)
    if len(candidates) <= SMALL_MODEL_LAYERS:
        skipped = (f" ({hidden_identity} left out: the identity at inference, such as Dropout)"
                   if hidden_identity else "")
        return LayerPlan(tuple(layer.path for layer in candidates),
                         f"{len(candidates)} of {total} feature-map layers are shown{skipped}; "
                         "--layers all shows every one.")
    shown = _block_outputs(candidates)
    return LayerPlan(shown, f"{len(shown)} of {total} feature-map layers are shown: the first "
                            "convolution, the block outputs (residual merges and pooling) and "
                            "the last feature-map layer, with batch-norm and activation layers "
                            "folded into their block. --layers all shows every one; --layers "
                            "with a glob such as 'block_1*' picks layers by name.")


def _block_outputs(layers: list[GraphLayer]) -> tuple[str, ...]:
    by_path = {layer.path: layer for layer in layers}
    consumers: dict[str, list[str]] = {layer.path: [] for layer in layers}
    for layer in layers:
        for source in layer.inputs:
            if source in consumers:
                consumers[source].append(layer.path)

    def folded(path: str) -> str:
        """Follow a layer through what is applied to it alone (batch-norm, activation)."""
        while len(consumers[path]) == 1:
            (after,) = consumers[path]
            if by_path[after].type_name not in FOLDED_TYPES or len(by_path[after].inputs) != 1:
                break
            path = after
        return path

    first_conv = next((layer.path for layer in layers if layer.type_name in CONV_TYPES),
                      layers[0].path)
    anchors = [(first_conv, "first")]
    anchors += [(layer.path, "merge" if layer.type_name in MERGE_TYPES else "pool")
                for layer in layers
                if layer.type_name in MERGE_TYPES or is_pooling(layer.type_name)]
    anchors.append((layers[-1].path, "last"))
    order = {layer.path: position for position, layer in enumerate(layers)}
    kinds: dict[str, str] = {}
    for path, kind in anchors:
        kinds.setdefault(folded(path), kind)
    chosen = sorted(kinds, key=order.__getitem__)
    if len(chosen) > MAX_BLOCK_OUTPUTS:
        chosen = _last_merge_per_stage(chosen, kinds, by_path)
    return tuple(chosen)


def _last_merge_per_stage(chosen: list[str], kinds: dict[str, str],
                          by_path: dict[str, GraphLayer]) -> list[str]:
    """Of each run of consecutive merges at one spatial size, only the last (a stage's output)."""
    kept = []
    for position, path in enumerate(chosen):
        following = chosen[position + 1] if position + 1 < len(chosen) else None
        same_stage = (following is not None and kinds[path] == "merge" == kinds[following]
                      and by_path[path].output_shape[:2] == by_path[following].output_shape[:2])
        if not same_stage:
            kept.append(path)
    return kept


# -- classes ----------------------------------------------------------------------------------

# Beyond this many classes a table per class pair is unreadable: the confusion matrix becomes a
# picture with a table of the most confused pairs, per-class lists shrink to the top few, and
# Grad-CAM's mean maps are drawn per class instead of per confusion cell (classes² pictures).
MATRIX_TABLE_MAX_CLASSES = 30


def class_pairs_shown(n_classes: int) -> bool:
    """Whether the site shows each pair of classes on its own: the confusion matrix as a table,
    a mean Grad-CAM map per cell, a heatmap row per class on the channel pages."""
    return n_classes <= MATRIX_TABLE_MAX_CLASSES


# -- channels ---------------------------------------------------------------------------------

DEFAULT_MAX_CHANNELS = 64  # four rows of the 16-column grid: see docs/big-models.md
CHANNEL_RANKING = "variability over the test images (standard deviation of the spatial mean)"


def plan_channels(channel_std: Sequence[float], max_channels: int) -> tuple[int, ...]:
    """The ``max_channels`` most variable channels, in index order (all when there are fewer).

    A channel that is the same on every image says nothing about any one image; the most
    variable ones differ most between images, dead channels (std 0) come last. Ties go to
    the lower index.
    """
    ranked = sorted(range(len(channel_std)), key=lambda c: (-channel_std[c], c))
    return tuple(sorted(ranked[:max_channels]))


# -- memory -----------------------------------------------------------------------------------

DEFAULT_MEMORY_BUDGET_MB = 2000
MAX_BATCH = 64
FLOAT_BYTES = 4
# Copies of one batch's selected maps alive at once: TensorFlow's output, the statistics'
# temporaries, and a batch being drawn while the next is computed (benchmarks/results.md).
MAP_COPIES = 4
# TensorFlow's working set per image of a batch, in units of the model's biggest layer:
# MobileNetV2 at 224x224 measured about 25-30 MB per image of batch, 6 times its biggest
# layer (4.8 MB), of which the selected maps' copies above are about 10 (benchmarks/results.md).
WORKING_COPIES = 4
# The top-k maps of every channel: the two running shards' own, the build's pool of them
# (stats.TopPool) and the pool's successor while a shard's are merged in. ResNet50 at
# 224x224 over 102 photos peaked at 2.2 GB with this count, 2.7 GB with 2 (batch 8, 12).
TOP_K_COPIES = 4


@dataclass(frozen=True)
class MemoryPlan:
    batch_size: int
    bytes_per_image: int  # what one more image in a batch costs
    fixed_bytes: int  # what does not depend on the batch: the atlas' top-k maps
    over_budget: bool  # even a batch of one does not fit


def map_bytes(shape: tuple[int, int, int]) -> int:
    return math.prod(shape) * FLOAT_BYTES


def plan_memory(selected_shapes: Sequence[tuple[int, int, int]],
                all_shapes: Sequence[tuple[int, int, int]], input_shape: tuple[int, int, int],
                top_k: int, budget_bytes: int) -> MemoryPlan:
    """The largest batch (up to MAX_BATCH) whose maps fit ``budget_bytes`` beside TensorFlow.

    Memory then depends on the selected layers' shapes only, never on the number of images.
    """
    selected = sum(map_bytes(shape) for shape in selected_shapes)
    biggest = max((map_bytes(shape) for shape in all_shapes), default=0)
    per_image = MAP_COPIES * selected + WORKING_COPIES * biggest + map_bytes(input_shape)
    fixed = TOP_K_COPIES * top_k * selected
    room = budget_bytes - fixed
    batch = max(1, min(MAX_BATCH, room // per_image)) if per_image else MAX_BATCH
    return MemoryPlan(batch_size=int(batch), bytes_per_image=per_image, fixed_bytes=fixed,
                      over_budget=room < per_image)


# -- site size --------------------------------------------------------------------------------

DEFAULT_MAX_SITE_MB = 1000  # GitHub Pages' limit
# Bytes of a palette PNG per grid pixel at zlib level 1, and of page HTML per drawn grid:
# upper ends of what `nox -s bench` measures, so a plan errs towards a smaller site.
PNG_BYTES_PER_PIXEL = 0.6
PNG_FILE_BYTES = 850  # signature, header, the 768-byte palette, chunk framing
HTML_BYTES_PER_GRID = 900


@dataclass(frozen=True)
class SitePlan:
    drawn: tuple[int, ...]  # indices of the images that get feature maps, ascending
    bytes_per_image: int  # estimated bytes of one drawn image's grids and their HTML
    left_out: int  # images without feature maps because of the budget or --max-gallery-images


def gallery_priority(true_labels: Sequence[int], predicted_labels: Sequence[int],
                     confidences: Sequence[float]) -> list[int]:
    """Image indices, most worth drawing first: mistakes (most confident first), then the
    correct ones taken a class at a time in turn, so any prefix samples every class evenly."""
    mistakes = sorted((i for i, (t, p) in enumerate(zip(true_labels, predicted_labels,
                                                        strict=True)) if t != p),
                      key=lambda i: (-confidences[i], i))
    per_class: dict[int, list[int]] = {}
    for i, (t, p) in enumerate(zip(true_labels, predicted_labels, strict=True)):
        if t == p:
            per_class.setdefault(t, []).append(i)
    queues = [per_class[label] for label in sorted(per_class)]
    correct = [queue[round_] for round_ in range(max(map(len, queues), default=0))
               for queue in queues if round_ < len(queue)]
    return mistakes + correct


def grid_bytes(grid_pixels: int) -> int:
    """Estimated bytes of one drawn grid: its PNG and its share of the pages showing it."""
    return math.ceil(grid_pixels * PNG_BYTES_PER_PIXEL) + PNG_FILE_BYTES + HTML_BYTES_PER_GRID


def plan_site(priority: Sequence[int], grid_pixels: Sequence[int], fixed_bytes: int,
              budget_bytes: int, max_images: int | None = None) -> SitePlan:
    """Which images get feature-map grids so the site stays within ``budget_bytes``.

    ``grid_pixels`` holds, per shown layer, the pixels of one image's grid; ``fixed_bytes``
    what the site needs anyway (pages, inputs, atlas, report.json). Images are taken in
    ``priority`` order; statistics and predictions always cover every image.
    """
    per_image = sum(grid_bytes(pixels) for pixels in grid_pixels)
    room = max(0, budget_bytes - fixed_bytes)
    fit = room // per_image if per_image else len(priority)
    count = min(len(priority), fit, len(priority) if max_images is None else max_images)
    return SitePlan(drawn=tuple(sorted(priority[:count])), bytes_per_image=per_image,
                    left_out=len(priority) - count)
