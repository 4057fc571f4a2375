"""The deploy state of one instance and its only writer: each transition is one atomic Redis step.

The poller (enqueued, followed, deployed without a PRE_DEPLOY), the policy callbacks in the
worker (succeeded, failed, cancelled) and the steering commands (pause, pin, cancel) all
write through ``DeployState``; ``CommitTracker`` and the status views only read. A
transition is a MULTI/EXEC under WATCH, so a stop signal or a Redis error in the middle
leaves either all of it or none, and the outcome of a run is recorded once: a second
transition for the same run (a stop during the success callback, then the failure path)
finds the run's outcome key set and changes nothing::

    state = DeployState(redis, keys)
    job = state.enqueue_deploy(pre_spec)           # POST/FAILED travel inside it
    state.pre_succeeded(job.id, pre_spec)         # processed + record + POST_DEPLOY queued, at once

The transitions of a skipped PRE_DEPLOY and of a staged deploy's move are in
``workers.live_steps`` (``pre_skipped``, ``went_live``), part of this class. What follows a
PRE_DEPLOY is enqueued by its outcome's transition, never as an RQ dependent
enqueued in a second round trip: a PRE_DEPLOY that fails at once cannot leave a POST_DEPLOY
waiting in RQ's deferred registry.
"""

from __future__ import annotations

import time
from typing import Any

from rq import Queue
from rq.callbacks import Callback
from rq.job import Job

from workers.commit_tracker import CommitTracker, commit_outcome_ops
from workers.contract import DeployKeys, JobKind, JobSpec, Outcome
from workers.live_steps import LiveSteps, run_ops

