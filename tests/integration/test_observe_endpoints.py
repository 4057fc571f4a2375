"""The poller's HTTP server on a real socket against a real redis-server: /status, /metrics, the webhook.

The server is wired exactly as ``hotreload poller`` wires it (``cli.attach_endpoints``); the
deploy facts are written with the same ``DeployState`` calls the worker and poller make.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bench.stack import metric_samples
from producer.cli import attach_endpoints
from producer.http_server import HotreloadHTTPServer
from producer.settings import Settings, load_settings
from tests.conftest import RedisServer, free_port
from workers.contract import JobKind, JobSpec
from workers.deploy_state import DeployState

SECRET = "whsec-0123456789abcdef"
TOKEN = "ghp_supersecrettoken123456"
SHA1 = "1" * 40
SHA2 = "2" * 40
HOTRELOAD = str(Path(sys.executable).parent / "hotreload")


def client_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True)


def settings_for(redis_url: str, **extra: str) -> Settings:
    return load_settings(
        {
            "REDIS_URL": redis_url,
            "GITHUB_REPO_URL": "https://github.com/example/app",
            "GITHUB_BRANCH": "main",
            "GITHUB_TOKEN": TOKEN,
            "DEPLOYMENT_ID": "obs",
            "INSTANCE_ID": "web-1",
            **extra,
        }
    )


class Server:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.http = HotreloadHTTPServer(
            free_port(), lambda: {"state": "running", "booted": True}, "127.0.0.1"
        )
        self.http.start()
        self.metrics = attach_endpoints(self.http, settings, lambda: None)
        self.base = f"http://127.0.0.1:{self.http.port}"

    def get(self, path: str) -> tuple[int, bytes, str]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as response:
                return response.status, response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers.get("Content-Type", "")

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
        request = urllib.request.Request(self.base + path, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


@pytest.fixture
def server(redis_url: str) -> Iterator[Server]:
    s = Server(settings_for(redis_url, GITHUB_WEBHOOK_SECRET=SECRET))
    yield s
    s.http.stop()


def push(
    ref: str = "refs/heads/main", secret: str = SECRET, event: str = "push"
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"ref": ref, "after": SHA2, "repository": {"default_branch": "main"}}).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-Hub-Signature-256": signature,
    }


def commands(server: Server) -> list[str]:
    client = client_for(server.settings.redis_url_effective)
    return client.lrange(server.settings.keys.commands, 0, -1)


def test_signed_push_to_the_tracked_branch_asks_for_one_sync(server: Server):
    body, headers = push()
    assert server.post("/webhook/github", body, headers) == (202, {"action": "sync"})
    assert commands(server) == ["sync"]
    # Form-encoded deliveries (the other content type GitHub offers) work the same.
    form = b"payload=" + urllib.request.quote(body.decode()).encode()
    form_headers = {
        **headers,
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), form, hashlib.sha256).hexdigest(),
    }
    assert server.post("/webhook/github", form, form_headers)[0] == 202
    assert commands(server) == ["sync", "sync"]


@pytest.mark.parametrize(
    "change, code",
    [
        ({"X-Hub-Signature-256": "sha256=" + "0" * 64}, 401),
        ({"X-Hub-Signature-256": ""}, 401),
        ({"X-Hub-Signature-256": "sha1=abc"}, 401),
        ({"X-GitHub-Event": "issues"}, 202),
    ],
)
def test_bad_signatures_and_other_events_trigger_nothing(server: Server, change: dict, code: int):
    body, headers = push()
    assert server.post("/webhook/github", body, {**headers, **change})[0] == code
    assert commands(server) == []


def test_other_branches_tampered_bodies_and_wrong_secrets_trigger_nothing(server: Server):
    body, headers = push(ref="refs/heads/feature")
    assert server.post("/webhook/github", body, headers) == (
        202,
        {"action": "ignored", "reason": "push to another branch"},
    )
    body, headers = push(secret="not-the-secret")
    assert server.post("/webhook/github", body, headers)[0] == 401
    body, headers = push()
    assert server.post("/webhook/github", body.replace(b"main", b"mainx"), headers)[0] == 401
    assert commands(server) == []


def test_a_body_over_one_mib_is_refused_before_it_is_read(server: Server):
    # Announce 2 MiB and send none of it: the answer must come from Content-Length alone.
    with socket.create_connection(("127.0.0.1", server.http.port), timeout=5) as conn:
        conn.sendall(
            b"POST /webhook/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n"
        )
        answer = conn.recv(4096).decode()
    assert answer.startswith("HTTP/1.0 413") or answer.startswith("HTTP/1.1 413"), answer
    assert commands(server) == []


def test_the_webhook_is_off_without_a_secret(redis_url: str):
    off = Server(settings_for(redis_url))
    try:
        body, headers = push()
        assert off.post("/webhook/github", body, headers)[0] == 404
        assert commands(off) == []
    finally:
        off.http.stop()


def failing(commit: str, keys) -> JobSpec:
    return JobSpec(
        kind=JobKind.PRE,
        command="bash migrate.sh",
        cwd="/tmp",
        timeout=60,
        commit=commit,
        previous=SHA1,
        branch="main",
        workspace="/tmp",
        deployment=keys.deployment,
        instance=keys.instance,
    )


def record(tracker: DeployState, kind: JobKind, run_id: str, outcome: str, **extra: object) -> None:
    summary = {
        "kind": kind.value,
        "commit": SHA1,
        "previous": None,
        "instance": "web-1",
        "attempt": 1,
        "command": "bash migrate.sh",
        "outcome": outcome,
        "exit_code": 0 if outcome == "succeeded" else 3,
        "started_at": time.time(),
        "duration": 1.5,
        "reason": outcome,
        **extra,
    }
    tracker.record_run(kind, run_id, summary)


def test_status_is_the_deploy_state_from_redis_without_secrets(server: Server):
    keys = server.settings.keys
    client = client_for(server.settings.redis_url_effective)
    tracker = DeployState(client, keys)
    client.hset(
        keys.status, mapping={"state": "running", "branch": "main", "checked_out": SHA1, "sync_failures": 0}
    )
    tracker.deployed_without_pre(SHA1, None)
    record(tracker, JobKind.PRE, "run-pre-1", "succeeded")
    record(tracker, JobKind.POST, "run-post-1", "failed", reason=f"failed with exit code 3 using {TOKEN}")
    tracker.pre_failed("run-pre-2", failing(SHA2, keys), "failed", f"failed with exit code 3 ({SECRET})", 3)
    client.hset(keys.status, mapping={"state": "failed", "next_retry": time.time() + 30})

    code, body, content_type = server.get("/status")
    assert code == 200 and content_type == "application/json"
    status = json.loads(body)
    assert status["branch"] == "main" and status["state"] == "failed"
    assert status["checked_out"] == SHA1 and status["processed"] == SHA1
    assert status["last_runs"]["PRE_DEPLOY"]["outcome"] == "succeeded"
    assert status["last_runs"]["PRE_DEPLOY"]["exit_code"] == 0
    assert status["last_runs"]["PRE_DEPLOY"]["duration"] == 1.5
    assert status["last_runs"]["PRE_DEPLOY"]["started_at"].endswith("Z")
    assert status["last_runs"]["POST_DEPLOY"]["exit_code"] == 3
    assert status["last_runs"]["FAILED_DEPLOY"] is None
    assert status["failing_commit"]["commit"] == SHA2 and status["failing_commit"]["attempts"] == 1
    assert status["next_retry"] and status["sync_failures"] == 0
    assert TOKEN not in body.decode() and SECRET not in body.decode()

    # What runs right now refines the poller's state: a POST_DEPLOY waiting or running.
    client.hset(keys.status, "state", "pre_deploy")
    client.rpush(f"rq:queue:{keys.queue(JobKind.POST)}", "some-post-job")
    assert json.loads(server.get("/status")[1])["state"] == "post_deploy"
    client.delete(f"rq:queue:{keys.queue(JobKind.POST)}")
    client.hset(keys.status, "state", "failed")

    # The CLI shows the same content.
    cli = subprocess.run(
        [HOTRELOAD, "status", "--json"],
        env=cli_env(server.settings),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == status
    table = subprocess.run(
        [HOTRELOAD, "status"], env=cli_env(server.settings), capture_output=True, text=True, timeout=30
    )
    assert "Last PRE_DEPLOY" in table.stdout and "succeeded" in table.stdout and SHA2[:7] in table.stdout


def cli_env(settings: Settings) -> dict[str, str]:
    import os

    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "REDIS_URL": settings.redis_url_effective,
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "GITHUB_REPO_URL": "https://github.com/example/app",
        "GITHUB_BRANCH": "main",
        "GITHUB_TOKEN": TOKEN,
        "DEPLOYMENT_ID": "obs",
        "INSTANCE_ID": "web-1",
    }


def scrape(server: Server) -> dict[str, float]:
    code, body, content_type = server.get("/metrics")
    assert code == 200 and content_type.startswith("text/plain")
    return metric_samples(body.decode())


def test_metrics_count_syncs_and_job_runs_and_keep_a_failure_alert_until_a_success(server: Server):
    keys = server.settings.keys
    client = client_for(server.settings.redis_url_effective)
    tracker = DeployState(client, keys)
    server.metrics.sync("changed")
    server.metrics.sync("unchanged")
    server.metrics.sync("unchanged")
    server.metrics.sync("error")
    tracker.deployed_without_pre(SHA1, None)
    client.hset(keys.status, mapping={"branch": "main"})
    record(tracker, JobKind.PRE, "a", "succeeded")
    record(tracker, JobKind.PRE, "b", "failed", duration=42.0)
    record(tracker, JobKind.PRE, "c", "skipped", duration=0.0)

    m = scrape(server)
    assert m["hotreload_syncs_total{result=changed}"] == 1
    assert m["hotreload_syncs_total{result=unchanged}"] == 2
    assert m["hotreload_syncs_total{result=error}"] == 1
    assert m["hotreload_last_successful_sync_timestamp_seconds{}"] > time.time() - 60
    assert m["hotreload_job_runs_total{kind=PRE_DEPLOY,outcome=succeeded}"] == 1
    assert m["hotreload_job_runs_total{kind=PRE_DEPLOY,outcome=failed}"] == 1
    assert m["hotreload_job_runs_total{kind=PRE_DEPLOY,outcome=skipped}"] == 1
    assert m["hotreload_job_duration_seconds_count{kind=PRE_DEPLOY}"] == 2
    assert m["hotreload_job_duration_seconds_sum{kind=PRE_DEPLOY}"] == 43.5
    assert m["hotreload_job_duration_seconds_bucket{kind=PRE_DEPLOY,le=2.5}"] == 1
    assert m["hotreload_job_duration_seconds_bucket{kind=PRE_DEPLOY,le=+Inf}"] == 2
    # A skip after the failure does not clear the alert; a later success does.
    assert m["hotreload_job_last_success{kind=PRE_DEPLOY}"] == 0
    assert m["hotreload_job_last_outcome{kind=PRE_DEPLOY,outcome=failed}"] == 1
    assert m["hotreload_job_last_outcome{kind=PRE_DEPLOY,outcome=succeeded}"] == 0
    assert m[f"hotreload_processed_commit_info{{branch=main,commit={SHA1}}}"] == 1
    assert m["hotreload_redis_up{}"] == 1
    record(tracker, JobKind.PRE, "d", "succeeded")
    assert scrape(server)["hotreload_job_last_success{kind=PRE_DEPLOY}"] == 1


def test_health_keeps_answering_and_status_says_503_when_redis_is_down(tmp_path: Path):
    server = RedisServer(tmp_path / "redis")
    server.start()
    s = Server(settings_for(server.url, GITHUB_WEBHOOK_SECRET=SECRET))
    try:
        server.stop()
        assert s.get("/dev_health")[0] == 200
        code, body, _ = s.get("/status")
        assert code == 503 and b"ConnectionError" in body
        assert scrape(s)["hotreload_redis_up{}"] == 0
        body_, headers = push()
        assert s.post("/webhook/github", body_, headers)[0] == 503  # GitHub shows it and can redeliver
    finally:
        s.http.stop()


def test_cli_errors_are_one_line_and_a_non_zero_exit(redis_url: str):
    settings = settings_for(redis_url)
    unknown = subprocess.run(
        [HOTRELOAD, "logs", "no-such-run"], env=cli_env(settings), capture_output=True, text=True, timeout=30
    )
    assert unknown.returncode == 1
    assert (
        unknown.stderr.strip() == "hotreload: no run 'no-such-run' (see hotreload jobs for the recent runs)"
    )
    down = {**cli_env(settings), "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    for command in (["status"], ["jobs"], ["sync"], ["logs", "x"], ["run", "pre"]):
        result = subprocess.run([HOTRELOAD, *command], env=down, capture_output=True, text=True, timeout=30)
        assert result.returncode == 1, command
        assert result.stderr.startswith("hotreload: cannot reach Redis at redis://127.0.0.1:"), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    for command in ("status", "jobs", "logs", "run", "sync", "dashboard"):
        help_ = subprocess.run([HOTRELOAD, command, "--help"], capture_output=True, text=True, timeout=30)
        assert help_.returncode == 0 and f"usage: hotreload {command}" in help_.stdout
