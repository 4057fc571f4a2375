"""Which watched paths a commit changes since the live one: the planner's ``Changes``, from git diff.

``PRE_DEPLOY_WHEN_CHANGED``, ``POST_DEPLOY_WHEN_CHANGED`` and ``DEV_RESTART_WHEN_CHANGED`` are
git pathspecs relative to the app folder; a job is wanted when ``git diff --name-only
<live> <target> -- <pathspecs>`` lists a file, and always when the two cannot be compared
(no live commit: first boot; a commit not here; unrelated history: no merge base)::

    watch = ChangeWatch(settings, workspace.app)
    watch.changes(processed, target)    # Changes(pre=False, post=True, restart=False, ...)

Each pair is asked of git once (the answer is kept), so an idle or backing-off poller
spends no process on it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from producer.git_sync import GitCheckout
from producer.planner import Changes
from producer.settings import Settings
from workers.contract import JobKind

GIT_TIMEOUT = 30


def changed_paths(
    checkout: GitCheckout, cwd: Path, base: str, commit: str, pathspecs: tuple[str, ...]
) -> list[str] | None:
    """The files under ``pathspecs`` (relative to ``cwd``) that differ between the commits; None: not comparable."""
    env = {
        **os.environ,
        **checkout.env,
        "GIT_DIR": str(checkout.path / ".git"),
        "GIT_WORK_TREE": str(checkout.path),
    }
    where = cwd if cwd.is_dir() else checkout.path

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *args], cwd=where, env=env, capture_output=True, text=True, timeout=GIT_TIMEOUT
        )

    try:
        if git("merge-base", base, commit).returncode != 0:
            return None  # unrelated history (a force-push of another root), or a commit not here
        diff = git("diff", "--name-only", "--no-renames", base, commit, "--", *pathspecs)
    except (OSError, subprocess.SubprocessError):
        return None
    if diff.returncode != 0:
        return None
    return [line for line in diff.stdout.splitlines() if line]


class ChangeWatch:
    """The planner's ``Changes`` of one instance, per (live commit, target) pair."""

    def __init__(self, settings: Settings, checkout: GitCheckout):
        self.checkout = checkout
        self.app_dir = settings.app_dir
        self.pre = settings.job(JobKind.PRE).watched
        self.post = settings.job(JobKind.POST).watched
        self.restart = settings.restart_paths
        self._known: tuple[str | None, str, Changes] | None = None

    @property
    def active(self) -> bool:
        return bool(self.pre or self.post or self.restart)

    def changes(self, processed: str | None, target: str | None) -> Changes:
        if not self.active or target is None or target == processed:
            return Changes(pre_watched=self.pre)
        if self._known is not None and self._known[:2] == (processed, target):
            return self._known[2]
        found = Changes(
            pre=self._touches(self.pre, processed, target, unset=True),
            post=self._touches(self.post, processed, target, unset=True),
            restart=self._touches(self.restart, processed, target, unset=False),
            pre_watched=self.pre,
        )
        self._known = (processed, target, found)
        return found

    def _touches(self, pathspecs: tuple[str, ...], base: str | None, commit: str, unset: bool) -> bool:
        if not pathspecs:
            return unset
        if base is None:
            return True
        paths = changed_paths(self.checkout, self.app_dir, base, commit, pathspecs)
        return paths is None or bool(paths)
