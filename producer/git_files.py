"""What git keeps in a checkout's ``.git``, read or repaired without a git process: HEAD, stale locks."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def _is_sha(text: str) -> bool:
    return len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text)


def head_from_files(git_dir: Path) -> str | None:
    """HEAD as git resolves it (loose ref, then packed-refs); None when in doubt, to ask git."""
    try:
        head = (git_dir / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head if _is_sha(head) else None
        ref = head[len("ref: ") :]
        if not ref.startswith("refs/") or ".." in ref:
            return None
        loose = git_dir / ref
        if loose.is_file():
            sha = loose.read_text().strip()
            return sha if _is_sha(sha) else None
        for line in (git_dir / "packed-refs").read_text().splitlines():
            sha, _, name = line.partition(" ")
            if name == ref:
                return sha if _is_sha(sha) else None
    except (OSError, UnicodeDecodeError):
        return None
    return None


def clear_stale_locks(path: Path) -> list[str]:
    """Before reusing a clone: end orphaned git processes in it and remove the locks they left.

    A poller killed mid-checkout leaves its git child behind (re-parented to init) and,
    once that dies, ``index.lock`` or a ref lock that fails every later git command.
    Only orphans are ended: a git run by a job or the app has a living parent.
    """
    workspace = str(path.resolve())
    killed: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            cwd = os.readlink(f"/proc/{entry.name}/cwd")
            with open(f"/proc/{entry.name}/comm") as handle:
                comm = handle.read().strip()
        except OSError:
            continue
        orphan = fields[1] == "1"
        if orphan and comm.startswith("git") and (cwd == workspace or cwd.startswith(workspace + "/")):
            with contextlib.suppress(OSError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
    deadline = time.monotonic() + 2.0
    while killed and time.monotonic() < deadline:
        killed = [pid for pid in killed if os.path.exists(f"/proc/{pid}/cwd")]
        time.sleep(0.02)
    gitdir = path / ".git"
    removed = []
    for lock in [*gitdir.glob("*.lock"), *gitdir.glob("refs/**/*.lock")]:
        with contextlib.suppress(OSError):
            lock.unlink()
            removed.append(str(lock))
    return removed
