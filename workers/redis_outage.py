"""Riding out a Redis outage: say it once, wait with back-off, say when it is over.

Redis may go away (an external REDIS_URL restarting, a network blip). No process of the
stack may die of it — honcho would stop the whole container — and none may spin or flood
the log. Each process keeps one ``Outage`` and reports to it::

    outage = Outage("worker")
    try:
        connection.ping()
        outage.over()           # "[INFO] Redis reachable again after 12s: worker resumes"
    except REDIS_DOWN as exc:
        outage.down(exc)        # "[ERROR] Redis unreachable (ConnectionError): worker waits ..." once

    result = until_redis_answers(lambda: tracker.record_run(...), outage)   # blocks, with back-off
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from workers.console import say

#: The errors that mean "Redis is not reachable right now" (as opposed to a bad command).
REDIS_DOWN: tuple[type[Exception], ...] = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
MAX_WAIT = 5.0

T = TypeVar("T")


class Outage:
    """Tracks whether Redis is down for one process, so the outage is logged once, not per retry."""

    def __init__(self, who: str):
        self.who = who
        self.since: float | None = None
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self.since is not None

    def down(self, exc: BaseException | None = None) -> None:
        with self._lock:
            if self.since is not None:
                return
            self.since = time.time()
        kind = type(exc).__name__ if exc is not None else "ConnectionError"
        say(f"[ERROR] Redis unreachable ({kind}): {self.who} waits for it with back-off")

    def over(self) -> None:
        with self._lock:
            if self.since is None:
                return
            lasted, self.since = time.time() - self.since, None
        say(f"[INFO] Redis reachable again after {lasted:.0f}s: {self.who} resumes")


def until_redis_answers(
    action: Callable[[], T],
    outage: Outage,
    first_wait: float = 0.5,
    max_wait: float = MAX_WAIT,
    give_up: Callable[[], bool] | None = None,
) -> T:
    """Run ``action`` until it does not fail for want of Redis; other errors propagate at once.

    ``give_up`` (checked after each failure) ends the wait by re-raising the Redis error.
    """
    wait = first_wait
    while True:
        try:
            result = action()
        except REDIS_DOWN as exc:
            outage.down(exc)
            if give_up is not None and give_up():
                raise
            time.sleep(wait)
            wait = min(max_wait, wait * 2)
            continue
        outage.over()
        return result


class QuietConnectionErrors(logging.Filter):
    """Drops RQ's own "could not connect to Redis" lines (one per retry) and reports to ``outage`` instead."""

    def __init__(self, outage: Outage):
        super().__init__()
        self.outage = outage

    def filter(self, record: logging.LogRecord) -> bool:
        if "could not connect to Redis" in str(record.msg):
            self.outage.down(None)
            return False
        return True
