"""What the stack's processes cost, read from /proc (Linux): CPU times, RSS and PSS.

A process tree is every descendant of one pid; each process gets a *role* (the Procfile
entry it belongs to, ``honcho`` for honcho itself, ``app`` for the DEV_START_COMMAND tree)
so costs can be reported per process and summed per role::

    before = snapshot(stack.pid, roles)
    time.sleep(60)
    after = snapshot(stack.pid, roles)
    cpu_seconds = tree_cpu(after) - tree_cpu(before)     # exited children included
    for proc in long_lived(before, after): print(proc.role, proc.rss_kb, proc.pss_kb)

CPU of a process here is utime + stime + cutime + cstime: once a child exits and is
reaped its times move into its parent's cutime/cstime, so the sum over the live tree
never loses a short-lived ``git`` process.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
APP_MARKER = b"HOTRELOAD_RUN_ID=app-"
#: Role of the DEV_START_COMMAND tree (the user's app, not ours).
APP_ROLE = "DEV_START_COMMAND"


@dataclass
class Proc:
    """One process at one moment."""

    pid: int
    ppid: int
    start: int  # start time in clock ticks since boot: (pid, start) names a process uniquely
    comm: str
    cmdline: str
    cpu: float  # seconds: utime + stime + cutime + cstime
    own_cpu: float  # seconds: utime + stime
    rss_kb: int
    pss_kb: int | None
    role: str = ""
    children: list[int] = field(default_factory=list)

    @property
    def key(self) -> tuple[int, int]:
        return (self.pid, self.start)


def _stat(pid: int) -> tuple[int, int, str, float, float] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    start = int(fields[19])
    return ppid, start, comm, (utime + stime + cutime + cstime) / CLK_TCK, (utime + stime) / CLK_TCK


def _memory(pid: int) -> tuple[int, int | None]:
    """(RSS, PSS) in kB; PSS is None where smaps_rollup is unavailable."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        values = {}
        for line in text.splitlines():
            name, _, rest = line.partition(":")
            if name in ("Rss", "Pss"):
                values[name] = int(rest.split()[0])
        return values.get("Rss", 0), values.get("Pss")
    except (OSError, ValueError):
        pass
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]), None
    except OSError:
        pass
    return 0, None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _is_app(pid: int) -> bool:
    try:
        return APP_MARKER in Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False


def all_parents() -> dict[int, int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat:
                parents[int(entry)] = stat[0]
    return parents


def snapshot(root: int, roles: dict[int, str] | None = None, memory: bool = True) -> dict[int, Proc]:
    """Every process of the tree under ``root`` (included), with a role each.

    ``roles`` maps the pid honcho started for each Procfile entry to the entry's name;
    descendants inherit the role of their nearest named ancestor.
    """
    roles = roles or {}
    parents = all_parents()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    procs: dict[int, Proc] = {}
    stack = [(root, "honcho")]
    while stack:
        pid, inherited = stack.pop()
        stat = _stat(pid)
        if stat is None:
            continue
        ppid, start, comm, cpu, own = stat
        role = roles.get(pid, inherited)
        if role != APP_ROLE and pid != root and _is_app(pid):
            role = APP_ROLE
        cmdline = _cmdline(pid)
        if comm == "redis-server":
            role = "redis-server"
        rss, pss = _memory(pid) if memory else (0, None)
        procs[pid] = Proc(pid, ppid, start, comm, cmdline, cpu, own, rss, pss, role, children.get(pid, []))
        stack.extend((child, role) for child in children.get(pid, []))
    return procs


def tree_cpu(procs: dict[int, Proc], exclude_roles: tuple[str, ...] = ()) -> float:
    return sum(p.cpu for p in procs.values() if p.role not in exclude_roles)


def cpu_by_role(before: dict[int, Proc], after: dict[int, Proc]) -> dict[str, float]:
    """CPU seconds spent per role between two snapshots (children reaped in between included)."""
    roles: dict[str, float] = {}
    for procs, sign in ((after, 1.0), (before, -1.0)):
        for p in procs.values():
            roles[p.role] = roles.get(p.role, 0.0) + sign * p.cpu
    return roles


def long_lived(before: dict[int, Proc], after: dict[int, Proc]) -> list[Proc]:
    """Processes present in both snapshots (transient ``git`` children are not)."""
    keys = {p.key for p in before.values()}
    return sorted((p for p in after.values() if p.key in keys), key=lambda p: p.pid)


def label(p: Proc) -> str:
    """A short name for a report line: ``poller: hotreload poller``."""
    what = p.cmdline or p.comm
    for prefix in (str(Path(sys.executable).parent) + "/", "/usr/bin/"):
        what = what.replace(prefix, "")
    what = what.replace("python3 honcho", "honcho").replace("python3 hotreload", "hotreload")
    return f"{p.role}: {what[:60]}"
