"""Case 7: secrets never show anywhere — with a failing https remote, and in the output of a careless job.

Every secret the settings know (GITHUB_TOKEN, WEBHOOK_SECRET and its former name
GITHUB_WEBHOOK_SECRET, RQ_DASHBOARD_PASSWORD, the password in REDIS_URL, a token written
into a repository URL, the SSH deploy key GIT_SSH_KEY line by line) is a unique marker; then
every surface is searched for them: the whole honcho log, every file of every checkout
(``.git/config`` included), every Redis key and value, /dev_health, /status, /metrics,
``hotreload status --json``, and the command line of every process, sampled all along.
(tests/e2e/test_credentials.py covers a token that clones over smart HTTP,
tests/e2e/test_ssh_remote.py a deploy key that clones over a real sshd.)
"""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, VENV_BIN, Stack, free_port, stack_env
from tests.faults.harness import (
    JOB_FILES,
    Marks,
    PersistentRedis,
    is_deployed,
    job_env,
    wait_for_processes,
)
from tests.secret_surfaces import CmdlineSampler, redis_text
from tests.ssh_server import new_key

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

BAD_REMOTE = "https://nonexistent.invalid/x.git"


def secret_markers(tmp_path: Path) -> dict[str, str]:
    """A unique value per secret; the deploy key's secret lines as ``GIT_SSH_KEY <n>`` (and the key whole)."""
    tag = uuid.uuid4().hex[:12]
    key = new_key(tmp_path / "deploy_key")
    body = [line for line in key.splitlines() if line and not line.startswith("-----")]
    # The first body line is the same in every OpenSSH key: not a secret of this one.
    lines = {f"GIT_SSH_KEY {n}": line for n, line in enumerate(body) if n > 0}
    names = (
        "GITHUB_TOKEN",
        "GITHUB_WEBHOOK_SECRET",
        "RQ_DASHBOARD_PASSWORD",
        "REDIS_PASSWORD",
        "URL_TOKEN",
        "WEBHOOK_SECRET",
    )
    return {**{name: f"Mk{i}x{tag}Sec" for i, name in enumerate(names)}, **lines, "GIT_SSH_KEY": key}


def secret_env(markers: dict[str, str], webhook_variable: str) -> dict[str, str]:
    """The secrets; the webhook's under ``webhook_variable`` (WEBHOOK_SECRET or its former name)."""
    return {
        "GITHUB_TOKEN": markers["GITHUB_TOKEN"],
        webhook_variable: markers[webhook_variable],
        "ENABLE_RQ_DASHBOARD": "true",
        "RQ_DASHBOARD_PORT": str(free_port()),
        "RQ_DASHBOARD_USERNAME": "admin",
        "RQ_DASHBOARD_PASSWORD": markers["RQ_DASHBOARD_PASSWORD"],
        "GIT_SSH_KEY": markers["GIT_SSH_KEY"],
    }


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def surfaces(stack: Stack) -> dict[str, str]:
    """Everything a user or an attacker on the box can read about the stack, as text."""
    port = stack.env["DEV_HEALTH_PORT"]
    found: dict[str, str] = {"honcho log": stack.log(), "redis": redis_text(stack.env["REDIS_URL"])}
    for path in ("/dev_health", "/status", "/metrics"):
        code, body = http_get(f"http://127.0.0.1:{port}{path}")
        assert code == 200, f"GET {path} answered {code}: {body[:300]}"
        found[path] = body
    cli = subprocess.run(
        [str(VENV_BIN / "hotreload"), "status", "--json"],
        env=stack.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    found["hotreload status --json"] = cli.stdout + cli.stderr
    workspace = Path(stack.env["WORKSPACE_PATH"])
    for root in workspace.parent.glob(workspace.name + "*"):
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_file():
                found[f"file {path}"] = path.read_bytes().decode(errors="replace")
    return found


def leaks(markers: dict[str, str], found: dict[str, str]) -> list[str]:
    return [f"{name} in {where}" for where, text in found.items() for name, v in markers.items() if v in text]


def test_no_secret_on_any_surface(tmp_path: Path, remote, fault_case):
    case = fault_case("7 secrets on every surface (failing https remote; job echoing secrets)")
    markers = secret_markers(tmp_path)
    redis_server = PersistentRedis(tmp_path / "redis-data", free_port(), password=markers["REDIS_PASSWORD"])
    redis_server.start()
    stacks: list[Stack] = []
    try:
        with CmdlineSampler(markers) as sampler:
            # A: the remote is an unresolvable https host; the job repository URL holds a token.
            env_a = stack_env(
                None,
                tmp_path / "workspace-a",
                redis_server.url,
                GITHUB_REPO_URL=BAD_REMOTE,
                GITHUB_BRANCH="main",
                DEPLOYMENT_ID=f"faults-a-{uuid.uuid4().hex[:8]}",
                PRE_DEPLOY_COMMAND="true",
                PRE_DEPLOY_REPO_URL=f"https://x-access-token:{markers['URL_TOKEN']}@nonexistent.invalid/j.git",
                **secret_env(markers, "GITHUB_WEBHOOK_SECRET"),
            )
            # B: a sane remote, and a PRE_DEPLOY that prints every secret it finds in its environment.
            first = remote.commit(JOB_FILES)
            leak = (
                'echo "[PRE-DEPLOY] leaking: $GITHUB_TOKEN $WEBHOOK_SECRET $RQ_DASHBOARD_PASSWORD '
                '$REDIS_URL" && echo "$GIT_SSH_KEY" && bash migrate.sh'
            )
            env_b = stack_env(
                remote,
                tmp_path / "workspace-b",
                redis_server.url,
                **job_env(tmp_path, PRE_DEPLOY_COMMAND=leak),
                **secret_env(markers, "WEBHOOK_SECRET"),
            )
            stacks = [Stack(env_a, tmp_path / "a.log").start(), Stack(env_b, tmp_path / "b.log").start()]
            failing, leaking = stacks
            with case.trial():
                failing.wait_for_log("[ERROR] Clone failed (attempt 2)", 30)
                assert "nonexistent.invalid" in failing.log(), "the clone did not try the https remote"
                # Control: the secrets did reach the stack (in its environment, where they belong).
                poller = wait_for_processes(failing)["poller"]
                environ = Path(f"/proc/{poller.pid}/environ").read_bytes().decode(errors="replace")
                assert markers["GITHUB_TOKEN"] in environ and markers["URL_TOKEN"] in environ
                found = surfaces(failing)
                assert not leaks(markers, found), leaks(markers, found)
            with case.trial():
                marks = Marks(tmp_path)
                case.expect_deployed(
                    lambda: is_deployed(leaking, marks, first), 30, what="the leaking job's deploy"
                )
                log = leaking.log()
                assert "[PRE-DEPLOY] leaking: *** *** *** redis://:***@127.0.0.1" in log, log[-2000:]
                assert "-----END OPENSSH PRIVATE KEY-----" in log, "the job did not print the key"
                found = surfaces(leaking)
                assert "leaking: ***" in found["redis"], (
                    "the job's kept output is not in Redis: nothing was checked"
                )
                assert not leaks(markers, found), leaks(markers, found)
        assert sampler.samples > 10 and sampler.git_seen > 0, (
            "the /proc sampler saw no git process: proves nothing"
        )
        assert not sampler.hits, sampler.hits[:5]
    finally:
        for stack in stacks:
            stack.stop()
        redis_server.stop()
    for stack in stacks:
        assert not leaks(markers, {"honcho log after stop": stack.log()})
