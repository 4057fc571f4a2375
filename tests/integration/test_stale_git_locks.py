"""A poller killed mid-checkout must not block every later deploy with git's lock files."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from producer.git_sync import GitCheckout
from tests.conftest import GitRemote, run_git, wait_until


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError):
        return None


def test_reusing_a_clone_ends_orphaned_git_and_removes_its_locks(tmp_path: Path, remote: GitRemote) -> None:
    first = remote.commit({"a.txt": "1"})
    workspace = tmp_path / "ws"
    checkout = GitCheckout(remote.url, workspace, "main", None, [])
    checkout.ensure_cloned()
    second = remote.commit({"a.txt": "2"})

    # What a SIGKILLed poller leaves: its git child, orphaned and stuck in the workspace, and locks.
    stuck = tmp_path / "git-stuck"
    shutil.copy("/bin/sleep", stuck)
    subprocess.run(["setsid", "-f", str(stuck), "300"], cwd=workspace, check=True)
    pid = wait_until(
        lambda: next(
            (int(p) for p in os.listdir("/proc") if p.isdigit() and _comm(int(p)) == "git-stuck"), None
        ),
        10,
        what="the orphaned git",
    )
    wait_until(lambda: _ppid(pid) == 1, 10, what="the git to be orphaned")
    (workspace / ".git" / "index.lock").write_text("")
    (workspace / ".git" / "refs" / "heads" / "main.lock").write_text("")

    again = GitCheckout(remote.url, workspace, "main", None, [])
    again.ensure_cloned()

    assert not os.path.exists(f"/proc/{pid}/cwd"), "the orphaned git is still running in the workspace"
    assert not list((workspace / ".git").rglob("*.lock")), "stale locks left"
    again.checkout(again.fetch())
    assert run_git("rev-parse", "HEAD", cwd=workspace) == second != first


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def test_a_git_with_a_living_parent_is_left_alone(tmp_path: Path, remote: GitRemote) -> None:
    remote.commit({"a.txt": "1"})
    workspace = tmp_path / "ws"
    GitCheckout(remote.url, workspace, "main", None, []).ensure_cloned()
    busy = tmp_path / "git-busy"
    shutil.copy("/bin/sleep", busy)
    job = subprocess.Popen([str(busy), "30"], cwd=workspace)  # as a job or the app would run git
    try:
        GitCheckout(remote.url, workspace, "main", None, []).ensure_cloned()
        assert job.poll() is None, "a git run by a living process was killed"
    finally:
        job.kill()
        job.wait()
