"""Showing and publishing a built site: a localhost preview and GitHub Pages."""

from __future__ import annotations

import functools
import http.server
import re
import subprocess
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


def github_pages_url(remote_url: str) -> str | None:
    """The GitHub Pages address of a github.com remote (https or ssh), or None for other hosts."""
    match = re.fullmatch(r"(?:https://|ssh://git@|git@)github\.com[:/]([^/]+)/([^/]+?)(?:\.git)?/?",
                         remote_url.strip())
    if not match:
        return None
    owner, repository = match.groups()
    host = f"{owner.lower()}.github.io"
    return f"https://{host}/" if repository.lower() == host else f"https://{host}/{repository}/"


def built_for(site: Path) -> str | None:
    """The --site-url a site was built with: its overview's canonical link, if it has one."""
    found = re.search(r'<link rel="canonical" href="([^"]*)">',
                      (site / "index.html").read_text(encoding="utf-8", errors="replace"))
    return found.group(1) if found else None


def _remote_url(remote: str) -> str | None:
    result = subprocess.run(["git", "remote", "get-url", remote], capture_output=True, text=True,
                            check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def gh_deploy(site: Path, *, remote: str = "origin", branch: str = "gh-pages",
              message: str = "Deploy reportgen site", push: bool = True,
              site_url: str | None = None, announce: Callable[[str], None] = print) -> None:
    """Commit ``site`` to ``branch`` (replacing its content) and push, as mkdocs gh-deploy does.

    The site is published as built; if it was not built for ``site_url`` (by default the
    GitHub Pages address of ``remote``), the rebuild command that fixes that is announced.
    """
    from ghp_import import GhpError, ghp_import

    _require_site(site)
    remote_url = None if site_url else _remote_url(remote)
    expected = site_url or (github_pages_url(remote_url) if remote_url else None)
    built = built_for(site)
    if expected and built != expected:
        why = (f"was built for {built}" if built else
               "was built without --site-url (no sitemap.xml; its 404 page works only at the top)")
        announce(f"Note: {site} {why}; to publish it at {expected}, build it with "
                 f"`reportgen build --site-url {expected}`.")
    try:
        ghp_import(str(site), mesg=message, remote=remote, branch=branch, push=push,
                   nojekyll=True, no_history=False)
    except GhpError as error:
        raise UserError(f"gh-deploy failed: {str(error).strip().splitlines()[0]}") from None
