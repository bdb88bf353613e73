"""The package as users get it: the sdist, the wheel built from it, the wheel installed and run.

The wheel goes into a fresh virtual environment and runs from an empty folder, so its
templates and static files must come from the wheel: the checkout is not importable there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import venv
from pathlib import Path

import pytest

import reportgen

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]

# What a rebuild from the sdist and its test suite need, relative to the checkout.
SDIST_PATTERNS = ["pyproject.toml", "README.md", "CHANGELOG.md", "noxfile.py", "reportgen/*.py",
                  "templates/**/*", "tests/*.py", "tests/gold/**/*", "data/shapes/**/*.png",
                  "mkdocs.yml", "docs/*.md", "docs/*.png", "docs/hooks.py"]

# Run in the fresh environment: where the package, its templates and the import path are.
WHERE_PROBE = """
import json, sys
from reportgen import render
print(json.dumps({"module": render.__file__, "templates": str(render.templates_dir()),
                  "sys_path": sys.path}))
"""


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    """The sdist, and the wheel that `python -m build` builds from it, as `nox -s dist` does."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    version = reportgen.__version__
    return {"sdist": out / f"reportgen-{version}.tar.gz",
            "wheel": out / f"reportgen-{version}-py3-none-any.whl"}


def test_twine_accepts_the_sdist_and_the_wheel(dists):
    result = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *map(str, dists.values())],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_sdist_holds_what_a_rebuild_and_the_tests_need(dists):
    with tarfile.open(dists["sdist"]) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    needed = {path.relative_to(REPO).as_posix() for pattern in SDIST_PATTERNS
              for path in REPO.glob(pattern) if path.is_file()}
    assert {"reportgen/shapes.py", "templates/static/style.css", "tests/conftest.py"} <= needed
    assert needed - members == set()


def dependency_dirs() -> list[str]:
    """Where this test's own dependencies (TensorFlow above all) are installed."""
    return [entry for entry in sys.path if Path(entry).name in ("site-packages", "dist-packages")]


def test_installed_wheel_builds_the_sample_report_from_an_empty_folder(tmp_path, dists):
    env = tmp_path / "env"
    venv.create(env, symlinks=True, with_pip=False)
    python = env / "bin" / "python"
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                              "--no-deps", "--no-index", str(dists["wheel"])],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    # The dependencies are not installed again (that would download TensorFlow): the fresh
    # environment sees this one's packages, after its own, so reportgen comes from the wheel.
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "_test_dependencies.pth").write_text("\n".join(dependency_dirs()) + "\n")

    run = tmp_path / "run"
    run.mkdir()
    environ = {name: value for name, value in os.environ.items()
               if name not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    probe = subprocess.run([python, "-c", WHERE_PROBE], cwd=run, env=environ,
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-2000:]
    where = json.loads(probe.stdout)
    assert Path(where["module"]).resolve().is_relative_to(env.resolve())
    assert Path(where["templates"]).resolve().is_relative_to(env.resolve())
    assert str(REPO) not in where["sys_path"]

    result = subprocess.run([env / "bin" / "reportgen", "build", "--epochs", "1", "--steps-per-epoch", "2"],
                            cwd=run, env=environ, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr

    site = run / "output" / "site"
    report = json.loads((site / "report.json").read_text())
    assert report["reportgen_version"] == reportgen.__version__
    # the bundled shapes were drawn into the empty folder, and every test image has a page
    drawn = sorted((run / "data" / "shapes" / "test_set").rglob("*.png"))
    assert len(drawn) == report["data"]["test_images"] == len(report["images"]) > 0
    pages = ["index.html", "results.html", "404.html",
             *(image["page"] for image in report["images"]),
             *(layer["page"] for layer in report["feature_layers"])]
    assert [page for page in pages if not (site / page).is_file()] == []
    for name in ("style.css", "site.js"):
        assert (site / "static" / name).read_bytes() == (REPO / "templates" / "static" / name).read_bytes()
