"""run_shell and kill_run against real processes: exit codes, output, timeouts, process trees."""

from __future__ import annotations

import io
import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # the project is not installed into the venv
    sys.path.insert(0, str(REPO))

from workers.contract import Outcome  # noqa: E402
from workers.process_tree import MARKER_VAR, find_run_processes, kill_run  # noqa: E402
from workers.runner import run_shell  # noqa: E402

_counter = itertools.count(1)
_SALT = random.randint(100, 999)


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def alive_with_args(markers: list[str]) -> set[str]:
    """Which of ``markers`` appear as an argument of a live (non-zombie) process."""
    wanted = {m.encode() for m in markers}
    seen: set[str] = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                args = set(f.read().split(b"\0"))
            with open(f"/proc/{name}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
            continue
        if state != b"Z":
            seen.update(m.decode() for m in args & wanted)
    return seen


class Watcher:
    """Records which marker processes were ever seen alive while a job ran."""

    def __init__(self, markers: list[str]) -> None:
        self.markers = markers
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen |= alive_with_args(self.markers)
            self._stop.wait(0.05)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def marker() -> Iterator[Callable[[], str]]:
    """Unique ``sleep`` durations (``300.<pid><salt><n>``) that identify this test's processes."""
    made: list[str] = []

    def make() -> str:
        value = f"300.{os.getpid()}{_SALT}{next(_counter)}"
        made.append(value)
        return value

    yield make
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
            if any(m.encode() in args for m in made):
                os.kill(int(name), signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue


@pytest.fixture
def run_id() -> Iterator[str]:
    value = f"test-{uuid.uuid4().hex}"
    yield value
    kill_run(value, grace=0.5)


def base_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def test_success_prefixes_stream_and_keeps_plain_output(tmp_path: Path, run_id: str) -> None:
    stream = io.StringIO()
    seen: list[str] = []
    result = run_shell(
        "echo hello; echo world",
        cwd=str(tmp_path),
        env=base_env(),
        timeout=10,
        run_id=run_id,
        prefix="[PRE-DEPLOY]",
        on_line=seen.append,
        stream=stream,
    )
    assert result.outcome is Outcome.SUCCEEDED
    assert result.exit_code == 0
    assert result.output == ["hello", "world"]
    assert seen == ["hello", "world"]
    assert stream.getvalue() == "[PRE-DEPLOY] hello\n[PRE-DEPLOY] world\n"
    assert result.truncated is False
    assert result.started_at == pytest.approx(time.time(), abs=10)
    # Returns on EOF: no fixed wait for background holders of the pipe when there are none.
    assert result.duration < 0.45


def test_nonzero_exit_is_failed_and_stderr_is_merged(tmp_path: Path, run_id: str) -> None:
    stream = io.StringIO()
    result = run_shell(
        "echo out; echo oops >&2; exit 3",
        cwd=str(tmp_path),
        env=base_env(),
        timeout=10,
        run_id=run_id,
        stream=stream,
    )
    assert result.outcome is Outcome.FAILED
    assert result.exit_code == 3
    assert result.output == ["out", "oops"]
    assert stream.getvalue() == "out\noops\n"


def test_cwd_env_and_run_id_reach_the_job(tmp_path: Path, run_id: str) -> None:
    env = {**base_env(), "FOO": "bar baz"}
    result = run_shell(
        f'pwd; echo "$FOO"; echo "${MARKER_VAR}"; echo "${{HOME-unset}}"',
        cwd=str(tmp_path),
        env=env,
        timeout=10,
        run_id=run_id,
        stream=io.StringIO(),
    )
    assert result.outcome is Outcome.SUCCEEDED
    assert result.output == [str(tmp_path.resolve()), "bar baz", run_id, "unset"]


def test_timeout_kills_the_whole_tree(tmp_path: Path, run_id: str, marker: Callable[[], str]) -> None:
    background, detached, double_forked, foreground = marker(), marker(), marker(), marker()
    markers = [background, detached, double_forked, foreground]
    command = (
        f"sleep {background} & setsid sleep {detached} & (sleep {double_forked} &); "
        f"echo started; sleep {foreground}"
    )
    stream = io.StringIO()
    with Watcher(markers) as watcher:
        result = run_shell(
            command,
            cwd=str(tmp_path),
            env=base_env(),
            timeout=1,
            run_id=run_id,
            prefix="[T]",
            grace=1,
            stream=stream,
        )
    assert watcher.seen == set(markers), "every marker process must have started"
    assert result.outcome is Outcome.TIMED_OUT
    assert result.exit_code is None
    assert result.output == ["started"]
    assert "[T] ERROR: Job timed out after 1s\n" in stream.getvalue()
    assert wait_for(lambda: not alive_with_args(markers), 2.0), alive_with_args(markers)
    assert result.duration < 4


def test_timeout_sigkills_a_job_that_ignores_sigterm(
    tmp_path: Path, run_id: str, marker: Callable[[], str]
) -> None:
    sleeper = marker()
    start = time.monotonic()
    with Watcher([sleeper]) as watcher:
        result = run_shell(
            f"trap '' TERM; sleep {sleeper}",
            cwd=str(tmp_path),
            env=base_env(),
            timeout=1,
            run_id=run_id,
            grace=1,
            stream=io.StringIO(),
        )
    assert watcher.seen == {sleeper}
    assert result.outcome is Outcome.TIMED_OUT
    assert result.exit_code is None
    assert wait_for(lambda: not alive_with_args([sleeper]), 3.0 - (time.monotonic() - start))


_INTERRUPT_SCRIPT = """
import os, sys
from workers.runner import install_interrupt_handler, run_shell
install_interrupt_handler()
# The markers come through the environment: as arguments they would be in this process's cmdline.
run_id, background, foreground = sys.argv[1], os.environ["BG"], os.environ["FG"]
result = run_shell(f"sleep {background} & sleep {foreground}", cwd=os.getcwd(), env=dict(os.environ),
                   timeout=60, run_id=run_id, prefix="[JOB]", grace=1)
print("RESULT", result.outcome.value, result.exit_code, flush=True)
"""


def test_sigterm_to_the_worker_interrupts_and_kills_the_tree(run_id: str, marker: Callable[[], str]) -> None:
    background, foreground = marker(), marker()
    env = {**os.environ, "PYTHONPATH": str(REPO), "BG": background, "FG": foreground}
    env.pop(MARKER_VAR, None)
    worker = subprocess.Popen(
        [sys.executable, "-c", _INTERRUPT_SCRIPT, run_id],
        cwd=str(REPO),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_for(lambda: alive_with_args([background, foreground]) == {background, foreground}, 10)
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, out
    assert "[JOB] ERROR: Job interrupted (stop requested)\n" in out
    assert "RESULT interrupted None\n" in out
    assert wait_for(lambda: not alive_with_args([background, foreground]), 2.0)


def test_exception_in_caller_kills_the_tree_and_is_reraised(
    tmp_path: Path, run_id: str, marker: Callable[[], str]
) -> None:
    background, foreground = marker(), marker()

    def on_line(line: str) -> None:
        assert wait_for(lambda: alive_with_args([background, foreground]) == {background, foreground}, 5)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_shell(
            f"setsid sleep {background} & sleep {foreground} & (sleep 0.2; echo go); wait",
            cwd=str(tmp_path),
            env=base_env(),
            timeout=30,
            run_id=run_id,
            grace=1,
            on_line=on_line,
            stream=io.StringIO(),
        )
    assert wait_for(lambda: not alive_with_args([background, foreground]), 2.0)


def test_secrets_are_masked_in_stream_and_output(tmp_path: Path, run_id: str) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    stream = io.StringIO()
    result = run_shell(
        'echo "token=$TOK"; echo "twice $TOK$TOK"',
        cwd=str(tmp_path),
        env={**base_env(), "TOK": secret},
        timeout=10,
        run_id=run_id,
        prefix="[P]",
        secrets=[secret, ""],
        stream=stream,
    )
    assert result.output == ["token=***", "twice ******"]
    assert stream.getvalue() == "[P] token=***\n[P] twice ******\n"
    assert secret not in stream.getvalue()


def test_output_caps_keep_the_tail(tmp_path: Path, run_id: str) -> None:
    command = 'for i in $(seq 1 5000); do echo "line $i"; done'
    by_lines = run_shell(
        command,
        cwd=str(tmp_path),
        env=base_env(),
        timeout=20,
        run_id=run_id,
        max_lines=100,
        stream=io.StringIO(),
    )
    assert by_lines.outcome is Outcome.SUCCEEDED
    assert by_lines.truncated is True
    assert by_lines.output == [f"line {i}" for i in range(4901, 5001)]

    stream = io.StringIO()
    by_bytes = run_shell(
        command, cwd=str(tmp_path), env=base_env(), timeout=20, run_id=run_id, max_bytes=1000, stream=stream
    )
    assert by_bytes.truncated is True
    assert by_bytes.output[-1] == "line 5000"
    assert sum(len(line) + 1 for line in by_bytes.output) <= 1000
    assert by_bytes.output == [f"line {i}" for i in range(5001 - len(by_bytes.output), 5001)]
    assert stream.getvalue().count("\n") == 5000  # the caps only limit what is kept


def test_background_child_holding_stdout_does_not_block(
    tmp_path: Path, run_id: str, marker: Callable[[], str]
) -> None:
    sleeper = marker()
    start = time.monotonic()
    result = run_shell(
        f"sleep {sleeper} & echo done",
        cwd=str(tmp_path),
        env=base_env(),
        timeout=30,
        run_id=run_id,
        stream=io.StringIO(),
    )
    elapsed = time.monotonic() - start
    assert result.outcome is Outcome.SUCCEEDED
    assert result.exit_code == 0
    assert result.output == ["done"]
    assert elapsed < 2.0
    # Left running on a normal exit (a POST_DEPLOY may start a background worker)...
    assert alive_with_args([sleeper]) == {sleeper}
    # ...and still found and killed by its run id, with the relay of the pipe it holds.
    assert kill_run(run_id, grace=1) == 2
    assert wait_for(lambda: not alive_with_args([sleeper]), 2.0)


def test_find_matches_the_run_id_exactly(run_id: str, marker: Callable[[], str]) -> None:
    sleeper = marker()
    other = run_id + "-other"
    proc = subprocess.Popen(["sleep", sleeper], env={**base_env(), MARKER_VAR: other})
    try:
        assert wait_for(lambda: proc.pid in find_run_processes(other), 5)
        assert proc.pid not in find_run_processes(run_id)
        assert os.getpid() not in find_run_processes(other)
    finally:
        proc.kill()
        proc.wait()


def test_kill_run_with_nothing_running_returns_zero() -> None:
    missing = f"missing-{uuid.uuid4().hex}"
    assert find_run_processes(missing) == []
    assert kill_run(missing, grace=0.5) == 0
