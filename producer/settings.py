"""The one settings model of hotreload: every environment variable, validated at once.

Configuration comes from environment variables only (no ``.env`` file): from
``os.environ`` by default, or from an explicit mapping in tests. Every problem is
collected and reported together, one line per problem, in the form
``VARIABLE: what is wrong`` -- secret values (tokens, passwords, URLs that may hold
credentials) are never echoed::

    try:
        settings = load_settings()            # or load_settings({"GITHUB_REPO_URL": ...})
    except ConfigError as exc:
        for line in exc.problems:             # "GITHUB_SYNC_INTERVAL: must be a positive ..."
            print(line, file=sys.stderr)
        raise SystemExit(2)

    pre = settings.job(JobKind.PRE)           # JobConfig(kind, command, folder, repo_url, timeout)
    settings.app_dir                          # Path("/workspaces/app") / GITHUB_REPO_FOLDER
    settings.keys.queue(JobKind.PRE)          # Redis names of this deployment and instance
    settings.token                            # GITHUB_TOKEN, or the token taken out of the URL

The variables are grouped by what they configure (:mod:`producer.source_settings`,
:mod:`producer.job_config`, :mod:`producer.git_settings`, :mod:`producer.service_settings`);
their types and messages are in :mod:`producer.config_types`, the error lines in :mod:`producer.config_errors`.
A token written into an https URL is taken out of it (:mod:`producer.git_url`): the
stored URL has no credentials, ``settings.token`` holds the token (``GITHUB_TOKEN`` wins
when set). Empty (or blank) variables count as unset, as ``${VAR:-default}`` does.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import (
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_serializer,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from producer.config_errors import ConfigError, ordered, problem_lines, unsafe_values
from producer.git_settings import GitSettings, git_problems, key_pieces
from producer.git_url import parse_git_url
from producer.job_config import JOB_URL_FIELDS, JobConfig, JobSettings, job_presence_problems
from producer.redis_url import mask_redis_url, redis_password
from producer.service_settings import ServiceSettings, pairing_problems
from producer.source_settings import SourceSettings, strategy_problems
from producer.status_settings import StatusSettings, status_problems
from producer.url_parts import MASK, UrlProblem
from workers.contract import DeployKeys

__all__ = ["ConfigError", "JobConfig", "Settings", "load_settings", "settings_table"]

SECRET_FIELDS = (
    "GITHUB_TOKEN",
    "WEBHOOK_SECRET",
    "GITHUB_WEBHOOK_SECRET",
    "RQ_DASHBOARD_PASSWORD",
    "GIT_SSH_KEY",
)
#: Repository variables: a token written in one of them is taken out.
URL_FIELDS = ("GITHUB_REPO_URL", *JOB_URL_FIELDS)
#: Variables whose value is never echoed in a problem line: secrets, and URLs that may hold one.
NO_ECHO = frozenset({*SECRET_FIELDS, "REDIS_URL", *URL_FIELDS})
#: Set by load_settings: build Settings from its keyword arguments only, not os.environ.
_EXPLICIT_ONLY: ContextVar[bool] = ContextVar("hotreload_settings_explicit_only", default=False)


class Settings(ServiceSettings, StatusSettings, GitSettings, JobSettings, SourceSettings, BaseSettings):
    """Every setting of hotreload; field name = environment variable name (case-sensitive).

    Build it with :func:`load_settings`, which turns validation errors into a
    :class:`ConfigError`; constructing ``Settings()`` directly reads ``os.environ`` and
    raises the same ``ConfigError``.
    """

    model_config = SettingsConfigDict(
        case_sensitive=True,
        extra="ignore",
        env_ignore_empty=True,
        env_file=None,
        frozen=True,
        hide_input_in_errors=True,
    )

    _url_tokens: dict[str, str] = PrivateAttr(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then ``os.environ``; never a .env or secrets file.

        Inside :func:`load_settings` only the keyword arguments count: it reads the
        environment (or the mapping it was given) itself.
        """
        return (init_settings,) if _EXPLICIT_ONLY.get() else (init_settings, env_settings)

    @model_validator(mode="wrap")
    @classmethod
    def _validate_all(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Settings:
        """Normalise, take tokens out of URLs, validate every field, and report all problems."""
        if not isinstance(data, Mapping):
            return handler(data)
        values = _normalise(data)
        secrets = unsafe_values(values, SECRET_FIELDS, URL_FIELDS)
        tokens = _take_tokens(values)
        problems = [
            *job_presence_problems(values),
            *pairing_problems(values),
            *git_problems(values),
            *_token_problems(values, tokens),
            *status_problems(values, tokens),
            *strategy_problems(values),
        ]
        try:
            model: Settings = handler(values)
        except ValidationError as error:
            lines = problem_lines(error, values, fields=cls.model_fields, no_echo=NO_ECHO, secrets=secrets)
            if not lines and not problems:  # not about a variable (misuse from Python): pydantic's own
                raise
            raise ConfigError(ordered([*problems, *lines], list(cls.model_fields))) from None
        problems.extend(model.port_problems())
        if problems:
            raise ConfigError(ordered(problems, list(cls.model_fields)))
        model._url_tokens = tokens
        return model

    # ----------------------------------------------------------------- derived values

    @property
    def deployment_id(self) -> str:
        """DEPLOYMENT_ID, or 12 hex digits of sha1(repo URL without credentials, branch, folder)."""
        if self.DEPLOYMENT_ID:
            return self.DEPLOYMENT_ID
        source = "\x00".join(
            (self.GITHUB_REPO_URL or "", self.GITHUB_BRANCH or "", self.GITHUB_REPO_FOLDER or "")
        )
        return hashlib.sha1(source.encode("utf-8", "surrogatepass"), usedforsecurity=False).hexdigest()[:12]

    @property
    def keys(self) -> DeployKeys:
        return DeployKeys(deployment=self.deployment_id, instance=self.instance_id)

    @property
    def token(self) -> str | None:
        """GITHUB_TOKEN, else the token taken out of the first repository URL that held one."""
        if self.GITHUB_TOKEN is not None:
            return self.GITHUB_TOKEN.get_secret_value()
        return next((self._url_tokens[name] for name in URL_FIELDS if name in self._url_tokens), None)

    def secret_values(self) -> list[str]:
        """Every secret value set, longest first, for masking in logs and job output.

        The token(s) (GITHUB_TOKEN and any taken out of a URL, also percent-encoded),
        WEBHOOK_SECRET (and its former name), RQ_DASHBOARD_PASSWORD, the credentials of REDIS_URL,
        and the SSH key with each line of it.
        """
        found = {getattr(self, name).get_secret_value() for name in SECRET_FIELDS if getattr(self, name)}
        found.update(key_pieces(self.ssh_key()))
        found.update(self._url_tokens.values())
        if self.REDIS_URL:
            found.update(redis_password(self.REDIS_URL))
        return sorted((s for s in found if s), key=lambda s: (-len(s), s))

    def public_dict(self) -> dict[str, Any]:
        """Every setting, JSON-ready, with secrets replaced by "***" (None when unset).

        GITHUB_TOKEN shows whether a token is in use at all (set or taken out of a URL);
        REDIS_URL shows with its credentials masked.
        """
        result: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name == "GITHUB_TOKEN":
                value = MASK if self.token is not None else None
            elif isinstance(value, SecretStr):
                value = MASK
            elif name == "REDIS_URL" and value is not None:
                value = mask_redis_url(value)
            elif isinstance(value, Path):
                value = str(value)
            result[name] = value
        return result

    @field_serializer("REDIS_URL")
    def _serialise_redis_url(self, value: str | None) -> str | None:
        """model_dump() shows REDIS_URL without its credentials; use redis_url_effective."""
        return None if value is None else mask_redis_url(value)

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        return list(self.public_dict().items())


def _normalise(data: Mapping[Any, Any]) -> dict[str, Any]:
    """Strip string values; drop empty or blank ones (unset, like ``${VAR:-default}``)."""
    values: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, str):
            value = value.strip()
        if value is not None and value != "":
            values[key] = value
    return values


