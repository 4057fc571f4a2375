"""Issue 2 §7 on the real stack: a private repository over smart HTTP with a token.

The token (GITHUB_TOKEN, or written into GITHUB_REPO_URL) must clone and fetch the app
repository and the separate job repository, and must never show in the honcho log, any
file of the checkouts (``.git/config`` included), any Redis key or value, or the
command line of any process while the stack runs.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import GitRemote, wait_until
from tests.git_http_server import GitHTTPServer
from tests.secret_surfaces import CmdlineSampler, redis_items

pytestmark = pytest.mark.e2e

APP = {"app.sh": 'echo "$(date +%s.%N) app" >> "$MARKS"\nexec sleep 600\n'}


def job_script(version: str) -> dict[str, str]:
    # A careless job that prints the credentials it finds in its environment: the runner
    # must mask them in the log and in the output kept in Redis.
    return {
        "db/migrate.sh": (
            f'echo "[PRE-DEPLOY] job {version}: repo $GITHUB_REPO_URL token ${{GITHUB_TOKEN:-none}}"\n'
            f'echo "{version} $DEPLOY_COMMIT_SHA" >> "$MARKS"\n'
        )
    }


def marks(tmp_path: Path) -> list[str]:
    path = tmp_path / "marks.txt"
    return path.read_text().splitlines() if path.exists() else []


def files_holding(root: Path, marker: str) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and marker.encode() in path.read_bytes():
            found.append(str(path))
    return found


def assert_marker_nowhere(marker: str, log: str, workspace: Path, redis_url: str) -> None:
    assert marker not in log, "the token is in the honcho log"
    checkouts = [workspace, Path(str(workspace) + ".jobs")]
    for root in checkouts:
        assert (root / ".git").exists() or root.name.endswith(".jobs"), f"no checkout in {root}"
        assert not files_holding(root, marker), f"the token is on disk under {root}"
    config = (workspace / ".git" / "config").read_text()
    assert "@" not in config.split("[remote")[1].split("\n")[1], "credentials in the remote URL"
    keys = 0
    for key, value in redis_items(redis_url):
        keys += 1
        assert marker.encode() not in value, f"the token is in Redis under {key!r}"
    assert keys > 10, "the Redis dump saw almost nothing: the scan is broken"


def healthy(port: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/dev_health", timeout=1) as response:
            return response.status == 200 and json.loads(response.read())["status"] == "ok"
    except OSError:
        return False


@pytest.mark.parametrize("where", ["GITHUB_TOKEN", "url"])
def test_token_clones_fetches_and_never_leaks(tmp_path, redis_url, stack_factory, where):
    marker = f"hrtok{uuid.uuid4().hex}"
    served = tmp_path / "served"
    served.mkdir()
    app, jobs = GitRemote(served, "app"), GitRemote(served, "jobs")
    first = app.commit(APP)
    jobs.commit(job_script("v1"))
    with GitHTTPServer(served, marker) as server, CmdlineSampler({"token": marker}) as watch:
        env = {
            "GITHUB_BRANCH": "main",
            "PRE_DEPLOY_REPO_URL": server.url("jobs.git"),
            "PRE_DEPLOY_FOLDER": "db",
            "PRE_DEPLOY_COMMAND": "bash migrate.sh",
            "DEV_START_COMMAND": "bash app.sh",
            "MARKS": str(tmp_path / "marks.txt"),
        }
        if where == "GITHUB_TOKEN":
            env |= {"GITHUB_REPO_URL": server.url("app.git"), "GITHUB_TOKEN": marker}
        else:
            env |= {"GITHUB_REPO_URL": f"http://{marker}@127.0.0.1:{server.port}/app.git"}
        stack = stack_factory(None, **env)
        wait_until(lambda: f"v1 {first}" in marks(tmp_path), 40, what="the boot PRE_DEPLOY from the job repo")
        wait_until(lambda: any(m.endswith(" app") for m in marks(tmp_path)), 20, what="the app to start")
        # The job repository is updated before each run: the next commit runs the new script.
        jobs.commit(job_script("v2"))
        second = app.commit({"README": "second"})
        wait_until(
            lambda: f"v2 {second}" in marks(tmp_path), 30, what="the new job script for the new commit"
        )
        stack.wait_for_log(f"[INFO] Repository commit unchanged. Skipping deploy jobs. (commit {second[:7]})")
        assert f"v1 {second}" not in marks(tmp_path), "the job repository was not updated before the run"
        assert server.authorized > 0 and server.rejected == 0
        assert watch.git_commands["fetch"] + watch.git_commands["ls-remote"] > 0, (
            "the /proc sampler never saw a git fetch: it proves nothing"
        )
        assert not watch.hits, f"the token is on a command line: {watch.hits[:3]}"
        log = stack.log()
        assert "[PRE-DEPLOY] job v2: repo http://" in log, "the job output did not reach the log"
        assert_marker_nowhere(marker, log, Path(stack.env["WORKSPACE_PATH"]), redis_url)
        stack.stop()
    assert_marker_nowhere(marker, stack.log(), Path(stack.env["WORKSPACE_PATH"]), redis_url)


def test_wrong_token_logs_a_clean_error_and_retries(tmp_path, stack_factory):
    wrong = f"hrbad{uuid.uuid4().hex}"
    served = tmp_path / "served"
    served.mkdir()
    app = GitRemote(served, "app")
    app.commit(APP)
    with GitHTTPServer(served, "the-right-token") as server:
        stack = stack_factory(
            None,
            GITHUB_REPO_URL=server.url("app.git"),
            GITHUB_BRANCH="main",
            GITHUB_TOKEN=wrong,
            DEV_START_COMMAND="bash app.sh",
            MARKS=str(tmp_path / "marks.txt"),
        )
        log = stack.wait_for_log("[ERROR] Clone failed (attempt 2)", 20)
        assert healthy(stack.env["DEV_HEALTH_PORT"]), "/dev_health must answer while the clone is retried"
        assert stack.process is not None and stack.process.poll() is None, "the stack went down"
        assert server.rejected >= 2, "the wrong token was not even sent"
    error = next(line for line in log.splitlines() if "Clone failed (attempt 1)" in line)
    assert "Authentication failed" in error and "retrying in" in error, error
    assert wrong not in log
    assert "Traceback" not in log
    assert not marks(tmp_path), "the app started without a clone"
    assert "[APP] Starting DEV_START_COMMAND" not in log
