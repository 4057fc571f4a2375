"""Case 2: the worker or the poller is SIGKILLed mid-job — the container restarts and nothing is lost.

``honcho start`` exits non-zero (the platform restarts the container); a new ``honcho
start`` against the same Redis and workspace boots, runs the boot PRE_DEPLOY of the commit
whose deploy was cut short, and the next commit deploys: no lock, registry entry or state
left by the dead process blocks anything.
"""

from __future__ import annotations

import psutil
import pytest

from tests.conftest import wait_until
from tests.faults.harness import (
    JOB_FILES,
    Marks,
    alive,
    horse_of,
    is_deployed,
    job_env,
    queue_busy,
    read_pid,
    restart,
    set_fault,
    sigkill,
    started_registry_entries,
    wait_for_processes,
)

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

# "worker+horse": the worker and its work horse die together (the OOM killer, kill -9 of both):
# nothing records the run, so the next worker must find it in RQ's started registry.
VICTIMS = ("worker", "poller", "worker+horse") * 2


def test_killed_worker_or_poller_restarts_cleanly(tmp_path, remote, stack_factory, fault_case):
    case = fault_case("2 killed worker/poller mid-job, then restart")
    marks = Marks(tmp_path)
    first = remote.commit(JOB_FILES)
    stack = stack_factory(remote, **job_env(tmp_path))
    wait_until(lambda: is_deployed(stack, marks, first), 30, what="the boot deploy")
    stacks = [stack]
    try:
        _kill_and_restart(stack, stacks, tmp_path, remote, marks, case)
    finally:
        for each in stacks:  # restarted stacks are not the fixture's: stop them here
            each.stop()


def _kill_and_restart(stack, stacks, tmp_path, remote, marks, case) -> None:
    pid_file = tmp_path / "faults" / "pre.pid"
    for n, victim in enumerate(VICTIMS):
        with case.trial():
            processes = wait_for_processes(stack)
            pid_file.unlink(missing_ok=True)
            set_fault(tmp_path, "pre-hang")
            cut_short = remote.commit(message=f"trial {n}: {victim} dies during its PRE_DEPLOY")
            job_pid = read_pid(pid_file)
            job_tree = [job_pid] + [p.pid for p in psutil.Process(job_pid).children(recursive=True)]
            if victim == "worker+horse":
                sigkill(horse_of(job_pid, processes["worker"]).pid)
            sigkill(processes[victim.split("+")[0]].pid)

            code = stack.wait_exit(30)
            assert code != 0, f"honcho exited 0 after the {victim} was killed"
            assert not any(alive(p.pid) for p in processes.values()), "a process of the dead stack survived"
            if victim != "worker+horse":  # else nothing is left to stop them before the next start
                wait_until(
                    lambda t=job_tree: not any(alive(p) for p in t), 10, what="the job's processes gone"
                )

            stack = restart(stack, tmp_path / f"restart{n}.log")
            stacks.append(stack)
            if victim == "worker+horse":
                stack.wait_for_log("left running by a stopped worker", 30)
                wait_until(lambda t=job_tree: not any(alive(p) for p in t), 10, what="the leftovers killed")
            stack.wait_for_log(f"Running the initial PRE_DEPLOY for commit {cut_short[:7]}", 30)
            case.expect_deployed(
                lambda sha=cut_short, s=stack: is_deployed(s, marks, sha), 30, what="the boot PRE_DEPLOY"
            )
            wait_until(lambda s=stack: "[APP] Starting DEV_START_COMMAND" in s.log(), 15, what="the app")
            following = remote.commit(message=f"trial {n}: next commit")
            case.expect_deployed(
                lambda sha=following, s=stack: is_deployed(s, marks, sha), 30, what="the next commit"
            )
            wait_until(lambda s=stack: not queue_busy(s), 10, what="idle queues")
            assert not started_registry_entries(stack)
            assert "Traceback" not in stack.log()
