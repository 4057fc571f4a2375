"""Push webhooks from GitHub, GitLab, Gitea/Forgejo and Bitbucket Cloud: a push to the tracked branch asks for a sync.

One flow for every host (:class:`PushWebhook`); a :class:`Host` says only what differs:
how the delivery proves it knows the secret, which header names the event, which
events are pushes or the host's test delivery, and where the payload names the branch.

=========  ===================  ==========================================  ======================
endpoint   event header         secret proof                                push / test event
=========  ===================  ==========================================  ======================
github     X-GitHub-Event       X-Hub-Signature-256: sha256=HMAC-SHA256     push / ping
gitlab     X-Gitlab-Event       X-Gitlab-Token: the secret itself           Push Hook / (a push)
gitea      X-Gitea-Event        X-Gitea-Signature: HMAC-SHA256 hex          push / (a push)
           (X-Forgejo-Event)    (X-Forgejo-Signature, checked first)
bitbucket  X-Event-Key          X-Hub-Signature: sha256=HMAC-SHA256         repo:push / (none)
=========  ===================  ==========================================  ======================

The secret is checked in constant time before the body is even parsed. Only a push to
the tracked branch pushes ``sync`` on the poller's command list; the poller drains that
list once per cycle, so a burst of pushes becomes one sync::

    hook = PushWebhook(HOSTS["gitlab"], secret, branch=lambda: "main", wake=lambda: wake_poller(...))
    code, answer = hook.handle(headers, body)    # (202, {"action": "sync"}) or 401/400/202 ignored

The HTTP server enforces ``MAX_BODY`` from Content-Length, before reading the body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

MAX_BODY = 1024 * 1024
Headers = Mapping[str, str]


def hmac_hex(secret: str | bytes, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``body``: what GitHub, Gitea and Bitbucket sign a delivery with."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def header(headers: Headers, name: str) -> str:
    """A header's value, whatever the case of its name ("" when absent)."""
    lowered = name.lower()
    return next((value for key, value in headers.items() if key.lower() == lowered), "").strip()


def _same(given: str, expected: bytes) -> bool:
    """Constant-time comparison of a header (as the bytes that came on the wire) with ``expected``."""
    try:
        raw = given.encode("latin-1")  # http.server reads header bytes as latin-1
    except UnicodeEncodeError:
        raw = given.encode("utf-8", "surrogateescape")
    return hmac.compare_digest(raw, expected)


def prefixed_hmac(name: str) -> Callable[[bytes, Headers, bytes], bool]:
    """Proof by ``<name>: sha256=<hex HMAC-SHA256 of the body>`` (GitHub, Bitbucket Cloud)."""

    def check(secret: bytes, headers: Headers, body: bytes) -> bool:
        given = header(headers, name)
        return given.startswith("sha256=") and _same(given, b"sha256=" + hmac_hex(secret, body).encode())

    return check


def bare_hmac(*names: str) -> Callable[[bytes, Headers, bytes], bool]:
    """Proof by the first of ``names`` present: the hex HMAC-SHA256 of the body (Gitea, Forgejo).

    A bad header is not rescued by a good one after it.
    """

    def check(secret: bytes, headers: Headers, body: bytes) -> bool:
        given = next((value for value in (header(headers, name) for name in names) if value), "")
        return bool(given) and _same(given, hmac_hex(secret, body).encode())

    return check


def token_header(name: str) -> Callable[[bytes, Headers, bytes], bool]:
    """Proof by the secret itself in a header (GitLab): it does not bind the body, TLS does."""

    def check(secret: bytes, headers: Headers, body: bytes) -> bool:
        given = header(headers, name)
        return bool(given) and _same(given, secret)

    return check


def _ref_branch(payload: dict[str, Any]) -> list[str]:
    """``ref: refs/heads/<branch>`` (GitHub, GitLab, Gitea)."""
    ref = payload.get("ref")
    if isinstance(ref, str) and ref.startswith("refs/heads/"):
        return [ref.removeprefix("refs/heads/")]
    return []


def _bitbucket_branches(payload: dict[str, Any]) -> list[str]:
    """``push.changes[].new.name`` of each change that leaves a branch (a deletion has no ``new``)."""
    push = payload.get("push")
    changes = push.get("changes") if isinstance(push, dict) else None
    branches = []
    for change in changes if isinstance(changes, list) else []:
        new = change.get("new") if isinstance(change, dict) else None
        if isinstance(new, dict) and new.get("type") == "branch" and isinstance(new.get("name"), str):
            branches.append(new["name"])
    return branches


