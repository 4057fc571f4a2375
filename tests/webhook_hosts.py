"""Push deliveries as each git host documents them, signed as each host signs them.

Used by the unit, e2e and fault tests of ``POST /webhook/<host>``. Payloads keep the
fields each host's documentation shows for a push (trimmed of links and avatars):
GitHub and Gitea/Forgejo name the branch in ``ref``, GitLab too (``object_kind: push``,
``checkout_sha``, ``project.default_branch``), Bitbucket Cloud in
``push.changes[].new.name``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

ZERO = "0" * 40


def hex_hmac(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Sender:
    """One host as a sender: where it posts, how it proves the secret, how it names events."""

    name: str  # github, gitlab, gitea, forgejo, bitbucket
    endpoint: str  # the path segment after /webhook/
    push_event: str
    other_event: str  # an event that is not a push
    test_event: str | None  # the host's ping, when it has one
    binds_body: bool  # whether the proof covers the body (GitLab's token does not)

    @property
    def path(self) -> str:
        return f"/webhook/{self.endpoint}"

    def proof(self, body: bytes, secret: str) -> dict[str, str]:
        """The header(s) that prove the secret, as this host sends them."""
        if self.name == "github":
            return {"X-Hub-Signature-256": "sha256=" + hex_hmac(secret, body)}
        if self.name == "bitbucket":
            return {"X-Hub-Signature": "sha256=" + hex_hmac(secret, body)}
        if self.name == "gitlab":
            return {"X-Gitlab-Token": secret}
        signature = hex_hmac(secret, body)
        if self.name == "forgejo":
            return {"X-Forgejo-Signature": signature, "X-Gitea-Signature": signature}
        return {"X-Gitea-Signature": signature}

    def event(self, event: str) -> dict[str, str]:
        """The event header(s) this host sends (Forgejo sends its own and Gitea's)."""
        if self.name == "github":
            return {"X-GitHub-Event": event}
        if self.name == "gitlab":
            return {"X-Gitlab-Event": event}
        if self.name == "bitbucket":
            return {"X-Event-Key": event}
        if self.name == "forgejo":
            return {"X-Forgejo-Event": event, "X-Gitea-Event": event}
        return {"X-Gitea-Event": event}

    def headers(self, body: bytes, secret: str, event: str | None = None) -> dict[str, str]:
        """Everything the host sends with ``body``: content type, event, proof."""
        return {
            "Content-Type": "application/json",
            **self.event(self.push_event if event is None else event),
            **self.proof(body, secret),
        }

    def push(self, branch: str, sha: str, before: str = ZERO, default_branch: str = "main") -> bytes:
        """The body of a push of ``sha`` to ``branch``, in this host's documented shape."""
        return json.dumps(_PAYLOADS[self.name](branch, sha, before, default_branch)).encode()

    def bad_proofs(self, body: bytes) -> list[tuple[str, dict[str, str]]]:
        """Deliveries of ``body`` whose proof is missing or wrong, each named."""
        wrong = self.proof(body, "another-secret")
        cases = [("no proof", {}), ("proof of another secret", wrong)]
        if self.name == "gitlab":
            return [*cases, ("empty token", {"X-Gitlab-Token": ""})]
        if self.name in ("github", "bitbucket"):
            name = "X-Hub-Signature-256" if self.name == "github" else "X-Hub-Signature"
            return [
                *cases,
                ("sha1 signature", {name: "sha1=" + "0" * 40}),
                ("empty signature", {name: "sha256="}),
            ]
        return [*cases, ("empty signature", dict.fromkeys(self.proof(body, "x"), ""))]


def _github(branch: str, sha: str, before: str, default: str) -> dict[str, Any]:
    return {
        "ref": f"refs/heads/{branch}",
        "before": before,
        "after": sha,
        "repository": {"full_name": "test/app", "default_branch": default},
        "pusher": {"name": "dev", "email": "dev@example.com"},
        "head_commit": {"id": sha, "message": "change"},
    }


def _gitlab(branch: str, sha: str, before: str, default: str) -> dict[str, Any]:
    return {
        "object_kind": "push",
        "event_name": "push",
        "before": before,
        "after": sha,
        "ref": f"refs/heads/{branch}",
        "ref_protected": True,
        "checkout_sha": sha,
        "user_id": 4,
        "user_name": "Dev",
        "user_username": "dev",
        "project_id": 15,
        "project": {
            "id": 15,
            "name": "app",
            "path_with_namespace": "test/app",
            "default_branch": default,
            "git_http_url": "https://gitlab.example.com/test/app.git",
        },
        "commits": [{"id": sha, "message": "change", "added": [], "modified": ["README"], "removed": []}],
        "total_commits_count": 1,
        "repository": {"name": "app", "url": "git@gitlab.example.com:test/app.git"},
    }


def _gitea(branch: str, sha: str, before: str, default: str) -> dict[str, Any]:
    return {
        "ref": f"refs/heads/{branch}",
        "before": before,
        "after": sha,
        "compare_url": f"http://localhost:3000/test/app/compare/{before}...{sha}",
        "commits": [{"id": sha, "message": "change", "author": {"name": "Dev", "username": "dev"}}],
        "head_commit": {"id": sha, "message": "change"},
        "repository": {"id": 140, "name": "app", "full_name": "test/app", "default_branch": default},
        "pusher": {"id": 1, "login": "dev"},
        "sender": {"id": 1, "login": "dev"},
    }


def _bitbucket(branch: str, sha: str, before: str, default: str) -> dict[str, Any]:
    return {
        "actor": {"type": "user", "display_name": "Dev", "uuid": "{967a34ee-4603-4642-b8cc-37764da12f5e}"},
        "repository": {
            "type": "repository",
            "full_name": "test/app",
            "name": "app",
            "scm": "git",
            "is_private": True,
            "mainbranch": {"type": "branch", "name": default},
        },
        "push": {
            "changes": [
                {
                    "new": {"type": "branch", "name": branch, "target": {"type": "commit", "hash": sha}},
                    "old": {"type": "branch", "name": branch, "target": {"type": "commit", "hash": before}},
                    "created": False,
                    "forced": False,
                    "closed": False,
                    "commits": [{"type": "commit", "hash": sha, "message": "change"}],
                    "truncated": False,
                }
            ]
        },
    }


_PAYLOADS = {
    "github": _github,
    "gitlab": _gitlab,
    "gitea": _gitea,
    "forgejo": _gitea,
    "bitbucket": _bitbucket,
}

SENDERS = {
    sender.name: sender
    for sender in (
        Sender("github", "github", "push", "issues", "ping", binds_body=True),
        Sender("gitlab", "gitlab", "Push Hook", "Merge Request Hook", None, binds_body=False),
        Sender("gitea", "gitea", "push", "pull_request", None, binds_body=True),
        Sender("forgejo", "gitea", "push", "pull_request", None, binds_body=True),
        Sender(
            # Bitbucket Cloud sends no test delivery; "diagnostics:ping" is Data Center's.
            "bitbucket",
            "bitbucket",
            "repo:push",
            "pullrequest:created",
            "diagnostics:ping",
            binds_body=True,
        ),
    )
}


def bitbucket_branch_deleted(branch: str, before: str) -> bytes:
    """Bitbucket Cloud's push that deletes ``branch``: its change has no ``new``."""
    change = {
        "new": None,
        "old": {"type": "branch", "name": branch, "target": {"hash": before}},
        "closed": True,
    }
    return json.dumps({"repository": {"full_name": "test/app"}, "push": {"changes": [change]}}).encode()
