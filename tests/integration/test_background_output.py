"""run_shell with a job that leaves a process running: it outlives the job and its lines still reach the log.

The "log" is a real file descriptor here, as the worker's stdout is under honcho, so
what the relay writes after ``run_shell`` returned lands in it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_runner import alive_with_args, base_env, wait_for
from workers.contract import Outcome
from workers.process_tree import find_run_processes, kill_run
from workers.runner import run_shell


@pytest.fixture
def run_id() -> Iterator[str]:
    value = f"test-{uuid.uuid4().hex}"
    yield value
    kill_run(value, grace=0.5)


def test_a_background_process_that_writes_after_the_job_keeps_running_and_its_lines_appear_prefixed(
    tmp_path: Path, run_id: str
) -> None:
    name, secret = f"hrtick-{uuid.uuid4().hex[:10]}", f"s3cr3t-{uuid.uuid4().hex}"
    # Writes a line every 0.2 s; on SIGTERM it says goodbye first.
    loop = 'trap "echo bye $TOK; exit 0" TERM; while :; do echo tick $TOK; sleep 0.2; done'
    log_path = tmp_path / "container.log"

    def log() -> str:
        return log_path.read_text()

    with open(log_path, "w") as stream:
        result = run_shell(
            f"(exec -a {name} bash -c '{loop}') & echo started",
            cwd=str(tmp_path),
            env={**base_env(), "TOK": secret},
            timeout=10,
            run_id=run_id,
            prefix="[POST-DEPLOY]",
            secrets=[secret],
            stream=stream,
        )
    assert result.outcome is Outcome.SUCCEEDED and result.exit_code == 0
    assert result.output[0] == "started"
    assert result.duration < 2.0, "the job ends when its shell does"

    # The job is over: the background process goes on writing, and its lines go on arriving.
    at_end = log().count("[POST-DEPLOY] tick ***\n")
    assert wait_for(lambda: log().count("[POST-DEPLOY] tick ***\n") >= at_end + 10, 10), log()[-500:]
    assert alive_with_args([name]) == {name}, "the background process must still be running"
    assert secret not in log()

    # Stopping the run ends it and the relay; its last words still reach the log.
    assert kill_run(run_id, grace=2) >= 2
    assert wait_for(lambda: not find_run_processes(run_id), 5), find_run_processes(run_id)
    assert "[POST-DEPLOY] bye ***\n" in log()
    assert secret not in log()
