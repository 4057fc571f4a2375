"""Configuration errors: pydantic's error list turned into ``VARIABLE: what is wrong`` lines.

One line per problem, in the order of the settings; a value is echoed (cut to 60
characters, quoted) only for variables that hold no secret, and every secret is masked
even inside another variable's value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import SecretStr, ValidationError

from producer.config_types import ERROR_TYPE
from producer.git_url import token_pieces
from producer.url_parts import MASK, credential_pieces, url_userinfo

ECHO_LIMIT = 60


class ConfigError(Exception):
    """The environment is not a valid configuration.

    ``problems`` has one line per problem, ``"<VARIABLE>: <what is wrong>"``; no line
    holds a secret value. ``str(error)`` is the lines joined by newlines.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems: list[str] = list(problems)
        super().__init__(self.problems)

    def __str__(self) -> str:
        return "\n".join(self.problems)


def unsafe_values(values: Mapping[str, Any], secrets: Iterable[str], git_urls: Iterable[str]) -> list[str]:
    """Every value that must not show in a problem line, even inside another variable's value.

    The secrets; the git URLs whole and their http(s) credentials; REDIS_URL whole and
    any credential it holds. Parsed best-effort: the URL may be malformed. Longest first.
    """
    found: set[str] = set()
    for name in secrets:
        value = values.get(name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            found.add(value)
    for name in git_urls:
        value = values.get(name)
        if isinstance(value, str):
            found |= {value, *token_pieces(value)}
    redis = values.get("REDIS_URL")
    if isinstance(redis, str):
        found |= {redis, *credential_pieces(url_userinfo(redis))}
    return sorted((s for s in found if s), key=lambda s: (-len(s), s))


def echo(value: Any, secrets: Iterable[str]) -> str:
    """The value as shown in a problem line: secrets masked, cut to 60 chars, repr-quoted."""
    text = value if isinstance(value, str) else repr(value)
    for secret in secrets:
        text = text.replace(secret, MASK)
    shown = repr(text[:ECHO_LIMIT])
    return shown + "..." if len(text) > ECHO_LIMIT else shown


def problem_lines(
    error: ValidationError,
    values: Mapping[str, Any],
    *,
    fields: Iterable[str],
    no_echo: Iterable[str],
    secrets: Sequence[str],
) -> list[str]:
    """Pydantic's errors as ``VARIABLE: what is wrong[, got 'value']`` lines, one per variable.

    An error of the settings' own types says its message; any other (a type that says
    nothing of its own) says "has an invalid value". Errors not about a variable are left out.
    """
    known, hidden = set(fields), set(no_echo)
    problems: list[str] = []
    seen: set[str] = set()
    for detail in error.errors(include_url=False, include_input=False):
        loc = detail.get("loc") or ()
        name = str(loc[0]) if loc else ""
        if name not in known or name in seen:
            continue
        seen.add(name)
        message = detail["msg"] if detail.get("type") == ERROR_TYPE else "has an invalid value"
        line = f"{name}: {message}"
        if name not in hidden and name in values:
            line += f", got {echo(values[name], secrets)}"
        problems.append(line)
    return problems


def ordered(problems: Iterable[str], fields: Sequence[str]) -> list[str]:
    """Problems in the order of the fields (the order of the README table)."""
    order = {name: index for index, name in enumerate(fields)}
    return sorted(problems, key=lambda line: order.get(line.partition(":")[0], len(order)))
