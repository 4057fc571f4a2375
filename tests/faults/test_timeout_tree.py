"""Case 4: a PRE_DEPLOY that starts `sleep 300 &`, a setsid child and a plain child, then hangs, on the real stack.

After its timeout no process it started is alive — checked by process group, by session
and by a marker in the command line — also when every child ignores SIGTERM and when
some double-fork or ``setsid -f`` away; and the retry deploys the commit.
(tests/integration/test_runner.py covers the runner alone.)
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import psutil
import pytest

from tests.conftest import wait_until
from tests.faults.harness import JOB_FILES, TREE_MARKER, Marks, is_deployed, job_env, runs_of, set_fault

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

VARIANTS = ("plain", "stubborn", "orphans")
TIMEOUT = 2


def survivors(pgid: int, sids: set[int], pids: set[int], marker: str) -> list[str]:
    """Live processes in the job's process group or sessions, recorded by it, or with its marker."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmdline = " ".join(proc.info["cmdline"] or [])
            pid = proc.info["pid"]
            if os_pgid(pid) == pgid or os_sid(pid) in sids or pid in pids or marker in cmdline:
                found.append(f"{pid} {cmdline}")
    return found


def os_pgid(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        return os.getpgid(pid)
    return None


def os_sid(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        return os.getsid(pid)
    return None


def test_timeout_kills_every_process_the_job_started(tmp_path: Path, remote, stack_factory, fault_case):
    case = fault_case("4 timeout kills the whole tree (bg, setsid, plain; stubborn; orphans)")
    marks = Marks(tmp_path)
    first = remote.commit(JOB_FILES)
    stack = stack_factory(remote, **job_env(tmp_path, PRE_DEPLOY_TIMEOUT=str(TIMEOUT)))
    wait_until(lambda: is_deployed(stack, marks, first), 30, what="the boot deploy")

    for variant in VARIANTS:
        with case.trial():
            sha = _tree_times_out(stack, remote, tmp_path, variant)
            case.expect_deployed(lambda sha=sha: is_deployed(stack, marks, sha), 30, what="the retry")


def _tree_times_out(stack, remote, tmp_path: Path, variant: str) -> str:
    """Push a commit whose PRE_DEPLOY starts the tree and hangs; check nothing of it outlives the timeout."""
    faults = tmp_path / "faults"
    for name in ("tree.pids", "tree.ids"):
        (faults / name).unlink(missing_ok=True)
    timeouts = stack.log().count(f"Job timed out after {TIMEOUT}s")
    set_fault(tmp_path, "pre-tree", variant)
    sha = remote.commit(message=f"tree {variant}")
    marker = f"{TREE_MARKER}-{sha}"
    ids = wait_until(lambda: (faults / "tree.ids").exists() and (faults / "tree.ids").read_text(), 15)
    pgid, sid = (int(x) for x in ids.split())
    pids = {int(p) for p in (faults / "tree.pids").read_text().split()}
    setsid_sids = {s for s in (os_sid(p) for p in pids) if s is not None} - {sid}

    def alive() -> list[str]:
        return survivors(pgid, {sid} | setsid_sids, pids, marker)

    # The checks must see the tree while it runs, or they prove nothing.
    running = wait_until(lambda: len(alive()) >= 4, 5, what="the tree running")
    assert setsid_sids, f"expected the setsid child in a session of its own: {running}"
    if variant == "orphans":
        wait_until(lambda: sum(marker in line for line in alive()) >= 4, 5, what="the orphans running")

    stack.wait_for_log(f"Job timed out after {TIMEOUT}s", 15, count=timeouts + 1)
    wait_until(lambda: not alive(), 3, what=f"every process of the tree to be gone: {alive()}")
    runs = wait_until(lambda: runs_of(stack, sha), 5, what="the run recorded")
    assert runs[0][1].get("outcome") == "timed_out", runs
    return sha
