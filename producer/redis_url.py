"""Redis locations (``redis://``, ``rediss://``, ``unix://``): check them and hide their password."""

from __future__ import annotations

import re

from producer.url_parts import (
    MASK,
    SCHEME_RE,
    UrlProblem,
    check_hostport,
    has_control,
    split_netloc,
    url_path,
    url_userinfo,
    userinfo_secrets,
)

REDIS_SCHEMES = ("redis", "rediss", "unix")


def check_redis_url(text: str) -> str:
    """Return ``text`` if it is a Redis URL; raise :class:`UrlProblem` (never holding it) if not."""
    if any(ch.isspace() for ch in text) or has_control(text):
        raise UrlProblem("must not contain spaces or control characters")
    match = SCHEME_RE.match(text)
    if match is None or match.group(1).lower() not in REDIS_SCHEMES:
        raise UrlProblem("must be a redis://, rediss:// or unix:// URL")
    netloc, remainder = split_netloc(text[match.end() :])
    hostport = netloc.rpartition("@")[2]
    path = url_path(remainder)
    if match.group(1).lower() == "unix":
        if hostport not in ("", "localhost"):
            raise UrlProblem("must not name a host in a unix:// URL: use unix:///path/to/redis.sock")
        if path in ("", "/"):
            raise UrlProblem("has no socket path")
        return text
    check_hostport(hostport)
    if path not in ("", "/") and not re.fullmatch(r"/[0-9]{1,5}", path):
        raise UrlProblem("has an invalid database number: the path must be /0, /1, ...")
    return text


def redis_password(url: str) -> set[str]:
    """The password of a Redis URL (as written and decoded), for masking."""
    userinfo = url_userinfo(url)
    return userinfo_secrets(userinfo) if userinfo else set()


def mask_redis_url(url: str) -> str:
    """The URL with its credentials replaced by ``***``."""
    match = SCHEME_RE.match(url)
    if match is None:
        return url
    netloc, remainder = split_netloc(url[match.end() :])
    _userinfo, at, hostport = netloc.rpartition("@")
    if not at:
        return url
    return f"{match.group(0)}{MASK}@{hostport}{remainder}"
