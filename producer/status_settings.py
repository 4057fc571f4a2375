"""Where deploy outcomes are reported besides hotreload's own log: the commit status on the git host."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from producer.config_types import explain, fail


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _http_url(text: str) -> str:
    text = text.strip()
    if not text.startswith(("http://", "https://")) or len(text) < 10 or any(c.isspace() for c in text):
        fail("must be an http:// or https:// URL")
    if "@" in text.split("/")[2]:
        fail("must not hold credentials (the token comes from GITHUB_TOKEN)")
    return text.rstrip("/")


def _repo_path(text: str) -> str:
    text = text.strip().strip("/")
    parts = text.split("/")
    if len(parts) < 2 or not all(parts) or any(c.isspace() for c in text):
        fail("must be the repository's path on the host, like owner/repo or group/subgroup/project")
    return text


HttpUrl = Annotated[str, AfterValidator(_http_url)]
RepoPath = Annotated[str, AfterValidator(_repo_path)]
StatusHost = Annotated[
    Literal["off", "github", "gitlab"], BeforeValidator(_lower), explain("must be one of off, github, gitlab")
]


class StatusSettings(BaseModel):
    """COMMIT_STATUS and where it goes: the deploy result on the commit, as a CI would put it."""

    model_config = ConfigDict(frozen=True)

    COMMIT_STATUS: StatusHost = Field(
        default="off",
        description="Post each PRE_DEPLOY's result as a commit status: off, github or gitlab (uses GITHUB_TOKEN)",
    )
    GIT_PROVIDER_API_URL: HttpUrl | None = Field(
        default=None,
        description="API of the git host (unset: https://api.github.com or https://gitlab.com/api/v4)",
    )
    COMMIT_STATUS_REPO: RepoPath | None = Field(
        default=None,
        description="The repository's path on the host, owner/repo (unset: taken from GITHUB_REPO_URL)",
    )
    STATUS_PUBLIC_URL: HttpUrl | None = Field(
        default=None, description="Link shown with the commit status (e.g. this container's /status)"
    )


def status_problems(values: Mapping[str, Any], tokens: Mapping[str, str]) -> list[str]:
    """A commit status needs a token to post with."""
    host = str(values.get("COMMIT_STATUS") or "off").strip().lower()
    if host in ("github", "gitlab") and "GITHUB_TOKEN" not in values and not tokens:
        return [f"COMMIT_STATUS: {host} needs GITHUB_TOKEN (or a token in GITHUB_REPO_URL) to post statuses"]
    return []
