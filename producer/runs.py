"""The run history for ``hotreload jobs`` and ``hotreload logs``: recent runs and their kept output.

A run is an RQ job; the worker keeps its summary and output in ``job.meta`` and its id in
the deployment's history (``DeployKeys.runs``). Jobs still waiting or running on this
instance's queues are listed first::

    for run in recent_runs(redis, keys, limit=20):
        print(run.id, run.kind, run.outcome)
    run = find_run(redis, keys, "pre-b2a1")     # exact id, or a part of one recent id
    print("\\n".join(run.output))
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import StartedJobRegistry

from workers.commit_tracker import CommitTracker
from workers.contract import DeployKeys

_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,200}")


class UnknownRun(Exception):
    """No run (or more than one) matches what the user typed; the message says which."""


@dataclass
class Run:
    """One run of a deploy job as the CLI shows it."""

    id: str
    kind: str
    commit: str
    outcome: str
    exit_code: int | None
    started_at: float | None
    duration: float | None
    reason: str
    instance: str
    description: str
    output: list[str] = field(default_factory=list)


def _run(job: Job) -> Run:
    meta = job.get_meta(refresh=False) or {}
    spec = job.args[0] if job.args and isinstance(job.args[0], dict) else {}
    status = job.get_status(refresh=False)
    outcome = str(meta.get("outcome") or "")
    if outcome in ("", "queued") and status is not None:
        outcome = {"deferred": "waiting", "canceled": "canceled"}.get(str(status.value), outcome or "queued")
    return Run(
        id=job.id,
        kind=str(meta.get("kind") or spec.get("kind") or "?"),
        commit=str(meta.get("commit") or spec.get("commit") or ""),
        outcome=outcome or "?",
        exit_code=meta.get("exit_code"),
        started_at=meta.get("started_at"),
        duration=meta.get("duration") if outcome != "running" else None,
        reason=str(meta.get("reason") or ""),
        instance=str(meta.get("instance") or spec.get("instance") or ""),
        description=job.description or "",
        output=[str(line) for line in meta.get("output") or []],
    )


def _live_ids(connection: Any, keys: DeployKeys) -> list[str]:
    """Jobs of this instance running or waiting now: running first, then in queue order."""
    started: list[str] = []
    queued: list[str] = []
    for name in keys.queues():
        started += StartedJobRegistry(name, connection=connection).get_job_ids(cleanup=False)
        queued += [i.decode() for i in connection.lrange(f"rq:queue:{name}", 0, -1)]
    return started + queued


def recent_runs(connection: Any, keys: DeployKeys, limit: int = 20) -> list[Run]:
    """Runs newest first: this instance's running and waiting jobs, then the finished ones."""
    ids: list[str] = []
    for run_id in _live_ids(connection, keys) + CommitTracker(connection, keys).recent_run_ids(limit):
        if run_id not in ids:
            ids.append(run_id)
    jobs = Job.fetch_many(ids[:limit], connection=connection)
    return [_run(job) for job in jobs if job is not None]


def find_run(connection: Any, keys: DeployKeys, wanted: str) -> Run:
    """The run with id ``wanted``, or the one recent run whose id contains it."""
    wanted = wanted.strip()
    if not wanted:
        raise UnknownRun("no run id given (see hotreload jobs)")
    if _ID_RE.fullmatch(wanted):
        try:
            return _run(Job.fetch(wanted, connection=connection))
        except NoSuchJobError:
            pass
    candidates = [
        run_id
        for run_id in _live_ids(connection, keys) + CommitTracker(connection, keys).recent_run_ids(500)
        if wanted in run_id
    ]
    candidates = list(dict.fromkeys(candidates))
    if len(candidates) > 1:
        shown = ", ".join(candidates[:5])
        raise UnknownRun(f"{wanted!r} matches {len(candidates)} runs ({shown}...); give more of the id")
    if candidates:
        try:
            return _run(Job.fetch(candidates[0], connection=connection))
        except NoSuchJobError:
            raise UnknownRun(f"run {candidates[0]} has expired (runs are kept 7 days)") from None
    raise UnknownRun(f"no run {wanted!r} (see hotreload jobs for the recent runs)")
