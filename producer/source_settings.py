"""The app's source: which repository and branch, where it is checked out, how the app starts."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from producer.config_types import (
    AbsolutePath,
    Branch,
    Flag,
    Folder,
    Folders,
    GitUrl,
    Pathspecs,
    Seconds,
    Secret,
    Strategy,
    Text,
    split_list,
)


class SourceSettings(BaseModel):
    """GITHUB_* (repository, branch, token, folder, interval), WORKSPACE_PATH and the app's start."""

    model_config = ConfigDict(frozen=True)

    GITHUB_REPO_URL: GitUrl | None = Field(
        default=None,
        description="Repository of the app: https/ssh/git/file URL, git@host:path or an absolute path",
    )
    GITHUB_BRANCH: Branch | None = Field(
        default=None, description="Branch to deploy (unset: the remote's default branch)"
    )
    GITHUB_TOKEN: Secret | None = Field(
        default=None, description="Token for private https repositories (wins over a token written in a URL)"
    )
    GITHUB_REPO_FOLDER: Folder = Field(
        default=None, description="Folder of the app inside the repository (monorepo), relative"
    )
    WORKSPACE_PATH: AbsolutePath = Field(
        default=Path("/workspaces/app"), description="Absolute path where the repository is checked out"
    )
    GITHUB_SYNC_INTERVAL: Seconds = Field(
        default=30.0, description="Seconds between two fetches of the remote"
    )
    DEV_START_COMMAND: Text | None = Field(
        default=None, description="Command that starts the app (run in the app folder)"
    )
    DEV_RESTART_ON_DEPLOY: Flag = Field(
        default=False,
        description="Restart the app after each deploy (default: its dev server reloads itself)",
    )
    DEV_RESTART_WHEN_CHANGED: Pathspecs = Field(
        default=None,
        description="Restart the app after a deploy that changes these paths (git pathspecs, app folder)",
    )
    DEPLOY_STRATEGY: Strategy = Field(
        default="in-place",
        description="in-place: PRE_DEPLOY runs in the workspace; staged: in a checkout beside it, live after",
    )
    STAGED_SHARED_PATHS: Folders = Field(
        default=None,
        description="Folders of the app the staging checkout links to (unset: the workspace's ignored ones)",
    )

    @property
    def app_dir(self) -> Path:
        """Where the app lives: the workspace, or its GITHUB_REPO_FOLDER."""
        if self.GITHUB_REPO_FOLDER:
            return self.WORKSPACE_PATH / self.GITHUB_REPO_FOLDER
        return self.WORKSPACE_PATH

    @property
    def restart_paths(self) -> tuple[str, ...]:
        return split_list(self.DEV_RESTART_WHEN_CHANGED)

    @property
    def shared_paths(self) -> tuple[str, ...]:
        return split_list(self.STAGED_SHARED_PATHS)


def strategy_problems(values: Mapping[str, Any]) -> list[str]:
    """STAGED_SHARED_PATHS means nothing without the staged strategy."""
    strategy = str(values.get("DEPLOY_STRATEGY", "")).strip().lower()
    if "STAGED_SHARED_PATHS" in values and strategy != "staged":
        return ["STAGED_SHARED_PATHS: set without DEPLOY_STRATEGY=staged"]
    return []
