"""Running totals of the deploy jobs of one instance, kept in Redis for the metrics endpoint.

Every recorded run adds to one Redis hash (``DeployKeys.stats``) in the same pipeline that
records the run: a count per kind and outcome, a duration histogram per kind, and the
last outcome per kind that was not a skip. The poller's ``/metrics`` reads the hash on
each scrape, so job runs are counted where they happen (the worker) and survive a
restart of the poller::

    with connection.pipeline() as pipe:
        add_run(pipe, keys, JobKind.PRE, "failed", 1.25)
        pipe.execute()
    stats = read_stats(connection, keys)
    stats.runs[("PRE_DEPLOY", "failed")]       # 1
    stats.last_outcome["PRE_DEPLOY"]           # "failed"
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from workers.contract import DeployKeys, JobKind, Outcome

#: Upper bounds (seconds) of the job duration histogram: quick checks up to long migrations.
DURATION_BUCKETS: tuple[float, ...] = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


def _bucket_label(duration: float) -> str:
    for bound in DURATION_BUCKETS:
        if duration <= bound:
            return repr(bound)
    return "+Inf"


def add_run(pipe: Any, keys: DeployKeys, kind: JobKind, outcome: str, duration: float | None) -> None:
    """Queue the updates for one finished run on ``pipe`` (a Redis pipeline)."""
    pipe.hincrby(keys.stats, f"runs|{kind.value}|{outcome}", 1)
    if outcome == Outcome.SKIPPED.value:
        return  # a skip ran nothing: no duration, and it must not clear a failure alert
    pipe.hset(keys.stats, f"last|{kind.value}", outcome)
    if duration is not None and math.isfinite(duration) and duration >= 0:
        pipe.hincrby(keys.stats, f"bucket|{kind.value}|{_bucket_label(duration)}", 1)
        pipe.hincrbyfloat(keys.stats, f"sum|{kind.value}", duration)
        pipe.hincrby(keys.stats, f"count|{kind.value}", 1)


@dataclass
class RunStats:
    """The totals of one instance, as read back from Redis."""

    runs: dict[tuple[str, str], int] = field(default_factory=dict)
    last_outcome: dict[str, str] = field(default_factory=dict)
    # kind -> (cumulative counts per DURATION_BUCKETS bound then +Inf, sum of seconds)
    durations: dict[str, tuple[list[int], float]] = field(default_factory=dict)


def read_stats(connection: Any, keys: DeployKeys) -> RunStats:
    raw = connection.hgetall(keys.stats)
    stats = RunStats()
    buckets: dict[str, dict[str, int]] = {}
    sums: dict[str, float] = {}
    for key, value in raw.items():
        name = key.decode() if isinstance(key, bytes) else str(key)
        text = value.decode() if isinstance(value, bytes) else str(value)
        parts = name.split("|")
        if parts[0] == "runs" and len(parts) == 3:
            stats.runs[(parts[1], parts[2])] = int(text)
        elif parts[0] == "last" and len(parts) == 2:
            stats.last_outcome[parts[1]] = text
        elif parts[0] == "bucket" and len(parts) == 3:
            buckets.setdefault(parts[1], {})[parts[2]] = int(text)
        elif parts[0] == "sum" and len(parts) == 2:
            sums[parts[1]] = float(text)
    for kind in set(buckets) | set(sums):
        counts, total = [], 0
        for label in [repr(b) for b in DURATION_BUCKETS] + ["+Inf"]:
            total += buckets.get(kind, {}).get(label, 0)
            counts.append(total)
        stats.durations[kind] = (counts, sums.get(kind, 0.0))
    return stats
