"""A Redis URL as it may be shown: scheme, host and port, never the password.

redis_label("redis://:secret@cache:6380/0")   # "redis://cache:6380"
"""

from urllib.parse import urlsplit


def redis_label(url: str) -> str:
    """The Redis URL without a password, for log lines."""
    parts = urlsplit(url)
    host = parts.hostname or parts.path
    return f"{parts.scheme}://{host}{':' + str(parts.port) if parts.port else ''}"
