"""Per-job overhead: a PRE_DEPLOY of ``true`` through the whole path against ``bash -c true``.

The path is the product's: ``DeployState.enqueue`` (dedup key, RQ job with the strict
policy's callbacks) -> the running ``hotreload worker`` dequeues it, forks a work horse,
``run_deploy_job`` checks the workspace, ``run_shell`` runs ``bash -c true``, the outcome is
stored, the strict policy marks the commit processed, and the worker wakes the poller.
The clock stops at that wake-up, the last thing the worker does for a job::

    timing = measure_job_overhead(root, remote, server, trials=30)
    timing.path, timing.direct          # seconds per trial
"""

from __future__ import annotations

import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rq.job import Job

from bench.stack import VENV_BIN, BenchError, GitRemote, RedisServer, run_git, stack_env, wait_until
from workers.contract import DeployKeys, JobKind, JobSpec
from workers.deploy_state import DeployState
from workers.redis_connection import blpop, connect

KEYS = DeployKeys("bench-overhead", "bench")


@dataclass
class JobTiming:
    path: list[float] = field(default_factory=list)
    direct: list[float] = field(default_factory=list)
    #: Medians of where the path's time goes (seconds), from the RQ job's own timestamps.
    breakdown: dict[str, float] = field(default_factory=dict)


def _direct(trials: int) -> list[float]:
    times = []
    for _ in range(trials):
        start = time.perf_counter()
        subprocess.run(["bash", "-c", "true"], check=True)
        times.append(time.perf_counter() - start)
    return times


def measure_job_overhead(root: Path, remote: GitRemote, server: RedisServer, trials: int) -> JobTiming:
    workspace = root / "ws-overhead"
    run_git("clone", "--quiet", remote.url, str(workspace), cwd=root)
    commit = run_git("rev-parse", "HEAD", cwd=workspace)
    env = stack_env(remote, workspace, server.url, DEPLOYMENT_ID=KEYS.deployment, INSTANCE_ID=KEYS.instance)
    log_path = root / "overhead-worker.log"
    with open(log_path, "ab") as log:
        worker = subprocess.Popen(
            [str(VENV_BIN / "hotreload"), "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    connection = connect(server.url)
    queue = DeployState(connection, KEYS)
    timing = JobTiming()
    parts: dict[str, list[float]] = {"queued": [], "in_work_horse": [], "command": [], "after_horse": []}
    try:
        wait_until(lambda: "listening on" in log_path.read_text(), 30, "the worker to listen", 0.02)

        def one(attempt: int) -> tuple[float, Job]:
            spec = JobSpec(
                kind=JobKind.PRE,
                command="true",
                cwd=str(workspace),
                timeout=60,
                commit=commit,
                previous=None,
                branch=remote.branch,
                workspace=str(workspace),
                deployment=KEYS.deployment,
                instance=KEYS.instance,
                attempt=attempt,
            )
            connection.delete(KEYS.commands)
            start = time.perf_counter()
            job = queue.enqueue(spec)
            # The worker's wake-up comes after the outcome, the policy and RQ's bookkeeping.
            woke = blpop(connection, [KEYS.commands], timeout=30)
            elapsed = time.perf_counter() - start
            if job is None or woke is None:
                raise BenchError(f"job {attempt} did not run:\n{log_path.read_text()[-2000:]}")
            job.refresh()
            if job.meta.get("outcome") != "succeeded":
                raise BenchError(f"job {attempt} ended {job.meta.get('outcome')}: {job.meta.get('reason')}")
            return elapsed, job

        for warm_up in range(2):  # first fork and imports in the horse are not steady state
            one(1000 + warm_up)
        timing.direct = _direct(trials)
        for attempt in range(1, trials + 1):
            elapsed, job = one(attempt)
            timing.path.append(elapsed)
            assert job.enqueued_at and job.started_at and job.ended_at
            parts["queued"].append((job.started_at - job.enqueued_at).total_seconds())
            parts["in_work_horse"].append((job.ended_at - job.started_at).total_seconds())
            parts["command"].append(float(job.meta.get("duration") or 0.0))
            parts["after_horse"].append(elapsed - (job.ended_at - job.enqueued_at).total_seconds())
        timing.breakdown = {k: round(statistics.median(v), 6) for k, v in parts.items()}
    finally:
        worker.terminate()
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(5)
        connection.close()
    return timing


def details(timing: JobTiming) -> dict[str, Any]:
    return {
        "breakdown_median_s": timing.breakdown,
        "breakdown_meaning": {
            "queued": "RQ enqueued_at -> started_at (dequeue, fork of the work horse, set-up)",
            "in_work_horse": "started_at -> ended_at (run_deploy_job: skip checks, run_shell, outcome)",
            "command": "run_shell's own duration of bash -c true",
            "after_horse": "ended_at -> the worker's wake-up seen by the bench (callbacks, registries)",
        },
    }
