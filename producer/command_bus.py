"""The poller's command list: how webhooks, the CLI, the worker and the app wake it up.

Commands are pushed on one Redis list per instance (``DeployKeys.commands``): ``sync`` (a
push webhook, ``hotreload sync``: look at the remote now), ``wake`` (a job ended),
``gate`` (the app supervisor asks whether it may start), ``steer`` (pause, pin, ...
changed). The poller blocks on it between cycles, so any of them is acted on at once::

    bus = CommandBus(redis, keys)
    commands = bus.wait(until=time.monotonic() + 30)    # set() when the deadline passed

The wait blocks in slices shorter than the connection's socket timeout, so a Redis that
stops answering is noticed within a slice instead of hanging the loop.
"""

from __future__ import annotations

import time
from typing import Any

from workers.contract import DeployKeys
from workers.redis_connection import MAX_BLOCK  # below the connections' socket timeout

#: Period of Redis's cron (default hz 10), which is when it ends blocked commands' timeouts.
REDIS_TICK = 0.1


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class CommandBus:
    """Blocking reads of one instance's command list."""

    def __init__(self, connection: Any, keys: DeployKeys):
        self.connection = connection
        self.key = keys.commands

    def wait(self, until: float) -> set[str]:
        """Commands that arrived before the monotonic deadline ``until`` (a burst is read as one set)."""
        while True:
            remaining = until - time.monotonic()
            # Redis ends a BLPOP timeout on its next cron tick (up to 0.1 s late): block until a
            # tick before the deadline and sleep the rest here, so cycles last the interval.
            early = REDIS_TICK if remaining > 2 * REDIS_TICK else 0.0
            block = min(MAX_BLOCK, max(0.01, remaining - early))
            item = self.connection.blpop([self.key], timeout=block)
            if item is not None:
                commands = {_text(item[1])}
                while (extra := self.connection.lpop(self.key)) is not None:
                    commands.add(_text(extra))
                return commands
            if time.monotonic() + early >= until:
                time.sleep(max(0.0, until - time.monotonic()))
                return set()
