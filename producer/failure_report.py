"""Why a deploy failed, on one screen: for ``hotreload why``, the ``failure`` object of /status and commit statuses.

    report = failure_report(redis, keys, workspace=Path("/workspaces/app"))   # the last failed commit
    print(render_failure(report))

It names the job and attempt, how the run ended (exit code, timeout, signal, interrupted,
cancelled), the first error-looking line of its output, the last lines, and the files
the commit changed since the last good one.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from rq.job import Job

from producer.status import mask
from workers.commit_tracker import CommitTracker
from workers.contract import DeployKeys, JobKind

TAIL_LINES = 20
MAX_FILES = 20
_ERRORS = re.compile(
    r"error|fail|fatal|exception|traceback|denied|refused|not found|no such|cannot|can't|panic|timed out",
    re.IGNORECASE,
)
_FAILED = {"failed", "timed_out", "interrupted", "cancelled"}


def first_error_line(lines: list[str]) -> str | None:
    """The first line that looks like an error, else the last non-empty line."""
    for line in lines:
        if _ERRORS.search(line):
            return line.strip()
    rest = [line.strip() for line in lines if line.strip()]
    return rest[-1] if rest else None


def last_failed_commit(tracker: CommitTracker) -> str | None:
    """This instance's failing commit, else the newest commit of the deployment whose PRE_DEPLOY failed."""
    retry = tracker.retry_state()
    if retry is not None and retry.commit != tracker.processed():
        return retry.commit
    for commit, record in tracker.recent_commits(50):
        if record.get("pre_outcome") in _FAILED:
            return commit
    return None


def run_meta(connection: Any, run_id: str) -> dict[str, Any]:
    try:
        return dict(Job.fetch(run_id, connection=connection).get_meta(refresh=False))
    except Exception:  # noqa: BLE001 - the job expired: what the record kept is all there is
        return {}


def changed_files(workspace: Path | None, good: str | None, commit: str) -> list[str] | None:
    """Files ``commit`` changed since ``good`` (None when unknown: no workspace, no good commit, history gone)."""
    if workspace is None or not good or good == commit:
        return None
    try:
        out = subprocess.run(
            ["git", "--git-dir", str(workspace / ".git"), "diff", "--name-only", good, commit],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.split() if out.returncode == 0 else None


def failure_report(
    connection: Any,
    keys: DeployKeys,
    commit: str | None = None,
    workspace: Path | None = None,
    secrets: list[str] | tuple[str, ...] = (),
) -> dict[str, Any] | None:
    """The failed PRE_DEPLOY of ``commit`` (default: the last failed commit), None when nothing failed."""
    tracker = CommitTracker(connection, keys)
    if commit is None:
        commit = last_failed_commit(tracker)
    elif len(commit) < 40:
        commit = next((c for c, _ in tracker.recent_commits(500) if c.startswith(commit)), commit)
    if commit is None:
        return None
    record = tracker.commit_record(commit)
    outcome = record.get("pre_outcome")
    if outcome not in _FAILED:
        return None
    run_id = record.get("pre_run") or ""
    meta = run_meta(connection, run_id) if run_id else {}
    output = [mask(str(line), secrets) or "" for line in meta.get("output") or []]
    good = tracker.processed() or tracker.deployed()
    files = changed_files(workspace, good, commit)
    return {
        "commit": commit,
        "job": JobKind.PRE.value,
        "run_id": run_id or None,
        "instance": record.get("pre_instance") or None,
        "attempt": int(record.get("pre_attempt") or meta.get("attempt") or 1),
        "outcome": outcome,
        "exit_code": meta.get("exit_code"),
        "reason": mask(record.get("pre_reason") or meta.get("reason") or outcome, secrets),
        "first_error": first_error_line(output),
        "last_lines": output[-TAIL_LINES:],
        "good_commit": good,
        "files_changed": files[:MAX_FILES] if files is not None else None,
        "files_changed_count": len(files) if files is not None else None,
    }


def render_failure(report: dict[str, Any]) -> str:
    """``hotreload why``: one screen."""
    lines = [
        f"Commit      {report['commit']}",
        f"Job         {report['job']} attempt {report['attempt']} on instance {report['instance'] or '?'}"
        + (f" (run {report['run_id']})" if report["run_id"] else ""),
        f"Ended       {report['outcome']}: {report['reason']}",
        f"First error {report['first_error'] or '-'}",
    ]
    files = report["files_changed"]
    good = (report["good_commit"] or "")[:7] or "-"
    if files is None:
        lines.append(f"Changed     (unknown since {good})")
    else:
        more = report["files_changed_count"] - len(files)
        lines.append(f"Changed     {report['files_changed_count']} file(s) since {good}: " + ", ".join(files))
        if more > 0:
            lines[-1] += f" ... and {more} more"
    lines.append(f"Last {len(report['last_lines'])} line(s) of output:")
    lines += [f"  {line}" for line in report["last_lines"]] or ["  (no output kept)"]
    return "\n".join(lines)


def status_with_failure(connection: Any, settings: Any) -> dict[str, Any]:
    """/status and ``hotreload status --json``: the deploy state plus the ``failure`` object."""
    from producer.status import deploy_status

    secrets = settings.secret_values()
    status = deploy_status(connection, settings.keys, secrets)
    status["failure"] = failure_report(
        connection, settings.keys, workspace=Path(settings.WORKSPACE_PATH), secrets=secrets
    )
    return status
