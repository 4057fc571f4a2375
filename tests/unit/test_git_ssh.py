"""The deploy key's runtime folder: private modes, the ssh options, and folders of killed processes removed."""

from __future__ import annotations

import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from producer import git_ssh


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    base = tmp_path / "run"
    base.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    return base


def test_key_and_known_hosts_are_private_files_named_only_in_the_ssh_options(run_dir: Path) -> None:
    argv = shlex.split(git_ssh.build_command("KEY TEXT\n", "[h]:22 ssh-ed25519 AAAA\n"))
    (folder,) = run_dir.glob("hotreload-ssh-*")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("key", "known_hosts"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    assert (folder / "key").read_text() == "KEY TEXT\n"
    assert "KEY TEXT\n" not in " ".join(argv)
    assert argv[argv.index("-i") + 1] == str(folder / "key")
    assert "StrictHostKeyChecking=yes" in argv and "IdentitiesOnly=yes" in argv


def test_without_known_hosts_the_first_host_key_is_accepted(run_dir: Path) -> None:
    argv = shlex.split(git_ssh.build_command("K\n", None))
    assert "StrictHostKeyChecking=accept-new" in argv


def test_folders_of_dead_processes_are_removed_and_live_ones_kept(run_dir: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = run_dir / f"hotreload-ssh-{dead.pid}-abc"
    orphan.mkdir()
    (orphan / "key").write_text("old key")
    live = run_dir / "hotreload-ssh-1-xyz"  # pid 1 is alive
    live.mkdir()
    git_ssh.runtime_folder()
    assert not orphan.exists() and live.exists()
