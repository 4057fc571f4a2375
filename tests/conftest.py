"""Real parts for tests: a redis-server on a free port, local bare git remotes, the Procfile under honcho.

def test_x(redis_url, remote, stack_factory):
    remote.commit({"scripts/pre.sh": "echo hi"})
    stack = stack_factory(remote, PRE_DEPLOY_COMMAND="bash scripts/pre.sh")
    stack.wait_for_log("[PRE-DEPLOY] hi")
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


class RedisServer:
    """A redis-server this test started, on a free port, with its data in a temp dir."""

    def __init__(self, workdir: Path, port: int | None = None):
        self.workdir = workdir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        assert server, "redis-server is required (bin/test installs it)"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                server,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_until(up, 10, what="redis-server to answer")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


def run_git(*args: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    out = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env)
    return out.stdout.strip()


class GitRemote:
    """A local bare repository (the remote) and a working clone that commits and pushes to it."""

    def __init__(self, root: Path, name: str = "app", branch: str = "main"):
        self.bare = root / f"{name}.git"
        self.work = root / f"{name}-work"
        self.branch = branch
        run_git("init", "--quiet", "--bare", f"--initial-branch={branch}", str(self.bare), cwd=root)
        run_git("init", "--quiet", f"--initial-branch={branch}", str(self.work), cwd=root)
        run_git("remote", "add", "origin", str(self.bare), cwd=self.work)

    @property
    def url(self) -> str:
        return str(self.bare)

    def commit(self, files: dict[str, str] | None = None, message: str = "change", push: bool = True) -> str:
        for rel, content in (files or {}).items():
            path = self.work / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        if not files:
            marker = self.work / "CHANGES"
            marker.write_text(marker.read_text() + "x\n" if marker.exists() else "x\n")
        run_git("add", "-A", cwd=self.work)
        run_git("commit", "--quiet", "--allow-empty", "-m", message, cwd=self.work)
        sha = run_git("rev-parse", "HEAD", cwd=self.work)
        if push:
            self.push()
        return sha

    def push(self, force: bool = False) -> None:
        args = (
            ["push", "--quiet"]
            + (["--force"] if force else [])
            + ["origin", f"HEAD:refs/heads/{self.branch}"]
        )
        run_git(*args, cwd=self.work)


@pytest.fixture
def remote(tmp_path: Path) -> GitRemote:
    return GitRemote(tmp_path)


class Stack:
    """``honcho start`` on the repository's Procfile, its output in a log file."""

    def __init__(self, env: dict[str, str], log_path: Path, cwd: Path = ROOT):
        self.env = env
        self.log_path = log_path
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Stack:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(VENV_BIN / "honcho"), "start"],
            cwd=self.cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30.0, count: int = 1) -> str:
        def seen() -> bool:
            if (
                self.process is not None
                and self.process.poll() is not None
                and self.log().count(text) < count
            ):
                raise AssertionError(
                    f"stack exited ({self.process.returncode}) before {text!r}:\n{self.log()[-4000:]}"
                )
            return self.log().count(text) >= count

        try:
            wait_until(seen, timeout, 0.05, what=repr(text))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- log tail ---\n{self.log()[-4000:]}") from None
        return self.log()

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"stack still running after {timeout}s:\n{self.log()[-4000:]}") from None

    def terminate(self) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        if hasattr(self, "_log"):
            self._log.close()


def stack_env(
    remote: GitRemote | None, workspace: Path, redis_url: str | None, **overrides: str
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "PRE_DEPLOY", "POST_DEPLOY", "FAILED_DEPLOY", "DEV_", "REDIS_URL"))
    }
    env.update(
        {
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "PYTHONUNBUFFERED": "1",
            "WORKSPACE_PATH": str(workspace),
            "GITHUB_SYNC_INTERVAL": "1",
            "DEV_HEALTH_PORT": str(free_port()),
            "HOTRELOAD_REDIS_PORT": str(free_port()),
            "INSTANCE_ID": "test",
            "KILL_GRACE": "1",
        }
    )
    if remote is not None:
        env["GITHUB_REPO_URL"] = remote.url
        env["GITHUB_BRANCH"] = remote.branch
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(overrides)
    return env


@pytest.fixture
def stack_factory(tmp_path: Path, redis_url: str) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []

    def make(remote: GitRemote | None, start: bool = True, use_redis: bool = True, **overrides: str) -> Stack:
        n = len(stacks)
        env = stack_env(remote, tmp_path / f"workspace{n}", redis_url if use_redis else None, **overrides)
        stack = Stack(env, tmp_path / f"stack{n}.log")
        stacks.append(stack)
        return stack.start() if start else stack

    yield make
    for stack in stacks:
        stack.stop()
