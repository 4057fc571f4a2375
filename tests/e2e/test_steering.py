"""Steering the deployment from the CLI on the real stack: pause/resume, pin/unpin, rollback, cancel.

Each command goes through the planner of every replica, is logged with who asked, shows in
/status and ``hotreload status``, and is counted in /metrics.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from bench.stack import metric_samples
from tests.conftest import VENV_BIN, GitRemote, run_git, wait_until

pytestmark = pytest.mark.e2e

JOBS = {
    "pre.sh": 'echo "$(date +%s.%N) pre $DEPLOY_COMMIT_SHA rollback=${DEPLOY_ROLLBACK:-0}" >> "$MARKS"\n',
    "post.sh": 'echo "$(date +%s.%N) post $DEPLOY_COMMIT_SHA" >> "$MARKS"\n',
}
SLOW_PRE = {
    "pre.sh": 'echo "$(date +%s.%N) pre $DEPLOY_COMMIT_SHA slow" >> "$MARKS"\nsleep 300 &\nsleep 300\n'
}


def env_for(tmp_path: Path) -> dict[str, str]:
    return {
        "MARKS": str(tmp_path / "marks.txt"),
        "PRE_DEPLOY_COMMAND": "bash pre.sh",
        "POST_DEPLOY_COMMAND": "bash post.sh",
        "DEV_START_COMMAND": "sleep 600",
    }


def runs(tmp_path: Path, kind: str, sha: str) -> list[list[str]]:
    path = tmp_path / "marks.txt"
    lines = [line.split() for line in path.read_text().splitlines()] if path.exists() else []
    return [m for m in lines if m[1] == kind and m[2] == sha]


def cli(stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "hotreload"), *args], env=stack.env, capture_output=True, text=True, timeout=60
    )


def status(stack) -> dict:
    with urllib.request.urlopen(
        f"http://127.0.0.1:{stack.env['DEV_HEALTH_PORT']}/status", timeout=5
    ) as answer:
        return json.loads(answer.read())


def metrics(stack) -> dict[str, float]:
    with urllib.request.urlopen(
        f"http://127.0.0.1:{stack.env['DEV_HEALTH_PORT']}/metrics", timeout=5
    ) as answer:
        return metric_samples(answer.read().decode())


def test_pause_holds_new_commits_and_resume_deploys_the_waiting_head(
    tmp_path, remote: GitRemote, stack_factory
):
    first = remote.commit(JOBS)
    stack = stack_factory(remote, **env_for(tmp_path))
    wait_until(lambda: runs(tmp_path, "post", first), 60, what="the boot deploy")

    paused = cli(stack, "pause")
    assert paused.returncode == 0, paused.stderr
    stack.wait_for_log("Deploys paused by ", 10)
    second = remote.commit()
    wait_until(
        lambda: (status(stack).get("steering") or {}).get("waiting_head") == second,
        20,
        what="the waiting head",
    )
    stack.wait_for_syncs(3)
    assert not runs(tmp_path, "pre", second), "a paused deployment deployed"
    assert status(stack)["state"] == "paused"
    table = cli(stack, "status")
    assert "Paused" in table.stdout and second[:7] in table.stdout, table.stdout

    resumed_at = time.time()
    assert cli(stack, "resume").returncode == 0
    wait_until(lambda: runs(tmp_path, "pre", second), 20, what="the waiting head's PRE_DEPLOY after resume")
    print(
        f"resume -> waiting head's PRE_DEPLOY start: {float(runs(tmp_path, 'pre', second)[0][0]) - resumed_at:.3f}s"
    )
    stack.wait_for_log("Deploys resumed by ", 10)
    samples = metrics(stack)
    assert samples.get("hotreload_steering_commands_total{command=pause}") == 1.0, samples
    assert samples.get("hotreload_deploys_paused{}") == 0.0


def test_pin_deploys_a_tag_and_holds_it_until_unpin(tmp_path, remote: GitRemote, stack_factory):
    first = remote.commit(JOBS)
    run_git("tag", "v1", cwd=remote.work)
    run_git("push", "--quiet", "origin", "v1", cwd=remote.work)
    stack = stack_factory(remote, **env_for(tmp_path))
    wait_until(lambda: runs(tmp_path, "post", first), 60, what="the boot deploy")
    second = remote.commit()
    wait_until(lambda: runs(tmp_path, "post", second), 30, what="the second commit")

    unknown = cli(stack, "pin", "no-such-ref")
    assert unknown.returncode == 1 and "not a branch, tag or commit" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1 and "Traceback" not in unknown.stderr

    assert cli(stack, "pin", "v1").returncode == 0
    wait_until(lambda: len(runs(tmp_path, "pre", first)) == 2, 30, what="the pinned tag's PRE_DEPLOY")
    wait_until(lambda: status(stack)["processed"] == first, 20, what="the pinned commit to be live")
    assert status(stack)["steering"]["pin"]["ref"] == "v1"
    third = remote.commit()
    stack.wait_for_syncs(3)
    assert not runs(tmp_path, "pre", third), "a pinned deployment followed the branch"

    assert cli(stack, "unpin").returncode == 0
    wait_until(lambda: runs(tmp_path, "post", third), 30, what="the head after unpin")
    stack.wait_for_log("Unpinned by ", 10)


def test_rollback_redeploys_the_last_good_commit_with_deploy_rollback(
    tmp_path, remote: GitRemote, stack_factory
):
    first = remote.commit(JOBS)
    stack = stack_factory(remote, **env_for(tmp_path))
    wait_until(lambda: runs(tmp_path, "post", first), 60, what="the boot deploy")
    second = remote.commit()
    wait_until(lambda: runs(tmp_path, "post", second), 30, what="the second commit")

    done = cli(stack, "rollback")
    assert done.returncode == 0, done.stderr
    wait_until(lambda: len(runs(tmp_path, "pre", first)) == 2, 30, what="the rollback's PRE_DEPLOY")
    assert runs(tmp_path, "pre", first)[-1][3] == "rollback=1"
    wait_until(lambda: status(stack)["processed"] == first, 20, what="the rollback to be live")
    assert status(stack)["steering"]["pin"]["rollback"] is True
    stack.wait_for_log(f"Rolling back to rollback ({first[:7]})", 10)


def test_cancel_stops_the_tree_records_cancelled_and_holds_until_sync(
    tmp_path, remote: GitRemote, stack_factory
):
    first = remote.commit(JOBS)
    stack = stack_factory(remote, **env_for(tmp_path))
    wait_until(lambda: runs(tmp_path, "post", first), 60, what="the boot deploy")
    slow = remote.commit(SLOW_PRE)
    wait_until(lambda: runs(tmp_path, "pre", slow), 30, what="the slow PRE_DEPLOY to start")

    def job_processes() -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            try:
                cmdline = proc.info["cmdline"] or []
                if cmdline[:2] == ["sleep", "300"] and "-pre-" in proc.environ().get("HOTRELOAD_RUN_ID", ""):
                    found.append(proc)
            except psutil.Error:
                continue
        return found

    wait_until(lambda: len(job_processes()) == 2, 10, what="the job's two processes")
    asked = time.monotonic()
    cancelled = cli(stack, "cancel")
    assert cancelled.returncode == 0 and "Cancelling" in cancelled.stdout, cancelled
    wait_until(lambda: not job_processes(), 15, what="the job's process tree to be gone", interval=0.02)
    print(f"hotreload cancel -> process tree gone: {time.monotonic() - asked:.3f}s")
    stack.wait_for_log(f"PRE_DEPLOY job for commit {slow[:7]} was cancelled", 15)
    jobs = cli(stack, "jobs").stdout
    assert "cancelled" in jobs, jobs
    stack.wait_for_syncs(3)
    assert len(runs(tmp_path, "pre", slow)) == 1, "a cancelled PRE_DEPLOY was retried"
    assert status(stack)["processed"] == first

    assert cli(stack, "sync").returncode == 0
    wait_until(
        lambda: len(runs(tmp_path, "pre", slow)) == 2, 30, what="the retry asked for by hotreload sync"
    )
    assert cli(stack, "cancel").returncode == 0
