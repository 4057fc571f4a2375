"""``GET /metrics``: the poller's Prometheus metrics, in a registry of its own.

Syncs are counted in the poller process, where they happen. Job runs happen in the
worker, which adds them to running totals in Redis as it records each run
(``workers.run_stats``); they are read from Redis on each scrape, so a restart of the
poller loses none of them and nothing has to be copied between processes::

    metrics = Metrics(redis, keys)
    metrics.sync("changed")                 # the poller, after each look at the remote
    body, content_type = metrics.render()   # the HTTP server, on GET /metrics

Exposed: ``hotreload_syncs_total{result}`` (changed, unchanged, error),
``hotreload_last_successful_sync_timestamp_seconds``, ``hotreload_sync_failures_consecutive``,
``hotreload_job_runs_total{kind,outcome}``, ``hotreload_job_duration_seconds{kind}`` (histogram),
``hotreload_job_last_outcome{kind,outcome}`` (1 for the last outcome of the kind, 0 for the
others; skips do not count), ``hotreload_job_last_success{kind}``,
``hotreload_processed_commit_info{commit,branch}`` and ``hotreload_redis_up``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from workers.contract import DeployKeys, JobKind, Outcome
from workers.run_stats import DURATION_BUCKETS, read_stats

SYNC_RESULTS = ("changed", "unchanged", "error")
#: Outcomes of a run that ran something (a skip is not an outcome for alerting).
RAN_OUTCOMES = tuple(o.value for o in Outcome if o is not Outcome.SKIPPED)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _RedisCollector(Collector):
    """The metrics whose source of truth is Redis, read on each scrape."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("hotreload_redis_up", "1 when Redis answered this scrape")
        connection, keys = self.metrics.connection, self.metrics.keys
        if connection is None or keys is None:
            up.add_metric([], 0)
            yield up
            return
        try:
            stats = read_stats(connection, keys)
            with connection.pipeline(transaction=False) as pipe:
                pipe.get(keys.processed)
                pipe.hmget(keys.status, ["branch", "sync_failures"])
                processed, (branch, failures) = pipe.execute()
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        runs = CounterMetricFamily(
            "hotreload_job_runs", "Deploy job runs by kind and outcome", labels=["kind", "outcome"]
        )
        for (kind, outcome), count in sorted(stats.runs.items()):
            runs.add_metric([kind, outcome], count)
        yield runs

        durations = HistogramMetricFamily(
            "hotreload_job_duration_seconds", "Duration of deploy job runs", labels=["kind"]
        )
        bounds = [repr(b) for b in DURATION_BUCKETS] + ["+Inf"]
        for kind, (counts, total) in sorted(stats.durations.items()):
            durations.add_metric([kind], list(zip(bounds, counts, strict=True)), total)
        yield durations

        last = GaugeMetricFamily(
            "hotreload_job_last_outcome",
            "1 for the outcome of the last run of each job kind (skips aside), 0 for the other outcomes",
            labels=["kind", "outcome"],
        )
        success = GaugeMetricFamily(
            "hotreload_job_last_success",
            "1 when the last run of the job kind succeeded, 0 when it failed, timed out or was interrupted",
            labels=["kind"],
        )
        for kind in JobKind:
            last_outcome = stats.last_outcome.get(kind.value)
            if last_outcome is None:
                continue
            for candidate in RAN_OUTCOMES:
                last.add_metric([kind.value, candidate], 1 if candidate == last_outcome else 0)
            success.add_metric([kind.value], 1 if last_outcome == Outcome.SUCCEEDED.value else 0)
        yield last
        yield success

        failures_gauge = GaugeMetricFamily(
            "hotreload_sync_failures_consecutive", "Failed looks at the remote since the last good one"
        )
        failures_gauge.add_metric([], float(_text(failures)) if failures else 0.0)
        yield failures_gauge

        steering = CounterMetricFamily(
            "hotreload_steering_commands", "Steering commands given to the deployment", labels=["command"]
        )
        paused = GaugeMetricFamily(
            "hotreload_deploys_paused", "1 while hotreload pause holds automatic deploys"
        )
        pinned = GaugeMetricFamily(
            "hotreload_deploys_pinned", "1 while hotreload pin or rollback holds a commit"
        )
        with connection.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.steering_counts)
            pipe.hmget(keys.control, ["paused", "pin"])
            counts, (is_paused, pin) = pipe.execute()
        for command in STEERING_COMMANDS:
            steering.add_metric([command], float(_text(counts.get(command.encode(), b"0"))))
        paused.add_metric([], 1.0 if is_paused else 0.0)
        pinned.add_metric([], 1.0 if pin else 0.0)
        yield steering
        yield paused
        yield pinned

        info = InfoMetricFamily("hotreload_processed_commit", "The last commit whose PRE_DEPLOY succeeded")
        if processed:
            info.add_metric([], {"commit": _text(processed), "branch": _text(branch) if branch else ""})
        yield info


STEERING_COMMANDS = ("pause", "resume", "pin", "unpin", "rollback", "cancel")


class Metrics:
    """The poller's metrics registry (never prometheus_client's global one)."""

    def __init__(self, connection: Any = None, keys: DeployKeys | None = None):
        self.connection = connection
        self.keys = keys
        self.registry = CollectorRegistry(auto_describe=False)
        self.syncs = Counter(
            "hotreload_syncs", "Looks at the remote by result", ["result"], registry=self.registry
        )
        for result in SYNC_RESULTS:
            self.syncs.labels(result)  # present at 0 from the start, so rate() works at once
        self.last_sync = Gauge(
            "hotreload_last_successful_sync_timestamp_seconds",
            "Unix time of the last look at the remote that succeeded",
            registry=self.registry,
        )
        self.registry.register(_RedisCollector(self))

    def attach(self, connection: Any, keys: DeployKeys) -> None:
        """Redis becomes known once the poller has waited for it."""
        self.connection, self.keys = connection, keys

    def sync(self, result: str) -> None:
        self.syncs.labels(result).inc()
        if result != "error":
            self.last_sync.set_to_current_time()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
