"""Boot overhead: ``honcho start`` to the app's first line, minus the clone and the job.

Each trial boots a fresh stack (empty workspace, empty Redis) with PRE_DEPLOY ``true``; the
app writes a timestamp as its first action. The clone is timed apart with the poller's own
command, the job by the runner (its recorded duration)::

    boot = measure_boot(root, remote, server, trials=5)
    boot.total, boot.clone, boot.job, boot.overhead      # seconds per trial
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from bench.deploys import KEYS
from bench.stack import BENCH_IDS, GitRemote, RedisServer, Stack, stack_env, wait_until
from workers.commit_tracker import CommitTracker
from workers.contract import JobKind

APP_FIRST_LINE = 'echo "$(date +%s.%N)" >> "$BENCH_BOOT"; exec sleep 100000'


@dataclass
class BootTiming:
    total: list[float] = field(default_factory=list)
    job: list[float] = field(default_factory=list)
    clone: list[float] = field(default_factory=list)

    @property
    def overhead(self) -> list[float]:
        clone = statistics.median(self.clone)
        return [t - clone - j for t, j in zip(self.total, self.job, strict=True)]


def _written(path: Path) -> bool:
    return path.exists() and bool(path.read_text().strip())


def time_clones(remote: GitRemote, root: Path, trials: int) -> list[float]:
    """The poller's clone command (GitCheckout.ensure_cloned), run directly."""
    times = []
    for i in range(trials):
        target = root / f"clone-{i}"
        start = time.perf_counter()
        subprocess.run(
            [
                "git",
                "clone",
                "--no-tags",
                "--quiet",
                "--branch",
                remote.branch,
                "--",
                remote.url,
                str(target),
            ],
            check=True,
        )
        times.append(time.perf_counter() - start)
        shutil.rmtree(target)
    return times


def measure_boot(root: Path, remote: GitRemote, server: RedisServer, trials: int) -> BootTiming:
    timing = BootTiming(clone=time_clones(remote, root, max(3, trials)))
    tracker = CommitTracker(server.client(), KEYS)
    for i in range(trials):
        server.client().flushall()
        first_line = root / f"boot-{i}.time"
        env = stack_env(
            remote,
            root / f"ws-boot-{i}",
            server.url,
            GITHUB_SYNC_INTERVAL="30",
            PRE_DEPLOY_COMMAND="true",
            DEV_START_COMMAND=APP_FIRST_LINE,
            BENCH_BOOT=str(first_line),
            **BENCH_IDS,
        )
        stack = Stack(env, root / f"boot-{i}.log")
        try:
            stack.start()
            wait_until(partial(_written, first_line), 60, "the app's first line", 0.01)
            timing.total.append(float(first_line.read_text().split()[0]) - stack.started_at)
            run = wait_until(lambda: tracker.last_run(JobKind.PRE), 10, "the PRE_DEPLOY's record", 0.01)
            timing.job.append(float(run["duration"]))
        finally:
            stack.stop()
    return timing
