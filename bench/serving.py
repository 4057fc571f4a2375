"""What a user waits for: push to the app serving the new commit, and the commits a branch absorbs.

The app of these stacks answers every request with its checkout's commit (``git rev-parse
HEAD`` in the app folder, as the demo app does), so "serving the new commit" is what a
browser would see. Pushes are announced with a signed webhook, so the poll interval does
not blur the strategies' difference::

    figures = serving_figures(root, remote, server, trials=10, commits=20)

- Push to serving, per ``DEPLOY_STRATEGY`` and a PRE_DEPLOY of 0 s and 2 s: in-place the
  workspace moves before PRE_DEPLOY (the app serves the commit before its migration ends);
  staged it moves after.
- Commits per minute a branch absorbs when 9 commits in 10 change only ``src/`` and one
  adds a migration, with a 2 s PRE_DEPLOY, with and without
  ``PRE_DEPLOY_WHEN_CHANGED=migrations/``: each commit is pushed once the previous one is
  live (each deploys on its own; none is merged into a later one).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path

from bench.deploys import Deploys, launch
from bench.latency import WEBHOOK_SECRET, send_webhook
from bench.report import Figure
from bench.stack import GitRemote, RedisServer, free_port, wait_until

APP = """import http.server, os, subprocess


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        body = head.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["BENCH_APP_PORT"])), Handler).serve_forever()
"""
PRE_SLEEP = 'echo "$(date +%s.%N) $DEPLOY_COMMIT_SHA" >> "$BENCH_MARKS"; sleep "$BENCH_PRE_SECONDS"'
#: Share of absorbed commits that add a migration (the others change only src/).
MIGRATION_EVERY = 10


def served(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as answer:
            return str(answer.read().decode().strip())
    except (urllib.error.URLError, OSError):
        return None


def _served_at(port: int, sha: str) -> float | None:
    return time.time() if served(port) == sha else None


def _launch(root: Path, name: str, remote: GitRemote, server: RedisServer, **env: str) -> tuple[Deploys, int]:
    port = free_port()
    app = root / "serving_app.py"
    app.write_text(APP)
    d = launch(
        root,
        name,
        remote,
        server,
        GITHUB_SYNC_INTERVAL="30",
        GITHUB_WEBHOOK_SECRET=WEBHOOK_SECRET,
        PRE_DEPLOY_COMMAND=PRE_SLEEP,
        DEV_START_COMMAND=f"exec python3 {app}",
        BENCH_APP_PORT=str(port),
        **env,
    )
    try:
        wait_until(lambda: served(port) == remote.head(), 30, "the app to answer", 0.02)
    except BaseException:
        d.stop()
        raise
    return d, port


def _push(d: Deploys, remote: GitRemote, files: dict[str, str] | None = None) -> tuple[str, float]:
    sha = remote.commit(files, push=False)
    pushed = remote.push()
    send_webhook(int(d.stack.env["DEV_HEALTH_PORT"]), WEBHOOK_SECRET, remote.branch, sha)
    return sha, pushed


def push_to_serving(d: Deploys, port: int, remote: GitRemote, trials: int) -> list[float]:
    """Seconds from ``git push`` returning to the app's first answer with the pushed commit."""
    values = []
    for _ in range(trials):
        wait_until(lambda: d.idle_at(remote.head()), 30, "the stack to be idle", 0.01)
        sha, pushed = _push(d, remote)
        at = wait_until(partial(_served_at, port, sha), 30, f"{sha[:7]} served", 0.005)
        values.append(at - pushed)
    return values


def absorbed_per_minute(d: Deploys, remote: GitRemote, commits: int) -> float:
    """Commits made live per minute when each is pushed as soon as the previous one is live."""
    start = time.time()
    for index in range(commits):
        if index % MIGRATION_EVERY == MIGRATION_EVERY - 1:
            files = {f"migrations/{remote.counter:04d}.sql": "alter table t add column c int;\n"}
        else:
            files = {"src/app.js": f"export const build = {remote.counter};\n"}
        sha, _ = _push(d, remote, files)
        d.wait_deployed(sha, 60)
    return commits / (time.time() - start) * 60


def serving_figures(
    root: Path, remote: GitRemote, server: RedisServer, trials: int, commits: int
) -> list[Figure]:
    figures = []
    for strategy in ("in-place", "staged"):
        for seconds in ("0", "2"):
            name = f"serving-{strategy}-{seconds}"
            d, port = _launch(root, name, remote, server, DEPLOY_STRATEGY=strategy, BENCH_PRE_SECONDS=seconds)
            try:
                values = push_to_serving(d, port, remote, trials)
            finally:
                d.stop()
            when = "before its PRE_DEPLOY ends" if strategy == "in-place" else "after its PRE_DEPLOY passed"
            figures.append(
                Figure(
                    f"push_to_serving_{strategy.replace('-', '_')}_pre_{seconds}s",
                    f"Push to the app serving the commit, {strategy}, PRE_DEPLOY {seconds} s (webhook)",
                    "s",
                    values,
                    template="as in-place: git pull before PRE_DEPLOY",
                    details={"strategy": strategy, "pre_deploy_seconds": int(seconds), "served": when},
                )
            )
    for watched in ("", "migrations/"):
        extra = {"PRE_DEPLOY_WHEN_CHANGED": watched} if watched else {}
        d, _ = _launch(
            root, f"absorb-{'filtered' if watched else 'all'}", remote, server, BENCH_PRE_SECONDS="2", **extra
        )
        try:
            rate = absorbed_per_minute(d, remote, commits)
        finally:
            d.stop()
        label = "PRE_DEPLOY_WHEN_CHANGED=migrations/" if watched else "every commit runs PRE_DEPLOY"
        figures.append(
            Figure(
                f"absorbed_commits_per_minute_{'filtered' if watched else 'all'}",
                f"Commits per minute absorbed, 9 in 10 source-only, PRE_DEPLOY 2 s, {label}",
                "commits/min",
                [rate],
                template="as the first row: every commit runs every job",
                details={"commits": commits, "migration_every": MIGRATION_EVERY},
                single=True,
            )
        )
    return figures
