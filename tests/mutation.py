"""Mutation testing with mutmut over the modules where a silent bug would hurt most.

    python tests/mutation.py [SCOPE ...]      (or: nox -s mutants -- [SCOPE ...])
    python tests/mutation.py --report-only    (rewrite tests/mutation.md from the last runs)

Runs mutmut on the named scopes (all of them by default), then rewrites the results
part of tests/mutation.md from what mutmut recorded in mutants/, for every scope.
A surviving mutant is either killed by a new test, or listed in EQUIVALENT with the
reason no test can tell it from the original, or in OPEN with why it is left alive.
Not part of .ci/run: it takes hours of CPU on a 2-core machine.
mutmut's settings are in pyproject.toml ([tool.mutmut]).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "tests" / "mutation.md"
MUTMUT = str(Path(sys.executable).parent / "mutmut")  # the venv's, whether or not it is on PATH
BEGIN, END = "<!-- results -->", "<!-- /results -->"

# Scope -> mutmut mutant-name patterns (module.x_function or module.xǁClassǁmethod).
SCOPES = {
    "stats": ["reportgen.stats.*"],
    "metrics": ["reportgen.metrics.*"],
    "site writer": ["reportgen.site.*"],
    "model loading": [f"reportgen.model.x_{name}__mutmut_*" for name in
                      ("_model_format", "_explain_load_error", "load", "_load_renamed",
                       "read_sidecar", "load_with_sidecar", "sidecar_path")],
    "image reader": [f"reportgen.decode.x_{name}__mutmut_*" for name in
                     ("check_image", "load_image", "read_image", "_open_image", "_decode",
                      "_high_depth_to_unit", "_to_pixels", "_match_channels", "reason")],
    "activation probe": ["reportgen.activations.*"],
    "render escaping": ["reportgen.render.x_render_site__mutmut_*",
                        "reportgen.render.x_templates_dir__mutmut_*",
                        "reportgen.report.x_slugify__mutmut_*"],
}

# Mutant name -> why no test can tell it from the original.
RANDOM_SUFFIX = "a longer random suffix names the same kind of folder; only its prefix is ever matched"
MARKER_TEXT = "only the marker file's existence is ever read, never its text"
TEMP_PREFIX = "the name of a temporary folder that is removed again is seen by nobody"
COMPILE_NONE = "Keras tests `if compile`, so None loads uncompiled like False"
SIDECAR_ENCODING = ("this platform's locale is UTF-8 (Python's UTF-8 mode), so the default encoding and "
                    "'UTF-8' read the file as 'utf-8' does")
SAME_CODEC = "'UTF-8' and 'utf-8' name the same codec"
JSON_LAYOUT = ("only the layout of report.json changes (its indentation), not what any JSON reader "
               "reads; the README specifies content, not layout")
JSON_ESCAPES = ("non-ASCII names written as \\u escapes read back the same; report.json is still "
                "valid UTF-8 JSON")
HIGH_DEPTH_RANGE = ("PNG, the only allowed format with more than 8 bits, holds unsigned 16-bit "
                    "values: divided by 65535 they already lie in 0..1, so no clip bound is reached")
DEFAULT_FLOAT64 = "float64 is numpy's default dtype"
COUNTS_AS_FLOAT = ("image counts held as float64 stay exact (below 2**53) and divide and compare to 0 "
                   "as integers do")
MAX_AS_FLOAT64 = "the maximum of float32 values is the same number held as float64"
STRICT_ZIP = "the lengths were compared just before, so zip's strict= can never fire"
DRAFT_TESTS = ("JPEG draft decoding (only a JPEG, at the size asked for) is checked by "
               "tests/test_photos.py on big JPEGs, which is not in mutmut's test selection (slow set-up)")
RESIZE_TESTS = ("--resize crop and pad reaching read_image are checked against Keras by "
                "tests/test_inputs.py, which is not in mutmut's test selection")
FLOAT64_PIXELS = ("the pixels are blended and resized in float64 instead of float32 and cast to "
                  "float32 at the end: at most a float32 rounding apart, which no test pins")
GREY_AS_RGB = ("a grey image read as RGB has three equal channels: Pillow's convert('L') gives the "
               "grey values back exactly, and a colour model gets the three equal channels either way")
NESTED_ZIP = ("a nested probe outputs its model's outputs, then one tensor per tap, so both zips "
              "pair lists of equal length by construction and strict= can never fire")
KERAS_CASTS = ("Keras' functional model converts its input to the input's own dtype "
               "(Functional._convert_inputs_to_tensors, truncating as numpy does), so the probe's "
               "own conversion only does it first")
NON_LAYER_ORDER = ("only operations that are not layers (keras.ops) lack a position, and they "
                   "never become taps nor hold any, so their order is never read")
PROBE_NAME = ("the probe model's own name is seen by nobody: Keras wants unique names only "
              "among the operations inside one graph, and the probe is never put inside another")
EQUIVALENT: dict[str, str] = {
    **{f"reportgen.render.x_render_site__mutmut_{n}": SAME_CODEC for n in (33, 183, 208)},
    **{f"reportgen.render.x_render_site__mutmut_{n}": JSON_LAYOUT for n in (195, 199, 203)},
    **{f"reportgen.render.x_render_site__mutmut_{n}": JSON_ESCAPES for n in (196, 200, 204)},
    "reportgen.render.x_render_site__mutmut_197": (
        "json.dumps tests `if not allow_nan`: None is as strict as False"),
    **{f"reportgen.render.x_render_site__mutmut_{n}": (
        "the 404 page's root prefix depends only on its depth, and any name without a slash is "
        "at the top") for n in (177, 178)},
    "reportgen.report.x_slugify__mutmut_15": "'ASCII' and 'ascii' name the same codec",
    "reportgen.report.x_slugify__mutmut_19": "'ASCII' and 'ascii' name the same codec",
    "reportgen.report.x_slugify__mutmut_40": SAME_CODEC,
    **{f"reportgen.report.x_slugify__mutmut_{n}": (
        "strip('XX-XX') strips X as well as -, and the lower-cased name has no X") for n in (33, 35)},
    "reportgen.decode.x__decode__mutmut_29": GREY_AS_RGB,
    **{f"reportgen.activations.x__replay__mutmut_{n}": NESTED_ZIP for n in (60, 63, 64, 80, 83, 84)},
    **{f"reportgen.activations.x__replay__mutmut_{n}": NON_LAYER_ORDER for n in (29, 31)},
    "reportgen.activations.xǁActivationProbeǁ__call____mutmut_3": KERAS_CASTS,
    "reportgen.activations.xǁActivationProbeǁ__call____mutmut_5": KERAS_CASTS,
    "reportgen.activations.xǁActivationProbeǁ__init____mutmut_30": KERAS_CASTS,
    "reportgen.activations.xǁActivationProbeǁ__init____mutmut_38": PROBE_NAME,
    "reportgen.activations.xǁActivationProbeǁ__init____mutmut_41": PROBE_NAME,
    "reportgen.site.xǁSiteWriterǁ__enter____mutmut_11": RANDOM_SUFFIX,
    "reportgen.site.xǁSiteWriterǁ_swap__mutmut_5": RANDOM_SUFFIX,
    "reportgen.site.xǁSiteWriterǁ__enter____mutmut_14": MARKER_TEXT,
    "reportgen.site.xǁSiteWriterǁ__enter____mutmut_15": MARKER_TEXT,
    "reportgen.site.xǁSiteWriterǁ__enter____mutmut_16": MARKER_TEXT,
    "reportgen.site.xǁSiteWriterǁwrite__mutmut_15": (
        "the set only saves repeated mkdir calls; mkdir(exist_ok=True) again changes nothing"),
    "reportgen.model.x__load_renamed__mutmut_1": TEMP_PREFIX,
    "reportgen.model.x__load_renamed__mutmut_2": TEMP_PREFIX,
    "reportgen.model.x__load_renamed__mutmut_3": TEMP_PREFIX,
    "reportgen.model.x_load__mutmut_31": COMPILE_NONE,
    "reportgen.model.x__load_renamed__mutmut_10": COMPILE_NONE,
    "reportgen.model.x_read_sidecar__mutmut_6": SIDECAR_ENCODING,
    "reportgen.model.x_read_sidecar__mutmut_8": SIDECAR_ENCODING,
    "reportgen.stats.xǁLayerStatsǁdifferences__mutmut_5": STRICT_ZIP,
    "reportgen.stats.xǁLayerStatsǁdifferences__mutmut_8": STRICT_ZIP,
    "reportgen.stats.xǁLayerStatsǁdifferences__mutmut_9": STRICT_ZIP,
    "reportgen.stats.x__all_close__mutmut_18": STRICT_ZIP,
    "reportgen.stats.x__all_close__mutmut_21": STRICT_ZIP,
    "reportgen.stats.x__all_close__mutmut_22": STRICT_ZIP,
    "reportgen.stats.xǁLayerStatsAccumulatorǁ__init____mutmut_19": DEFAULT_FLOAT64,
    "reportgen.stats.xǁLayerStatsAccumulatorǁ__init____mutmut_21": DEFAULT_FLOAT64,
    "reportgen.stats.xǁLayerStatsAccumulatorǁ__init____mutmut_24": DEFAULT_FLOAT64,
    "reportgen.stats.xǁLayerStatsAccumulatorǁ__init____mutmut_26": DEFAULT_FLOAT64,
    "reportgen.stats.xǁLayerStatsAccumulatorǁ__init____mutmut_29": DEFAULT_FLOAT64,
    "reportgen.stats.xǁLayerStatsAccumulatorǁ__init____mutmut_31": DEFAULT_FLOAT64,
    "reportgen.stats.xǁLayerStatsAccumulatorǁ__init____mutmut_34": COUNTS_AS_FLOAT,
    "reportgen.stats.xǁLayerStatsAccumulatorǁ__init____mutmut_36": COUNTS_AS_FLOAT,
    "reportgen.stats.xǁLayerStatsAccumulatorǁ__init____mutmut_39": COUNTS_AS_FLOAT,
    "reportgen.stats.xǁLayerStatsAccumulatorǁ__init____mutmut_41": COUNTS_AS_FLOAT,
    "reportgen.stats.xǁLayerStatsAccumulatorǁ__init____mutmut_45": MAX_AS_FLOAT64,
    "reportgen.stats.xǁLayerStatsAccumulatorǁ__init____mutmut_48": MAX_AS_FLOAT64,
    "reportgen.stats.x__reject_repeated_paths__mutmut_17": (
        "a repeated path is there at least twice, so the second match names the same path"),
    "reportgen.decode.x__high_depth_to_unit__mutmut_2": (
        "float64 values become the same 'F' image (Pillow holds F as float32), which _to_pixels reads"),
    "reportgen.decode.x__high_depth_to_unit__mutmut_6": HIGH_DEPTH_RANGE,
    "reportgen.decode.x__high_depth_to_unit__mutmut_7": HIGH_DEPTH_RANGE,
    "reportgen.decode.x__high_depth_to_unit__mutmut_14": HIGH_DEPTH_RANGE,
    "reportgen.stats.x__read_only__mutmut_2": "numpy takes None for the flag as False",
    "reportgen.stats.xǁLayerStatsAccumulatorǁresult__mutmut_33": (
        "numpy fills a float array with None as NaN"),
    "reportgen.stats.xǁ_TopListsǁfrom_batch__mutmut_36": (
        "labels become float64 but are read back with int(), exactly, for any class index"),
    "reportgen.stats.xǁ_TopListsǁcombine__mutmut_10": (
        "numpy 2.4's unique() already returns the inverse in the input's shape; the reshape is for "
        "numpy versions that flatten it"),
    "reportgen.stats.xǁLayerStatsAccumulatorǁ_check_batch__mutmut_10": (
        "shape[3] was already checked to be the channel count, at least 1, so it is never 0"),
}

# Mutant name -> why it survives although it is not equivalent (a known gap, left open).
OPEN: dict[str, str] = {
    **{f"reportgen.decode.{name}": DRAFT_TESTS for name in (
        "x__decode__mutmut_2", "x__decode__mutmut_3", "x__decode__mutmut_4", "x__decode__mutmut_5",
        "x__decode__mutmut_6", "x__decode__mutmut_7", "x_read_image__mutmut_2",
        "x_read_image__mutmut_9", "x_read_image__mutmut_11")},
    "reportgen.decode.x_read_image__mutmut_31": RESIZE_TESTS,
    "reportgen.decode.x_read_image__mutmut_36": RESIZE_TESTS,
    "reportgen.decode.x__to_pixels__mutmut_5": FLOAT64_PIXELS,
    "reportgen.decode.x__to_pixels__mutmut_9": FLOAT64_PIXELS,
    "reportgen.render.x_render_site__mutmut_76": (
        "the confusion picture (many classes only) drawn without the report's colormap: not "
        "examined yet"),
}

# mutmut's exit codes (mutmut/stats.py).
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests",
          36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", None: "not run"}


def recorded_results() -> dict[str, int | None]:
    results: dict[str, int | None] = {}
    for meta in sorted((ROOT / "mutants" / "reportgen").glob("*.py.meta")):
        results.update(json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"])
    return results


def in_scope(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def diff_of(name: str) -> str:
    shown = subprocess.run([MUTMUT, "show", name], cwd=ROOT, capture_output=True, text=True).stdout
    changed = [line for line in shown.splitlines()
               if re.match(r"^[-+](?![-+]{2})", line) and line[1:].strip()]
    return " / ".join(line[0] + " " + line[1:].strip() for line in changed)


def summary(results: dict[str, int | None]) -> str:
    rows, survivors = [], []
    for scope, patterns in SCOPES.items():
        names = sorted(name for name in results if in_scope(name, patterns))
        counts = {status: 0 for status in ("killed", "timeout", "survived", "equivalent",
                                           "no tests", "not run", "other")}
        for name in names:
            status = STATUS.get(results[name], "other")
            if status == "survived":
                survivors.append((scope, name))
                status = "equivalent" if name in EQUIVALENT else status
            counts[status] += 1
        tested = counts["killed"] + counts["timeout"] + counts["survived"]
        score = "—" if not tested else f"{(counts['killed'] + counts['timeout']) / tested:.0%}"
        rows.append(f"| {scope} | {len(names)} | " + " | ".join(str(n) for n in counts.values())
                    + f" | {score} |")
    lines = ["| scope | mutants | killed | timeout | survived | equivalent | no tests | not run | "
             "other | killed of non-equivalent |", "|---" * 10 + "|", *rows, ""]
    if survivors:
        lines += ["Surviving mutants:", "", "| scope | mutant | change | why it survives |",
                  "|---|---|---|---|"]
        for scope, name in survivors:
            reason = EQUIVALENT.get(name) or (f"**not equivalent**: {OPEN[name]}" if name in OPEN
                                              else "**not equivalent: needs a test**")
            change = diff_of(name).replace("|", "\\|")
            lines.append(f"| {scope} | `{name}` | `{change}` | {reason} |")
        lines.append("")
    lines.append(f"mutmut {version('mutmut')}; a timeout counts as killed (the mutant made the "
                 "tests hang).")
    return "\n".join(lines)


def write_results(text: str) -> None:
    page = RESULTS.read_text(encoding="utf-8")
    start, end = page.index(BEGIN) + len(BEGIN), page.index(END)
    RESULTS.write_text(page[:start] + "\n" + text + "\n" + page[end:], encoding="utf-8")


def main(scopes: list[str]) -> int:
    if scopes[:1] == ["--report-only"]:  # rewrite tests/mutation.md from mutants/, run nothing
        write_results(summary(recorded_results()))
        return 0
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        print(f"unknown scope(s) {unknown}; choose from {sorted(SCOPES)}", file=sys.stderr)
        return 2
    patterns = [p for scope in scopes or SCOPES for p in SCOPES[scope]]
    # mutmut keeps which tests reach which function from run to run, and misses a test that
    # starts to reach one: collect it afresh, so every test that could kill a mutant runs.
    (ROOT / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    children = os.environ.get("MUTMUT_CHILDREN", str(os.cpu_count() or 2))
    run = subprocess.run([MUTMUT, "run", "--max-children", children, *patterns], cwd=ROOT)
    write_results(summary(recorded_results()))
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
