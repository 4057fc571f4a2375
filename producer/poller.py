"""The poller: observe, plan, act, wait; from the first second of a boot to the stop.

Each cycle it observes (the source's branch head, the deploy state, the replicas' record,
the steering), asks the planner (``producer.planner.plan``, pure) for one action, and acts
on it through the workspace and the state writer. Boot is the same loop with the app's gate
still closed: the gate opens on the planner's ``StartApp``, and ``BootFailed`` ends it with
exit code 1. Between cycles it waits on the command bus, so a webhook, ``hotreload sync``
or the end of a job wakes it at once::

    Poller(settings).run()   # 1 when the first boot's PRE_DEPLOY failed and no good commit exists
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

import redis

from producer import planner
from producer.command_bus import CommandBus
from producer.git_sync import GitCheckout, GitSyncError
from producer.observer import Observer
from producer.replicas import Replicas
from producer.settings import Settings
from producer.source import Source
from producer.stop_signal import Stop, raise_stop_on_signals
from producer.workspace import Workspace
from workers.console import say
from workers.contract import JobKind
from workers.deploy_state import DeployState
from workers.redis_outage import Outage

if TYPE_CHECKING:
    from producer.metrics import Metrics

BOOT_FAILED = "ERROR: Initial PRE_DEPLOY job failed. Container cannot start."
#: Steps acted on in one cycle before waiting (restore, then start the app, ...).
MAX_STEPS = 4


class Poller:
    """Follows one branch for one instance: the observe-plan-act loop and its boot."""

    def __init__(
        self, settings: Settings, connection: redis.Redis | None = None, metrics: Metrics | None = None
    ):
        self.settings = settings
        self.keys = settings.keys
        self.connection = connection or redis.Redis.from_url(settings.redis_url_effective)
        self.state = DeployState(self.connection, self.keys)
        self.replicas = Replicas(self.connection, self.keys, self.state.tracker)
        self.workspace = Workspace(settings)
        self.interval = float(settings.GITHUB_SYNC_INTERVAL)
        self.source = Source(self.workspace.app, self.interval, metrics.sync if metrics else None)
        self.observer = Observer(settings, self.state, self.replicas, self.source, self.workspace)
        self.bus = CommandBus(self.connection, self.keys)
        self.outage = Outage("poller")
        self.status = "starting"
        self.booting = True
        self.boot_number = 0
        self.wake_at: float | None = None  # epoch seconds: a retry or a replica's run is due
        self.said: str | None = None  # the last wait reason logged (each is logged once)
        self.steering: dict[str, str] | None = None  # the steering last logged
        self.head_written: str | None = None

    @property
    def checkout(self) -> GitCheckout:
        return self.workspace.app

    # -- status ------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return {"state": self.status, "booted": not self.booting}

    def set_state(self, state: str, **fields: Any) -> None:
        self.status = state
        with contextlib.suppress(redis.RedisError):  # the status is a view; the loop logs outages
            self.connection.hset(
                self.keys.status,
                mapping={
                    "state": state,
                    "branch": self.checkout.branch or "",
                    "sync_failures": self.source.failures,
                    "last_error": self.source.last_error or "",
                    "next_sync": time.time() + max(0.0, self.source.next_look - time.monotonic())
                    if self.source.failures
                    else "",
                    "next_retry": self.wake_at or "",
                    "checked_out": self.workspace.head() or "",
                    "updated_at": time.time(),
                    **{k: "" if v is None else v for k, v in fields.items()},
                },
            )

    # -- one cycle ---------------------------------------------------------------------
    def cycle(self, look: bool) -> int | None:
        """Observe, plan and act until the plan is to wait; an exit code when the boot failed."""
        for _ in range(MAX_STEPS):
            seen = self.observer.observe(self.booting, look)
            look = False
            self.note_steering(self.observer.control, seen)
            if seen.head and seen.head != self.head_written:
                self.state.set_head(seen.head)  # /status names the head (one that waits, too)
                self.head_written = seen.head
            action = planner.plan(seen)
            say(f"[DEBUG] plan: {action}")
            done = self.act(action, seen)
            if done is not None or isinstance(action, planner.Wait | planner.Deploy | planner.Follow):
                return done
        return None

    def note_steering(self, control: dict[str, str], seen: planner.Observed) -> None:
        """Log each steering change once, with who asked for it."""
        before, self.steering = self.steering, control
        if before is None:
            before = {}  # a boot logs the steering in force
        if control.get("paused") != before.get("paused"):
            if control.get("paused"):
                waits = f"; commit {seen.head[:7]} waits" if seen.head and seen.head != seen.processed else ""
                say(f"[INFO] Deploys paused by {control.get('paused_by', '?')} (hotreload pause){waits}")
            else:
                say(f"[INFO] Deploys resumed by {control.get('resumed_by', '?')} (hotreload resume)")
        if control.get("pin") != before.get("pin"):
            if control.get("pin"):
                kind = "Rolling back to" if control.get("pin_rollback") == "1" else "Pinned to"
                ref = control.get("pin_ref", "")
                say(f"[INFO] {kind} {ref} ({control['pin'][:7]}) by {control.get('pin_by', '?')}")
            else:
                say(f"[INFO] Unpinned by {control.get('unpinned_by', '?')}: following the branch head")

    def act(self, action: planner.Action, seen: planner.Observed) -> int | None:
        self.wake_at = None
        match action:
            case planner.Deploy():
                self.deploy(action, seen)
            case planner.Follow():
                self.follow(action, seen)
            case planner.Restore():
                self.workspace.restore(action.commit)
            case planner.StartApp():
                self.start_app(action)
            case planner.Wait():
                self.wait_state(action, seen)
            case planner.BootFailed():
                say(f"[ERROR] PRE_DEPLOY job for commit {action.commit[:7]} {action.reason}")
                say(BOOT_FAILED)
                self.set_state("failed", last_error="initial PRE_DEPLOY failed")
                return 1
        return None

    def deploy(self, action: planner.Deploy, seen: planner.Observed) -> None:
        self.said = None
        lease = None
        if seen.pre_configured:
            lease = self.replicas.claim(action.commit, self.replicas.record(action.commit))
            if lease is None:
                return  # a replica took it between the look and the claim: the next look decides
        try:
            previous = seen.processed
            self.workspace.move_to(action.commit)
            pre, post = self.workspace.deploy_specs(
                action.commit,
                previous,
                action.attempt,
                boot=self.boot_number,
                seq=self.state.next_seq(),
                lease=lease.value if lease else "",
                rollback=action.rollback,
            )
            if pre is None:
                self.state.deployed_without_pre(action.commit, post)
                say(f"[INFO] Commit {action.commit[:7]} deployed (no PRE_DEPLOY_COMMAND configured)")
                self.set_state("post_deploy" if post else "running", processed=action.commit)
                return
            job = self.state.enqueue_deploy(pre)
        except BaseException:
            self.replicas.drop()
            raise
        self.replicas.hand_over(job)
        kind = "rollback " if action.rollback else ""
        say(
            f"[INFO] Deploying {kind}commit {action.commit[:7]}: PRE_DEPLOY queued (attempt {action.attempt})"
        )
        if self.booting:
            self.observer.boot_tried = action.commit
            say(f"[INFO] Running the initial PRE_DEPLOY for commit {action.commit[:7]} before the app starts")
        self.set_state("pre_deploy", processed=previous or "")

    def follow(self, action: planner.Follow, seen: planner.Observed) -> None:
        self.said = None
        self.workspace.move_to(action.commit, update_jobs=not self.booting)
        post = None
        if self.settings.POST_DEPLOY_SCOPE == "each":
            # POST_DEPLOY_SCOPE=once: the replica that ran PRE_DEPLOY runs it (workers.job.claim_lease).
            post = self.workspace.spec(
                JobKind.POST,
                action.commit,
                seen.processed,
                1,
                boot=self.boot_number,
                seq=self.state.next_seq(),
            )
        self.state.deployed_without_pre(action.commit, post)
        say(
            f"[INFO] Commit {action.commit[:7]} deployed: PRE_DEPLOY succeeded on instance "
            f"{action.instance or '?'} (not run again here)"
        )
        self.set_state("post_deploy" if post else "running", processed=action.commit, waiting_for="")

    def start_app(self, action: planner.StartApp) -> None:
        if "already deployed" in action.reason:
            say(
                f"[INFO] Commit {action.commit[:7]} already deployed (PRE_DEPLOY succeeded before); starting the app"
            )
        else:
            say(
                f"[WARN] {action.reason[:1].upper()}{action.reason[1:]}: starting the app on commit {action.commit[:7]}"
            )
        self.booting = False
        self.connection.rpush(self.keys.app_events, f"start {action.commit}")
        self.connection.expire(self.keys.app_events, 3600)
        self.set_state("running", processed=action.commit)

    def wait_state(self, action: planner.Wait, seen: planner.Observed) -> None:
        self.wake_at = action.until
        target = seen.pin.commit if seen.pin else seen.head
        state, line = "running", None
        if seen.busy is not None:
            state = "pre_deploy" if seen.busy.kind == JobKind.PRE.value else "post_deploy"
        elif "is live" in action.reason and target:
            line = f"[INFO] Repository commit unchanged. Skipping deploy jobs. (commit {target[:7]})"
        elif "paused" in action.reason:
            state, line = (
                "paused",
                f"[INFO] Deploys are paused: commit {(target or '')[:7]} waits (hotreload resume)",
            )
        elif "retry due" in action.reason and seen.failure is not None and action.until:
            state = "failed"
            line = (
                f"[INFO] PRE_DEPLOY of commit {(target or '')[:7]} failed {seen.failure.attempts} time(s); "
                f"next retry in {action.until - seen.now:.0f}s"
            )
        elif "cancelled" in action.reason:
            state, line = (
                "cancelled",
                f"[INFO] {action.reason[:1].upper()}{action.reason[1:]} (or hotreload sync)",
            )
        elif seen.lease_holder is not None:
            state = "waiting"
            holder = self.replicas.holder()
            if holder is not None and target:
                whose = f"instance {holder.instance}"
                if holder.commit == target:
                    line = f"[INFO] Commit {target[:7]}: PRE_DEPLOY is running on {whose}; waiting for its outcome"
                else:
                    line = f"[INFO] Commit {target[:7]} waits: {whose} is running the PRE_DEPLOY of commit {holder.commit[:7]}"
        if line is not None and line != self.said:
            say(line)
            self.said = line
        if self.booting and state == "running":
            state = "cloning" if seen.head is None else "starting"
        failure = seen.failure
        self.set_state(
            state,
            processed=seen.processed or "",
            waiting_for=seen.lease_holder or "",
            last_error=(failure.reason if failure and state == "failed" else self.source.last_error) or "",
        )

    # -- the loop ----------------------------------------------------------------------
    def boot(self) -> None:
        self.set_state("cloning")
        self.boot_number = int(self.connection.incr(self.keys.boots))
        dropped = self.state.purge_leftovers()
        if dropped:
            say(f"[INFO] Dropped {dropped} job(s) queued by an earlier boot")
        if self.replicas.release_left_by_earlier_boot():
            say("[INFO] Released the PRE_DEPLOY lease an earlier run of this instance left behind")
        self.booting = True
        self.observer.boot_tried = None

    def until(self) -> float:
        """The monotonic deadline of the wait: the next look at the remote, a due retry or recheck."""
        until = self.source.next_look
        if self.wake_at is not None:
            until = min(until, time.monotonic() + max(0.0, self.wake_at - time.time()))
        if self.booting:
            until = min(until, time.monotonic() + 0.5)
        return until

    def answer(self, commands: set[str]) -> bool:
        """Act on commands; True when one asks for a look at the remote now."""
        if "gate" in commands and not self.booting:
            self.connection.rpush(self.keys.app_events, f"start {self.state.tracker.processed() or ''}")
        if "sync" in commands and self.state.release_cancel():
            say("[INFO] hotreload sync: the cancelled PRE_DEPLOY may run again")
        return "sync" in commands

    def loop(self) -> int:
        look = True
        booted = False
        while True:
            try:
                if not booted:
                    self.boot()
                    booted = True
                elif self.outage.active and not self.connection.exists(self.keys.boots):
                    self.redis_lost_data()
                code = self.cycle(look or self.source.due())
                if code is not None:
                    return code
                look = self.answer(self.bus.wait(self.until()))
                self.outage.over()
            except redis.RedisError as exc:
                self.outage.down(exc)
                time.sleep(min(5.0, max(0.5, time.time() - (self.outage.since or time.time()))))
                look = True
            except GitSyncError as exc:
                say(f"[ERROR] {exc}")
                time.sleep(min(self.interval, 5.0))
                look = True
            except Stop:
                raise
            except Exception as exc:  # noqa: BLE001 - nothing may kill the loop (template defect 3)
                say(f"[ERROR] Sync cycle failed: {type(exc).__name__}: {self._mask(str(exc))}; continuing")
                time.sleep(min(self.interval, 5.0))
                look = True

    def redis_lost_data(self) -> None:
        """Redis came back empty (no persistence): a new boot number, so no job id of the lost state is reused."""
        self.boot_number = int(self.connection.incrby(self.keys.boots, self.boot_number + 1))
        say("[WARN] Redis came back without its data: the deploy state is rebuilt, the head deployed again")

    def _mask(self, text: str) -> str:
        for secret in self.settings.secret_values():
            text = text.replace(secret, "***")
        return text

    def run(self) -> int:
        raise_stop_on_signals()
        try:
            return self.loop()
        except Stop:
            say("[INFO] Poller stopping")
        finally:
            self.replicas.drop()
        return 0
