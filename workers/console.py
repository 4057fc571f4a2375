"""hotreload's own log lines on stdout (the container log), filtered by LOG_LEVEL.

Every line of ours starts with its level tag, as the template's did (``[INFO]``,
``[WARN]``, ``[ERROR]``, ``[DEBUG]``); a line without one is INFO. Job output is not
ours and is never filtered (it goes through ``workers.runner``)::

    say("[INFO] Commit abc1234 deployed")      # hidden with LOG_LEVEL=warning
    say("[DEBUG] plan: Wait(...)")             # shown only with LOG_LEVEL=debug
"""

from __future__ import annotations

import os

LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40}
_TAGS = {"[DEBUG]": 10, "[INFO]": 20, "[WARN]": 30, "[WARNING]": 30, "[ERROR]": 40}


def threshold() -> int:
    return LEVELS.get(os.environ.get("LOG_LEVEL", "info").strip().lower(), 20)


def level_of(line: str) -> int:
    tag = line.split(" ", 1)[0]
    return _TAGS.get(tag, 20)


def enabled(level: int) -> bool:
    return level >= threshold()


def say(line: str) -> None:
    """Print one line of ours if LOG_LEVEL lets it through."""
    if level_of(line) >= threshold():
        print(line, flush=True)
