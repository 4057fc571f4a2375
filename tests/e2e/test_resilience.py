"""Issue 2 §8 on the real stack: nothing kills the sync loop.

The template's ``github-sync.sh`` exits for good on a failed first clone or a failing
command (known defect 3). Here a remote missing at boot is retried with back-off while
``/dev_health`` answers, a fetch that fails later is logged and retried, and an error
inside one cycle is logged; in each case the next commit still deploys.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from pathlib import Path

import pytest
import redis

from tests.conftest import GitRemote, run_git, wait_until

pytestmark = pytest.mark.e2e

JOBS = {
    "pre.sh": 'echo "pre $DEPLOY_COMMIT_SHA" >> "$MARKS"\n',
    "app.sh": 'echo "app $(git rev-parse HEAD)" >> "$MARKS"\nexec sleep 600\n',
}


def marks(tmp_path: Path) -> list[str]:
    path = tmp_path / "marks.txt"
    return path.read_text().splitlines() if path.exists() else []


def health(port: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/dev_health", timeout=1) as response:
            return json.loads(response.read()) if response.status == 200 else None
    except OSError:
        return None


def test_missing_remote_failing_fetch_and_a_broken_cycle_never_stop_the_loop(
    tmp_path, redis_url, stack_factory
):
    url = tmp_path / "app.git"
    stack = stack_factory(
        None,
        GITHUB_REPO_URL=str(url),
        GITHUB_BRANCH="main",
        PRE_DEPLOY_COMMAND="bash pre.sh",
        DEV_START_COMMAND="bash app.sh",
        MARKS=str(tmp_path / "marks.txt"),
    )
    port = stack.env["DEV_HEALTH_PORT"]

    # 1. The remote does not exist yet: the clone is retried with a growing back-off,
    #    /dev_health answers, the app waits.
    log = stack.wait_for_log("[ERROR] Clone failed (attempt 2)", 20)
    assert "Clone failed (attempt 1)" in log and "retrying in 2s" in log and "retrying in 4s" in log, log
    body = health(port)
    assert body is not None and body["state"] == "cloning" and body["booted"] is False, body
    assert not marks(tmp_path), "a job or the app ran without a clone"
    assert "[APP] Starting DEV_START_COMMAND" not in log, "the app started before the boot deploy"

    # The remote appears (created aside, then moved in at once, as a push to a new repo would).
    staging = tmp_path / "staging"
    staging.mkdir()
    remote = GitRemote(staging, "app")
    first = remote.commit(JOBS)
    os.rename(remote.bare, url)
    remote.bare = url
    run_git("remote", "set-url", "origin", str(url), cwd=remote.work)
    wait_until(lambda: f"app {first}" in marks(tmp_path), 30, what="boot once the remote exists")
    assert marks(tmp_path).index(f"pre {first}") < marks(tmp_path).index(f"app {first}")

    # 2. The remote goes away (renamed): the failing sync is logged, the loop goes on.
    away = tmp_path / "app.git.away"
    os.rename(url, away)
    stack.wait_for_log("[ERROR] Sync failed (1 in a row): git ls-remote failed", 15)
    os.rename(away, url)
    second = remote.commit({"README": "second"})
    stack.wait_for_log("[INFO] Remote reachable again", 15)
    wait_until(lambda: f"pre {second}" in marks(tmp_path), 20, what="the commit pushed after the outage")

    # 3. One cycle breaks inside, three realistic ways; each is logged and the next commit deploys.
    workspace = Path(stack.env["WORKSPACE_PATH"])

    def errors_logged_after(count: int) -> None:
        wait_until(lambda: stack.log().count("[ERROR]") > count, 15, what="the broken cycle to be logged")

    # a. The workspace's .git vanishes for a while (an overeager clean-up, a backup tool).
    stack.wait_for_log(f"Repository commit unchanged. Skipping deploy jobs. (commit {second[:7]})", 10)
    before = stack.log().count("[ERROR]")
    os.rename(workspace / ".git", workspace / ".git.away")
    errors_logged_after(before)
    # git stays pinned to the workspace: it must not go looking for a repository in the
    # parent folders (or the poller's cwd, hotreload's own checkout) and work on that one.
    stack.wait_for_log(f"not a git repository: '{workspace}/.git", 10)
    os.rename(workspace / ".git.away", workspace / ".git")
    third = remote.commit({"README": "third"})
    wait_until(lambda: f"pre {third}" in marks(tmp_path), 20, what="the commit after the .git came back")

    # b. The whole workspace is deleted: the poller clones again and goes on.
    stack.wait_for_log(f"Repository commit unchanged. Skipping deploy jobs. (commit {third[:7]})", 10)
    shutil.rmtree(workspace)
    stack.wait_for_log("any more; cloning the repository again", 10)
    fourth = remote.commit({"README": "fourth"})
    wait_until(lambda: f"pre {fourth}" in marks(tmp_path), 20, what="the commit after the re-clone")
    assert run_git("rev-parse", "HEAD", cwd=workspace) == fourth

    # c. State in Redis it cannot read (say, written by another version during a rolling
    #    upgrade): an unexpected exception, caught by the loop's last resort.
    stack.wait_for_log(f"Repository commit unchanged. Skipping deploy jobs. (commit {fourth[:7]})", 10)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    processed_key = next(iter(client.scan_iter("hotreload:*:instance:test:processed")))
    retry_key = processed_key.removesuffix(":processed") + ":retry"
    fifth = remote.commit({"README": "fifth"}, push=False)
    client.hset(retry_key, mapping={"commit": fifth, "attempts": "several", "failed_at": "yesterday"})
    remote.push()
    stack.wait_for_log("[ERROR] Sync cycle failed: ValueError", 10)
    assert f"pre {fifth}" not in marks(tmp_path)
    client.delete(retry_key)
    wait_until(lambda: f"pre {fifth}" in marks(tmp_path), 20, what="the commit after the state was repaired")

    log = stack.log()
    assert "Traceback" not in log, log[-3000:]
    assert stack.process is not None and stack.process.poll() is None
    body = health(port)
    assert body is not None and body["booted"] is True
