"""Where boot and loop used to decide differently, on the real Procfile: one planner, one set of rules.

Each of these failed before the planner (issue 9): a restart with the git host down, a
restart on a broken head with a good commit known, a PRE_DEPLOY that fails at once, the
live commit's POST_DEPLOY after a newer commit failed, a skipped PRE_DEPLOY, LOG_LEVEL.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest
import redis

from tests.conftest import GitRemote, wait_until
from tests.e2e.test_boot_and_sync import JOBS, job_env, kinds_for
from workers.contract import DeployKeys

pytestmark = pytest.mark.e2e

FAILING_PRE = {"scripts/pre-deploy/migrate.sh": 'echo "[PRE-DEPLOY] broken migration"; exit 4\n'}


def status(stack) -> dict:
    with urllib.request.urlopen(
        f"http://127.0.0.1:{stack.env['DEV_HEALTH_PORT']}/status", timeout=5
    ) as answer:
        return json.loads(answer.read())


def keys(stack) -> DeployKeys:
    found = redis.Redis.from_url(stack.env["REDIS_URL"]).keys("hotreload:*:instance:test:processed")
    deployment = found[0].decode().split(":")[1]
    return DeployKeys(deployment, "test")


def apps(tmp_path: Path) -> list[str]:
    return [m[2] for m in kinds_for(tmp_path, "app")]


def deployed_then_stopped(tmp_path: Path, remote: GitRemote, stack_factory) -> tuple[str, dict[str, str]]:
    """A stack deployed a first commit and stopped; the environment restarts it on the same workspace."""
    first = remote.commit(JOBS)
    stack = stack_factory(remote, **job_env(tmp_path))
    wait_until(lambda: kinds_for(tmp_path, "post", first), 60, what="the first deploy")
    stack.stop()
    return first, {**job_env(tmp_path), "WORKSPACE_PATH": stack.env["WORKSPACE_PATH"]}


def test_restart_with_the_git_host_down_starts_on_the_deployed_commit(
    tmp_path, remote: GitRemote, stack_factory
):
    first, env = deployed_then_stopped(tmp_path, remote, stack_factory)

    gone = remote.bare.with_name("app.git.down")
    remote.bare.rename(gone)  # the git host is unreachable while the container restarts
    again = stack_factory(remote, **env)
    wait_until(
        lambda: apps(tmp_path).count(first) == 2, 30, what="the app to start again on the deployed commit"
    )
    again.wait_for_log("[ERROR] Sync failed", 20)
    wait_until(lambda: status(again)["sync_failures"] > 0, 20, what="/status to show the failing fetch")
    assert status(again)["last_error"], status(again)
    again.check_running()
    assert "Traceback" not in again.log()

    gone.rename(remote.bare)  # the host is back: the next commit deploys
    second = remote.commit()
    wait_until(
        lambda: kinds_for(tmp_path, "post", second), 60, what="the commit pushed once the host was back"
    )
    assert status(again)["processed"] == second


def test_restart_on_a_broken_head_starts_on_the_good_commit_and_retries_the_head(
    tmp_path, remote: GitRemote, stack_factory
):
    good, env = deployed_then_stopped(tmp_path, remote, stack_factory)

    broken = remote.commit(FAILING_PRE)  # pushed while the container was down
    again = stack_factory(remote, **env)
    again.wait_for_log(f"PRE_DEPLOY job for commit {broken[:7]} failed with exit code 4", 60)
    wait_until(lambda: apps(tmp_path).count(good) == 2, 30, what="the app to start on the good commit")
    again.wait_for_log(f"PRE_DEPLOY job for commit {broken[:7]} failed with exit code 4", 60, count=2)
    again.check_running()
    assert "Container cannot start" not in again.log()
    assert status(again)["processed"] == good
    assert status(again)["failing_commit"]["commit"] == broken

    fixed = remote.commit(JOBS)
    wait_until(lambda: kinds_for(tmp_path, "post", fixed), 60, what="the fix to deploy")


def test_a_pre_deploy_that_fails_at_once_leaves_nothing_that_blocks_later_deploys(
    tmp_path, remote: GitRemote, stack_factory
):
    remote.commit(JOBS)
    stack = stack_factory(remote, RETRY_BACKOFF_MAX="1", **job_env(tmp_path))
    wait_until(lambda: kinds_for(tmp_path, "app"), 60, what="the boot deploy")
    for _ in range(3):
        broken = remote.commit({"scripts/pre-deploy/migrate.sh": "exit 1\n"})
        stack.wait_for_log(f"PRE_DEPLOY job for commit {broken[:7]} failed with exit code 1", 30)
    connection = redis.Redis.from_url(stack.env["REDIS_URL"])
    deferred = [k for k in connection.keys("rq:deferred:*")]
    assert not any(connection.zcard(k) for k in deferred), (
        "a POST_DEPLOY waits forever in the deferred registry"
    )
    good = remote.commit(JOBS)
    wait_until(lambda: kinds_for(tmp_path, "post", good), 30, what="the next good commit to deploy")


def test_the_live_commits_post_deploy_runs_when_a_newer_commit_failed(
    tmp_path, remote: GitRemote, stack_factory
):
    first = remote.commit(JOBS)
    stack = stack_factory(remote, **job_env(tmp_path))
    wait_until(lambda: kinds_for(tmp_path, "post", first), 60, what="the boot deploy")
    # The second commit's POST_DEPLOY is slow to start (its PRE_DEPLOY ends first); the third
    # commit arrives meanwhile and its PRE_DEPLOY fails: the second stays live.
    second = remote.commit(
        {
            **JOBS,
            "scripts/post-deploy/seed.sh": 'sleep 1; echo "$(date +%s.%N) post $DEPLOY_COMMIT_SHA" >> "$MARKS"\n',
        }
    )
    stack.wait_for_log(f"Commit {second[:7]} deployed: PRE_DEPLOY succeeded", 30)
    third = remote.commit(FAILING_PRE)
    wait_until(lambda: kinds_for(tmp_path, "post", second), 30, what="the live commit's POST_DEPLOY")
    stack.wait_for_log(f"PRE_DEPLOY job for commit {third[:7]} failed with exit code 4", 30)
    assert f"Skipping job for commit {second[:7]}" not in stack.log()


def test_a_skipped_pre_deploy_is_decided_again(tmp_path, remote: GitRemote, stack_factory):
    first = remote.commit(JOBS)
    stack = stack_factory(remote, **job_env(tmp_path))
    wait_until(lambda: kinds_for(tmp_path, "post", first), 60, what="the boot deploy")
    worker = int(re.findall(r"worker\.1 started \(pid=(\d+)\)", stack.log())[0])
    # The worker is held while the second commit's PRE_DEPLOY is queued, and someone moves the
    # workspace back meanwhile: the PRE_DEPLOY finds itself stale and is skipped, which records
    # nothing. It used to leave the attempt refused by its dedup key for seven days.
    os.kill(worker, signal.SIGSTOP)
    try:
        second = remote.commit()
        stack.wait_for_log(f"Deploying commit {second[:7]}: PRE_DEPLOY queued", 30)
        workspace = Path(stack.env["WORKSPACE_PATH"])
        subprocess.run(["git", "-C", str(workspace), "checkout", "--quiet", "--force", first], check=True)
    finally:
        os.kill(worker, signal.SIGCONT)
    stack.wait_for_log(f"Skipping job for commit {second[:7]}: stale", 30)
    wait_until(
        lambda: kinds_for(tmp_path, "post", second), 30, what="the skipped commit to be deployed again"
    )
    assert len(kinds_for(tmp_path, "pre", second)) == 1


@pytest.mark.parametrize("level", ["debug", "warning"])
def test_log_level_applies_to_hotreloads_own_lines(tmp_path, remote: GitRemote, stack_factory, level: str):
    first = remote.commit(JOBS)
    stack = stack_factory(remote, LOG_LEVEL=level, **job_env(tmp_path))
    wait_until(lambda: kinds_for(tmp_path, "post", first), 60, what="the boot deploy")
    stack.wait_for_syncs(2)
    log = stack.log()
    if level == "debug":
        assert "[DEBUG] plan: Deploy(commit=" in log and "[DEBUG] plan: Wait(" in log
        assert "[INFO] Deploying commit" in log
    else:
        assert "[DEBUG]" not in log
        assert "[INFO]" not in log, [line for line in log.splitlines() if "[INFO]" in line][:3]
        assert "[PRE-DEPLOY] migrating" in log, "job output is never filtered"


def test_a_restart_clears_the_lock_a_git_killed_with_the_last_poller_left(
    tmp_path, remote: GitRemote, stack_factory
):
    first, env = deployed_then_stopped(tmp_path, remote, stack_factory)
    # What `git checkout` leaves when honcho's SIGTERM reaches it with the poller mid-restore.
    workspace = Path(env["WORKSPACE_PATH"])
    (workspace / ".git" / "refs" / "heads" / "main.lock").write_text(first + "\n")

    again = stack_factory(remote, **env)
    again.wait_for_log("Removed ", 30)
    second = remote.commit()
    wait_until(lambda: kinds_for(tmp_path, "post", second), 30, what="the next commit after the restart")
    assert "cannot lock ref" not in again.log()
