"""The real parts the benchmark and the tests drive: a redis-server, a local bare repository, the Procfile.

Nothing here depends on pytest, so ``python -m bench`` runs from a clean clone with the
project installed; ``tests/conftest.py`` wraps the same classes in fixtures::

    with Workdir() as root:
        server = RedisServer(root / "redis").start()
        remote = GitRemote(root)
        remote.commit({"app.sh": "exec sleep 600\\n"})
        stack = Stack(stack_env(remote, root / "ws", server.url, DEV_START_COMMAND="bash app.sh", **BENCH_IDS),
                      root / "stack.log").start()
        stack.wait_for_log("[APP] Starting")
        stack.stop(); server.stop()
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from prometheus_client.parser import text_string_to_metric_families

from workers.redis_connection import connect

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
#: Every stack of the benchmark uses these, so the bench knows its Redis keys (DeployKeys).
DEPLOYMENT_ID = "bench"
INSTANCE_ID = "bench"
BENCH_IDS = {"DEPLOYMENT_ID": DEPLOYMENT_ID, "INSTANCE_ID": INSTANCE_ID}


class BenchError(AssertionError):
    """A step did not happen in time; the message says which (a failed assertion in a test)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], Any], timeout: float = 20.0, what: str = "", interval: float = 0.05
) -> Any:
    """Poll ``predicate`` until it returns something truthy; BenchError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what or predicate}")
        time.sleep(interval)


class Workdir:
    """A temporary directory removed at the end (kept when BENCH_KEEP=1, for post-mortems)."""

    def __enter__(self) -> Path:
        self.path = Path(tempfile.mkdtemp(prefix="hotreload-bench-"))
        return self.path

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if os.environ.get("BENCH_KEEP") == "1":
            print(f"bench: kept {self.path}", file=sys.stderr)
        else:
            shutil.rmtree(self.path, ignore_errors=True)


class RedisServer:
    """A redis-server on a free port, without persistence."""

    def __init__(self, workdir: Path, port: int | None = None):
        self.workdir = workdir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        server = shutil.which("redis-server")
        if not server:
            raise BenchError("redis-server is required (bin/bootstrap installs it)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + ["--dir", str(self.workdir), "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
        )
        client = self.client()

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_until(up, 10, "redis-server to answer", 0.02)
        return self

    def client(self) -> redis.Redis:
        return connect(self.url, decode_responses=True)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}


def run_git(*args: str, cwd: Path) -> str:
    out = subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env={**os.environ, **GIT_ENV}
    )
    return out.stdout.strip()


class GitRemote:
    """A local bare repository (the remote) and a working clone that commits and pushes to it."""

    def __init__(self, root: Path, name: str = "app", branch: str = "main"):
        self.bare = root / f"{name}.git"
        self.work = root / f"{name}-work"
        self.branch = branch
        self.counter = 0
        run_git("init", "--quiet", "--bare", f"--initial-branch={branch}", str(self.bare), cwd=root)
        # As the big hosts serve: partial clones, and any commit by its sha (a shallow clone's fetch).
        for key in ("uploadpack.allowFilter", "uploadpack.allowAnySHA1InWant"):
            run_git("config", key, "true", cwd=self.bare)
        run_git("init", "--quiet", f"--initial-branch={branch}", str(self.work), cwd=root)
        run_git("remote", "add", "origin", str(self.bare), cwd=self.work)

    @property
    def url(self) -> str:
        return str(self.bare)

    def commit(
        self, files: dict[str, str] | None = None, message: str | None = None, push: bool = True
    ) -> str:
        """Commit ``files`` (or a one-line change) and, by default, push; returns the sha."""
        self.counter += 1
        for rel, content in (files or {"CHANGES": f"{self.counter}\n"}).items():
            path = self.work / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        run_git("add", "-A", cwd=self.work)
        run_git(
            "commit", "--quiet", "--allow-empty", "-m", message or f"change {self.counter}", cwd=self.work
        )
        sha = run_git("rev-parse", "HEAD", cwd=self.work)
        if push:
            self.push()
        return sha

    def head(self) -> str:
        return run_git("rev-parse", "HEAD", cwd=self.work)

    def push(self, force: bool = False) -> float:
        """Push the working clone's HEAD; returns time.time() when ``git push`` returned."""
        run_git(
            "push",
            "--quiet",
            *(["--force"] if force else []),
            "origin",
            f"HEAD:refs/heads/{self.branch}",
            cwd=self.work,
        )
        return time.time()


