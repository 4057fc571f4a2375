"""``hotreload dashboard``: rq-dashboard on the deploy queues, when ENABLE_RQ_DASHBOARD is true.

rq-dashboard reads its options from ``RQ_DASHBOARD_*`` environment variables, so the
Redis URL (which may hold a password) and the basic-auth password go to it through the
environment, never through its arguments (visible to every user in ``ps``). It listens
on RQ_DASHBOARD_BIND (default 127.0.0.1, not rq-dashboard's own 0.0.0.0) and
RQ_DASHBOARD_PORT (default 9181)::

    hotreload dashboard          # the Procfile's `dashboard` process

It costs about 45 MB of resident memory, so it is off by default; when off, the Procfile
process idles in ``sleep`` (honcho stops every process when one exits).
"""

from __future__ import annotations

import os
import shutil
import sys

from producer.settings import Settings
from workers.console import say

#: What rq-dashboard would read from our own environment; everything it gets is set here.
_OWN = (
    "RQ_DASHBOARD_REDIS_URL",
    "RQ_DASHBOARD_USERNAME",
    "RQ_DASHBOARD_PASSWORD",
    "RQ_DASHBOARD_SETTINGS",
    "RQ_DASHBOARD_DEBUG",  # Flask debug mode would serve an interactive debugger
)


_KEEP_RUNNING = 'while :; do "$@"; echo "[WARN] rq-dashboard exited with code $?; starting it again in 10s"; sleep 10; done'


def dashboard_env(settings: Settings, environ: dict[str, str]) -> dict[str, str]:
    """The environment rq-dashboard runs with: our settings, as its own variables."""
    env = {k: v for k, v in environ.items() if k not in _OWN}
    env["RQ_DASHBOARD_REDIS_URL"] = settings.redis_url_effective
    env["RQ_DASHBOARD_BIND"] = settings.RQ_DASHBOARD_BIND
    env["RQ_DASHBOARD_PORT"] = str(settings.RQ_DASHBOARD_PORT)
    if settings.RQ_DASHBOARD_USERNAME and settings.RQ_DASHBOARD_PASSWORD is not None:
        env["RQ_DASHBOARD_USERNAME"] = settings.RQ_DASHBOARD_USERNAME
        env["RQ_DASHBOARD_PASSWORD"] = settings.RQ_DASHBOARD_PASSWORD.get_secret_value()
    return env


def run_dashboard(settings: Settings) -> int:
    if not settings.ENABLE_RQ_DASHBOARD:
        say("[INFO] rq-dashboard is off (set ENABLE_RQ_DASHBOARD=true to run it)")
        os.execvp("sleep", ["sleep", "infinity"])
    auth = (
        "basic auth on" if settings.RQ_DASHBOARD_USERNAME else "no auth: set RQ_DASHBOARD_USERNAME/_PASSWORD"
    )
    say(f"[INFO] rq-dashboard on http://{settings.RQ_DASHBOARD_BIND}:{settings.RQ_DASHBOARD_PORT}/ ({auth})")
    env = dashboard_env(settings, dict(os.environ))
    program = shutil.which(
        "rq-dashboard", path=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    )
    command = [program] if program else [sys.executable, "-m", "rq_dashboard"]
    # honcho stops the whole stack when one process exits: a dashboard that dies (its port taken)
    # must not take the deploys down with it, so a 2 MB shell starts it again instead.
    os.execve("/bin/sh", ["/bin/sh", "-c", _KEEP_RUNNING, "rq-dashboard", *command], env)
    return 1  # not reached
