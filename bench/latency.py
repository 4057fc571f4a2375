"""Push to PRE_DEPLOY start, push to POST_DEPLOY done, and bursts of pushes.

Every trial starts from an idle stack, waits a random part of the sync interval (so pushes
land at random points of the poll cycle), commits, and times from the moment ``git push``
returns. The waits are stratified: trial k of n waits a random time inside the k-th n-th of
the interval, in shuffled order, so even 20 trials cover the whole cycle evenly (plain random
waits left the median of 20 trials wandering by about ±0.1 s at a 1 s interval)::

    result = push_trials(deploys, remote, trials=20)             # polling only
    result = push_trials(deploys, remote, trials=20, webhook=True)
    result.pre, result.post                                        # seconds per trial

With ``webhook=True`` the bench then sends the push event GitHub would send, signed with
GITHUB_WEBHOOK_SECRET, to ``POST /webhook/github``; while the poller has no such endpoint it
pushes ``sync`` on the poller's command list instead (what the webhook does) and says so.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from functools import partial

from bench.deploys import Deploys
from bench.stack import BenchError, GitRemote, signed_push_request, wait_until
from workers.contract import wake_poller

WEBHOOK_SECRET = "bench-webhook-secret"
WEBHOOK = "webhook (POST /webhook/github)"
FALLBACK = "rpush sync (no /webhook/github endpoint yet)"


def send_webhook(port: int, secret: str, branch: str, sha: str) -> bool:
    """POST a signed GitHub push event; False when the poller has no webhook endpoint."""
    request = signed_push_request(port, secret, branch, sha, {"X-GitHub-Delivery": f"bench-{sha[:12]}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 405, 501):
            return False
        raise BenchError(f"the webhook answered {exc.code}: {exc.read()[:200]!r}") from None
    try:
        action = json.loads(answer).get("action")
    except (ValueError, AttributeError):
        action = None
    if action != "sync":
        raise BenchError(f"the webhook did not ask for a sync: {answer[:200]!r}")
    return True


def stratified(n: int, span: float) -> list[float]:
    """n random delays in [0, span), one in each n-th of it, shuffled."""
    delays = [(k + random.random()) * span / n for k in range(n)]
    random.shuffle(delays)
    return delays


@dataclass
class PushResult:
    pre: list[float] = field(default_factory=list)
    post: list[float] = field(default_factory=list)
    trigger: str = "poll"


def push_trials(deploys: Deploys, remote: GitRemote, trials: int, webhook: bool = False) -> PushResult:
    result = PushResult(trigger=WEBHOOK if webhook else f"poll every {deploys.interval:g} s")
    port = int(deploys.stack.env["DEV_HEALTH_PORT"])
    secret = deploys.stack.env.get("GITHUB_WEBHOOK_SECRET", WEBHOOK_SECRET)
    span = deploys.interval if not webhook else 1.0  # webhook: the poll (30 s) never competes
    for delay in stratified(trials, span):
        wait_until(lambda: deploys.idle_at(remote.head()), 30, "the stack to be idle", 0.01)
        time.sleep(delay)
        sha = remote.commit(push=False)
        pushed = remote.push()
        if webhook and not send_webhook(port, secret, remote.branch, sha):
            wake_poller(deploys.connection, deploys.keys, "sync")
            result.trigger = FALLBACK
        pre = wait_until(partial(deploys.pre_started, sha), 30, f"PRE_DEPLOY of {sha[:7]}", 0.01)
        post = wait_until(partial(deploys.post_done, sha), 30, f"POST_DEPLOY of {sha[:7]}", 0.01)
        result.pre.append(pre - pushed)
        result.post.append(post - pushed)
    return result


@dataclass
class BurstResult:
    runs: list[int] = field(default_factory=list)
    deployed: list[bool] = field(default_factory=list)
    #: Last push of the burst -> the final commit's PRE_DEPLOY start.
    final_pre: list[float] = field(default_factory=list)


def bursts(
    deploys: Deploys, remote: GitRemote, count: int, commits: int = 10, within: float = 2.0
) -> BurstResult:
    """``count`` bursts of ``commits`` pushes spread over ``within`` seconds."""
    result = BurstResult()
    for _ in range(count):
        wait_until(lambda: deploys.idle_at(remote.head()), 30, "the stack to be idle", 0.01)
        shas: list[str] = []
        start = time.monotonic()
        step = within / commits
        last_push = 0.0
        for i in range(commits):
            time.sleep(max(0.0, start + i * step - time.monotonic()))
            shas.append(remote.commit(push=False))
            last_push = remote.push()
        try:
            deploys.wait_deployed(shas[-1], 30)
            deployed = True
        except BenchError:
            deployed = False
        result.runs.append(deploys.pre_runs(shas))
        result.deployed.append(deployed)
        final = deploys.pre_started(shas[-1])
        if final is not None:
            result.final_pre.append(final - last_push)
    return result
