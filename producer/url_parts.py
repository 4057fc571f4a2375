"""The authority part of a URL, read the way URL parsers split it: user info, host, port.

Shared by the git and Redis URL checks. A :class:`UrlProblem` says what is wrong in
words only: its message never holds the URL, which may carry a credential.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import unquote

SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
HOST_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
#: What a credential or secret is replaced with wherever it would show.
MASK = "***"


class UrlProblem(ValueError):
    """What is wrong with a URL; the message never holds the URL."""


def has_control(value: str) -> bool:
    """Whether the value holds a character that is neither printable nor a plain space."""
    return not value.isprintable()


def split_netloc(rest: str) -> tuple[str, str]:
    """``host:port/path?q`` -> (``host:port``, ``/path?q``), as a URL parser splits it."""
    ends = [i for i in (rest.find(c) for c in "/?#") if i != -1]
    cut = min(ends) if ends else len(rest)
    return rest[:cut], rest[cut:]


def url_path(remainder: str) -> str:
    """The path of ``/path?query#fragment``."""
    return re.split(r"[?#]", remainder, maxsplit=1)[0]


def check_hostport(hostport: str) -> None:
    """Raise UrlProblem unless ``hostport`` is a host name, IPv4 or [IPv6], with an optional port."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end == -1:
            raise UrlProblem("has an invalid host")
        try:
            ipaddress.IPv6Address(hostport[1:end])
        except ValueError:
            raise UrlProblem("has an invalid host") from None
        after = hostport[end + 1 :]
        if after and not after.startswith(":"):
            raise UrlProblem("has an invalid host")
        port = after[1:] if after else ""
    else:
        host, _, port = hostport.partition(":")
        if not host:
            raise UrlProblem("has no host")
        if len(host) > 253 or not HOST_RE.fullmatch(host):
            raise UrlProblem("has an invalid host")
    if port and not (len(port) <= 5 and port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise UrlProblem("has an invalid port")


def url_userinfo(url: str) -> str:
    """The ``user:password`` part of ``scheme://user:password@host/...`` ("" when none)."""
    match = SCHEME_RE.match(url)
    if match is None:
        return ""
    netloc, _ = split_netloc(url[match.end() :])
    return netloc.rpartition("@")[0]


def userinfo_secret(userinfo: str) -> str | None:
    """The credential of a user info: the password, or the user alone (``https://TOKEN@host``)."""
    user, colon, password = userinfo.partition(":")
    return unquote(password if colon and password else user) or None


def userinfo_secrets(userinfo: str) -> set[str]:
    """The credential of a user info as written and percent-decoded, for masking."""
    user, colon, password = userinfo.partition(":")
    secret = password if colon and password else user
    return {s for s in (secret, unquote(secret)) if s}


def credential_pieces(userinfo: str) -> set[str]:
    """The user info whole and split at ``@`` and ``:``, as written and percent-decoded.

    Malformed credentials (``https://TOKEN@@host``) have no one right reading: mask
    the whole user info and each of its parts.
    """
    found: set[str] = set()
    for piece in (userinfo, *re.split(r"[@:]", userinfo)):
        found.update((piece, unquote(piece)))
    return {s for s in found if s}
