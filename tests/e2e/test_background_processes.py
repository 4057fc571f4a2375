"""A POST_DEPLOY that starts a process in the background (the guide's "launch queue workers"),
on the real Procfile under honcho: the process outlives the job, its lines keep reaching the
container log with the job's prefix and secrets masked, and stopping the stack ends it.
"""

from __future__ import annotations

import signal
import time
import uuid

import pytest

from tests.conftest import GitRemote, wait_until
from tests.e2e.test_jobs_and_app import JOB_FILES, KEYS, client, job_env, marker_processes, stack_processes
from workers.commit_tracker import CommitTracker
from workers.contract import JobKind
from workers.process_tree import find_run_processes

pytestmark = pytest.mark.e2e

# A "queue worker": one line every 0.2 s, with a secret in it, until it is stopped.
POST_SH = (
    '(exec -a "$MARKER-tick" bash -c \'while true; do echo "tick $BG_TOKEN"; sleep 0.2; done\') &\n'
    'echo "queue worker started"\n'
)
TICK = "[POST-DEPLOY] tick ***"


def test_a_post_deploy_background_worker_keeps_running_and_logging_until_the_stack_stops(
    tmp_path, remote: GitRemote, stack_factory
):
    marker, secret = f"hrbg-{uuid.uuid4().hex[:10]}", f"whsec-{uuid.uuid4().hex}"
    commit = remote.commit({**JOB_FILES, "post.sh": POST_SH})
    stack = stack_factory(
        remote,
        MARKER=marker,
        BG_TOKEN=secret,
        GITHUB_WEBHOOK_SECRET=secret,  # makes it one of the stack's secrets, masked in every log line
        **job_env(tmp_path, POST_DEPLOY_COMMAND="bash post.sh"),
    )
    stack.wait_for_log(f"[POST-DEPLOY] ✓ Job succeeded for commit {commit[:7]}", 40)
    run = CommitTracker(client(stack), KEYS).last_run(JobKind.POST)
    assert run is not None and run["outcome"] == "succeeded", "the job's outcome is unchanged"

    # The job is over; its background worker goes on, and so do its lines in the container log.
    ticks = stack.log().count(TICK)
    stack.wait_for_log(TICK, 15, count=ticks + 15)  # 3 s of ticks after the job ended
    assert marker_processes(marker), "the background worker must outlive its job"
    assert secret not in stack.log()

    # Stopping the stack (SIGTERM to honcho, as a container runtime does) ends it, and its relay.
    started = time.monotonic()
    stack.terminate()
    assert stack.wait_exit(15) == 128 + signal.SIGTERM
    wait_until(lambda: not stack_processes(stack), 10, what="every process of the stack to end")
    wait_until(lambda: not find_run_processes(run["run_id"]), 5, what="the job's leftovers to end")
    elapsed = time.monotonic() - started
    assert not marker_processes(marker), "the background worker survived the stop"
    log = stack.log()
    assert "sending SIGKILL" not in log, "honcho had to kill a process"
    assert "background process(es) left by deploy jobs" in log
    print(f"stack stop with a background worker running: {elapsed:.2f}s")