def _path(payload: Any, *keys: str) -> str | None:
    """``payload[k1][k2]...`` when it is a string, else None."""
    for key in keys:
        payload = payload.get(key) if isinstance(payload, dict) else None
    return payload if isinstance(payload, str) else None


@dataclass(frozen=True)
class Host:
    """What one git host's push webhook looks like; :class:`PushWebhook` does the rest."""

    name: str
    proof: Callable[[bytes, Headers, bytes], bool]
    proof_headers: str  # named in the 401 answer
    event_headers: tuple[str, ...]
    push_event: str
    test_events: frozenset[str]
    branches: Callable[[dict[str, Any]], list[str]]
    default_branch: Callable[[dict[str, Any]], str | None]

    def event(self, headers: Headers) -> str:
        return next((value for value in (header(headers, name) for name in self.event_headers) if value), "")


HOSTS: dict[str, Host] = {
    host.name: host
    for host in (
        Host(
            name="github",
            proof=prefixed_hmac("X-Hub-Signature-256"),
            proof_headers="X-Hub-Signature-256",
            event_headers=("X-GitHub-Event",),
            push_event="push",
            test_events=frozenset({"ping"}),
            branches=_ref_branch,
            default_branch=lambda payload: _path(payload, "repository", "default_branch"),
        ),
        Host(
            name="gitlab",
            proof=token_header("X-Gitlab-Token"),
            proof_headers="X-Gitlab-Token",
            event_headers=("X-Gitlab-Event",),
            push_event="Push Hook",
            test_events=frozenset(),  # GitLab's test delivery is a Push Hook of a recent push
            branches=_ref_branch,
            default_branch=lambda payload: _path(payload, "project", "default_branch"),
        ),
        Host(
            name="gitea",
            proof=bare_hmac("X-Forgejo-Signature", "X-Gitea-Signature"),
            proof_headers="X-Gitea-Signature or X-Forgejo-Signature",
            event_headers=("X-Forgejo-Event", "X-Gitea-Event"),
            push_event="push",
            test_events=frozenset(),  # Gitea's and Forgejo's test delivery is a push event
            branches=_ref_branch,
            default_branch=lambda payload: _path(payload, "repository", "default_branch"),
        ),
        Host(
            name="bitbucket",
            proof=prefixed_hmac("X-Hub-Signature"),
            proof_headers="X-Hub-Signature",
            event_headers=("X-Event-Key",),
            push_event="repo:push",
            # Bitbucket Cloud has no test delivery; Data Center's "Test connection" sends this.
            test_events=frozenset({"diagnostics:ping"}),
            branches=_bitbucket_branches,
            default_branch=lambda payload: _path(payload, "repository", "mainbranch", "name"),
        ),
    )
}


class PushWebhook:
    """Checks and answers one delivery from ``host``; ``wake`` is called for a push to the tracked branch."""

    def __init__(self, host: Host, secret: str, branch: Callable[[], str | None], wake: Callable[[], None]):
        self.host = host
        self._secret = secret.encode("utf-8", "surrogateescape")
        self.branch = branch
        self.wake = wake

    def verified(self, headers: Headers, body: bytes) -> bool:
        return self.host.proof(self._secret, headers, body)

    def handle(self, headers: Headers, body: bytes) -> tuple[int, dict[str, Any]]:
        if not self.verified(headers, body):
            return 401, {"error": f"missing or invalid {self.host.proof_headers}"}
        event = self.host.event(headers)
        if event in self.host.test_events:
            return 200, {"action": "pong"}
        if event != self.host.push_event:
            return 202, {"action": "ignored", "reason": f"event {event or '(none)'} is not a push"}
        payload = _payload(header(headers, "Content-Type"), body)
        if payload is None:
            return 400, {"error": "the push payload is not JSON"}
        tracked = self.branch() or self.host.default_branch(payload)
        if not tracked or tracked not in self.host.branches(payload):
            return 202, {"action": "ignored", "reason": "push to another branch"}
        self.wake()
        return 202, {"action": "sync"}


def _payload(content_type: str, body: bytes) -> dict[str, Any] | None:
    """JSON, or a form with the JSON in ``payload`` (GitHub's and Gitea's form content type)."""
    try:
        text = body.decode("utf-8")
        if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
            text = parse_qs(text).get("payload", [""])[0]
        data = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None
