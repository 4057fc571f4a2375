"""Push hooks from GitLab, Gitea, Forgejo and Bitbucket Cloud beside GitHub's, on the real Procfile.

One stack with WEBHOOK_SECRET and an hour-long sync interval, so only a delivery can make
it look at the remote within seconds. For each host, in its documented payload shape and
signed as it signs: its test delivery is answered 2xx, a push to another branch and
another event change nothing, and a push to the tracked branch deploys the new commit.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import pytest

from tests.conftest import wait_until
from tests.faults.harness import JOB_FILES, Marks, is_deployed, job_env
from tests.webhook_hosts import SENDERS, bitbucket_branch_deleted

pytestmark = pytest.mark.e2e

SECRET = "whsec-e2e-hosts-7f3a"


def post(port: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def syncs(port: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(v) for v in re.findall(r'^hotreload_syncs_total\{result="[^"]+"\} (\S+)$', text, re.M))


def test_each_host_push_hook_deploys_the_tracked_branch_only(tmp_path, remote, stack_factory):
    marks = Marks(tmp_path)
    previous = remote.commit(JOB_FILES)
    stack = stack_factory(remote, WEBHOOK_SECRET=SECRET, **job_env(tmp_path, GITHUB_SYNC_INTERVAL="3600"))
    port = stack.env["DEV_HEALTH_PORT"]
    wait_until(lambda: is_deployed(stack, marks, previous), 60, what="the boot deploy")

    for name in ("gitlab", "gitea", "forgejo", "bitbucket", "github"):
        sender = SENDERS[name]
        commit = remote.commit({"README": name}, message=f"pushed, {name} tells")
        before = syncs(port)

        if sender.test_event is not None:
            ping = json.dumps({"repository": {"full_name": "test/app"}}).encode()
            assert post(port, sender.path, ping, sender.headers(ping, SECRET, sender.test_event)) == (
                200,
                {"action": "pong"},
            ), name
        elsewhere = sender.push("feature", commit, before=previous)
        assert post(port, sender.path, elsewhere, sender.headers(elsewhere, SECRET)) == (
            202,
            {"action": "ignored", "reason": "push to another branch"},
        ), name
        tracked = sender.push(remote.branch, commit, before=previous)
        other = post(port, sender.path, tracked, sender.headers(tracked, SECRET, sender.other_event))
        assert other[0] == 202 and other[1]["action"] == "ignored", (name, other)
        if name == "bitbucket":
            deleted = bitbucket_branch_deleted(remote.branch, previous)
            assert post(port, sender.path, deleted, sender.headers(deleted, SECRET))[1]["action"] == "ignored"
        wrong = post(port, sender.path, tracked, {**sender.headers(tracked, "not-the-secret")})
        assert wrong[0] == 401, (name, wrong)
        assert syncs(port) == before, f"{name}: a delivery that is no push to the branch made a sync"
        assert not marks.of("pre-start", commit)

        assert post(port, sender.path, tracked, sender.headers(tracked, SECRET)) == (
            202,
            {"action": "sync"},
        ), name
        wait_until(
            lambda c=commit: is_deployed(stack, marks, c), 15, what=f"the deploy {name}'s push asks for"
        )
        previous = commit

    assert SECRET not in stack.log()
    assert "Traceback" not in stack.log()
