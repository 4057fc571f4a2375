"""The function RQ workers execute for every deploy job.

The poller enqueues ``run_deploy_job(spec.to_dict())``; in the work horse it checks the job
still makes sense (not stale, not superseded), runs the command with ``run_shell``, keeps
the outcome and output with the RQ job (``job.meta``) and in the run history, and raises
``JobFailed`` when the command did not succeed so RQ and the policy callbacks see a failure::

    queue.enqueue(run_deploy_job, spec.to_dict(), on_success=..., on_failure=...)
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
from typing import Any

from rq import get_current_job

from workers.commit_tracker import CommitTracker
from workers.contract import DeployKeys, JobKind, JobSpec, Outcome
from workers.deploy_state import DeployState
from workers.lease import Holder, Lease, job_lease_key
from workers.redis_outage import REDIS_DOWN, Outage, until_redis_answers
from workers.runner import install_interrupt_handler, run_shell

# Set by the worker entry point from the settings; inherited by each forked work horse.
SECRETS: list[str] = []
MAX_OUTPUT_LINES = 1000
KILL_GRACE = 3.0
#: The worker's process group, which the relay of a job's background output joins: a stop
#: signal to the worker (honcho's) reaches it too, and so does honcho's SIGKILL if the worker hangs.
RELAY_GROUP: int | None = None
META_SAVE_INTERVAL = 0.5
PR_SET_PDEATHSIG = 1


class JobFailed(Exception):
    """The job's command failed, timed out or was interrupted: RQ records the job as failed."""


def configure(secrets: list[str], max_output_lines: int, kill_grace: float) -> None:
    """Called once by the worker process before it forks work horses."""
    global MAX_OUTPUT_LINES, KILL_GRACE, RELAY_GROUP
    SECRETS[:] = [s for s in secrets if s]
    MAX_OUTPUT_LINES = max_output_lines
    KILL_GRACE = kill_grace
    RELAY_GROUP = os.getpgrp()


