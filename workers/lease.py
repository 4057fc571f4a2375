"""Leases in Redis: which instance of a deployment runs a job, and a bound on how long a dead one blocks it.

A lease is a redis-py ``Lock`` whose token names the holder (``<instance> <token> <commit>``):
the first instance to acquire it holds it; the random part makes the token this claim's
own, so only the claim that set it can renew it (``Lock.reacquire``) or release it. A holder
that dies stops renewing, and the key expires after at most ``LEASE_TTL`` seconds::

    lease = Lease.new(redis, keys.lease(JobKind.PRE), instance="web-1", commit=sha)
    if lease.acquire():
        with lease.heartbeat():          # renews every HEARTBEAT_INTERVAL seconds
            ...run PRE_DEPLOY...
        lease.release()                  # only if still ours
    else:
        print("held by", lease.holder())

Timing: a live holder renews every 3 s to a 10 s expiry, so two missed renewals are
tolerated (a slow Redis, a GC pause); a holder killed with its container is replaced
at most 10 s after its last renewal.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from redis.exceptions import LockError
from redis.lock import Lock

from workers.contract import DeployKeys, JobKind

LEASE_TTL = 10.0
HEARTBEAT_INTERVAL = 3.0


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, read from its value."""

    instance: str
    token: str
    commit: str

    @classmethod
    def parse(cls, value: Any) -> Holder | None:
        if value is None:
            return None
        text = value.decode() if isinstance(value, bytes) else str(value)
        instance, _, rest = text.partition(" ")
        token, _, commit = rest.partition(" ")
        return cls(instance=instance, token=token, commit=commit)


class Lease:
    """One claim on one lease key (its value is unique to the claim)."""

    def __init__(self, connection: Any, key: str, value: str, ttl: float = LEASE_TTL):
        self.connection = connection
        self.key = key
        self.value = value
        # thread_local=False: the heartbeat thread renews the claim the main thread made.
        self.lock = Lock(connection, key, timeout=ttl, thread_local=False)
        self.lock.local.token = value.encode()

    @classmethod
    def new(cls, connection: Any, key: str, instance: str, commit: str, ttl: float = LEASE_TTL) -> Lease:
        """A fresh claim of ``instance`` (instance ids never contain spaces) for ``commit``."""
        return cls(connection, key, f"{instance} {secrets.token_hex(8)} {commit}", ttl)

    @property
    def holder_of_this_claim(self) -> Holder:
        holder = Holder.parse(self.value)
        assert holder is not None
        return holder

    def acquire(self) -> bool:
        return bool(self.lock.acquire(blocking=False, token=self.value))

    def renew(self) -> bool:
        """Push the expiry back to a full TTL; False when the lease is no longer this claim's."""
        try:
            return bool(self.lock.reacquire())
        except LockError:
            return False

    def release(self) -> bool:
        """Delete the lease if it is still this claim's (never someone else's)."""
        try:
            self.lock.release()
        except LockError:
            return False
        return True

    def holder(self) -> Holder | None:
        """Whoever holds the key now (this claim or another one), None when free."""
        return Holder.parse(self.connection.get(self.key))

    def heartbeat(
        self,
        interval: float = HEARTBEAT_INTERVAL,
        keep_going: Callable[[], bool] | None = None,
        on_lost: Callable[[Holder | None], None] | None = None,
    ) -> Heartbeat:
        return Heartbeat(self, interval, keep_going, on_lost)


class Heartbeat:
    """A daemon thread renewing a lease until stopped, ``keep_going()`` turns false, or the lease is lost.

    Use it as a context manager around the work, or ``start()``/``stop()``. A Redis error
    is not a loss: the next beat tries again while the TTL still covers it.
    """

    def __init__(
        self,
        lease: Lease,
        interval: float,
        keep_going: Callable[[], bool] | None,
        on_lost: Callable[[Holder | None], None] | None,
    ):
        self.lease = lease
        self.interval = interval
        self.keep_going = keep_going
        self.on_lost = on_lost
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease {lease.key}", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if self.keep_going is not None and not self.keep_going():
                    return
                if not self.lease.renew():
                    self.lost = True
                    if self.on_lost is not None:
                        self.on_lost(self.lease.holder())
                    return
            except Exception:  # noqa: BLE001 - Redis hiccup: the TTL covers two missed beats
                continue


_RELEASE_INSTANCE = """
local value = redis.call('get', KEYS[1])
if value and string.sub(value, 1, string.len(ARGV[1])) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


def release_left_by(connection: Any, key: str, instance: str) -> bool:
    """At boot: free a lease an earlier run of this same instance left (that process is gone)."""
    return bool(connection.eval(_RELEASE_INSTANCE, 1, key, f"{instance} "))


def job_lease_key(keys: DeployKeys, kind: JobKind, commit: str) -> str:
    """PRE_DEPLOY: one lease for the deployment (no two migrations at once); others: one per commit."""
    return keys.lease(kind) if kind is JobKind.PRE else keys.lease(kind, commit)
