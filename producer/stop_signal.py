"""SIGTERM and SIGINT as an exception, so a long-running loop unwinds through its ``finally``.

raise_stop_on_signals()
try:
    loop()
except Stop:
    ...  # honcho (or Ctrl-C) asked us to stop
"""

from __future__ import annotations

import signal
from typing import Any


class Stop(Exception):
    """SIGTERM or SIGINT arrived: leave the loop."""


def _raise_stop(signum: int, frame: Any) -> None:
    raise Stop()


def raise_stop_on_signals() -> None:
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
