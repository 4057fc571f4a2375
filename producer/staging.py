"""The staging checkout of ``DEPLOY_STRATEGY=staged``: a git worktree of the live clone, beside it.

A staged PRE_DEPLOY runs here, on the new commit, while the live workspace (and the app
watching it) stays on the live commit. The staging tree is the same repository's worktree
(``$WORKSPACE_PATH.staged``, detached HEAD, objects shared with the live clone), so the
app folder and job folders are where they are in the workspace. Before each deploy it is
reset to the commit and cleaned (what an earlier PRE_DEPLOY wrote there is gone), then the
live workspace's dependency folders are linked in: those listed in ``STAGED_SHARED_PATHS``,
else the ignored top-level directories present in the live app folder (and in the
repository root, for a monorepo), such as ``node_modules``, ``.venv`` or ``vendor``::

    staging = Staging(settings, workspace.app)
    staging.prepare(sha)         # staging.path at sha, node_modules -> the live one
    staging.app_dir              # where a staged PRE_DEPLOY of the app folder runs

The move of the live workspace after a success is decided in one place, the planner, and
POST_DEPLOY runs after it: the success transition of a staged PRE_DEPLOY makes the commit
processed and leaves it "going live" (``DeployKeys.going_live``, holding its POST_DEPLOY)
instead of telling the app and queueing POST_DEPLOY; the planner, seeing that commit,
answers ``GoLive`` before anything else; the deployer checks the commit out in the
workspace and only then ``DeployState.went_live`` tells the app and queues POST_DEPLOY, in
one step. A poller stopped between the two finds the same state at its next boot. A failed
or cancelled PRE_DEPLOY never touched the workspace, so there is nothing to put back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from producer.git_sync import GitCheckout, GitSyncError
from producer.settings import Settings

GIT_TIMEOUT = 120


class Staging:
    """``$WORKSPACE_PATH.staged``: where staged PRE_DEPLOY and FAILED_DEPLOY runs see their commit."""

    def __init__(self, settings: Settings, live: GitCheckout):
        self.live = live
        self.path = Path(str(settings.WORKSPACE_PATH) + ".staged")
        self.folder = settings.GITHUB_REPO_FOLDER
        self.shared = settings.shared_paths

    @property
    def app_dir(self) -> Path:
        return self.path / self.folder if self.folder else self.path

    def _git(self, cwd: Path, *args: str, pinned: Path | None = None) -> str:
        """git in ``cwd``; ``pinned``: GIT_DIR/GIT_WORK_TREE of that tree, so no other repository is ever found."""
        env = {**os.environ, **self.live.env}
        if pinned is not None:
            env.update(GIT_DIR=str(pinned / ".git"), GIT_WORK_TREE=str(pinned))
        try:
            out = subprocess.run(
                ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=GIT_TIMEOUT
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise GitSyncError(f"git {args[0]} failed in the staging checkout: {exc}") from None
        if out.returncode != 0:
            detail = " ".join(out.stderr.split()) or f"exit code {out.returncode}"
            raise GitSyncError(f"git {args[0]} failed in the staging checkout: {detail}")
        return out.stdout

    def _valid(self) -> bool:
        """A worktree of the live clone (a re-cloned workspace leaves it pointing at a gitdir that is gone)."""
        marker = self.path / ".git"
        if not marker.is_file():
            return False
        gitdir = marker.read_text().strip().removeprefix("gitdir:").strip()
        return Path(gitdir).is_dir() and Path(gitdir).resolve().is_relative_to(
            (self.live.path / ".git").resolve()
        )

    def prepare(self, commit: str) -> Path:
        """The staging tree at ``commit``, clean, with the shared folders linked; returns its path."""
        if not self.live.is_cloned():
            raise GitSyncError(f"no clone in {self.live.path} to stage commit {commit[:7]} from")
        try:
            if not self._valid():
                raise GitSyncError("no staging worktree")
            self._git(self.path, "checkout", "--quiet", "--detach", "--force", commit, pinned=self.path)
            self._git(self.path, "clean", "-ffdxq", pinned=self.path)
        except GitSyncError:
            self._create(commit)  # none yet, or one a killed git left locked: start it afresh
        self._link_shared()
        return self.path

    def _create(self, commit: str) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self._git(self.live.path, "worktree", "prune", pinned=self.live.path)
        self._git(
            self.live.path,
            "worktree",
            "add",
            "--quiet",
            "--detach",
            "--force",
            str(self.path),
            commit,
            pinned=self.live.path,
        )

    def _link_shared(self) -> None:
        live_app = self.live.path / self.folder if self.folder else self.live.path
        pairs: list[tuple[Path, Path]] = []
        if self.shared:
            pairs = [(live_app / rel, self.app_dir / rel) for rel in self.shared]
        else:
            bases = [(live_app, self.app_dir)]
            if self.folder:
                bases.append((self.live.path, self.path))
            for live_base, staged_base in bases:
                pairs += [(live_base / name, staged_base / name) for name in self._ignored_dirs(live_base)]
        for source, link in pairs:
            if source.exists() and not link.exists() and not link.is_symlink():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(source, target_is_directory=source.is_dir())

    def _ignored_dirs(self, base: Path) -> list[str]:
        """The ignored top-level directories of ``base`` in the live workspace (node_modules/, .venv/ ...)."""
        if not base.is_dir():
            return []
        listed = self._git(
            base,
            "ls-files",
            "--others",
            "--ignored",
            "--exclude-standard",
            "--directory",
            "-z",
            pinned=self.live.path,
        )
        names = [entry.rstrip("/") for entry in listed.split("\0") if entry.endswith("/")]
        return [name for name in names if name and "/" not in name]
