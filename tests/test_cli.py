"""The command line: an instant menu, clear errors, preview and publishing."""

from __future__ import annotations

import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from reportgen import publish
from reportgen.cli import main
from reportgen.layout import MARKER


def test_help_lists_every_command_without_importing_tensorflow():
    code = ("import sys; from reportgen.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('TF', 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for command in ("build", "data", "train", "predict", "serve", "gh-deploy"):
        assert f"  {command} " in result.stdout
    assert "TF False False" in result.stdout


@pytest.mark.parametrize("command", ["build", "train", "predict", "data", "serve", "gh-deploy"])
def test_every_command_has_help_with_defaults(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output
    if command in ("build", "train", "data"):
        assert "[default:" in result.output


def fake_site(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("x")
    (folder / "index.html").write_text("<!doctype html><title>t</title>hello")
    return folder


def test_serve_refuses_a_folder_that_is_not_a_site(tmp_path):
    result = CliRunner().invoke(main, ["serve", "--site", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.count("Error:") == 1 and "Traceback" not in result.output


def test_serve_previews_the_site_on_localhost(tmp_path, monkeypatch):
    import http.server

    from reportgen import publish

    site = fake_site(tmp_path / "site")
    servers = []
    real_server = http.server.ThreadingHTTPServer

    def recording_server(*args, **kwargs):
        server = real_server(*args, **kwargs)
        servers.append(server)
        return server

    monkeypatch.setattr(http.server, "ThreadingHTTPServer", recording_server)
    thread = threading.Thread(target=publish.serve, args=(site, 0), kwargs={"announce": print},
                              daemon=True)
    thread.start()
    for _ in range(100):
        if servers:
            break
        threading.Event().wait(0.05)
    host, port = servers[0].server_address[:2]
    assert host == "127.0.0.1"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as response:
        assert b"hello" in response.read()
    servers[0].shutdown()
    thread.join(timeout=10)


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          check=True).stdout


def test_gh_deploy_commits_the_site_to_gh_pages(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", cwd=repo)
    git("config", "user.email", "t@example.invalid", cwd=repo)
    git("config", "user.name", "t", cwd=repo)
    site = fake_site(repo / "output" / "site")
    monkeypatch.chdir(repo)
    result = CliRunner().invoke(main, ["gh-deploy", "--site", str(site), "--no-push"])
    assert result.exit_code == 0, result.output
    files = git("ls-tree", "-r", "--name-only", "gh-pages", cwd=repo).split()
    assert sorted(files) == sorted([".nojekyll", MARKER, "index.html"])


def test_gh_deploy_outside_a_repository_is_a_clear_error(tmp_path, monkeypatch):
    site = fake_site(tmp_path / "site")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["gh-deploy", "--site", str(site), "--no-push"])
    assert result.exit_code == 2
    assert "Error:" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("url", ["ftp://you.github.io/repo/", "you.github.io/repo", "https://",
                                 "https://you.github.io/repo/?x=1", "https://you.github.io/a b/"])
def test_build_refuses_a_site_url_that_is_not_an_http_address(url, tmp_path):
    result = CliRunner().invoke(main, ["build", "--data", str(tmp_path), "--site-url", url])
    assert result.exit_code == 2
    assert result.output.count("Error:") == 1 and "--site-url must be" in result.output
    assert "Traceback" not in result.output


def test_site_url_gets_its_trailing_slash():
    assert publish.site_url("https://you.github.io/repo") == "https://you.github.io/repo/"
    assert publish.site_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000/"


@pytest.mark.parametrize(("remote", "pages"), [
    ("https://github.com/You/repo.git", "https://you.github.io/repo/"),
    ("git@github.com:You/repo.git", "https://you.github.io/repo/"),
    ("ssh://git@github.com/you/repo", "https://you.github.io/repo/"),
    ("https://github.com/you/You.github.io", "https://you.github.io/"),
    ("https://gitlab.com/you/repo.git", None),
])
def test_the_github_pages_address_of_a_remote(remote, pages):
    assert publish.github_pages_url(remote) == pages


def test_gh_deploy_says_how_to_build_for_the_pages_address(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", cwd=repo)
    git("config", "user.email", "t@example.invalid", cwd=repo)
    git("config", "user.name", "t", cwd=repo)
    git("remote", "add", "origin", "https://github.com/you/repo.git", cwd=repo)
    site = fake_site(repo / "output" / "site")
    monkeypatch.chdir(repo)
    result = CliRunner().invoke(main, ["gh-deploy", "--site", str(site), "--no-push"])
    assert result.exit_code == 0, result.output
    assert "reportgen build --site-url https://you.github.io/repo/" in result.output
    (site / "index.html").write_text('<!doctype html><title>t</title>'
                                     '<link rel="canonical" href="https://you.github.io/repo/">')
    result = CliRunner().invoke(main, ["gh-deploy", "--site", str(site), "--no-push"])
    assert result.exit_code == 0, result.output
    assert "--site-url" not in result.output
    result = CliRunner().invoke(main, ["gh-deploy", "--site", str(site), "--no-push",
                                       "--site-url", "https://example.org/docs"])
    assert "was built for https://you.github.io/repo/" in result.output
