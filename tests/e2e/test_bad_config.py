"""Issue 2, bad configuration: the start stops with exit code 2 and one line per problem.

Each line names the variable and says what is wrong; there is no traceback, and no
secret (GITHUB_TOKEN, a token written into a malformed URL) is ever printed -- neither by
``hotreload poller`` alone nor by ``honcho start`` on the real Procfile.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, VENV_BIN, stack_env

pytestmark = pytest.mark.e2e

LINE = re.compile(r"hotreload: configuration error: ([A-Z_]+): \S")


def secrets() -> dict[str, str]:
    return {name: f"hr{name}{uuid.uuid4().hex}" for name in ("token", "url_token", "job_url_token")}


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, check=False)


def config_env(tmp_path: Path, marks: dict[str, str], **bad: str) -> dict[str, str]:
    base = {"GITHUB_REPO_URL": "https://github.com/someone/app", "GITHUB_TOKEN": marks["token"]}
    return stack_env(None, tmp_path / "workspace", None, **{**base, **bad})


def problems(output: str) -> list[str]:
    """The variables named by the configuration error lines, in order."""
    return [m.group(1) for m in LINE.finditer(output)]


def assert_clean(output: str, marks: dict[str, str]) -> None:
    assert "Traceback" not in output, output
    for value in marks.values():
        assert value not in output, "a secret was printed"


@pytest.mark.parametrize(
    ("bad", "variable"),
    [
        ({"PRE_DEPLOY_COMMAND": "bash m.sh", "PRE_DEPLOY_TIMEOUT": "abc"}, "PRE_DEPLOY_TIMEOUT"),
        ({"GITHUB_SYNC_INTERVAL": "0"}, "GITHUB_SYNC_INTERVAL"),
        ({"PRE_DEPLOY_FOLDER": "scripts/pre-deploy"}, "PRE_DEPLOY_FOLDER"),
        (
            {"POST_DEPLOY_COMMAND": "bash s.sh", "POST_DEPLOY_FOLDER": "scripts/../../etc"},
            "POST_DEPLOY_FOLDER",
        ),
        ({"GITHUB_REPO_URL": "https://{url_token}@/no-host.git"}, "GITHUB_REPO_URL"),
    ],
    ids=["timeout-abc", "interval-0", "folder-without-command", "folder-dotdot", "url-without-host"],
)
def test_poller_names_the_one_bad_variable_and_exits_2(tmp_path, bad, variable):
    marks = secrets()
    env = config_env(tmp_path, marks, **{k: v.format(**marks) for k, v in bad.items()})
    result = run([str(VENV_BIN / "hotreload"), "poller"], env)
    assert result.returncode == 2, result
    assert problems(result.stderr) == [variable], result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stdout == ""
    assert_clean(result.stdout + result.stderr, marks)


def every_problem(marks: dict[str, str]) -> dict[str, str]:
    return {
        "GITHUB_REPO_URL": f"htps://{marks['url_token']}@github.com/someone/app",
        "GITHUB_SYNC_INTERVAL": "0",
        "PRE_DEPLOY_COMMAND": "bash migrate.sh",
        "PRE_DEPLOY_TIMEOUT": "abc",
        "PRE_DEPLOY_FOLDER": "../outside",
        "POST_DEPLOY_FOLDER": "scripts/post-deploy",
        "POST_DEPLOY_REPO_URL": f"https://x:{marks['job_url_token']}@exa mple.com/jobs.git",
    }


# POST_DEPLOY_REPO_URL is malformed *and* set without POST_DEPLOY_COMMAND: two problems.
EXPECTED = [
    "GITHUB_REPO_URL",
    "GITHUB_SYNC_INTERVAL",
    "PRE_DEPLOY_FOLDER",
    "PRE_DEPLOY_TIMEOUT",
    "POST_DEPLOY_FOLDER",
    "POST_DEPLOY_REPO_URL",
    "POST_DEPLOY_REPO_URL",
]


def test_poller_lists_every_problem_at_once(tmp_path):
    marks = secrets()
    result = run([str(VENV_BIN / "hotreload"), "poller"], config_env(tmp_path, marks, **every_problem(marks)))
    assert result.returncode == 2
    assert sorted(problems(result.stderr)) == sorted(EXPECTED), result.stderr
    assert len(result.stderr.strip().splitlines()) == len(EXPECTED), result.stderr
    assert_clean(result.stdout + result.stderr, marks)


def test_honcho_start_stops_with_each_problem_once(tmp_path):
    marks = secrets()
    env = config_env(tmp_path, marks, **every_problem(marks))
    result = run([str(VENV_BIN / "honcho"), "start"], env)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    # The poller reports; its Procfile peers leave it to the poller (cli.PEER_REPORT_DELAY).
    assert sorted(problems(output)) == sorted(EXPECTED), output
    reporters = {
        re.search(r"(\w+)\.\d+\s*\|", line).group(1) for line in output.splitlines() if LINE.search(line)
    }
    assert reporters == {"poller"}, output
    assert_clean(output, marks)
    assert not (tmp_path / "workspace").exists(), "something started despite the bad configuration"
