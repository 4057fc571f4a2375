"""The strict (PRE_DEPLOY) and lenient (POST_DEPLOY, FAILED_DEPLOY) policies as RQ callbacks.

Strict: success records the commit as processed and tells the app supervisor to run it;
failure leaves the commit unprocessed (the poller retries it with a growing back-off) and
the app on the previous commit. Lenient: a failure is a warning, nothing else changes::

    queue.enqueue(run_deploy_job, spec.to_dict(),
                  on_success=STRICT.success_callback(), on_failure=STRICT.failure_callback())

The same ``on_failure`` is applied by the worker when a work horse dies without running
its callbacks (killed by a signal), so no failure goes unrecorded.
"""

from __future__ import annotations

from typing import Any

from rq.callbacks import Callback
from rq.job import Job

from workers.commit_tracker import CommitTracker
from workers.contract import DeployKeys, JobKind, JobSpec, Outcome
from workers.lease import Lease, job_lease_key

CALLBACK_TIMEOUT = 30


def _context(job: Job) -> tuple[JobSpec, CommitTracker]:
    spec = JobSpec.from_dict(job.args[0])
    return spec, CommitTracker(job.connection, DeployKeys(spec.deployment, spec.instance))


def _outcome(job: Job, result: Any) -> str:
    if isinstance(result, dict) and result.get("outcome"):
        return str(result["outcome"])
    return str(job.meta.get("outcome") or Outcome.SUCCEEDED.value)


def strict_succeeded(job: Job, connection: Any, result: Any, *args: Any, **kwargs: Any) -> None:
    spec, tracker = _context(job)
    outcome = _outcome(job, result)
    if outcome == Outcome.SUCCEEDED.value:
        tracker.mark_processed(spec.commit)
        tracker.record_commit_outcome(spec.commit, spec.kind, outcome, job.id, attempt=spec.attempt)
        connection.rpush(tracker.keys.app_events, f"deployed {spec.commit}")
        connection.expire(tracker.keys.app_events, 3600)
        print(f"[INFO] Commit {spec.short} deployed: PRE_DEPLOY succeeded", flush=True)
    release_lease(job, spec)


def strict_failed(job: Job, connection: Any, *exc_info: Any, **kwargs: Any) -> None:
    spec, tracker = _context(job)
    reason = str(job.meta.get("reason") or (exc_info[1] if len(exc_info) > 1 else "failed"))
    state = tracker.record_failure(spec.commit, reason)
    tracker.record_commit_outcome(
        spec.commit,
        spec.kind,
        str(job.meta.get("outcome") or "failed"),
        job.id,
        attempt=spec.attempt,
        reason=reason,
    )
    release_lease(job, spec)
    _cancel_dependents(job)
    kept = tracker.processed()
    print(
        f"[ERROR] PRE_DEPLOY job for commit {spec.short} {reason} (attempt {state.attempts}); "
        f"commit not processed, the app stays on {kept[:7] if kept else 'no commit'}; will retry",
        flush=True,
    )


def lenient_succeeded(job: Job, connection: Any, result: Any, *args: Any, **kwargs: Any) -> None:
    spec, tracker = _context(job)
    outcome = _outcome(job, result)
    if outcome != Outcome.SKIPPED.value:
        tracker.record_commit_outcome(spec.commit, spec.kind, outcome, job.id)
    release_lease(job, spec)


def lenient_failed(job: Job, connection: Any, *exc_info: Any, **kwargs: Any) -> None:
    spec, tracker = _context(job)
    tracker.record_commit_outcome(spec.commit, spec.kind, str(job.meta.get("outcome") or "failed"), job.id)
    release_lease(job, spec)
    print(
        f"[WARN] {spec.kind.value} job failed (lenient mode - continuing) [commit {spec.short}]", flush=True
    )


def release_lease(job: Job, spec: JobSpec) -> None:
    """After the outcome is recorded (never before: a replica would run the job again), let go of the lease."""
    value = spec.lease or str(job.meta.get("lease") or "")
    if value:
        Lease(
            job.connection,
            job_lease_key(DeployKeys(spec.deployment, spec.instance), spec.kind, spec.commit),
            value,
        ).release()


def _cancel_dependents(job: Job) -> None:
    """The POST_DEPLOY waiting on a failed PRE_DEPLOY will never run: say so instead of leaving it deferred."""
    for dependent_id in job.dependent_ids:
        try:
            dependent = Job.fetch(dependent_id, connection=job.connection)
            dependent.meta.update({"outcome": Outcome.SKIPPED.value, "reason": "its PRE_DEPLOY failed"})
            dependent.save_meta()
            dependent.cancel()
        except Exception:  # noqa: BLE001 - already gone or already cancelled is fine
            continue


class Policy:
    """A pair of callbacks for one job kind."""

    def __init__(self, on_success: Any, on_failure: Any):
        self.on_success = on_success
        self.on_failure = on_failure

    def success_callback(self) -> Callback:
        return Callback(self.on_success, timeout=CALLBACK_TIMEOUT)

    def failure_callback(self) -> Callback:
        return Callback(self.on_failure, timeout=CALLBACK_TIMEOUT)


STRICT = Policy(strict_succeeded, strict_failed)
LENIENT = Policy(lenient_succeeded, lenient_failed)


def policy_for(kind: JobKind) -> Policy:
    return STRICT if kind is JobKind.PRE else LENIENT
