"""The deploy planner: one pure function from what the poller observed to the one thing to do next.

Boot and the loop, every replica and the steering commands go through ``plan``; nothing
else decides what deploys. It reads no clock, no Redis and no git, so each rule is a row
of a table of cases (tests/unit/test_planner.py)::

    action = plan(Observed(now=time.time(), booting=False, head=sha, processed=old, ...))
    match action:
        case Deploy(commit=c, attempt=n): ...   # check out c, enqueue its PRE_DEPLOY (attempt n)
        case Wait(until=t): ...                 # nothing before t (back-off, a replica's run)

The rules, in order: a job of this instance is queued or running -> wait for it; a job asked
for by ``hotreload run`` -> run it (a PRE_DEPLOY not beside a replica's); a staged
PRE_DEPLOY of the live commit succeeded -> move the workspace to it (``GoLive``: the
POST_DEPLOY is queued only then, so it runs on the moved workspace); the target (the
pinned commit, else the branch head) is live -> nothing (at boot: start the app); paused ->
nothing; a replica's PRE_DEPLOY of the target succeeded -> follow it; its PRE_DEPLOY failed
-> retry after the back-off (at boot: at once, once; a second failure exits 1 only when no
good commit is known); cancelled -> hold until a new commit or a sync; the target changes
none of PRE_DEPLOY_WHEN_CHANGED's paths -> live at once, its PRE_DEPLOY recorded as
skipped (``SkipPre``); a replica holds the PRE_DEPLOY lease -> wait; else deploy the target.
Which watched paths the target changes is observed (``Changes``, from git diff), not
looked up here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from producer.plan_actions import (
    Action,
    BootFailed,
    Deploy,
    Follow,
    GoLive,
    Restore,
    RunJob,
    SkipPre,
    StartApp,
    Wait,
)

__all__ = [
    "Action",
    "BootFailed",
    "Busy",
    "Changes",
    "Deploy",
    "Failure",
    "Follow",
    "GoLive",
    "Observed",
    "Pin",
    "Replica",
    "Restore",
    "RunJob",
    "RunRequest",
    "SkipPre",
    "StartApp",
    "Wait",
    "backoff_delay",
    "plan",
]

#: Seconds between two looks while another replica runs a PRE_DEPLOY.
REPLICA_RECHECK = 0.5


@dataclass(frozen=True)
class Failure:
    """The last failed PRE_DEPLOY of a commit, here or on a replica."""

    commit: str
    attempts: int
    failed_at: float
    reason: str = ""
    cancelled: bool = False


@dataclass(frozen=True)
class Busy:
    """A job of this instance that is queued or running."""

    kind: str
    commit: str


@dataclass(frozen=True)
class Replica:
    """What the deployment's shared record says about the target commit."""

    succeeded: bool = False  # its PRE_DEPLOY succeeded (anywhere)
    current: bool = False  # ... and no other commit was deployed since (follow it, don't re-run)
    instance: str = ""  # where it ran
    failure: Failure | None = None  # its last PRE_DEPLOY failed there


@dataclass(frozen=True)
class Pin:
    """A commit held by ``hotreload pin`` or ``hotreload rollback`` instead of the branch head."""

    commit: str
    ref: str = ""
    rollback: bool = False


@dataclass(frozen=True)
class RunRequest:
    """``hotreload run pre|post`` asked this instance to run one configured job now."""

    kind: str  # PRE_DEPLOY or POST_DEPLOY
    token: str


@dataclass(frozen=True)
class Changes:
    """What the target changes since the live commit, against the ``*_WHEN_CHANGED`` pathspecs.

    ``pre``/``post``: the job is wanted (no pathspecs set, a watched path changed, or no
    comparison is possible: first boot, unknown or unrelated history). ``restart``:
    DEV_RESTART_WHEN_CHANGED is set and one of its paths changed (or no comparison).
    """

    pre: bool = True
    post: bool = True
    restart: bool = False
    pre_watched: tuple[str, ...] = ()  # PRE_DEPLOY_WHEN_CHANGED, for the skip line


@dataclass(frozen=True)
class Observed:
    """Everything the decision depends on, read by the poller at the start of a cycle."""

    now: float
    booting: bool  # the app has not been started yet by this boot
    head: str | None  # the branch head as last fetched (None: not known yet, the remote fails)
    processed: str | None  # this instance's live commit
    workspace: str | None  # the commit checked out in the workspace
    busy: Busy | None = None
    failure: Failure | None = None  # this instance's failing commit
    replica: Replica = field(default_factory=Replica)
    lease_holder: str | None = None  # instance holding the PRE_DEPLOY lease (None: free)
    pre_configured: bool = True
    paused: bool = False
    pin: Pin | None = None
    boot_tried: str | None = None  # the commit whose PRE_DEPLOY this boot ran already
    run_request: RunRequest | None = None
    interval: float = 30.0
    backoff_max: float = 600.0
    changes: Changes = field(default_factory=Changes)  # of the target since the live commit
    going_live: str | None = None  # a staged PRE_DEPLOY succeeded; the workspace is not moved yet


