"""The RQ worker of one instance: runs its deploy jobs one at a time, and never loses one.

One worker per instance listens to the instance's queues in priority order (PRE_DEPLOY,
FAILED_DEPLOY, POST_DEPLOY). Being the only consumer, it is also the guide's "one job at
a time" lock, and a lock that cannot go stale: there is nothing to release. On top of
``rq.Worker`` it adds what a deploy runner needs::

    run_worker("redis://127.0.0.1:6379/0", keys, secrets=["..."])

- a stop request (SIGTERM from honcho, Ctrl-C) interrupts the running job at once instead
  of waiting for it: the work horse kills the job's process tree and records the run as
  interrupted;
- a work horse killed by a signal (the OOM killer) gets its leftover processes killed and
  its failure recorded through the job's policy, which RQ does not do for such a horse;
- jobs left "started" by a worker that died are failed through their policy at start-up;
- a Redis outage never ends the worker (honcho would stop the container): it is logged
  once, waited out with back-off, and a job it cut is recorded or failed through its
  policy (so the poller runs it again) once Redis is back;
- processes a job left running (a queue worker a POST_DEPLOY started) keep running after
  it, and are ended, by their run id, when the worker stops.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any

from redis import Redis
from rq import Queue, Worker
from rq.exceptions import InvalidJobOperation
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from workers import job as job_module
from workers.console import say
from workers.contract import DeployKeys, JobKind, JobSpec, Outcome, wake_poller
from workers.policies import policy_for
from workers.process_tree import find_run_processes, kill_run
from workers.redis_connection import MAX_BLOCK, SOCKET_TIMEOUT, connect
from workers.redis_outage import MAX_WAIT, REDIS_DOWN, Outage, QuietConnectionErrors, until_redis_answers
from workers.run_record import record_lost

log = logging.getLogger("hotreload.worker")


class DeployWorker(Worker):
    """An ``rq.Worker`` whose stop requests interrupt the running deploy job and that outlives Redis outages."""

    # After an outage, look for Redis again every few seconds rather than up to a minute later.
    max_connection_wait_time = MAX_WAIT

    # RQ blocks up to its worker TTL in BLPOP and raises the socket timeout above that (to
    # minutes), so a half-open connection would hang the worker: keep both short instead.
    @property
    def dequeue_timeout(self) -> int:
        return MAX_BLOCK

    @property
    def connection_timeout(self) -> int:
        return SOCKET_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outage = Outage("the worker")
        self.leftover_runs: set[str] = set()  # runs whose processes outlived their job
        # RQ logs every reconnection attempt; we log the outage once.
        for old in [f for f in self.log.filters if isinstance(f, QuietConnectionErrors)]:
            self.log.removeFilter(old)
        self.log.addFilter(QuietConnectionErrors(self.outage))

    # -- Redis outages: bookkeeping waits for Redis instead of ending the worker -----------
    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        try:
            super().heartbeat(timeout, pipeline=pipeline)
        except REDIS_DOWN as exc:
            self.outage.down(exc)
            return
        if pipeline is None:
            self.outage.over()

    def set_state(self, state: str, pipeline: Any = None) -> None:
        try:
            super().set_state(state, pipeline=pipeline)
        except REDIS_DOWN as exc:
            self.outage.down(exc)

    def check_for_suspension(self, burst: bool) -> None:
        try:
            super().check_for_suspension(burst)
        except REDIS_DOWN as exc:
            self.outage.down(exc)

    def run_maintenance_tasks(self) -> None:
        try:
            super().run_maintenance_tasks()
        except REDIS_DOWN as exc:
            self.outage.down(exc)

    def maintain_heartbeats(self, job: Job, execution: Any) -> None:
        # While a job runs: the horse goes on; its own result waits for Redis (workers.job).
        try:
            super().maintain_heartbeats(job, execution)
        except REDIS_DOWN as exc:
            self.outage.down(exc)

    def _pubsub_exception_handler(self, exc: Exception, pubsub: Any, pubsub_thread: Any) -> None:
        if isinstance(exc, REDIS_DOWN):
            self.outage.down(exc)
            time.sleep(2.0)
            return
        super()._pubsub_exception_handler(exc, pubsub, pubsub_thread)

    def teardown(self) -> None:
        try:
            super().teardown()
        except REDIS_DOWN as exc:
            self.outage.down(exc)

    def execute_job(self, job: Job, queue: Queue) -> None:
        try:
            self._execute_job(job, queue)
        finally:
            # Remember the runs that left processes behind (pruning those whose processes ended).
            runs = {*self.leftover_runs, job.id}
            self.leftover_runs = {run for run in runs if find_run_processes(run)}

    def end_leftovers(self) -> None:
        """At stop: end every process that the jobs of this worker left running."""
        if self.leftover_runs:
            stopped = kill_run(self.leftover_runs, grace=job_module.KILL_GRACE)
            print(f"[INFO] Stopped {stopped} background process(es) left by deploy jobs", flush=True)
            self.leftover_runs = set()

    def _execute_job(self, job: Job, queue: Queue) -> None:
        try:
            super().execute_job(job, queue)
        except REDIS_DOWN as exc:
            self.outage.down(exc)
            if self.horse_pid:
                # Its job goes on and waits for Redis to record its result itself.
                self.wait_for_horse()
                self._horse_pid = 0
            try:
                until_redis_answers(self.connection.ping, self.outage, give_up=lambda: self._stop_requested)
            except REDIS_DOWN:
                return  # stopping during the outage: the next worker recovers the run (recover_orphans)
            settle_after_outage(job, queue)

    def request_stop(self, signum: int, frame: Any) -> None:
        if self.horse_pid:
            print("[INFO] Stop requested: interrupting the running job", flush=True)
            self.kill_horse(signal.SIGTERM)
        super().request_stop(signum, frame)

    def request_force_stop(self, signum: int, frame: Any) -> None:
        # A second signal: give the horse its grace to take its tree down, then go.
        if self.horse_pid:
            self.kill_horse(signal.SIGTERM)
        super().request_force_stop(signum, frame)

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        # A failed command is an expected outcome, already logged with its reason; a
        # traceback of our own job function would only bury it.
        if len(exc_info) > 1 and isinstance(exc_info[1], job_module.JobFailed):
            return
        super().handle_exception(job, *exc_info)

    def handle_job_success(self, job: Job, *args: Any, **kwargs: Any) -> None:
        super().handle_job_success(job, *args, **kwargs)
        _wake(job)

    def handle_job_failure(self, job: Job, *args: Any, **kwargs: Any) -> None:
        super().handle_job_failure(job, *args, **kwargs)
        _wake(job)

    def handle_work_horse_killed(self, job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        signum = os.WTERMSIG(ret_val) if ret_val and os.WIFSIGNALED(ret_val) else None
        killed = kill_run(job.id, grace=job_module.KILL_GRACE)
        why = (
            f"the process running the job was killed by signal {signum}"
            if signum
            else (f"the process running the job exited unexpectedly (status {ret_val})")
        )
        if signum == signal.SIGKILL:
            why += " (out of memory, or killed by hand)"
        say(f"[ERROR] {why}; {killed} leftover job process(es) stopped [job {job.id}]")
        record_lost(job, Outcome.FAILED, why)
        policy_for(JobKind(job.meta.get("kind") or JobSpec.from_dict(job.args[0]).kind)).on_failure(
            job, job.connection, RuntimeError, RuntimeError(why), None
        )


def _wake(job: Job) -> None:
    """Once RQ's registries say the job is over, the poller can decide the next step at once."""
    try:
        spec = JobSpec.from_dict(job.args[0])
        wake_poller(job.connection, DeployKeys(spec.deployment, spec.instance))
    except Exception:  # noqa: BLE001 - the poller also looks at its interval
        log.debug("could not wake the poller for %s", job.id)


