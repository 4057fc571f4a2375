"""Two stacks on one host with the same DEPLOYMENT_ID and INSTANCE_ID (each with its own Redis).

Stopping one must not stop the other's app: the app's processes are found by a run id in
their environment, and that id used to be the same for both (found by the fault suite, where
concurrent test runs stopped each other's apps).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import GitRemote, Stack, free_port, stack_env, wait_until
from tests.faults.harness import JOB_FILES, Marks, PersistentRedis, alive, is_deployed, job_env

pytestmark = [pytest.mark.faults, pytest.mark.e2e]


def test_stopping_a_stack_never_stops_a_neighbours_app(tmp_path: Path, fault_case):
    case = fault_case("2b neighbour stacks with the same ids: stopping one")
    servers = [PersistentRedis(tmp_path / f"redis{i}", free_port()) for i in range(2)]
    stacks: list[Stack] = []
    try:
        for i, server in enumerate(servers):
            server.start()
            root = tmp_path / f"n{i}"
            root.mkdir()
            remote = GitRemote(root)
            sha = remote.commit(JOB_FILES)
            env = job_env(root, DEPLOYMENT_ID="same-deployment")
            stack = Stack(
                stack_env(remote, root / "workspace", server.url, **env), root / "stack.log"
            ).start()
            stacks.append(stack)
            wait_until(lambda s=stack, r=root, c=sha: is_deployed(s, Marks(r), c), 30, what=f"stack {i}")
        apps = [
            wait_until(lambda r=root: Marks(r).of("app"), 15, what="the app")[0].pid
            for root in (tmp_path / "n0", tmp_path / "n1")
        ]
        with case.trial():
            stacks[0].stop()
            wait_until(lambda: not alive(apps[0]), 10, what="the stopped stack's app to end")
            assert alive(apps[1]), "stopping one stack stopped the app of another"
            assert "exited with code" not in stacks[1].log()
    finally:
        for stack in stacks:
            stack.stop()
        for server in servers:
            server.stop()
