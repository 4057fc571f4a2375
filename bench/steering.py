"""Steering as a user feels it: ``hotreload resume`` to the waiting head's PRE_DEPLOY start, and
``hotreload cancel`` to the running job's process tree gone.

Both go through the CLI as a user types it (a new Python process each time), the poller's
command bus and planner, and the worker::

    s = measure_steering(root, remote, server, trials=5)
    s.resume_to_pre, s.cancel_to_gone            # seconds per trial
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.deploys import launch
from bench.stack import VENV_BIN, GitRemote, RedisServer, wait_until

#: The bench's PRE_DEPLOY, plus the commit's slow.sh when it has one (the cancel trials' commits do).
PRE_COMMAND = (
    'echo "$(date +%s.%N) $DEPLOY_COMMIT_SHA" >> "$BENCH_MARKS"; if [ -f slow.sh ]; then bash slow.sh; fi'
)
SLOW_PRE = "sleep 300 & sleep 300"


@dataclass
class SteeringTiming:
    resume_to_pre: list[float] = field(default_factory=list)
    cancel_to_gone: list[float] = field(default_factory=list)


def _cli(env: dict[str, str], *args: str) -> None:
    subprocess.run([str(VENV_BIN / "hotreload"), *args], env=env, check=True, capture_output=True, timeout=60)


def _job_processes(marker: str) -> list[int]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if (proc.info["cmdline"] or [])[:1] == ["sleep"] and marker in proc.environ().get(
                "HOTRELOAD_RUN_ID", ""
            ):
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def measure_steering(root: Path, remote: GitRemote, server: RedisServer, trials: int) -> SteeringTiming:
    timing = SteeringTiming()
    d = launch(root, "steering", remote, server, GITHUB_SYNC_INTERVAL="1", PRE_DEPLOY_COMMAND=PRE_COMMAND)
    env = d.stack.env
    try:
        for n in range(trials):
            _cli(env, "pause")
            sha = remote.commit({"README": f"paused {n}\n"})
            wait_until(lambda sha=sha: d.tracker.head() == sha, 20, "the poller to see the waiting head")
            asked = time.time()
            _cli(env, "resume")
            started = wait_until(lambda sha=sha: d.pre_started(sha), 20, "the PRE_DEPLOY after resume", 0.01)
            timing.resume_to_pre.append(started - asked)
            d.wait_deployed(sha)

        for n in range(trials):
            sha = remote.commit({"slow.sh": SLOW_PRE + "\n", "README": f"slow {n}\n"})
            wait_until(lambda sha=sha: d.pre_started(sha), 20, "the slow PRE_DEPLOY")
            wait_until(lambda: len(_job_processes("-pre-")) >= 2, 10, "the job's processes", 0.01)
            asked = time.monotonic()
            _cli(env, "cancel")
            wait_until(lambda: not _job_processes("-pre-"), 20, "the tree to be gone", 0.005)
            timing.cancel_to_gone.append(time.monotonic() - asked)
            # A cancelled PRE_DEPLOY waits for a new commit: this one is quick.
            fixed = remote.commit({"slow.sh": "true\n", "README": f"fixed {n}\n"})
            d.wait_deployed(fixed)
    finally:
        d.stop()
    return timing
