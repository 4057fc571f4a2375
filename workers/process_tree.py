"""Find and kill every process one deploy job started, wherever it went.

A job runs in its own session and process group, but a process group is not enough:
a child can ``setsid`` or double-fork away from it. So every job process also gets
``HOTRELOAD_RUN_ID=<run id>`` in its environment; children inherit it, and
``/proc/PID/environ`` still shows it after they leave the group::

    from workers.process_tree import MARKER_VAR, find_run_processes, kill_run

    env = {**os.environ, MARKER_VAR: run_id}
    proc = subprocess.Popen(["bash", "-c", command], env=env, start_new_session=True)
    ...
    find_run_processes(run_id, pgid=proc.pid)  # -> [4242, 4250, ...]
    kill_run(run_id, pgid=proc.pid, grace=3.0)  # SIGTERM, then SIGKILL after 3 s
    kill_run({run_a, run_b})  # several runs at once (a worker's leftovers when it stops)

Limits: a process that re-executes itself with a cleaned environment (``env -i``)
and also leaves the process group cannot be found; Linux only (reads ``/proc``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Collection
from typing import NamedTuple

MARKER_VAR = "HOTRELOAD_RUN_ID"

# What reading /proc or signalling a pid raises when the process vanished meanwhile
# (or belongs to someone we may not look at).
_GONE = (FileNotFoundError, ProcessLookupError, PermissionError)

_POLL = 0.05
_KILL_WAIT = 1.0


class _Stat(NamedTuple):
    state: str
    ppid: int
    pgid: int


def _stat(pid: int) -> _Stat:
    """State, parent and process group of ``pid`` from ``/proc/PID/stat``."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read().decode("ascii", errors="replace")
    # The command name (field 2) is in parentheses and may itself contain ") ".
    fields = data[data.rindex(")") + 2 :].split()
    return _Stat(state=fields[0], ppid=int(fields[1]), pgid=int(fields[2]))


def _self_and_ancestors() -> set[int]:
    """The calling process and every ancestor up to init: never ours to kill."""
    pids = {os.getpid()}
    pid = os.getpid()
    while pid > 1:
        try:
            pid = _stat(pid).ppid
        except _GONE:
            break
        pids.add(pid)
    pids.discard(0)
    return pids


#: One run id, or several.
RunIds = str | Collection[str]


def _has_marker(pid: int, entries: set[bytes]) -> bool:
    with open(f"/proc/{pid}/environ", "rb") as f:
        return not entries.isdisjoint(f.read().split(b"\0"))


def find_run_processes(run_id: RunIds, pgid: int | None = None) -> list[int]:
    """Live (non-zombie) pids carrying ``HOTRELOAD_RUN_ID=<run_id>`` or in process group ``pgid``.

    The calling process and its ancestors are never returned. Processes that exit
    while the scan runs, or that we may not inspect, are skipped.
    """
    ids = [run_id] if isinstance(run_id, str) else run_id
    entries = {f"{MARKER_VAR}={one}".encode() for one in ids}
    excluded = _self_and_ancestors()
    found: list[int] = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        if pid in excluded:
            continue
        try:
            stat = _stat(pid)
            if stat.state in ("Z", "X"):
                continue
            if (pgid is not None and stat.pgid == pgid) or _has_marker(pid, entries):
                found.append(pid)
        except _GONE:
            continue
    return found


def _signal_all(run_id: RunIds, pgid: int | None, sig: signal.Signals, signalled: set[int]) -> list[int]:
    """Send ``sig`` to the group and to every process found; return the pids found."""
    if pgid is not None:
        with contextlib.suppress(*_GONE):
            os.killpg(pgid, sig)
    pids = find_run_processes(run_id, pgid)
    for pid in pids:
        try:
            os.kill(pid, sig)
        except _GONE:
            continue
        signalled.add(pid)
    return pids


def _wait_gone(
    run_id: RunIds, pgid: int | None, timeout: float, sig: signal.Signals, signalled: set[int]
) -> bool:
    """Wait until no process of the run is left; processes that appear meanwhile get ``sig`` too.

    With SIGKILL every survivor is signalled again on each poll (it cannot be caught anyway).
    """
    deadline = time.monotonic() + timeout
    while True:
        alive = find_run_processes(run_id, pgid)
        if not alive:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        for pid in alive:
            if pid in signalled and sig != signal.SIGKILL:
                continue
            try:
                os.kill(pid, sig)
            except _GONE:
                continue
            signalled.add(pid)
        time.sleep(min(_POLL, remaining))


def kill_run(run_id: RunIds, pgid: int | None = None, grace: float = 3.0) -> int:
    """Terminate every process of the run: SIGTERM, up to ``grace`` seconds, then SIGKILL.

    New processes that appear meanwhile (a trap handler forking, a double fork in
    flight) are found by re-scanning ``/proc`` on every poll. Returns how many distinct
    processes were signalled: 0 when nothing was running.
    """
    signalled: set[int] = set()
    if not _signal_all(run_id, pgid, signal.SIGTERM, signalled):
        return 0
    if not _wait_gone(run_id, pgid, grace, signal.SIGTERM, signalled):
        _signal_all(run_id, pgid, signal.SIGKILL, signalled)
        _wait_gone(run_id, pgid, _KILL_WAIT, signal.SIGKILL, signalled)
    return len(signalled)