def _take_tokens(values: dict[str, Any]) -> dict[str, str]:
    """Take the token out of each repository URL that holds one (in place); return them by variable.

    A malformed URL is left as it is, for its field's validation to report.
    """
    tokens: dict[str, str] = {}
    for name in URL_FIELDS:
        url = values.get(name)
        if not isinstance(url, str):
            continue
        try:
            values[name], token = parse_git_url(url)
        except UrlProblem:
            continue
        if token is not None:
            tokens[name] = token
    return tokens


def _token_problems(values: Mapping[str, Any], tokens: Mapping[str, str]) -> list[str]:
    """Two repository URLs holding different tokens, with no GITHUB_TOKEN to say which one counts."""
    if "GITHUB_TOKEN" in values or not tokens:
        return []
    first, token = next(iter(tokens.items()))
    return [
        f"{name}: holds a different token than {first}; only one token is supported (set GITHUB_TOKEN)"
        for name, other in tokens.items()
        if other != token
    ]


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Validate ``environ`` (default ``os.environ``); raise ConfigError listing every problem.

    Only the variables named like a Settings field are read; others are ignored.
    """
    source = os.environ if environ is None else environ
    raw: dict[str, Any] = {name: source[name] for name in Settings.model_fields if name in source}
    # Not Settings.model_validate(raw): BaseSettings has its own __init__, which pydantic
    # calls from model_validate too, and which would add os.environ to an explicit mapping.
    reset = _EXPLICIT_ONLY.set(True)
    try:
        return Settings(**raw)
    finally:
        _EXPLICIT_ONLY.reset(reset)


def settings_table() -> str:
    """The configuration reference as a markdown table (variable | default | meaning)."""
    lines = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        if default is None:
            shown = "unset"
        elif isinstance(default, bool):
            shown = f"`{str(default).lower()}`"
        elif isinstance(default, float) and default.is_integer():
            shown = f"`{int(default)}`"
        else:
            shown = f"`{default}`"
        meaning = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{name}` | {shown} | {meaning} |")
    return "\n".join(lines) + "\n"
