"""Case 3: the external Redis goes away for 10 s, while idle and while a job runs — nothing crashes or is lost.

The poller, the worker and the app supervisor keep their processes (no restart), use
little CPU while Redis is gone (no spinning) and log the outage a bounded number of
times; the app answers HTTP throughout; after Redis returns, a commit pushed during the
outage deploys, and the job that was running during the outage is recorded or run again.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import Stack, free_port, stack_env, wait_until
from tests.faults.harness import (
    JOB_FILES,
    Marks,
    PersistentRedis,
    cpu_seconds,
    is_deployed,
    job_env,
    runs_of,
    set_fault,
    wait_for_processes,
)

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

OUTAGE = 10.0
# Generous: an idle process uses well under 0.1 s of CPU in 10 s; a spinning one uses ~10 s.
MAX_CPU_DURING_OUTAGE = 2.0
# "Logged once" per process and outage, give or take a line for the job that was cut.
MAX_OUTAGE_LINES = 8


def get(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except OSError:
        return None


def outage(
    redis_server: PersistentRedis,
    stack: Stack,
    app_url: str | None,
    during=None,
    lose_data: bool = False,
    seconds: float = OUTAGE,
) -> dict:
    """Stop Redis for ``seconds``, probing the app (unless None) and the health endpoint every 0.5 s."""
    procs = wait_for_processes(stack)
    pids = {name: proc.pid for name, proc in procs.items()}
    cpu_before = cpu_seconds(list(procs.values()))
    log_before = len(stack.log())
    redis_server.stop(lose_data=lose_data)
    started = time.monotonic()
    app_answers, health_answers, probes = 0, 0, 0
    health_url = f"http://127.0.0.1:{stack.env['DEV_HEALTH_PORT']}/dev_health"
    did_during = False
    while time.monotonic() - started < seconds:
        probes += 1
        app_answers += app_url is None or get(app_url) == 200
        health_answers += get(health_url) == 200
        if during is not None and not did_during and time.monotonic() - started > seconds / 3:
            during()
            did_during = True
        time.sleep(0.5)
    cpu = cpu_seconds(list(procs.values())) - cpu_before
    redis_server.start()
    assert stack.process is not None and stack.process.poll() is None, (
        f"the stack stopped during the Redis outage:\n{stack.log()[-3000:]}"
    )
    alive_now = {name: proc.pid for name, proc in wait_for_processes(stack).items()}
    return {
        "pids_kept": alive_now == pids,
        "cpu": cpu,
        "app": (app_answers, probes),
        "health": (health_answers, probes),
        "log": stack.log()[log_before:],
    }


def test_redis_outages_while_idle_and_during_a_job(tmp_path: Path, remote, fault_case):
    case = fault_case("3 Redis outage (boot 5 s, idle 10 s, job 10 s, job + data loss 5 s, stop during one)")
    marks = Marks(tmp_path)
    redis_server = PersistentRedis(tmp_path / "redis-data", free_port())
    redis_server.start()
    app_port = free_port()
    first = remote.commit(JOB_FILES)
    env = stack_env(
        remote, tmp_path / "workspace", redis_server.url, **job_env(tmp_path, APP_PORT=str(app_port))
    )
    set_fault(tmp_path, "pre-sleep", "4")
    stack = Stack(env, tmp_path / "stack.log").start()
    app_url = f"http://127.0.0.1:{app_port}/"
    try:
        # 0. Redis goes away (5 s) while the poller waits for the boot PRE_DEPLOY.
        with case.trial():
            wait_until(lambda: marks.of("pre-start", first), 30, what="the boot PRE_DEPLOY to start")
            seen = outage(redis_server, stack, None, seconds=OUTAGE / 2)
            _check_survived(seen, "outage during the boot PRE_DEPLOY")
            set_fault(tmp_path, "pre-sleep", "0")
            case.expect_deployed(lambda: is_deployed(stack, marks, first), 40, what="the boot deploy")
            wait_until(lambda: get(app_url) == 200, 15, what="the app to serve")

        # 1. Idle; a commit is pushed while Redis is away.
        with case.trial():
            pushed: list[str] = []
            seen = outage(redis_server, stack, app_url, during=lambda: pushed.append(remote.commit()))
            _check_survived(seen, "idle outage")
            case.expect_deployed(
                lambda: is_deployed(stack, marks, pushed[0]), 40, what="the commit pushed during the outage"
            )

        # 2. A PRE_DEPLOY runs (6 s) when Redis goes away; it ends while Redis is still away.
        with case.trial():
            set_fault(tmp_path, "pre-sleep", "6")
            during_job = remote.commit()
            wait_until(lambda: marks.of("pre-start", during_job), 15, what="the PRE_DEPLOY to start")
            seen = outage(redis_server, stack, app_url)
            _check_survived(seen, "outage during a job")
            set_fault(tmp_path, "pre-sleep", "0")
            case.expect_deployed(
                lambda: is_deployed(stack, marks, during_job), 60, what="the cut job's commit"
            )
            # Recorded or run again, never silently lost: every run of that commit has a final outcome.
            runs = [meta for _, meta in runs_of(stack, during_job)]
            assert runs, "the run cut by the outage is nowhere in the run history"
            assert all(r.get("outcome") not in (None, "", "running", "queued") for r in runs), runs
            ran = len(marks.of("pre-start", during_job))
            case.note(f"job cut by the outage: {ran} run(s), outcomes {[r.get('outcome') for r in runs]}")

        # 3. The same (5 s), but Redis comes back empty (no volume): the deploy state is gone with it.
        with case.trial():
            set_fault(tmp_path, "pre-sleep", "6")
            during_job = remote.commit()
            wait_until(lambda: marks.of("pre-start", during_job), 15, what="the PRE_DEPLOY to start")
            seen = outage(redis_server, stack, app_url, lose_data=True, seconds=OUTAGE / 2)
            _check_survived(seen, "outage with data loss during a job")
            set_fault(tmp_path, "pre-sleep", "0")
            case.expect_deployed(
                lambda: is_deployed(stack, marks, during_job), 60, what="the cut job's commit"
            )
            ran = len(marks.of("pre-start", during_job))
            case.note(f"job cut by an outage losing Redis' data: {ran} run(s)")

        # 4. Stopped while Redis is away and a job runs: every process ends on its own, well before
        #    honcho would SIGKILL them.
        with case.trial():
            set_fault(tmp_path, "pre-sleep", "30")
            cut = remote.commit()
            wait_until(lambda: marks.of("pre-start", cut), 15, what="the PRE_DEPLOY to start")
            redis_server.stop()
            time.sleep(1)  # let the processes notice the outage
            stopping = time.monotonic()
            stack.terminate()
            assert stack.wait_exit(20) is not None
            took = time.monotonic() - stopping
            assert took < 8, f"stopping during an outage took {took:.1f}s"
            assert "SIGKILL" not in stack.log(), stack.log()[-3000:]
            case.note(f"stopped during an outage in {took:.1f}s")

        log = stack.log()
        assert "Traceback" not in log, log[-3000:]
    finally:
        stack.stop()
        redis_server.stop()


def _check_survived(seen: dict, what: str) -> None:
    assert seen["pids_kept"], f"a process of the stack restarted during the {what}"
    assert seen["cpu"] < MAX_CPU_DURING_OUTAGE, f"{seen['cpu']:.2f}s of CPU during the {what}: spinning"
    answered, probes = seen["app"]
    assert answered == probes, f"the app answered {answered}/{probes} probes during the {what}"
    answered, probes = seen["health"]
    assert answered == probes, f"/dev_health answered {answered}/{probes} probes during the {what}"
    lines = [line for line in seen["log"].splitlines() if "redis" in line.lower()]
    assert len(lines) <= MAX_OUTAGE_LINES, "the outage is logged over and over:\n" + "\n".join(lines)
