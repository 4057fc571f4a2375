"""GIT_SSH_* in the settings model: what a key must be, and the one line each mistake gives."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from producer.settings import ConfigError, load_settings

BASE = {"GITHUB_REPO_URL": "ssh://git@127.0.0.1/app.git"}


def make_key(path: Path, passphrase: str = "") -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(path)], check=True)
    return path.read_text()


def problems(**env: str) -> list[str]:
    try:
        load_settings({**BASE, **env})
    except ConfigError as error:
        return error.problems
    return []


def test_key_text_with_literal_newlines_is_the_same_key(tmp_path: Path) -> None:
    key = make_key(tmp_path / "k")
    flat = load_settings({**BASE, "GIT_SSH_KEY": key.strip().replace("\n", "\\n")})
    assert flat.ssh_key() == key
    assert load_settings({**BASE, "GIT_SSH_KEY_FILE": str(tmp_path / "k")}).ssh_key() == key


def test_the_key_is_masked_line_by_line_and_never_shown(tmp_path: Path) -> None:
    key = make_key(tmp_path / "k")
    settings = load_settings({**BASE, "GIT_SSH_KEY": key})
    body = [line for line in key.splitlines() if not line.startswith("-----")]
    assert set(body) <= set(settings.secret_values())
    assert settings.public_dict()["GIT_SSH_KEY"] == "***"
    assert body[-1] not in repr(settings)


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"GIT_SSH_KEY": "not a key"}, "GIT_SSH_KEY: is not a private key (no -----BEGIN"),
        ({"GIT_SSH_KEY_FILE": "/nonexistent/key"}, "GIT_SSH_KEY_FILE: cannot be read"),
        ({"GIT_SSH_KEY_FILE": "relative/key"}, "GIT_SSH_KEY_FILE: must be an absolute path"),
        ({"GIT_SSH_KNOWN_HOSTS": "github.com"}, "GIT_SSH_KNOWN_HOSTS: must be known_hosts lines"),
        ({"GIT_SSH_KNOWN_HOSTS_FILE": "/nonexistent/kh"}, "GIT_SSH_KNOWN_HOSTS_FILE: cannot be read"),
    ],
)
def test_each_mistake_is_one_line_naming_the_variable(env: dict[str, str], line: str) -> None:
    found = problems(**env)
    assert len(found) == 1 and found[0].startswith(line), found


def test_a_key_that_needs_a_passphrase_is_refused_without_showing_it(tmp_path: Path) -> None:
    key = make_key(tmp_path / "k", passphrase="secret words")
    found = problems(GIT_SSH_KEY=key)
    assert found == ["GIT_SSH_KEY: is not a private key ssh can read without a passphrase"]


def test_key_and_key_file_together_are_refused(tmp_path: Path) -> None:
    key = make_key(tmp_path / "k")
    found = problems(GIT_SSH_KEY=key, GIT_SSH_KEY_FILE=str(tmp_path / "k"))
    assert found == ["GIT_SSH_KEY_FILE: set together with GIT_SSH_KEY; set only one"]


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"GIT_CLONE_DEPTH": "0"}, "GIT_CLONE_DEPTH: must be a positive whole number of commits"),
        ({"GIT_CLONE_DEPTH": "2000000"}, "GIT_CLONE_DEPTH: must be at most 1000000 commits"),
        ({"GIT_CLONE_FILTER": "blobs"}, "GIT_CLONE_FILTER: must be a partial clone filter"),
        ({"GIT_SPARSE_CHECKOUT": "true"}, "GIT_SPARSE_CHECKOUT: needs GITHUB_REPO_FOLDER"),
        ({"GIT_SUBMODULES": "yes"}, "GIT_SUBMODULES: must be one of off, recursive"),
    ],
)
def test_each_clone_option_mistake_is_one_line(env: dict[str, str], line: str) -> None:
    found = problems(**env)
    assert len(found) == 1 and found[0].startswith(line), found


def test_clone_shape_from_the_settings() -> None:
    from producer.git_clone import CloneShape

    settings = load_settings(
        {
            **BASE,
            "GIT_CLONE_DEPTH": "1",
            "GIT_CLONE_FILTER": "Blob:None",
            "GIT_SPARSE_CHECKOUT": "yes",
            "GITHUB_REPO_FOLDER": "services/api",
            "GIT_SUBMODULES": "Recursive",
        }
    )
    shape = CloneShape.for_app(settings)
    assert shape == CloneShape(depth=1, filter="blob:none", sparse=("services/api",), submodules=True)
    assert shape.clone_args() == ["--depth", "1", "--filter=blob:none", "--sparse"]
    assert shape.for_jobs().sparse == ()
    assert shape.transport_url("/srv/git/app.git") == "file:///srv/git/app.git"
    assert CloneShape().transport_url("/srv/git/app.git") == "/srv/git/app.git"
