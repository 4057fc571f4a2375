"""The ``app`` process of the Procfile: DEV_START_COMMAND behind the boot gate.

It starts the app only once the poller says the boot PRE_DEPLOY succeeded, keeps the
container up when the app exits (so it can be debugged), and starts it again when the
next commit is deployed; it restarts it on every deploy with DEV_RESTART_ON_DEPLOY, and after
a deploy whose commit changed DEV_RESTART_WHEN_CHANGED's paths (``deployed <sha> restart``,
as the planner decided)::

    AppSupervisor(settings).run()

The gate is a question, not a flag: at start the supervisor clears its event list and
asks the poller (``gate`` on the poller's command list); only the live poller answers,
so a gate left open by an earlier boot can never start the app early.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time

import redis

from producer.settings import Settings
from producer.stop_signal import Stop, raise_stop_on_signals
from workers.contract import wake_poller
from workers.process_tree import kill_run
from workers.redis_connection import blpop, connect

APP_RUN_ID = "app"
#: The app's exit wakes the loop at once (``_watch``); this is only the fallback wait. Waking
#: every second instead cost an idle stack a Redis round trip per second (python -m bench).
EVENT_WAIT = 30


def say(message: str) -> None:
    print(f"[APP] {message}", flush=True)


class AppSupervisor:
    """Runs DEV_START_COMMAND in the app folder once the gate opens."""

    def __init__(self, settings: Settings, connection: redis.Redis | None = None):
        self.settings = settings
        self.keys = settings.keys
        self.connection = connection or connect(settings.redis_url_effective)
        self.command = settings.DEV_START_COMMAND
        self.process: subprocess.Popen[bytes] | None = None
        # Unique per supervisor process: stopping this app must never stop the app of another
        # stack on the same host that happens to use the same DEPLOYMENT_ID and INSTANCE_ID.
        self.run_id = f"{APP_RUN_ID}-{self.keys.deployment}-{self.keys.instance}-{os.getpid()}"
        self.grace = float(settings.KILL_GRACE)

    def start_app(self, commit: str) -> None:
        cwd = self.settings.app_dir
        say(f"Starting DEV_START_COMMAND for commit {commit[:7]} in {cwd}: {self.command}")
        env = {**os.environ, "DEPLOY_COMMIT_SHA": commit, "HOTRELOAD_RUN_ID": self.run_id}
        self.process = subprocess.Popen(
            ["bash", "-c", self.command or ""],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        threading.Thread(target=self._watch, args=(self.process,), name="app-exit", daemon=True).start()

    def _watch(self, process: subprocess.Popen[bytes]) -> None:
        """Wake the loop as soon as the app exits, so it need not poll for it."""
        process.wait()
        with contextlib.suppress(redis.RedisError):  # the loop's outage handling looks itself
            self.connection.rpush(self.keys.app_events, "exited")
            self.connection.expire(self.keys.app_events, 3600)

    def stop_app(self) -> None:
        if self.process is None:
            return
        kill_run(self.run_id, pgid=self.process.pid, grace=self.grace)
        self.process.wait()
        self.process = None

    def check_exit(self) -> None:
        if self.process is not None and (code := self.process.poll()) is not None:
            say(
                f"DEV_START_COMMAND exited with code {code}; the container stays up. "
                "The app starts again when the next commit is deployed."
            )
            self.process = None

    def handle(self, event: str) -> None:
        verb, _, rest = event.partition(" ")
        commit, _, flag = rest.partition(" ")
        if verb not in ("start", "deployed"):
            return
        if self.process is not None and verb == "deployed":
            if self.settings.DEV_RESTART_ON_DEPLOY:
                say(f"Restarting the app for commit {commit[:7]} (DEV_RESTART_ON_DEPLOY)")
                self.stop_app()
            elif flag == "restart":
                say(
                    f"Restarting the app for commit {commit[:7]}: it changes "
                    f"{self.settings.DEV_RESTART_WHEN_CHANGED} (DEV_RESTART_WHEN_CHANGED)"
                )
                self.stop_app()
        if self.process is None:
            self.start_app(commit)

    def run(self) -> int:
        raise_stop_on_signals()
        try:
            if not self.command:
                say(
                    "No DEV_START_COMMAND set: set it to the command that starts your app "
                    "(e.g. 'npm run dev'). Staying up so jobs keep running."
                )
            self.loop()
        except Stop:
            pass
        finally:
            self.stop_app()
        return 0

    def loop(self) -> None:
        asked = False
        while True:
            try:
                if not asked:
                    self.connection.delete(self.keys.app_events)
                    wake_poller(self.connection, self.keys, "gate")
                    asked = True
                item = blpop(self.connection, [self.keys.app_events], timeout=EVENT_WAIT)
                self.check_exit()
                if item is not None and self.command:
                    self.handle(item[1].decode() if isinstance(item[1], bytes) else str(item[1]))
            except redis.RedisError:
                # Keep the app running through a Redis outage; ask the gate again when it is back.
                time.sleep(1)
                self.check_exit()
