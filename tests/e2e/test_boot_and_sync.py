"""The core deploy flow on the real Procfile under honcho: boot, sync loop, retries, the app."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import GitRemote, wait_until

pytestmark = pytest.mark.e2e

JOBS = {
    "scripts/pre-deploy/migrate.sh": (
        'echo "[PRE-DEPLOY] migrating $DEPLOY_COMMIT_SHA"\n'
        'echo "$(date +%s.%N) pre $DEPLOY_COMMIT_SHA $DEPLOY_PREVIOUS_SHA $DEPLOY_BRANCH $DEPLOY_JOB" >> "$MARKS"\n'
    ),
    "scripts/post-deploy/seed.sh": 'echo "$(date +%s.%N) post $DEPLOY_COMMIT_SHA" >> "$MARKS"\necho seeded\n',
    "app.sh": 'echo "$(date +%s.%N) app $(git rev-parse HEAD)" >> "$MARKS"\nexec sleep 600\n',
}


def job_env(tmp_path: Path) -> dict[str, str]:
    return {
        "MARKS": str(tmp_path / "marks.txt"),
        "PRE_DEPLOY_FOLDER": "scripts/pre-deploy",
        "PRE_DEPLOY_COMMAND": "bash migrate.sh",
        "POST_DEPLOY_FOLDER": "scripts/post-deploy",
        "POST_DEPLOY_COMMAND": "bash seed.sh",
        "DEV_START_COMMAND": "bash app.sh",
    }


def marks(tmp_path: Path) -> list[list[str]]:
    path = tmp_path / "marks.txt"
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def kinds_for(tmp_path: Path, kind: str, commit: str | None = None) -> list[list[str]]:
    return [m for m in marks(tmp_path) if m[1] == kind and (commit is None or m[2] == commit)]


def test_boot_runs_pre_deploy_before_the_app_then_post_deploy(tmp_path, remote: GitRemote, stack_factory):
    sha = remote.commit(JOBS)
    stack = stack_factory(remote, **job_env(tmp_path))
    wait_until(lambda: kinds_for(tmp_path, "post", sha), 60, what="POST_DEPLOY of the boot commit")
    wait_until(lambda: kinds_for(tmp_path, "app"), 30, what="the app to start")
    pre, app = kinds_for(tmp_path, "pre", sha)[0], kinds_for(tmp_path, "app")[0]
    assert float(pre[0]) < float(app[0]), "the app started before PRE_DEPLOY"
    assert app[2] == sha, "the app does not run the deployed commit"
    assert pre[3:] == ["main", "PRE_DEPLOY"], (
        "DEPLOY_PREVIOUS_SHA is empty at first boot, branch and job are set"
    )
    log = stack.log()
    assert f"[PRE-DEPLOY] [PRE-DEPLOY] migrating {sha}" in log or f"[PRE-DEPLOY] migrating {sha}" in log
    assert "[POST-DEPLOY] seeded" in log


def test_boot_pre_deploy_failure_exits_1_and_the_app_never_starts(tmp_path, remote, stack_factory):
    remote.commit({**JOBS, "scripts/pre-deploy/migrate.sh": 'echo "[PRE-DEPLOY] cannot reach db"; exit 3\n'})
    stack = stack_factory(remote, **job_env(tmp_path))
    assert stack.wait_exit(60) == 1
    log = stack.log()
    assert "ERROR: Initial PRE_DEPLOY job failed. Container cannot start." in log
    assert "cannot reach db" in log
    assert not kinds_for(tmp_path, "app"), "the app started although the boot PRE_DEPLOY failed"


def test_boot_pre_deploy_timeout_exits_1(tmp_path, remote, stack_factory):
    remote.commit({**JOBS, "scripts/pre-deploy/migrate.sh": "sleep 120\n"})
    stack = stack_factory(remote, PRE_DEPLOY_TIMEOUT="2", **job_env(tmp_path))
    assert stack.wait_exit(60) == 1
    assert "[PRE-DEPLOY] ERROR: Job timed out after 2s" in stack.log()
    assert not kinds_for(tmp_path, "app")


def test_new_commit_runs_jobs_once_and_idle_syncs_run_none(tmp_path, remote, stack_factory):
    first = remote.commit(JOBS)
    stack = stack_factory(remote, **job_env(tmp_path))
    wait_until(lambda: kinds_for(tmp_path, "post", first), 60, what="boot deploy")
    second = remote.commit({"README": "v2"})
    wait_until(lambda: kinds_for(tmp_path, "post", second), 30, what="deploy of the second commit")
    pre = kinds_for(tmp_path, "pre", second)[0]
    assert pre[3] == first, "DEPLOY_PREVIOUS_SHA is the previously processed commit"
    # Several idle sync cycles must not run anything again.
    stack.wait_for_syncs(3)
    assert len(kinds_for(tmp_path, "pre")) == 2
    assert len(kinds_for(tmp_path, "post")) == 2
    assert "Repository commit unchanged. Skipping deploy jobs." in stack.log()


def test_failed_pre_deploy_is_retried_with_backoff_and_the_workspace_rolls_back(
    tmp_path, remote, stack_factory
):
    good = remote.commit(JOBS)
    stack = stack_factory(remote, **job_env(tmp_path))
    wait_until(lambda: kinds_for(tmp_path, "post", good), 60, what="boot deploy")
    bad = remote.commit(
        {"scripts/pre-deploy/migrate.sh": 'echo "$(date +%s.%N) pre-fail" >> "$MARKS"; exit 1\n'}
    )
    wait_until(lambda: len([m for m in marks(tmp_path) if m[1] == "pre-fail"]) >= 4, 60, what="three retries")
    fails = [float(m[0]) for m in marks(tmp_path) if m[1] == "pre-fail"]
    gaps = [b - a for a, b in zip(fails, fails[1:], strict=False)]
    # Back-off 1 s, 2 s, 4 s at a 1 s interval; each gap also holds a run's overhead, which
    # a loaded machine stretches, so compare differences rather than ratios.
    assert gaps[1] > gaps[0] + 0.5 and gaps[2] > gaps[0] + 2.0, f"back-off does not grow: {gaps}"
    log = stack.log()
    assert f"PRE_DEPLOY job for commit {bad[:7]} failed with exit code 1" in log
    assert not kinds_for(tmp_path, "post", bad), "POST_DEPLOY ran for a commit whose PRE_DEPLOY failed"
    workspace = Path(stack.env["WORKSPACE_PATH"])
    from tests.conftest import run_git

    wait_until(
        lambda: run_git("rev-parse", "HEAD", cwd=workspace) == good, 10, what="rollback to the good commit"
    )
    # A fix is deployed at once, without waiting for the back-off of the broken commit.
    fixed = remote.commit(JOBS)
    wait_until(lambda: kinds_for(tmp_path, "post", fixed), 30, what="the fixed commit to deploy")


def test_post_deploy_failure_is_a_warning(tmp_path, remote, stack_factory):
    remote.commit({**JOBS, "scripts/post-deploy/seed.sh": "echo boom; exit 4\n"})
    stack = stack_factory(remote, **job_env(tmp_path))
    stack.wait_for_log("[WARN] POST_DEPLOY job failed (lenient mode - continuing)", 60)
    second = remote.commit({"README": "next"})
    wait_until(lambda: kinds_for(tmp_path, "pre", second), 30, what="the next commit still deploys")
    assert stack.process is not None and stack.process.poll() is None


def test_health_answers_during_a_slow_boot(tmp_path, remote, stack_factory):
    remote.commit({**JOBS, "scripts/pre-deploy/migrate.sh": "sleep 8\n"})
    stack = stack_factory(remote, **job_env(tmp_path))
    url = f"http://127.0.0.1:{stack.env['DEV_HEALTH_PORT']}/dev_health"

    def healthy() -> dict | None:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return json.loads(response.read()) if response.status == 200 else None
        except OSError:
            return None

    started = time.monotonic()
    body = wait_until(healthy, 15, what="/dev_health")
    assert time.monotonic() - started < 5
    assert not kinds_for(tmp_path, "app"), "health must answer while the boot PRE_DEPLOY is still running"
    assert body["status"] == "ok"
