"""Carry the output of a finished job's background processes to the container log.

A POST_DEPLOY may leave a queue worker running. Its stdout is the job's pipe, and the
work horse stops reading it when the job ends; a process writing to a pipe nobody reads
dies of SIGPIPE. So when the job's shell exits while the pipe still has writers,
``run_shell`` hands the pipe's read end to this relay: a small process that prints each
line with the job's prefix and secrets masked, until every writer is gone (EOF)::

    relay = start_relay(read_fd, sys.stdout.fileno(), run_id=job_id, prefix="[POST-DEPLOY]",
                        secrets=["..."], process_group=worker_pgid)

The relay carries the job's ``HOTRELOAD_RUN_ID``, so ``kill_run`` finds it with the job's
other leftovers; it ignores SIGTERM and SIGINT (it ends at EOF, once those writers are
killed, so their last words still reach the log). Secrets reach it through its
environment, never its arguments. Lines are cut, masked and prefixed as the job's own
output is: ``run_shell`` uses the helpers below too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

#: A line longer than this many bytes is cut into pieces rather than buffered without end.
MAX_LINE_BYTES = 65536
PREFIX_VAR = "HOTRELOAD_RELAY_PREFIX"
SECRETS_VAR = "HOTRELOAD_RELAY_SECRETS"
_MARKER_VAR = "HOTRELOAD_RUN_ID"  # workers.process_tree.MARKER_VAR; this module stays stdlib-only


def ordered_secrets(secrets: Iterable[str]) -> list[str]:
    """Non-empty secrets, longest first, so a secret containing another one is masked whole."""
    return sorted({s for s in secrets if s}, key=len, reverse=True)


def mask(text: str, secrets: list[str]) -> str:
    """``text`` with every secret of ``ordered_secrets`` replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def with_prefix(text: str, prefix: str) -> str:
    # Scripts that follow the guide already print "[PRE-DEPLOY] ...": don't say it twice.
    return text if not prefix or text.startswith(prefix) else f"{prefix} {text}"


def _decode(raw: bytes) -> str:
    line = raw.decode("utf-8", errors="replace")
    return line[:-1] if line.endswith("\r") else line


class LineSplitter:
    """Cuts a byte stream into decoded lines (``\\n``, a trailing ``\\r`` dropped, at most MAX_LINE_BYTES)."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[str]:
        self.buffer += data
        lines = []
        while (end := self.buffer.find(b"\n")) >= 0:
            lines.append(_decode(bytes(self.buffer[:end])))
            del self.buffer[: end + 1]
        while len(self.buffer) > MAX_LINE_BYTES:
            lines.append(_decode(bytes(self.buffer[:MAX_LINE_BYTES])))
            del self.buffer[:MAX_LINE_BYTES]
        return lines

    def rest(self) -> list[str]:
        """What is left without a newline at EOF."""
        rest, self.buffer = self.buffer, bytearray()
        return [_decode(bytes(rest))] if rest else []


def start_relay(
    read_fd: int,
    out_fd: int,
    *,
    run_id: str,
    prefix: str,
    secrets: Iterable[str],
    process_group: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start the relay reading ``read_fd`` and writing to ``out_fd``; the caller closes its own ``read_fd``.

    ``process_group``: the group to join (default: the caller's), e.g. the worker's, so
    that a stop signal to the worker's group reaches the relay too.
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        _MARKER_VAR: run_id,
        PREFIX_VAR: prefix,
        SECRETS_VAR: json.dumps(ordered_secrets(secrets)),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "workers.output_relay"],
        stdin=read_fd,
        stdout=out_fd,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd="/",
        process_group=process_group,
    )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


#: Relays started by this process (kept so that none is garbage-collected while it runs).
_relays: list[subprocess.Popen[bytes]] = []


def hand_over(
    read_fd: int, stream: TextIO, run_id: str, prefix: str, secrets: list[str], group: int | None
) -> str | None:
    """Start a relay from ``read_fd`` to ``stream``'s descriptor (stdout if it has none); None, or what went wrong."""
    try:
        out_fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.StringIO and the like
        out_fd = sys.stdout.fileno()
    try:
        process = start_relay(
            read_fd, out_fd, run_id=run_id, prefix=prefix, secrets=secrets, process_group=group
        )
    except OSError as exc:
        return f"WARNING: the output of the job's background processes is lost: {exc}"
    _relays.append(process)
    return None


def relay(read_fd: int, out_fd: int, prefix: str, secrets: list[str]) -> None:
    """Copy lines from ``read_fd`` to ``out_fd``, prefixed and masked, until EOF (or the log is gone)."""
    splitter = LineSplitter()
    while True:
        data = os.read(read_fd, 65536)
        lines = splitter.feed(data) if data else splitter.rest()
        if lines:
            text = "".join(f"{with_prefix(mask(line, secrets), prefix)}\n" for line in lines)
            try:
                _write_all(out_fd, text.encode("utf-8"))
            except BrokenPipeError:
                return  # the container log is gone: the stack has stopped
        if not data:
            return


def main() -> int:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    secrets = [str(s) for s in json.loads(os.environ.get(SECRETS_VAR) or "[]")]
    relay(0, 1, os.environ.get(PREFIX_VAR, ""), secrets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
