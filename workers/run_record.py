"""Recording a run that did not end by itself: killed, cut by an outage, left by a dead worker, cancelled.

The work horse records the runs it finishes (``workers.job``); these are the ones it could
not, recorded from the worker with the same fields, so the history, /status and
``hotreload jobs`` show how each run ended::

    record_lost(job, Outcome.INTERRUPTED, "the worker running it stopped before it finished")
    record_cancelled(job)          # hotreload cancel: kills the run's tree first
"""

from __future__ import annotations

import time

from rq.job import Job

from workers import job as job_module
from workers.console import say
from workers.contract import DeployKeys, JobSpec, Outcome
from workers.deploy_state import DeployState
from workers.process_tree import kill_run


def record_lost(job: Job, outcome: Outcome, reason: str) -> None:
    """Keep ``outcome`` with the RQ job and in the run history of its instance."""
    spec = JobSpec.from_dict(job.args[0])
    started = float(job.meta.get("started_at") or time.time())
    job.meta.update(
        {
            "kind": spec.kind.value,
            "commit": spec.commit,
            "instance": spec.instance,
            "outcome": outcome.value,
            "exit_code": None,
            "reason": reason,
            "started_at": started,
            "duration": round(time.time() - started, 4),
        }
    )
    job.save_meta()
    summary = {k: job.meta.get(k) for k in ("kind", "commit", "instance", "outcome", "exit_code", "reason")}
    summary.update(
        started_at=started, duration=job.meta["duration"], attempt=spec.attempt, command=spec.command
    )
    DeployState(job.connection, DeployKeys(spec.deployment, spec.instance)).record_run(
        spec.kind, job.id, summary
    )


def record_cancelled(job: Job) -> None:
    """``hotreload cancel`` stopped the job: kill its whole tree, keep the run as cancelled."""
    killed = kill_run(job.id, grace=job_module.KILL_GRACE)
    spec = JobSpec.from_dict(job.args[0])
    say(f"[INFO] {spec.kind.value} job of commit {spec.short} cancelled; {killed} process(es) stopped")
    record_lost(job, Outcome.CANCELLED, "was cancelled (hotreload cancel)")
