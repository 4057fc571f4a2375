"""The workspace: the app's checkout and the job repositories' checkouts, and the job specs built on them.

Outside a deploy the workspace shows the live (processed) commit. In place (the default),
a deploy moves it to the new commit before PRE_DEPLOY runs, and ``restore`` puts it back
when that deploy failed; staged (``DEPLOY_STRATEGY=staged``), PRE_DEPLOY runs in the staging
checkout beside it (``producer.staging``) and the workspace moves only once it succeeded::

    workspace = Workspace(settings)
    workspace.move_to(sha)                       # checks out sha, updates the job repositories
    workspace.stage(sha)                         # staged: the staging checkout at sha instead
    pre = workspace.spec(JobKind.PRE, sha, previous, attempt=1, boot=3, seq=17)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from producer.git_clone import CloneShape
from producer.git_ssh import ssh_command
from producer.git_sync import GitCheckout, GitSyncError
from producer.settings import Settings
from producer.staging import Staging
from workers.console import say
from workers.contract import JobKind, JobSpec


class Workspace:
    """Where the jobs and the app run: ``WORKSPACE_PATH`` and ``WORKSPACE_PATH.jobs/<kind>``."""

    def __init__(self, settings: Settings):
        self.settings = settings
        secrets = settings.secret_values()
        # The same key, token and clone shape for the app and the job repositories.
        ssh, shape = ssh_command(settings), CloneShape.for_app(settings)
        self.app = GitCheckout(
            settings.GITHUB_REPO_URL or "",
            Path(settings.WORKSPACE_PATH),
            settings.GITHUB_BRANCH,
            settings.token,
            secrets,
            ssh_command=ssh,
            shape=shape,
        )
        self.jobs: dict[JobKind, GitCheckout] = {}
        self.jobs_ready: set[JobKind] = set()  # job repositories checked (or cloned) by this process
        for kind in JobKind:
            job = settings.job(kind)
            if job.enabled and job.repo_url:
                path = Path(str(settings.WORKSPACE_PATH) + ".jobs") / kind.slug
                self.jobs[kind] = GitCheckout(
                    job.repo_url, path, None, settings.token, secrets, ssh_command=ssh, shape=shape.for_jobs()
                )
        self.staged = settings.DEPLOY_STRATEGY == "staged"
        self.staging = Staging(settings, self.app)

    def head(self) -> str | None:
        return self.app.head() if self.app.is_cloned() else None

    def move_to(self, commit: str, update_jobs: bool = True) -> None:
        """Check out ``commit`` (fetched first when it is not here: a pinned tag or old commit)."""
        try:
            self.app.checkout(commit)
        except GitSyncError:
            self.app.fetch_commit(commit)
            self.app.checkout(commit)
        if update_jobs:
            self.update_jobs()

    def stage(self, commit: str) -> None:
        """Staged: the staging checkout at ``commit`` (fetched first when it is not here); the workspace stays."""
        try:
            self.staging.prepare(commit)
        except GitSyncError:
            self.app.fetch_commit(commit)
            self.staging.prepare(commit)
        self.update_jobs()

    def restore(self, processed: str) -> None:
        """Back at the live commit (after a failed, cancelled or abandoned deploy)."""
        if self.head() != processed:
            self.app.checkout(processed)
            say(f"[INFO] Workspace back at the processed commit {processed[:7]}")

    def update_jobs(self) -> None:
        for kind, checkout in self.jobs.items():
            try:
                if not checkout.is_cloned() or kind not in self.jobs_ready:
                    checkout.ensure_cloned()  # first use: also clears what a killed git left
                    self.jobs_ready.add(kind)
                checkout.checkout(checkout.fetch())
            except GitSyncError as exc:
                say(f"[WARN] Could not update the {kind.value} job repository: {exc}; using the copy on disk")

    def spec(
        self,
        kind: JobKind,
        commit: str,
        previous: str | None,
        attempt: int,
        *,
        boot: int,
        seq: int,
        lease: str = "",
        extra_env: dict[str, str] | None = None,
        staged: bool = False,
        restart: bool = False,
    ) -> JobSpec | None:
        """The job of ``kind`` for ``commit`` as configured (None: no such job); ``staged``: in the staging checkout."""
        job = self.settings.job(kind)
        if not job.enabled or not job.command:
            return None
        app_dir = self.staging.app_dir if staged else self.settings.app_dir
        base = self.jobs[kind].path if kind in self.jobs else app_dir
        cwd = base / job.folder if job.folder else base
        return JobSpec(
            kind=kind,
            command=job.command,
            cwd=str(cwd),
            timeout=job.timeout,
            commit=commit,
            previous=previous,
            branch=self.app.branch or "",
            workspace=str(self.app.path),
            deployment=self.settings.keys.deployment,
            instance=self.settings.keys.instance,
            attempt=attempt,
            boot=boot,
            lease=lease,
            once=kind is JobKind.POST and self.settings.POST_DEPLOY_SCOPE == "once",
            seq=seq,
            extra_env=dict(extra_env or {}),
            strategy=self.settings.DEPLOY_STRATEGY,
            checkout=str(self.staging.path if staged else self.app.path),
            restart_app=restart,
        )

    def manual_spec(
        self, kind: JobKind, commit: str, previous: str | None, *, boot: int, seq: int, lease: str
    ) -> JobSpec:
        """The job ``hotreload run`` asked for: as a deploy's, run even where POST_DEPLOY_SCOPE=once ran it.

        A PRE_DEPLOY carries its FAILED_DEPLOY, queued by its failure as in a deploy.
        """
        spec = self.spec(kind, commit, previous, 1, boot=boot, seq=seq, lease=lease)
        if spec is None:
            raise GitSyncError(f"{kind.value}_COMMAND is not set")
        failed = (
            self.spec(JobKind.FAILED, commit, previous, 1, boot=boot, seq=seq)
            if kind is JobKind.PRE
            else None
        )
        return dataclasses.replace(spec, once=False, failed=failed.to_dict() if failed else None)

    def deploy_specs(
        self,
        commit: str,
        previous: str | None,
        attempt: int,
        *,
        boot: int,
        seq: int,
        lease: str,
        rollback: bool,
        post_wanted: bool = True,
        restart: bool = False,
    ) -> tuple[JobSpec | None, JobSpec | None]:
        """PRE_DEPLOY with its POST_DEPLOY and FAILED_DEPLOY inside (PRE None: none configured), and POST.

        Staged, PRE_DEPLOY and FAILED_DEPLOY run in the staging checkout, POST_DEPLOY in the workspace.
        """
        env = {"DEPLOY_ROLLBACK": "1"} if rollback else {}
        staged = self.staged

        def build(kind: JobKind, lease: str = "", staged: bool = False) -> JobSpec | None:
            return self.spec(
                kind,
                commit,
                previous,
                attempt,
                boot=boot,
                seq=seq,
                lease=lease,
                extra_env=env,
                staged=staged,
                restart=restart and kind is JobKind.PRE,
            )

        post = build(JobKind.POST) if post_wanted else None
        failed, pre = build(JobKind.FAILED, staged=staged), build(JobKind.PRE, lease, staged=staged)
        if pre is not None:
            pre = dataclasses.replace(
                pre,
                post=post.to_dict() if post else None,
                failed=failed.to_dict() if failed else None,
            )
        return pre, post
