"""What survives a restart: which commit is processed, which one is failing, what ran.

All of it lives in Redis under ``DeployKeys`` so the poller, the workers and the CLI
read the same facts, and a killed process leaves nothing behind in /tmp::

    tracker = CommitTracker(redis, keys)
    if tracker.processed() != head:
        ...enqueue PRE_DEPLOY for head...
    tracker.mark_processed(head)           # done by the strict policy on success
    tracker.record_failure(head, "exit code 1")
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from workers.contract import DeployKeys, JobKind
from workers.run_stats import add_run

RUN_HISTORY = 500  # runs kept in the history sorted set


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _duration(summary: dict[str, Any]) -> float | None:
    try:
        return float(summary["duration"])
    except (KeyError, TypeError, ValueError):
        return None


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
    """Reads and writes the deploy state of one instance (and the per-commit record of its deployment)."""

    def __init__(self, connection: Any, keys: DeployKeys):
        self.connection = connection
        self.keys = keys

    # -- the processed commit -------------------------------------------------
    def processed(self) -> str | None:
        return _text(self.connection.get(self.keys.processed))

    def mark_processed(self, commit: str) -> None:
        with self.connection.pipeline() as pipe:
            pipe.set(self.keys.processed, commit)
            pipe.delete(self.keys.retry)
            pipe.incr(self.keys.generation)
            pipe.execute()

    def generation(self) -> int:
        """Changes whenever the processed commit is set: part of the dedup key of the next deploy."""
        return int(_text(self.connection.get(self.keys.generation)) or 0)

    # -- the branch head as last seen by the poller ---------------------------
    def head(self) -> str | None:
        return _text(self.connection.get(self.keys.head))

    def set_head(self, commit: str) -> None:
        self.connection.set(self.keys.head, commit)

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

    def record_failure(self, commit: str, reason: str) -> RetryState:
        current = self.retry_state()
        attempts = current.attempts + 1 if current and current.commit == commit else 1
        state = RetryState(commit=commit, attempts=attempts, failed_at=time.time(), reason=reason)
        self.connection.hset(
            self.keys.retry,
            mapping={"commit": commit, "attempts": attempts, "failed_at": state.failed_at, "reason": reason},
        )
        return state

    # -- per-commit record shared by the replicas of a deployment --------------
    def commit_record(self, commit: str) -> dict[str, str]:
        raw = self.connection.hgetall(self.keys.commit_record(commit))
        return {_text(k) or "": _text(v) or "" for k, v in raw.items()}

    def record_commit_outcome(
        self,
        commit: str,
        kind: JobKind,
        outcome: str,
        run_id: str,
        attempt: int | None = None,
        reason: str | None = None,
    ) -> None:
        """The last run of ``kind`` for ``commit`` in the deployment, and this instance's own outcome.

        ``<kind>_attempt`` numbers PRE_DEPLOY attempts across replicas (their shared back-off);
        ``<kind>@<instance>`` keeps each instance's outcome (POST_DEPLOY_SCOPE=each runs on all).
        """
        with self.connection.pipeline() as pipe:
            commit_outcome_ops(pipe, self.keys, commit, kind, outcome, run_id, attempt, reason)
            pipe.execute()

    def deployed(self) -> str | None:
        """The commit of the deployment's last successful PRE_DEPLOY (any replica)."""
        return _text(self.connection.get(self.keys.deployed))

    def adopt_failure(self, commit: str, attempts: int, failed_at: float, reason: str) -> RetryState:
        """Take over the retry state of a PRE_DEPLOY another replica ran and saw fail."""
        state = RetryState(commit=commit, attempts=attempts, failed_at=failed_at, reason=reason)
        self.connection.hset(
            self.keys.retry,
            mapping={"commit": commit, "attempts": attempts, "failed_at": failed_at, "reason": reason},
        )
        return state

    def recent_commits(self, limit: int = 10) -> list[tuple[str, dict[str, str]]]:
        """The newest commits of the deployment with their records: who ran which job, how it ended."""
        commits = [_text(c) or "" for c in self.connection.zrevrange(self.keys.commits, 0, limit - 1)]
        return [(commit, self.commit_record(commit)) for commit in commits]

    # -- run history ------------------------------------------------------------
    def record_run(self, kind: JobKind, run_id: str, summary: dict[str, Any]) -> None:
        """Keep the run in the history and as the last run of its kind on this instance."""
        flat = {
            k: ("" if v is None else json.dumps(v) if isinstance(v, dict | list) else v)
            for k, v in summary.items()
        }
        with self.connection.pipeline() as pipe:
            pipe.delete(self.keys.last_run(kind))
            pipe.hset(self.keys.last_run(kind), mapping={"run_id": run_id, **flat})
            pipe.zadd(self.keys.runs, {run_id: float(summary.get("started_at") or time.time())})
            pipe.zremrangebyrank(self.keys.runs, 0, -RUN_HISTORY - 1)
            add_run(pipe, self.keys, kind, str(summary.get("outcome") or ""), _duration(summary))
            pipe.execute()

    def last_run(self, kind: JobKind) -> dict[str, str] | None:
        raw = self.connection.hgetall(self.keys.last_run(kind))
        if not raw:
            return None
        return {_text(k) or "": _text(v) or "" for k, v in raw.items()}

    def recent_run_ids(self, limit: int = 20) -> list[str]:
        return [_text(r) or "" for r in self.connection.zrevrange(self.keys.runs, 0, limit - 1)]
