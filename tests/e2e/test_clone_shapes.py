"""Issue 11 §3 on the real stack: shallow, partial and sparse clones and submodules deploy as a full clone does.

One scenario runs on every shape (full, GIT_CLONE_DEPTH=1, GIT_CLONE_FILTER=blob:none,
GIT_SPARSE_CHECKOUT with GITHUB_REPO_FOLDER): the boot deploy, a push of two commits at
once, a force-push, a revert, the branch deleted and recreated, and a pin to a tag on a
commit that a depth-1 clone never fetched. Each PRE_DEPLOY writes the commit,
DEPLOY_PREVIOUS_SHA and the file it finds checked out: the marks must be the same on
every shape. Submodules are followed over SSH with the app's deploy key.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import VENV_BIN, GitRemote, run_git, wait_until
from tests.ssh_server import SshGitServer

pytestmark = pytest.mark.e2e

PRE = 'echo "pre $DEPLOY_COMMIT_SHA ${DEPLOY_PREVIOUS_SHA:-none} $(cat version.txt)" >> "$MARKS"\n'
SHAPES = {
    "full": {},
    "depth-1": {"GIT_CLONE_DEPTH": "1"},
    "blob-none": {"GIT_CLONE_FILTER": "blob:none"},
    "sparse": {"GIT_SPARSE_CHECKOUT": "true"},
}


def pre_runs(tmp_path: Path) -> list[tuple[str, str, str]]:
    path = tmp_path / "marks.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(p[1], p[2], p[3]) for p in (line.split() for line in lines) if p[0] == "pre" and len(p) == 4]


def ran(tmp_path: Path, commit: str, previous: str, version: str) -> bool:
    return (commit, previous, version) in pre_runs(tmp_path)


def git_in(workspace: Path, *args: str) -> str:
    return run_git(*args, cwd=workspace)


def check_shape(name: str, workspace: Path) -> None:
    """What the user sees in the workspace for each shape, right after the boot deploy."""
    shallow = git_in(workspace, "rev-parse", "--is-shallow-repository")
    missing = [
        line
        for line in git_in(workspace, "rev-list", "--objects", "--all", "--missing=print").splitlines()
        if line.startswith("?")
    ]
    other = (workspace / "svc" / "other" / "data.txt").exists()
    if name == "depth-1":
        assert shallow == "true" and git_in(workspace, "rev-list", "--count", "HEAD") == "1"
    else:
        assert shallow == "false"
    if name == "blob-none":
        assert git_in(workspace, "config", "remote.origin.partialclonefilter") == "blob:none"
        assert missing, "a blob:none clone holds every blob of the history"
    elif name != "depth-1":
        assert not missing, missing[:3]
    assert other is (name != "sparse"), "sparse checked out another folder, or full left one out"
    assert (workspace / "svc" / "app" / "version.txt").exists() and (workspace / "README").exists()


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_deploy_behaviour_is_the_same_on_every_clone_shape(
    tmp_path, remote: GitRemote, stack_factory, shape
):
    for n in range(3):  # history before the first deploy: old blobs a partial clone leaves out
        remote.commit({"svc/other/data.txt": f"old {n}\n" * 1000, "svc/app/version.txt": f"old{n}\n"})
    first = remote.commit({"svc/app/pre.sh": PRE, "svc/app/version.txt": "v1\n", "README": "top\n"})
    run_git("tag", "boot", cwd=remote.work)
    stack = stack_factory(
        remote,
        GITHUB_REPO_FOLDER="svc/app",
        PRE_DEPLOY_COMMAND="bash pre.sh",
        DEV_START_COMMAND="sleep 600",
        MARKS=str(tmp_path / "marks.txt"),
        **SHAPES[shape],
    )
    wait_until(lambda: ran(tmp_path, first, "none", "v1"), 40, what="the boot PRE_DEPLOY")
    workspace = Path(stack.env["WORKSPACE_PATH"])
    check_shape(shape, workspace)

    # Two commits in one push: a depth-1 fetch never brings the first of them.
    middle = remote.commit({"svc/app/version.txt": "mid\n"}, push=False)
    run_git("tag", "mid", cwd=remote.work)
    run_git("push", "--quiet", "origin", "mid", cwd=remote.work)
    second = remote.commit({"svc/app/version.txt": "v2\n"})
    wait_until(lambda: ran(tmp_path, second, first, "v2"), 30, what="the pushed commit")

    # A force-push replacing the last two commits.
    run_git("reset", "--quiet", "--hard", first, cwd=remote.work)
    forced = remote.commit({"svc/app/version.txt": "v3\n"}, push=False)
    remote.push(force=True)
    wait_until(lambda: ran(tmp_path, forced, second, "v3"), 30, what="the force-pushed commit")

    # A revert: the content of the first commit again, under a new commit.
    run_git("revert", "--no-edit", "HEAD", cwd=remote.work)
    reverted = remote.head()
    remote.push()
    wait_until(lambda: ran(tmp_path, reverted, forced, "v1"), 30, what="the revert")

    # The branch deleted, then recreated from an older commit.
    # (as a host's web page deletes it: a push may not delete a bare repository's HEAD branch)
    run_git("update-ref", "-d", f"refs/heads/{remote.branch}", cwd=remote.bare)
    stack.wait_for_log(f"branch {remote.branch} not found on the remote", 30)
    run_git("reset", "--quiet", "--hard", first, cwd=remote.work)
    recreated = remote.commit({"svc/app/version.txt": "v4\n"})
    wait_until(lambda: ran(tmp_path, recreated, reverted, "v4"), 30, what="the recreated branch's commit")

    # A pin to a tag on a commit no fetch of the branch brought (a shallow clone fetches it by sha).
    pin = subprocess.run(
        [str(VENV_BIN / "hotreload"), "pin", "mid"], env=stack.env, capture_output=True, text=True, timeout=60
    )
    assert pin.returncode == 0, pin.stderr
    wait_until(lambda: ran(tmp_path, middle, recreated, "mid"), 30, what="the pinned tag's PRE_DEPLOY")
    assert git_in(workspace, "rev-parse", "HEAD") == middle
    assert "Traceback" not in stack.log()
    check_sparse = shape == "sparse"
    assert (workspace / "svc" / "other").exists() is not check_sparse


def test_submodules_follow_every_deploy_over_ssh_with_the_same_key(tmp_path, stack_factory):
    served = tmp_path / "served"
    served.mkdir()
    lib, app = GitRemote(served, "lib"), GitRemote(served, "app")
    lib.commit({"lib.txt": "lib-v1\n"})
    with SshGitServer(tmp_path / "sshd") as sshd:
        run_git(
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "--quiet",
            lib.url,
            "vendor/lib",
            cwd=app.work,
        )
        run_git("config", "-f", ".gitmodules", "submodule.vendor/lib.url", sshd.url(lib.bare), cwd=app.work)
        pre = 'echo "pre $DEPLOY_COMMIT_SHA $(cat vendor/lib/lib.txt)" >> "$MARKS"\n'
        first = app.commit({"pre.sh": pre})
        stack = stack_factory(
            None,
            GITHUB_REPO_URL=sshd.url(app.bare),
            GITHUB_BRANCH="main",
            GIT_SSH_KEY=sshd.client_key,
            GIT_SSH_KNOWN_HOSTS=sshd.known_hosts,
            GIT_SUBMODULES="recursive",
            GIT_CLONE_DEPTH="1",
            PRE_DEPLOY_COMMAND="bash pre.sh",
            DEV_START_COMMAND="sleep 600",
            MARKS=str(tmp_path / "marks.txt"),
            XDG_RUNTIME_DIR=str(tmp_path),
        )
        marks = tmp_path / "marks.txt"

        def seen(line: str) -> bool:
            return marks.exists() and line in marks.read_text().splitlines()

        wait_until(lambda: seen(f"pre {first} lib-v1"), 40, what="the boot PRE_DEPLOY with the submodule")
        workspace = Path(stack.env["WORKSPACE_PATH"])
        assert run_git("config", "remote.origin.url", cwd=workspace / "vendor" / "lib").startswith("ssh://")
        lib.commit({"lib.txt": "lib-v2\n"})
        run_git(
            "-c", "protocol.file.allow=always", "submodule", "update", "--quiet", "--remote", cwd=app.work
        )
        second = app.commit({"README": "bump lib\n"})
        wait_until(lambda: seen(f"pre {second} lib-v2"), 30, what="the submodule moved with the deploy")
        assert "Traceback" not in stack.log()
        stack.stop()