def backoff_delay(attempts: int, base: float, cap: float) -> float:
    """Exponential back-off after ``attempts`` failures: base, 2*base, 4*base ... at most ``cap``."""
    return float(min(cap, base * (2 ** max(0, attempts - 1))))


def _failure(target: str, seen: Observed) -> Failure | None:
    """The target's failure as the deployment knows it: the instance's own or a replica's, the later one."""
    own = seen.failure if seen.failure and seen.failure.commit == target else None
    shared = seen.replica.failure if seen.replica.failure and seen.replica.failure.commit == target else None
    if own is None or (shared is not None and shared.attempts > own.attempts):
        if shared is not None and own is not None and own.cancelled:
            return Failure(target, shared.attempts, shared.failed_at, shared.reason, cancelled=True)
        return shared
    return own


def _idle(seen: Observed, reason: str, until: float | None = None) -> Action:
    """Nothing to deploy: make sure the workspace shows the live commit, else wait."""
    if seen.processed and seen.workspace != seen.processed:
        return Restore(seen.processed)
    return Wait(reason, until)


def _short(commit: str | None) -> str:
    return commit[:7] if commit else "none"


def plan(seen: Observed) -> Action:
    """The next action of one instance; see the module docstring for the rules."""
    target = seen.pin.commit if seen.pin else seen.head
    if seen.busy is not None:
        return Wait(f"{seen.busy.kind} of commit {_short(seen.busy.commit)} is queued or running")
    if seen.going_live is not None and seen.going_live == seen.processed:
        return GoLive(seen.going_live)
    if seen.run_request is not None and not seen.booting:
        return _run(seen, seen.run_request)
    if target is None:
        # The remote has not answered yet: keep what is live (at boot: start it).
        if seen.booting and seen.processed:
            return _start(seen, "the remote is not reachable; starting on the deployed commit")
        return _idle(seen, "the branch head is not known yet")
    if target == seen.processed:
        if seen.booting:
            return _start(seen, f"commit {_short(target)} already deployed")
        return _idle(seen, f"commit {_short(target)} is live")
    if seen.paused and seen.pin is None:
        if seen.booting and seen.processed:
            return _start(seen, "deploys are paused; starting on the deployed commit")
        if not seen.booting:
            return _idle(seen, f"deploys are paused; commit {_short(target)} waits")
    rollback = bool(seen.pin and seen.pin.rollback)
    if seen.replica.current and seen.replica.succeeded and not rollback:
        return Follow(target, seen.replica.instance, restart=seen.changes.restart)
    failure = _failure(target, seen)
    attempt = 1
    if failure is not None:
        attempt = failure.attempts + 1
        if seen.booting:
            if seen.boot_tried == target or failure.cancelled:
                # This boot ran it and it failed: keep the good commit if there is one.
                if seen.processed:
                    return _start(
                        seen, f"PRE_DEPLOY of commit {_short(target)} failed; keeping the deployed one"
                    )
                return BootFailed(target, failure.reason or "failed")
        elif failure.cancelled:
            return _idle(
                seen, f"PRE_DEPLOY of commit {_short(target)} was cancelled; waiting for a new commit"
            )
        else:
            due = failure.failed_at + backoff_delay(failure.attempts, seen.interval, seen.backoff_max)
            if seen.now < due:
                return _idle(seen, f"PRE_DEPLOY of commit {_short(target)} failed; retry due", due)
    changes = seen.changes
    if seen.pre_configured and not changes.pre:
        return SkipPre(target, changes.pre_watched, changes.post, changes.restart, rollback)
    if seen.pre_configured and seen.lease_holder is not None:
        return _idle(
            seen,
            f"instance {seen.lease_holder} is running a PRE_DEPLOY of this deployment",
            seen.now + REPLICA_RECHECK,
        )
    why = "pinned" if seen.pin else "new commit" if failure is None else "retry"
    return Deploy(target, attempt, why, rollback, changes.post, changes.restart)


def _run(seen: Observed, request: RunRequest) -> Action:
    """A job asked for by hand: after the running one, and a PRE_DEPLOY never beside a replica's."""
    if request.kind == "PRE_DEPLOY":
        if seen.pre_configured and seen.lease_holder is not None:
            return Wait(
                f"instance {seen.lease_holder} is running a PRE_DEPLOY of this deployment",
                seen.now + REPLICA_RECHECK,
            )
        commit = seen.workspace
    else:
        commit = seen.processed
    return RunJob(request.kind, commit or "", request.token)


def _start(seen: Observed, reason: str) -> Action:
    assert seen.processed is not None
    if seen.workspace != seen.processed:
        return Restore(seen.processed)
    return StartApp(seen.processed, reason)
