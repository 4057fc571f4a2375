"""producer.webhook: one verification and dispatch for GitHub, GitLab, Gitea/Forgejo and Bitbucket Cloud.

Each host's documented push shape (tests/webhook_hosts.py) goes through PushWebhook as
the HTTP server hands it over; the e2e and fault tests send the same to the real stack.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from producer.webhook import HOSTS, PushWebhook
from tests.webhook_hosts import SENDERS, Sender, bitbucket_branch_deleted

SECRET = "whsec-unit-Ω-1"
SHA = "a" * 40


class Wakes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def hook(sender: Sender, branch: str | None = "main") -> tuple[PushWebhook, Wakes]:
    wakes = Wakes()
    return PushWebhook(HOSTS[sender.endpoint], SECRET, branch=lambda: branch, wake=wakes), wakes


def deliver(sender: Sender, body: bytes, event: str | None = None, branch: str | None = "main", **extra: str):
    webhook, wakes = hook(sender, branch)
    code, answer = webhook.handle({**sender.headers(body, SECRET, event), **extra}, body)
    assert SECRET not in json.dumps(answer)
    return code, answer, wakes.count


senders = pytest.mark.parametrize("sender", list(SENDERS.values()), ids=list(SENDERS))


@senders
def test_a_push_to_the_tracked_branch_asks_for_one_sync(sender: Sender) -> None:
    assert deliver(sender, sender.push("main", SHA)) == (202, {"action": "sync"}, 1)


@senders
def test_a_push_to_another_branch_or_another_event_does_nothing(sender: Sender) -> None:
    ignored = {"action": "ignored", "reason": "push to another branch"}
    assert deliver(sender, sender.push("feature", SHA)) == (202, ignored, 0)
    code, answer, wakes = deliver(sender, sender.push("main", SHA), event=sender.other_event)
    assert (code, answer["action"], wakes) == (202, "ignored", 0)


@senders
def test_the_hosts_test_delivery_is_answered_2xx(sender: Sender) -> None:
    body = json.dumps({"zen": "test", "repository": {"full_name": "test/app"}}).encode()
    if sender.test_event is not None:
        assert deliver(sender, body, event=sender.test_event) == (200, {"action": "pong"}, 0)
    else:  # GitLab, Gitea and Forgejo test with a push of a recent commit
        assert deliver(sender, sender.push("main", SHA))[0] == 202


@senders
def test_a_missing_or_wrong_proof_is_refused_before_the_body_is_read(sender: Sender) -> None:
    for body in (sender.push("main", SHA), b"{not json"):
        for name, proof in sender.bad_proofs(body):
            webhook, wakes = hook(sender)
            headers = {"Content-Type": "application/json", **sender.event(sender.push_event), **proof}
            code, answer = webhook.handle(headers, body)
            assert (code, wakes.count) == (401, 0), name
            assert answer["error"].startswith("missing or invalid X-"), answer


@senders
def test_a_signed_body_that_is_not_a_json_object_is_400(sender: Sender) -> None:
    for body in (b"{not json", b"[1, 2]", b"\xff\xfe{}"):
        assert deliver(sender, body)[:2] == (400, {"error": "the push payload is not JSON"})


@senders
def test_before_the_first_clone_the_payload_names_the_default_branch(sender: Sender) -> None:
    assert deliver(sender, sender.push("trunk", SHA, default_branch="trunk"), branch=None)[2] == 1
    assert deliver(sender, sender.push("dev", SHA, default_branch="trunk"), branch=None)[2] == 0


@pytest.mark.parametrize("name", ["github", "gitea"])
def test_the_form_content_type_carries_the_json_in_payload(name: str) -> None:
    sender = SENDERS[name]
    body = urlencode({"payload": sender.push("main", SHA).decode()}).encode()
    headers = {**sender.headers(body, SECRET), "Content-Type": "application/x-www-form-urlencoded"}
    webhook, wakes = hook(sender)
    assert webhook.handle(headers, body) == (202, {"action": "sync"})


def test_forgejo_signature_is_checked_first_and_a_good_gitea_one_does_not_rescue_it() -> None:
    body = SENDERS["forgejo"].push("main", SHA)
    good = SENDERS["gitea"].proof(body, SECRET)["X-Gitea-Signature"]
    headers = {"X-Forgejo-Event": "push", "X-Forgejo-Signature": "0" * 64, "X-Gitea-Signature": good}
    webhook, wakes = hook(SENDERS["forgejo"])
    assert webhook.handle(headers, body)[0] == 401


def test_gitlab_token_header_is_case_insensitive_and_exact() -> None:
    body = SENDERS["gitlab"].push("main", SHA)
    webhook, wakes = hook(SENDERS["gitlab"])
    assert webhook.handle({"x-gitlab-event": "Push Hook", "x-gitlab-token": SECRET}, body)[0] == 202
    for token in (SECRET[:-1], SECRET + "x", SECRET.upper()):
        assert webhook.handle({"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": token}, body)[0] == 401


def test_bitbucket_branch_from_push_changes_new_name() -> None:
    sender = SENDERS["bitbucket"]
    assert deliver(sender, bitbucket_branch_deleted("main", SHA))[2] == 0
    two = json.loads(sender.push("feature", SHA))
    two["push"]["changes"].append(json.loads(sender.push("main", SHA))["push"]["changes"][0])
    assert deliver(sender, json.dumps(two).encode())[2] == 1
    tag = json.loads(sender.push("main", SHA))
    tag["push"]["changes"][0]["new"]["type"] = "tag"
    assert deliver(sender, json.dumps(tag).encode())[2] == 0
