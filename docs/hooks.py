"""mkdocs hook: the repository's own Markdown files that the guide links to become pages of it.

A guide page links to such a file as GitHub shows it, `../benchmarks/results.md` from
`docs/benchmarks.md`; mkdocs only knows files inside `docs/`. This hook adds each file
below to the guide under `repo/` and points those links there, so one link works on
GitHub and in the built guide, and a broken one still fails `mkdocs build --strict`.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File

# Paths relative to the repository root (the folder of mkdocs.yml).
REPO_FILES = ("CHANGELOG.md", "benchmarks/results.md", "tests/mutation.md")
PREFIX = "repo/"

# An inline Markdown link or image target: ](target) or ](target#anchor).
LINK = re.compile(r"\]\((?P<target>[^)\s#]+)(?P<anchor>#[^)\s]*)?\)")


def on_files(files, config):
    root = Path(config.config_file_path).parent
    for path in REPO_FILES:
        files.append(File.generated(config, PREFIX + path, abs_src_path=str(root / path)))
    return files


def on_page_markdown(markdown, page, config, files):
    docs = Path(config.docs_dir)
    root = Path(config.config_file_path).parent
    docs_from_root = docs.relative_to(root).as_posix()
    page_dir = posixpath.dirname(page.file.src_uri)

    def repoint(match: re.Match) -> str:
        target = match.group("target")
        from_root = posixpath.normpath(posixpath.join(docs_from_root, page_dir, target))
        if from_root not in REPO_FILES:
            return match.group(0)
        new = posixpath.relpath(PREFIX + from_root, page_dir or ".")
        return f"]({new}{match.group('anchor') or ''})"

    return LINK.sub(repoint, markdown)
