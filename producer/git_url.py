"""Git repository locations: check them, clean them, and take tokens out of them.

A token written into an https URL (``https://TOKEN@host/...`` or
``https://user:TOKEN@host/...``) is taken out: the URL is kept without credentials
and the token is handed back on its own. Problems are :class:`UrlProblem` whose
message never holds the URL.
"""

from __future__ import annotations

import re

from producer.url_parts import (
    HOST_RE,
    SCHEME_RE,
    UrlProblem,
    check_hostport,
    credential_pieces,
    has_control,
    split_netloc,
    url_path,
    url_userinfo,
    userinfo_secret,
)

GIT_SCHEMES = ("https", "http", "ssh", "git", "file")

_SCP_RE = re.compile(r"([^@/:]+)@([^@/:]+):(.+)", re.DOTALL)


def parse_git_url(value: str) -> tuple[str, str | None]:
    """Check a repository location; return it without credentials, and the token it held.

    Accepts https/http/ssh/git/file URLs, scp-like ``user@host:path`` and absolute local
    paths. Raises :class:`UrlProblem` when malformed.
    """
    if value.startswith("/"):
        if has_control(value):
            raise UrlProblem("must not contain control characters")
        return value, None
    if any(ch.isspace() for ch in value) or has_control(value):
        raise UrlProblem("must not contain spaces or control characters")
    match = SCHEME_RE.match(value)
    if match is None:
        return _scp_like(value), None
    scheme = match.group(1).lower()
    if scheme not in GIT_SCHEMES:
        raise UrlProblem("has an unsupported scheme: use https://, http://, ssh://, git:// or file://")
    netloc, remainder = split_netloc(value[match.end() :])
    userinfo, at, hostport = netloc.rpartition("@")
    path = url_path(remainder)
    if scheme == "file":
        if at:
            raise UrlProblem("must not contain credentials in a file:// URL")
        if hostport not in ("", "localhost"):
            raise UrlProblem("must not name a host in a file:// URL: use file:///absolute/path")
        if path in ("", "/"):
            raise UrlProblem("has no repository path")
        return f"file://{hostport}{remainder}", None
    check_hostport(hostport)
    if path in ("", "/"):
        raise UrlProblem("has no repository path")
    if not at:
        return f"{scheme}://{hostport}{remainder}", None
    if scheme in ("http", "https"):
        token = userinfo_secret(userinfo)
        if token is not None and has_control(token):
            raise UrlProblem("holds a token with control characters")
        return f"{scheme}://{hostport}{remainder}", token
    if scheme == "git":
        raise UrlProblem("must not contain credentials in a git:// URL")
    # ssh: a user name is fine (ssh://git@host/...), a password is not.
    if ":" in userinfo:
        raise UrlProblem("must not contain a password in an ssh:// URL: use an SSH key")
    if not userinfo or userinfo.startswith("-"):
        raise UrlProblem("has an invalid user")
    return f"ssh://{userinfo}@{hostport}{remainder}", None


def _scp_like(value: str) -> str:
    scp = _SCP_RE.fullmatch(value)
    if scp is None:
        raise UrlProblem(
            "must be an https://, http://, ssh://, git:// or file:// URL, "
            "an scp-like user@host:path, or an absolute local path"
        )
    user, host, _path = scp.groups()
    if user.startswith("-") or host.startswith("-") or not HOST_RE.fullmatch(host):
        raise UrlProblem("has an invalid user or host")
    return value


def token_pieces(url: str) -> set[str]:
    """Every piece of an http(s) URL's credentials, for masking (an ssh:// user name is no secret)."""
    scheme = SCHEME_RE.match(url)
    if scheme is None or scheme.group(1).lower() not in ("http", "https"):
        return set()
    return credential_pieces(url_userinfo(url))
