"""Case 1: the process running a PRE_DEPLOY is SIGKILLed (as the OOM killer would) — the deploy is not lost.

The run is recorded as failed with a reason a person understands, the commit stays
unprocessed, the job's leftover processes are stopped, RQ's started registry is empty,
and the retry deploys the commit.
"""

from __future__ import annotations

import psutil
import pytest
from rq.job import Job

from tests.conftest import wait_until
from tests.faults.harness import (
    JOB_FILES,
    Marks,
    alive,
    deploy_state,
    horse_of,
    is_deployed,
    job_env,
    raw_client,
    read_pid,
    runs_of,
    set_fault,
    sigkill,
    started_registry_entries,
    wait_for_processes,
)

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

TRIALS = 5


def test_killed_work_horse_fails_the_run_and_the_retry_deploys(tmp_path, remote, stack_factory, fault_case):
    case = fault_case("1 killed work horse (SIGKILL of the PRE_DEPLOY's process)")
    marks = Marks(tmp_path)
    first = remote.commit(JOB_FILES)
    stack = stack_factory(remote, **job_env(tmp_path))
    wait_until(lambda: is_deployed(stack, marks, first), 30, what="the boot deploy")
    worker = wait_for_processes(stack)["worker"]
    pid_file = tmp_path / "faults" / "pre.pid"

    for n in range(TRIALS):
        with case.trial():
            pid_file.unlink(missing_ok=True)
            set_fault(tmp_path, "pre-hang")
            sha = remote.commit(message=f"trial {n}")
            job_pid = read_pid(pid_file)
            job_tree = [job_pid] + [p.pid for p in psutil.Process(job_pid).children(recursive=True)]
            horse = horse_of(job_pid, worker)
            sigkill(horse.pid)

            # The failure is recorded before the retry: commit unprocessed, reason readable.
            state = wait_until(
                lambda sha=sha: (s := deploy_state(stack)).retry_commit == sha and s, 10, what="the failure"
            )
            assert state.processed != sha, "a killed PRE_DEPLOY marked its commit processed"
            assert "killed by signal 9" in stack.log()
            killed_id, meta = runs_of(stack, sha)[0]
            assert Job.fetch(killed_id, connection=raw_client(stack)).get_status() == "failed"
            assert meta["outcome"] == "failed"
            assert "killed by signal 9 (out of memory, or killed by hand)" in meta["reason"]
            wait_until(lambda tree=job_tree: not any(alive(p) for p in tree), 10, what="leftovers killed")

            # With the fault gone (it was one-shot), the retry deploys the commit.
            case.expect_deployed(
                lambda sha=sha: is_deployed(stack, marks, sha), 30, what=f"retry of {sha[:7]}"
            )
            ends = marks.of("pre-end", sha)
            assert [m.attempt for m in ends] == [2], f"expected one successful retry, got {ends}"
            # The POST_DEPLOY's script may have just ended: give RQ its moment to file the run.
            wait_until(lambda: not started_registry_entries(stack), 10, what="an empty started registry")
            assert worker.is_running(), "the worker itself must survive its horse's death"

    log = stack.log()
    assert log.count("[ERROR] the process running the job was killed by signal 9") == TRIALS
    assert "Traceback" not in log
