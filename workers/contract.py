"""The job contract shared by the poller (which enqueues) and the workers (which execute).

A ``JobSpec`` says everything a worker needs to run one deploy job; ``DeployKeys``
names every Redis key and RQ queue of one instance of one deployment, so both sides
speak one vocabulary::

    keys = DeployKeys(deployment="a1b2c3", instance="web-1")
    spec = JobSpec(kind=JobKind.PRE, command="bash migrate.sh", cwd="/workspaces/app",
                   timeout=300, commit="1a2b3c...", previous=None, branch="main",
                   workspace="/workspaces/app", deployment="a1b2c3", instance="web-1")
    queue_name = keys.queue(spec.kind)

Nothing secret is ever part of a ``JobSpec``: jobs inherit the container
environment from the worker process, so tokens never travel through Redis.
"""

from __future__ import annotations

import enum
import time
from dataclasses import asdict, dataclass, field
from typing import Any


class JobKind(enum.StrEnum):
    """The three deploy job kinds; the value is the environment-variable prefix."""

    PRE = "PRE_DEPLOY"
    POST = "POST_DEPLOY"
    FAILED = "FAILED_DEPLOY"

    @property
    def tag(self) -> str:
        """The log prefix of the guide: ``[PRE-DEPLOY]``."""
        return "[" + self.value.replace("_", "-") + "]"

    @property
    def slug(self) -> str:
        return self.name.lower()


