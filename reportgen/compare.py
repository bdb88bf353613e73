"""The ``compare`` verb: two built sites (or two models, built here first) in, a compare site out.

Reading the sites needs no TensorFlow: only ``compare_models`` imports the build. Everything is
written through one ``SiteWriter``, so a refused or failed compare leaves the previous compare
site as it was; the sites it reads are never written to (``check_target``'s protected folders).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from reportgen import __version__
from reportgen.comparison import Comparison, compare
from reportgen.errors import UserError
from reportgen.lock import build_lock, lock_path
from reportgen.render_compare import SIDE_FOLDERS, CompareSites, render_compare, shown_files
from reportgen.site import SiteWriter, check_target


@dataclass(frozen=True)
class CompareResult:
    site: Path
    files: int
    bytes: int
    comparison: Comparison


def read_report(site: Path) -> dict:
    """A built site's report.json, or a UserError that says what is wrong with ``site``."""
    if not site.exists():
        raise UserError(f"{site} does not exist: give the folder of a site reportgen built")
    if not site.is_dir():
        raise UserError(f"{site} is a file: give the folder of a site reportgen built")
    path = site / "report.json"
    if not path.is_file():
        raise UserError(f"{site} has no report.json: is it a site reportgen built?")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UserError(f"cannot read {path}: {error}") from None
    if not isinstance(report, dict) or report.get("schema_version") != 1:
        raise UserError(f"{path} is not a report.json of schema version 1")
    return report


def _site_file(site: Path, relative: str) -> bytes:
    """A file a report.json names inside its own site; never one outside it."""
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts or ":" in relative or "\\" in relative:
        raise UserError(f"{site / 'report.json'} names {relative!r}, which is not a file of the "
                        "site")
    try:
        return (site / path).read_bytes()
    except OSError as error:
        raise UserError(f"cannot read {site / path}, which {site / 'report.json'} names: "
                        f"{error.strerror or error}") from None


def _write(site: SiteWriter, comparison: Comparison, sites: CompareSites, title: str | None,
           sources: tuple[Path, Path] | None) -> None:
    for path, data in render_compare(comparison, sites, title=title, version=__version__):
        site.write(path, data)
    if sources is not None:  # sites given: copy what the galleries show
        for side, path in shown_files(comparison):
            site.write(SIDE_FOLDERS[side] + path, _site_file(sources[side], path))


def compare_sites(site_a: Path, site_b: Path, out: Path, *, title: str | None = None
                  ) -> CompareResult:
    """Compare two built sites into ``out``; nothing is written if they cannot be compared."""
    reports = read_report(site_a), read_report(site_b)
    protected = [site_a, site_b]
    check_target(out, protected)
    comparison = compare(*reports)
    with build_lock(out), SiteWriter(out, protected=protected) as site:
        _write(site, comparison, CompareSites((str(site_a), str(site_b))), title,
               (site_a, site_b))
    return CompareResult(site.target, site.files_written, site.bytes_written, comparison)


def compare_models(options, model_a: Path, model_b: Path, *, title: str | None = None,
                   echo: Callable[[str], None] | None = None) -> CompareResult:
    """Build a site for each model on ``options.data`` (reportgen.stages.build, with the rest
    of ``options``) as a/ and b/ of the compare site ``options.out``, then compare them."""
    from reportgen import stages

    out = options.out
    for model in (model_a, model_b):
        if not model.is_file():
            raise UserError(f"--model {model} is not a file")
    protected = [options.data, model_a, model_b]
    check_target(out, protected)
    with build_lock(out), SiteWriter(out, protected=protected) as site:
        for folder, model in zip(SIDE_FOLDERS, (model_a, model_b), strict=True):
            side_out = site.temp / folder.rstrip("/")
            if echo is not None:
                echo(f"Site {folder[0].upper()}: {model}")
            built = stages.build(replace(options, model_path=model, out=side_out),
                                 **({"echo": echo} if echo is not None else {}))
            site.count(built.files, built.bytes)
            lock_path(side_out).unlink(missing_ok=True)  # the build's lock, in our staging folder
        reports = read_report(site.temp / "a"), read_report(site.temp / "b")
        comparison = compare(*reports)
        _write(site, comparison, CompareSites(), title, None)
    return CompareResult(site.target, site.files_written, site.bytes_written, comparison)
