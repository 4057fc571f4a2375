"""Fixtures of the container tests: the engine, the real image built once per session, containers removed after.

Every test here runs the image built from the repository's Dockerfile (podman's or docker's
layer cache makes a rebuild take seconds). The tests skip only when no engine can run a
container here, with the reason in one line.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bench.container import Engine, find_engine
from bench.stack import ROOT, BenchError, free_port, wait_until

IMAGE = "localhost/hotreload-test:latest"
#: The engine the session found, or why there is none (for the summary line).
_ENGINE_FOUND: list[str] = []
NODE_IMAGE = "localhost/hotreload-test:node"


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    found = find_engine()
    if isinstance(found, str):
        _ENGINE_FOUND.append(f"no engine: {found}")
        pytest.skip(found)
    _ENGINE_FOUND.append(found.name)
    yield found
    found.close()


@pytest.fixture(scope="session")
def image(engine: Engine) -> str:
    """The ID of the image built from the repository's Dockerfile (tagged IMAGE for the cache and people)."""
    image_id, seconds = engine.build(IMAGE, ROOT)
    print(f"\nbuilt {IMAGE} in {seconds:.1f}s ({engine.image_size(image_id) / 1e6:.0f} MB)")
    return image_id


@pytest.fixture(scope="session")
def node_image(engine: Engine, image: str) -> str:
    image_id, seconds = engine.build(NODE_IMAGE, ROOT, {"INSTALL_NODE": "true"})
    print(f"\nbuilt {NODE_IMAGE} in {seconds:.1f}s ({engine.image_size(image_id) / 1e6:.0f} MB)")
    return image_id


class Container:
    """One container of a test: started detached, its logs and HTTP answers read from the host."""

    def __init__(self, engine: Engine, name: str):
        self.engine = engine
        self.name = name

    def logs(self) -> str:
        return self.engine.logs(self.name)

    def state(self) -> dict[str, Any]:
        return self.engine.inspect(self.name)["State"]  # type: ignore[return-value]

    def running(self) -> bool:
        return bool(self.state().get("Running"))

    def wait_for_log(self, text: str, timeout: float = 60) -> str:
        def seen() -> bool:
            if text in self.logs():
                return True
            if not self.running():
                raise BenchError(f"container exited before {text!r}:\n{self.logs()[-4000:]}")
            return False

        try:
            wait_until(seen, timeout, repr(text), 0.2)
        except BenchError as exc:
            raise BenchError(f"{exc}\n--- container log tail ---\n{self.logs()[-4000:]}") from None
        return self.logs()

    def wait_exit(self, timeout: float = 60) -> int:
        wait_until(lambda: not self.running(), timeout, f"{self.name} to exit", 0.2)
        return int(self.state()["ExitCode"])

    def exec(self, *command: str) -> str:
        return self.engine.run(["exec", self.name, *command], timeout=60).stdout


def http_get(url: str, timeout: float = 3) -> tuple[int, str] | None:
    """(status, body) of a GET, or None while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError:
        return None


def http_json(url: str) -> dict[str, Any] | None:
    answer = http_get(url)
    if answer is None or answer[0] != 200:
        return None
    return json.loads(answer[1])


@pytest.fixture
def run_container(engine: Engine) -> Iterator[Callable[..., Container]]:
    """Start a container detached: ``run_container(image, env, args=[...])``; removed at the end."""
    names: list[str] = []

    def start(image: str, env: dict[str, str], args: list[str] | None = None) -> Container:
        name = f"hotreload-test-{uuid.uuid4().hex[:10]}"
        names.append(name)
        env_args = [f"--env={key}={value}" for key, value in env.items()]
        engine.run(["run", "--detach", "--name", name, *env_args, *(args or []), image], timeout=120)
        return Container(engine, name)

    yield start
    for name in names:
        if os.environ.get("CONTAINER_KEEP") != "1":
            engine.remove(name)


@pytest.fixture
def host_ports() -> Callable[[], int]:
    return free_port


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line counting the container tests, so a run shows that they ran (or why they skipped)."""
    outcomes: dict[str, str] = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            if nodeid.startswith("tests/container/") and outcomes.get(nodeid) not in ("failed", "error"):
                outcomes[nodeid] = outcome
    if not outcomes:
        return
    counts = {name: list(outcomes.values()).count(name) for name in ("passed", "failed", "error", "skipped")}
    found = _ENGINE_FOUND[0] if _ENGINE_FOUND else "not started"
    terminalreporter.write_line(
        f"container tests ({found}): "
        + ", ".join(f"{count} {name}" for name, count in counts.items() if count or name == "passed")
    )
