"""What survives a restart: which commit is processed, which one is failing, what ran.

All of it lives in Redis under ``DeployKeys`` so the poller, the workers and the CLI
read the same facts, and a killed process leaves nothing behind in /tmp. This is the
reading side; every write goes through ``workers.deploy_state.DeployState``::

    tracker = CommitTracker(redis, keys)
    tracker.processed(), tracker.retry_state(), tracker.commit_record(sha), tracker.last_run(kind)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rq import Queue
from rq.job import Job
from rq.registry import StartedJobRegistry

from workers.contract import DeployKeys, JobKind

RUN_HISTORY = 500  # runs kept in the history sorted set


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class RetryState:
    """A commit whose PRE_DEPLOY failed: how often, when last, and why."""

    commit: str
    attempts: int
    failed_at: float
    reason: str
    cancelled: bool = False

    def next_at(self, base: float, cap: float) -> float:
        """Exponential back-off: base, 2*base, 4*base ... capped."""
        delay = min(cap, base * (2 ** max(0, self.attempts - 1)))
        return self.failed_at + delay


def commit_outcome_ops(
    pipe: Any,
    keys: DeployKeys,
    commit: str,
    kind: JobKind,
    outcome: str,
    run_id: str,
    attempt: int | None = None,
    reason: str | None = None,
) -> None:
    """Queue on ``pipe`` the writes of one job outcome in the deployment's per-commit record."""
    key = keys.commit_record(commit)
    now = time.time()
    fields: dict[str, Any] = {
        f"{kind.slug}_outcome": outcome,
        f"{kind.slug}_instance": keys.instance,
        f"{kind.slug}_run": run_id,
        f"{kind.slug}_at": now,
        f"{kind.slug}@{keys.instance}": outcome,
    }
    if attempt is not None:
        fields[f"{kind.slug}_attempt"] = attempt
    if reason is not None:
        fields[f"{kind.slug}_reason"] = reason
    pipe.hset(key, mapping=fields)
    pipe.expire(key, 30 * 24 * 3600)
    pipe.zadd(keys.commits, {commit: now}, nx=True)
    pipe.zremrangebyrank(keys.commits, 0, -RUN_HISTORY - 1)
    if kind is JobKind.PRE and outcome == "succeeded":
        pipe.set(keys.deployed, commit)


class CommitTracker:
    """Reads the deploy state of one instance (and the per-commit record of its deployment)."""

    def __init__(self, connection: Any, keys: DeployKeys):
        self.connection = connection
        self.keys = keys

    # -- the processed commit -------------------------------------------------
    def processed(self) -> str | None:
        return _text(self.connection.get(self.keys.processed))

    def busy(self) -> tuple[JobKind, str] | None:
        """The job of this instance that is queued, being dequeued or running (kind, commit), if any."""
        for kind in (JobKind.PRE, JobKind.FAILED, JobKind.POST):
            queue = Queue(self.keys.queue(kind), connection=self.connection)
            started = StartedJobRegistry(queue.name, connection=self.connection)
            with self.connection.pipeline(transaction=False) as pipe:
                pipe.lrange(queue.key, 0, 0)
                # A worker moves a job through this list between the queue and the started registry.
                pipe.lrange(queue.intermediate_queue_key, 0, 0)
                pipe.zrange(started.key, 0, 0)
                queued, moving, running = pipe.execute()
            for job_id in [*running, *moving, *queued]:
                description = _text(self.connection.hget(Job.key_for(_text(job_id) or ""), "description"))
                return kind, (description.split(" ")[1] if description else "")
        return None

    def control(self) -> dict[str, str]:
        """The deployment's steering (pause, pin), as ``producer.steering`` set it."""
        return {_text(k) or "": _text(v) or "" for k, v in self.connection.hgetall(self.keys.control).items()}

    def going_live(self) -> str | None:
        """The commit whose staged PRE_DEPLOY succeeded while the workspace still shows the one before."""
        return _text(self.connection.hget(self.keys.going_live, "commit"))

    # -- the branch head as last seen by the poller ---------------------------
    def head(self) -> str | None:
        return _text(self.connection.get(self.keys.head))

    # -- a failing commit -----------------------------------------------------
    def retry_state(self) -> RetryState | None:
        data = {_text(k): _text(v) for k, v in self.connection.hgetall(self.keys.retry).items()}
        if not data.get("commit"):
            return None
        return RetryState(
            commit=data["commit"] or "",
            attempts=int(data.get("attempts") or 0),
            failed_at=float(data.get("failed_at") or 0),
            reason=data.get("reason") or "",
            cancelled=data.get("cancelled") == "1",
        )

    # -- per-commit record shared by the replicas of a deployment --------------
    def commit_record(self, commit: str) -> dict[str, str]:
        raw = self.connection.hgetall(self.keys.commit_record(commit))
        return {_text(k) or "": _text(v) or "" for k, v in raw.items()}

    def deployed(self) -> str | None:
        """The commit of the deployment's last successful PRE_DEPLOY (any replica)."""
        return _text(self.connection.get(self.keys.deployed))

    def recent_commits(self, limit: int = 10) -> list[tuple[str, dict[str, str]]]:
        """The newest commits of the deployment with their records: who ran which job, how it ended."""
        commits = [_text(c) or "" for c in self.connection.zrevrange(self.keys.commits, 0, limit - 1)]
        return [(commit, self.commit_record(commit)) for commit in commits]

    # -- run history ------------------------------------------------------------
    def last_run(self, kind: JobKind) -> dict[str, str] | None:
        raw = self.connection.hgetall(self.keys.last_run(kind))
        if not raw:
            return None
        return {_text(k) or "": _text(v) or "" for k, v in raw.items()}

    def recent_run_ids(self, limit: int = 20) -> list[str]:
        return [_text(r) or "" for r in self.connection.zrevrange(self.keys.runs, 0, limit - 1)]
