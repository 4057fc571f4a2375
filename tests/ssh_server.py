"""A real OpenSSH server on the loopback interface serving bare repositories, for the SSH tests.

Its own host key, its own authorized_keys for a generated client key, a free port; each
login is forced through ``git-shell`` so the key can only fetch and push::

    with SshGitServer(tmp_path / "sshd") as server:
        url = server.url(remote.bare)              # ssh://root@127.0.0.1:PORT/abs/app.git
        env = {"GIT_SSH_KEY": server.client_key, "GIT_SSH_KNOWN_HOSTS": server.known_hosts}
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from tests.conftest import free_port, wait_until

SSHD = "/usr/sbin/sshd"


def new_key(path: Path, comment: str = "hotreload-test") -> str:
    """An ed25519 key pair at ``path`` / ``path.pub``; returns the private key's text."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True
    )
    return path.read_text()


class SshGitServer:
    """``sshd -D`` as root on 127.0.0.1 with a forced ``git-shell``; stopped on exit."""

    def __init__(self, workdir: Path, user: str = "root"):
        if not os.path.exists(SSHD):
            raise RuntimeError("openssh-server is required (bin/bootstrap installs it)")
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.user = user
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "sshd.log"
        new_key(self.dir / "host_key", "host")
        self.client_key = new_key(self.dir / "client_key")
        public = (self.dir / "client_key.pub").read_text().strip()
        forced = 'command="git-shell -c \\"$SSH_ORIGINAL_COMMAND\\"",restrict'
        (self.dir / "authorized_keys").write_text(f"{forced} {public}\n")
        host_public = (self.dir / "host_key.pub").read_text().split()
        self.known_hosts = f"[127.0.0.1]:{self.port} {host_public[0]} {host_public[1]}\n"
        (self.dir / "sshd_config").write_text(
            "\n".join(
                [
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.dir / 'host_key'}",
                    f"PidFile {self.dir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
                    "StrictModes no",
                    "UsePAM no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    f"AllowUsers {user}",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )

    def url(self, bare: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{bare}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def accepted(self) -> int:
        """Logins sshd accepted with a public key so far."""
        return self.log().count("Accepted publickey")

    def start(self) -> SshGitServer:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
        self.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.dir / "sshd_config"), "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.log_path, "ab"),  # noqa: SIM115 - the child keeps it
        )

        def listening() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.process.returncode}: {self.log()}")
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", self.port)) == 0

        wait_until(listening, 10, "sshd to listen")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def __enter__(self) -> SshGitServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
