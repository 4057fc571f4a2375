"""The deploy key on disk for ssh alone: a 0600 file in a private 0700 runtime folder, removed at exit.

The folder is made under ``$XDG_RUNTIME_DIR`` (a tmpfs of the user) when there is one,
else in the system's temporary folder; never in the workspace. Git reaches it only through
``GIT_SSH_COMMAND`` in the environment of each git process::

    command = ssh_command(settings)   # "ssh -i /run/user/0/hotreload-ssh-.../key -o ..." or None
    env = git_environment(settings.token, command)
"""

from __future__ import annotations

import atexit
import os
import shlex
import shutil
import tempfile
from pathlib import Path

from producer.git_settings import GitSettings
from workers.console import say

NO_KNOWN_HOSTS = (
    "[WARN] GIT_SSH_KNOWN_HOSTS is not set: the git host's key is accepted the first time it is seen "
    "(StrictHostKeyChecking=accept-new); set GIT_SSH_KNOWN_HOSTS or GIT_SSH_KNOWN_HOSTS_FILE to check it"
)
PREFIX = "hotreload-ssh-"
#: One folder per process and configuration: made once, removed at exit.
_made: dict[tuple[str | None, str | None], str] = {}


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` 0600 from the start (never readable by others, not even for an instant)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphans(base: Path) -> list[Path]:
    """Folders left by processes that were killed (no atexit): their pid, in the name, is gone."""
    removed = []
    for folder in base.glob(f"{PREFIX}*-*"):
        pid = folder.name[len(PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)) and folder.stat().st_uid == os.getuid():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def runtime_folder() -> Path:
    """A new folder only this user can enter, removed when the process exits."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if not base or not os.path.isdir(base) or not os.access(base, os.W_OK | os.X_OK):
        base = tempfile.gettempdir()
    remove_orphans(Path(base))
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base))  # mkdtemp: mode 0700
    atexit.register(shutil.rmtree, folder, True)
    return folder


def build_command(key: str | None, known_hosts: str | None) -> str:
    """Write the key and known hosts into a new runtime folder; the ssh command that uses them."""
    folder = runtime_folder()
    hosts = folder / "known_hosts"
    _write_private(hosts, known_hosts or "")
    parts = ["ssh", "-o", "BatchMode=yes"]
    if key is not None:
        _write_private(folder / "key", key)
        parts += ["-i", str(folder / "key"), "-o", "IdentitiesOnly=yes"]
    checking = "yes" if known_hosts else "accept-new"
    parts += ["-o", f"UserKnownHostsFile={hosts}", "-o", f"StrictHostKeyChecking={checking}"]
    if known_hosts:
        parts += ["-o", "GlobalKnownHostsFile=/dev/null"]
    return shlex.join(parts)


def ssh_command(settings: GitSettings) -> str | None:
    """GIT_SSH_COMMAND for the configured key and known hosts (None: neither is set, ssh as it is).

    Made once per process; without known hosts, one warning line says the host key is
    accepted on first use.
    """
    key, known_hosts = settings.ssh_key(), settings.known_hosts()
    if key is None and known_hosts is None:
        return None
    if (key, known_hosts) not in _made:
        _made[(key, known_hosts)] = build_command(key, known_hosts)
        if known_hosts is None:
            say(NO_KNOWN_HOSTS)
    return _made[(key, known_hosts)]
