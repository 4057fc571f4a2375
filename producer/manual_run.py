"""``hotreload run pre|post``: run a configured job now, exactly as the container would.

The command asks the poller of this instance (``run <kind> <token>`` on its command bus);
its planner takes the request after any job already queued or running (one job at a
time) and never beside a replica's PRE_DEPLOY, and its deployer builds the job with the
deploy's own code (same folder, command, timeout, ``DEPLOY_*`` variables, lease) and
answers with the job id. The instance's worker runs it with the container's environment
under the kind's policy (strict for PRE_DEPLOY: a failure is recorded and FAILED_DEPLOY
runs; lenient for POST_DEPLOY). The command follows the run and prints its output, then
exits with the job's exit code::

    code = run_now(settings, redis, JobKind.PRE)    # 0 when it succeeded

PRE_DEPLOY runs for the commit checked out in the workspace, POST_DEPLOY for the processed
commit; a run asked for by hand is never deduplicated and its description ends in
``(hotreload run)``.
"""

from __future__ import annotations

import dataclasses
import secrets
import sys
import time
from typing import Any, TextIO

from rq import Worker
from rq.job import Job, JobStatus

from producer.settings import Settings
from producer.tool_error import ToolError
from workers.commit_tracker import CommitTracker
from workers.contract import DeployKeys, JobKind, JobSpec, Outcome, wake_poller

FOLLOW_INTERVAL = 0.2
#: How long an idle poller may take to answer a run request before the CLI gives up.
ANSWER_TIMEOUT = 15.0
ENDED = (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED)


def _listening(connection: Any, keys: DeployKeys, kind: JobKind) -> bool:
    name = keys.queue(kind)
    return any(name in worker.queue_names() for worker in Worker.all(connection=connection))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def follow(job: Job, out: TextIO = sys.stdout) -> dict[str, Any]:
    """Print the job's kept output as it grows until the job ends; returns its final meta."""
    printed = 0
    announced = False
    started = time.monotonic()
    while True:
        status = job.get_status(refresh=True)
        meta = job.get_meta(refresh=True)
        lines = [str(line) for line in meta.get("output") or []]
        if len(lines) < printed:
            printed = 0  # the kept window slid past what was printed: go on from its start
        for line in lines[printed:]:
            print(line, file=out, flush=True)
        printed = len(lines)
        if status in ENDED:
            return meta
        if status == JobStatus.QUEUED and not announced and time.monotonic() - started > 2:
            print(
                "[INFO] Waiting for the worker: another job of this instance runs first", file=out, flush=True
            )
            announced = True
        time.sleep(FOLLOW_INTERVAL)


def _summary(kind: JobKind, meta: dict[str, Any], out: TextIO) -> int:
    outcome = str(meta.get("outcome") or "")
    duration = meta.get("duration")
    took = f" in {float(duration):.2f}s" if isinstance(duration, int | float) else ""
    if outcome == Outcome.SUCCEEDED.value:
        print(f"{kind.tag} ✓ Job succeeded{took}", file=out, flush=True)
        return 0
    reason = meta.get("reason") or outcome or "did not run"
    policy = "strict" if kind is JobKind.PRE else "lenient"
    print(f"{kind.tag} Job {outcome or 'ended'}: {reason} ({policy} policy applied)", file=out, flush=True)
    exit_code = meta.get("exit_code")
    return exit_code if isinstance(exit_code, int) and 0 < exit_code < 256 else 1


def _follow_up(connection: Any, keys: DeployKeys, kind: JobKind, pre: JobSpec) -> Job | None:
    """The job the outcome of ``pre`` queued (its FAILED_DEPLOY), once it is there."""
    job_id = keys.job_id(dataclasses.replace(pre, kind=kind))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            return Job.fetch(job_id, connection=connection)
        except Exception:  # noqa: BLE001 - not enqueued yet
            time.sleep(FOLLOW_INTERVAL)
    return None


def _ask_the_poller(connection: Any, keys: DeployKeys, kind: JobKind, out: TextIO) -> Job:
    """Ask the poller's planner for the run (after any job of the instance); the job it queued."""
    token = secrets.token_hex(6)
    reply = keys.reply(token)
    wake_poller(connection, keys, f"run {kind.value} {token}")
    waited_since = time.monotonic()
    announced = False
    while True:
        answer = connection.blpop([reply], timeout=1)
        if answer is not None:
            text = _text(answer[1])
            if text.startswith("error: "):
                raise ToolError(text.removeprefix("error: "))
            return Job.fetch(text, connection=connection)
        busy = CommitTracker(connection, keys).busy()
        if busy is None and time.monotonic() - waited_since > ANSWER_TIMEOUT:
            raise ToolError(
                f"the poller of instance {keys.instance!r} did not take the request within "
                f"{ANSWER_TIMEOUT:g}s (is it running? hotreload status); nothing was run"
            )
        if busy is not None and not announced:
            print(
                f"[INFO] Waiting: {busy[0].value} of commit {busy[1][:7]} runs first (one job at a time)",
                file=out,
                flush=True,
            )
            announced = True
        if busy is not None:
            waited_since = time.monotonic()


def run_now(settings: Settings, connection: Any, kind: JobKind, out: TextIO = sys.stdout) -> int:
    """Ask the planner of this instance to run ``kind`` now, follow the job; returns an exit code."""
    keys = settings.keys
    if not settings.job(kind).enabled:
        raise ToolError(f"{kind.value}_COMMAND is not set: there is no {kind.value} job to run")
    if not _listening(connection, keys, kind):
        raise ToolError(
            f"no worker is running for instance {keys.instance!r} (is the stack up? honcho start); nothing was run"
        )
    try:
        job = _ask_the_poller(connection, keys, kind, out)
        spec = JobSpec.from_dict(job.args[0])
        print(
            f"[INFO] {job.description} queued as {job.id} [in {spec.cwd}, timeout {spec.timeout}s]",
            file=out,
            flush=True,
        )
        code = _summary(kind, follow(job, out), out)
        if kind is JobKind.PRE and code != 0 and spec.failed is not None:
            # The strict policy queued FAILED_DEPLOY with the outcome: follow it too.
            failed_job = _follow_up(connection, keys, JobKind.FAILED, spec)
            if failed_job is not None:
                print(f"[INFO] Running FAILED_DEPLOY as {failed_job.id}", file=out, flush=True)
                _summary(JobKind.FAILED, follow(failed_job, out), out)
    except KeyboardInterrupt:
        print(
            "\nhotreload: stopped following; the job goes on in the worker (hotreload jobs shows it)",
            file=sys.stderr,
            flush=True,
        )
        return 130
    return code