def settle_after_outage(job: Job, queue: Queue) -> None:
    """A job whose end Redis missed: keep what the horse recorded, else fail it through its policy.

    A failed PRE_DEPLOY is retried by the poller, so a run whose outcome was lost runs again;
    a job dequeued but never started goes back to the front of its queue.
    """
    try:
        status: JobStatus | None = job.get_status(refresh=True)
    except InvalidJobOperation:
        status = None  # gone with Redis' data: the poller deploys the head again
    if status in (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED, None):
        _wake(job)
        return
    if status == JobStatus.QUEUED:
        if job.id not in queue.get_job_ids():
            queue.push_job_id(job.id, at_front=True)
        return
    reason = "Redis was unreachable when the job ended, so its outcome was not recorded"
    say(f"[WARN] {reason}; failing it so that it runs again [job {job.id}]")
    record_lost(job, Outcome.INTERRUPTED, reason)
    # RQ's clean-up moves it to the failed registry and runs its failure callback (the policy).
    StartedJobRegistry(queue.name, connection=job.connection).cleanup(timestamp=time.time() + 10**9)
    _wake(job)


def recover_orphans(connection: Redis, keys: DeployKeys) -> int:
    """Fail, through their policies, the jobs a dead worker of this instance left started."""
    recovered = 0
    for name in keys.queues():
        registry = StartedJobRegistry(name, connection=connection)
        for job_id in registry.get_job_ids(cleanup=False):
            kill_run(job_id, grace=job_module.KILL_GRACE)
            try:
                job = Job.fetch(job_id, connection=connection)
            except Exception:  # noqa: BLE001 - the job hash expired: nothing to record
                continue
            reason = "interrupted: the worker running it stopped before it finished"
            say(f"[WARN] Recovering job {job_id} left running by a stopped worker: {reason}")
            record_lost(job, Outcome.INTERRUPTED, reason)
            recovered += 1
        # RQ's own clean-up moves them to the failed registry and runs their failure callbacks.
        registry.cleanup(timestamp=time.time() + 10**9)
    return recovered


def run_worker(
    redis_url: str,
    keys: DeployKeys,
    secrets: list[str],
    max_output_lines: int = 1000,
    kill_grace: float = 3.0,
    log_level: str = "WARNING",
) -> None:
    """Entry point of the ``worker`` process of the Procfile."""
    job_module.configure(secrets, max_output_lines, kill_grace)
    connection = connect(redis_url)
    queues = [Queue(name, connection=connection) for name in keys.queues()]
    recover_orphans(connection, keys)
    worker = DeployWorker(
        queues, connection=connection, name=f"{keys.deployment}.{keys.instance}.{os.getpid()}"
    )
    say(f"[INFO] Worker {worker.name} listening on {', '.join(q.name for q in queues)}")
    try:
        worker.work(logging_level=log_level, with_scheduler=False, max_idle_time=None)
    finally:
        worker.end_leftovers()
