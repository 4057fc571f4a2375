"""Steering the whole deployment: pause, resume, pin, unpin, rollback, cancel.

Each command writes one change of the deployment's control hash through the state writer
(counted for /metrics, with who asked and when) and wakes every replica's poller, whose
planner applies it; ``cancel`` asks the worker running a job to stop it (RQ's stop-job
command), and the job's policy records it as cancelled::

    hotreload pause                 hotreload pin v1.4.2        hotreload rollback
    hotreload resume                hotreload unpin             hotreload cancel
"""

from __future__ import annotations

import argparse
import getpass
import socket
import subprocess
import time
from typing import Any

import redis
from rq.command import send_stop_job_command
from rq.registry import StartedJobRegistry

from producer.git_ssh import ssh_command
from producer.git_sync import git_environment
from producer.settings import Settings
from producer.tool_error import ToolError
from workers.contract import DeployKeys, JobKind, wake_poller
from workers.deploy_state import DeployState

PIN_FIELDS = ("pin", "pin_ref", "pin_rollback", "pin_by", "pin_at")


def who() -> str:
    """Who asked, for the log and /status: user@host of the shell that ran the command."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "?"
    return f"{user}@{socket.gethostname()}"


def instances(connection: Any, keys: DeployKeys) -> list[str]:
    """The instances of the deployment that have a poller status (every replica that ever ran)."""
    pattern = f"{keys.prefix}:instance:*:status"
    found = {key.decode() if isinstance(key, bytes) else key for key in connection.scan_iter(pattern)}
    return sorted(key.split(":")[3] for key in found)


def _tell_every_replica(connection: Any, keys: DeployKeys, command: str = "steer") -> None:
    for instance in instances(connection, keys) or [keys.instance]:
        wake_poller(connection, DeployKeys(keys.deployment, instance), command)


def _steer(settings: Settings, connection: Any, command: str, fields: dict[str, str], clear=()) -> None:
    DeployState(connection, settings.keys).steer(command, fields, tuple(clear))
    _tell_every_replica(connection, settings.keys)


def cmd_pause(settings: Settings, connection: redis.Redis, args: argparse.Namespace) -> int:
    _steer(settings, connection, "pause", {"paused": "1", "paused_by": who(), "paused_at": str(time.time())})
    print(
        f"Deploys paused for deployment {settings.keys.deployment}: pollers still fetch; hotreload resume ends it."
    )
    return 0


def cmd_resume(settings: Settings, connection: redis.Redis, args: argparse.Namespace) -> int:
    _steer(settings, connection, "resume", {"resumed_by": who()}, clear=("paused", "paused_by", "paused_at"))
    print(f"Deploys resumed for deployment {settings.keys.deployment}: the waiting head deploys now.")
    return 0


def resolve(settings: Settings, ref: str) -> str:
    """The commit REF names on the remote: a branch, a tag, or a commit (full or abbreviated sha)."""
    url = settings.GITHUB_REPO_URL or ""
    env = {**git_environment(settings.token, ssh_command(settings)), "PATH": "/usr/bin:/bin:/usr/local/bin"}
    out = subprocess.run(["git", "ls-remote", "--", url], capture_output=True, text=True, env=env, timeout=60)
    if out.returncode != 0:
        raise ToolError(f"cannot list the remote's refs to resolve {ref!r} (git ls-remote failed)")
    refs: dict[str, str] = {}
    for line in out.stdout.splitlines():
        sha, _, name = line.partition("\t")
        refs[name.removesuffix("^{}")] = sha  # a peeled tag comes after the tag: it wins
    for name in (ref, f"refs/heads/{ref}", f"refs/tags/{ref}"):
        if name in refs:
            return refs[name]
    lowered = ref.lower()
    if len(lowered) >= 7 and all(c in "0123456789abcdef" for c in lowered):
        workspace = str(settings.WORKSPACE_PATH)
        local = subprocess.run(
            [
                "git",
                "--git-dir",
                f"{workspace}/.git",
                "rev-parse",
                "--verify",
                "--quiet",
                f"{lowered}^{{commit}}",
            ],
            capture_output=True,
            text=True,
        )
        if local.returncode == 0:
            return local.stdout.strip()
        matches = {sha for sha in refs.values() if sha.startswith(lowered)}
        if len(matches) == 1:
            return matches.pop()
    raise ToolError(f"{ref!r} is not a branch, tag or commit of the remote")


def _pin(commit: str, ref: str, rollback: bool) -> dict[str, str]:
    """The control fields of a pin (``hotreload pin``, or the one ``hotreload rollback`` sets)."""
    return {
        "pin": commit,
        "pin_ref": ref,
        "pin_rollback": "1" if rollback else "0",
        "pin_by": who(),
        "pin_at": str(time.time()),
    }


def cmd_pin(settings: Settings, connection: redis.Redis, args: argparse.Namespace) -> int:
    commit = resolve(settings, args.ref)
    _steer(settings, connection, "pin", _pin(commit, args.ref, rollback=False))
    print(
        f"Pinned deployment {settings.keys.deployment} to {args.ref} ({commit[:7]}); hotreload unpin ends it."
    )
    return 0


def cmd_unpin(settings: Settings, connection: redis.Redis, args: argparse.Namespace) -> int:
    _steer(settings, connection, "unpin", {"unpinned_by": who()}, clear=PIN_FIELDS)
    print(f"Unpinned deployment {settings.keys.deployment}: it follows branch head again.")
    return 0


def cmd_rollback(settings: Settings, connection: redis.Redis, args: argparse.Namespace) -> int:
    state = DeployState(connection, settings.keys)
    current = state.tracker.processed() or state.tracker.deployed()
    for commit, record in state.tracker.recent_commits(100):
        if commit != current and record.get("pre_outcome") == "succeeded":
            break
    else:
        raise ToolError("no earlier commit whose PRE_DEPLOY succeeded: nothing to roll back to")
    _steer(settings, connection, "rollback", _pin(commit, "rollback", rollback=True))
    print(
        f"Rolling back deployment {settings.keys.deployment} from {(current or '-')[:7]} to {commit[:7]} "
        "(PRE_DEPLOY runs with DEPLOY_ROLLBACK=1); pinned there until hotreload unpin."
    )
    return 0


def cmd_cancel(settings: Settings, connection: redis.Redis, args: argparse.Namespace) -> int:
    keys = settings.keys
    stopped = []
    for instance in instances(connection, keys) or [keys.instance]:
        for kind in JobKind:
            name = DeployKeys(keys.deployment, instance).queue(kind)
            for job_id in StartedJobRegistry(name, connection=connection).get_job_ids(cleanup=False):
                send_stop_job_command(connection, job_id)
                stopped.append(job_id)
    DeployState(connection, keys).steer("cancel", {"cancelled_by": who(), "cancelled_at": str(time.time())})
    if not stopped:
        print("No job is running in this deployment: nothing to cancel.")
        return 0
    for job_id in stopped:
        print(
            f"Cancelling {job_id}: its process tree is stopped; a PRE_DEPLOY waits for a new commit or hotreload sync."
        )
    return 0


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    if name == "pin":
        parser.add_argument("ref", metavar="REF", help="a commit, tag or branch of the remote")


#: The steering commands by name, for producer.tools (their help texts are producer.cli's).
STEERING = {
    "pause": cmd_pause,
    "resume": cmd_resume,
    "pin": cmd_pin,
    "unpin": cmd_unpin,
    "rollback": cmd_rollback,
    "cancel": cmd_cancel,
}
