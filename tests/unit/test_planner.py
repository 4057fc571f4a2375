"""The deploy planner as a table: what was observed -> the one action, for boot and loop alike."""

from __future__ import annotations

import dataclasses

import pytest

from producer.planner import (
    BootFailed,
    Busy,
    Changes,
    Deploy,
    Failure,
    Follow,
    GoLive,
    Observed,
    Pin,
    Replica,
    Restore,
    RunJob,
    RunRequest,
    SkipPre,
    StartApp,
    Wait,
    backoff_delay,
    plan,
)

A, B, C = "a" * 40, "b" * 40, "c" * 40
NOW = 1_000_000.0

#: The loop, idle on A, head A.
IDLE = Observed(now=NOW, booting=False, head=A, processed=A, workspace=A, interval=10, backoff_max=600)
BOOT = dataclasses.replace(IDLE, booting=True)


#: PRE_DEPLOY_WHEN_CHANGED=prisma/ and the target changes nothing under it (POST's paths did change).
SOURCE_ONLY = Changes(pre=False, post=True, pre_watched=("prisma/",))
#: A lockfile changed (DEV_RESTART_WHEN_CHANGED), the watched paths of both jobs did not.
LOCKFILE = Changes(pre=False, post=False, restart=True, pre_watched=("prisma/",))


def seen(base: Observed = IDLE, **changes: object) -> Observed:
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def failed(commit: str, attempts: int = 1, ago: float = 0.0, cancelled: bool = False) -> Failure:
    return Failure(commit, attempts, NOW - ago, "failed with exit code 1", cancelled)


