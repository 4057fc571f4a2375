"""Case 6: the remote disappears, comes back, is force-pushed to an unrelated history, loses its branch.

Each time: a clear log line, no crash, never a half-updated checkout (the workspace stays
whole, on the processed commit), and the right commit deployed once the remote is sane.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import GitRemote, Stack, run_git, wait_until
from tests.faults.harness import (
    JOB_FILES,
    Marks,
    deploy_state,
    is_deployed,
    job_env,
    workspace_clean,
    workspace_head,
)

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

ROUNDS = 2


def test_remote_trouble_never_breaks_the_checkout(tmp_path, remote: GitRemote, stack_factory, fault_case):
    case = fault_case("6 remote trouble (gone, unrelated force-push, branch deleted)")
    marks = Marks(tmp_path)
    first = remote.commit(JOB_FILES)
    stack = stack_factory(remote, **job_env(tmp_path))
    wait_until(lambda: is_deployed(stack, marks, first), 30, what="the boot deploy")

    for n in range(ROUNDS):
        # The remote disappears, then comes back with a new commit.
        with case.trial():
            gone = remote.bare.with_name(remote.bare.name + ".gone")
            remote.bare.rename(gone)
            _while_in_trouble(stack, "[ERROR] Sync failed", "the remote is gone")
            gone.rename(remote.bare)
            stack.wait_for_log(
                "Remote reachable again", 20, count=_count(stack, "Remote reachable again") + 1
            )
            sha = remote.commit(message=f"round {n}: back")
            case.expect_deployed(
                lambda sha=sha: is_deployed(stack, marks, sha), 30, what="the commit after return"
            )

        # Force-pushed to a history that shares nothing with the deployed one.
        with case.trial():
            sha = _unrelated_history(remote, f"round {n}: rewritten")
            case.expect_deployed(
                lambda sha=sha: is_deployed(stack, marks, sha), 30, what="the unrelated head"
            )
            assert workspace_clean(stack)

        # The branch is deleted, then recreated with a new commit.
        with case.trial():
            # Deleted on the server (git refuses to delete a bare repository's current branch by push).
            run_git("update-ref", "-d", f"refs/heads/{remote.branch}", cwd=remote.bare)
            _while_in_trouble(stack, f"branch {remote.branch} not found on the remote", "the branch is gone")
            sha = remote.commit(message=f"round {n}: branch recreated")
            case.expect_deployed(
                lambda sha=sha: is_deployed(stack, marks, sha), 30, what="the recreated branch"
            )

    assert stack.process is not None and stack.process.poll() is None
    assert "Traceback" not in stack.log()


def _count(stack: Stack, text: str) -> int:
    return stack.log().count(text)


def _while_in_trouble(stack: Stack, line: str, what: str) -> None:
    """Wait for the error line, and meanwhile check the workspace stays whole on the processed commit."""
    before = _count(stack, line)
    processed = deploy_state(stack).processed
    checks: list[Callable[[], bool]] = [
        lambda: workspace_head(stack) == processed,
        lambda: workspace_clean(stack),
    ]

    def logged_and_whole() -> bool:
        for check in checks:
            assert check(), f"the checkout changed while {what}"
        return _count(stack, line) > before

    wait_until(logged_and_whole, 20, interval=0.2, what=f"{line!r} while {what}")
    assert stack.process is not None and stack.process.poll() is None, f"the stack exited while {what}"
    assert deploy_state(stack).processed == processed


def _unrelated_history(remote: GitRemote, message: str) -> str:
    """Replace the branch with a new root commit (same job files) and force-push it."""
    run_git("checkout", "--quiet", "--orphan", "rewritten", cwd=remote.work)
    run_git("rm", "-rf", "--quiet", ".", cwd=remote.work)
    for rel, content in JOB_FILES.items():
        path = remote.work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    (remote.work / "HISTORY").write_text(message + "\n")
    run_git("add", "-A", cwd=remote.work)
    run_git("commit", "--quiet", "-m", message, cwd=remote.work)
    run_git("branch", "--quiet", "-M", remote.branch, cwd=remote.work)
    remote.push(force=True)
    return run_git("rev-parse", "HEAD", cwd=remote.work)
