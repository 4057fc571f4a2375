"""The ``hotreload`` command: the Procfile's processes and the user's tools.

    hotreload poller | worker | app | redis | dashboard   # what the Procfile runs
    hotreload status | jobs | logs RUN | run pre|post | sync   # see and steer a running stack
    hotreload demo                             # a local example app and the whole stack

Bad configuration exits with code 2 and one line per problem; heavy modules are imported
only by the sub-command that needs them, so each process stays small.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from producer.redis_label import redis_label
from workers.console import say

if TYPE_CHECKING:
    from producer.settings import Settings

EXIT_CONFIG = 2
#: The poller's Procfile peers report bad configuration only after this pause: under honcho
#: the poller has printed the problems and exited by then, and honcho stops the peers, so
#: each problem shows once instead of once per process. Run alone, they report it late.
PEER_REPORT_DELAY = 2.0
PROCFILE_PEERS = frozenset({"worker", "app", "redis", "dashboard"})
_running: dict[str, str] = {"command": ""}


def load() -> Settings:
    from producer.settings import ConfigError, load_settings

    try:
        return load_settings()
    except ConfigError as exc:
        if _running["command"] in PROCFILE_PEERS:
            time.sleep(PEER_REPORT_DELAY)
        for problem in exc.problems:
            print(f"hotreload: configuration error: {problem}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_CONFIG) from None


def wait_for_redis(settings: Settings) -> None:
    import redis

    from workers.redis_connection import connect

    connection = connect(settings.redis_url_effective)
    delay, announced = 0.1, False
    while True:
        try:
            connection.ping()
            return
        except redis.RedisError:
            if not announced:
                say(f"[INFO] Waiting for Redis at {redis_label(settings.redis_url_effective)}")
                announced = True
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def cmd_poller(args: argparse.Namespace) -> int:
    settings = load()
    server = None
    if settings.ENABLE_DEV_HEALTH:
        # First, before anything slow: the platform probes health from the first second.
        from producer.http_server import HotreloadHTTPServer

        state = {"state": "starting"}
        try:
            server = HotreloadHTTPServer(settings.DEV_HEALTH_PORT, lambda: dict(state))
        except OSError as exc:  # in use, or not ours to bind: a setting to change, not a crash
            print(
                f"hotreload: configuration error: DEV_HEALTH_PORT: cannot listen on port "
                f"{settings.DEV_HEALTH_PORT}: {exc.strerror or exc}",
                file=sys.stderr,
                flush=True,
            )
            return EXIT_CONFIG
        server.start()
        metrics = attach_endpoints(server, settings, lambda: poller)
    poller = None
    if not settings.GITHUB_REPO_URL:
        say(
            "[INFO] No GITHUB_REPO_URL set: set it to your app's git repository "
            "(and DEV_START_COMMAND to start the app). Staying up; nothing to sync."
        )
        _pause()
        return 0
    wait_for_redis(settings)
    from producer.poller import Poller

    poller = Poller(settings, metrics=metrics if server is not None else None)
    if server is not None:
        server.attach(state=poller.health)
    return poller.run()


def attach_endpoints(server: Any, settings: Settings, poller: Callable[[], Any]) -> Any:
    """/status, /metrics and (with WEBHOOK_SECRET) /webhook/<host> for each host; Redis is reached lazily."""
    from producer.failure_report import status_with_failure
    from producer.metrics import Metrics
    from producer.webhook import HOSTS, PushWebhook
    from workers.contract import wake_poller
    from workers.redis_connection import connect

    connection = connect(settings.redis_url_effective)
    keys = settings.keys
    metrics = Metrics(connection, keys)
    secret = settings.webhook_secret

    def branch() -> str | None:
        current = poller()
        return (current.checkout.branch if current is not None else None) or settings.GITHUB_BRANCH

    def wake() -> None:
        wake_poller(connection, keys, "sync")

    webhooks = (
        {name: PushWebhook(host, secret, branch, wake) for name, host in HOSTS.items()} if secret else {}
    )
    server.attach(
        status=lambda: status_with_failure(connection, settings), metrics=metrics, webhooks=webhooks
    )
    return metrics


def _pause() -> None:
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        signal.pause()


def cmd_worker(args: argparse.Namespace) -> int:
    settings = load()
    wait_for_redis(settings)
    from workers.worker import run_worker

    run_worker(
        settings.redis_url_effective,
        settings.keys,
        settings.secret_values(),
        max_output_lines=settings.JOB_OUTPUT_MAX_LINES,
        kill_grace=float(settings.KILL_GRACE),
        log_level="DEBUG" if settings.LOG_LEVEL.lower() == "debug" else "WARNING",
    )
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    settings = load()
    wait_for_redis(settings)
    from producer.app import AppSupervisor

    return AppSupervisor(settings).run()


def cmd_redis(args: argparse.Namespace) -> int:
    settings = load()
    if not settings.embedded_redis:
        # honcho stops every process when one exits, so this one idles instead.
        os.execvp("sleep", ["sleep", "infinity"])
    server = shutil.which("redis-server")
    if server is None:
        print("hotreload: redis-server not found: install it (apt-get install redis-server) or set REDIS_URL")
        return 1
    port = str(settings.HOTRELOAD_REDIS_PORT)
    os.execv(
        server,
        [
            server,
            "--port",
            port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--loglevel",
            "warning",
        ],
    )
    return 1  # not reached


def cmd_dashboard(args: argparse.Namespace) -> int:
    settings = load()
    from producer.dashboard import run_dashboard

    return run_dashboard(settings)


def _tool(name: str) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        from producer.tools import TOOLS, run_tool

        return run_tool(load(), TOOLS[name], args)

    return handler


def cmd_demo(args: argparse.Namespace) -> int:
    from producer.demo import run_demo

    return run_demo(args)


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "poller": (cmd_poller, "follow the branch and enqueue deploy jobs (Procfile)"),
    "worker": (cmd_worker, "run the deploy jobs of this instance (Procfile)"),
    "app": (cmd_app, "start DEV_START_COMMAND once the boot PRE_DEPLOY succeeded (Procfile)"),
    "redis": (cmd_redis, "run the private redis-server when REDIS_URL is unset (Procfile)"),
    "dashboard": (cmd_dashboard, "run rq-dashboard when ENABLE_RQ_DASHBOARD is true (Procfile)"),
    "demo": (cmd_demo, "create a local example app repository and run the whole stack on it"),
}
# The user's commands, run by producer.tools.
for _name, _help in (
    ("status", "show the deploy state: commits, current state, last runs, retries"),
    ("jobs", "list recent job runs, newest first"),
    ("logs", "print the kept output of a job run"),
    ("run", "run PRE_DEPLOY or POST_DEPLOY now, on this instance's worker, as the container would"),
    ("sync", "ask the running poller to look at the remote now (and retry a cancelled PRE_DEPLOY)"),
    ("why", "why the last failed deploy (or COMMIT) failed: job, attempt, error, output, files changed"),
    ("pause", "stop automatic deploys of the deployment (every replica); the poller still fetches"),
    ("resume", "deploy automatically again (the waiting head deploys)"),
    ("pin", "deploy REF (commit, tag or branch) with the usual jobs and hold it until unpinned"),
    ("unpin", "follow the branch head again"),
    ("rollback", "deploy the last good commit before the current one (DEPLOY_ROLLBACK=1) and pin it"),
    ("cancel", "stop the running job with its process tree; a cancelled PRE_DEPLOY is not retried"),
):
    COMMANDS[_name] = (_tool(_name), _help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hotreload", description="Deploy runner for dev and test branches.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == "demo":
            p.add_argument(
                "--dir", default=None, help="where to create the demo (default: a new temp folder)"
            )
            p.add_argument("--interval", default="2", help="GITHUB_SYNC_INTERVAL for the demo (default 2)")
        elif name in ("status", "jobs", "logs", "run", "pin", "why"):
            from producer.tools import add_arguments

            add_arguments(name, p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler, _ = COMMANDS[args.command]
    _running["command"] = args.command
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