CASES: list[tuple[str, Observed, object]] = [
    # -- the loop ----------------------------------------------------------------------------
    ("idle on the head", IDLE, Wait("commit aaaaaaa is live")),
    ("new commit", seen(head=B), Deploy(B, 1, "new commit")),
    ("first deploy ever", seen(processed=None, workspace=None, head=B), Deploy(B, 1, "new commit")),
    ("a job runs: wait for it", seen(head=B, busy=Busy("PRE_DEPLOY", B)), Wait),
    ("POST_DEPLOY queued: the next commit waits", seen(head=C, busy=Busy("POST_DEPLOY", B)), Wait),
    ("failed, back-off not over", seen(head=B, workspace=A, failure=failed(B, 1, ago=5)), Wait),
    ("failed, back-off over", seen(head=B, failure=failed(B, 1, ago=11)), Deploy(B, 2, "retry")),
    ("third failure waits 4 intervals", seen(head=B, failure=failed(B, 3, ago=39)), Wait),
    ("third failure, 4 intervals later", seen(head=B, failure=failed(B, 3, ago=41)), Deploy(B, 4, "retry")),
    (
        "a failure of an older commit is not this one's",
        seen(head=C, failure=failed(B, 5)),
        Deploy(C, 1, "new commit"),
    ),
    (
        "workspace left on a failed commit goes back",
        seen(head=B, workspace=B, failure=failed(B, ago=1)),
        Restore(A),
    ),
    ("workspace moved while idle goes back", seen(workspace=B), Restore(A)),
    ("head unknown (remote down): keep the live commit", seen(head=None), Wait),
    ("head unknown, workspace astray", seen(head=None, workspace=C), Restore(A)),
    # -- replicas ------------------------------------------------------------------------------
    ("a replica deployed it: follow", seen(head=B, replica=Replica(True, True, "web-2")), Follow(B, "web-2")),
    (
        "a past success of a reverted commit runs again",
        seen(head=B, replica=Replica(True, False, "web-2")),
        Deploy(B, 1, "new commit"),
    ),
    ("a replica's failure counts here", seen(head=B, replica=Replica(failure=failed(B, 2, ago=5))), Wait),
    (
        "a replica's failure, back-off over",
        seen(head=B, replica=Replica(failure=failed(B, 2, ago=21))),
        Deploy(B, 3, "retry"),
    ),
    (
        "the later of own and shared failure",
        seen(head=B, failure=failed(B, 1, ago=30), replica=Replica(failure=failed(B, 3, ago=30))),
        Wait,
    ),
    ("a replica holds the lease: wait", seen(head=B, lease_holder="web-2"), Wait),
    (
        "no PRE_DEPLOY configured: the lease does not matter",
        seen(head=B, lease_holder="web-2", pre_configured=False),
        Deploy(B, 1, "new commit"),
    ),
    # -- boot -----------------------------------------------------------------------------------
    ("boot on the live commit starts the app", BOOT, StartApp(A, "commit aaaaaaa already deployed")),
    ("boot with the remote down starts on the live commit", seen(BOOT, head=None), StartApp),
    ("boot with the remote down, workspace astray", seen(BOOT, head=None, workspace=B), Restore(A)),
    (
        "first boot, remote down: nothing to start",
        seen(BOOT, head=None, processed=None, workspace=None),
        Wait,
    ),
    ("boot with a new head runs its PRE_DEPLOY first", seen(BOOT, head=B), Deploy(B, 1, "new commit")),
    (
        "boot ignores the back-off of an earlier boot",
        seen(BOOT, head=B, failure=failed(B, 2, ago=1)),
        Deploy(B, 3, "retry"),
    ),
    (
        "boot whose PRE_DEPLOY failed keeps the good commit",
        seen(BOOT, head=B, workspace=A, failure=failed(B), boot_tried=B),
        StartApp,
    ),
    (
        "... putting the workspace back first",
        seen(BOOT, head=B, workspace=B, failure=failed(B), boot_tried=B),
        Restore(A),
    ),
    (
        "first boot whose PRE_DEPLOY failed exits 1",
        seen(BOOT, head=B, processed=None, workspace=B, failure=failed(B), boot_tried=B),
        BootFailed(B, "failed with exit code 1"),
    ),
    (
        "first boot waits for FAILED_DEPLOY before exiting",
        seen(BOOT, head=B, processed=None, busy=Busy("FAILED_DEPLOY", B), failure=failed(B), boot_tried=B),
        Wait,
    ),
    (
        "a replica's boot run failed: as if here",
        seen(BOOT, head=B, processed=None, replica=Replica(failure=failed(B)), boot_tried=B),
        BootFailed,
    ),
    (
        "boot follows a replica's success",
        seen(BOOT, head=B, processed=None, replica=Replica(True, True, "web-2")),
        Follow(B, "web-2"),
    ),
    # -- steering ------------------------------------------------------------------------------
    (
        "paused: the new head waits",
        seen(head=B, paused=True),
        Wait("deploys are paused; commit bbbbbbb waits"),
    ),
    ("paused at boot: start on the live commit", seen(BOOT, head=B, paused=True), StartApp),
    (
        "paused, first boot: deploy anyway (nothing to start)",
        seen(BOOT, head=B, processed=None, workspace=None, paused=True),
        Deploy,
    ),
    ("pinned: deploy the pin, not the head", seen(head=C, pin=Pin(B, "v1")), Deploy(B, 1, "pinned")),
    ("pinned and live: hold it", seen(head=C, processed=B, workspace=B, pin=Pin(B)), Wait),
    (
        "pinned while paused still deploys the pin",
        seen(head=C, paused=True, pin=Pin(B)),
        Deploy(B, 1, "pinned"),
    ),
    (
        "rollback re-runs a past success",
        seen(head=C, pin=Pin(B, rollback=True), replica=Replica(True, True, "web-2")),
        Deploy(B, 1, "pinned", rollback=True),
    ),
    (
        "cancelled: held until a new commit or a sync",
        seen(head=B, failure=failed(B, ago=9999, cancelled=True)),
        Wait,
    ),
    (
        "cancelled, then a new commit",
        seen(head=C, failure=failed(B, cancelled=True)),
        Deploy(C, 1, "new commit"),
    ),
    ("cancel released by sync: retried", seen(head=B, failure=failed(B, ago=9999)), Deploy(B, 2, "retry")),
    # -- hotreload run ---------------------------------------------------------------------------
    (
        "run pre: the checked-out commit",
        seen(run_request=RunRequest("PRE_DEPLOY", "t1")),
        RunJob("PRE_DEPLOY", A, "t1"),
    ),
    (
        "run post: the live commit",
        seen(workspace=B, run_request=RunRequest("POST_DEPLOY", "t2")),
        RunJob("POST_DEPLOY", A, "t2"),
    ),
    (
        "run waits for the running job",
        seen(busy=Busy("POST_DEPLOY", A), run_request=RunRequest("PRE_DEPLOY", "t")),
        Wait,
    ),
    (
        "run pre waits for a replica's PRE_DEPLOY",
        seen(lease_holder="web-2", run_request=RunRequest("PRE_DEPLOY", "t")),
        Wait,
    ),
    (
        "run post does not need the lease",
        seen(lease_holder="web-2", run_request=RunRequest("POST_DEPLOY", "t")),
        RunJob("POST_DEPLOY", A, "t"),
    ),
    (
        "run before anything was deployed",
        seen(processed=None, run_request=RunRequest("POST_DEPLOY", "t")),
        RunJob("POST_DEPLOY", "", "t"),
    ),
    (
        "run comes before a new commit",
        seen(head=B, run_request=RunRequest("PRE_DEPLOY", "t")),
        RunJob("PRE_DEPLOY", A, "t"),
    ),
    (
        "run waits for the boot",
        seen(BOOT, head=B, run_request=RunRequest("PRE_DEPLOY", "t")),
        Deploy(B, 1, "new commit"),
    ),
    # -- path filters (*_WHEN_CHANGED, DEV_RESTART_WHEN_CHANGED) ---------------------------------
    ("source-only commit: PRE_DEPLOY skipped", seen(head=B, changes=SOURCE_ONLY), SkipPre(B, ("prisma/",))),
    (
        "a watched path changed: PRE_DEPLOY runs",
        seen(head=B, changes=Changes(pre=True, pre_watched=("prisma/",))),
        Deploy(B, 1, "new commit"),
    ),
    (
        "the skip carries POST_DEPLOY's and the restart's own answers",
        seen(head=B, changes=LOCKFILE),
        SkipPre(B, ("prisma/",), post=False, restart=True),
    ),
    (
        "POST_DEPLOY's paths unchanged: deploy without it",
        seen(head=B, changes=Changes(post=False)),
        Deploy(B, 1, "new commit", post=False),
    ),
    (
        "a lockfile changed: restart after the deploy",
        seen(head=B, changes=Changes(restart=True)),
        Deploy(B, 1, "new commit", restart=True),
    ),
    (
        "a lockfile changed: restart when following a replica too",
        seen(head=B, changes=Changes(restart=True), replica=Replica(True, True, "web-2")),
        Follow(B, "web-2", restart=True),
    ),
    (
        "a skip needs no lease",
        seen(head=B, lease_holder="web-2", changes=SOURCE_ONLY),
        SkipPre(B, ("prisma/",)),
    ),
    ("paused: a source-only commit waits too", seen(head=B, paused=True, changes=SOURCE_ONLY), Wait),
    ("a skipped boot commit is live, then the app starts", seen(BOOT, head=B, changes=SOURCE_ONLY), SkipPre),
    (
        "a rollback whose paths did not change is skipped as a rollback",
        seen(head=C, pin=Pin(B, rollback=True), changes=SOURCE_ONLY),
        SkipPre(B, ("prisma/",), rollback=True),
    ),
    (
        "retry of a failed commit whose watched paths changed",
        seen(head=B, failure=failed(B, 1, ago=11), changes=Changes(pre=True, pre_watched=("prisma/",))),
        Deploy(B, 2, "retry"),
    ),
    # -- DEPLOY_STRATEGY=staged --------------------------------------------------------------------
    (
        "staged PRE_DEPLOY succeeded: move the workspace to it",
        seen(head=B, processed=B, workspace=A, going_live=B),
        GoLive(B),
    ),
    (
        "staged: the move comes before a newer head",
        seen(head=C, processed=B, workspace=A, going_live=B),
        GoLive(B),
    ),
    (
        "staged: the move comes before starting the app",
        seen(BOOT, head=B, processed=B, going_live=B),
        GoLive(B),
    ),
    (
        "staged: the PRE_DEPLOY job still ends first",
        seen(head=B, processed=B, going_live=B, busy=Busy("PRE_DEPLOY", B)),
        Wait,
    ),
    (
        "staged: a move of a commit no longer live is not made",
        seen(head=A, processed=A, workspace=A, going_live=B),
        Wait("commit aaaaaaa is live"),
    ),
    (
        "staged PRE_DEPLOY failed: the workspace never moved, nothing to restore",
        seen(head=B, workspace=A, failure=failed(B, ago=1)),
        Wait,
    ),
]


@pytest.mark.parametrize(
    ("observed", "expected"), [(o, e) for _, o, e in CASES], ids=[n for n, _, _ in CASES]
)
def test_plan(observed: Observed, expected: object) -> None:
    action = plan(observed)
    if isinstance(expected, type):
        assert isinstance(action, expected), action
    elif isinstance(expected, Wait) and expected.until is None:
        assert isinstance(action, Wait) and action.reason == expected.reason, action
    else:
        assert action == expected


def test_retry_wait_ends_when_the_back_off_does() -> None:
    action = plan(seen(head=B, failure=failed(B, 2, ago=5)))
    assert isinstance(action, Wait) and action.until == NOW - 5 + 20


def test_replica_wait_looks_again_soon() -> None:
    action = plan(seen(head=B, lease_holder="web-2"))
    assert isinstance(action, Wait) and action.until is not None and action.until - NOW <= 1


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_delay(n, 10, 60) for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 60, 60]
