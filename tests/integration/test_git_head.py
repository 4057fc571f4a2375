"""GitCheckout.head() reads HEAD from .git's files (no git process per idle cycle) and agrees with git."""

from __future__ import annotations

from pathlib import Path

from producer.git_sync import GitCheckout
from tests.conftest import GitRemote, run_git


def checkout_of(remote: GitRemote, tmp_path: Path) -> GitCheckout:
    repo = GitCheckout(remote.url, tmp_path / "ws", remote.branch, None, [])
    repo.ensure_cloned()
    return repo


def test_head_matches_git_for_loose_packed_and_detached_heads(tmp_path, remote: GitRemote):
    first = remote.commit({"a": "1"})
    second = remote.commit({"a": "2"})
    repo = checkout_of(remote, tmp_path)
    assert repo._head_from_files() == second == repo.head()

    repo.checkout(first)  # checkout -B main <sha>: a loose ref
    assert repo._head_from_files() == first == run_git("rev-parse", "HEAD", cwd=repo.path)

    run_git("pack-refs", "--all", "--prune", cwd=repo.path)  # the ref now lives in packed-refs only
    assert not (repo.path / ".git/refs/heads/main").exists()
    assert repo._head_from_files() == first == repo.head()

    run_git("checkout", "--quiet", "--detach", second, cwd=repo.path)
    assert repo._head_from_files() == second == repo.head()


def test_head_falls_back_to_git_when_the_files_are_not_plain(tmp_path, remote: GitRemote):
    sha = remote.commit({"a": "1"})
    repo = checkout_of(remote, tmp_path)
    (repo.path / ".git/HEAD").write_text("ref: refs/heads/../../HEAD\n")  # not a ref the fast path trusts
    assert repo._head_from_files() is None
    (repo.path / ".git/HEAD").write_text(f"ref: refs/heads/{remote.branch}\n")
    assert repo.head() == sha
    # No clone at all: no answer, and no exception either.
    empty = GitCheckout(remote.url, tmp_path / "nothing", remote.branch, None, [])
    assert empty._head_from_files() is None
