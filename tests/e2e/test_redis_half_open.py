"""A Redis connection that stops answering without closing (a load balancer that stops forwarding),
on the real Procfile under honcho with a TCP proxy between the stack and redis-server.

The stack must notice within seconds (the Redis outage logged, no process hung on a read
that never ends), and once forwarding resumes the commit pushed meanwhile deploys. Idle
cycles longer than the socket timeout must not be taken for an outage.
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import GitRemote, RedisServer, wait_until
from tests.e2e.test_jobs_and_app import JOB_FILES, alive, job_env, mark
from tests.half_open_proxy import HalfOpenProxy

pytestmark = pytest.mark.e2e

POLLER_DOWN = "[ERROR] Redis unreachable"
POLLER_WAITS = "poller waits for it with back-off"
POLLER_BACK = "poller resumes"
#: "Never hangs for longer than a few seconds."
NOTICE_WITHIN = 10.0


def seen_after(stack, offset: int, *texts: str) -> bool:
    tail = stack.log()[offset:]
    return any(all(text in line for text in texts) for line in tail.splitlines())


def test_a_half_open_redis_connection_never_hangs_the_poller_and_the_next_commit_deploys_once_it_answers(
    tmp_path, remote: GitRemote, redis_server: RedisServer, stack_factory
):
    proxy = HalfOpenProxy(redis_server.port).start()
    try:
        first = remote.commit(JOB_FILES)
        # A sync interval longer than the socket timeouts: the poller's idle wait blocks that long.
        stack = stack_factory(remote, REDIS_URL=proxy.url, GITHUB_SYNC_INTERVAL="6", **job_env(tmp_path))
        wait_until(lambda: mark(tmp_path, "post-end", first), 40, what="the boot deploy")
        stack.wait_for_syncs(2, timeout=30)
        assert POLLER_DOWN not in stack.log(), "an idle wait longer than the socket timeout is no outage"

        # The load balancer stops forwarding; every connection stays open.
        offset = len(stack.log())
        frozen_at = time.monotonic()
        proxy.freeze()
        second = remote.commit()
        wait_until(
            lambda: seen_after(stack, offset, POLLER_DOWN, POLLER_WAITS),
            NOTICE_WITHIN,
            what="the poller to notice the Redis that does not answer",
        )
        noticed = time.monotonic() - frozen_at
        wait_until(
            lambda: seen_after(stack, offset, POLLER_DOWN, "the worker waits"), NOTICE_WITHIN, what="worker"
        )
        assert not mark(tmp_path, "pre-start", second)

        # Forwarding resumes: the stack reconnects by itself and deploys the commit pushed meanwhile.
        resumed_at, resumed_epoch = time.monotonic(), time.time()
        proxy.resume()
        wait_until(lambda: seen_after(stack, offset, POLLER_BACK), 30, what="the poller to reconnect")
        recovered = time.monotonic() - resumed_at
        wait_until(lambda: mark(tmp_path, "pre-start", second), 30, what="the next commit's PRE_DEPLOY")
        to_pre = mark(tmp_path, "pre-start", second)[0] - resumed_epoch
        wait_until(lambda: mark(tmp_path, "post-end", second), 30, what="the next commit's POST_DEPLOY")
        assert alive(stack)
        stack.stop()  # before the proxy goes: its end is not an outage to report
        print(
            f"half-open Redis: the poller noticed after {noticed:.1f}s; once forwarding resumed, the pending "
            f"commit's PRE_DEPLOY started after {to_pre:.1f}s and the poller logged its reconnection "
            f"after {recovered:.1f}s"
        )
    finally:
        proxy.stop()
