"""The one settings model of hotreload: every environment variable, validated at once.

Configuration comes from environment variables only (no ``.env`` file): from
``os.environ`` by default, or from an explicit mapping in tests. Every problem is
collected and reported together, one line per problem, in the form
``VARIABLE: what is wrong`` -- secret values (tokens, passwords, URLs that may hold
credentials) are never echoed::

    from producer.settings import ConfigError, load_settings
    from workers.contract import JobKind

    try:
        settings = load_settings()            # or load_settings({"GITHUB_REPO_URL": ...})
    except ConfigError as exc:
        for line in exc.problems:             # "GITHUB_SYNC_INTERVAL: must be a positive ..."
            print(line, file=sys.stderr)
        raise SystemExit(2)

    pre = settings.job(JobKind.PRE)           # JobConfig(kind, command, folder, repo_url, timeout)
    if pre.enabled:
        ...
    settings.app_dir                          # Path("/workspaces/app") / GITHUB_REPO_FOLDER
    settings.keys.queue(JobKind.PRE)          # Redis names of this deployment and instance
    settings.token                            # GITHUB_TOKEN, or the token taken out of the URL

A token written into an https URL (``https://TOKEN@host/...`` or
``https://user:TOKEN@host/...``) is taken out of it: the stored URL has no
credentials, ``settings.token`` holds the token (``GITHUB_TOKEN`` wins when set).
Empty (or blank) variables count as unset, as ``${VAR:-default}`` does in the bash
template this replaces.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import os
import posixpath
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn
from urllib.parse import unquote

from pydantic import (
    BeforeValidator,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from workers.contract import DeployKeys, JobKind

__all__ = ["ConfigError", "JobConfig", "Settings", "load_settings", "settings_table"]

#: Longest duration accepted for any seconds setting (7 days): beyond it, sleeps and
#: waits overflow or a typo went unnoticed.
MAX_SECONDS = 7 * 24 * 3600
MAX_OUTPUT_LINES = 1_000_000
ECHO_LIMIT = 60
MASK = "***"

GIT_SCHEMES = ("https", "http", "ssh", "git", "file")
REDIS_SCHEMES = ("redis", "rediss", "unix")

_JOB_PREFIXES = tuple(kind.value for kind in JobKind)
_URL_FIELDS = ("GITHUB_REPO_URL", *(f"{p}_REPO_URL" for p in _JOB_PREFIXES))
#: Fields whose value is never echoed in a problem line: secrets, and URLs that may hold one.
_NO_ECHO = frozenset(
    {"GITHUB_TOKEN", "GITHUB_WEBHOOK_SECRET", "RQ_DASHBOARD_PASSWORD", "REDIS_URL", *_URL_FIELDS}
)

_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_SCP_RE = re.compile(r"([^@/:]+)@([^@/:]+):(.+)", re.DOTALL)
_HOST_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_NUMBER_RE = re.compile(r"\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER_RE = re.compile(r"\+?[0-9]+")
_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_BRANCH_FORBIDDEN = set("~^:?*[\\")
#: Set by load_settings: build Settings from its keyword arguments only, not os.environ.
_EXPLICIT_ONLY: ContextVar[bool] = ContextVar("hotreload_settings_explicit_only", default=False)
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


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


@dataclass(frozen=True)
class JobConfig:
    """The configuration of one job kind (``PRE_DEPLOY_*``, ``POST_DEPLOY_*``, ``FAILED_DEPLOY_*``).

    ``folder`` is relative and normalised (no leading ``./``, no ``..``): inside the job
    repository when ``repo_url`` is set, else inside the app directory (the guide's
    monorepo pattern). ``repo_url`` never holds credentials.
    """

    kind: JobKind
    command: str | None
    folder: str | None
    repo_url: str | None
    timeout: int

    @property
    def enabled(self) -> bool:
        return self.command is not None


# --------------------------------------------------------------------------- validators


class _Problem(Exception):
    """What is wrong with one value; the message never holds the value."""


def _fail(message: str) -> NoReturn:
    # The message is a fixed text: pydantic formats ``{...}`` only with a context, and
    # none is given, so it is shown as is.
    raise PydanticCustomError("hotreload", message)


def _has_control(value: str) -> bool:
    """Whether the value holds a character that is neither printable nor a plain space."""
    return not value.isprintable()


def _text(value: Any) -> str:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not isinstance(value, str):
        _fail("must be a string")
    return value


def _plain_text(value: Any) -> str:
    """Free text (commands, user names): anything but a NUL byte."""
    text = _text(value)
    if "\x00" in text:
        _fail("must not contain a NUL character")
    return text


def _secret(value: Any) -> str:
    text = _text(value)
    if _has_control(text):
        _fail("must not contain control characters")
    return text


def _positive_number(unit: str, maximum: float) -> Callable[[Any], float]:
    def validate(value: Any) -> float:
        if isinstance(value, bool):
            _fail(f"must be a positive number of {unit}")
        if isinstance(value, int | float):
            number = float(value)
        else:
            text = _text(value)
            if len(text) > 40 or not _NUMBER_RE.fullmatch(text):
                _fail(f"must be a positive number of {unit}")
            number = float(text)
        if not math.isfinite(number) or number <= 0:
            _fail(f"must be a positive number of {unit}")
        if number > maximum:
            _fail(f"must be at most {maximum:g} {unit}")
        return number

    return validate


def _positive_int(unit: str, maximum: int) -> Callable[[Any], int]:
    what = f"must be a positive whole number of {unit}"

    def validate(value: Any) -> int:
        if isinstance(value, bool):
            _fail(what)
        if isinstance(value, int):
            number = value
        elif isinstance(value, float):
            if not value.is_integer():
                _fail(what)
            number = int(value)
        else:
            text = _text(value)
            if len(text) > 20 or not _INTEGER_RE.fullmatch(text):
                _fail(what)
            number = int(text)
        if number <= 0:
            _fail(what)
        if number > maximum:
            _fail(f"must be at most {maximum} {unit}")
        return number

    return validate


def _port(value: Any) -> int:
    what = "must be a port number from 1 to 65535"
    if isinstance(value, bool):
        _fail(what)
    if isinstance(value, int):
        number = value
    else:
        text = _text(value)
        if len(text) > 6 or not _INTEGER_RE.fullmatch(text):
            _fail(what)
        number = int(text)
    if not 1 <= number <= 65535:
        _fail(what)
    return number


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = _text(value).lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    _fail("must be a boolean (true/false, 1/0, yes/no, on/off)")


def _choice(*options: str) -> Callable[[Any], str]:
    def validate(value: Any) -> str:
        text = _text(value).lower()
        if text not in options:
            _fail("must be one of " + ", ".join(options))
        return text

    return validate


def _identifier(value: Any) -> str:
    text = _text(value)
    if not _ID_RE.fullmatch(text):
        _fail("must be 1 to 64 characters of letters, digits, '.', '_' or '-'")
    return text


def _relative_folder(value: Any) -> str | None:
    """A folder inside a repository: relative, no ``..``; returned without ``./`` or slashes."""
    text = _text(value)
    if _has_control(text):
        _fail("must not contain control characters")
    if text.startswith("/"):
        _fail("must be a relative path inside the repository, not an absolute path")
    parts = text.split("/")
    if ".." in parts:
        _fail("must not contain '..': it must stay inside the repository")
    kept = [part for part in parts if part not in ("", ".")]
    return "/".join(kept) or None


def _absolute_path(value: Any) -> Path:
    text = str(value) if isinstance(value, Path) else _text(value)
    if _has_control(text):
        _fail("must not contain control characters")
    if not text.startswith("/"):
        _fail("must be an absolute path")
    normal = posixpath.normpath(text)
    if normal in ("/", "//"):
        _fail("must not be the root directory")
    return Path(normal)


def _branch_problem(name: str) -> str | None:
    """Why ``name`` is not a valid branch name (git check-ref-format rules), or None."""
    if any(ch == " " for ch in name):
        return "contains a space"
    if any(ord(ch) < 32 or ord(ch) == 127 or not ch.isprintable() for ch in name):
        return "contains a control character"
    bad = sorted({ch for ch in name if ch in _BRANCH_FORBIDDEN})
    if bad:
        return "contains " + " ".join(repr(ch) for ch in bad)
    if ".." in name:
        return "contains '..'"
    if "@{" in name:
        return "contains '@{'"
    if name == "@":
        return "is '@'"
    if name.startswith("-"):
        return "starts with '-'"
    if name.startswith("/") or name.endswith("/") or "//" in name:
        return "starts or ends with '/' or contains '//'"
    if name.endswith("."):
        return "ends with '.'"
    for part in name.split("/"):
        if part.startswith("."):
            return "has a component starting with '.'"
        if part.endswith(".lock"):
            return "has a component ending with '.lock'"
    return None


def _branch(value: Any) -> str:
    text = _text(value)
    problem = _branch_problem(text)
    if problem:
        _fail(f"is not a valid git branch name ({problem})")
    return text


def _split_netloc(rest: str) -> tuple[str, str]:
    """``host:port/path?q`` -> (``host:port``, ``/path?q``), as a URL parser splits it."""
    ends = [i for i in (rest.find(c) for c in "/?#") if i != -1]
    cut = min(ends) if ends else len(rest)
    return rest[:cut], rest[cut:]


def _check_hostport(hostport: str) -> None:
    if hostport.startswith("["):
        end = hostport.find("]")
        if end == -1:
            raise _Problem("has an invalid host")
        try:
            ipaddress.IPv6Address(hostport[1:end])
        except ValueError:
            raise _Problem("has an invalid host") from None
        after = hostport[end + 1 :]
        if after and not after.startswith(":"):
            raise _Problem("has an invalid host")
        port = after[1:] if after else ""
    else:
        host, _, port = hostport.partition(":")
        if not host:
            raise _Problem("has no host")
        if len(host) > 253 or not _HOST_RE.fullmatch(host):
            raise _Problem("has an invalid host")
    if port and not (len(port) <= 5 and port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise _Problem("has an invalid port")


def parse_git_url(value: str) -> tuple[str, str | None]:
    """Check a repository location; return it without credentials, and the token it held.

    Accepts https/http/ssh/git/file URLs, scp-like ``user@host:path`` and absolute local
    paths. Raises ``_Problem`` (whose message never holds the value) when malformed.
    """
    if value.startswith("/"):
        if _has_control(value):
            raise _Problem("must not contain control characters")
        return value, None
    if any(ch.isspace() for ch in value) or _has_control(value):
        raise _Problem("must not contain spaces or control characters")
    match = _SCHEME_RE.match(value)
    if match is None:
        scp = _SCP_RE.fullmatch(value)
        if scp is None:
            raise _Problem(
                "must be an https://, http://, ssh://, git:// or file:// URL, "
                "an scp-like user@host:path, or an absolute local path"
            )
        user, host, _path = scp.groups()
        if user.startswith("-") or host.startswith("-") or not _HOST_RE.fullmatch(host):
            raise _Problem("has an invalid user or host")
        return value, None
    scheme = match.group(1).lower()
    if scheme not in GIT_SCHEMES:
        raise _Problem("has an unsupported scheme: use https://, http://, ssh://, git:// or file://")
    netloc, remainder = _split_netloc(value[match.end() :])
    userinfo, at, hostport = netloc.rpartition("@")
    path = re.split(r"[?#]", remainder, maxsplit=1)[0]
    if scheme == "file":
        if at:
            raise _Problem("must not contain credentials in a file:// URL")
        if hostport not in ("", "localhost"):
            raise _Problem("must not name a host in a file:// URL: use file:///absolute/path")
        if path in ("", "/"):
            raise _Problem("has no repository path")
        return f"file://{hostport}{remainder}", None
    _check_hostport(hostport)
    if path in ("", "/"):
        raise _Problem("has no repository path")
    token: str | None = None
    if at:
        if scheme in ("http", "https"):
            user, colon, password = userinfo.partition(":")
            token = unquote(password if colon and password else user) or None
            if token is not None and _has_control(token):
                raise _Problem("holds a token with control characters")
            return f"{scheme}://{hostport}{remainder}", token
        if scheme == "git":
            raise _Problem("must not contain credentials in a git:// URL")
        # ssh: a user name is fine (ssh://git@host/...), a password is not.
        if ":" in userinfo:
            raise _Problem("must not contain a password in an ssh:// URL: use an SSH key")
        if not userinfo or userinfo.startswith("-"):
            raise _Problem("has an invalid user")
        return f"ssh://{userinfo}@{hostport}{remainder}", None
    return f"{scheme}://{hostport}{remainder}", None


def _git_url(value: Any) -> str:
    try:
        clean, token = parse_git_url(_text(value))
    except _Problem as problem:
        _fail(str(problem))
    if token is not None:
        # The model validator takes tokens out before field validation; a URL that still
        # holds one here came in some other way: refuse rather than keep it in clear.
        _fail("must not contain a token here")
    return clean


def _redis_url(value: Any) -> str:
    text = _text(value)
    if any(ch.isspace() for ch in text) or _has_control(text):
        _fail("must not contain spaces or control characters")
    match = _SCHEME_RE.match(text)
    if match is None or match.group(1).lower() not in REDIS_SCHEMES:
        _fail("must be a redis://, rediss:// or unix:// URL")
    netloc, remainder = _split_netloc(text[match.end() :])
    _userinfo, _at, hostport = netloc.rpartition("@")
    path = re.split(r"[?#]", remainder, maxsplit=1)[0]
    if match.group(1).lower() == "unix":
        if hostport not in ("", "localhost"):
            _fail("must not name a host in a unix:// URL: use unix:///path/to/redis.sock")
        if path in ("", "/"):
            _fail("has no socket path")
        return text
    try:
        _check_hostport(hostport)
    except _Problem as problem:
        _fail(str(problem))
    if path not in ("", "/") and not re.fullmatch(r"/[0-9]{1,5}", path):
        _fail("has an invalid database number: the path must be /0, /1, ...")
    return text


def _host(value: Any) -> str:
    text = _text(value)
    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        pass
    if len(text) > 253 or not _HOST_RE.fullmatch(text) or text.startswith("-"):
        _fail("must be a host name or an IP address")
    return text


def _url_userinfo(url: str) -> str:
    match = _SCHEME_RE.match(url)
    if match is None:
        return ""
    netloc, _ = _split_netloc(url[match.end() :])
    return netloc.rpartition("@")[0]


# --------------------------------------------------------------------------- the model


def _optional(validate: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Let None (an unset optional field) through; validate anything else."""

    def wrapper(value: Any) -> Any:
        return None if value is None else validate(value)

    return wrapper


