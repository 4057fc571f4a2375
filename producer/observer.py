"""What the poller sees at the start of a cycle, gathered into the planner's ``Observed``.

It reads and never writes: the source's head (asking the remote when told to), the
instance's deploy state, the deployment's per-commit record and lease, the steering::

    seen = Observer(settings, state, replicas, source, workspace).observe(booting=True, look=True)
    action = plan(seen)
"""

from __future__ import annotations

import time

from producer.changes import ChangeWatch
from producer.planner import Busy, Failure, Observed, Pin, Replica, RunRequest
from producer.replicas import Replicas
from producer.settings import Settings
from producer.source import Source
from producer.workspace import Workspace
from workers.contract import JobKind
from workers.deploy_state import DeployState


class Observer:
    """Builds ``Observed`` for one instance."""

    def __init__(
        self, settings: Settings, state: DeployState, replicas: Replicas, source: Source, workspace: Workspace
    ):
        self.settings = settings
        self.state = state
        self.replicas = replicas
        self.source = source
        self.workspace = workspace
        pre = settings.job(JobKind.PRE)
        self.pre_configured = bool(pre.enabled and pre.command)
        # The commit whose PRE_DEPLOY this boot saw run (here, or on a replica it waited for).
        self.boot_tried: str | None = None
        self.control: dict[str, str] = {}  # the deployment's steering as last read
        self.run_request: RunRequest | None = None  # set by the poller from its command bus
        self.watch = ChangeWatch(settings, workspace.app)

    def observe(self, booting: bool, look: bool) -> Observed:
        head = self.source.look() if look else self.source.head
        tracker = self.state.tracker
        control = self.control = self.state.tracker.control()
        pin = (
            Pin(control["pin"], control.get("pin_ref", ""), control.get("pin_rollback") == "1")
            if control.get("pin")
            else None
        )
        target = pin.commit if pin else head
        busy = self.state.tracker.busy()
        retry = tracker.retry_state()
        failure = (
            Failure(retry.commit, retry.attempts, retry.failed_at, retry.reason, retry.cancelled)
            if retry
            else None
        )
        replica = Replica()
        holder = self.replicas.holder()
        if target:
            record = self.replicas.record(target)
            shared = None
            if self.replicas.failed(record):
                shared = Failure(
                    target,
                    int(record.get("pre_attempt") or 1),
                    float(record.get("pre_at") or 0),
                    record.get("pre_reason") or record.get("pre_outcome") or "failed",
                    record.get("pre_outcome") == "cancelled",
                )
            replica = Replica(
                succeeded=self.replicas.succeeded(record),
                current=self.replicas.current(target, record),
                instance=record.get("pre_instance", ""),
                failure=shared,
            )
            if booting and holder is not None and holder.commit == target:
                self.boot_tried = target  # its outcome stands for this boot's own attempt
        processed = tracker.processed()
        return Observed(
            now=time.time(),
            booting=booting,
            head=head,
            processed=processed,
            workspace=self.workspace.head(),
            busy=Busy(busy[0].value, busy[1]) if busy else None,
            failure=failure,
            replica=replica,
            lease_holder=holder.instance if holder else None,
            pre_configured=self.pre_configured,
            paused=control.get("paused") == "1",
            pin=pin,
            boot_tried=self.boot_tried,
            run_request=self.run_request,
            interval=float(self.settings.GITHUB_SYNC_INTERVAL),
            backoff_max=float(self.settings.RETRY_BACKOFF_MAX),
            changes=self.watch.changes(processed, target) if busy is None else self.watch.changes(None, None),
            going_live=tracker.going_live(),
        )
