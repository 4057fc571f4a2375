"""What every fault case needs: job scripts that leave evidence, the stack's processes, Redis state.

The job scripts append one line per event to ``$MARKS`` (``<time> <event> <commit> <attempt> <pid>``)
and obey fault switches, files in ``$FAULTS`` that a test creates and removes while the
stack runs (``pre-hang``: the next PRE_DEPLOY writes its pid to ``pre.pid`` and hangs, once)::

    remote.commit(JOB_FILES)
    stack = stack_factory(remote, **job_env(tmp_path))
    marks = Marks(tmp_path)
    wait_until(lambda: marks.ended("pre", sha), 30)
    assert deploy_state(stack).processed == sha
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis

from tests.conftest import ROOT, Stack, run_git, wait_until

INSTANCE = "test"  # stack_env's INSTANCE_ID


def prefix(stack: Stack) -> str:
    """The Redis key prefix of the stack's deployment."""
    return f"hotreload:{stack.env['DEPLOYMENT_ID']}"


def instance_prefix(stack: Stack) -> str:
    return f"{prefix(stack)}:instance:{INSTANCE}"


_MARK = 'echo "$(date +%s.%N) {event} $DEPLOY_COMMIT_SHA $DEPLOY_ATTEMPT $$" >> "$MARKS"\n'

PRE_SCRIPT = (
    _MARK.format(event="pre-start")
    # One-shot: the run that sees the switch removes it, so the retry after the fault runs normally.
    + 'if [ -e "$FAULTS/pre-hang" ]; then rm -f "$FAULTS/pre-hang"; echo $$ > "$FAULTS/pre.pid"; sleep 300; fi\n'
    + 'if [ -e "$FAULTS/pre-tree" ]; then v=$(cat "$FAULTS/pre-tree"); rm -f "$FAULTS/pre-tree"; . ./tree.sh "$v"; fi\n'
    + 'if [ -e "$FAULTS/pre-fail" ]; then echo "[PRE-DEPLOY] failing on purpose"; exit 3; fi\n'
    + 'sleep "$(cat "$FAULTS/pre-sleep" 2>/dev/null || echo 0)"\n'
    + 'echo "[PRE-DEPLOY] migrated $DEPLOY_COMMIT_SHA"\n'
    + _MARK.format(event="pre-end")
)
# Sourced by PRE_DEPLOY with a variant: starts `sleep 300 &`, a setsid child and more, then hangs
# on a plain child. Every process it starts carries TREE_MARKER in its command line except the
# bare `sleep 300 &` (found by its process group); it writes its pgid, sid and pids to $FAULTS.
TREE_MARKER = "hotreload-fault-tree"
TREE_SCRIPT = f"""M="{TREE_MARKER}-$DEPLOY_COMMIT_SHA"
variant="$1"
if [ "$variant" = stubborn ]; then trap '' TERM; fi      # inherited: every child ignores SIGTERM
sleep 300 &
echo $! >> "$FAULTS/tree.pids"
setsid bash -c 'exec -a "$0" sleep 300' "$M-setsid" &
echo $! >> "$FAULTS/tree.pids"
if [ "$variant" = orphans ]; then
  ( ( exec -a "$M-orphan" sleep 300 ) & )                 # double fork: reparented away from the job
  setsid -f bash -c 'exec -a "$0" sleep 300' "$M-setsid-fork"
fi
echo "$(ps -o pgid= -p $$ | tr -d ' ') $(ps -o sid= -p $$ | tr -d ' ')" > "$FAULTS/tree.ids"
echo "[PRE-DEPLOY] tree started ($variant); hanging on a plain child"
bash -c 'exec -a "$0" sleep 300' "$M-plain"
"""
POST_SCRIPT = (
    _MARK.format(event="post-start")
    + 'sleep "$(cat "$FAULTS/post-sleep" 2>/dev/null || echo 0)"\n'
    + _MARK.format(event="post-end")
)
# The app: a real HTTP server when APP_PORT is set (so a test can see it keeps serving), else a sleeper.
APP_SCRIPT = (
    'echo "$(date +%s.%N) app $(git rev-parse HEAD) 0 $$" >> "$MARKS"\n'
    'if [ -n "$APP_PORT" ]; then exec python3 -m http.server "$APP_PORT" --bind 127.0.0.1; fi\n'
    "exec sleep 600\n"
)
JOB_FILES = {
    "scripts/pre-deploy/migrate.sh": PRE_SCRIPT,
    "scripts/pre-deploy/tree.sh": TREE_SCRIPT,
    "scripts/post-deploy/seed.sh": POST_SCRIPT,
    "app.sh": APP_SCRIPT,
}


