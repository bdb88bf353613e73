"""Developer tasks: `nox -l` lists them, `nox -s NAME` runs one."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (needs Debian's chromium for the browser tests)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check the code with ruff."""
    session.install("ruff")
    session.run("ruff", "check", "reportgen", "tests", "benchmarks", "noxfile.py")


@nox.session
def report(session: nox.Session) -> None:
    """Build the sample report on the bundled shapes into output/site."""
    session.install(".")
    session.run("reportgen", "build", *session.posargs)


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
