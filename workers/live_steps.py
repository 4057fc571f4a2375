"""The state writer's transitions that make a commit live without a PRE_DEPLOY run ending.

Part of ``workers.deploy_state.DeployState`` (a mixin, so that class stays one screen of
transitions each): a PRE_DEPLOY skipped because none of its watched paths changed
(``PRE_DEPLOY_WHEN_CHANGED``), and the second half of a staged deploy, after the poller moved
the live workspace to the commit whose PRE_DEPLOY passed in the staging checkout::

    state.pre_skipped(pre_spec, post_spec, "nothing changed under prisma/")   # live + a skipped run
    state.went_live(sha)        # staged: the app is told and POST_DEPLOY queued, after the move

Each is one MULTI/EXEC, like every other transition.
"""

from __future__ import annotations

import json
import time
from typing import Any

from rq.job import Job, JobStatus

from workers.commit_tracker import commit_outcome_ops
from workers.contract import DeployKeys, JobKind, JobSpec, Outcome
from workers.run_stats import add_run

RUN_TTL = 7 * 24 * 3600
RUN_HISTORY = 500


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def run_ops(pipe: Any, keys: DeployKeys, kind: JobKind, run_id: str, summary: dict[str, Any]) -> None:
    """Queue on ``pipe`` the writes that keep one run: the history, the last run of its kind, the totals."""
    flat = {
        k: ("" if v is None else json.dumps(v) if isinstance(v, dict | list) else v)
        for k, v in summary.items()
    }
    duration = summary.get("duration")
    pipe.delete(keys.last_run(kind))
    pipe.hset(keys.last_run(kind), mapping={"run_id": run_id, **flat})
    pipe.zadd(keys.runs, {run_id: float(summary.get("started_at") or time.time())})
    pipe.zremrangebyrank(keys.runs, 0, -RUN_HISTORY - 1)
    add_run(
        pipe,
        keys,
        kind,
        str(summary.get("outcome") or ""),
        float(duration) if isinstance(duration, int | float) else None,
    )


class LiveSteps:
    """``DeployState``'s transitions for a skipped PRE_DEPLOY and the end of a staged deploy."""

    connection: Any
    keys: DeployKeys

    def enqueue(
        self, spec: JobSpec, pipe: Any = None, job_id: str | None = None, description: str | None = None
    ) -> Job:
        raise NotImplementedError  # DeployState's

    def _processed_ops(self, pipe: Any, commit: str) -> None:
        """``commit`` is this instance's processed commit (its retry state and a pending move are over)."""
        pipe.set(self.keys.processed, commit)
        pipe.delete(self.keys.retry)
        pipe.delete(self.keys.going_live)

    def _app_event_ops(self, pipe: Any, commit: str, restart: bool) -> None:
        """The app supervisor hears ``deployed <sha>`` (``deployed <sha> restart``: DEV_RESTART_WHEN_CHANGED)."""
        pipe.rpush(self.keys.app_events, f"deployed {commit}" + (" restart" if restart else ""))
        pipe.expire(self.keys.app_events, 3600)

    def pre_skipped(self, pre: JobSpec, post: JobSpec | None, reason: str) -> str:
        """The commit is live at once; the PRE_DEPLOY is kept as a skipped run (history, record, totals)."""
        run_id = self.keys.job_id(pre)
        now = time.time()
        summary: dict[str, Any] = {
            "kind": pre.kind.value,
            "commit": pre.commit,
            "previous": pre.previous,
            "instance": pre.instance,
            "attempt": pre.attempt,
            "command": pre.command,
            "outcome": Outcome.SKIPPED.value,
            "exit_code": None,
            "started_at": now,
            "duration": 0.0,
            "reason": reason,
        }
        # An RQ job that never ran, so `hotreload jobs` and `hotreload logs` show the skip as a run.
        record = Job.create(
            "workers.job.run_deploy_job",
            args=(pre.to_dict(),),
            connection=self.connection,
            id=run_id,
            description=pre.description(),
            meta={**summary, "output": [f"{pre.kind.value} skipped: {reason}"]},
            status=JobStatus.FINISHED,
        )

        def step(pipe: Any) -> None:
            pipe.multi()
            record.save(pipeline=pipe)
            pipe.expire(record.key, RUN_TTL)
            pipe.set(self.keys.transition(run_id), Outcome.SKIPPED.value, ex=RUN_TTL)
            self._processed_ops(pipe, pre.commit)
            self._app_event_ops(pipe, pre.commit, pre.restart_app)
            commit_outcome_ops(
                pipe, self.keys, pre.commit, pre.kind, Outcome.SKIPPED.value, run_id, pre.attempt, reason
            )
            run_ops(pipe, self.keys, pre.kind, run_id, summary)
            if post is not None:
                self.enqueue(post, pipe=pipe)

        self.connection.transaction(step)
        return run_id

    def _staged_ops(self, pipe: Any, spec: JobSpec) -> None:
        """A staged PRE_DEPLOY succeeded: processed now; the app and POST_DEPLOY wait for ``went_live``."""
        self._processed_ops(pipe, spec.commit)
        pipe.hset(
            self.keys.going_live,
            mapping={
                "commit": spec.commit,
                "post": json.dumps(spec.post) if spec.post else "",
                "restart": "1" if spec.restart_app else "0",
            },
        )

    def went_live(self, commit: str) -> JobSpec | None | bool:
        """The live workspace shows ``commit`` now: tell the app, queue its POST_DEPLOY.

        Returns the POST_DEPLOY queued (None: none configured or wanted), or False when
        ``commit`` was not waiting (moved already, or superseded).
        """

        def step(pipe: Any) -> JobSpec | None | bool:
            waiting = {_text(k): _text(v) for k, v in pipe.hgetall(self.keys.going_live).items()}
            if waiting.get("commit") != commit:
                return False
            post = JobSpec.from_dict(json.loads(waiting["post"])) if waiting.get("post") else None
            pipe.multi()
            pipe.delete(self.keys.going_live)
            self._app_event_ops(pipe, commit, waiting.get("restart") == "1")
            if post is not None:
                self.enqueue(post, pipe=pipe)
            return post

        result: JobSpec | None | bool = self.connection.transaction(
            step, self.keys.going_live, value_from_callable=True
        )
        return result