def job_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """Environment of a stack whose jobs are the scripts above; ``$FAULTS`` is created empty."""
    faults = tmp_path / "faults"
    faults.mkdir(exist_ok=True)
    env = {
        "MARKS": str(tmp_path / "marks.txt"),
        "FAULTS": str(faults),
        # Unique per test: stacks of other test runs on the same host never share a run id with it.
        "DEPLOYMENT_ID": f"faults-{uuid.uuid4().hex[:8]}",
        "PRE_DEPLOY_FOLDER": "scripts/pre-deploy",
        "PRE_DEPLOY_COMMAND": "bash migrate.sh",
        "POST_DEPLOY_FOLDER": "scripts/post-deploy",
        "POST_DEPLOY_COMMAND": "bash seed.sh",
        "DEV_START_COMMAND": "bash app.sh",
    }
    env.update(overrides)
    return env


def set_fault(tmp_path: Path, name: str, content: str = "") -> None:
    (tmp_path / "faults").mkdir(exist_ok=True)
    (tmp_path / "faults" / name).write_text(content)


def clear_fault(tmp_path: Path, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (tmp_path / "faults" / name).unlink()


@dataclass(frozen=True)
class Mark:
    at: float
    event: str
    commit: str
    attempt: int
    pid: int


class Marks:
    """The evidence the job scripts leave in ``$MARKS``."""

    def __init__(self, tmp_path: Path):
        self.path = tmp_path / "marks.txt"

    def all(self) -> list[Mark]:
        if not self.path.exists():
            return []
        found = []
        for line in self.path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 5:
                found.append(Mark(float(parts[0]), parts[1], parts[2], int(parts[3] or 0), int(parts[4])))
        return found

    def of(self, event: str, commit: str | None = None) -> list[Mark]:
        return [m for m in self.all() if m.event == event and (commit is None or m.commit == commit)]

    def ended(self, kind: str, commit: str) -> bool:
        return bool(self.of(f"{kind}-end", commit))

    def runs(self, kind: str) -> list[tuple[Mark, Mark | None]]:
        """(start, end or None) of every run of ``kind``, matched by shell pid."""
        ends = {m.pid: m for m in self.of(f"{kind}-end")}
        return [(start, ends.get(start.pid)) for start in self.of(f"{kind}-start")]


@dataclass(frozen=True)
class DeployState:
    processed: str | None
    retry_commit: str | None
    retry_attempts: int
    last_pre: dict[str, str]


def client(stack: Stack) -> redis.Redis:
    return redis.Redis.from_url(stack.env["REDIS_URL"], decode_responses=True, socket_timeout=5)


def raw_client(stack: Stack) -> redis.Redis:
    """Bytes in, bytes out: what RQ's Job.fetch needs."""
    return redis.Redis.from_url(stack.env["REDIS_URL"], socket_timeout=5)


def deploy_state(stack: Stack) -> DeployState:
    r = client(stack)
    retry = r.hgetall(f"{instance_prefix(stack)}:retry")
    return DeployState(
        processed=r.get(f"{instance_prefix(stack)}:processed"),
        retry_commit=retry.get("commit"),
        retry_attempts=int(retry.get("attempts") or 0),
        last_pre=r.hgetall(f"{instance_prefix(stack)}:last:pre"),
    )


def runs_of(stack: Stack, commit: str, kind: str = "pre") -> list[tuple[str, dict[str, Any]]]:
    """The recorded runs of ``commit``'s job ``kind``, oldest first: (RQ job id, the job's meta)."""
    from rq.job import Job

    found = []
    for run_id in client(stack).zrange(f"{prefix(stack)}:runs", 0, -1):
        if f"-{commit[:12]}-{kind}-" in run_id:
            try:
                meta = dict(Job.fetch(run_id, connection=raw_client(stack)).meta)
            except Exception:  # noqa: BLE001 - an expired job: its outcome is gone
                meta = {}
            found.append((run_id, meta))
    return found


def workspace_head(stack: Stack) -> str:
    return run_git("rev-parse", "HEAD", cwd=Path(stack.env["WORKSPACE_PATH"]))


def workspace_clean(stack: Stack) -> bool:
    """No tracked file differs from HEAD: the checkout is whole, not half updated."""
    return (
        run_git("status", "--porcelain", "--untracked-files=no", cwd=Path(stack.env["WORKSPACE_PATH"])) == ""
    )


def is_deployed(stack: Stack, marks: Marks, commit: str, post: bool = True) -> bool:
    """PRE_DEPLOY of ``commit`` succeeded, it is the processed commit and the workspace is on it."""
    try:
        state = deploy_state(stack)
    except redis.RedisError:
        return False
    return (
        state.processed == commit
        and marks.ended("pre", commit)
        and (not post or marks.ended("post", commit))
        and workspace_head(stack) == commit
    )


def started_registry_entries(stack: Stack) -> list[str]:
    r = client(stack)
    return [key for key in r.keys("rq:wip:*") + r.keys("rq:registry:started:*") if r.zcard(key)]


def queue_busy(stack: Stack) -> bool:
    r = client(stack)
    queued = any(r.llen(key) for key in r.keys("rq:queue:hotreload:*") if r.type(key) == "list")
    deferred = any(r.zcard(key) for key in r.keys("rq:deferred:hotreload:*"))
    return queued or deferred or bool(started_registry_entries(stack))


# -- processes -------------------------------------------------------------------------
def stack_processes(stack: Stack) -> dict[str, psutil.Process]:
    """The Procfile processes under honcho, by name (poller, worker, app, redis)."""
    assert stack.process is not None
    honcho = psutil.Process(stack.process.pid)
    found: dict[str, psutil.Process] = {}
    for child in honcho.children():
        # honcho runs each Procfile line through a shell that execs or waits for it.
        for proc in [child, *child.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                cmd = proc.cmdline()
                if len(cmd) >= 2 and cmd[-2].endswith("/hotreload") and cmd[-1] not in found:
                    found[cmd[-1]] = proc
    return found


def wait_for_processes(stack: Stack, names: tuple[str, ...] = ("poller", "worker", "app")) -> dict[str, Any]:
    return wait_until(
        lambda: (procs := stack_processes(stack)) and all(n in procs for n in names) and procs,
        20,
        what=f"the stack processes {names}",
    )


def horse_of(job_pid: int, worker: psutil.Process) -> psutil.Process:
    """The RQ work horse running the job shell ``job_pid``: its ancestor whose parent is the worker."""
    proc = psutil.Process(job_pid)
    for parent in proc.parents():
        if parent.ppid() == worker.pid:
            return parent
    raise AssertionError(f"no work horse of the worker {worker.pid} above pid {job_pid}")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def read_pid(path: Path, timeout: float = 30.0) -> int:
    return int(wait_until(lambda: path.exists() and path.read_text().strip(), timeout, what=str(path)))


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def restart(stack: Stack, log_path: Path) -> Stack:
    """A new ``honcho start`` with the same environment (same Redis, same workspace)."""
    return Stack(stack.env, log_path, cwd=ROOT).start()


def sigkill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


class PersistentRedis:
    """An external redis-server the test stops and starts again on the same port, keeping its data.

    The append-only file is written on every command, so a restart comes back with the state
    an external (managed) Redis would have: the outage is of the connection, not of the data.
    """

    def __init__(self, workdir: Path, port: int, password: str | None = None):
        self.workdir = workdir
        self.port = port
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # A config file, not arguments: a password on redis-server's command line would show in /proc.
        conf = self.workdir.with_suffix(".conf")
        conf.write_text(
            f'port {self.port}\nbind 127.0.0.1\ndir {self.workdir}\nsave ""\nappendonly yes\n'
            f"appendfsync always\nloglevel warning\n"
            + (f"requirepass {self.password}\n" if self.password else "")
        )
        self.process = subprocess.Popen(["redis-server", str(conf)], stdout=subprocess.DEVNULL)
        probe = redis.Redis.from_url(self.url, socket_timeout=1)

        def up() -> bool:
            try:
                return bool(probe.ping())
            except redis.RedisError:
                return False

        wait_until(up, 10, what="redis-server to answer")

    def stop(self, lose_data: bool = False) -> None:
        """Stop the server; with ``lose_data`` it comes back empty, like a Redis without a volume."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None
        if lose_data:
            shutil.rmtree(self.workdir, ignore_errors=True)
