"""Developer tasks: `nox -l` lists them, `nox -s NAME` runs one."""

from __future__ import annotations

import zipfile
from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYPROJECT = nox.project.load_toml("pyproject.toml")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (needs Debian's chromium, Java and npm for the page checks)."""
    session.install("-e", ".[test]")
    session.run("npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", external=True)
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check the code with ruff and the GitHub workflows with zizmor."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", "reportgen", "tests", "benchmarks", "noxfile.py", "docs/hooks.py")
    session.run("zizmor", "--offline", ".github/workflows/")


@nox.session
def dist(session: nox.Session) -> None:
    """Build the sdist and wheel into dist/, check them with twine, list the wheel."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "dist"))
    out = Path("dist")
    for old in out.glob("reportgen-*"):
        old.unlink()
    session.run("python", "-m", "build", "--outdir", str(out))
    built = sorted(str(path) for path in out.glob("reportgen-*"))
    session.run("twine", "check", "--strict", *built)
    for wheel in out.glob("reportgen-*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            session.log(f"{wheel.name}:\n  " + "\n  ".join(archive.namelist()))


@nox.session
def report(session: nox.Session) -> None:
    """Build the sample report on the bundled shapes into output/site."""
    session.install(".")
    session.run("reportgen", "build", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the user guide (docs/, mkdocs.yml) into output/guide with --strict."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "docs"))
    session.run("mkdocs", "build", "--strict", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Measure drawing and build speed; writes benchmarks/results.md."""
    session.install("-e", ".[test]")
    session.run("python", "benchmarks/bench.py", *session.posargs)


@nox.session
def mutants(session: nox.Session) -> None:
    """Mutation testing with mutmut (hours of CPU); writes tests/mutation.md. Not run by CI."""
    session.install("-e", ".[test,mutation]")
    session.run("python", "tests/mutation.py", *session.posargs)