def stack_env(
    remote: GitRemote | None, workspace: Path, redis_url: str | None, **overrides: str
) -> dict[str, str]:
    """The container environment of one stack: this process's, without any hotreload setting, plus ``overrides``.

    Free ports for every listener; INSTANCE_ID ``test`` and the DEPLOYMENT_ID derived from the
    repository unless overridden (the bench passes ``BENCH_IDS``).
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("GITHUB_", "PRE_DEPLOY", "POST_DEPLOY", "FAILED_DEPLOY", "DEV_", "REDIS_URL", "RQ_DASHBOARD")
        )
    }
    env.update(
        {
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "PYTHONUNBUFFERED": "1",
            "WORKSPACE_PATH": str(workspace),
            "GITHUB_SYNC_INTERVAL": "1",
            "DEV_HEALTH_PORT": str(free_port()),
            "HOTRELOAD_REDIS_PORT": str(free_port()),
            "RQ_DASHBOARD_PORT": str(free_port()),
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


def signed_push_request(
    port: int | str, secret: str, branch: str, sha: str, headers: dict[str, str] | None = None
) -> urllib.request.Request:
    """A GitHub push delivery for ``branch`` at ``sha`` to the poller, signed as GitHub signs it."""
    body = json.dumps({"ref": f"refs/heads/{branch}", "after": sha, "repository": {"full_name": "test/app"}})
    data = body.encode()
    return urllib.request.Request(
        f"http://127.0.0.1:{port}/webhook/github",
        data=data,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), data, hashlib.sha256).hexdigest(),
            **(headers or {}),
        },
    )


def metric_samples(text: str) -> dict[str, float]:
    """Prometheus text exposition as ``{'name{label=value,...}': value}``."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


class Stack:
    """``honcho start`` on the repository's Procfile, its output in a log file."""

    def __init__(self, env: dict[str, str], log_path: Path, cwd: Path = ROOT):
        self.env = env
        self.log_path = log_path
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> Stack:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.started_at = time.time()
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

    def check_running(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise BenchError(f"the stack exited with code {self.process.returncode}:\n{self.log()[-3000:]}")

    def wait_for_log(self, text: str, timeout: float = 30.0, count: int = 1) -> str:
        """Wait until ``text`` appeared ``count`` times; returns the whole log."""

        def seen() -> bool:
            if self.log().count(text) >= count:
                return True
            self.check_running()
            return False

        try:
            wait_until(seen, timeout, repr(text), 0.02)
        except BenchError as exc:
            raise BenchError(f"{exc}\n--- stack log tail ---\n{self.log()[-4000:]}") from None
        return self.log()

    def syncs(self, result: str = "unchanged") -> float:
        """The poller's ``hotreload_syncs_total{result=...}`` (0 while /metrics does not answer)."""
        url = f"http://127.0.0.1:{self.env['DEV_HEALTH_PORT']}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                samples = metric_samples(response.read().decode())
        except OSError:
            return 0.0
        return samples.get(f"hotreload_syncs_total{{result={result}}}", 0.0)

    def wait_for_syncs(self, count: int, result: str = "unchanged", timeout: float = 30.0) -> None:
        """Wait until the poller has done ``count`` more sync cycles of ``result`` than now."""
        start = self.syncs(result)
        wait_until(lambda: self.syncs(result) >= start + count, timeout, f"{count} more {result} syncs", 0.05)

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"stack still running after {timeout}s:\n{self.log()[-4000:]}") from None

    def terminate(self) -> None:
        """SIGTERM to honcho alone, as a container runtime sends it."""
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
