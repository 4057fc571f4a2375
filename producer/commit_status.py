"""The deploy result on the commit: a GitHub or GitLab commit status, posted in the background.

When a PRE_DEPLOY starts the commit gets a pending status; when it ends, success or failure
with a description naming the job and the first error line of its output, the context
``hotreload/<DEPLOYMENT_ID>`` and STATUS_PUBLIC_URL as the link. Posting never holds up or
fails a deploy: a thread sends, retries briefly, and a failure is one warning line that
never holds the token::

    poster = CommitStatusPoster.from_settings(settings)     # None with COMMIT_STATUS=off
    poster.post(sha, "pending", "PRE_DEPLOY running (attempt 1)")
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlsplit

from producer.failure_report import first_error_line, run_meta
from producer.settings import Settings
from producer.status import mask
from workers.commit_tracker import CommitTracker
from workers.console import say
from workers.contract import DeployKeys, JobKind

DEFAULT_API = {"github": "https://api.github.com", "gitlab": "https://gitlab.com/api/v4"}
#: The longest description each host keeps.
DESCRIPTION_LIMIT = {"github": 140, "gitlab": 255}
STATES = {
    "github": {"pending": "pending", "success": "success", "failure": "failure"},
    "gitlab": {"pending": "running", "success": "success", "failure": "failed"},
}
TRIES = 3
TIMEOUT = 5.0


def repository_path(url: str, host: str) -> str | None:
    """owner/repo (GitHub: the last two parts) or the whole path (GitLab: groups) of a repository URL."""
    if "://" in url:
        path = urlsplit(url).path
    elif ":" in url and not url.startswith("/"):
        path = url.split(":", 1)[1]  # git@host:owner/repo.git
    else:
        path = url
    parts = [p for p in path.removesuffix("/").removesuffix(".git").split("/") if p]
    if len(parts) < 2:
        return None
    return "/".join(parts[-2:] if host == "github" else parts)


class CommitStatusPoster:
    """Posts commit statuses of one repository from a daemon thread."""

    def __init__(self, host: str, api: str, repo: str, token: str, context: str, target: str | None):
        self.host = host
        self.api = api.rstrip("/")
        self.repo = repo
        self.token = token
        self.context = context
        self.target = target
        self.outbox: queue.Queue[tuple[str, str, str]] = queue.Queue()
        self.thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> CommitStatusPoster | None:
        host = settings.COMMIT_STATUS
        if host == "off" or not settings.token:
            return None
        repo = settings.COMMIT_STATUS_REPO or repository_path(settings.GITHUB_REPO_URL or "", host)
        if repo is None:
            say(
                "[WARN] COMMIT_STATUS: cannot tell the repository's path from GITHUB_REPO_URL; set COMMIT_STATUS_REPO"
            )
            return None
        api = settings.GIT_PROVIDER_API_URL or DEFAULT_API[host]
        return cls(
            host,
            api,
            repo,
            settings.token,
            f"hotreload/{settings.keys.deployment}",
            settings.STATUS_PUBLIC_URL,
        )

    def post(self, commit: str, state: str, description: str) -> None:
        """Queue one status (pending, success or failure); returns at once."""
        if self.thread is None:
            self.thread = threading.Thread(target=self._send_all, name="commit-status", daemon=True)
            self.thread.start()
        self.outbox.put((commit, state, description))

    def wait_sent(self, timeout: float = 10.0) -> None:
        """For tests and shutdown: wait until the queued statuses were sent (or given up)."""
        deadline = time.monotonic() + timeout
        while self.outbox.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)

    def _send_all(self) -> None:
        while True:
            commit, state, description = self.outbox.get()
            try:
                self._send(commit, state, description)
            finally:
                self.outbox.task_done()

    def request(self, commit: str, state: str, description: str) -> urllib.request.Request:
        limit = DESCRIPTION_LIMIT[self.host]
        text = description if len(description) <= limit else description[: limit - 1] + "…"
        mapped = STATES[self.host][state]
        if self.host == "github":
            url = f"{self.api}/repos/{self.repo}/statuses/{commit}"
            body: dict[str, Any] = {"state": mapped, "context": self.context, "description": text}
            headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/vnd.github+json"}
        else:
            url = f"{self.api}/projects/{quote(self.repo, safe='')}/statuses/{commit}"
            body = {"state": mapped, "name": self.context, "description": text}
            headers = {"PRIVATE-TOKEN": self.token}
        if self.target:
            body["target_url"] = self.target
        headers.update({"Content-Type": "application/json", "User-Agent": "hotreload"})
        return urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")

    def _send(self, commit: str, state: str, description: str) -> None:
        error = ""
        for attempt in range(TRIES):
            try:
                with urllib.request.urlopen(
                    self.request(commit, state, description), timeout=TIMEOUT
                ) as answer:
                    answer.read()
                return
            except urllib.error.HTTPError as exc:
                error = f"HTTP {exc.code}"
                if exc.code < 500 and exc.code != 429:
                    break  # the host said no (token, repository): trying again will not help
            except (OSError, ValueError) as exc:
                error = type(exc).__name__
            time.sleep(0.5 * (attempt + 1))
        say(
            f"[WARN] Could not post the {state} status of commit {commit[:7]} to {self.host} ({error}); the deploy goes on"
        )


class OutcomeWatcher:
    """Turns this instance's PRE_DEPLOY runs into commit statuses as their outcomes appear."""

    def __init__(self, connection: Any, keys: DeployKeys, poster: CommitStatusPoster, secrets: list[str]):
        self.tracker = CommitTracker(connection, keys)
        self.connection = connection
        self.poster = poster
        self.secrets = secrets
        self.seen: str | None = None  # the last run posted (or there before this process)
        self.started = False

    def started_run(self, commit: str, attempt: int) -> None:
        self.poster.post(commit, "pending", f"PRE_DEPLOY running (attempt {attempt})")

    def check(self) -> None:
        """Post the outcome of a PRE_DEPLOY run that ended since the last check."""
        run = self.tracker.last_run(JobKind.PRE) or {}
        run_id, outcome = run.get("run_id"), run.get("outcome", "")
        if not self.started:
            self.started, self.seen = True, run_id  # what ran before this process was reported then
            return
        if not run_id or run_id == self.seen or outcome in ("running", "queued", ""):
            return
        self.seen = run_id
        commit = run.get("commit", "")
        if outcome == "skipped" or not commit:
            return
        if outcome == "succeeded":
            took = run.get("duration") or "?"
            self.poster.post(commit, "success", f"PRE_DEPLOY succeeded in {took}s")
            return
        output = [
            mask(str(line), self.secrets) or ""
            for line in run_meta(self.connection, run_id).get("output") or []
        ]
        first = first_error_line(output)
        reason = mask(run.get("reason") or outcome, self.secrets) or outcome
        self.poster.post(commit, "failure", f"PRE_DEPLOY {reason}" + (f": {first}" if first else ""))
