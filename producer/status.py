"""What ``GET /status`` and ``hotreload status`` show: the deploy state of one instance, from Redis.

The poller keeps a status hash (state, branch, checked-out commit, sync failures), the
``CommitTracker`` the processed commit, the failing commit and the last run of each job
kind; the RQ registries say which job runs right now. This module puts them together in
one place, so the HTTP server and the CLI can never disagree::

    status = deploy_status(redis, settings.keys, secrets=settings.secret_values())
    status["state"]                         # "running"
    status["last_runs"]["PRE_DEPLOY"]       # {"commit": ..., "outcome": "succeeded", ...}
    print(render_table(status))

No value here is a secret: nothing secret is written to Redis, and every text that came
from a command or an error is masked with ``secrets`` once more on the way out.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from rq.registry import StartedJobRegistry

from workers.commit_tracker import CommitTracker
from workers.contract import DeployKeys, JobKind
from workers.lease import Holder

#: States the poller reports, in the words of the issue and the README.
STATES = ("not_started", "starting", "cloning", "pre_deploy", "running", "post_deploy", "failed", "waiting")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def iso(value: Any) -> str | None:
    """An epoch time (number or numeric text) as ISO 8601 UTC, None when unset."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    if seconds <= 0:
        return None
    moment = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    number = _float(value)
    return None if number is None else int(number)


def mask(text: str | None, secrets: list[str] | tuple[str, ...]) -> str | None:
    if not text:
        return None
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def run_view(run: dict[str, str] | None, secrets: list[str] | tuple[str, ...] = ()) -> dict[str, Any] | None:
    """One run as shown to a person: commit, outcome, exit code, start, duration."""
    if not run:
        return None
    return {
        "run_id": run.get("run_id") or None,
        "commit": run.get("commit") or None,
        "outcome": run.get("outcome") or None,
        "exit_code": _int(run.get("exit_code")),
        "started_at": iso(run.get("started_at")),
        "duration": _float(run.get("duration")),
        "attempt": _int(run.get("attempt")),
        "reason": mask(run.get("reason"), secrets),
        "instance": run.get("instance") or None,
    }


def commit_view(commit: str, record: dict[str, str]) -> dict[str, Any]:
    """Replicas: per job kind, which instance ran it for ``commit`` and how it ended (``{"web-2": "succeeded"}``)."""
    jobs: dict[str, dict[str, str]] = {}
    for kind in JobKind:
        ran = {field.split("@", 1)[1]: v for field, v in record.items() if field.startswith(f"{kind.slug}@")}
        if ran:
            jobs[kind.value] = dict(sorted(ran.items()))
    return {
        "commit": commit,
        "jobs": jobs,
        "pre_deploy_attempts": _int(record.get(f"{JobKind.PRE.slug}_attempt")),
        "pre_deploy_at": iso(record.get(f"{JobKind.PRE.slug}_at")),
    }


def _live_state(connection: Any, keys: DeployKeys, state: str) -> str:
    """The poller writes its state when it decides; which job runs right now refines it."""
    if state not in ("pre_deploy", "post_deploy", "running"):
        return state  # starting, cloning, failed: only the poller knows when they end
    with connection.pipeline(transaction=False) as pipe:
        for kind in (JobKind.PRE, JobKind.POST):
            name = keys.queue(kind)
            pipe.llen(f"rq:queue:{name}")
            pipe.zcard(StartedJobRegistry(name, connection=connection).key)
        pre_queued, pre_started, post_queued, post_started = (int(n) for n in pipe.execute())
    if pre_queued or pre_started:
        return "pre_deploy"
    if post_queued or post_started:
        return "post_deploy"
    return state


def deploy_status(
    connection: Any, keys: DeployKeys, secrets: list[str] | tuple[str, ...] = ()
) -> dict[str, Any]:
    """The deploy state of one instance as a JSON-ready dict (raises redis.RedisError when unreachable)."""
    raw = {_text(k): _text(v) for k, v in connection.hgetall(keys.status).items()}
    tracker = CommitTracker(connection, keys)
    processed = tracker.processed()
    retry = tracker.retry_state()
    sync_failures = _int(raw.get("sync_failures")) or 0
    state = _live_state(connection, keys, raw.get("state") or "not_started")
    failing = None
    if retry and retry.commit != processed:
        failing = {
            "commit": retry.commit,
            "attempts": retry.attempts,
            "failed_at": iso(retry.failed_at),
            "reason": mask(retry.reason, secrets),
            "next_retry": iso(raw.get("next_retry")),
        }
    return {
        "deployment": keys.deployment,
        "instance": keys.instance,
        "state": state,
        "branch": raw.get("branch") or None,
        "checked_out": raw.get("checked_out") or None,
        "processed": processed,
        "head": tracker.head(),
        "sync_failures": sync_failures,
        "next_sync_retry": iso(raw.get("next_sync")) if sync_failures else None,
        "last_error": mask(raw.get("last_error"), secrets)
        if sync_failures or state in ("cloning", "failed")
        else None,
        "failing_commit": failing,
        "next_retry": iso(raw.get("next_retry")) if failing else None,
        "last_runs": {kind.value: run_view(tracker.last_run(kind), secrets) for kind in JobKind},
        "updated_at": iso(raw.get("updated_at")),
        # Shared by the replicas of the deployment: who holds the PRE_DEPLOY lease, who ran what.
        "pre_deploy_lease": _lease_view(connection.get(keys.lease(JobKind.PRE))),
        "commits": [commit_view(c, record) for c, record in tracker.recent_commits(10)],
        "steering": steering_view(connection, keys, tracker.head(), processed),
    }


