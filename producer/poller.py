"""The poller: clones, runs the boot PRE_DEPLOY, then follows the branch and enqueues deploys.

Every cycle it asks the remote for the branch head (``git ls-remote``: cheap), fetches only
when the head moved, and decides per commit, from the state in Redis::

    new commit, nothing running   -> check it out, enqueue PRE_DEPLOY (+ POST_DEPLOY after it)
    PRE_DEPLOY failed              -> workspace back to the processed commit; retry with back-off
    commit already processed       -> nothing ("Repository commit unchanged. Skipping deploy jobs.")

It waits between cycles on a Redis list, so a webhook, ``hotreload sync`` or the end of a
job wakes it at once instead of at the end of the interval::

    Poller(settings).run()   # returns 1 when the boot PRE_DEPLOY failed
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from rq.job import Job, JobStatus

from producer.deploy_queue import DeployQueue
from producer.git_sync import GitCheckout, GitSyncError
from producer.replicas import RECHECK_INTERVAL, Replicas
from producer.settings import Settings
from producer.stop_signal import Stop, raise_stop_on_signals
from workers.commit_tracker import CommitTracker
from workers.contract import JobKind, JobSpec
from workers.lease import LEASE_TTL, Lease
from workers.redis_connection import blpop, connect
from workers.redis_outage import Outage

if TYPE_CHECKING:
    from producer.metrics import Metrics

BOOT_FAILED = "ERROR: Initial PRE_DEPLOY job failed. Container cannot start."
#: Period of Redis's cron (default hz 10), which is when it ends blocked commands' timeouts.
REDIS_TICK = 0.1


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def say(message: str) -> None:
    print(message, flush=True)


def backoff(base: float, failures: int, cap: float) -> float:
    return float(min(cap, base * (2 ** max(0, failures - 1))))


class Poller:
    """Follows one branch for one instance and enqueues its deploy jobs."""

    def __init__(
        self, settings: Settings, connection: redis.Redis | None = None, metrics: Metrics | None = None
    ):
        self.settings = settings
        self.metrics = metrics
        # The PRE_DEPLOY this poller enqueued last: if it fails, FAILED_DEPLOY runs once for it.
        self.pending_pre: Job | None = None
        self.keys = settings.keys
        self.connection = connection or connect(settings.redis_url_effective)
        self.tracker = CommitTracker(self.connection, self.keys)
        self.queue = DeployQueue(self.connection, self.keys)
        self.replicas = Replicas(self.connection, self.keys, self.tracker)
        self.recheck_at: float | None = None  # monotonic: look again soon (a replica runs PRE_DEPLOY)
        self.waiting_note: tuple[str, str, str] | None = None
        self.secrets = settings.secret_values()
        self.interval = float(settings.GITHUB_SYNC_INTERVAL)
        self.checkout = GitCheckout(
            settings.GITHUB_REPO_URL or "",
            Path(settings.WORKSPACE_PATH),
            settings.GITHUB_BRANCH,
            settings.token,
            self.secrets,
        )
        self.job_checkouts: dict[JobKind, GitCheckout] = {}
        for kind in JobKind:
            job = settings.job(kind)
            if job.enabled and job.repo_url:
                path = Path(str(settings.WORKSPACE_PATH) + ".jobs") / kind.slug
                self.job_checkouts[kind] = GitCheckout(job.repo_url, path, None, settings.token, self.secrets)
        self.state = "starting"
        self.booted = False
        self.boot_number = 0
        self.sync_failures = 0
        self.next_sync = 0.0
        self.retry_at: float | None = None
        self.last_error: str | None = None
        self.unchanged_logged: str | None = None
        self.outage = Outage("poller")

    # -- status ---------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return {"state": self.state, "booted": self.booted}

    def set_state(self, state: str, **fields: Any) -> None:
        self.state = state
        with contextlib.suppress(redis.RedisError):  # the status is a view; the loop logs outages
            self.connection.hset(
                self.keys.status,
                mapping={
                    "state": state,
                    "branch": self.checkout.branch or "",
                    "sync_failures": self.sync_failures,
                    "next_retry": self.retry_at or "",
                    "updated_at": time.time(),
                    **{k: "" if v is None else v for k, v in fields.items()},
                },
            )

    # -- git ---------------------------------------------------------------------------
    def clone_with_retry(self) -> None:
        failures = 0
        while True:
            try:
                branch = self.checkout.ensure_cloned()
                for job_checkout in self.job_checkouts.values():
                    job_checkout.ensure_cloned()
                say(f"[INFO] Repository ready in {self.checkout.path}, branch {branch}")
                return
            except GitSyncError as exc:
                failures += 1
                delay = backoff(2.0, failures, 60.0)
                say(f"[ERROR] Clone failed (attempt {failures}): {exc}; retrying in {delay:.0f}s")
                self.set_state("cloning", last_error=str(exc))
                self._sleep(delay)

    def update_job_checkouts(self) -> None:
        for kind, job_checkout in self.job_checkouts.items():
            try:
                job_checkout.checkout(job_checkout.fetch())
            except GitSyncError as exc:
                say(f"[WARN] Could not update the {kind.value} job repository: {exc}; using the copy on disk")

    # -- specs -------------------------------------------------------------------------
    def spec(
        self, kind: JobKind, commit: str, previous: str | None, attempt: int, lease: str = ""
    ) -> JobSpec | None:
        job = self.settings.job(kind)
        if not job.enabled or not job.command:
            return None
        base = self.job_checkouts[kind].path if kind in self.job_checkouts else self.settings.app_dir
        cwd = base / job.folder if job.folder else base
        return JobSpec(
            kind=kind,
            command=job.command,
            cwd=str(cwd),
            timeout=job.timeout,
            commit=commit,
            previous=previous,
            branch=self.checkout.branch or "",
            workspace=str(self.checkout.path),
            deployment=self.keys.deployment,
            instance=self.keys.instance,
            attempt=attempt,
            boot=self.boot_number,
            generation=self.tracker.generation(),
            lease=lease,
            once=kind is JobKind.POST and self.settings.POST_DEPLOY_SCOPE == "once",
        )

    def start_deploy(self, commit: str, attempt: int, lease: Lease | None = None) -> Job | None:
        """Check out ``commit`` and enqueue its jobs; returns the PRE_DEPLOY job (None if none)."""
        previous = self.tracker.processed()
        self.checkout.checkout(commit)
        self.update_job_checkouts()
        self.tracker.set_head(self.checkout.fetched or commit)
        pre = self.spec(JobKind.PRE, commit, previous, attempt, lease=lease.value if lease else "")
        post = self.spec(JobKind.POST, commit, previous, attempt)
        if pre is None:
            # Nothing strict to run: the commit is deployed as soon as it is checked out.
            self.tracker.mark_processed(commit)
            self.connection.rpush(self.keys.app_events, f"deployed {commit}")
            say(f"[INFO] Commit {commit[:7]} deployed (no PRE_DEPLOY_COMMAND configured)")
        pre_job, _ = self.queue.enqueue_deploy(pre, post)
        if pre_job is not None:
            say(f"[INFO] Deploying commit {commit[:7]}: PRE_DEPLOY queued (attempt {attempt})")
        self.pending_pre = pre_job
        self.set_state("pre_deploy" if pre else "post_deploy", checked_out=commit, processed=previous or "")
        return pre_job

    # -- boot --------------------------------------------------------------------------
    def boot(self) -> bool:
        self.set_state("cloning")
        self.boot_number = int(self.connection.incr(self.keys.boots))
        dropped = self.queue.purge_leftovers()
        if dropped:
            say(f"[INFO] Dropped {dropped} job(s) queued by an earlier boot")
        if self.replicas.release_left_by_earlier_boot():
            say("[INFO] Released the PRE_DEPLOY lease an earlier run of this instance left behind")
        self.clone_with_retry()
        commit = self.checkout.fetch()
        self.tracker.set_head(commit)
        seen: tuple[str, str] | None = None
        while True:
            record = self.replicas.record(commit)
            if self.tracker.processed() == commit or self.replicas.current(commit, record):
                say(
                    f"[INFO] Commit {commit[:7]} already deployed (PRE_DEPLOY succeeded before); starting the app"
                )
                self.follow(commit, record, booting=True)
                self.open_gate()
                return True
            if seen is not None and self.replicas.marker(record) != seen and self.replicas.failed(record):
                # The replica this boot waited for saw the PRE_DEPLOY fail: as if it had failed here.
                say(
                    f"[ERROR] PRE_DEPLOY job for commit {commit[:7]} "
                    f"{record.get('pre_reason') or 'failed'} on instance {record.get('pre_instance')}"
                )
                say(BOOT_FAILED)
                self.set_state("failed", last_error="initial PRE_DEPLOY failed")
                return False
            seen = seen or self.replicas.marker(record)
            self.replicas.adopt_failure(commit, record)
            retry = self.tracker.retry_state()
            attempt = retry.attempts + 1 if retry and retry.commit == commit else 1
            may_run, lease = self.claim(commit, record)
            if may_run:
                break
            # Another replica runs the boot PRE_DEPLOY of this deployment: wait for its outcome.
            self.wait_for_replica(commit, None)
            self.connection.blpop([self.keys.commands], timeout=RECHECK_INTERVAL)
        pre_job = self.leased_deploy(commit, attempt, lease)
        if pre_job is None:
            self.open_gate()
            return True
        say(f"[INFO] Running the initial PRE_DEPLOY for commit {commit[:7]} before the app starts")
        status = self.wait_for(pre_job)
        if status == JobStatus.FINISHED and self.tracker.processed() == commit:
            self.open_gate()
            return True
        failed_job = self.failed_deploy()
        if failed_job is not None:
            # The container exits next: let the team's FAILED_DEPLOY run first.
            say(f"[INFO] Running FAILED_DEPLOY for commit {commit[:7]} before the container exits")
            self.wait_for(failed_job)
        say(BOOT_FAILED)
        self.set_state("failed", last_error="initial PRE_DEPLOY failed")
        return False

    def failed_deploy(self, pre_job: Job | None = None, job_id: str | None = None) -> Job | None:
        """Enqueue FAILED_DEPLOY (lenient) once for a failed PRE_DEPLOY (default: the one enqueued last).

        Returns the FAILED_DEPLOY job, or None: PRE_DEPLOY not over or did not fail, no
        FAILED_DEPLOY_COMMAND, or already enqueued (the usual dedup of commit, kind, boot, attempt).
        """
        mine = pre_job is None
        if mine:
            pre_job, self.pending_pre = self.pending_pre, None
        if pre_job is None:
            return None
        try:
            status = pre_job.get_status(refresh=True)
            meta = pre_job.get_meta(refresh=True)
        except redis.RedisError:
            if mine:
                self.pending_pre = pre_job  # Redis is down: look again once it is back
            raise
        except Exception:  # noqa: BLE001 - the job expired: nothing left to report
            return None
        if status in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED):
            if mine:
                self.pending_pre = pre_job  # not over yet: look again next cycle
            return None
        if status not in (JobStatus.FAILED, JobStatus.STOPPED):
            return None
        pre = JobSpec.from_dict(pre_job.args[0])
        failed = self.spec(JobKind.FAILED, pre.commit, pre.previous, pre.attempt)
        if failed is None:
            return None
        exit_code = meta.get("exit_code")
        failed = dataclasses.replace(
            failed,
            extra_env={
                **failed.extra_env,
                "DEPLOY_FAILED_JOB": pre.kind.value,
                "DEPLOY_EXIT_CODE": "" if exit_code is None else str(exit_code),
                "DEPLOY_FAILED_REASON": str(meta.get("reason") or meta.get("outcome") or "failed"),
            },
        )
        job = self.queue.enqueue(failed, job_id=job_id)
        if job is not None:
            say(f"[INFO] PRE_DEPLOY of commit {pre.short} failed: FAILED_DEPLOY queued")
        return job

    def wait_for(self, job: Job) -> JobStatus | None:
        while True:
            try:
                status = job.get_status(refresh=True)
                if status in (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
                    self.outage.over()
                    return status
                self.connection.blpop([self.keys.commands], timeout=0.5)
                self.outage.over()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                # The job goes on in the worker, which records its outcome once Redis is back.
                self.outage.down(exc)
                self.redis_pause()

    def redis_pause(self) -> None:
        """Back off while Redis is away: 0.5 s at first, growing with the outage, at most 5 s."""
        self._sleep(min(5.0, max(0.5, time.time() - (self.outage.since or time.time()))))

    def open_gate(self) -> None:
        self.booted = True
        processed = self.tracker.processed() or ""
        self.connection.rpush(self.keys.app_events, f"start {processed}")
        self.connection.expire(self.keys.app_events, 3600)
        self.set_state("running", processed=processed, checked_out=self.checkout.head() or "")

    # -- the loop ----------------------------------------------------------------------
    def sync_remote(self) -> None:
        try:
            if not self.checkout.is_cloned():
                # The workspace was deleted under us: clone it again (ensure_cloned refuses
                # a non-empty folder, so files left without their .git are never clobbered).
                say(f"[WARN] No clone in {self.checkout.path} any more; cloning the repository again")
                self.checkout.ensure_cloned()
            head = self.checkout.remote_head()
            moved = head != self.checkout.fetched
            if moved:
                self.checkout.fetch()
                say(f"[INFO] New commit detected on {self.checkout.branch}: {self.checkout.fetched}")
            if self.sync_failures:
                say(f"[INFO] Remote reachable again after {self.sync_failures} failed sync(s)")
                self.sync_failures = 0
                self.set_state(self.state, last_error=None)  # /status shows the recovery at once
            self.sync_failures = 0
            self._count_sync("changed" if moved else "unchanged")
            self.last_error = None
            self.next_sync = time.monotonic() + self.interval
        except GitSyncError as exc:
            self.sync_failures += 1
            delay = backoff(self.interval, self.sync_failures, max(self.interval, 60.0))
            if str(exc) != self.last_error or self.sync_failures % 10 == 1:
                say(f"[ERROR] Sync failed ({self.sync_failures} in a row): {exc}; next try in {delay:.0f}s")
            self.last_error = str(exc)
            self.next_sync = time.monotonic() + delay
            self._count_sync("error")
            self.set_state(self.state, last_error=str(exc), next_sync=time.time() + delay)

    def _count_sync(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.sync(result)

    def decide(self) -> None:
        self.recheck_at = None
        target = self.checkout.fetched
        if not target:
            return
        if self.tracker.head() != target:
            self.tracker.set_head(target)
        self.failed_deploy()
        if self.queue.busy():
            return  # one job at a time: the deploy of target waits for the running one
        processed = self.tracker.processed()
        if target == processed:
            self.retry_at = None
            self.restore(processed)
            if self.unchanged_logged != target:
                say(f"[INFO] Repository commit unchanged. Skipping deploy jobs. (commit {target[:7]})")
                self.unchanged_logged = target
            if self.state != "running":
                self.set_state("running", processed=processed, checked_out=processed)
            return
        self.unchanged_logged = None
        record = self.replicas.record(target)
        if self.replicas.current(target, record):
            self.follow(target, record)
            return
        if self.replicas.succeeded(record) and not self.remote_still_at(target):
            return  # a past deploy of target, but the branch moved on already: decide on the new head
        adopted = self.replicas.adopt_failure(target, record)
        if adopted is not None:
            say(
                f"[ERROR] PRE_DEPLOY job for commit {target[:7]} {adopted.reason} on instance "
                f"{record.get('pre_instance')} (attempt {adopted.attempts}); commit not processed, "
                f"the app stays on {processed[:7] if processed else 'no commit'}; will retry"
            )
        retry = self.tracker.retry_state()
        attempt = 1
        if retry and retry.commit == target:
            due = retry.next_at(self.interval, float(self.settings.RETRY_BACKOFF_MAX))
            if time.time() < due:
                self.restore(processed)
                if self.retry_at != due:
                    say(
                        f"[INFO] PRE_DEPLOY of commit {target[:7]} failed {retry.attempts} time(s); "
                        f"next retry in {due - time.time():.0f}s"
                    )
                self.retry_at = due
                self.set_state("failed", processed=processed or "", last_error=retry.reason)
                return
            attempt = retry.attempts + 1
        self.retry_at = None
        may_run, lease = self.claim(target, record)
        if not may_run:
            self.wait_for_replica(target, processed)
            return
        self.leased_deploy(target, attempt, lease)

    # -- replicas (producer.replicas) ----------------------------------------------------
    def claim(self, commit: str, record: dict[str, str]) -> tuple[bool, Lease | None]:
        """May this instance run the PRE_DEPLOY of ``commit`` now, and under which lease."""
        pre = self.settings.job(JobKind.PRE)
        if not (pre.enabled and pre.command):
            return True, None  # nothing strict to run: every replica deploys on its own
        lease = self.replicas.claim(commit, record)
        return lease is not None, lease

    def leased_deploy(self, commit: str, attempt: int, lease: Lease | None) -> Job | None:
        """``start_deploy`` under the PRE_DEPLOY lease: handed over to the queued job, else released."""
        self.waiting_note = None
        try:
            pre_job = self.start_deploy(commit, attempt, lease)
        except BaseException:
            self.replicas.drop()
            raise
        if lease is not None:
            self.replicas.hand_over(pre_job)
        return pre_job

    def follow(self, commit: str, record: dict[str, str], booting: bool = False) -> None:
        """Deploy ``commit`` without running its PRE_DEPLOY: it succeeded already, on a replica or here."""
        previous = self.tracker.processed()
        self.waiting_note = None
        self.checkout.checkout(commit)
        self.tracker.mark_processed(commit)
        if previous == commit:
            return
        if not booting:
            self.update_job_checkouts()
        post = None
        if self.settings.POST_DEPLOY_SCOPE == "each":
            # POST_DEPLOY_SCOPE=once: the replica that ran PRE_DEPLOY runs it (workers.job.claim_lease).
            post = self.spec(JobKind.POST, commit, previous, 1)
            if post is not None:
                self.queue.enqueue(post)
        if booting:
            return  # the boot opens the gate itself
        self.connection.rpush(self.keys.app_events, f"deployed {commit}")
        self.connection.expire(self.keys.app_events, 3600)
        say(
            f"[INFO] Commit {commit[:7]} deployed: PRE_DEPLOY succeeded on instance "
            f"{record.get('pre_instance') or '?'} (not run again here)"
        )
        self.set_state(
            "post_deploy" if post else "running", processed=commit, checked_out=commit, waiting_for=""
        )

    def wait_for_replica(self, commit: str, processed: str | None) -> None:
        """Another replica holds the PRE_DEPLOY lease: stay on the processed commit, look again soon."""
        self.restore(processed)
        self.recheck_at = time.monotonic() + RECHECK_INTERVAL
        holder = self.replicas.holder()
        if holder is None:
            return  # a run just ended: the next look decides on its outcome
        note = (commit, holder.instance, holder.token)
        if note != self.waiting_note:
            self.waiting_note = note
            if holder.instance == self.keys.instance:
                whose = f"an earlier run of this instance (it expires within {LEASE_TTL:.0f}s)"
            else:
                whose = f"instance {holder.instance}"
            if holder.commit == commit:
                say(f"[INFO] Commit {commit[:7]}: PRE_DEPLOY is running on {whose}; waiting for its outcome")
            else:
                say(
                    f"[INFO] Commit {commit[:7]} waits: {whose} is running the PRE_DEPLOY "
                    f"of commit {holder.commit[:7]}"
                )
        self.set_state("waiting", processed=processed or "", waiting_for=holder.instance)

    def remote_still_at(self, commit: str) -> bool:
        """Before running a past commit's PRE_DEPLOY again (a revert), make sure the branch is really there."""
        self.sync_remote()
        if self.checkout.fetched == commit:
            return True
        self.recheck_at = time.monotonic()
        return False

    def restore(self, processed: str | None) -> None:
        """Outside a deploy the workspace is at the processed commit (after a failed PRE_DEPLOY too)."""
        if processed and self.checkout.head() != processed:
            self.checkout.checkout(processed)
            say(f"[INFO] Workspace back at the processed commit {processed[:7]}")

    def answer(self, command: str) -> bool:
        """Handle a command from the list; True when it asks for a remote check now."""
        if command == "gate" and self.booted:
            self.connection.rpush(self.keys.app_events, f"start {self.tracker.processed() or ''}")
        return command == "sync"

    def cycle(self, check_remote: bool) -> None:
        if check_remote:
            self.sync_remote()
        self.decide()

    def wait(self) -> bool:
        """Block until the next sync is due, a command arrives or a retry is due."""
        until = self.next_sync
        if self.retry_at is not None:
            until = min(until, time.monotonic() + max(0.0, self.retry_at - time.time()))
        if self.recheck_at is not None:
            until = min(until, self.recheck_at)
        remaining = until - time.monotonic()
        # Redis ends a BLPOP timeout on its next cron tick (hz 10: up to 0.1 s late), so cycles
        # drifted to about interval + 0.05 s. Block until a tick before the deadline, then sleep
        # the rest here (a command arriving meanwhile is read by the next wait, at once).
        early = REDIS_TICK if remaining > 2 * REDIS_TICK else 0.0
        item = blpop(self.connection, [self.keys.commands], timeout=max(0.01, remaining - early))
        if item is None:
            if early:
                time.sleep(max(0.0, until - time.monotonic()))
            return time.monotonic() >= self.next_sync
        check_remote = self.answer(_text(item[1]))
        # Merge a burst of commands (pushes, job ends) into one cycle.
        while (extra := self.connection.lpop(self.keys.commands)) is not None:
            check_remote = self.answer(_text(extra)) or check_remote
        return check_remote or time.monotonic() >= self.next_sync

    def loop(self) -> None:
        check_remote = True
        while True:
            try:
                if self.outage.active and not self.connection.exists(self.keys.boots):
                    self.redis_lost_data()
                self.cycle(check_remote)
                check_remote = self.wait()
                self.outage.over()
            except redis.RedisError as exc:
                self.outage.down(exc)
                self.redis_pause()
                check_remote = True
            except GitSyncError as exc:
                say(f"[ERROR] {exc}")
                self._sleep(min(self.interval, 5.0))
                check_remote = True
            except Stop:
                raise
            except Exception as exc:  # noqa: BLE001 - nothing may kill the loop (template defect 3)
                say(f"[ERROR] Sync cycle failed: {type(exc).__name__}: {self._mask(str(exc))}; continuing")
                self._sleep(min(self.interval, 5.0))
                check_remote = True

    def redis_lost_data(self) -> None:
        """Redis came back empty (no persistence): rebuild, and never reuse a job id of the lost state.

        The processed commit is gone with it, so the head is deployed again (PRE_DEPLOY, then
        POST_DEPLOY); a job that was running when the data went away fails itself (workers.job).
        """
        self.boot_number = int(self.connection.incrby(self.keys.boots, self.boot_number + 1))
        say("[WARN] Redis came back without its data: the deploy state is rebuilt, the head deployed again")

    def _mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def _sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def run(self) -> int:
        raise_stop_on_signals()
        try:
            while True:
                try:
                    booted = self.boot()
                    break
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    # Redis went away during the boot: boot again once it is back (a new boot
                    # number, so nothing of the interrupted one is taken for current).
                    self.outage.down(exc)
                    self.redis_pause()
            if not booted:
                return 1
            self.loop()
        except Stop:
            say("[INFO] Poller stopping")
        return 0
