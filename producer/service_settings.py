"""The running services: Redis, the health server, replicas, job limits, rq-dashboard and logging."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from producer.config_types import (
    Flag,
    Host,
    Identifier,
    LogLevel,
    OutputLines,
    Port,
    RedisUrl,
    Scope,
    Seconds,
    Secret,
    Text,
)


class ServiceSettings(BaseModel):
    """REDIS_URL and ports, the health server and webhook, replica names, job limits, dashboard, log level."""

    model_config = ConfigDict(frozen=True)

    REDIS_URL: RedisUrl | None = Field(
        default=None,
        description="External Redis (redis://, rediss:// or unix://); unset: start an embedded redis-server",
    )
    HOTRELOAD_REDIS_PORT: Port = Field(
        default=6379, description="Port of the embedded redis-server (REDIS_URL unset)"
    )
    ENABLE_DEV_HEALTH: Flag = Field(default=True, description="Serve the health and status HTTP endpoints")
    DEV_HEALTH_PORT: Port = Field(default=9090, description="Port of the health and status HTTP server")
    WEBHOOK_SECRET: Secret | None = Field(
        default=None,
        description="Secret of the push webhooks /webhook/github, /gitlab, /gitea, /bitbucket (unset: disabled)",
    )
    GITHUB_WEBHOOK_SECRET: Secret | None = Field(
        default=None, description="Former name of WEBHOOK_SECRET, still read when WEBHOOK_SECRET is unset"
    )
    INSTANCE_ID: Identifier | None = Field(
        default=None, description="Name of this replica, 1-64 of [A-Za-z0-9._-] (unset: the host name)"
    )
    DEPLOYMENT_ID: Identifier | None = Field(
        default=None,
        description="Name shared by all replicas, 1-64 of [A-Za-z0-9._-] (unset: hash of repo/branch/folder)",
    )
    POST_DEPLOY_SCOPE: Scope = Field(
        default="once",
        description="once: one replica runs POST_DEPLOY per commit; each: every replica runs it",
    )
    RETRY_BACKOFF_MAX: Seconds = Field(
        default=600.0, description="Cap in seconds of the back-off between retries of a failed PRE_DEPLOY"
    )
    JOB_OUTPUT_MAX_LINES: OutputLines = Field(default=1000, description="Lines of output kept per job run")
    KILL_GRACE: Seconds = Field(
        default=3.0, description="Seconds between SIGTERM and SIGKILL when a job is stopped"
    )
    ENABLE_RQ_DASHBOARD: Flag = Field(
        default=False,
        description="Run rq-dashboard (the Procfile's dashboard process; about 45 MB of memory)",
    )
    RQ_DASHBOARD_BIND: Host = Field(default="127.0.0.1", description="Address rq-dashboard listens on")
    RQ_DASHBOARD_PORT: Port = Field(default=9181, description="Port of rq-dashboard")
    RQ_DASHBOARD_USERNAME: Text | None = Field(
        default=None, description="User name of rq-dashboard's basic auth"
    )
    RQ_DASHBOARD_PASSWORD: Secret | None = Field(
        default=None, description="Password of rq-dashboard's basic auth"
    )
    LOG_LEVEL: LogLevel = Field(default="info", description="Log level: debug, info, warning or error")

    @property
    def embedded_redis(self) -> bool:
        """Whether hotreload starts its own redis-server (REDIS_URL unset)."""
        return self.REDIS_URL is None

    @property
    def redis_url_effective(self) -> str:
        if self.REDIS_URL is not None:
            return self.REDIS_URL
        return f"redis://127.0.0.1:{self.HOTRELOAD_REDIS_PORT}/0"

    @property
    def webhook_secret(self) -> str | None:
        """WEBHOOK_SECRET, or GITHUB_WEBHOOK_SECRET (its former name); None: no webhook endpoint."""
        secret = self.WEBHOOK_SECRET or self.GITHUB_WEBHOOK_SECRET
        return secret.get_secret_value() if secret is not None else None

    @property
    def instance_id(self) -> str:
        return self.INSTANCE_ID or socket.gethostname()

    def port_problems(self) -> list[str]:
        """Two services set to listen on the same port."""
        used: list[tuple[str, int]] = []
        if self.embedded_redis:
            used.append(("HOTRELOAD_REDIS_PORT", self.HOTRELOAD_REDIS_PORT))
        if self.ENABLE_DEV_HEALTH:
            used.append(("DEV_HEALTH_PORT", self.DEV_HEALTH_PORT))
        used.append(("RQ_DASHBOARD_PORT", self.RQ_DASHBOARD_PORT))
        problems = []
        for index, (name, port) in enumerate(used):
            for other, other_port in used[:index]:
                if port == other_port:
                    problems.append(f"{name}: is the same port as {other} ({port})")
                    break
        return problems


def pairing_problems(values: Mapping[str, Any]) -> list[str]:
    """rq-dashboard's user name and password come in pairs; the webhook secret's two names agree."""
    problems = []
    new, old = values.get("WEBHOOK_SECRET"), values.get("GITHUB_WEBHOOK_SECRET")
    if new is not None and old is not None and new != old:
        problems.append(
            "GITHUB_WEBHOOK_SECRET: differs from WEBHOOK_SECRET (its new name): set only WEBHOOK_SECRET"
        )
    for name, other in (
        ("RQ_DASHBOARD_PASSWORD", "RQ_DASHBOARD_USERNAME"),
        ("RQ_DASHBOARD_USERNAME", "RQ_DASHBOARD_PASSWORD"),
    ):
        if name in values and other not in values:
            problems.append(f"{name}: set without {other}")
    return problems
