"""Fixtures of real parts: a redis-server on a free port, a local bare git remote, the Procfile under honcho.

def test_x(redis_url, remote, stack_factory):
    remote.commit({"scripts/pre.sh": "echo hi"})
    stack = stack_factory(remote, PRE_DEPLOY_COMMAND="bash scripts/pre.sh")
    stack.wait_for_log("[PRE-DEPLOY] hi")
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# One harness for the tests and the benchmark (bench/stack.py has no pytest in it); the
# names are re-exported here, where the tests import them from.
from bench.stack import (  # noqa: F401 - re-exported
    ROOT,
    VENV_BIN,
    GitRemote,
    RedisServer,
    Stack,
    free_port,
    run_git,
    stack_env,
    wait_until,
)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def remote(tmp_path: Path) -> GitRemote:
    return GitRemote(tmp_path)


@pytest.fixture
def stack_factory(tmp_path: Path, redis_url: str) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []

    def make(remote: GitRemote | None, start: bool = True, use_redis: bool = True, **overrides: str) -> Stack:
        n = len(stacks)
        env = stack_env(remote, tmp_path / f"workspace{n}", redis_url if use_redis else None, **overrides)
        stack = Stack(env, tmp_path / f"stack{n}.log")
        stacks.append(stack)
        return stack.start() if start else stack

    yield make
    for stack in stacks:
        stack.stop()
