"""The job kinds' settings: PRE_DEPLOY, POST_DEPLOY and FAILED_DEPLOY, each COMMAND/FOLDER/REPO_URL/TIMEOUT.

:class:`JobSettings` holds the twelve flat environment variables (``PRE_DEPLOY_COMMAND``,
...); :class:`JobConfig` is the model of one kind built from them, validated with the
same types, and what the rest of hotreload reads (``settings.job(JobKind.PRE)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.dataclasses import dataclass

from producer.config_types import Folder, GitUrl, Pathspecs, Text, TimeoutSeconds, split_list
from workers.contract import JobKind

JOB_PREFIXES = tuple(kind.value for kind in JobKind)
#: The job kinds' repository variables, which may hold a token.
JOB_URL_FIELDS = tuple(f"{prefix}_REPO_URL" for prefix in JOB_PREFIXES)
DEFAULT_TIMEOUT = 300
_WHEN_HELP = "Run the job only for commits that change these paths (git pathspecs, app folder; unset: always)"
_TIMEOUT_HELP = "Maximum run time of the job in seconds; then SIGTERM, then SIGKILL after KILL_GRACE"


@dataclass(frozen=True)
class JobConfig:
    """The configuration of one job kind (``PRE_DEPLOY_*``, ``POST_DEPLOY_*``, ``FAILED_DEPLOY_*``).

    ``folder`` is relative and normalised (no leading ``./``, no ``..``): inside the job
    repository when ``repo_url`` is set, else inside the app directory (the guide's
    monorepo pattern). ``repo_url`` never holds credentials.
    """

    kind: JobKind
    command: Text | None
    folder: Folder = None
    repo_url: GitUrl | None = None
    timeout: TimeoutSeconds = DEFAULT_TIMEOUT
    when_changed: Pathspecs = None

    @property
    def enabled(self) -> bool:
        return self.command is not None

    @property
    def watched(self) -> tuple[str, ...]:
        """The pathspecs of ``*_WHEN_CHANGED`` (empty: the job runs for every commit)."""
        return split_list(self.when_changed)


class JobSettings(BaseModel):
    """The flat variables of the three job kinds; :meth:`job` gives one kind's :class:`JobConfig`."""

    model_config = ConfigDict(frozen=True)

    PRE_DEPLOY_COMMAND: Text | None = Field(
        default=None, description="Command run before a new commit goes live; must succeed (strict)"
    )
    PRE_DEPLOY_FOLDER: Folder = Field(
        default=None, description="Folder the PRE_DEPLOY command runs in, relative"
    )
    PRE_DEPLOY_REPO_URL: GitUrl | None = Field(
        default=None, description="Separate repository holding the PRE_DEPLOY job (unset: the app repository)"
    )
    PRE_DEPLOY_TIMEOUT: TimeoutSeconds = Field(default=DEFAULT_TIMEOUT, description=_TIMEOUT_HELP)
    PRE_DEPLOY_WHEN_CHANGED: Pathspecs = Field(default=None, description=_WHEN_HELP)
    POST_DEPLOY_COMMAND: Text | None = Field(
        default=None, description="Command run after a commit went live; a failure is only logged (lenient)"
    )
    POST_DEPLOY_FOLDER: Folder = Field(
        default=None, description="Folder the POST_DEPLOY command runs in, relative"
    )
    POST_DEPLOY_REPO_URL: GitUrl | None = Field(
        default=None,
        description="Separate repository holding the POST_DEPLOY job (unset: the app repository)",
    )
    POST_DEPLOY_TIMEOUT: TimeoutSeconds = Field(default=DEFAULT_TIMEOUT, description=_TIMEOUT_HELP)
    POST_DEPLOY_WHEN_CHANGED: Pathspecs = Field(default=None, description=_WHEN_HELP)
    FAILED_DEPLOY_COMMAND: Text | None = Field(
        default=None, description="Command run when the PRE_DEPLOY of a commit fails"
    )
    FAILED_DEPLOY_FOLDER: Folder = Field(
        default=None, description="Folder the FAILED_DEPLOY command runs in, relative"
    )
    FAILED_DEPLOY_REPO_URL: GitUrl | None = Field(
        default=None,
        description="Separate repository holding the FAILED_DEPLOY job (unset: the app repository)",
    )
    FAILED_DEPLOY_TIMEOUT: TimeoutSeconds = Field(default=DEFAULT_TIMEOUT, description=_TIMEOUT_HELP)

    def job(self, kind: JobKind) -> JobConfig:
        """The model of one job kind, built from its four variables."""
        prefix = kind.value
        return JobConfig(
            kind,
            getattr(self, f"{prefix}_COMMAND"),
            getattr(self, f"{prefix}_FOLDER"),
            getattr(self, f"{prefix}_REPO_URL"),
            getattr(self, f"{prefix}_TIMEOUT"),
            getattr(self, f"{prefix}_WHEN_CHANGED", None),
        )


def job_presence_problems(values: Mapping[str, Any]) -> list[str]:
    """A job's FOLDER or REPO_URL set while its COMMAND is not (whatever their values)."""
    return [
        f"{prefix}_{suffix}: set without {prefix}_COMMAND"
        for prefix in JOB_PREFIXES
        if f"{prefix}_COMMAND" not in values
        for suffix in ("FOLDER", "REPO_URL", "WHEN_CHANGED")
        if f"{prefix}_{suffix}" in values
    ]
