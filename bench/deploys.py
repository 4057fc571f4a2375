"""A running stack seen from the benchmark: when did a commit's jobs start and end.

The PRE_DEPLOY of every bench stack appends ``<date +%s.%N> <sha>`` to a marks file as its
first action; the POST_DEPLOY is ``true`` and is done when its outcome is recorded in the
commit record (the lenient policy writes ``post_deploy_at``)::

    d = launch(root, "interval-1", remote, server, GITHUB_SYNC_INTERVAL="1")
    d.wait_deployed(sha)
    d.pre_started(sha), d.post_done(sha)   # time.time() values, or None
    d.stop()
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from bench.stack import (
    BENCH_IDS,
    DEPLOYMENT_ID,
    INSTANCE_ID,
    GitRemote,
    RedisServer,
    Stack,
    stack_env,
    wait_until,
)
from workers.commit_tracker import CommitTracker
from workers.contract import DeployKeys, JobKind
from workers.deploy_state import DeployState
from workers.redis_connection import connect

KEYS = DeployKeys(DEPLOYMENT_ID, INSTANCE_ID)
PRE_COMMAND = 'echo "$(date +%s.%N) $DEPLOY_COMMIT_SHA" >> "$BENCH_MARKS"'
POST_COMMAND = "true"
APP_COMMAND = "exec sleep 100000"


class Deploys:
    """One bench stack (honcho on the Procfile) and the facts the bench reads about it."""

    def __init__(self, stack: Stack, marks: Path, server: RedisServer, keys: DeployKeys = KEYS):
        self.stack = stack
        self.marks = marks
        self.server = server
        self.keys = keys
        self.connection = connect(server.url)
        self.tracker = CommitTracker(self.connection, keys)
        self.queue = DeployState(self.connection, keys)

    @property
    def interval(self) -> float:
        return float(self.stack.env["GITHUB_SYNC_INTERVAL"])

    def roles(self) -> dict[int, str]:
        """pid honcho started for each Procfile entry -> the entry's name (from honcho's log)."""
        return {
            int(pid): name for name, pid in re.findall(r"(\S+)\.\d+ started \(pid=(\d+)\)", self.stack.log())
        }

    def pre_marks(self) -> dict[str, float]:
        """sha -> time its first PRE_DEPLOY started (a retried PRE_DEPLOY keeps the first)."""
        if not self.marks.exists():
            return {}
        seen: dict[str, float] = {}
        for line in self.marks.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                seen.setdefault(parts[1], float(parts[0]))
        return seen

    def pre_runs(self, shas: list[str]) -> int:
        if not self.marks.exists():
            return 0
        wanted = set(shas)
        return sum(
            1
            for line in self.marks.read_text().splitlines()
            if line.split()[1:] and line.split()[1] in wanted
        )

    def pre_started(self, sha: str) -> float | None:
        return self.pre_marks().get(sha)

    def post_done(self, sha: str) -> float | None:
        at = self.tracker.commit_record(sha).get(f"{JobKind.POST.slug}_at")
        return float(at) if at else None

    def idle_at(self, sha: str) -> bool:
        """``sha`` is deployed, its POST_DEPLOY recorded, and nothing is queued or running."""
        self.stack.check_running()
        return self.tracker.processed() == sha and self.post_done(sha) is not None and not self.tracker.busy()

    def wait_deployed(self, sha: str, timeout: float = 30.0) -> None:
        wait_until(lambda: self.idle_at(sha), timeout, f"commit {sha[:7]} to be deployed", 0.01)

    def stop(self) -> None:
        self.stack.stop()
        self.connection.close()


def launch(root: Path, name: str, remote: GitRemote, server: RedisServer, **env: str) -> Deploys:
    """Start a fresh stack (empty workspace, empty Redis) with the bench's jobs; wait until it is idle."""
    server.client().flushall()
    marks = root / f"{name}.marks"
    values = {
        "PRE_DEPLOY_COMMAND": PRE_COMMAND,
        "POST_DEPLOY_COMMAND": POST_COMMAND,
        "DEV_START_COMMAND": APP_COMMAND,
        "BENCH_MARKS": str(marks),
        **BENCH_IDS,
        **env,
    }
    stack = Stack(stack_env(remote, root / f"ws-{name}", server.url, **values), root / f"{name}.log").start()
    deploys = Deploys(stack, marks, server)
    head = remote.head()
    try:
        deploys.wait_deployed(head, 60)
        stack.wait_for_log("[APP] Starting DEV_START_COMMAND", 30)
    except BaseException:
        deploys.stop()
        raise
    time.sleep(0.2)  # let the first idle cycle pass: trials start from a settled stack
    return deploys