def steering_view(
    connection: Any, keys: DeployKeys, head: str | None, processed: str | None
) -> dict[str, Any]:
    """The deployment's steering (``hotreload pause``/``pin``/``rollback``): what holds, who asked, when."""
    control = {_text(k): _text(v) for k, v in connection.hgetall(keys.control).items()}
    paused = control.get("paused") == "1"
    pin = None
    if control.get("pin"):
        pin = {
            "commit": control["pin"],
            "ref": control.get("pin_ref") or None,
            "rollback": control.get("pin_rollback") == "1",
            "by": control.get("pin_by") or None,
            "at": iso(control.get("pin_at")),
        }
    return {
        "paused": paused,
        "paused_by": control.get("paused_by") if paused else None,
        "paused_at": iso(control.get("paused_at")) if paused else None,
        # The head that waits while deploys are paused.
        "waiting_head": head if paused and head and head != processed and pin is None else None,
        "pin": pin,
    }


def _lease_view(value: Any) -> dict[str, str] | None:
    holder = Holder.parse(value)
    return {"instance": holder.instance, "commit": holder.commit} if holder else None


def _short(commit: Any) -> str:
    return str(commit)[:7] if commit else "-"


def _run_line(run: dict[str, Any] | None) -> str:
    if not run:
        return "never ran"
    parts = [_short(run.get("commit")), str(run.get("outcome") or "-")]
    if run.get("exit_code") is not None:
        parts.append(f"exit {run['exit_code']}")
    if run.get("started_at"):
        parts.append(f"at {run['started_at']}")
    if run.get("duration") is not None:
        parts.append(f"{run['duration']:.2f}s")
    return ", ".join(parts)


def render_table(status: dict[str, Any]) -> str:
    """``hotreload status`` without --json: one aligned line per fact."""
    rows: list[tuple[str, str]] = [
        ("Deployment", f"{status['deployment']} (instance {status['instance']})"),
        ("State", str(status["state"])),
        ("Branch", status["branch"] or "-"),
        ("Checked out", status["checked_out"] or "-"),
        ("Processed", status["processed"] or "-"),
        ("Sync failures", str(status["sync_failures"])),
    ]
    if status.get("next_sync_retry"):
        rows.append(("Next sync", status["next_sync_retry"]))
    if status.get("last_error"):
        rows.append(("Last error", status["last_error"]))
    failing = status.get("failing_commit")
    if failing:
        rows.append(
            (
                "Failing commit",
                f"{_short(failing['commit'])} ({failing['attempts']} attempt(s): {failing['reason']})",
            )
        )
        rows.append(("Next retry", failing.get("next_retry") or "-"))
    steering = status.get("steering") or {}
    if steering.get("paused"):
        waits = f"; commit {_short(steering['waiting_head'])} waits" if steering.get("waiting_head") else ""
        rows.append(
            ("Paused", f"by {steering.get('paused_by') or '?'} at {steering.get('paused_at') or '-'}{waits}")
        )
    if steering.get("pin"):
        pin = steering["pin"]
        kind = "rollback to" if pin["rollback"] else "pinned to"
        rows.append(("Pinned", f"{kind} {pin['ref'] or ''} {_short(pin['commit'])} by {pin['by'] or '?'}"))
    for kind, run in status["last_runs"].items():
        rows.append((f"Last {kind}", _run_line(run)))
    if status.get("pre_deploy_lease"):
        lease = status["pre_deploy_lease"]
        rows.append(("PRE_DEPLOY lease", f"{lease['instance']} (commit {_short(lease['commit'])})"))
    for view in (status.get("commits") or [])[:5]:
        ran = "; ".join(
            f"{kind} " + ", ".join(f"{name} {outcome}" for name, outcome in by.items())
            for kind, by in view["jobs"].items()
        )
        rows.append((f"Commit {_short(view['commit'])}", ran or "-"))
    rows.append(("Updated", status.get("updated_at") or "-"))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in rows)
