"""``POST /webhook/github``: a signed GitHub push to the tracked branch asks the poller to sync now.

GitHub signs the raw body with the shared secret (``X-Hub-Signature-256: sha256=<hex>``,
HMAC-SHA256); the signature is checked in constant time before the body is even parsed.
Only a ``push`` to the tracked branch pushes ``sync`` on the poller's command list; the
poller drains that list once per cycle, so a burst of pushes becomes one sync::

    hook = GitHubWebhook(secret, branch=lambda: "main", wake=lambda: wake_poller(redis, keys, "sync"))
    code, answer = hook.handle(headers, body)    # (202, {"action": "sync"}) or 401/400/202 ignored

The HTTP server enforces ``MAX_BODY`` from Content-Length, before reading the body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

MAX_BODY = 1024 * 1024
SIGNATURE_HEADER = "X-Hub-Signature-256"
EVENT_HEADER = "X-GitHub-Event"


def signature(secret: str, body: bytes) -> str:
    """The header value GitHub sends for ``body``: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return ""


class GitHubWebhook:
    """Checks and answers one delivery; ``wake`` is called for a push to the tracked branch."""

    def __init__(self, secret: str, branch: Callable[[], str | None], wake: Callable[[], None]):
        self._secret = secret.encode()
        self.branch = branch
        self.wake = wake

    def verified(self, headers: Mapping[str, str], body: bytes) -> bool:
        given = _header(headers, SIGNATURE_HEADER).strip()
        if not given.startswith("sha256="):
            return False
        expected = "sha256=" + hmac.new(self._secret, body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(given.encode(), expected.encode())

    def handle(self, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        if not self.verified(headers, body):
            return 401, {"error": "missing or invalid X-Hub-Signature-256"}
        event = _header(headers, EVENT_HEADER).strip()
        if event == "ping":
            return 200, {"action": "pong"}
        if event != "push":
            return 202, {"action": "ignored", "reason": f"event {event or '(none)'} is not a push"}
        payload = _payload(_header(headers, "Content-Type"), body)
        if payload is None:
            return 400, {"error": "the push payload is not JSON"}
        ref = payload.get("ref")
        tracked = self.branch() or _default_branch(payload)
        if not isinstance(ref, str) or not tracked or ref != f"refs/heads/{tracked}":
            return 202, {"action": "ignored", "reason": "push to another branch"}
        self.wake()
        return 202, {"action": "sync"}


def _payload(content_type: str, body: bytes) -> dict[str, Any] | None:
    """GitHub sends JSON, or a form with the JSON in ``payload`` (the hook's content type)."""
    try:
        text = body.decode("utf-8")
        if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
            text = parse_qs(text).get("payload", [""])[0]
        data = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _default_branch(payload: dict[str, Any]) -> str | None:
    """Before the first clone the branch may not be known yet: GitHub says which is the default."""
    repository = payload.get("repository")
    if isinstance(repository, dict) and isinstance(repository.get("default_branch"), str):
        return str(repository["default_branch"])
    return None
