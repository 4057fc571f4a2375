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

import time
from typing import TYPE_CHECKING, Any

import redis

from producer import planner
from producer.command_bus import CommandBus
from producer.commit_status import CommitStatusPoster, OutcomeWatcher
from producer.deployer import Deployer
from producer.git_sync import GitCheckout, GitSyncError
from producer.observer import Observer
from producer.poller_report import PollerReport
from producer.replicas import Replicas
from producer.settings import Settings
from producer.source import Source
from producer.stop_signal import Stop, raise_stop_on_signals
from producer.workspace import Workspace
from workers.console import say
from workers.deploy_state import DeployState
from workers.redis_connection import connect
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
        self.connection = connection or connect(settings.redis_url_effective)
        self.state = DeployState(self.connection, self.keys)
        self.replicas = Replicas(self.connection, self.keys, self.state.tracker)
        self.workspace = Workspace(settings)
        self.interval = float(settings.GITHUB_SYNC_INTERVAL)
        self.source = Source(self.workspace.app, self.interval, metrics.sync if metrics else None)
        self.observer = Observer(settings, self.state, self.replicas, self.source, self.workspace)
        self.report = PollerReport(self.connection, self.keys, self.source, self.workspace, self.replicas)
        poster = CommitStatusPoster.from_settings(settings)
        self.outcomes = (
            OutcomeWatcher(self.connection, self.keys, poster, settings.secret_values()) if poster else None
        )
        self.deployer = Deployer(
            settings,
            self.state,
            self.replicas,
            self.workspace,
            self.report,
            on_started=self.outcomes.started_run if self.outcomes else None,
        )
        self.bus = CommandBus(self.connection, self.keys)
        self.outage = Outage("poller")
        self.booting = True
        self.boot_number = 0
        self.wake_at: float | None = None  # epoch seconds: a retry or a replica's run is due
        self.head_written: str | None = None

    @property
    def checkout(self) -> GitCheckout:
        return self.workspace.app

    def health(self) -> dict[str, Any]:
        return {"state": self.report.status, "booted": not self.booting}

    # -- one cycle ---------------------------------------------------------------------
    def cycle(self, look: bool) -> int | None:
        """Observe, plan and act until the plan is to wait; an exit code when the boot failed."""
        for _ in range(MAX_STEPS):
            seen = self.observer.observe(self.booting, look)
            look = False
            self.report.steering_changes(self.observer.control, seen)
            if self.outcomes is not None:
                self.outcomes.check()  # a PRE_DEPLOY that ended gets its commit status
            if seen.head and seen.head != self.head_written:
                self.state.set_head(seen.head)  # /status names the head (one that waits, too)
                self.head_written = seen.head
            action = planner.plan(seen)
            say(f"[DEBUG] plan: {action}")
            done = self.act(action, seen)
            if done is not None or isinstance(
                action, planner.Wait | planner.Deploy | planner.Follow | planner.RunJob
            ):
                return done
        return None

    def act(self, action: planner.Action, seen: planner.Observed) -> int | None:
        self.wake_at = None
        match action:
            case planner.Deploy():
                if self.deployer.deploy(action, seen, self.booting, self.boot_number) and self.booting:
                    self.observer.boot_tried = action.commit
            case planner.SkipPre():
                self.deployer.skip_pre(action, seen, self.boot_number)
            case planner.GoLive():
                self.deployer.go_live(action)
            case planner.Follow():
                self.deployer.follow(action, seen, self.booting, self.boot_number)
            case planner.Restore():
                self.workspace.restore(action.commit)
            case planner.StartApp():
                self.deployer.start_app(action)
                self.booting = False
            case planner.RunJob():
                if self.deployer.run_job(action, seen, self.boot_number):
                    self.observer.run_request = None
            case planner.Wait():
                self.wake_at = action.until
                self.report.waiting(action, seen, self.booting)
            case planner.BootFailed():
                say(f"[ERROR] PRE_DEPLOY job for commit {action.commit[:7]} {action.reason}")
                say(BOOT_FAILED)
                self.report.state("failed", last_error="initial PRE_DEPLOY failed")
                return 1
        return None

    # -- the loop ----------------------------------------------------------------------
    def boot(self) -> None:
        self.report.state("cloning")
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
            self.state.open_gate(self.state.tracker.processed() or "")
        for command in commands:
            verb, _, rest = command.partition(" ")
            if verb == "run" and len(rest.split(" ")) == 2:
                kind, token = rest.split(" ")
                self.observer.run_request = planner.RunRequest(kind, token)
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
