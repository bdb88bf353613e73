"""The user guide: mkdocs builds it with --strict, and the README's and the guide's links hold.

A relative link must name a file of the repository, and its anchor a heading of that file
under both GitHub's and mkdocs' ids, so that it works on GitHub and in the built guide.
The built guide must load nothing from the network, as the report itself.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import markdown
import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
README = REPO / "README.md"


def load_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HOOKS = load_hooks()


def guide_pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


class Collector(HTMLParser):
    """Every (tag, attribute, value) of an href or src, every id, and inline styles."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.ids: set[str] = set()
        self.headings: list[str] = []
        self.styles: list[str] = []
        self._heading: list[str] | None = None
        self._style = False

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value is not None:
                self.refs.append((tag, name, value))
            elif name == "id" and value:
                self.ids.add(value)
            elif name == "style" and value:
                self.styles.append(value)
        if re.fullmatch(r"h[1-6]", tag):
            self._heading = []
        self._style = tag == "style"

    def handle_endtag(self, tag):
        if re.fullmatch(r"h[1-6]", tag) and self._heading is not None:
            self.headings.append("".join(self._heading))
            self._heading = None
        self._style = False

    def handle_data(self, data):
        if self._heading is not None:
            self._heading.append(data)
        if self._style:
            self.styles.append(data)


def parse_html(text: str) -> Collector:
    collector = Collector()
    collector.feed(text)
    return collector


def markdown_html(path: Path) -> Collector:
    """A Markdown file as HTML (so that code blocks and spans hold no links)."""
    text = path.read_text(encoding="utf-8")
    return parse_html(markdown.markdown(text, extensions=["tables", "fenced_code"]))


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, each space a hyphen."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def built_page(target: Path, site: Path) -> Path:
    """Where the guide build puts the page of a Markdown file of the repository."""
    relative = target.relative_to(REPO).as_posix()
    if target.is_relative_to(DOCS):
        return site / Path(target.relative_to(DOCS)).with_suffix(".html")
    assert relative in HOOKS.REPO_FILES, f"{relative} is linked from the guide but not added by docs/hooks.py"
    return site / Path(HOOKS.PREFIX + relative).with_suffix(".html")


def relative_links(path: Path) -> list[tuple[str, Path, str]]:
    """(link as written, file it names, anchor) for each relative link and image of a Markdown file."""
    found = []
    for _tag, _attr, value in markdown_html(path).refs:
        parts = urlsplit(value)
        if parts.scheme or parts.netloc:
            continue
        target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
        found.append((value, target, parts.fragment))
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("guide")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_the_guide_builds_strictly_with_every_page(site):
    assert {page.stem for page in guide_pages()} <= {page.stem for page in site.glob("*.html")}
    for relative in HOOKS.REPO_FILES:
        assert (site / Path(HOOKS.PREFIX + relative).with_suffix(".html")).is_file()


@pytest.mark.parametrize("source", [README, *guide_pages()],
                         ids=lambda path: path.relative_to(REPO).as_posix())
def test_every_relative_link_resolves(source, site):
    links = relative_links(source)
    if source == README:
        assert len(links) > 10, "README.md: too few links found to believe the parser"
    for written, target, anchor in links:
        assert target.is_relative_to(REPO), f"{source.name}: {written} leaves the repository"
        assert target.exists(), f"{source.name}: {written} names no file"
        if not anchor:
            continue
        assert target.suffix == ".md", f"{source.name}: {written}: an anchor into a file that is not Markdown"
        page = parse_html(built_page(target, site).read_text(encoding="utf-8"))
        assert anchor in page.ids, f"{source.name}: {written}: the built guide has no such anchor"
        slugs = {github_slug(heading) for heading in markdown_html(target).headings}
        assert anchor in slugs, f"{source.name}: {written}: GitHub gives no heading that anchor"


def test_links_to_repository_files_point_into_the_built_guide(site):
    """../benchmarks/results.md from a page becomes repo/benchmarks/results.html, which exists."""
    hrefs = [value for _tag, _attr, value in parse_html((site / "benchmarks.html").read_text()).refs]
    assert "repo/benchmarks/results.html" in hrefs
    assert not any("../benchmarks" in href for href in hrefs)


NETWORK = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)
CSS_URL = re.compile(r"""(?:url\(\s*|@import\s+)["']?([^"')\s;]+)""")


def test_the_built_guide_loads_nothing_from_the_network(site):
    loads = []
    for page in sorted(site.rglob("*.html")):
        parsed = parse_html(page.read_text(encoding="utf-8"))
        loads += [(page, value) for tag, _attr, value in parsed.refs if tag != "a"]
        loads += [(page, value) for style in parsed.styles for value in CSS_URL.findall(style)]
    for sheet in sorted(site.rglob("*.css")):
        loads += [(sheet, value) for value in CSS_URL.findall(sheet.read_text(encoding="utf-8"))]
    assert len(loads) > 20, "found too few stylesheets, scripts and images to believe the parser"
    remote = [(path.relative_to(site).as_posix(), value) for path, value in loads
              if NETWORK.match(value) and not value.startswith("data:")]
    assert remote == []


def readme_test_command() -> str:
    """What .ci/run runs: the code block between the README's test-command markers."""
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- test-command -->\s*```\n(.*?)\n```\s*<!-- /test-command -->", text, re.DOTALL)
    assert block, "README.md has no test command between <!-- test-command --> markers"
    return block.group(1)


def test_the_guide_gives_the_readmes_test_command():
    command = readme_test_command()
    assert ".venv/bin/python -m pytest" in command
    assert f"```\n{command}\n```" in (DOCS / "development.md").read_text(encoding="utf-8")
