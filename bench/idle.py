"""Idle cost of a running stack: CPU per sync cycle and the memory of the control plane.

Two snapshots of honcho's whole process tree, ``seconds`` apart, with nothing pushed in
between::

    cost = measure_idle(deploys, seconds=60)
    cost.cpu_ms_per_cycle, cost.rss_mb, cost.pss_mb, cost.processes

CPU counts every process of the tree, exited children included (``git ls-remote`` and the
``git-upload-pack`` it starts), plus the redis-server the stack talks to, shown apart.
Memory counts every long-lived process of the tree (present in both snapshots) except
redis-server and the app (DEV_START_COMMAND): honcho and its helpers, the Procfile
processes, the idle placeholder, the dashboard if the Procfile has one.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from bench import proc
from bench.deploys import Deploys
from bench.stack import wait_until

EXCLUDED_FROM_MEMORY = ("redis-server", proc.APP_ROLE)


@dataclass
class IdleCost:
    seconds: float
    interval: float
    cpu_tree: float  # seconds, honcho's tree
    cpu_redis: float  # seconds, the redis-server
    #: Sync cycles counted by the poller itself; None when it does not serve /metrics.
    cycles_observed: float | None
    cpu_by_role: dict[str, float]
    processes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def cycles(self) -> float:
        """The poller's own count; else one per interval (a cycle lasts a little longer: fewer really)."""
        return self.cycles_observed or self.seconds / self.interval

    @property
    def cpu_ms_per_cycle(self) -> float:
        return (self.cpu_tree + self.cpu_redis) * 1000 / self.cycles

    @property
    def cpu_ms_per_cycle_without_redis(self) -> float:
        return self.cpu_tree * 1000 / self.cycles

    @property
    def core_percent(self) -> float:
        return (self.cpu_tree + self.cpu_redis) * 100 / self.seconds

    @property
    def counted(self) -> list[dict[str, Any]]:
        return [p for p in self.processes if p["role"] not in EXCLUDED_FROM_MEMORY]

    @property
    def rss_mb(self) -> float:
        return sum(p["rss_kb"] for p in self.counted) / 1024

    @property
    def pss_mb(self) -> float | None:
        if any(p["pss_kb"] is None for p in self.counted):
            return None
        return sum(p["pss_kb"] for p in self.counted) / 1024


def sync_count(deploys: Deploys) -> float | None:
    """Syncs so far by the poller's own count (``hotreload_syncs_total`` on /metrics), if it serves one."""
    url = f"http://127.0.0.1:{deploys.stack.env['DEV_HEALTH_PORT']}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except (OSError, ValueError):
        return None
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith("hotreload_syncs_total{"):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


def wait_for_dashboard(deploys: Deploys, timeout: float = 30) -> None:
    """rq-dashboard answers HTTP (any status: basic auth may be on)."""
    url = f"http://127.0.0.1:{deploys.stack.env['RQ_DASHBOARD_PORT']}/"

    def answers() -> bool:
        deploys.stack.check_running()
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    wait_until(answers, timeout, "rq-dashboard to answer", 0.1)


def measure_idle(deploys: Deploys, seconds: float) -> IdleCost:
    roles = deploys.roles()
    redis_pid = deploys.server.process.pid if deploys.server.process else None
    syncs_before = sync_count(deploys)
    before = proc.snapshot(deploys.stack.pid, roles)
    redis_before = proc.snapshot(redis_pid) if redis_pid else {}
    started = time.monotonic()
    time.sleep(seconds)
    after = proc.snapshot(deploys.stack.pid, roles)
    redis_after = proc.snapshot(redis_pid) if redis_pid else {}
    elapsed = time.monotonic() - started
    syncs_after = sync_count(deploys)
    by_role = proc.cpu_by_role(before, after)
    cpu_redis = proc.tree_cpu(redis_after) - proc.tree_cpu(redis_before)
    by_role["redis-server (external)"] = cpu_redis
    processes = [
        {
            "pid": p.pid,
            "role": p.role,
            "command": proc.label(p),
            "rss_kb": p.rss_kb,
            "pss_kb": p.pss_kb,
            "cpu_s": round(p.cpu - before[p.pid].cpu, 3),
        }
        for p in proc.long_lived(before, after)
    ]
    return IdleCost(
        seconds=elapsed,
        interval=deploys.interval,
        cpu_tree=proc.tree_cpu(after) - proc.tree_cpu(before),
        cpu_redis=cpu_redis,
        cycles_observed=(
            syncs_after - syncs_before if syncs_before is not None and syncs_after is not None else None
        ),
        cpu_by_role={k: round(v, 3) for k, v in by_role.items()},
        processes=processes,
    )