def _die_with_parent() -> None:
    """If the worker dies (even by SIGKILL), the horse gets SIGTERM and takes its job's tree down."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def workspace_head(workspace: str) -> str | None:
    # --git-dir pins git to the workspace: without it, a workspace that lost its .git would
    # answer with the HEAD of whatever repository encloses it.
    git_dir = os.path.join(workspace, ".git")
    try:
        out = subprocess.run(
            ["git", "--git-dir", git_dir, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def skip_reason(spec: JobSpec, tracker: CommitTracker) -> str | None:
    """Why this job must not run now, or None. Checked when the job starts, not when it was enqueued."""
    if spec.kind is JobKind.POST:
        # Superseded only once a newer commit is live: when the newer commit's PRE_DEPLOY
        # failed, this commit stays live and its POST_DEPLOY still runs.
        processed = tracker.processed()
        if processed != spec.commit:
            return f"superseded: commit {(processed or 'none')[:7]} is live now"
    if spec.kind is JobKind.PRE:
        # Staged: the commit is checked out in the staging checkout, the workspace stays live.
        at = workspace_head(spec.checkout or spec.workspace)
        if at != spec.commit:
            where = "staging checkout" if spec.staged else "workspace"
            return f"stale: the {where} is at {(at or 'nothing')[:7]}, not {spec.short}"
    return None


def claim_lease(spec: JobSpec, job: Any, tracker: CommitTracker) -> tuple[Lease | None, str | None]:
    """The lease this run holds among the replicas (None: it needs none), or why it must not run.

    PRE_DEPLOY: the poller claimed the deployment's lease before enqueueing; still ours means
    no replica took the commit over while the job waited. POST_DEPLOY_SCOPE=once: the first
    replica to claim the commit's POST_DEPLOY lease runs it, unless one already did.
    """
    key = job_lease_key(tracker.keys, spec.kind, spec.commit)
    if spec.lease:
        lease = Lease(job.connection, key, spec.lease)
        if lease.renew():
            return lease, None
        holder = lease.holder()
        return None, f"its lease expired; {_who(holder)} holds it now"
    if not spec.once:
        return None, None
    lease = Lease.new(job.connection, key, spec.instance, spec.commit)
    if not lease.acquire():
        return None, f"POST_DEPLOY_SCOPE=once and {_who(lease.holder())} is running it"
    ran_on = tracker.commit_record(spec.commit).get(f"{spec.kind.slug}_instance")
    if ran_on:
        lease.release()
        return None, f"POST_DEPLOY_SCOPE=once and instance {ran_on} ran it already"
    job.meta["lease"] = lease.value
    job.save_meta()
    return lease, None


def _who(holder: Holder | None) -> str:
    return f"instance {holder.instance}" if holder else "another instance"


def run_deploy_job(spec_data: dict[str, Any]) -> dict[str, Any]:
    spec = JobSpec.from_dict(spec_data)
    job = get_current_job()
    assert job is not None, "run_deploy_job runs inside an RQ work horse"
    state = DeployState(job.connection, DeployKeys(spec.deployment, spec.instance))
    tracker = state.tracker
    tag = spec.kind.tag
    started_at = time.time()

    reason = skip_reason(spec, tracker)
    lease: Lease | None = None
    if not reason:
        lease, reason = claim_lease(spec, job, tracker)
    if reason:
        print(f"{tag} Skipping job for commit {spec.short}: {reason}", flush=True)
        summary = _summary(spec, Outcome.SKIPPED, None, started_at, 0.0, reason=reason)
        job.meta.update(summary)
        job.save_meta()
        state.record_run(spec.kind, job.id, summary)
        return summary

    _die_with_parent()
    install_interrupt_handler()
    print(
        f"{tag} Starting job for commit {spec.short} (attempt {spec.attempt}): {spec.command} "
        f"[in {spec.cwd}, timeout {spec.timeout}s]",
        flush=True,
    )
    job.meta.update(_summary(spec, Outcome.INTERRUPTED, None, started_at, 0.0, reason="running"))
    job.meta["outcome"] = "running"
    job.meta["output"] = []
    job.save_meta()

    lines: list[str] = []
    last_save = [time.monotonic()]
    lock = threading.Lock()

    def keep_line(line: str) -> None:
        # Live output for `hotreload logs` and the dashboard, throttled to a save per interval.
        with lock:
            lines.append(line)
            del lines[:-MAX_OUTPUT_LINES]
            if time.monotonic() - last_save[0] >= META_SAVE_INTERVAL:
                last_save[0] = time.monotonic()
                job.meta["output"] = list(lines)
                # Live output is best effort: a Redis blip must not kill the job (run_shell
                # kills the tree when on_line raises).
                with contextlib.suppress(*REDIS_DOWN):
                    job.save_meta()

    # The lease is renewed while the job runs; the policy callback releases it once the
    # outcome is recorded. A lost lease (Redis out longer than its TTL) is only reported:
    # killing a migration half-way would be worse than a second one waiting on its locks.
    heartbeat = (
        lease.heartbeat(
            on_lost=lambda holder: print(
                f"{tag} WARNING: lost the lease of commit {spec.short} to {_who(holder)}", flush=True
            )
        ).start()
        if lease
        else None
    )
    try:
        result_outcome, exit_code, output, duration, reason = _execute(spec, job, keep_line)
    finally:
        if heartbeat is not None:
            heartbeat.stop()

    # The outcome must reach Redis: through an outage, wait for it rather than lose the run.
    outage = Outage(f"the {spec.kind.value} job of commit {spec.short} (to record its result)")
    # Unless the worker is stopping: then the next worker recovers the run from RQ's registry.
    stopping = result_outcome is Outcome.INTERRUPTED
    if until_redis_answers(
        lambda: not job.connection.hexists(job.key, "data"), outage, give_up=lambda: stopping
    ):
        # Redis came back empty: what depended on this run (its POST_DEPLOY) is gone, so a
        # success must not mark the commit processed. Failing it makes the poller run it again.
        result_outcome, exit_code = Outcome.INTERRUPTED, None
        reason = "could not be recorded: Redis lost its data while the job ran; it runs again"
        print(f"{tag} ERROR: the job {reason}", flush=True)
    summary = _summary(spec, result_outcome, exit_code, started_at, duration, reason=reason)
    with lock:
        job.meta.update(summary)
        job.meta["output"] = output
    until_redis_answers(job.save_meta, outage, give_up=lambda: stopping)
    until_redis_answers(
        lambda: state.record_run(spec.kind, job.id, summary), outage, give_up=lambda: stopping
    )
    if result_outcome is not Outcome.SUCCEEDED:
        raise JobFailed(f"{spec.kind.value} for commit {spec.short} {reason}")
    print(f"{tag} ✓ Job succeeded for commit {spec.short} in {duration:.2f}s", flush=True)
    return summary


def _execute(spec: JobSpec, job: Any, keep_line: Any) -> tuple[Outcome, int | None, list[str], float, str]:
    """Run the command (or fail at once when its folder is missing): outcome, exit code, output, duration, reason."""
    tag = spec.kind.tag
    if not os.path.isdir(spec.cwd):
        result_outcome, exit_code, output, duration = Outcome.FAILED, None, [], 0.0
        reason = f"folder {spec.cwd} does not exist in commit {spec.short}"
        print(f"{tag} ERROR: {reason}", flush=True)
    else:
        env = {**os.environ, **spec.job_env()}
        result = run_shell(
            spec.command,
            cwd=spec.cwd,
            env=env,
            timeout=spec.timeout,
            run_id=job.id,
            prefix=tag,
            secrets=SECRETS,
            on_line=keep_line,
            grace=KILL_GRACE,
            max_lines=MAX_OUTPUT_LINES,
            relay_group=RELAY_GROUP,
        )
        result_outcome, exit_code, output, duration = (
            result.outcome,
            result.exit_code,
            result.output,
            result.duration,
        )
        reason = _reason(result_outcome, exit_code, spec.timeout)
    return result_outcome, exit_code, output, duration, reason


def _reason(outcome: Outcome, exit_code: int | None, timeout: int) -> str:
    if outcome is Outcome.TIMED_OUT:
        return f"timed out after {timeout}s"
    if outcome is Outcome.INTERRUPTED:
        return "was interrupted (stop requested)"
    if outcome is Outcome.FAILED:
        return f"failed with exit code {exit_code}"
    return "succeeded"


def _summary(
    spec: JobSpec,
    outcome: Outcome,
    exit_code: int | None,
    started_at: float,
    duration: float,
    reason: str,
) -> dict[str, Any]:
    return {
        "kind": spec.kind.value,
        "commit": spec.commit,
        "previous": spec.previous,
        "instance": spec.instance,
        "attempt": spec.attempt,
        "command": spec.command,
        "outcome": outcome.value,
        "exit_code": exit_code,
        "started_at": started_at,
        "duration": round(duration, 4),
        "reason": reason,
    }