RESULT_TTL = 7 * 24 * 3600
# RQ's own timeout is only a backstop behind the runner's, which owns the process tree.
RQ_TIMEOUT_MARGIN = 120
CALLBACK_TIMEOUT = 30
JOB_FUNCTION = "workers.job.run_deploy_job"
#: The policy callbacks by kind (named, so this module imports neither the job nor the policies).
POLICY = {
    JobKind.PRE: ("workers.policies.strict_succeeded", "workers.policies.strict_failed"),
    JobKind.POST: ("workers.policies.lenient_succeeded", "workers.policies.lenient_failed"),
    JobKind.FAILED: ("workers.policies.lenient_succeeded", "workers.policies.lenient_failed"),
}
STOPPED_CALLBACK = "workers.policies.stopped"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class DeployState(LiveSteps):
    """Reads what the planner needs and writes every deploy transition of one instance."""

    def __init__(self, connection: Any, keys: DeployKeys):
        self.connection = connection
        self.keys = keys
        self.tracker = CommitTracker(connection, keys)
        self.queues = {kind: Queue(keys.queue(kind), connection=connection) for kind in JobKind}

    # -- reads -------------------------------------------------------------------------
    def purge_leftovers(self) -> int:
        """At boot: drop the jobs an earlier boot queued; they are for a world that is gone."""
        dropped = 0
        for queue in self.queues.values():
            dropped += queue.count
            queue.empty()
        return dropped

    def next_seq(self) -> int:
        return int(self.connection.incr(self.keys.deploys))

    # -- enqueueing --------------------------------------------------------------------
    def enqueue(
        self, spec: JobSpec, pipe: Any = None, job_id: str | None = None, description: str | None = None
    ) -> Job:
        """One job on its kind's queue with its policy; on ``pipe``, inside the caller's transaction.

        Without a pipeline the enqueue is RQ's atomic unique enqueue (check, save and push in
        one script): a job id decided twice is enqueued once.
        """
        on_success, on_failure = POLICY[spec.kind]
        return self.queues[spec.kind].enqueue_call(
            JOB_FUNCTION,
            args=(spec.to_dict(),),
            job_id=job_id or self.keys.job_id(spec),
            description=description or spec.description(),
            timeout=spec.timeout + RQ_TIMEOUT_MARGIN,
            result_ttl=RESULT_TTL,
            failure_ttl=RESULT_TTL,
            on_success=Callback(on_success, timeout=CALLBACK_TIMEOUT),
            on_failure=Callback(on_failure, timeout=CALLBACK_TIMEOUT),
            on_stopped=Callback(STOPPED_CALLBACK, timeout=CALLBACK_TIMEOUT),
            meta={"kind": spec.kind.value, "commit": spec.commit, "outcome": "queued"},
            pipeline=pipe,
            unique=pipe is None and job_id is None,
        )

    def enqueue_deploy(self, pre: JobSpec) -> Job:
        """The PRE_DEPLOY of a deploy; its POST_DEPLOY and FAILED_DEPLOY travel inside its spec."""
        return self.enqueue(pre)

    def deployed_without_pre(self, commit: str, post: JobSpec | None, restart: bool = False) -> None:
        """No PRE_DEPLOY to run (none configured, or a replica ran it): live at once, POST_DEPLOY queued."""

        def step(pipe: Any) -> None:
            pipe.multi()
            self._processed_ops(pipe, commit)
            self._app_event_ops(pipe, commit, restart)
            if post is not None:
                self.enqueue(post, pipe=pipe)

        self.connection.transaction(step)

    # -- outcomes (called by the policies in the worker) --------------------------------
    def pre_succeeded(self, job_id: str, spec: JobSpec) -> bool:
        """The commit is live: processed, recorded, the app told, its POST_DEPLOY queued. False: recorded before."""

        def step(pipe: Any) -> bool:
            if pipe.exists(self.keys.transition(job_id)):
                return False
            pipe.multi()
            self._done_ops(pipe, job_id, Outcome.SUCCEEDED.value)
            commit_outcome_ops(pipe, self.keys, spec.commit, spec.kind, "succeeded", job_id, spec.attempt)
            if spec.staged:
                self._staged_ops(pipe, spec)  # the poller moves the workspace, then went_live
                return True
            self._processed_ops(pipe, spec.commit)
            self._app_event_ops(pipe, spec.commit, spec.restart_app)
            if spec.post is not None:
                self.enqueue(JobSpec.from_dict(spec.post), pipe=pipe)
            return True

        return bool(self.connection.transaction(step, self.keys.transition(job_id), value_from_callable=True))

    def pre_failed(
        self, job_id: str, spec: JobSpec, outcome: str, reason: str, exit_code: int | None
    ) -> int | None:
        """The commit stays unprocessed, its retry state grows, FAILED_DEPLOY is queued (not when cancelled).

        Returns the attempt count, or None when this run's outcome was recorded before.
        """
        cancelled = outcome == Outcome.CANCELLED.value

        def step(pipe: Any) -> int | None:
            if pipe.exists(self.keys.transition(job_id)):
                return None
            current = CommitTracker(pipe, self.keys).retry_state()
            # The planner numbered the attempt across replicas; a run by hand counts on from it.
            attempts = max(
                spec.attempt, current.attempts + 1 if current and current.commit == spec.commit else 1
            )
            pipe.multi()
            self._done_ops(pipe, job_id, outcome)
            pipe.delete(self.keys.retry)
            pipe.hset(
                self.keys.retry,
                mapping={
                    "commit": spec.commit,
                    "attempts": attempts,
                    "failed_at": time.time(),
                    "reason": reason,
                    "cancelled": "1" if cancelled else "0",
                },
            )
            commit_outcome_ops(pipe, self.keys, spec.commit, spec.kind, outcome, job_id, attempts, reason)
            if spec.failed is not None and not cancelled:
                failed = JobSpec.from_dict(spec.failed)
                env = {
                    **failed.extra_env,
                    "DEPLOY_FAILED_JOB": spec.kind.value,
                    "DEPLOY_EXIT_CODE": "" if exit_code is None else str(exit_code),
                    "DEPLOY_FAILED_REASON": reason or outcome,
                }
                self.enqueue(JobSpec.from_dict({**failed.to_dict(), "extra_env": env}), pipe=pipe)
            return attempts

        watched = (self.keys.transition(job_id), self.keys.retry)
        result = self.connection.transaction(step, *watched, value_from_callable=True)
        return None if result is None else int(result)

    def lenient_ended(self, job_id: str, spec: JobSpec, outcome: str) -> bool:
        """POST_DEPLOY / FAILED_DEPLOY ended: recorded once; nothing else changes (lenient)."""

        def step(pipe: Any) -> bool:
            if pipe.exists(self.keys.transition(job_id)):
                return False
            pipe.multi()
            self._done_ops(pipe, job_id, outcome)
            if outcome != Outcome.SKIPPED.value:
                commit_outcome_ops(pipe, self.keys, spec.commit, spec.kind, outcome, job_id)
            return True

        return bool(self.connection.transaction(step, self.keys.transition(job_id), value_from_callable=True))

    # -- runs --------------------------------------------------------------------------
    def record_run(self, kind: JobKind, run_id: str, summary: dict[str, Any]) -> None:
        """Keep the run in the history and as the last run of its kind on this instance."""
        with self.connection.pipeline() as pipe:
            run_ops(pipe, self.keys, kind, run_id, summary)
            pipe.execute()

    # -- the poller's own facts ---------------------------------------------------------
    def answer(self, reply: str, text: str) -> None:
        """Answer a request waiting on ``reply`` (``hotreload run``); unread answers expire."""
        with self.connection.pipeline() as pipe:
            pipe.rpush(reply, text)
            pipe.expire(reply, 120)
            pipe.execute()

    def open_gate(self, commit: str) -> None:
        """The app supervisor may start the app on ``commit`` (end of boot, or asked again by the app)."""
        with self.connection.pipeline() as pipe:
            pipe.rpush(self.keys.app_events, f"start {commit}")
            pipe.expire(self.keys.app_events, 3600)
            pipe.execute()

    def set_head(self, commit: str) -> None:
        self.connection.set(self.keys.head, commit)

    def release_cancel(self) -> bool:
        """``hotreload sync``: a cancelled PRE_DEPLOY may run again (with the usual back-off)."""
        if _text(self.connection.hget(self.keys.retry, "cancelled") or "") != "1":
            return False
        self.connection.hset(self.keys.retry, "cancelled", "0")
        return True

    # -- steering (every replica of the deployment) -------------------------------------
    def steer(self, command: str, fields: dict[str, str], clear: tuple[str, ...] = ()) -> None:
        """One steering change of the deployment, counted for /metrics, in one step."""
        with self.connection.pipeline() as pipe:
            if clear:
                pipe.hdel(self.keys.control, *clear)
            if fields:
                pipe.hset(self.keys.control, mapping=fields)
            pipe.hincrby(self.keys.steering_counts, command, 1)
            pipe.execute()

    # -- pieces of transitions -----------------------------------------------------------
    def _done_ops(self, pipe: Any, job_id: str, outcome: str) -> None:
        pipe.set(self.keys.transition(job_id), outcome, ex=RESULT_TTL)
