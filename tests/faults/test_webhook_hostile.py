"""Case 9: hostile traffic on each ``POST /webhook/<host>`` changes nothing; a flood of signed pushes stays cheap.

Run against every endpoint (github, gitlab, gitea, bitbucket), each with its host's
payload shape and proof of the secret (tests/webhook_hosts.py). With GITHUB_SYNC_INTERVAL
at an hour, only the webhook makes the poller look at the remote, and a commit waits
there. Unsigned, wrongly signed, replayed-with-changed-body (where the host's proof
covers the body: GitLab's token does not), oversized, truncated, stalled and malformed
requests get the documented status codes (401, 413, 411, 400, 404, 202 for what is
ignored) and neither sync nor deploy anything, nor stop the server. One good delivery
then deploys the commit; a flood of 500 signed pushes in a few seconds makes a bounded
number of syncs and runs the new commit's PRE_DEPLOY once.
"""

from __future__ import annotations

import concurrent.futures
import re
import socket
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import wait_until
from tests.faults.harness import JOB_FILES, Marks, deploy_state, is_deployed, job_env
from tests.webhook_hosts import SENDERS, Sender

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

SECRET = "whsec-faults-9"
FLOOD = 500
FLOOD_WORKERS = 8
# The poller drains its command list once per cycle, so a flood costs at most about one sync per
# cycle; a cycle (ls-remote, fetch, decide) takes tens of ms. Generous for a loaded CI machine.
MAX_FLOOD_SYNCS = 60


ENDPOINTS = ("github", "gitlab", "gitea", "bitbucket")


def post(port: int, body: bytes, headers: dict[str, str], path: str) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST")
    for name, value in {"Content-Type": "application/json", **headers}.items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def raw(port: int, data: bytes, read: bool = True) -> str:
    """Send bytes as they are (for what urllib will not send) and return the status line, if any."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        if not read:
            return ""
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer.split(b"\r\n", 1)[0].decode(errors="replace")


def syncs(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return int(
        sum(float(v) for v in re.findall(r'^hotreload_syncs_total\{result="[^"]+"\} (\S+)$', text, re.M))
    )


def healthy(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/dev_health", timeout=10) as response:
        return response.status == 200


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_hostile_webhook_traffic_changes_nothing(endpoint, tmp_path, remote, stack_factory, fault_case):
    sender: Sender = SENDERS[endpoint]
    case = fault_case(f"9 hostile webhook traffic ({sender.path})")
    marks = Marks(tmp_path)
    first = remote.commit(JOB_FILES)
    # GitHub's endpoint keeps the secret's former name; the others take its new one.
    secret_name = "GITHUB_WEBHOOK_SECRET" if endpoint == "github" else "WEBHOOK_SECRET"
    stack = stack_factory(remote, **{secret_name: SECRET}, **job_env(tmp_path, GITHUB_SYNC_INTERVAL="3600"))
    port = int(stack.env["DEV_HEALTH_PORT"])
    wait_until(lambda: is_deployed(stack, marks, first), 30, what="the boot deploy")
    waiting = remote.commit(message="waits for a good webhook")
    before = syncs(port)
    path = sender.path
    good = sender.push(remote.branch, "0" * 40)
    event = {"Content-Type": "application/json", **sender.event(sender.push_event)}

    def signed(body: bytes, event_name: str | None = None) -> tuple[int, str]:
        return post(port, body, sender.headers(body, SECRET, event_name), path)

    hostile: list[tuple[str, tuple[int, str] | str, int | str]] = [
        (name, post(port, good, {**event, **proof}, path), 401) for name, proof in sender.bad_proofs(good)
    ]
    if sender.binds_body:
        hostile += [
            (
                "replayed with a changed body",
                post(
                    port, sender.push(remote.branch, "1" * 40), {**event, **sender.proof(good, SECRET)}, path
                ),
                401,
            ),
            (
                "signature of the body with a space more",
                post(port, good + b" ", {**event, **sender.proof(good, SECRET)}, path),
                401,
            ),
        ]
    hostile += [
        ("signed, not JSON", signed(b"{not json"), 400),
        ("signed, a JSON list", signed(b"[1, 2]"), 400),
        ("signed, not UTF-8", signed(b"\xff\xfe{}"), 400),
        ("signed push to another branch", signed(sender.push("other", "0" * 40)), 202),
        ("signed, another event", signed(good, sender.other_event), 202),
        ("another path", post(port, good, sender.headers(good, SECRET), "/webhook/unknown"), 404),
        (
            "over 1 MiB",
            raw(
                port,
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n".encode() + b"x" * 1000,
            ),
            "413",
        ),
        ("no Content-Length", raw(port, f"POST {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()), "411"),
        (
            "Content-Length not a number",
            raw(port, f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n".encode()),
            "400",
        ),
        (
            "negative Content-Length",
            raw(port, f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n".encode()),
            "400",
        ),
        ("garbage request line", raw(port, b"HELLO THERE\r\n\r\n"), "400"),
        (
            "a header line over 64 KiB",
            raw(port, f"POST {path} HTTP/1.1\r\nX-Big: ".encode() + b"a" * 70000 + b"\r\n\r\n"),
            "431",
        ),
    ]
    # A body cut short, and one that never comes: no answer is owed, and nothing may change.
    raw(port, f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n".encode() + good[:20])
    stalled = socket.create_connection(("127.0.0.1", port), timeout=10)
    stalled.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n".encode())

    with case.trial():
        wrong = []
        for name, answer, expected in hostile:
            got = answer[0] if isinstance(answer, tuple) else answer
            if (
                isinstance(expected, int)
                and got != expected
                or isinstance(expected, str)
                and expected not in got
            ):
                wrong.append(f"{name}: {answer!r}, expected {expected}")
        assert not wrong, "\n".join(wrong)
        assert healthy(port), "the server stopped answering"
        assert syncs(port) == before, "hostile requests made the poller sync"
        assert deploy_state(stack).processed == first and not marks.of("pre-start", waiting)
        case.note(f"{len(hostile) + 2} hostile requests, 0 syncs")
    stalled.close()

    # One good delivery deploys the waiting commit at once.
    with case.trial():
        assert signed(good) == (202, '{"action": "sync"}')
        case.expect_deployed(
            lambda: is_deployed(stack, marks, waiting), 15, what="the deploy the webhook asks for"
        )

    # A flood of signed pushes for one new commit: a bounded number of syncs, one PRE_DEPLOY.
    with case.trial():
        flooded = remote.commit(message="flooded")
        before = syncs(port)
        headers = sender.headers(good, SECRET)
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(FLOOD_WORKERS) as pool:
            codes = list(pool.map(lambda _: post(port, good, headers, path)[0], range(FLOOD)))
        took = time.monotonic() - started
        assert codes == [202] * FLOOD, {c: codes.count(c) for c in set(codes)}
        case.expect_deployed(lambda: is_deployed(stack, marks, flooded), 30, what="the flooded commit")
        made = syncs(port) - before
        assert made <= MAX_FLOOD_SYNCS, f"{FLOOD} pushes made {made} syncs"
        assert len(marks.of("pre-start", flooded)) == 1
        case.note(f"{FLOOD} signed pushes in {took:.1f}s made {made} syncs, 1 PRE_DEPLOY")

    assert stack.process is not None and stack.process.poll() is None
    assert "Traceback" not in stack.log()
    assert SECRET not in stack.log()
