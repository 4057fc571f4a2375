"""The act side of the poller: carries out the planner's Deploy, SkipPre, GoLive, Follow and StartApp.

It moves the workspace (in place: before PRE_DEPLOY; staged: it prepares the staging
checkout, and moves the workspace on ``GoLive`` once PRE_DEPLOY passed there), builds the
job specs and hands them to the state writer; it decides nothing (the planner did)::

    deployer = Deployer(settings, state, replicas, workspace, report)
    deployer.deploy(Deploy(sha, attempt=1, reason="new commit"), seen, booting=False, boot=3)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from producer import planner
from producer.poller_report import PollerReport
from producer.replicas import Replicas
from producer.settings import Settings
from producer.workspace import Workspace
from workers.console import say
from workers.contract import JobKind, manual_job_id
from workers.deploy_state import DeployState


class Deployer:
    """Turns one planned action into checkouts and enqueued jobs."""

    def __init__(
        self,
        settings: Settings,
        state: DeployState,
        replicas: Replicas,
        workspace: Workspace,
        report: PollerReport,
        on_started: Callable[[str, int], None] | None = None,
    ):
        self.on_started = on_started  # a PRE_DEPLOY was queued (commit status: pending)
        self.settings = settings
        self.state = state
        self.replicas = replicas
        self.workspace = workspace
        self.report = report

    def deploy(self, action: planner.Deploy, seen: planner.Observed, booting: bool, boot: int) -> bool:
        """Check out the commit and enqueue its PRE_DEPLOY under the lease; False when a replica took the lease."""
        self.report.acted()
        lease = None
        if seen.pre_configured:
            lease = self.replicas.claim(action.commit, self.replicas.record(action.commit))
            if lease is None:
                return False  # a replica took it between the look and the claim: the next look decides
        previous = seen.processed
        try:
            if self.workspace.staged:
                self.workspace.stage(action.commit)  # the workspace stays on the live commit
            else:
                self.workspace.move_to(action.commit)
            pre, post = self.workspace.deploy_specs(
                action.commit,
                previous,
                action.attempt,
                boot=boot,
                seq=self.state.next_seq(),
                lease=lease.value if lease else "",
                rollback=action.rollback,
                post_wanted=action.post,
                restart=action.restart,
            )
            if pre is None:
                if self.workspace.staged:
                    self.workspace.move_to(action.commit, update_jobs=False)
                self.state.deployed_without_pre(action.commit, post, action.restart)
                say(f"[INFO] Commit {action.commit[:7]} deployed (no PRE_DEPLOY_COMMAND configured)")
                self.report.state("post_deploy" if post else "running", processed=action.commit)
                return True
            job = self.state.enqueue_deploy(pre)
        except BaseException:
            self.replicas.drop()
            raise
        self.replicas.hand_over(job)
        if self.on_started is not None:
            self.on_started(action.commit, action.attempt)
        self._post_skipped(action.commit, action.post)
        kind = "rollback " if action.rollback else ""
        say(
            f"[INFO] Deploying {kind}commit {action.commit[:7]}: PRE_DEPLOY queued (attempt {action.attempt})"
        )
        if booting:
            say(f"[INFO] Running the initial PRE_DEPLOY for commit {action.commit[:7]} before the app starts")
        self.report.state("pre_deploy", processed=previous or "")
        return True

    def skip_pre(self, action: planner.SkipPre, seen: planner.Observed, boot: int) -> None:
        """None of PRE_DEPLOY_WHEN_CHANGED's paths changed: live at once (either strategy), the skip recorded."""
        self.report.acted()
        self.workspace.move_to(action.commit)
        pre, post = self.workspace.deploy_specs(
            action.commit,
            seen.processed,
            1,
            boot=boot,
            seq=self.state.next_seq(),
            lease="",
            rollback=action.rollback,
            post_wanted=action.post,
            restart=action.restart,
        )
        assert pre is not None, "the planner skips only a configured PRE_DEPLOY"
        if self.workspace.staged:
            pre = dataclasses.replace(pre, checkout=pre.workspace)  # nothing was staged
        reason = f"nothing changed under {', '.join(action.watched)}"
        self.state.pre_skipped(pre, post, reason)
        say(f"[INFO] PRE_DEPLOY skipped for commit {action.commit[:7]}: {reason}")
        self._post_skipped(action.commit, action.post)
        self.report.state("post_deploy" if post else "running", processed=action.commit)

    def go_live(self, action: planner.GoLive) -> None:
        """Staged: PRE_DEPLOY passed in the staging checkout; the workspace moves to the commit, then POST_DEPLOY."""
        self.report.acted()
        self.workspace.move_to(action.commit, update_jobs=False)
        post = self.state.went_live(action.commit)
        if post is False:
            return
        then = "; POST_DEPLOY queued" if post else ""
        say(f"[INFO] Workspace moved to commit {action.commit[:7]} (its staged PRE_DEPLOY succeeded){then}")
        self.report.state("post_deploy" if post else "running", processed=action.commit)

    def _post_skipped(self, commit: str, wanted: bool) -> None:
        post = self.settings.job(JobKind.POST)
        if not wanted and post.enabled:
            say(
                f"[INFO] POST_DEPLOY skipped for commit {commit[:7]}: nothing changed under {post.when_changed}"
            )

    def follow(self, action: planner.Follow, seen: planner.Observed, booting: bool, boot: int) -> None:
        """A replica's PRE_DEPLOY of the commit succeeded: live here without running it again."""
        self.report.acted()
        self.workspace.move_to(action.commit, update_jobs=not booting)
        post = None
        if self.settings.POST_DEPLOY_SCOPE == "each":
            # POST_DEPLOY_SCOPE=once: the replica that ran PRE_DEPLOY runs it (workers.job.claim_lease).
            post = self.workspace.spec(
                JobKind.POST, action.commit, seen.processed, 1, boot=boot, seq=self.state.next_seq()
            )
        self.state.deployed_without_pre(action.commit, post, action.restart)
        say(
            f"[INFO] Commit {action.commit[:7]} deployed: PRE_DEPLOY succeeded on instance "
            f"{action.instance or '?'} (not run again here)"
        )
        self.report.state("post_deploy" if post else "running", processed=action.commit, waiting_for="")

    def run_job(self, action: planner.RunJob, seen: planner.Observed, boot: int) -> bool:
        """``hotreload run``: enqueue the job and tell the waiting CLI its id; False: try again next cycle."""
        kind = JobKind(action.kind)
        reply = self.state.keys.reply(action.token)
        if not action.commit:
            what = "no clone in WORKSPACE_PATH" if kind is JobKind.PRE else "no commit has been deployed"
            self.state.answer(reply, f"error: no commit to run {kind.value} for yet: {what}")
            return True
        lease = None
        if kind is JobKind.PRE:
            lease = self.replicas.claim(action.commit, self.replicas.record(action.commit))
            if lease is None:
                return False  # a replica took the lease since the look: the request waits
        try:
            # DEPLOY_PREVIOUS_SHA as for the deploy of the commit (it ran last for it), else the live one.
            last = self.state.tracker.last_run(kind) or {}
            previous = (
                (last.get("previous") or None) if last.get("commit") == action.commit else seen.processed
            )
            previous = None if previous == action.commit else previous
            spec = self.workspace.manual_spec(
                kind,
                action.commit,
                previous,
                boot=boot,
                seq=self.state.next_seq(),
                lease=lease.value if lease else "",
            )
            job = self.state.enqueue(
                spec,
                job_id=manual_job_id(self.state.keys, kind, action.commit),
                description=f"{spec.description()} (hotreload run)",
            )
        except BaseException:
            self.replicas.drop()
            raise
        self.replicas.hand_over(job)
        say(f"[INFO] {kind.value} of commit {action.commit[:7]} queued by hotreload run as {job.id}")
        self.state.answer(reply, job.id)
        return True

    def start_app(self, action: planner.StartApp) -> None:
        """End of boot: the app supervisor may start the app on the live commit."""
        if "already deployed" in action.reason:
            say(
                f"[INFO] Commit {action.commit[:7]} already deployed (PRE_DEPLOY succeeded before); starting the app"
            )
        else:
            reason = action.reason[:1].upper() + action.reason[1:]
            say(f"[WARN] {reason}: starting the app on commit {action.commit[:7]}")
        self.state.open_gate(action.commit)
        self.report.state("running", processed=action.commit)
