"""The user's commands of ``hotreload``: status, jobs, logs, run, sync.

They read and steer the running stack through Redis, so they work from any shell of the
container. A failure (Redis unreachable, an unknown run) is one line on stderr and a
non-zero exit, never a traceback::

    hotreload status [--json]     hotreload jobs [--limit N]     hotreload logs RUN
    hotreload run pre|post        hotreload sync
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import redis

from producer.redis_label import redis_label
from producer.settings import Settings
from producer.steering import STEERING
from producer.steering import add_arguments as add_steering_arguments
from producer.tool_error import ToolError
from workers.contract import JobKind, wake_poller
from workers.redis_connection import connect as redis_client

EXIT_FAILED = 1


def connect(settings: Settings) -> redis.Redis:
    """A Redis connection that answered a PING, or ToolError naming where Redis was looked for."""
    connection = redis_client(settings.redis_url_effective)
    try:
        connection.ping()
    except redis.RedisError as exc:
        raise ToolError(
            f"cannot reach Redis at {redis_label(settings.redis_url_effective)} ({type(exc).__name__}); "
            "is the stack running? (honcho start, or set REDIS_URL)"
        ) from None
    return connection


def _when(seconds: Any) -> str:
    from producer.status import iso

    return iso(seconds) or "-"


def cmd_status(settings: Settings, connection: redis.Redis, args: argparse.Namespace) -> int:
    from producer.failure_report import status_with_failure
    from producer.status import render_table

    status = status_with_failure(connection, settings)
    print(json.dumps(status, indent=2) if args.json else render_table(status))
    return 0


def cmd_jobs(settings: Settings, connection: redis.Redis, args: argparse.Namespace) -> int:
    from producer.runs import recent_runs

    runs = recent_runs(connection, settings.keys, limit=args.limit)
    if not runs:
        print("No runs yet.")
        return 0
    header = ("RUN", "KIND", "COMMIT", "OUTCOME", "EXIT", "STARTED", "DURATION", "INSTANCE")
    rows = [
        (
            run.id,
            run.kind,
            run.commit[:7] or "-",
            run.outcome,
            "-" if run.exit_code is None else str(run.exit_code),
            _when(run.started_at),
            "-" if run.duration is None else f"{float(run.duration):.2f}s",
            run.instance or "-",
        )
        for run in runs
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_logs(settings: Settings, connection: redis.Redis, args: argparse.Namespace) -> int:
    from producer.runs import UnknownRun, find_run

    try:
        run = find_run(connection, settings.keys, args.run)
    except UnknownRun as exc:
        raise ToolError(str(exc)) from None
    exit_text = "" if run.exit_code is None else f", exit code {run.exit_code}"
    print(f"== {run.id}: {run.description} [{run.outcome}{exit_text}]", file=sys.stderr, flush=True)
    for line in run.output:
        print(line)
    if not run.output:
        print("(no output kept for this run)", file=sys.stderr)
    return 0


def cmd_run(settings: Settings, connection: redis.Redis, args: argparse.Namespace) -> int:
    from producer import manual_run

    kind = JobKind.PRE if args.job == "pre" else JobKind.POST
    return manual_run.run_now(settings, connection, kind)


def cmd_sync(settings: Settings, connection: redis.Redis, args: argparse.Namespace) -> int:
    wake_poller(connection, settings.keys, "sync")
    print(f"Sync requested: the poller of instance {settings.keys.instance} looks at the remote now.")
    return 0


def cmd_why(settings: Settings, connection: redis.Redis, args: argparse.Namespace) -> int:
    from pathlib import Path

    from producer.failure_report import failure_report, render_failure

    report = failure_report(
        connection, settings.keys, args.commit, Path(settings.WORKSPACE_PATH), settings.secret_values()
    )
    if report is None:
        what = f"commit {args.commit}" if args.commit else "this deployment"
        print(f"No failed PRE_DEPLOY to explain for {what}.")
        return 0
    print(render_failure(report))
    return 0


Handler = Callable[[Settings, redis.Redis, argparse.Namespace], int]


def run_tool(settings: Settings, handler: Handler, args: argparse.Namespace) -> int:
    """Connect, run the command, and turn every expected failure into one line."""
    try:
        return handler(settings, connect(settings), args)
    except ToolError as exc:
        print(f"hotreload: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    except redis.RedisError as exc:
        print(
            f"hotreload: Redis failed during the command ({type(exc).__name__})", file=sys.stderr, flush=True
        )
        return EXIT_FAILED


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    if name == "status":
        parser.add_argument("--json", action="store_true", help="print the status as JSON (as GET /status)")
    elif name == "jobs":
        parser.add_argument("--limit", type=int, default=20, help="how many runs to list (default 20)")
    elif name == "logs":
        parser.add_argument(
            "run", metavar="RUN", help="a run id from `hotreload jobs` (or a unique part of one)"
        )
    elif name == "why":
        parser.add_argument(
            "commit", metavar="COMMIT", nargs="?", help="a commit (default: the last failed one)"
        )
    elif name == "pin":
        add_steering_arguments(name, parser)
    elif name == "run":
        parser.add_argument("job", choices=["pre", "post"], help="which configured job to run now")


#: Handlers by command name; their help texts are in producer.cli (kept light to import).
TOOLS: dict[str, Handler] = {
    **STEERING,
    "status": cmd_status,
    "jobs": cmd_jobs,
    "logs": cmd_logs,
    "run": cmd_run,
    "sync": cmd_sync,
    "why": cmd_why,
}
