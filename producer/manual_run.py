"""``hotreload run pre|post``: run a configured job now, exactly as the container would.

The job is built by the poller's own code (``Workspace.spec``: same folder, command, timeout,
``DEPLOY_*`` variables) and enqueued on this instance's queue, so the instance's worker
runs it: with the container's environment, after any job already running (one job at a
time), under the kind's policy (strict for PRE_DEPLOY: a failure is recorded and
FAILED_DEPLOY runs; lenient for POST_DEPLOY). The command follows the run and prints its
output, then exits with the job's exit code::

    code = run_now(settings, redis, JobKind.PRE)    # 0 when it succeeded

PRE_DEPLOY runs for the commit checked out in the workspace, POST_DEPLOY for the processed
commit; a run asked for by hand is never deduplicated and its description ends in
``(hotreload run)``.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any, TextIO

from rq import Worker
from rq.job import Job, JobStatus

from producer.settings import Settings
from producer.tool_error import ToolError
from workers.commit_tracker import CommitTracker
from workers.contract import DeployKeys, JobKind, JobSpec, Outcome
from workers.deploy_state import DeployState
from workers.job import workspace_head

FOLLOW_INTERVAL = 0.2
ENDED = (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED)


def manual_job_id(keys: DeployKeys, kind: JobKind, commit: str) -> str:
    return f"{keys.deployment}-{keys.instance}-{commit[:12]}-{kind.slug}-manual{time.time_ns() // 1_000_000}"


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


def run_now(settings: Settings, connection: Any, kind: JobKind, out: TextIO = sys.stdout) -> int:
    """Enqueue ``kind`` for the current commit on this instance, follow it; returns an exit code."""
    from producer.replicas import Replicas
    from producer.workspace import Workspace  # GitPython is heavy: only this command needs it

    keys = settings.keys
    job_config = settings.job(kind)
    if not job_config.enabled:
        raise ToolError(f"{kind.value}_COMMAND is not set: there is no {kind.value} job to run")
    if not _listening(connection, keys, kind):
        raise ToolError(
            f"no worker is running for instance {keys.instance!r} (is the stack up? honcho start); nothing was run"
        )
    tracker = CommitTracker(connection, keys)
    processed = tracker.processed()
    commit = workspace_head(str(settings.WORKSPACE_PATH)) if kind is JobKind.PRE else processed
    if not commit:
        raise ToolError(
            f"no commit to run {kind.value} for yet: "
            + ("no clone in WORKSPACE_PATH" if kind is JobKind.PRE else "no commit has been deployed")
        )
    last = tracker.last_run(kind) or {}
    previous = (last.get("previous") or None) if last.get("commit") == commit else processed
    if previous == commit:
        previous = None

    state = DeployState(connection, keys)
    workspace = Workspace(settings)
    branch = connection.hget(keys.status, "branch")
    workspace.app.branch = _text(branch) if branch else settings.GITHUB_BRANCH
    replicas = Replicas(connection, keys, state.tracker)
    boot = int(connection.get(keys.boots) or 0)
    lease = ""
    if kind is JobKind.PRE:
        # Like the poller: a PRE_DEPLOY runs under the deployment's lease, never beside a replica's.
        claimed = replicas.claim(commit, replicas.record(commit))
        if claimed is None:
            raise ToolError(
                "another instance of this deployment is running a PRE_DEPLOY now (it holds the lease); "
                "try again when it is done"
            )
        lease = claimed.value
    try:
        spec = workspace.spec(kind, commit, previous, 1, boot=boot, seq=state.next_seq(), lease=lease)
        if spec is None:  # pragma: no cover - enabled was checked above
            raise ToolError(f"{kind.value}_COMMAND is not set")
        # Asked for by hand: run it even if this commit's POST_DEPLOY ran already (POST_DEPLOY_SCOPE=once).
        spec = dataclasses.replace(spec, once=False)
        if kind is JobKind.PRE:
            failed = workspace.spec(JobKind.FAILED, commit, previous, 1, boot=boot, seq=spec.seq)
            spec = dataclasses.replace(spec, failed=failed.to_dict() if failed else None)
        description = f"{spec.description()} (hotreload run)"
        job = state.enqueue(spec, job_id=manual_job_id(keys, kind, commit), description=description)
        if lease:
            replicas.hand_over(job)  # its work horse renews the lease from its start
        print(
            f"[INFO] {description} queued as {job.id} [in {spec.cwd}, timeout {spec.timeout}s]",
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
    finally:
        replicas.drop()  # stop renewing; a lease the job took over is the job's to release
    return code
