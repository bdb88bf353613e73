"""Showing and publishing a built site: a localhost preview and GitHub Pages."""

from __future__ import annotations

import functools
import http.server
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from reportgen.errors import UserError
from reportgen.layout import MARKER


def _require_site(site: Path) -> None:
    if not (site / "index.html").is_file() or not (site / MARKER).is_file():
        raise UserError(f"{site} is not a site built by reportgen; run `reportgen build` first")


def site_url(url: str) -> str:
    """`url` checked as the absolute http(s) address of a site's folder, ending in "/"."""
    parts = urlsplit(url)
    if (parts.scheme not in ("http", "https") or not parts.hostname or parts.query
            or parts.fragment or re.search(r"[\s\"'<>\\]", url)):
        raise UserError(f"--site-url must be an absolute http(s) URL such as "
                        f"https://you.github.io/repo/, not {url!r}")
    return url if url.endswith("/") else url + "/"


def serve(site: Path, port: int, announce: Callable[[str], None] = print) -> None:
    """Serve ``site`` on 127.0.0.1 until Ctrl-C."""
    _require_site(site)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as error:
        raise UserError(f"cannot listen on 127.0.0.1:{port}: {error.strerror}") from None
    with server:
        announce(f"Serving {site} on http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            announce("Stopped.")


def gh_deploy(site: Path, *, remote: str = "origin", branch: str = "gh-pages",
              message: str = "Deploy reportgen site", push: bool = True) -> None:
    """Commit ``site`` to ``branch`` (replacing its content) and push, as mkdocs gh-deploy does."""
    from ghp_import import GhpError, ghp_import

    _require_site(site)
    try:
        ghp_import(str(site), mesg=message, remote=remote, branch=branch, push=push,
                   nojekyll=True, no_history=False)
    except GhpError as error:
        raise UserError(f"gh-deploy failed: {str(error).strip().splitlines()[0]}") from None
