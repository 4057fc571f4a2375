"""What the poller tells people: the status hash behind /status, and each wait and steering change logged once.

report = PollerReport(redis, keys, source, workspace, replicas)
report.state("running", processed=sha)         # /status, hotreload status
report.waiting(Wait(...), seen, booting=False)  # "[INFO] Repository commit unchanged. ..." once
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import redis

from producer import planner
from producer.replicas import Replicas
from producer.source import Source
from producer.workspace import Workspace
from workers.console import say
from workers.contract import DeployKeys, JobKind


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


class PollerReport:
    """The poller's status hash and its once-only log lines."""

    def __init__(
        self, connection: Any, keys: DeployKeys, source: Source, workspace: Workspace, replicas: Replicas
    ):
        self.connection = connection
        self.keys = keys
        self.source = source
        self.workspace = workspace
        self.replicas = replicas
        self.status = "starting"
        self.next_retry: float | None = None
        self.said: str | None = None  # the last wait line logged (each is logged once)
        self.steering: dict[str, str] | None = None  # the steering last logged

    def state(self, state: str, **fields: Any) -> None:
        """Write the status hash (a view: a Redis error is the loop's to report)."""
        self.status = state
        failing = self.source.failures
        with contextlib.suppress(redis.RedisError):
            self.connection.hset(
                self.keys.status,
                mapping={
                    "state": state,
                    "branch": self.workspace.app.branch or "",
                    "sync_failures": failing,
                    "last_error": self.source.last_error or "",
                    "next_sync": time.time() + max(0.0, self.source.next_look - time.monotonic())
                    if failing
                    else "",
                    "next_retry": self.next_retry or "",
                    "checked_out": self.workspace.head() or "",
                    "updated_at": time.time(),
                    **{k: "" if v is None else v for k, v in fields.items()},
                },
            )

    def acted(self) -> None:
        """Something was done: the next wait is news again."""
        self.said = None

    def waiting(self, action: planner.Wait, seen: planner.Observed, booting: bool) -> None:
        """Say why nothing happens (once per reason) and show it in the status."""
        self.next_retry = action.until
        target = seen.pin.commit if seen.pin else seen.head
        short = (target or "")[:7]
        state, line = "running", None
        if seen.busy is not None:
            state = "pre_deploy" if seen.busy.kind == JobKind.PRE.value else "post_deploy"
        elif "is live" in action.reason and target:
            line = f"[INFO] Repository commit unchanged. Skipping deploy jobs. (commit {short})"
        elif "paused" in action.reason:
            state, line = "paused", f"[INFO] Deploys are paused: commit {short} waits (hotreload resume)"
        elif "retry due" in action.reason and seen.failure is not None and action.until:
            state = "failed"
            line = (
                f"[INFO] PRE_DEPLOY of commit {short} failed {seen.failure.attempts} time(s); "
                f"next retry in {action.until - seen.now:.0f}s"
            )
        elif "cancelled" in action.reason:
            state, line = "cancelled", f"[INFO] {_sentence(action.reason)} (or hotreload sync)"
        elif seen.lease_holder is not None:
            state, line = "waiting", self._replica_line(target)
        if line is not None and line != self.said:
            say(line)
            self.said = line
        if booting and state == "running":
            state = "cloning" if seen.head is None else "starting"
        failure = seen.failure
        self.state(
            state,
            processed=seen.processed or "",
            waiting_for=seen.lease_holder or "",
            last_error=(failure.reason if failure and state == "failed" else self.source.last_error) or "",
        )

    def _replica_line(self, target: str | None) -> str | None:
        holder = self.replicas.holder()
        if holder is None or not target:
            return None
        if holder.commit == target:
            return f"[INFO] Commit {target[:7]}: PRE_DEPLOY is running on instance {holder.instance}; waiting for its outcome"
        return (
            f"[INFO] Commit {target[:7]} waits: instance {holder.instance} is running the PRE_DEPLOY "
            f"of commit {holder.commit[:7]}"
        )

    def steering_changes(self, control: dict[str, str], seen: planner.Observed) -> None:
        """Log each steering change once, with who asked for it (a boot logs what is in force)."""
        before, self.steering = self.steering or {}, control
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