Seconds = Annotated[float, BeforeValidator(_positive_number("seconds", MAX_SECONDS))]
TimeoutSeconds = Annotated[int, BeforeValidator(_positive_int("seconds", MAX_SECONDS))]
Port = Annotated[int, BeforeValidator(_port)]
Flag = Annotated[bool, BeforeValidator(_boolean)]
Command = Annotated[str | None, BeforeValidator(_optional(_plain_text))]
Folder = Annotated[str | None, BeforeValidator(_optional(_relative_folder))]
GitUrl = Annotated[str | None, BeforeValidator(_optional(_git_url))]
Secret = Annotated[SecretStr | None, BeforeValidator(_optional(_secret))]
Identifier = Annotated[str | None, BeforeValidator(_optional(_identifier))]

_JOB_TIMEOUT_HELP = "Maximum run time of the job in seconds; then SIGTERM, then SIGKILL after KILL_GRACE"


class Settings(BaseSettings):
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

    GITHUB_REPO_URL: GitUrl = Field(
        default=None,
        description="Repository of the app: https/ssh/git/file URL, git@host:path or an absolute path",
    )
    GITHUB_BRANCH: Annotated[str | None, BeforeValidator(_optional(_branch))] = Field(
        default=None, description="Branch to deploy (unset: the remote's default branch)"
    )
    GITHUB_TOKEN: Secret = Field(
        default=None, description="Token for private https repositories (wins over a token written in a URL)"
    )
    GITHUB_REPO_FOLDER: Folder = Field(
        default=None, description="Folder of the app inside the repository (monorepo), relative"
    )
    WORKSPACE_PATH: Annotated[Path, BeforeValidator(_absolute_path)] = Field(
        default=Path("/workspaces/app"), description="Absolute path where the repository is checked out"
    )
    GITHUB_SYNC_INTERVAL: Seconds = Field(
        default=30.0, description="Seconds between two fetches of the remote"
    )
    DEV_START_COMMAND: Command = Field(
        default=None, description="Command that starts the app (run in the app folder)"
    )
    DEV_RESTART_ON_DEPLOY: Flag = Field(
        default=False,
        description="Restart the app after each deploy (default: its dev server reloads itself)",
    )
    PRE_DEPLOY_COMMAND: Command = Field(
        default=None, description="Command run before a new commit goes live; must succeed (strict)"
    )
    PRE_DEPLOY_FOLDER: Folder = Field(
        default=None, description="Folder the PRE_DEPLOY command runs in, relative"
    )
    PRE_DEPLOY_REPO_URL: GitUrl = Field(
        default=None, description="Separate repository holding the PRE_DEPLOY job (unset: the app repository)"
    )
    PRE_DEPLOY_TIMEOUT: TimeoutSeconds = Field(default=300, description=_JOB_TIMEOUT_HELP)
    POST_DEPLOY_COMMAND: Command = Field(
        default=None, description="Command run after a commit went live; a failure is only logged (lenient)"
    )
    POST_DEPLOY_FOLDER: Folder = Field(
        default=None, description="Folder the POST_DEPLOY command runs in, relative"
    )
    POST_DEPLOY_REPO_URL: GitUrl = Field(
        default=None,
        description="Separate repository holding the POST_DEPLOY job (unset: the app repository)",
    )
    POST_DEPLOY_TIMEOUT: TimeoutSeconds = Field(default=300, description=_JOB_TIMEOUT_HELP)
    FAILED_DEPLOY_COMMAND: Command = Field(
        default=None, description="Command run when the PRE_DEPLOY of a commit fails"
    )
    FAILED_DEPLOY_FOLDER: Folder = Field(
        default=None, description="Folder the FAILED_DEPLOY command runs in, relative"
    )
    FAILED_DEPLOY_REPO_URL: GitUrl = Field(
        default=None,
        description="Separate repository holding the FAILED_DEPLOY job (unset: the app repository)",
    )
    FAILED_DEPLOY_TIMEOUT: TimeoutSeconds = Field(default=300, description=_JOB_TIMEOUT_HELP)
    REDIS_URL: Annotated[str | None, BeforeValidator(_optional(_redis_url))] = Field(
        default=None,
        description="External Redis (redis://, rediss:// or unix://); unset: start an embedded redis-server",
    )
    HOTRELOAD_REDIS_PORT: Port = Field(
        default=6379, description="Port of the embedded redis-server (REDIS_URL unset)"
    )
    ENABLE_DEV_HEALTH: Flag = Field(default=True, description="Serve the health and status HTTP endpoints")
    DEV_HEALTH_PORT: Port = Field(default=9090, description="Port of the health and status HTTP server")
    GITHUB_WEBHOOK_SECRET: Secret = Field(
        default=None, description="Secret that signs GitHub push webhooks (unset: webhook disabled)"
    )
    INSTANCE_ID: Identifier = Field(
        default=None, description="Name of this replica, 1-64 of [A-Za-z0-9._-] (unset: the host name)"
    )
    DEPLOYMENT_ID: Identifier = Field(
        default=None,
        description="Name shared by all replicas, 1-64 of [A-Za-z0-9._-] (unset: hash of repo/branch/folder)",
    )
    POST_DEPLOY_SCOPE: Annotated[Literal["once", "each"], BeforeValidator(_choice("once", "each"))] = Field(
        default="once",
        description="once: one replica runs POST_DEPLOY per commit; each: every replica runs it",
    )
    RETRY_BACKOFF_MAX: Seconds = Field(
        default=600.0, description="Cap in seconds of the back-off between retries of a failed PRE_DEPLOY"
    )
    JOB_OUTPUT_MAX_LINES: Annotated[int, BeforeValidator(_positive_int("lines", MAX_OUTPUT_LINES))] = Field(
        default=1000, description="Lines of output kept per job run"
    )
    KILL_GRACE: Seconds = Field(
        default=3.0, description="Seconds between SIGTERM and SIGKILL when a job is stopped"
    )
    ENABLE_RQ_DASHBOARD: Flag = Field(
        default=False,
        description="Run rq-dashboard (the Procfile's dashboard process; about 45 MB of memory)",
    )
    RQ_DASHBOARD_BIND: Annotated[str, BeforeValidator(_host)] = Field(
        default="127.0.0.1", description="Address rq-dashboard listens on"
    )
    RQ_DASHBOARD_PORT: Port = Field(default=9181, description="Port of rq-dashboard")
    RQ_DASHBOARD_USERNAME: Annotated[str | None, BeforeValidator(_optional(_plain_text))] = Field(
        default=None, description="User name of rq-dashboard's basic auth"
    )
    RQ_DASHBOARD_PASSWORD: Secret = Field(default=None, description="Password of rq-dashboard's basic auth")
    LOG_LEVEL: Annotated[
        Literal["debug", "info", "warning", "error"],
        BeforeValidator(_choice("debug", "info", "warning", "error")),
    ] = Field(default="info", description="Log level: debug, info, warning or error")

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
        if _EXPLICIT_ONLY.get():
            return (init_settings,)
        return (init_settings, env_settings)

    @model_validator(mode="wrap")
    @classmethod
    def _validate_all(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Settings:
        """Normalise, take tokens out of URLs, validate every field, and report all problems."""
        if not isinstance(data, Mapping):
            return handler(data)
        values = _normalise(data)
        secrets = _raw_secrets(values)
        tokens: dict[str, str] = {}
        for name in _URL_FIELDS:
            url = values.get(name)
            if isinstance(url, str):
                try:
                    clean, token = parse_git_url(url)
                except _Problem:
                    continue  # the field validator reports it
                values[name] = clean
                if token is not None:
                    tokens[name] = token
        problems = _presence_problems(values, tokens)
        try:
            model: Settings = handler(values)
        except ValidationError as error:
            problems.extend(_translate(error, values, secrets))
            if not problems:  # not about a variable (misuse from Python): pydantic's own error
                raise
            raise ConfigError(_ordered(problems)) from None
        problems.extend(_port_problems(model))
        if problems:
            raise ConfigError(_ordered(problems))
        model._url_tokens = tokens
        return model

    # ----------------------------------------------------------------- derived values

    def job(self, kind: JobKind) -> JobConfig:
        prefix = kind.value
        return JobConfig(
            kind=kind,
            command=getattr(self, f"{prefix}_COMMAND"),
            folder=getattr(self, f"{prefix}_FOLDER"),
            repo_url=getattr(self, f"{prefix}_REPO_URL"),
            timeout=getattr(self, f"{prefix}_TIMEOUT"),
        )

    @property
    def app_dir(self) -> Path:
        """Where the app lives: the workspace, or its GITHUB_REPO_FOLDER."""
        if self.GITHUB_REPO_FOLDER:
            return self.WORKSPACE_PATH / self.GITHUB_REPO_FOLDER
        return self.WORKSPACE_PATH

    @property
    def embedded_redis(self) -> bool:
        """Whether hotreload starts its own redis-server (REDIS_URL unset)."""
        return self.REDIS_URL is None

    @property
    def redis_url_effective(self) -> str:
        if self.REDIS_URL is not None:
            return self.REDIS_URL
        return f"redis://127.0.0.1:{self.HOTRELOAD_REDIS_PORT}/0"

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
    def instance_id(self) -> str:
        return self.INSTANCE_ID or socket.gethostname()

    @property
    def keys(self) -> DeployKeys:
        return DeployKeys(deployment=self.deployment_id, instance=self.instance_id)

    @property
    def token(self) -> str | None:
        """GITHUB_TOKEN, else the token taken out of the first repository URL that held one."""
        if self.GITHUB_TOKEN is not None:
            return self.GITHUB_TOKEN.get_secret_value()
        for name in _URL_FIELDS:
            if name in self._url_tokens:
                return self._url_tokens[name]
        return None

    def secret_values(self) -> list[str]:
        """Every secret value set, longest first, for masking in logs and job output.

        The token(s) (GITHUB_TOKEN and any taken out of a URL, also percent-encoded),
        GITHUB_WEBHOOK_SECRET, RQ_DASHBOARD_PASSWORD and the credentials of REDIS_URL.
        """
        found: set[str] = set()
        for secret in (self.GITHUB_TOKEN, self.GITHUB_WEBHOOK_SECRET, self.RQ_DASHBOARD_PASSWORD):
            if secret is not None:
                found.add(secret.get_secret_value())
        for token in self._url_tokens.values():
            found.add(token)
        if self.REDIS_URL:
            found.update(_userinfo_secrets(_url_userinfo(self.REDIS_URL)))
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
                value = _mask_redis_url(value)
            elif isinstance(value, Path):
                value = str(value)
            result[name] = value
        return result

    @field_serializer("REDIS_URL")
    def _serialise_redis_url(self, value: str | None) -> str | None:
        """model_dump() shows REDIS_URL without its credentials; use redis_url_effective."""
        return None if value is None else _mask_redis_url(value)

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        return list(self.public_dict().items())


# --------------------------------------------------------------------------- helpers


def _normalise(data: Mapping[Any, Any]) -> dict[str, Any]:
    """Strip string values; drop empty or blank ones (unset, like ``${VAR:-default}``)."""
    values: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, str):
            value = value.strip()
            if not value:
                continue
        if value is None:
            continue
        values[key] = value
    return values


