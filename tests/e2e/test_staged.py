"""DEPLOY_STRATEGY=staged on the real Procfile: the app never sees a commit before its PRE_DEPLOY passed.

The app is an HTTP server serving its workspace's files (``python3 -m http.server``), so
what it answers is what the live workspace holds. A sampler thread asks it every 20 ms
while commits deploy; the PRE_DEPLOY writes when it started and ended, so the test can
compare what the app served with the PRE_DEPLOY's own clock.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import GitRemote, free_port, run_git, wait_until
from tests.e2e.test_observe_and_steer import cli, status

pytestmark = pytest.mark.e2e

MIGRATE = (
    'echo "$(date +%s.%N) pre-start $DEPLOY_COMMIT_SHA $PWD $DEPLOY_WORKSPACE $DEPLOY_STRATEGY" >> "$MARKS"\n'
    'sleep "${PRE_SECONDS:-0}"\n'
    'if [ -f uses-deps ]; then node migrate.js && "$DEPLOY_CHECKOUT/.venv/bin/python" -c '
    "\"import dep, os; open(os.environ['MARKS'], 'a').write(f'venv-dep {dep.VERSION}\\\\n')\"; fi\n"
    'echo "$(date +%s.%N) pre-end $DEPLOY_COMMIT_SHA" >> "$MARKS"\n'
)
POST = 'echo "$(date +%s.%N) post $DEPLOY_COMMIT_SHA $PWD $(cat index.html)" >> "$MARKS"\n'


def site(content: str, **extra: str) -> dict[str, str]:
    return {
        "index.html": content,
        "migrate.sh": MIGRATE,
        "post.sh": POST,
        ".gitignore": "node_modules/\n.venv/\n",
        **extra,
    }


def env(tmp_path: Path, strategy: str, port: int, **extra: str) -> dict[str, str]:
    return {
        "MARKS": str(tmp_path / "marks.txt"),
        "DEPLOY_STRATEGY": strategy,
        "PRE_DEPLOY_COMMAND": "bash migrate.sh",
        "POST_DEPLOY_COMMAND": "bash post.sh",
        "DEV_START_COMMAND": f"exec python3 -m http.server {port} --bind 127.0.0.1",
        "RETRY_BACKOFF_MAX": "2",
        **extra,
    }


def marks(tmp_path: Path, kind: str, commit: str | None = None) -> list[list[str]]:
    path = tmp_path / "marks.txt"
    rows = [line.split() for line in path.read_text().splitlines()] if path.exists() else []
    return [r for r in rows if r[1] == kind and (commit is None or r[2] == commit)]


class Sampler:
    """What the app answers, every 20 ms, with the time of each answer."""

    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}/index.html"
        self.samples: list[tuple[float, str]] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def get(self) -> str | None:
        try:
            with urllib.request.urlopen(self.url, timeout=2) as answer:
                return str(answer.read().decode().strip())
        except (urllib.error.URLError, OSError):
            return None

    def run(self) -> None:
        while not self.done.is_set():
            before = time.time()
            body = self.get()
            if body is not None:
                self.samples.append((before, body))
            time.sleep(0.02)

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(5)

    def between(self, start: float, end: float) -> set[str]:
        return {body for at, body in self.samples if start <= at <= end}


@pytest.mark.parametrize("strategy", ["staged", "in-place"])
def test_the_app_serves_the_previous_commit_during_the_whole_staged_pre_deploy(
    tmp_path, remote: GitRemote, stack_factory, strategy: str
):
    port = free_port()
    first = remote.commit(site("v1"))
    stack = stack_factory(remote, **env(tmp_path, strategy, port, PRE_SECONDS="2"))
    sampler = Sampler(port)
    wait_until(lambda: sampler.get() == "v1", 60, what="the app to serve v1")
    workspace = stack.env["WORKSPACE_PATH"]

    with sampler:
        second = remote.commit(site("v2"))
        wait_until(lambda: marks(tmp_path, "post", second), 40, what="the second commit's POST_DEPLOY")
        wait_until(lambda: sampler.between(time.time() - 0.5, time.time()) == {"v2"}, 10, what="v2 served")
    start, end = (
        float(marks(tmp_path, "pre-start", second)[0][0]),
        float(marks(tmp_path, "pre-end", second)[0][0]),
    )
    assert end - start >= 2
    during = sampler.between(start, end)
    post = marks(tmp_path, "post", second)[0]
    if strategy == "in-place":
        # Unchanged behaviour: the workspace moves first, so a file watcher sees v2 before its migration ends.
        assert during == {"v2"}, during
        assert marks(tmp_path, "pre-start", second)[0][3] == workspace
        return
    assert during == {"v1"}, f"the app served {during} while PRE_DEPLOY ran"
    served_v2 = min(at for at, body in sampler.samples if body == "v2")
    assert end <= served_v2 <= end + 3, f"v2 served {served_v2 - end:.2f}s after PRE_DEPLOY ended"
    pre = marks(tmp_path, "pre-start", second)[0]
    assert pre[3:] == [f"{workspace}.staged", workspace, "staged"], "PRE_DEPLOY runs in the staging checkout"
    assert post[3:] == [workspace, "v2"], "POST_DEPLOY runs in the live workspace, after it moved"
    assert float(post[0]) > end
    assert run_git("rev-parse", "HEAD", cwd=Path(workspace)) == second
    assert len([line for line in stack.log().splitlines() if "Serving HTTP" in line]) <= 1, (
        "the app restarted"
    )
    assert first != second


def test_a_failing_staged_pre_deploy_never_changes_what_the_app_serves(
    tmp_path, remote: GitRemote, stack_factory
):
    port = free_port()
    first = remote.commit(site("v1"))
    stack = stack_factory(remote, **env(tmp_path, "staged", port))
    sampler = Sampler(port)
    wait_until(lambda: sampler.get() == "v1", 60, what="the app to serve v1")

    with sampler:
        broken = remote.commit(site("broken", **{"migrate.sh": 'echo "[PRE-DEPLOY] no database"; exit 3\n'}))
        failure = f"PRE_DEPLOY job for commit {broken[:7]} failed with exit code 3"
        stack.wait_for_log(failure, 30, count=3)  # the first attempt and two retries
        stack.wait_for_syncs(2)
    assert {body for _, body in sampler.samples} == {"v1"}
    assert len(sampler.samples) > 20
    assert run_git("rev-parse", "HEAD", cwd=Path(stack.env["WORKSPACE_PATH"])) == first
    assert status(stack)["processed"] == first
    assert "Workspace back at" not in stack.log(), "the live workspace never moved, so it never moves back"

    fixed = remote.commit(site("v3"))
    wait_until(lambda: sampler.get() == "v3", 30, what="the fix to be served")
    wait_until(lambda: marks(tmp_path, "post", fixed), 30, what="the fix's POST_DEPLOY")


@pytest.mark.parametrize(
    "shared", ["", "node_modules, .venv"], ids=["ignored folders", "STAGED_SHARED_PATHS"]
)
def test_a_staged_migration_imports_from_node_modules_and_a_venv_of_the_live_workspace(
    tmp_path, remote: GitRemote, stack_factory, shared: str
):
    port = free_port()
    # The first POST_DEPLOY installs the dependencies into the live workspace, as `npm ci` would.
    install = (
        "mkdir -p node_modules/dep && echo 'module.exports = {version: \"4.2\"}' > node_modules/dep/index.js\n"
        "python3 -m venv --without-pip .venv\n"
        'echo "VERSION = 7" > "$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()[\'purelib\'])")/dep.py"\n'
    )
    first = remote.commit(site("v1", **{"post.sh": POST + install}))
    extra = {"STAGED_SHARED_PATHS": shared} if shared else {}
    stack = stack_factory(remote, **env(tmp_path, "staged", port, **extra))
    wait_until(lambda: marks(tmp_path, "post", first), 60, what="the install in the first POST_DEPLOY")

    migration = "const fs = require('fs');\nfs.appendFileSync(process.env.MARKS, `node-dep ${require('dep').version}\\n`);\n"
    second = remote.commit(site("v2", **{"uses-deps": "", "migrate.js": migration}))
    wait_until(lambda: marks(tmp_path, "post", second), 40, what="the migration commit's deploy")
    rows = [line.split() for line in (tmp_path / "marks.txt").read_text().splitlines()]
    assert ["node-dep", "4.2"] in rows and ["venv-dep", "7"] in rows
    staged = Path(stack.env["WORKSPACE_PATH"] + ".staged")
    assert (staged / "node_modules").is_symlink() and (staged / ".venv").is_symlink()
    assert "PRE_DEPLOY job" not in stack.log()


def test_staged_in_a_monorepo_with_a_job_repository_and_a_rollback(
    tmp_path, remote: GitRemote, stack_factory
):
    port = free_port()
    jobs = GitRemote(tmp_path, name="jobs")
    jobs.commit({"db/migrate.sh": MIGRATE})
    first = remote.commit({f"apps/web/{name}": text for name, text in site("v1").items()})
    stack = stack_factory(
        remote,
        **env(
            tmp_path,
            "staged",
            port,
            GITHUB_REPO_FOLDER="apps/web",
            PRE_DEPLOY_REPO_URL=jobs.url,
            PRE_DEPLOY_FOLDER="db",
        ),
    )
    sampler = Sampler(port)
    wait_until(lambda: sampler.get() == "v1", 60, what="the app folder served")
    second = remote.commit({"apps/web/index.html": "v2"})
    wait_until(lambda: sampler.get() == "v2", 30, what="v2 served")
    workspace = stack.env["WORKSPACE_PATH"]
    pre = marks(tmp_path, "pre-start", second)[0]
    assert pre[3:] == [f"{workspace}.jobs/pre/db", workspace, "staged"], (
        "the job repository's folder, as in-place"
    )
    wait_until(lambda: marks(tmp_path, "post", second), 30, what="the second commit's POST_DEPLOY")
    assert marks(tmp_path, "post", second)[0][3:] == [f"{workspace}/apps/web", "v2"]

    assert cli(stack, "rollback").returncode == 0
    wait_until(lambda: sampler.get() == "v1", 30, what="the rollback to be served")
    wait_until(lambda: len(marks(tmp_path, "pre-start", first)) == 2, 10, what="the rollback's PRE_DEPLOY")
    wait_until(lambda: status(stack)["processed"] == first, 10, what="the rollback processed")


def test_staged_replicas_run_pre_deploy_once_and_neither_serves_the_commit_before_it_passed(
    tmp_path, remote: GitRemote, stack_factory
):
    ports = {"web-0": free_port(), "web-1": free_port()}
    first = remote.commit(site("v1"))
    stacks = {
        name: stack_factory(
            remote, INSTANCE_ID=name, DEPLOYMENT_ID="shop", **env(tmp_path, "staged", port, PRE_SECONDS="1.5")
        )
        for name, port in ports.items()
    }
    for port in ports.values():
        wait_until(lambda port=port: Sampler(port).get() == "v1", 60, what="both replicas to serve v1")
    samplers = {name: Sampler(port) for name, port in ports.items()}
    for sampler in samplers.values():
        sampler.__enter__()
    try:
        second = remote.commit(site("v2"))
        for sampler in samplers.values():
            wait_until(lambda s=sampler: s.get() == "v2", 40, what="both replicas to serve v2")
    finally:
        for sampler in samplers.values():
            sampler.__exit__()
    runs = marks(tmp_path, "pre-start", second)
    assert len(runs) == 1, f"PRE_DEPLOY ran {len(runs)} times for one commit"
    start, end = float(runs[0][0]), float(marks(tmp_path, "pre-end", second)[0][0])
    for name, sampler in samplers.items():
        assert sampler.between(start, end) == {"v1"}, f"{name} served the commit during its PRE_DEPLOY"
    wait_until(lambda: marks(tmp_path, "post", second), 30, what="the POST_DEPLOY (scope once)")
    assert len(marks(tmp_path, "post", second)) == 1
    for stack in stacks.values():
        assert run_git("rev-parse", "HEAD", cwd=Path(stack.env["WORKSPACE_PATH"])) == second
    assert first != second
