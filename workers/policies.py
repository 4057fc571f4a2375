"""The strict (PRE_DEPLOY) and lenient (POST_DEPLOY, FAILED_DEPLOY) policies as RQ callbacks.

Strict: success makes the commit live and queues its POST_DEPLOY in one step
(``DeployState.pre_succeeded``); failure leaves the commit unprocessed (the poller retries
it with a growing back-off), the app on the previous commit, and queues FAILED_DEPLOY.
Lenient: a failure is a warning, nothing else changes. ``stopped`` is RQ's callback for a
job stopped on purpose (``hotreload cancel``): its process tree is killed and the run is
recorded as cancelled. Callbacks are named by string when enqueued (``DeployState.enqueue``)::

    Callback("workers.policies.strict_succeeded")

The same ``on_failure`` is applied by the worker when a work horse dies without running
its callbacks (killed by a signal), so no failure goes unrecorded; the state writer
records each run's outcome once, whichever path gets there first.
"""

from __future__ import annotations

from typing import Any

from rq.job import Job

from workers.console import say
from workers.contract import DeployKeys, JobKind, JobSpec, Outcome
from workers.deploy_state import DeployState
from workers.lease import Lease, job_lease_key
from workers.run_record import record_cancelled


def _context(job: Job) -> tuple[JobSpec, DeployState]:
    spec = JobSpec.from_dict(job.args[0])
    return spec, DeployState(job.connection, DeployKeys(spec.deployment, spec.instance))


def _outcome(job: Job, result: Any) -> str:
    if isinstance(result, dict) and result.get("outcome"):
        return str(result["outcome"])
    return str(job.meta.get("outcome") or Outcome.SUCCEEDED.value)


def strict_succeeded(job: Job, connection: Any, result: Any, *args: Any, **kwargs: Any) -> None:
    spec, state = _context(job)
    # A skipped PRE_DEPLOY records nothing: the planner decides on the commit again.
    if _outcome(job, result) == Outcome.SUCCEEDED.value and state.pre_succeeded(job.id, spec):
        where = " in the staging checkout; the workspace moves to it next" if spec.staged else ""
        say(f"[INFO] Commit {spec.short} deployed: PRE_DEPLOY succeeded{where}")
    release_lease(job, spec)


def strict_failed(job: Job, connection: Any, *exc_info: Any, **kwargs: Any) -> None:
    spec, state = _context(job)
    outcome = str(job.meta.get("outcome") or Outcome.FAILED.value)
    if outcome in ("queued", "running", Outcome.SUCCEEDED.value):
        outcome = Outcome.FAILED.value
    reason = str(job.meta.get("reason") or (exc_info[1] if len(exc_info) > 1 else "failed"))
    exit_code = job.meta.get("exit_code")
    attempts = state.pre_failed(
        job.id, spec, outcome, reason, exit_code if isinstance(exit_code, int) else None
    )
    release_lease(job, spec)
    if attempts is None:
        return  # recorded already (a stop during the success callback): one outcome per run
    kept = state.tracker.processed()
    follow = "; FAILED_DEPLOY queued" if spec.failed and outcome != Outcome.CANCELLED.value else ""
    say(
        f"[ERROR] PRE_DEPLOY job for commit {spec.short} {reason} (attempt {attempts}); "
        f"commit not processed, the app stays on {kept[:7] if kept else 'no commit'}; "
        + ("cancelled: held until a new commit or hotreload sync" if outcome == "cancelled" else "will retry")
        + follow
    )


def lenient_succeeded(job: Job, connection: Any, result: Any, *args: Any, **kwargs: Any) -> None:
    spec, state = _context(job)
    state.lenient_ended(job.id, spec, _outcome(job, result))
    release_lease(job, spec)


def lenient_failed(job: Job, connection: Any, *exc_info: Any, **kwargs: Any) -> None:
    spec, state = _context(job)
    outcome = str(job.meta.get("outcome") or Outcome.FAILED.value)
    if outcome in ("queued", "running"):
        outcome = Outcome.FAILED.value
    if state.lenient_ended(job.id, spec, outcome) and outcome != Outcome.CANCELLED.value:
        say(f"[WARN] {spec.kind.value} job failed (lenient mode - continuing) [commit {spec.short}]")
    release_lease(job, spec)


def stopped(job: Job, connection: Any, *args: Any, **kwargs: Any) -> None:
    """``hotreload cancel``: RQ killed the work horse; end the job's tree, record the run as cancelled."""
    record_cancelled(job)
    policy_for(JobKind(job.meta.get("kind") or JobSpec.from_dict(job.args[0]).kind)).on_failure(
        job, connection, RuntimeError, RuntimeError("cancelled"), None
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


class Policy:
    """A pair of callbacks for one job kind."""

    def __init__(self, on_success: Any, on_failure: Any):
        self.on_success = on_success
        self.on_failure = on_failure


STRICT = Policy(strict_succeeded, strict_failed)
LENIENT = Policy(lenient_succeeded, lenient_failed)


def policy_for(kind: JobKind) -> Policy:
    return STRICT if kind is JobKind.PRE else LENIENT
