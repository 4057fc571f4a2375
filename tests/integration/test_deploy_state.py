"""The deploy state writer on a real redis-server: one outcome per run, whatever stops where.

A PRE_DEPLOY's outcome is one MULTI/EXEC: the commit live, its record, its POST_DEPLOY
queued (success), or the retry state and its FAILED_DEPLOY (failure). A stop in the middle
of the success path followed by the failure path (what the worker does for a horse killed
in its callback) must leave exactly one of the two, never both, never half.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import signal
import time

import redis
from rq import Queue

from tests.conftest import RedisServer
from workers.contract import DeployKeys, JobKind, JobSpec
from workers.deploy_state import DeployState

KEYS = DeployKeys("dep", "web-1")
LIVE, NEW = "a" * 40, "b" * 40


def spec(kind: JobKind, seq: int) -> JobSpec:
    return JobSpec(
        kind=kind,
        command="true",
        cwd="/tmp",
        timeout=10,
        commit=NEW,
        previous=LIVE,
        branch="main",
        workspace="/tmp",
        deployment=KEYS.deployment,
        instance=KEYS.instance,
        seq=seq,
    )


def pre(seq: int) -> JobSpec:
    return JobSpec.from_dict(
        {
            **spec(JobKind.PRE, seq).to_dict(),
            "post": spec(JobKind.POST, seq).to_dict(),
            "failed": spec(JobKind.FAILED, seq).to_dict(),
        }
    )


def queued(connection: redis.Redis, kind: JobKind) -> int:
    return Queue(KEYS.queue(kind), connection=connection).count


def outcome(connection: redis.Redis) -> str:
    """'succeeded' or 'failed' when the state is whole and one of them; else what is wrong."""
    state = DeployState(connection, KEYS)
    processed = state.tracker.processed()
    retry = state.tracker.retry_state()
    posts, faileds = queued(connection, JobKind.POST), queued(connection, JobKind.FAILED)
    if processed == NEW and retry is None and posts == 1 and faileds == 0:
        return "succeeded"
    if processed == LIVE and retry is not None and retry.attempts == 1 and posts == 0 and faileds == 1:
        return "failed"
    return f"inconsistent: processed={processed} retry={retry} posts={posts} failed={faileds}"


def fresh(connection: redis.Redis) -> None:
    connection.flushall()
    connection.set(KEYS.processed, LIVE)


def test_success_then_failure_of_the_same_run_keeps_the_success(redis_url):
    connection = redis.Redis.from_url(redis_url)
    fresh(connection)
    state = DeployState(connection, KEYS)
    job = pre(1)
    assert state.pre_succeeded("run-1", job) is True
    assert state.pre_failed("run-1", job, "interrupted", "was interrupted (stop requested)", None) is None
    assert outcome(connection) == "succeeded"
    assert state.tracker.commit_record(NEW)["pre_outcome"] == "succeeded"


def test_failure_then_success_of_the_same_run_keeps_the_failure(redis_url):
    connection = redis.Redis.from_url(redis_url)
    fresh(connection)
    state = DeployState(connection, KEYS)
    job = pre(1)
    assert state.pre_failed("run-1", job, "failed", "failed with exit code 1", 1) == 1
    assert state.pre_succeeded("run-1", job) is False
    assert outcome(connection) == "failed"
    failed = Queue(KEYS.queue(JobKind.FAILED), connection=connection).jobs[0]
    env = JobSpec.from_dict(failed.args[0]).extra_env
    assert env["DEPLOY_FAILED_JOB"] == "PRE_DEPLOY" and env["DEPLOY_EXIT_CODE"] == "1"


def _succeed(url: str, seq: int) -> None:
    DeployState(redis.Redis.from_url(url), KEYS).pre_succeeded(f"run-{seq}", pre(seq))


def test_a_stop_at_any_point_of_the_success_leaves_one_outcome(redis_server: RedisServer):
    server = redis_server
    context = multiprocessing.get_context("fork")
    seen: dict[str, int] = {}
    try:
        connection = redis.Redis.from_url(server.url)
        for trial in range(40):
            fresh(connection)
            child = context.Process(target=_succeed, args=(server.url, trial))
            child.start()
            time.sleep(random.uniform(0, 0.02))  # SIGKILL lands anywhere in the transition
            if child.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
            child.join(5)
            # The worker fails a run whose horse died through its policy: the failure path.
            DeployState(connection, KEYS).pre_failed(f"run-{trial}", pre(trial), "failed", "killed", None)
            result = outcome(connection)
            assert not result.startswith("inconsistent"), f"trial {trial}: {result}"
            seen[result] = seen.get(result, 0) + 1
    finally:
        connection.close()
    print(f"stop during the success transition, 40 trials: {seen}")
