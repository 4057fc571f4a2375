"""Issue 11 §1 on the real stack: repositories over SSH with a deploy key, against a real sshd.

The key (GIT_SSH_KEY text or GIT_SSH_KEY_FILE) clones and fetches the app and the job
repository and ``hotreload pin`` resolves over it; it lives only in a 0600 file of a
private runtime folder that goes away with the stack, never in the checkouts, the log,
Redis or a command line. A wrong key, a wrong host key and a bad key each end in one
clean line.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, VENV_BIN, GitRemote, stack_env, wait_until
from tests.e2e.test_credentials import files_holding, marks
from tests.secret_surfaces import CmdlineSampler, redis_text
from tests.ssh_server import SshGitServer, new_key

pytestmark = pytest.mark.e2e

APP = {"app.sh": 'echo "$(date +%s.%N) app" >> "$MARKS"\nexec sleep 600\n'}


def job_script(version: str) -> dict[str, str]:
    return {
        "db/migrate.sh": f'echo "[PRE-DEPLOY] job {version}"\necho "{version} $DEPLOY_COMMIT_SHA" >> "$MARKS"\n'
    }


def key_markers(key: str) -> dict[str, str]:
    """The key's secret lines (the first body line is the same in every OpenSSH key)."""
    body = [line for line in key.splitlines() if line and not line.startswith("-----")]
    return {f"key line {i}": line for i, line in enumerate(body) if i > 0}


def runtime_folders(run: Path) -> list[Path]:
    return sorted(run.glob("hotreload-ssh-*"))


@pytest.fixture
def served(tmp_path: Path) -> tuple[Path, GitRemote, GitRemote]:
    root = tmp_path / "served"
    root.mkdir()
    return root, GitRemote(root, "app"), GitRemote(root, "jobs")


@pytest.fixture
def sshd(tmp_path: Path):
    with SshGitServer(tmp_path / "sshd") as server:
        yield server


def ssh_env(
    tmp_path: Path, server: SshGitServer, app: GitRemote, jobs: GitRemote, **extra: str
) -> dict[str, str]:
    run = tmp_path / "run"
    run.mkdir(mode=0o700, exist_ok=True)
    return {
        "GITHUB_REPO_URL": server.url(app.bare),
        "GITHUB_BRANCH": "main",
        "PRE_DEPLOY_REPO_URL": server.url(jobs.bare),
        "PRE_DEPLOY_FOLDER": "db",
        "PRE_DEPLOY_COMMAND": "bash migrate.sh",
        "DEV_START_COMMAND": "bash app.sh",
        "MARKS": str(tmp_path / "marks.txt"),
        "XDG_RUNTIME_DIR": str(run),
        **extra,
    }


