"""One git checkout kept in sync with one branch of a remote, with GitPython.

The token never touches disk or argv: git asks a credential helper given through
``GIT_CONFIG_COUNT``/``KEY``/``VALUE`` environment variables, and the helper reads the
token from the environment of that git process only::

    repo = GitCheckout("https://github.com/user/app", Path("/workspaces/app"), branch="main", token=tok)
    repo.ensure_cloned()
    head = repo.remote_head()      # git ls-remote: cheap, no objects transferred
    if head != repo.fetched:
        repo.fetch()
    repo.checkout(head)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import git

from producer.git_clone import SUBMODULE_SYNC, SUBMODULE_UPDATE, CloneShape
from producer.git_files import clear_stale_locks, head_from_files
from workers.console import say

TOKEN_ENV = "HOTRELOAD_GIT_TOKEN"
# A credential helper that answers `get` with the token from its own environment; it
# ignores `store`/`erase`, so nothing is ever written down.
CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || exit 0; echo username=x-access-token; echo "password=$' + TOKEN_ENV + '"; }; f'
)


class GitSyncError(Exception):
    """A git operation failed; the message is safe to log (secrets masked)."""


def git_environment(token: str | None, ssh_command: str | None = None) -> dict[str, str]:
    """Environment for every git process: never prompt; the token if any; ssh with the deploy key if any."""
    env = {
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
        "GIT_SSH_COMMAND": ssh_command or os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes"),
        "LC_ALL": "C",
    }
    if token:
        # An empty helper first resets any helper from system config (a `store` helper would save it).
        env.update(
            {
                "GIT_CONFIG_COUNT": "2",
                "GIT_CONFIG_KEY_0": "credential.helper",
                "GIT_CONFIG_VALUE_0": "",
                "GIT_CONFIG_KEY_1": "credential.helper",
                "GIT_CONFIG_VALUE_1": CREDENTIAL_HELPER,
                TOKEN_ENV: token,
            }
        )
    return env


class GitCheckout:
    """A working tree at ``path`` that follows ``branch`` of ``url``."""

    def __init__(
        self,
        url: str,
        path: Path,
        branch: str | None,
        token: str | None,
        secrets: list[str],
        *,
        ssh_command: str | None = None,
        shape: CloneShape | None = None,
    ):
        self.url = url
        self.path = path
        self.branch = branch
        self.shape = shape or CloneShape()
        self.env = git_environment(token, ssh_command)
        self.secrets = [s for s in secrets if s]
        self.fetched: str | None = None
        self._repo: git.Repo | None = None

    # -- helpers ----------------------------------------------------------------
    def _mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def _error(self, action: str, exc: Exception) -> GitSyncError:
        if isinstance(exc, git.GitCommandError):
            stderr = (exc.stderr or "").strip().replace("stderr: ", "").strip("'\" \n")
            detail = " ".join(line.strip() for line in stderr.splitlines() if line.strip()) or str(exc.status)
        else:
            detail = str(exc)
        return GitSyncError(self._mask(f"git {action} failed: {detail}"))

    @property
    def repo(self) -> git.Repo:
        if self._repo is None:
            self._repo = git.Repo(self.path)
            # Every command GitPython runs for this repo gets our environment.
            self._repo.git.update_environment(**self.env)
        return self._repo

    def _git(self, *args: str, at: Path | None = None) -> str:
        # GIT_DIR/GIT_WORK_TREE pin every command to this checkout: without them, a vanished
        # .git (or workspace, where GitPython falls back to the process's cwd) would let git
        # find and `checkout --force` some other repository (a parent one, or hotreload's own).
        tree = at or self.path
        env = {**os.environ, **self.env, "GIT_DIR": str(tree / ".git"), "GIT_WORK_TREE": str(tree)}
        if args[0] == "submodule":
            # Submodules' own git processes must not inherit the superproject's GIT_DIR: pinned
            # by -C instead, which fails (rather than falls back) when the tree is gone.
            del env["GIT_DIR"], env["GIT_WORK_TREE"]
            args = ("-C", str(tree), *args)
        return str(git.Git(tree).execute(["git", *args], env=env))

    # -- operations -------------------------------------------------------------
    def is_cloned(self) -> bool:
        return (self.path / ".git").exists()

    def ensure_cloned(self) -> str:
        """Clone if needed (or reuse a checkout of the same remote); return the branch followed."""
        if self.is_cloned():
            try:
                current = self.repo.remotes.origin.url
            except (AttributeError, ValueError, git.GitError):
                current = None
            if current not in (self.url, self.shape.transport_url(self.url)):
                raise GitSyncError(
                    f"{self.path} already holds a clone of another repository; "
                    "empty it or choose another WORKSPACE_PATH"
                )
            for lock in clear_stale_locks(self.path):
                say(f"[WARN] Removed {lock}, left by a git killed with an earlier poller")
        else:
            if self.path.exists() and any(self.path.iterdir()):
                raise GitSyncError(
                    f"{self.path} exists and is not empty; empty it or choose another WORKSPACE_PATH"
                )
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".cloning")
            shutil.rmtree(tmp, ignore_errors=True)
            args = ["clone", "--no-tags", "--quiet", *self.shape.clone_args()]
            if self.branch:
                args += ["--branch", self.branch]
            url = self.shape.transport_url(self.url)
            try:
                git.Git().execute(["git", *args, "--", url, str(tmp)], env={**os.environ, **self.env})
                if self.shape.sparse:
                    self._git(*self.shape.sparse_args(), at=tmp)
                if self.shape.submodules:
                    self._git(*SUBMODULE_UPDATE, at=tmp)
            except git.GitCommandError as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                raise self._error("clone", exc) from None
            # A clone lands whole or not at all: a half clone never looks like a workspace.
            if self.path.exists():
                self.path.rmdir()
            tmp.rename(self.path)
            self._repo = None
        if not self.branch:
            try:
                self.branch = self.repo.active_branch.name
            except TypeError:
                raise GitSyncError("the remote has no default branch; set GITHUB_BRANCH") from None
        self.fetched = self.local_ref()
        return self.branch

    def local_ref(self) -> str | None:
        try:
            return self._git("rev-parse", "--verify", "--quiet", f"refs/remotes/origin/{self.branch}").strip()
        except git.GitCommandError:
            return None

    def remote_head(self) -> str:
        """The commit the branch points at on the remote, without fetching objects."""
        try:
            out = self._git("ls-remote", "--heads", "origin", f"refs/heads/{self.branch}")
        except git.GitCommandError as exc:
            raise self._error("ls-remote", exc) from None
        for line in out.splitlines():
            sha, _, ref = line.partition("\t")
            if ref == f"refs/heads/{self.branch}":
                return sha
        raise GitSyncError(f"branch {self.branch} not found on the remote")

    def fetch(self) -> str:
        """Fetch the branch (force-pushes included) and return the commit it points at."""
        refspec = f"+refs/heads/{self.branch}:refs/remotes/origin/{self.branch}"
        try:
            self._git("fetch", "--quiet", "--no-tags", *self.shape.fetch_args(), "origin", refspec)
        except git.GitCommandError as exc:
            raise self._error("fetch", exc) from None
        sha = self.local_ref()
        if not sha:
            raise GitSyncError(f"branch {self.branch} not found after fetch")
        self.fetched = sha
        return sha

    def fetch_commit(self, ref: str) -> None:
        """Fetch one commit or ref that the branch does not have (a pinned tag, an old commit)."""
        try:
            # With a depth, by its sha: a shallow history may not reach it (the host must allow it).
            self._git("fetch", "--quiet", "--no-tags", *self.shape.fetch_args(), "origin", ref)
        except git.GitCommandError as exc:
            raise self._error(f"fetch {ref[:12]}", exc) from None

    def head(self) -> str | None:
        # The poller asks on every idle cycle: read .git's files (no process) when they are plain.
        fast = self._head_from_files()
        if fast is not None:
            return fast
        try:
            return self._git("rev-parse", "--verify", "--quiet", "HEAD").strip() or None
        except git.GitCommandError:
            return None

    def _head_from_files(self) -> str | None:
        return head_from_files(self.path / ".git")

    def checkout(self, commit: str) -> None:
        """Put the working tree at ``commit`` on the local branch; untracked files stay."""
        if self.head() == commit:
            return
        try:
            self._git("checkout", "--quiet", "--force", "-B", str(self.branch), commit)
        except git.GitCommandError as exc:
            raise self._error(f"checkout {commit[:7]}", exc) from None
        if self.shape.submodules:
            try:
                self._git(*SUBMODULE_SYNC)
                self._git(*SUBMODULE_UPDATE)
            except git.GitCommandError as exc:
                raise self._error(f"submodule update at {commit[:7]}", exc) from None
