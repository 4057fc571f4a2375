"""Enqueues the deploy jobs of one instance on its RQ queues, each commit and kind once.

PRE_DEPLOY goes on the PRE queue with the strict policy's callbacks; POST_DEPLOY goes on
the POST queue with ``depends_on`` the PRE_DEPLOY, so RQ itself holds it back until the
PRE_DEPLOY succeeded::

    queue = DeployQueue(redis, keys)
    if not queue.busy():
        queue.enqueue_deploy([pre_spec, post_spec])
"""

from __future__ import annotations

from typing import Any

from rq import Queue
from rq.job import Job
from rq.registry import DeferredJobRegistry, StartedJobRegistry

from workers.contract import DeployKeys, JobKind, JobSpec
from workers.job import run_deploy_job
from workers.policies import policy_for

RESULT_TTL = 7 * 24 * 3600
# RQ's own timeout is only a backstop behind the runner's, which owns the process tree.
RQ_TIMEOUT_MARGIN = 120


class DeployQueue:
    """The RQ queues of one instance, seen from the poller."""

    def __init__(self, connection: Any, keys: DeployKeys):
        self.connection = connection
        self.keys = keys
        self.queues = {kind: Queue(keys.queue(kind), connection=connection) for kind in JobKind}

    def busy(self) -> bool:
        """A job of this instance is waiting, deferred or running: the next deploy must wait."""
        with self.connection.pipeline(transaction=False) as pipe:
            for queue in self.queues.values():
                pipe.llen(queue.key)
                pipe.zcard(StartedJobRegistry(queue.name, connection=self.connection).key)
                pipe.zcard(DeferredJobRegistry(queue.name, connection=self.connection).key)
            return any(int(n) > 0 for n in pipe.execute())

    def purge_leftovers(self) -> int:
        """At boot: drop jobs an earlier boot queued or deferred; they are for a world that is gone."""
        dropped = 0
        for queue in self.queues.values():
            dropped += queue.count
            queue.empty()
            deferred = DeferredJobRegistry(queue.name, connection=self.connection)
            for job_id in deferred.get_job_ids(cleanup=False):
                dropped += 1
                try:
                    Job.fetch(job_id, connection=self.connection).cancel()
                except Exception:  # noqa: BLE001 - expired or already cancelled
                    deferred.remove(job_id)
        return dropped

    def enqueue(
        self,
        spec: JobSpec,
        depends_on: Job | None = None,
        job_id: str | None = None,
        description: str | None = None,
    ) -> Job | None:
        """Enqueue one job unless this (commit, kind, attempt) was enqueued already.

        With ``job_id`` (``hotreload run``: a run asked for by hand) it is never deduplicated.
        """
        if job_id is None and not self.connection.set(self.keys.dedup(spec), "1", nx=True, ex=RESULT_TTL):
            return None
        policy = policy_for(spec.kind)
        return self.queues[spec.kind].enqueue(
            run_deploy_job,
            spec.to_dict(),
            job_id=job_id or self.keys.job_id(spec),
            description=description or spec.description(),
            job_timeout=spec.timeout + RQ_TIMEOUT_MARGIN,
            result_ttl=RESULT_TTL,
            failure_ttl=RESULT_TTL,
            depends_on=depends_on,
            on_success=policy.success_callback(),
            on_failure=policy.failure_callback(),
            meta={"kind": spec.kind.value, "commit": spec.commit, "outcome": "queued"},
        )

    def enqueue_deploy(self, pre: JobSpec | None, post: JobSpec | None) -> tuple[Job | None, Job | None]:
        """PRE_DEPLOY, and POST_DEPLOY held back by RQ until it succeeded; nothing if PRE was enqueued already."""
        pre_job = self.enqueue(pre) if pre else None
        if pre is not None and pre_job is None:
            return None, None  # a duplicate decision: its POST_DEPLOY is queued behind the first one
        post_job = self.enqueue(post, depends_on=pre_job) if post else None
        return pre_job, post_job
