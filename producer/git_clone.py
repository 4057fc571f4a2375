"""The shape of a clone: how much history (depth), which objects (filter), which folders, and submodules.

A :class:`CloneShape` turns the GIT_CLONE_* settings into git's arguments; the checkout
stays the same for every shape (a commit missing from a shallow history is fetched by
its sha). A local path given with a depth or a filter is cloned as ``file://``: git
ignores both for a plain local path::

    shape = CloneShape.for_app(settings)    # depth 1, blob:none, sparse ("services/api",)
    ["git", "clone", *shape.clone_args(), shape.transport_url(url), dest]
"""

from __future__ import annotations

import dataclasses
from pathlib import PurePosixPath

from producer.settings import Settings


@dataclasses.dataclass(frozen=True)
class CloneShape:
    """What a clone holds; the default is git's own: full history, every object, every file."""

    depth: int | None = None
    filter: str | None = None
    sparse: tuple[str, ...] = ()
    submodules: bool = False

    @classmethod
    def for_app(cls, settings: Settings) -> CloneShape:
        """The app repository's shape: sparse, GITHUB_REPO_FOLDER alone (the jobs' folders are inside it)."""
        folder = settings.GITHUB_REPO_FOLDER
        return cls(
            depth=settings.GIT_CLONE_DEPTH,
            filter=settings.GIT_CLONE_FILTER,
            sparse=(folder,) if settings.GIT_SPARSE_CHECKOUT and folder else (),
            submodules=settings.GIT_SUBMODULES == "recursive",
        )

    def for_jobs(self) -> CloneShape:
        """A job repository is small and whole: the same history and objects, every folder."""
        return dataclasses.replace(self, sparse=())

    def transport_url(self, url: str) -> str:
        """The URL git is given: ``file://`` for a local path when depth or filter must apply."""
        if (self.depth or self.filter) and url.startswith("/"):
            return PurePosixPath(url).as_uri()
        return url

    def clone_args(self) -> list[str]:
        args = []
        if self.depth:
            args += ["--depth", str(self.depth)]
        if self.filter:
            args += [f"--filter={self.filter}"]
        if self.sparse:
            args += ["--sparse"]  # only the top-level files until `sparse-checkout set`
        return args

    def fetch_args(self) -> list[str]:
        return ["--depth", str(self.depth)] if self.depth else []

    def sparse_args(self) -> list[str]:
        return ["sparse-checkout", "set", "--cone", "--", *self.sparse]


SUBMODULE_UPDATE = ["submodule", "update", "--init", "--recursive", "--force", "--quiet"]
SUBMODULE_SYNC = ["submodule", "sync", "--recursive", "--quiet"]
