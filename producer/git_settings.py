"""How git reaches and copies the repositories: the SSH deploy key and known hosts, and the clone's shape.

The key (``GIT_SSH_KEY`` text or ``GIT_SSH_KEY_FILE``) is checked here with ``ssh-keygen``
reading it from a pipe, so a bad key is a configuration error naming its variable and is
never written anywhere; :mod:`producer.git_ssh` puts it in a private runtime file for ssh.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr

from producer.config_types import AbsolutePath, Flag, explain, fail

KEY_BEGIN = re.compile(r"-----BEGIN (?:OPENSSH |RSA |EC |DSA |ENCRYPTED )?PRIVATE KEY-----")
KEY_END = re.compile(r"-----END (?:OPENSSH |RSA |EC |DSA |ENCRYPTED )?PRIVATE KEY-----")
FILTER = re.compile(r"^(?:blob:none|blob:limit=[0-9]+[kmg]?|tree:[0-9]+)$")
MAX_DEPTH = 1_000_000


def key_text(text: str) -> str:
    """The key as ssh reads it: real newlines (platforms often keep ``\\n``), one at the end."""
    if "\n" not in text and "\\n" in text:
        text = text.replace("\\n", "\n")
    return text.replace("\r\n", "\n").strip() + "\n"


def key_problem(text: str) -> str | None:
    """Why ssh could not use this private key (None: it can); the key itself is never in the answer."""
    if not KEY_BEGIN.search(text) or not KEY_END.search(text):
        return "is not a private key (no -----BEGIN ... PRIVATE KEY----- block)"
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        return None  # without openssh-client ssh fails anyway, with its own line at the first clone
    try:
        # -P '': a key that needs a passphrase fails here, as it would under BatchMode.
        check = subprocess.run(
            [keygen, "-y", "-P", "", "-f", "/dev/stdin"], input=text.encode(), capture_output=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "could not be checked with ssh-keygen"
    if check.returncode != 0:
        return "is not a private key ssh can read without a passphrase"
    return None


def _key(value: SecretStr) -> SecretStr:
    text = key_text(value.get_secret_value())
    problem = key_problem(text)
    if problem:
        fail(problem)
    return SecretStr(text)


def _readable(path: Path) -> Path:
    try:
        path.read_bytes()
    except OSError:
        fail("cannot be read (a readable file is needed)")
    return path


def _key_file(path: Path) -> Path:
    problem = key_problem(key_text(_readable(path).read_text(errors="replace")))
    if problem:
        fail(problem)
    return path


def _known_hosts(text: str) -> str:
    lines = [line.strip() for line in text.replace("\\n", "\n").splitlines()]
    entries = [line for line in lines if line and not line.startswith("#")]
    if not entries or any(len(line.split()) < 3 for line in entries):
        fail("must be known_hosts lines: host, key type and key on each")
    return "\n".join(entries) + "\n"


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


SshKey = Annotated[SecretStr, AfterValidator(_key)]
KeyFile = Annotated[AbsolutePath, AfterValidator(_key_file)]
KnownHosts = Annotated[str, AfterValidator(_known_hosts)]
ReadableFile = Annotated[AbsolutePath, AfterValidator(_readable)]
Depth = Annotated[
    int,
    Field(gt=0, le=MAX_DEPTH),
    explain("must be a positive whole number of commits", f"must be at most {MAX_DEPTH} commits"),
]
CloneFilter = Annotated[
    str,
    BeforeValidator(_lower),
    Field(pattern=FILTER.pattern),
    explain("must be a partial clone filter: blob:none, blob:limit=<size> or tree:<depth>"),
]
Submodules = Annotated[
    Literal["off", "recursive"], BeforeValidator(_lower), explain("must be one of off, recursive")
]


class GitSettings(BaseModel):
    """GIT_SSH_* (deploy key, known hosts) and GIT_CLONE_* / GIT_SPARSE_CHECKOUT / GIT_SUBMODULES."""

    model_config = ConfigDict(frozen=True)

    GIT_SSH_KEY: SshKey | None = Field(
        default=None,
        description="Private key (its text) for ssh remotes; kept only in a 0600 file of a private runtime folder",
    )
    GIT_SSH_KEY_FILE: KeyFile | None = Field(
        default=None, description="File holding the private key for ssh remotes (instead of GIT_SSH_KEY)"
    )
    GIT_SSH_KNOWN_HOSTS: KnownHosts | None = Field(
        default=None,
        description="known_hosts lines of the git host: host keys checked strictly (unset: accept-new, warned)",
    )
    GIT_SSH_KNOWN_HOSTS_FILE: ReadableFile | None = Field(
        default=None, description="known_hosts file of the git host (instead of GIT_SSH_KNOWN_HOSTS)"
    )
    GIT_CLONE_DEPTH: Depth | None = Field(
        default=None, description="Clone and fetch only this many commits of the branch (unset: full history)"
    )
    GIT_CLONE_FILTER: CloneFilter | None = Field(
        default=None,
        description="Partial clone filter, e.g. blob:none: file contents fetched when checked out",
    )
    GIT_SPARSE_CHECKOUT: Flag = Field(
        default=False, description="Check out only GITHUB_REPO_FOLDER and the job folders (cone mode)"
    )
    GIT_SUBMODULES: Submodules = Field(
        default="off", description="off, or recursive: submodules updated on every deploy, same credentials"
    )

    def ssh_key(self) -> str | None:
        """The private key's text (from GIT_SSH_KEY or GIT_SSH_KEY_FILE), None when neither is set."""
        if self.GIT_SSH_KEY is not None:
            return self.GIT_SSH_KEY.get_secret_value()
        if self.GIT_SSH_KEY_FILE is not None:
            return key_text(self.GIT_SSH_KEY_FILE.read_text(errors="replace"))
        return None

    def known_hosts(self) -> str | None:
        if self.GIT_SSH_KNOWN_HOSTS is not None:
            return self.GIT_SSH_KNOWN_HOSTS
        if self.GIT_SSH_KNOWN_HOSTS_FILE is not None:
            return self.GIT_SSH_KNOWN_HOSTS_FILE.read_text(errors="replace")
        return None


def key_pieces(key: str | None) -> list[str]:
    """The key and each of its body lines, for masking: output is masked line by line."""
    if not key:
        return []
    lines = [line.strip() for line in key.splitlines()]
    return [key.strip(), *(line for line in lines if len(line) >= 16 and not line.startswith("-----"))]


def git_problems(values: Mapping[str, Any]) -> list[str]:
    """A key or known hosts given twice; a sparse checkout without the folder to check out."""
    problems = [
        f"{name}_FILE: set together with {name}; set only one"
        for name in ("GIT_SSH_KEY", "GIT_SSH_KNOWN_HOSTS")
        if name in values and f"{name}_FILE" in values
    ]
    sparse = str(values.get("GIT_SPARSE_CHECKOUT", "")).lower() in ("1", "true", "yes", "on")
    if sparse and "GITHUB_REPO_FOLDER" not in values:
        problems.append("GIT_SPARSE_CHECKOUT: needs GITHUB_REPO_FOLDER, the folder to check out")
    return problems
