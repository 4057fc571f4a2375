"""The source: where the branch head comes from (ls-remote, fetch) and the back-off when the remote fails.

It never raises for a remote that does not answer: the failure is counted, logged once per
new error (and every tenth time), and the next look is put off with a growing back-off.
Boot and the loop use the same ``look``, so a container restarted while the git host is
down starts on what it has instead of dying::

    source = Source(checkout, interval=30)
    head = source.look()       # the fetched head, or None while it was never reachable
    source.failures, source.last_error, source.next_look   # for /status and the wait
"""

from __future__ import annotations

import time
from collections.abc import Callable

from producer.git_sync import GitCheckout, GitSyncError
from producer.planner import backoff_delay
from workers.console import say

#: The longest pause between two looks at a failing remote.
MAX_BACKOFF = 60.0
#: The first pause after a failed clone (doubling up to MAX_BACKOFF).
CLONE_RETRY = 2.0


class Source:
    """The remote branch of the app repository, seen through one ``GitCheckout``."""

    def __init__(
        self, checkout: GitCheckout, interval: float, on_result: Callable[[str], None] | None = None
    ):
        self.checkout = checkout
        self.interval = interval
        self.on_result = on_result  # "changed" / "unchanged" / "error", for /metrics
        self.head: str | None = None  # the last head fetched by this process
        self.ready = False  # the workspace's clone was checked (or made) by this process
        self.failures = 0
        self.last_error: str | None = None
        self.next_look = 0.0  # monotonic

    def due(self) -> bool:
        return time.monotonic() >= self.next_look

    def look(self) -> str | None:
        """Clone when there is no clone, ask the remote for the head, fetch it when it moved."""
        try:
            if not self.checkout.is_cloned() or not self.ready:
                if self.head is not None:
                    say(f"[WARN] No clone in {self.checkout.path} any more; cloning the repository again")
                # On a clone kept from an earlier run this needs no remote: it checks the clone is
                # of this repository and ends the git processes (and removes the lock files) that
                # a killed or stopped poller left in it, which would fail every later checkout.
                self.checkout.ensure_cloned()
                self.ready = True
                say(f"[INFO] Repository ready in {self.checkout.path}, branch {self.checkout.branch}")
            remote = self.checkout.remote_head()
            if remote != self.checkout.fetched:
                self.checkout.fetch()
            changed = self.head is not None and self.checkout.fetched != self.head
            if changed:
                say(f"[INFO] New commit detected on {self.checkout.branch}: {self.checkout.fetched}")
            self.head = self.checkout.fetched
        except GitSyncError as exc:
            self._failed(str(exc))
            return self.head
        if self.failures:
            say(f"[INFO] Remote reachable again after {self.failures} failed sync(s)")
        self.failures, self.last_error = 0, None
        self.next_look = time.monotonic() + self.interval
        self._count("changed" if changed else "unchanged")
        return self.head

    def _failed(self, error: str) -> None:
        self.failures += 1
        if not self.checkout.is_cloned():
            delay = backoff_delay(self.failures, CLONE_RETRY, MAX_BACKOFF)
            say(f"[ERROR] Clone failed (attempt {self.failures}): {error}; retrying in {delay:.0f}s")
        else:
            delay = backoff_delay(self.failures, self.interval, max(self.interval, MAX_BACKOFF))
            if error != self.last_error or self.failures % 10 == 1:
                say(f"[ERROR] Sync failed ({self.failures} in a row): {error}; next try in {delay:.0f}s")
        self.last_error = error
        self.next_look = time.monotonic() + delay
        self._count("error")

    def _count(self, result: str) -> None:
        if self.on_result is not None:
            self.on_result(result)
