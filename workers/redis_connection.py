"""Redis clients that cannot hang: every long-lived process of the stack connects through ``connect``.

A managed Redis behind a load balancer may stop answering without closing the connection
(half-open). A client that waits for the answer without a deadline then hangs for ever,
and a poller hung that way still looks healthy. So every connection gets redis-py's own
guards::

    connection = connect(settings.redis_url_effective)        # poller, worker, app, HTTP reads, CLI
    item = blpop(connection, [keys.commands], timeout=30.0)   # blocks in chunks of MAX_BLOCK seconds

- ``socket_timeout``: a command without an answer fails with ``TimeoutError`` after
  SOCKET_TIMEOUT seconds; ``socket_connect_timeout`` the same for connecting;
- ``socket_keepalive`` (with Linux's idle/interval/count where it has them): the kernel
  notices a peer that went away while the connection is idle;
- ``health_check_interval``: a connection idle for longer is PINGed before it is used;
- ``retry``: one blip (a reset connection, a lost answer) is retried inside redis-py with
  exponential back-off; a longer outage raises the errors that each process already rides
  out (``workers.redis_outage``) after about RETRIES + 1 socket timeouts.

A blocking command waits in Redis for longer than the socket timeout at its peril: the
client would take the silence for a dead connection. ``blpop`` waits in chunks of at most
MAX_BLOCK seconds instead, and the worker's dequeue uses the same bound.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from workers.redis_outage import REDIS_DOWN

#: Seconds to wait for an answer (and to connect) before the connection is taken for dead.
SOCKET_TIMEOUT = 3
CONNECT_TIMEOUT = 3
#: The longest a blocking command may wait in Redis: under SOCKET_TIMEOUT with room for Redis
#: ending the wait on its next cron tick (hz 10) and for the round trip.
MAX_BLOCK = 2
#: A connection idle for longer than this is checked with a PING before its next command.
HEALTH_CHECK_INTERVAL = 10
#: Retries of a failed command (after reconnecting) before the error reaches the caller.
RETRIES = 1


def _keepalive_options() -> dict[int, int]:
    """Probe an idle connection after 10 s, every 3 s, 3 times: where the platform has these options."""
    wanted = {"TCP_KEEPIDLE": 10, "TCP_KEEPINTVL": 3, "TCP_KEEPCNT": 3}
    return {getattr(socket, name): value for name, value in wanted.items() if hasattr(socket, name)}


def connect(url: str, **options: Any) -> redis.Redis:
    """A client for ``url`` with the guards of this module; ``options`` (e.g. ``decode_responses``) are added."""
    guards: dict[str, Any] = {
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_keepalive": True,
        "socket_keepalive_options": _keepalive_options(),
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.2), RETRIES),
        "retry_on_error": list(REDIS_DOWN),
    }
    return redis.Redis.from_url(url, **{**guards, **options})


def blpop(connection: redis.Redis, keys: Sequence[str], timeout: float) -> Any:
    """``BLPOP keys`` waiting up to ``timeout`` seconds in all, in chunks of at most MAX_BLOCK seconds."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        # 0 would mean "wait for ever" to Redis.
        item = connection.blpop(list(keys), timeout=max(0.01, min(remaining, MAX_BLOCK)))
        if item is not None or remaining <= MAX_BLOCK:
            return item
