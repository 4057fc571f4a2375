"""Where a secret could leak, read the way an attacker on the box would: for the secret tests.

with CmdlineSampler({"token": marker}) as sampler:
    ...run the stack...
assert sampler.git_commands["fetch"] and not sampler.hits
assert all(marker.encode() not in value for _, value in redis_items(url))
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import zlib
from collections.abc import Iterator

import redis


class CmdlineSampler:
    """Reads /proc/*/cmdline of every process every few ms in a thread; keeps those holding a marker.

    ``git_commands`` counts the git sub-commands it saw (``fetch``, ``ls-remote`` ...), so a
    test can prove the sampler caught the processes that use the secret.
    """

    def __init__(self, markers: dict[str, str], every: float = 0.005):
        self.markers = {name: value.encode() for name, value in markers.items()}
        self.every = every
        self.hits: list[str] = []
        self.samples = 0
        self.git_commands: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                with contextlib.suppress(OSError):
                    with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                        cmdline = handle.read()
                    argv = cmdline.split(b"\0")
                    if argv[0] == b"git" and len(argv) > 1:
                        self.git_commands[argv[1].decode(errors="replace")] += 1
                    for name, value in self.markers.items():
                        if value in cmdline:
                            self.hits.append(
                                f"{name} in pid {entry.name}: {cmdline.replace(value, b'<SECRET>')[:200]!r}"
                            )
            self.samples += 1
            self._stop.wait(self.every)

    @property
    def git_seen(self) -> int:
        return sum(self.git_commands.values())

    def __enter__(self) -> CmdlineSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def redis_items(url: str) -> Iterator[tuple[bytes, bytes]]:
    """Every key and every value (strings, hashes, lists, sets, zsets, streams) of the server.

    RQ keeps job data zlib-compressed: such values are also given decompressed.
    """
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(count=500):
        kind = client.type(key)
        values: list[bytes] = []
        if kind == b"string":
            values = [client.get(key) or b""]
        elif kind == b"hash":
            for field, value in client.hgetall(key).items():
                values += [field, value]
        elif kind == b"list":
            values = client.lrange(key, 0, -1)
        elif kind == b"set":
            values = list(client.smembers(key))
        elif kind == b"zset":
            values = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == b"stream":
            for _, fields in client.xrange(key):
                for field, value in fields.items():
                    values += [field, value]
        yield key, key
        for value in values:
            yield key, value
            with contextlib.suppress(zlib.error):
                yield key, zlib.decompress(value)


def redis_text(url: str) -> str:
    """The whole server as one text, for grepping."""
    return "\n".join(value.decode(errors="replace") for _, value in redis_items(url))
