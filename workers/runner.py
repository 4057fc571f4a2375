"""Run one deploy job's shell command, stream its output, and own its process tree.

``run_shell`` starts ``bash -c <command>`` in its own session with
``HOTRELOAD_RUN_ID=<run id>`` in its environment, prints every output line with a
prefix as soon as it is written, masks secrets, keeps the tail of the output, and
kills the whole process tree (``setsid`` children included) on timeout or when the
calling process is asked to stop::

    from workers.runner import install_interrupt_handler, run_shell

    install_interrupt_handler()  # SIGTERM/SIGINT -> JobInterrupted in the main thread
    result = run_shell("bash migrate.sh", cwd="/workspaces/app", env=dict(os.environ),
                       timeout=300, run_id=job_id, prefix="[PRE-DEPLOY]",
                       secrets=[os.environ["DB_PASSWORD"]])
    if result.outcome is not Outcome.SUCCEEDED:
        print("\\n".join(result.output[-20:]))

When the shell exits by itself, processes it left in the background keep running (a
POST_DEPLOY may start a worker). If they still hold the output pipe 0.5 s after the shell
exited, its read end goes to a relay (``workers.output_relay``) that goes on printing
their lines, prefixed and masked, until they end; they and the relay carry the run id,
so ``kill_run`` ends them all.
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import FrameType
from typing import Any, TextIO

from workers.contract import Outcome
from workers.output_relay import LineSplitter, hand_over, mask, ordered_secrets, with_prefix
from workers.process_tree import MARKER_VAR, kill_run

#: How long output is still read after the shell exited, before background holders of the pipe go to a relay.
DRAIN_AFTER_EXIT = 0.5


class JobInterrupted(Exception):
    """Raised in the main thread by the handler of ``install_interrupt_handler`` on SIGTERM/SIGINT."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stop requested ({signal.Signals(signum).name})")
        self.signum = signum


_Handler = Callable[[int, FrameType | None], Any] | int | None


def install_interrupt_handler() -> dict[signal.Signals, _Handler]:
    """Make SIGTERM and SIGINT raise ``JobInterrupted``; returns the previous handlers.

    Must be called from the main thread. ``run_shell`` turns a ``JobInterrupted``
    raised while a job runs into a killed process tree and an INTERRUPTED result;
    raised anywhere else it propagates to the caller like any exception.
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        raise JobInterrupted(signum)

    previous: dict[signal.Signals, _Handler] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handler)
    return previous


@dataclass
class RunResult:
    """How one ``run_shell`` call ended."""

    outcome: Outcome  # SUCCEEDED (exit 0), FAILED (non-zero), TIMED_OUT, INTERRUPTED
    exit_code: int | None  # the shell's exit code; None when we killed it (timeout/interrupt)
    duration: float  # seconds, monotonic
    output: list[str]  # kept output lines, already masked, without the prefix
    truncated: bool  # True when lines were dropped by the caps
    started_at: float  # time.time() at start


@dataclass(frozen=True)
class _Exited:
    code: int


class _Eof:
    pass


_Event = str | _Exited | _Eof


def _read_lines(fd: int, wake_fd: int, events: queue.Queue[_Event]) -> None:
    """Reader thread: put each output line on ``events`` until EOF or until ``wake_fd`` is readable."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    poller.register(wake_fd, select.POLLIN)
    splitter = LineSplitter()
    try:
        while True:
            ready = poller.poll()
            if any(ready_fd == wake_fd for ready_fd, _ in ready):
                break
            data = os.read(fd, 65536)
            if not data:
                break
            for line in splitter.feed(data):
                events.put(line)
        for line in splitter.rest():
            events.put(line)
    finally:
        events.put(_Eof())


def _wait_exit(proc: subprocess.Popen[bytes], events: queue.Queue[_Event]) -> None:
    """Waiter thread: the only place that reaps the shell."""
    events.put(_Exited(proc.wait()))


class _Output:
    """Masks, prints, forwards and keeps (the tail of) the job's output lines."""

    def __init__(
        self,
        prefix: str,
        secrets: Iterable[str],
        on_line: Callable[[str], None] | None,
        max_lines: int,
        max_bytes: int,
        stream: TextIO,
    ) -> None:
        self.prefix = prefix
        self.secrets = ordered_secrets(secrets)
        self.on_line = on_line
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.stream = stream
        self.kept: collections.deque[tuple[str, int]] = collections.deque()
        self.kept_bytes = 0
        self.truncated = False
        self.exit_code: int | None = None
        self.eof = False

    def write(self, text: str) -> None:
        self.stream.write(f"{with_prefix(text, self.prefix)}\n")
        self.stream.flush()

    def line(self, raw: str) -> None:
        raw = mask(raw, self.secrets)
        self.write(raw)
        if self.on_line is not None:
            self.on_line(raw)
        self.keep(raw)

    def keep(self, line: str) -> None:
        size = len(line.encode("utf-8")) + 1
        if size > self.max_bytes:  # a single huge line: keep its tail
            line = line.encode("utf-8")[-(self.max_bytes - 1) :].decode("utf-8", errors="ignore")
            size = len(line.encode("utf-8")) + 1
            self.truncated = True
        self.kept.append((line, size))
        self.kept_bytes += size
        while self.kept and (len(self.kept) > self.max_lines or self.kept_bytes > self.max_bytes):
            self.kept_bytes -= self.kept.popleft()[1]
            self.truncated = True

    def handle(self, event: _Event) -> None:
        if isinstance(event, str):
            self.line(event)
        elif isinstance(event, _Exited):
            self.exit_code = event.code
        else:
            self.eof = True

    def pump(self, events: queue.Queue[_Event], until: float, done: Callable[[], bool]) -> bool:
        """Handle events until ``done()`` or the monotonic deadline ``until``; True if done."""
        while not done():
            remaining = until - time.monotonic()
            if remaining <= 0:
                return False
            try:
                event = events.get(timeout=remaining)
            except queue.Empty:
                return done()
            self.handle(event)
        return True

    def drain(self, events: queue.Queue[_Event]) -> None:
        """Handle what is already queued, without waiting."""
        while True:
            try:
                event = events.get_nowait()
            except queue.Empty:
                return
            self.handle(event)


