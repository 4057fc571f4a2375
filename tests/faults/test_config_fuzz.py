"""Case 8 at the process level: ``hotreload poller`` under fuzzed environments starts or exits 2, cleanly.

tests/unit/test_settings_fuzz.py fuzzes the settings model in-process (hundreds of
examples); here a few hypothesis-generated environments run the real console script:
either it starts (says it waits for Redis, or that there is no repository) and stops on
SIGTERM, or it exits with code 2 and only ``hotreload: configuration error: VARIABLE: ...``
lines. Never a traceback, never a secret. Redis is never reachable here (a closed port),
so nothing is cloned or written whatever the fuzzed values.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT, VENV_BIN, free_port
from tests.unit.test_settings_fuzz import FIELDS, environments, markers, values

pytestmark = pytest.mark.faults

EXAMPLES = 12
STARTED = ("[INFO] Waiting for Redis at", "[INFO] No GITHUB_REPO_URL set")
# Not fuzzed here: where Redis is (never reachable, so nothing runs) and the health port (a free one).
PINNED = ("REDIS_URL", "HOTRELOAD_REDIS_PORT", "DEV_HEALTH_PORT")
MAX_VALUE_BYTES = 100_000  # a single environment string is limited to 128 KiB by the kernel

_counts = {"started": 0, "exit 2": 0}

VALID = {
    "GITHUB_REPO_URL": "https://github.com/u/r.git",
    "PRE_DEPLOY_FOLDER": "scripts/pre-deploy",
    "PRE_DEPLOY_COMMAND": "bash migrate.sh",
    "DEV_START_COMMAND": "npm run dev",
}


@st.composite
def near_valid_environments(draw: st.DrawFn) -> tuple[dict[str, str], list[str]]:
    """A valid configuration with a token, and one variable set to anything: many of these start."""
    token = draw(markers)
    env = {**VALID, "GITHUB_TOKEN": token}
    env[draw(st.sampled_from(FIELDS))] = draw(values)
    return env, [token] if env["GITHUB_TOKEN"] == token else []


def run_poller(env: dict[str, str], timeout: float = 20.0) -> tuple[str, int | None, str]:
    """("started", code after SIGTERM, output) or ("exited", code, output)."""
    proc = subprocess.Popen(
        [str(VENV_BIN / "hotreload"), "poller"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    output = b""
    deadline = time.monotonic() + timeout
    try:
        os.set_blocking(proc.stdout.fileno(), False)
        while time.monotonic() < deadline:
            output += proc.stdout.read() or b""
            text = output.decode(errors="replace")
            if any(line in text for line in STARTED):
                proc.send_signal(signal.SIGTERM)
                code = proc.wait(10)
                return "started", code, text + (proc.stdout.read() or b"").decode(errors="replace")
            if proc.poll() is not None:
                output += proc.stdout.read() or b""
                return "exited", proc.returncode, output.decode(errors="replace")
            time.sleep(0.02)
        raise AssertionError(
            f"hotreload poller neither started nor exited in {timeout}s:\n{output[-2000:]!r}"
        )
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def process_env(fuzzed: dict[str, str], redis_password: str | None) -> dict[str, str]:
    env = {
        "PATH": f"{VENV_BIN}{os.pathsep}/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONUNBUFFERED": "1",
    }
    for name, value in fuzzed.items():
        if name in PINNED or "\x00" in value or len(os.fsencode(value)) > MAX_VALUE_BYTES:
            continue
        env[name] = value
    auth = f":{redis_password}@" if redis_password else ""
    env["REDIS_URL"] = f"redis://{auth}127.0.0.1:{free_port()}/0"
    env["DEV_HEALTH_PORT"] = str(free_port())
    return env


def check_outcome(outcome: str, code: int | None, output: str, secrets: list[str]) -> None:
    assert "Traceback" not in output, output[-3000:]
    for secret in secrets:
        assert secret not in output, "a secret in the poller's output"
    if outcome == "started":
        _counts["started"] += 1
        assert code in (0, -signal.SIGTERM), f"stopped with {code} after SIGTERM:\n{output[-2000:]}"
        return
    _counts["exit 2"] += 1
    assert code == 2, f"exited {code}:\n{output[-2000:]}"
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines, "exit 2 without saying why"
    for line in lines:
        prefix = "hotreload: configuration error: "
        assert line.startswith(prefix), line[:300]
        name = line[len(prefix) :].partition(": ")[0]
        assert name in FIELDS, line[:300]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(
    env_and_secrets=st.one_of(environments(), near_valid_environments()),
    redis_password=st.one_of(st.none(), markers),
)
def test_poller_process_under_fuzzed_environments(env_and_secrets, redis_password) -> None:
    fuzzed, secrets = env_and_secrets
    env = process_env(fuzzed, redis_password)
    if redis_password:
        secrets = [*secrets, redis_password]
    outcome, code, output = run_poller(env)
    check_outcome(outcome, code, output, secrets)


def test_fuzz_counts(fault_case) -> None:
    """Runs after the fuzz (same module): reports how many examples started and how many exited 2."""
    case = fault_case("8 bad configuration fuzzed at process level (hotreload poller)")
    case.trials = sum(_counts.values())
    case.note(f"{_counts['started']} started, {_counts['exit 2']} exited 2")


def test_health_port_in_use_is_a_configuration_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = process_env({"GITHUB_REPO_URL": "https://github.com/u/r.git"}, None)
        env["DEV_HEALTH_PORT"] = str(port)
        outcome, code, output = run_poller(env)
    assert (outcome, code) == ("exited", 2), output
    assert output.strip() == (
        f"hotreload: configuration error: DEV_HEALTH_PORT: cannot listen on port {port}: Address already in use"
    )
