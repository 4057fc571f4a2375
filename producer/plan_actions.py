"""The planner's actions: the one thing ``producer.planner.plan`` says to do next, carried out by the poller.

match plan(seen):
    case Deploy(commit=c, attempt=n): ...   # producer.deployer
    case Wait(until=t): ...                 # the command bus, until t
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Deploy:
    """Check out ``commit`` and run its PRE_DEPLOY (attempt ``attempt``), then its POST_DEPLOY."""

    commit: str
    attempt: int
    reason: str
    rollback: bool = False
    post: bool = True  # POST_DEPLOY wanted (POST_DEPLOY_WHEN_CHANGED)
    restart: bool = False  # restart the app once live (DEV_RESTART_WHEN_CHANGED)


@dataclass(frozen=True)
class SkipPre:
    """None of PRE_DEPLOY_WHEN_CHANGED's paths changed: ``commit`` is live at once, its PRE_DEPLOY skipped."""

    commit: str
    watched: tuple[str, ...]
    post: bool = True
    restart: bool = False
    rollback: bool = False


@dataclass(frozen=True)
class GoLive:
    """The staged PRE_DEPLOY of the live ``commit`` succeeded: move the workspace to it, then queue POST_DEPLOY."""

    commit: str


@dataclass(frozen=True)
class Follow:
    """A replica's PRE_DEPLOY of ``commit`` succeeded: make it live here without running it again."""

    commit: str
    instance: str
    restart: bool = False


@dataclass(frozen=True)
class Restore:
    """Put the workspace back at the live commit (a failed or abandoned deploy moved it)."""

    commit: str


@dataclass(frozen=True)
class StartApp:
    """End of boot: start the app on the live commit."""

    commit: str
    reason: str


@dataclass(frozen=True)
class Wait:
    """Nothing to do before ``until`` (epoch seconds; None: until something changes)."""

    reason: str
    until: float | None = None


@dataclass(frozen=True)
class RunJob:
    """``hotreload run``: the job of ``kind`` now, for ``commit`` (PRE: the checkout; POST: the live one)."""

    kind: str
    commit: str
    token: str


@dataclass(frozen=True)
class BootFailed:
    """First boot, no good commit known, and the target's PRE_DEPLOY failed: the container exits 1."""

    commit: str
    reason: str


Action = Deploy | SkipPre | GoLive | Follow | Restore | StartApp | Wait | BootFailed | RunJob