def test_deploy_key_clones_fetches_deploys_and_never_leaks(tmp_path, redis_url, stack_factory, served, sshd):
    _, app, jobs = served
    first = app.commit(APP)
    jobs.commit(job_script("v1"))
    markers = key_markers(sshd.client_key)
    env = ssh_env(
        tmp_path, sshd, app, jobs, GIT_SSH_KEY=sshd.client_key, GIT_SSH_KNOWN_HOSTS=sshd.known_hosts
    )
    with CmdlineSampler(markers) as sampler:
        stack = stack_factory(None, **env)
        wait_until(lambda: f"v1 {first}" in marks(tmp_path), 40, what="the boot PRE_DEPLOY from the job repo")
        jobs.commit(job_script("v2"))
        second = app.commit({"README": "second"})
        wait_until(lambda: f"v2 {second}" in marks(tmp_path), 30, what="the pushed commit's PRE_DEPLOY")
        # The key lives in a 0600 file of one private runtime folder, outside the workspace.
        (folder,) = runtime_folders(tmp_path / "run")
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE((folder / "key").stat().st_mode) == 0o600
        assert (folder / "key").read_text() == sshd.client_key
        # hotreload pin resolves the ref on the remote over the same key.
        pin = subprocess.run(
            [str(VENV_BIN / "hotreload"), "pin", "main"],
            env=stack.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert pin.returncode == 0 and f"({second[:7]})" in pin.stdout, pin.stdout + pin.stderr
    assert sshd.accepted() >= 4, "sshd saw no logins: the test proves nothing"
    assert sampler.git_commands["fetch"] + sampler.git_commands["ls-remote"] > 0, "no git seen on /proc"
    assert not sampler.hits, sampler.hits[:3]
    log = stack.log()
    assert "GIT_SSH_KNOWN_HOSTS is not set" not in log, "strict known hosts must not warn"
    workspace = Path(stack.env["WORKSPACE_PATH"])
    config = (workspace / ".git" / "config").read_text().lower()
    assert "sshcommand" not in config and "hotreload-ssh" not in config, config
    for name, value in markers.items():
        assert value not in log, f"{name} in the honcho log"
        assert not files_holding(tmp_path / "workspace0", value), f"{name} in the workspace"
        assert not files_holding(Path(str(workspace) + ".jobs"), value), f"{name} in the job checkout"
        assert value not in redis_text(redis_url), f"{name} in Redis"
    stack.stop()
    assert not runtime_folders(tmp_path / "run"), "the runtime folder outlived the stack"


def test_key_file_without_known_hosts_accepts_new_with_one_warning(tmp_path, stack_factory, served, sshd):
    _, app, jobs = served
    first = app.commit(APP)
    jobs.commit(job_script("v1"))
    key_file = tmp_path / "deploy_key"
    key_file.write_text(sshd.client_key)
    key_file.chmod(0o644)  # as a mounted secret often is: ssh refuses such a file, hotreload copies it
    stack = stack_factory(None, **ssh_env(tmp_path, sshd, app, jobs, GIT_SSH_KEY_FILE=str(key_file)))
    wait_until(lambda: f"v1 {first}" in marks(tmp_path), 40, what="the boot PRE_DEPLOY over accept-new")
    second = app.commit({"README": "second"})
    wait_until(lambda: f"v1 {second}" in marks(tmp_path), 30, what="the pushed commit's PRE_DEPLOY")
    log = stack.log()
    assert log.count("[WARN] GIT_SSH_KNOWN_HOSTS is not set") == 1, log
    (folder,) = runtime_folders(tmp_path / "run")
    host_key = sshd.known_hosts.split()[2]
    assert host_key in (folder / "known_hosts").read_text(), "accept-new did not record the host key"


def test_wrong_key_logs_a_clean_error_line(tmp_path, stack_factory, served, sshd):
    _, app, jobs = served
    app.commit(APP)
    wrong = new_key(tmp_path / "wrong_key")
    env = ssh_env(tmp_path, sshd, app, jobs, GIT_SSH_KEY=wrong, GIT_SSH_KNOWN_HOSTS=sshd.known_hosts)
    stack = stack_factory(None, **env)
    log = stack.wait_for_log("[ERROR] Clone failed (attempt 2)", 30)
    error = next(line for line in log.splitlines() if "Clone failed (attempt 1)" in line)
    assert "Permission denied (publickey)" in error and "retrying in" in error, error
    assert "Traceback" not in log
    assert stack.process is not None and stack.process.poll() is None, "the stack went down"
    assert not marks(tmp_path), "something ran without a clone"
    for value in key_markers(wrong).values():
        assert value not in log


def test_strict_known_hosts_rejects_another_host_key(tmp_path, stack_factory, served, sshd):
    _, app, jobs = served
    app.commit(APP)
    new_key(tmp_path / "other_host")
    other = (tmp_path / "other_host.pub").read_text().split()
    known = f"[127.0.0.1]:{sshd.port} {other[0]} {other[1]}\n"
    env = ssh_env(tmp_path, sshd, app, jobs, GIT_SSH_KEY=sshd.client_key, GIT_SSH_KNOWN_HOSTS=known)
    stack = stack_factory(None, **env)
    log = stack.wait_for_log("[ERROR] Clone failed (attempt 1)", 30)
    error = next(line for line in log.splitlines() if "Clone failed (attempt 1)" in line)
    assert "Host key verification failed" in error, error
    assert sshd.accepted() == 0, "the key was offered to a host that is not the known one"
    assert "Traceback" not in log


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        (
            "GIT_SSH_KEY",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nbm90IGEga2V5{mark}\n-----END OPENSSH PRIVATE KEY-----",
            "private key ssh can read",
        ),
        ("GIT_SSH_KEY", "{mark}", "is not a private key"),
        ("GIT_SSH_KEY_FILE", "{tmp}/no-such-key", "cannot be read"),
        ("GIT_SSH_KEY_FILE", "{tmp}", "cannot be read"),
    ],
    ids=["key-garbled", "key-not-a-key", "file-missing", "file-is-a-folder"],
)
def test_bad_key_is_one_configuration_line(tmp_path, variable, value, says):
    mark = "hrkey" + os.urandom(8).hex()
    env = stack_env(None, tmp_path / "workspace", None, GITHUB_REPO_URL="ssh://git@127.0.0.1/app.git")
    env[variable] = value.format(mark=mark, tmp=tmp_path)
    result = subprocess.run(
        [str(VENV_BIN / "hotreload"), "poller"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"hotreload: configuration error: {variable}: "), lines
    assert says in lines[0], lines
    assert "Traceback" not in result.stderr and mark not in result.stdout + result.stderr
