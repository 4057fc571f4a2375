"""How the poller of one instance shares a deployment with its replicas: PRE_DEPLOY once per commit.

Instances of a deployment (same DEPLOYMENT_ID, same REDIS_URL) each follow the branch in
their own workspace with their own worker; what they share is the per-commit record
(``CommitTracker.commit_record``: who ran which job, how it ended, which attempt) and one
PRE_DEPLOY lease (``workers.lease``). The observer reads the record and the holder for the
planner (a replica's success is followed, its failure counts as this instance's); the
poller claims the lease before it enqueues a PRE_DEPLOY::

    replicas = Replicas(redis, keys, tracker)
    record = replicas.record(commit)
    replicas.current(commit, record), replicas.failed(record), replicas.holder()   # observed
    if (lease := replicas.claim(commit, record)):
        ...enqueue PRE_DEPLOY with lease.value; replicas.hand_over(job)

The claim is check, lock, check again: the runner records the outcome before it releases
the lease, so whoever takes the lease next sees that outcome and never runs the job twice.
Between the claim and the moment the work horse starts the job (which renews the lease
itself), a heartbeat thread of the poller keeps the lease alive.
"""

from __future__ import annotations

from typing import Any

from rq.job import Job

from workers.commit_tracker import CommitTracker
from workers.contract import DeployKeys, JobKind, Outcome
from workers.lease import HEARTBEAT_INTERVAL, Heartbeat, Holder, Lease, job_lease_key, release_left_by

_NOT_YET_STARTED = {"queued", "deferred", "scheduled"}
_NOT_A_FAILURE = {"", Outcome.SUCCEEDED.value, Outcome.SKIPPED.value}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Replicas:
    """The shared side of one instance's deploy decisions."""

    def __init__(
        self, connection: Any, keys: DeployKeys, tracker: CommitTracker, heartbeat: float = HEARTBEAT_INTERVAL
    ):
        self.connection = connection
        self.heartbeat = heartbeat
        self.keys = keys
        self.tracker = tracker
        self.lease_key = job_lease_key(keys, JobKind.PRE, "")
        self._keeper: Heartbeat | None = None
        self._lease: Lease | None = None
        self._job_id: str | None = None

    # -- the per-commit record ---------------------------------------------------------
    def record(self, commit: str) -> dict[str, str]:
        return self.tracker.commit_record(commit)

    @staticmethod
    def succeeded(record: dict[str, str]) -> bool:
        return record.get("pre_outcome") == Outcome.SUCCEEDED.value

    def current(self, commit: str, record: dict[str, str]) -> bool:
        """PRE_DEPLOY of ``commit`` succeeded and no other commit was deployed since: follow it.

        A success followed by another commit's is a past deploy: going back to that commit (a
        revert) is a new deploy, and its PRE_DEPLOY runs again (once).
        """
        return self.succeeded(record) and self.tracker.deployed() == commit

    @staticmethod
    def failed(record: dict[str, str]) -> bool:
        return record.get("pre_outcome", "") not in _NOT_A_FAILURE

    @staticmethod
    def marker(record: dict[str, str]) -> tuple[str, str]:
        """Changes whenever a PRE_DEPLOY run of the commit ends, wherever it ran."""
        return record.get("pre_outcome", ""), record.get("pre_run", "")

    # -- the lease ---------------------------------------------------------------------
    def holder(self) -> Holder | None:
        return Holder.parse(self.connection.get(self.lease_key))

    def release_left_by_earlier_boot(self) -> bool:
        """A lease held under this INSTANCE_ID at boot was left by a run that is gone: don't wait out its TTL."""
        return release_left_by(self.connection, self.lease_key, self.keys.instance)

    def claim(self, commit: str, record: dict[str, str]) -> Lease | None:
        """Take the PRE_DEPLOY lease for ``commit``; None when another claim holds it or the record moved on."""
        self.drop()
        lease = Lease.new(self.connection, self.lease_key, self.keys.instance, commit)
        if not lease.acquire():
            return None
        if self.marker(self.record(commit)) != self.marker(record):
            # A run ended between our look and our claim: decide again on what it recorded.
            lease.release()
            return None
        self._lease, self._job_id = lease, None
        self._keeper = lease.heartbeat(self.heartbeat, keep_going=self._not_started).start()
        return lease

    def hand_over(self, job: Job | None) -> None:
        """The PRE_DEPLOY job is queued (its work horse renews the lease from its start), or was not (release)."""
        if job is None:
            self.drop()
        else:
            self._job_id = job.id

    def drop(self) -> None:
        """Stop keeping the lease and release it if no job took it over."""
        if self._keeper is not None:
            self._keeper.stop()
        if self._lease is not None and self._job_id is None:
            self._lease.release()
        self._keeper, self._lease, self._job_id = None, None, None

    def _not_started(self) -> bool:
        """Keep renewing while the poller checks out or the job waits in the queue."""
        if self._job_id is None:
            return True
        status = self.connection.hget(Job.key_for(self._job_id), "status")
        return status is not None and _text(status) in _NOT_YET_STARTED
