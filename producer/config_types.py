"""The value types of the settings: pydantic constraints, each with the one line it says when broken.

Every type is an ``Annotated`` pydantic type: numbers and ports are bounded with
``Field`` constraints, identifiers and free text with ``StringConstraints``, choices are
``Literal``; only what pydantic has no constraint for (git URLs, branch names, folders
inside a repository) is a validator function here. :func:`explain` turns pydantic's own
error into the fixed, value-free message of the configuration error lines.
"""

from __future__ import annotations

import ipaddress
import posixpath
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

from producer.git_ref import branch_problem
from producer.git_url import parse_git_url
from producer.redis_url import check_redis_url
from producer.url_parts import HOST_RE, UrlProblem, has_control

#: Longest duration accepted for any seconds setting (7 days): beyond it, sleeps and
#: waits overflow or a typo went unnoticed.
MAX_SECONDS = 7 * 24 * 3600
MAX_OUTPUT_LINES = 1_000_000
#: The error type of the lines written here: config_errors shows their message as is.
ERROR_TYPE = "hotreload"


def fail(message: str) -> NoReturn:
    """Reject a value with ``message`` (a fixed text that never holds the value)."""
    raise PydanticCustomError(ERROR_TYPE, message)


def explain(message: str, too_big: str | None = None) -> WrapValidator:
    """Say ``message`` for any error of the inner validation (``too_big`` for an upper bound)."""

    def wrap(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError as error:
            kinds = {detail["type"] for detail in error.errors(include_url=False)}
            if ERROR_TYPE in kinds:
                raise
            fail(too_big if too_big and kinds == {"less_than_equal"} else message)

    return WrapValidator(wrap)


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _no_nul(text: str) -> str:
    # Not a StringConstraints pattern: the regex engine refuses the lone surrogates that
    # os.environ gives for bytes that are not UTF-8, and such a command is fine.
    if "\x00" in text:
        fail("must not contain a NUL character")
    return text


def _printable(value: SecretStr) -> SecretStr:
    if has_control(value.get_secret_value()):
        fail("must not contain control characters")
    return value


def _relative_folder(text: str | None) -> str | None:
    """A folder inside a repository: relative, no ``..``; returned without ``./`` or slashes."""
    if text is None:
        return None
    if has_control(text):
        fail("must not contain control characters")
    if text.startswith("/"):
        fail("must be a relative path inside the repository, not an absolute path")
    parts = text.split("/")
    if ".." in parts:
        fail("must not contain '..': it must stay inside the repository")
    return "/".join(part for part in parts if part not in ("", ".")) or None


def split_list(text: str | None) -> tuple[str, ...]:
    """A normalised comma-separated setting (``"prisma/, migrations/"``) as its items."""
    return tuple(item.strip() for item in (text or "").split(",") if item.strip())


def _pathspecs(text: str | None) -> str | None:
    """Git pathspecs relative to the app folder: no absolute path, no ``..``; joined by ", "."""
    if text is None:
        return None
    if has_control(text):
        fail("must not contain control characters")
    items = split_list(text)
    for item in items:
        if item.startswith("/"):
            fail("must be comma-separated paths relative to the app folder, not absolute paths")
        if ".." in item.split("/"):
            fail("must not contain '..': paths stay inside the app folder")
    return ", ".join(items) or None


def _folders(text: str | None) -> str | None:
    """Comma-separated relative folders, each normalised like a single folder; joined by ", "."""
    if text is None:
        return None
    folders = [_relative_folder(item) for item in text.split(",") if item.strip()]
    return ", ".join(folder for folder in folders if folder) or None


def _absolute_path(value: Path) -> Path:
    text = str(value)
    if has_control(text):
        fail("must not contain control characters")
    if not text.startswith("/"):
        fail("must be an absolute path")
    normal = posixpath.normpath(text)
    if normal in ("/", "//"):
        fail("must not be the root directory")
    return Path(normal)


def _branch(name: str) -> str:
    problem = branch_problem(name)
    if problem:
        fail(f"is not a valid git branch name ({problem})")
    return name


def _git_url(value: str) -> str:
    try:
        clean, token = parse_git_url(value)
    except UrlProblem as problem:
        fail(str(problem))
    if token is not None:
        # Settings takes tokens out before field validation; a URL that still holds one
        # came in some other way: refuse rather than keep it in clear.
        fail("must not contain a token here")
    return clean


def _redis_url(value: str) -> str:
    try:
        return check_redis_url(value)
    except UrlProblem as problem:
        fail(str(problem))


def _host(text: str) -> str:
    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        pass
    if len(text) > 253 or not HOST_RE.fullmatch(text) or text.startswith("-"):
        fail("must be a host name or an IP address")
    return text


Seconds = Annotated[
    float,
    Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False),
    explain("must be a positive number of seconds", f"must be at most {MAX_SECONDS} seconds"),
]
TimeoutSeconds = Annotated[
    int,
    Field(gt=0, le=MAX_SECONDS),
    explain("must be a positive whole number of seconds", f"must be at most {MAX_SECONDS} seconds"),
]
OutputLines = Annotated[
    int,
    Field(gt=0, le=MAX_OUTPUT_LINES),
    explain("must be a positive whole number of lines", f"must be at most {MAX_OUTPUT_LINES} lines"),
]
Port = Annotated[int, Field(ge=1, le=65535), explain("must be a port number from 1 to 65535")]
Flag = Annotated[bool, explain("must be a boolean (true/false, 1/0, yes/no, on/off)")]
#: Free text (commands, user names): anything but a NUL byte.
Text = Annotated[str, AfterValidator(_no_nul)]
Identifier = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$"),
    explain("must be 1 to 64 characters of letters, digits, '.', '_' or '-'"),
]
Secret = Annotated[SecretStr, AfterValidator(_printable)]
Folder = Annotated[str | None, AfterValidator(_relative_folder)]
#: Comma-separated git pathspecs relative to the app folder (``PRE_DEPLOY_WHEN_CHANGED``).
Pathspecs = Annotated[str | None, AfterValidator(_pathspecs)]
#: Comma-separated folders relative to the app folder (``STAGED_SHARED_PATHS``).
Folders = Annotated[str | None, AfterValidator(_folders)]
AbsolutePath = Annotated[Path, AfterValidator(_absolute_path)]
Branch = Annotated[str, AfterValidator(_branch)]
GitUrl = Annotated[str, AfterValidator(_git_url)]
RedisUrl = Annotated[str, AfterValidator(_redis_url)]
Host = Annotated[str, AfterValidator(_host)]
Scope = Annotated[Literal["once", "each"], BeforeValidator(_lower), explain("must be one of once, each")]
Strategy = Annotated[
    Literal["in-place", "staged"], BeforeValidator(_lower), explain("must be one of in-place, staged")
]
LogLevel = Annotated[
    Literal["debug", "info", "warning", "error"],
    BeforeValidator(_lower),
    explain("must be one of debug, info, warning, error"),
]