def _shell() -> str:
    return shutil.which("bash") or "/bin/sh"


def run_shell(
    command: str,
    *,
    cwd: str,
    env: dict[str, str],
    timeout: float,
    run_id: str,
    prefix: str = "",
    secrets: Iterable[str] = (),
    on_line: Callable[[str], None] | None = None,
    grace: float = 3.0,
    max_lines: int = 1000,
    max_bytes: int = 65536,
    stream: TextIO | None = None,
    relay_group: int | None = None,
) -> RunResult:
    """Run ``command`` with ``bash -c`` and return how it ended; see the module docstring.

    Timeout and ``JobInterrupted`` kill the whole process tree (SIGTERM, SIGKILL after
    ``grace``) and return TIMED_OUT / INTERRUPTED. Any other exception raised while the
    job runs (``KeyboardInterrupt``, ``SystemExit``, an RQ job timeout, ``on_line``
    failing) kills the tree too and is re-raised. Failing to start the shell (``cwd``
    missing) raises the ``OSError`` of ``subprocess.Popen``. The relay of background
    output writes to ``stream``'s file descriptor (stdout when it has none) and joins
    process group ``relay_group`` (default: the caller's).
    """
    out = _Output(prefix, secrets, on_line, max_lines, max_bytes, stream or sys.stdout)
    events: queue.Queue[_Event] = queue.Queue()
    started_at = time.time()
    start = time.monotonic()
    wake_r, wake_w = os.pipe()  # written to when the reader thread must stop
    try:
        proc = subprocess.Popen(
            [_shell(), "-c", command],
            cwd=cwd,
            env={**env, MARKER_VAR: run_id},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except BaseException:
        os.close(wake_r)
        os.close(wake_w)
        raise
    assert proc.stdout is not None
    reader = threading.Thread(
        target=_read_lines, args=(proc.stdout.fileno(), wake_r, events), name=f"output-{run_id}", daemon=True
    )
    waiter = threading.Thread(target=_wait_exit, args=(proc, events), name=f"wait-{run_id}", daemon=True)

    def kill_tree() -> None:
        while True:
            try:
                # Once the shell is reaped its pid may be reused as another group's id: rely on the marker.
                kill_run(run_id, proc.pid if out.exit_code is None else None, grace)
                return
            except JobInterrupted:
                continue  # asked again to stop while stopping: finish killing first

    def after_kill() -> None:
        # The tree is dead, so EOF follows at once: print what it wrote while dying (trap handlers).
        out.pump(events, time.monotonic() + DRAIN_AFTER_EXIT, lambda: out.eof)

    outcome: Outcome | None = None
    background = False
    try:
        reader.start()
        waiter.start()
        if out.pump(events, start + timeout, lambda: out.exit_code is not None):
            out.pump(events, time.monotonic() + DRAIN_AFTER_EXIT, lambda: out.eof)
            outcome = Outcome.SUCCEEDED if out.exit_code == 0 else Outcome.FAILED
            background = not out.eof  # processes it left hold the pipe: relay their output
        else:
            out.write(f"ERROR: Job timed out after {timeout:g}s")
            kill_tree()
            outcome = Outcome.TIMED_OUT
            after_kill()
    except JobInterrupted:
        try:
            out.write("ERROR: Job interrupted (stop requested)")
        finally:
            kill_tree()
        outcome = Outcome.INTERRUPTED
        with contextlib.suppress(JobInterrupted):  # asked again: the tree is dead already
            after_kill()
    except BaseException:
        kill_tree()
        raise
    finally:
        os.write(wake_w, b"x")
        if reader.ident is not None:
            reader.join()
        if outcome is not None:
            out.drain(events)
        if background:
            # The job is over but processes it left write on: a relay prints their lines from now on.
            problem = hand_over(
                proc.stdout.fileno(), out.stream, run_id, out.prefix, out.secrets, relay_group
            )
            out.write(problem or "Background processes of the job keep running; their output follows")
        os.close(wake_r)
        os.close(wake_w)
        proc.stdout.close()
        if waiter.ident is not None:
            waiter.join(timeout=1.0)

    assert outcome is not None
    killed = outcome in (Outcome.TIMED_OUT, Outcome.INTERRUPTED)
    return RunResult(
        outcome=outcome,
        exit_code=None if killed else out.exit_code,
        duration=time.monotonic() - start,
        output=[line for line, _ in out.kept],
        truncated=out.truncated,
        started_at=started_at,
    )
