"""compose.yaml as users run it: Redis and the app come up, a restart keeps the processed commit, down ends all.

The repository's compose.yaml is used unchanged, configured from the environment as a shell
would; a second file only mounts the test's bare repository, as a user with a local
repository would. Images: the session's image for the app and, since no registry is reached
here, for Redis too (``REDIS_IMAGE``; it has redis-server).
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from bench.container import Engine
from tests.conftest import ROOT, GitRemote, free_port, wait_until
from tests.container.conftest import http_json
from tests.container.test_image import JOB_ENV, JOBS, REPO_IN_CONTAINER, answer, marks

pytestmark = [pytest.mark.container, pytest.mark.timeout(900)]


class Compose:
    """``docker compose`` / ``podman-compose`` on a copy of compose.yaml, one project name per test."""

    def __init__(self, engine: Engine, workdir: Path, env: dict[str, str], extra_file: str):
        self.engine = engine
        self.workdir = workdir
        self.project = f"hrtest{uuid.uuid4().hex[:8]}"
        shutil.copy(ROOT / "compose.yaml", workdir / "compose.yaml")
        (workdir / "repo-mount.yaml").write_text(extra_file)
        self.env = {**engine.env, **env}

    def __call__(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        command = [
            *self.engine.compose_command(),
            "-p",
            self.project,
            "-f",
            "compose.yaml",
            "-f",
            "repo-mount.yaml",
            *args,
        ]
        proc = subprocess.run(
            command, cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def containers(self) -> list[str]:
        label = f"label=com.docker.compose.project={self.project}"
        out = self.engine.run(["ps", "--all", "--filter", label, "--format", "{{.Names}}"]).stdout
        return out.split()

    def remove_everything(self) -> None:
        """Containers, volumes and networks of the project (podman-compose 1.0's down leaves the network)."""
        for name in self.containers():
            self.engine.remove(name)
        label = f"label=com.docker.compose.project={self.project}"
        for kind in ("volume", "network"):
            names = self.engine.run([kind, "ls", "--quiet", "--filter", label], check=False).stdout.split()
            for name in names:
                self.engine.run([kind, "rm", "--force", name], check=False)


def test_compose_brings_up_redis_and_the_app_keeps_the_processed_commit_and_down_ends_everything(
    tmp_path, engine: Engine, image: str
):
    remote, marks_dir = GitRemote(tmp_path), tmp_path / "marks"
    marks_dir.mkdir()
    first = remote.commit(JOBS)
    app_port, health_port = free_port(), free_port()
    env = {
        **JOB_ENV,
        "HOTRELOAD_IMAGE": image,
        "REDIS_IMAGE": image,
        "APP_HOST_PORT": str(app_port),
        "HEALTH_HOST_PORT": str(health_port),
    }
    mount = (
        "services:\n  app:\n    volumes:\n"
        f'      - "{remote.bare}:{REPO_IN_CONTAINER}:ro"\n      - "{marks_dir}:/marks"\n'
    )
    compose = Compose(engine, tmp_path, env, mount)
    status_url, app_url = f"http://127.0.0.1:{health_port}/status", f"http://127.0.0.1:{app_port}/"

    def processed() -> str | None:
        return (http_json(status_url) or {}).get("processed")

    def app_started(times: int) -> bool:
        return len(marks(marks_dir, "app")) >= times and answer(app_url) == "version one"

    try:
        compose("up", "-d")
        wait_until(lambda: app_started(1), 120, what="the app behind compose")
        wait_until(lambda: processed() == first, 30, what="/status to show the boot commit processed")
        assert len(marks(marks_dir, "pre", first)) == 1

        # The app container restarts against the same Redis: the commit is not deployed again.
        compose("restart", "app")
        wait_until(lambda: app_started(2), 120, what="the app after a restart of its container")
        assert processed() == first
        assert len(marks(marks_dir, "pre")) == 1, "a restart ran PRE_DEPLOY again for a processed commit"

        started = time.monotonic()
        compose("down")
        elapsed = time.monotonic() - started
        assert elapsed < 10, f"compose down took {elapsed:.1f}s"
        assert compose.containers() == [], "compose down left containers"
        assert answer(app_url) == "" and http_json(status_url) is None

        # New containers, the same volumes: Redis loads the processed commit from its volume.
        compose("up", "-d")
        wait_until(lambda: app_started(3), 120, what="the app after down and up")
        assert processed() == first
        assert len(marks(marks_dir, "pre")) == 1, "PRE_DEPLOY ran again although Redis kept the commit"
        print(f"compose down: {elapsed:.2f}s")
    except BaseException:
        for name in compose.containers():
            print(f"--- {name} ---\n{engine.logs(name)[-3000:]}")
        raise
    finally:
        subprocess.run(
            [*engine.compose_command(), "-p", compose.project, "-f", "compose.yaml", "down"],
            cwd=tmp_path,
            env=compose.env,
            capture_output=True,
            timeout=120,
        )
        compose.remove_everything()