def _raw_secrets(values: Mapping[str, Any]) -> list[str]:
    """Every value that must not show in a problem line, even inside another variable's value.

    The secrets, and the URLs that may hold one: whole, and their credentials on a
    best-effort parse (the URL may be malformed).
    """
    found: set[str] = set()
    for name in ("GITHUB_TOKEN", "GITHUB_WEBHOOK_SECRET", "RQ_DASHBOARD_PASSWORD"):
        value = values.get(name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            found.add(value)
    for name in ("REDIS_URL", *_URL_FIELDS):
        value = values.get(name)
        if isinstance(value, str):
            found.add(value)
            scheme = _SCHEME_RE.match(value)
            # Any credential of REDIS_URL is a password; of a git URL, only an http(s) one
            # (an ssh:// user name is no secret).
            if scheme is not None and (name == "REDIS_URL" or scheme.group(1).lower() in ("http", "https")):
                # Malformed credentials ("https://TOKEN@@host") have no one right reading:
                # mask the whole user info and each of its parts.
                userinfo = _url_userinfo(value)
                for piece in (userinfo, *re.split(r"[@:]", userinfo)):
                    found.update((piece, unquote(piece)))
    return sorted((s for s in found if s), key=lambda s: (-len(s), s))


def _userinfo_secrets(userinfo: str) -> set[str]:
    if not userinfo:
        return set()
    user, colon, password = userinfo.partition(":")
    secret = password if colon and password else user
    return {s for s in (secret, unquote(secret)) if s}


def _mask_redis_url(url: str) -> str:
    match = _SCHEME_RE.match(url)
    if match is None:
        return url
    netloc, remainder = _split_netloc(url[match.end() :])
    userinfo, at, hostport = netloc.rpartition("@")
    if not at:
        return url
    return f"{match.group(0)}{MASK}@{hostport}{remainder}"


def _presence_problems(values: Mapping[str, Any], tokens: Mapping[str, str]) -> list[str]:
    """Problems visible from which variables are set, whatever their values."""
    problems = []
    for prefix in _JOB_PREFIXES:
        if f"{prefix}_COMMAND" not in values:
            for suffix in ("FOLDER", "REPO_URL"):
                if f"{prefix}_{suffix}" in values:
                    problems.append(f"{prefix}_{suffix}: set without {prefix}_COMMAND")
    if "RQ_DASHBOARD_PASSWORD" in values and "RQ_DASHBOARD_USERNAME" not in values:
        problems.append("RQ_DASHBOARD_PASSWORD: set without RQ_DASHBOARD_USERNAME")
    if "RQ_DASHBOARD_USERNAME" in values and "RQ_DASHBOARD_PASSWORD" not in values:
        problems.append("RQ_DASHBOARD_USERNAME: set without RQ_DASHBOARD_PASSWORD")
    if "GITHUB_TOKEN" not in values:
        first: str | None = None
        for name in _URL_FIELDS:
            if name not in tokens:
                continue
            if first is None:
                first = name
            elif tokens[name] != tokens[first]:
                problems.append(
                    f"{name}: holds a different token than {first}; only one token is supported "
                    "(set GITHUB_TOKEN)"
                )
    return problems


def _port_problems(model: Settings) -> list[str]:
    used: list[tuple[str, int]] = []
    if model.embedded_redis:
        used.append(("HOTRELOAD_REDIS_PORT", model.HOTRELOAD_REDIS_PORT))
    if model.ENABLE_DEV_HEALTH:
        used.append(("DEV_HEALTH_PORT", model.DEV_HEALTH_PORT))
    used.append(("RQ_DASHBOARD_PORT", model.RQ_DASHBOARD_PORT))
    problems = []
    for index, (name, port) in enumerate(used):
        for other, other_port in used[:index]:
            if port == other_port:
                problems.append(f"{name}: is the same port as {other} ({port})")
                break
    return problems


def _echo(value: Any, secrets: Iterable[str]) -> str:
    """The value as shown in a problem line: secrets masked, cut to 60 chars, repr-quoted."""
    text = value if isinstance(value, str) else repr(value)
    for secret in secrets:
        text = text.replace(secret, MASK)
    shown = repr(text[:ECHO_LIMIT])
    return shown + "..." if len(text) > ECHO_LIMIT else shown


def _translate(error: ValidationError, values: Mapping[str, Any], secrets: list[str]) -> list[str]:
    """Pydantic's errors as ``VARIABLE: what is wrong[, got 'value']`` lines, one per variable."""
    problems: list[str] = []
    seen: set[str] = set()
    for detail in error.errors(include_url=False, include_input=False):
        loc = detail.get("loc") or ()
        name = str(loc[0]) if loc else ""
        if name not in Settings.model_fields or name in seen:
            continue
        seen.add(name)
        message = detail["msg"] if detail.get("type") == "hotreload" else "has an invalid value"
        line = f"{name}: {message}"
        if name not in _NO_ECHO and name in values:
            line += f", got {_echo(values[name], secrets)}"
        problems.append(line)
    return problems


def _ordered(problems: list[str]) -> list[str]:
    """Problems in the order of the fields (the order of the README table)."""
    order = {name: index for index, name in enumerate(Settings.model_fields)}
    return sorted(problems, key=lambda line: order.get(line.partition(":")[0], len(order)))


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
