"""workers.redis_connection against a real redis-server, through a proxy that can go half-open."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from tests.conftest import RedisServer
from tests.half_open_proxy import HalfOpenProxy
from workers.redis_connection import RETRIES, SOCKET_TIMEOUT, blpop, connect
from workers.redis_outage import REDIS_DOWN


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[HalfOpenProxy]:
    proxy = HalfOpenProxy(redis_server.port).start()
    yield proxy
    proxy.stop()


def test_blpop_waits_longer_than_the_socket_timeout_in_chunks(redis_url: str) -> None:
    connection = connect(redis_url)
    started = time.monotonic()
    assert blpop(connection, ["nothing"], timeout=SOCKET_TIMEOUT + 2) is None  # no TimeoutError
    assert SOCKET_TIMEOUT + 2 <= time.monotonic() - started < SOCKET_TIMEOUT + 3

    threading.Timer(0.5, lambda: connect(redis_url).rpush("wake", "now")).start()
    started = time.monotonic()
    assert blpop(connection, ["wake"], timeout=30) == (b"wake", b"now")
    assert time.monotonic() - started < 1.5, "an item ends the wait at once"


def test_a_connection_that_stops_answering_fails_within_seconds_and_recovers(proxy: HalfOpenProxy) -> None:
    connection = connect(proxy.url)
    assert connection.ping()
    proxy.freeze()
    started = time.monotonic()
    with pytest.raises(REDIS_DOWN):
        connection.get("key")
    failed_after = time.monotonic() - started
    # Each try waits one socket timeout (the retry reconnects into the same silence).
    assert failed_after < (RETRIES + 1) * SOCKET_TIMEOUT + 1.5
    proxy.resume()
    assert connection.ping(), "the same client reconnects once Redis answers again"
    print(f"half-open: a command failed after {failed_after:.1f}s")


def test_one_dead_connection_is_replaced_by_the_retry_without_an_error(proxy: HalfOpenProxy) -> None:
    connection = connect(proxy.url)
    connection.set("key", "value")
    proxy.freeze()  # the open connection is dead for good...
    proxy.resume()  # ...but new ones work (a load balancer that dropped one idle flow)
    started = time.monotonic()
    assert connection.get("key") == b"value"
    assert time.monotonic() - started < SOCKET_TIMEOUT + 1.5