class Outcome(enum.StrEnum):
    """How one run of a job ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class JobSpec:
    """One deploy job to run: which command, where, for which commit, within how long."""

    kind: JobKind
    command: str
    cwd: str
    timeout: int
    commit: str
    previous: str | None
    branch: str
    workspace: str
    deployment: str
    instance: str
    attempt: int = 1
    boot: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)
    # Replicas (workers.lease): the PRE_DEPLOY lease value the poller claimed for this job, and
    # whether the job must claim its commit's lease itself (POST_DEPLOY_SCOPE=once).
    lease: str = ""
    once: bool = False
    # The deploy this job belongs to (``DeployState.next_seq``): part of its RQ job id, so a
    # deploy decided again (after a skipped or lost run) never collides with an earlier one.
    seq: int = 0
    # What follows a PRE_DEPLOY, enqueued by its outcome's transition (``DeployState``) in the
    # same atomic step: the POST_DEPLOY on success, the FAILED_DEPLOY on failure (spec dicts).
    post: dict[str, Any] | None = None
    failed: dict[str, Any] | None = None
    # DEPLOY_STRATEGY, and where the job's commit is checked out: the workspace (in-place, and
    # every job but a staged PRE_DEPLOY/FAILED_DEPLOY) or the staging checkout beside it.
    strategy: str = "in-place"
    checkout: str = ""
    # The app restarts once this commit is live (DEV_RESTART_WHEN_CHANGED matched).
    restart_app: bool = False

    @property
    def short(self) -> str:
        return self.commit[:7]

    @property
    def staged(self) -> bool:
        """Runs in a staging checkout: the live workspace moves to the commit only after it succeeded."""
        return bool(self.checkout) and self.checkout != self.workspace

    def description(self) -> str:
        """What a person sees in rq-dashboard: ``PRE_DEPLOY 1a2b3c4 bash migrate.sh``."""
        return f"{self.kind.value} {self.short} {self.command}"

    def job_env(self) -> dict[str, str]:
        """The ``DEPLOY_*`` variables every job gets on top of the container environment."""
        env = {
            "DEPLOY_COMMIT_SHA": self.commit,
            "DEPLOY_PREVIOUS_SHA": self.previous or "",
            "DEPLOY_BRANCH": self.branch,
            "DEPLOY_JOB": self.kind.value,
            "DEPLOY_ATTEMPT": str(self.attempt),
            "DEPLOY_INSTANCE": self.instance,
            "DEPLOY_WORKSPACE": self.workspace,
            "DEPLOY_CHECKOUT": self.checkout or self.workspace,
            "DEPLOY_STRATEGY": self.strategy,
        }
        env.update(self.extra_env)
        return env

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = self.kind.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        # Fields this version does not know (a job queued by an older one) are dropped.
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        values["kind"] = JobKind(values["kind"])
        return cls(**values)


@dataclass(frozen=True)
class DeployKeys:
    """Redis key and queue names of one instance of one deployment.

    Per deployment (shared by replicas): per-commit outcomes, the lease, the run history.
    Per instance (one workspace, one worker): queues, processed commit, retry state.
    """

    deployment: str
    instance: str

    @property
    def prefix(self) -> str:
        return f"hotreload:{self.deployment}"

    @property
    def instance_prefix(self) -> str:
        return f"{self.prefix}:instance:{self.instance}"

    def queue(self, kind: JobKind) -> str:
        return f"hotreload:{self.deployment}:{self.instance}:{kind.slug}"

    def queues(self) -> list[str]:
        """In priority order: a waiting PRE_DEPLOY goes before a waiting POST_DEPLOY."""
        return [self.queue(JobKind.PRE), self.queue(JobKind.FAILED), self.queue(JobKind.POST)]

    @property
    def processed(self) -> str:
        """The last commit whose PRE_DEPLOY succeeded on this instance."""
        return f"{self.instance_prefix}:processed"

    @property
    def head(self) -> str:
        """The newest commit the poller has seen on the branch (a POST for another one is superseded)."""
        return f"{self.instance_prefix}:head"

    @property
    def retry(self) -> str:
        """Hash: commit, attempts, next_at, last_error of the failing commit."""
        return f"{self.instance_prefix}:retry"

    @property
    def status(self) -> str:
        """Hash the poller keeps for /status and ``hotreload status``."""
        return f"{self.instance_prefix}:status"

    @property
    def stats(self) -> str:
        """Hash of running totals of this instance's job runs (``workers.run_stats``), read by /metrics."""
        return f"{self.instance_prefix}:stats"

    @property
    def commands(self) -> str:
        """List the poller blocks on: ``sync`` (webhook, CLI), ``wake`` (a job ended), ``gate`` (the app asks)."""
        return f"{self.instance_prefix}:commands"

    @property
    def app_events(self) -> str:
        """List the app supervisor blocks on: ``start <sha>`` once a commit is deployed."""
        return f"{self.instance_prefix}:app"

    @property
    def boots(self) -> str:
        """Counter of poller boots: part of every job id, so a restart never collides with an old job."""
        return f"{self.instance_prefix}:boots"

    @property
    def runs(self) -> str:
        """Sorted set of run (RQ job) ids by start time, newest last: the deploy history."""
        return f"{self.prefix}:runs"

    def last_run(self, kind: JobKind) -> str:
        """Hash with the last run of a kind on this instance: commit, outcome, exit code, start, duration."""
        return f"{self.instance_prefix}:last:{kind.slug}"

    def commit_record(self, commit: str) -> str:
        """Hash per commit shared by all replicas: who ran which job and how it ended."""
        return f"{self.prefix}:commit:{commit}"

    def lease(self, kind: JobKind, commit: str | None = None) -> str:
        """Lease key (``workers.lease``) of the instance running a job for the deployment.

        Without a commit: one for the whole deployment (PRE_DEPLOY: migrations of two commits
        never overlap either); with one: per commit (POST_DEPLOY_SCOPE=once).
        """
        if commit is None:
            return f"{self.prefix}:lease:{kind.slug}"
        return f"{self.prefix}:lease:{commit}:{kind.slug}"

    @property
    def commits(self) -> str:
        """Sorted set of the commits with a per-commit record, by first record time (for /status)."""
        return f"{self.prefix}:commits"

    @property
    def deployed(self) -> str:
        """The commit whose PRE_DEPLOY succeeded last in the deployment: a record older than that is a past deploy."""
        return f"{self.prefix}:deployed"

    def job_id(self, spec: JobSpec) -> str:
        return (
            f"{self.deployment}-{self.instance}-{spec.commit[:12]}-{spec.kind.slug}"
            f"-b{spec.boot}d{spec.seq}a{spec.attempt}"
        )

    @property
    def deploys(self) -> str:
        """Counter of deploys decided by this instance (``JobSpec.seq``)."""
        return f"{self.instance_prefix}:deploys"

    def transition(self, job_id: str) -> str:
        """Set once when a job's outcome is recorded: a second outcome of the same run is ignored."""
        return f"{self.instance_prefix}:outcome:{job_id}"

    def reply(self, token: str) -> str:
        """List on which the poller answers one ``hotreload run`` request: the job id, or ``error: ...``."""
        return f"{self.instance_prefix}:reply:{token}"

    @property
    def going_live(self) -> str:
        """Hash: the commit whose staged PRE_DEPLOY succeeded, waiting for the workspace to move to it."""
        return f"{self.instance_prefix}:going_live"

    @property
    def control(self) -> str:
        """Hash of the deployment's steering (every replica): paused, pin, who asked and when."""
        return f"{self.prefix}:control"

    @property
    def steering_counts(self) -> str:
        """Hash: how often each steering command was given (for /metrics)."""
        return f"{self.prefix}:steering"


def manual_job_id(keys: DeployKeys, kind: JobKind, commit: str) -> str:
    """The RQ job id of a run asked for by hand (``hotreload run``): never the id of a deploy."""
    return f"{keys.deployment}-{keys.instance}-{commit[:12]}-{kind.slug}-manual{time.time_ns() // 1_000_000}"


def wake_poller(connection: Any, keys: DeployKeys, command: str = "wake") -> None:
    """Tell the poller to look again now instead of at the end of its interval."""
    connection.rpush(keys.commands, command)
    connection.expire(keys.commands, 3600)
