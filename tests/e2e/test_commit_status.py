"""The deploy result on the commit (COMMIT_STATUS) against a local stand-in of the host's statuses API,
and ``hotreload why`` / the ``failure`` object of /status, on the real stack."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import VENV_BIN, GitRemote, wait_until

pytestmark = pytest.mark.e2e

TOKEN = "tok-status-0123456789"
GOOD = {"pre.sh": 'echo "migrating $DEPLOY_COMMIT_SHA"\n'}
BROKEN = {
    "pre.sh": 'echo "connecting"\necho "ERROR: relation users does not exist" >&2\necho "rolled back"\nexit 3\n',
    "migrations/002.sql": "alter table users add column x int;\n",
}


class StatusesApi:
    """Plays GitHub's and GitLab's commit statuses API on loopback and records every request."""

    def __init__(self, answer: int = 201):
        self.answer = answer
        self.requests: list[dict[str, Any]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                api.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": json.loads(body)}
                )
                self.send_response(api.answer)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def states(self, commit: str) -> list[str]:
        return [r["body"]["state"] for r in self.requests if r["path"].endswith(f"/statuses/{commit}")]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api():
    server = StatusesApi()
    yield server
    server.close()


def env_for(tmp_path: Path, api: StatusesApi, host: str) -> dict[str, str]:
    return {
        "PRE_DEPLOY_COMMAND": "bash pre.sh",
        "DEV_START_COMMAND": "sleep 600",
        "GITHUB_TOKEN": TOKEN,
        "COMMIT_STATUS": host,
        "GIT_PROVIDER_API_URL": api.url,
        "COMMIT_STATUS_REPO": "team/app",
        "STATUS_PUBLIC_URL": "https://deploys.example.test/status",
        "RETRY_BACKOFF_MAX": "600",
        "DEPLOYMENT_ID": "statuses",
    }


def test_github_statuses_pending_then_success_then_failure_with_the_first_error(
    tmp_path, remote: GitRemote, stack_factory, api: StatusesApi
):
    first = remote.commit(GOOD)
    stack = stack_factory(remote, **env_for(tmp_path, api, "github"))
    wait_until(lambda: api.states(first) == ["pending", "success"], 60, what="the boot commit's statuses")
    request = api.requests[-1]
    assert request["path"] == f"/repos/team/app/statuses/{first}"
    assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert request["body"]["context"] == "hotreload/statuses"
    assert request["body"]["target_url"] == "https://deploys.example.test/status"

    broken = remote.commit(BROKEN)
    wait_until(lambda: api.states(broken) == ["pending", "failure"], 30, what="the broken commit's statuses")
    description = api.requests[-1]["body"]["description"]
    assert description.startswith("PRE_DEPLOY failed with exit code 3: ERROR: relation users does not exist")
    assert len(description) <= 140
    assert TOKEN not in stack.log()

    # hotreload why: the job, the attempt, how it ended, the first error, the output, the files.
    why = subprocess.run(
        [str(VENV_BIN / "hotreload"), "why"], env=stack.env, capture_output=True, text=True, timeout=30
    )
    assert why.returncode == 0, why.stderr
    text = why.stdout
    assert broken in text and re.search(r"PRE_DEPLOY attempt \d+ on instance test", text)
    assert "failed with exit code 3" in text
    assert "First error ERROR: relation users does not exist" in text
    assert "rolled back" in text and "connecting" in text
    assert "migrations/002.sql" in text and "pre.sh" in text
    assert len(text.splitlines()) < 40, "one screen"
    with urllib.request.urlopen(
        f"http://127.0.0.1:{stack.env['DEV_HEALTH_PORT']}/status", timeout=5
    ) as answer:
        failure = json.loads(answer.read())["failure"]
    assert failure["commit"] == broken and failure["exit_code"] == 3
    assert failure["first_error"] == "ERROR: relation users does not exist"
    assert "migrations/002.sql" in failure["files_changed"]


def test_gitlab_statuses_and_a_host_that_refuses_never_hold_up_a_deploy(
    tmp_path, remote: GitRemote, stack_factory, api: StatusesApi
):
    first = remote.commit(GOOD)
    stack = stack_factory(remote, **env_for(tmp_path, api, "gitlab"))
    wait_until(lambda: api.states(first) == ["running", "success"], 60, what="the boot commit's statuses")
    request = api.requests[-1]
    assert request["path"] == f"/projects/team%2Fapp/statuses/{first}"
    assert request["headers"]["Private-Token"] == TOKEN
    assert request["body"]["name"] == "hotreload/statuses"

    api.answer = 401  # the token lost its rights: one warning line, the deploy goes on
    second = remote.commit()
    stack.wait_for_log(f"Commit {second[:7]} deployed: PRE_DEPLOY succeeded", 30)
    stack.wait_for_log(
        f"[WARN] Could not post the pending status of commit {second[:7]} to gitlab (HTTP 401)", 15
    )
    assert TOKEN not in stack.log()
