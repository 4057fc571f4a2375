"""Jobs that run only when their paths changed (PRE/POST_DEPLOY_WHEN_CHANGED) and the lockfile restart.

On the real Procfile: a source-only commit is live at once with its PRE_DEPLOY recorded as
skipped (log line, /status, hotreload jobs, /metrics); a commit under a watched path runs
it; the first boot and a force-push to unrelated history run it; DEV_RESTART_WHEN_CHANGED
restarts the app after a lockfile change and not after a source change.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import GitRemote, run_git, wait_until
from tests.e2e.test_observe_and_steer import cli, metrics, status

pytestmark = pytest.mark.e2e

JOBS = {
    "scripts/pre-deploy/migrate.sh": 'echo "$(date +%s.%N) pre $DEPLOY_COMMIT_SHA" >> "$MARKS"\n',
    "scripts/post-deploy/seed.sh": 'echo "$(date +%s.%N) post $DEPLOY_COMMIT_SHA" >> "$MARKS"\n',
    "app.sh": 'echo "$(date +%s.%N) app $(git rev-parse HEAD)" >> "$MARKS"\nexec sleep 600\n',
    "src/index.js": "console.log(1)\n",
}


def in_folder(folder: str, files: dict[str, str]) -> dict[str, str]:
    return {f"{folder}/{path}" if folder else path: text for path, text in files.items()}


def env(tmp_path: Path, folder: str = "", **extra: str) -> dict[str, str]:
    values = {
        "MARKS": str(tmp_path / "marks.txt"),
        "PRE_DEPLOY_FOLDER": "scripts/pre-deploy",
        "PRE_DEPLOY_COMMAND": "bash migrate.sh",
        "POST_DEPLOY_FOLDER": "scripts/post-deploy",
        "POST_DEPLOY_COMMAND": "bash seed.sh",
        "DEV_START_COMMAND": "bash app.sh",
        "PRE_DEPLOY_WHEN_CHANGED": "prisma/, migrations/",
        **extra,
    }
    if folder:
        values["GITHUB_REPO_FOLDER"] = folder
    return values


def marks(tmp_path: Path, kind: str, commit: str | None = None) -> list[list[str]]:
    path = tmp_path / "marks.txt"
    rows = [line.split() for line in path.read_text().splitlines()] if path.exists() else []
    return [r for r in rows if r[1] == kind and (commit is None or r[2] == commit)]


@pytest.mark.parametrize("folder", ["", "apps/web"], ids=["repo root", "monorepo app folder"])
def test_a_source_only_commit_skips_pre_deploy_and_a_watched_one_runs_it(
    tmp_path, remote: GitRemote, stack_factory, folder: str
):
    first = remote.commit(in_folder(folder, JOBS))  # no prisma/ at all: the first boot runs it anyway
    stack = stack_factory(remote, **env(tmp_path, folder))
    wait_until(lambda: marks(tmp_path, "post", first), 60, what="the first boot's deploy")
    assert marks(tmp_path, "pre", first), "the first boot must run PRE_DEPLOY (no commit to compare with)"

    # prisma/ at the repository root is not the app's prisma/ in a monorepo: still source-only.
    outside = {"prisma/schema.prisma": "model Root {}\n"} if folder else {}
    source = remote.commit({**in_folder(folder, {"src/index.js": "console.log(2)\n"}), **outside})
    line = f"[INFO] PRE_DEPLOY skipped for commit {source[:7]}: nothing changed under prisma/, migrations/"
    stack.wait_for_log(line, 30)
    wait_until(lambda: marks(tmp_path, "post", source), 30, what="the source-only commit's POST_DEPLOY")
    assert not marks(tmp_path, "pre", source)
    workspace = Path(stack.env["WORKSPACE_PATH"])
    assert run_git("rev-parse", "HEAD", cwd=workspace) == source, "the skipped commit is live at once"
    assert stack.log().count(line) == 1

    seen = status(stack)
    assert seen["processed"] == source
    assert seen["last_runs"]["PRE_DEPLOY"]["outcome"] == "skipped"
    assert seen["last_runs"]["PRE_DEPLOY"]["commit"] == source
    assert seen["last_runs"]["PRE_DEPLOY"]["reason"] == "nothing changed under prisma/, migrations/"
    record = next(view for view in seen["commits"] if view["commit"] == source)
    assert record["jobs"]["PRE_DEPLOY"] == {"test": "skipped"}
    jobs = [row.split() for row in cli(stack, "jobs").stdout.splitlines()]
    assert [row[1:4] for row in jobs if row[2] == source[:7] and row[1] == "PRE_DEPLOY"] == [
        ["PRE_DEPLOY", source[:7], "skipped"]
    ]
    run_id = next(row[0] for row in jobs if row[2] == source[:7] and row[1] == "PRE_DEPLOY")
    assert "PRE_DEPLOY skipped: nothing changed under prisma/" in cli(stack, "logs", run_id).stdout
    assert metrics(stack)["hotreload_job_runs_total{kind=PRE_DEPLOY,outcome=skipped}"] == 1

    watched = remote.commit(in_folder(folder, {"prisma/migrations/1.sql": "create table t();\n"}))
    wait_until(lambda: marks(tmp_path, "post", watched), 30, what="the migration commit's deploy")
    assert marks(tmp_path, "pre", watched), "a commit under a watched path runs PRE_DEPLOY"
    assert status(stack)["last_runs"]["PRE_DEPLOY"]["outcome"] == "succeeded"


def test_a_force_push_to_unrelated_history_runs_pre_deploy(tmp_path, remote: GitRemote, stack_factory):
    first = remote.commit(JOBS)
    stack = stack_factory(remote, **env(tmp_path))
    wait_until(lambda: marks(tmp_path, "post", first), 60, what="the first boot's deploy")
    # A new root with the same files but a source change: no merge base with the live commit.
    run_git("checkout", "--quiet", "--orphan", "rewrite", cwd=remote.work)
    rewritten = remote.commit({"src/index.js": "console.log('rewritten')\n"}, push=False)
    remote.push(force=True)
    wait_until(lambda: marks(tmp_path, "post", rewritten), 30, what="the rewritten history's deploy")
    assert marks(tmp_path, "pre", rewritten), "unrelated history cannot be compared: PRE_DEPLOY runs"
    assert "PRE_DEPLOY skipped" not in stack.log()


def test_a_lockfile_change_restarts_the_app_and_a_source_change_does_not(
    tmp_path, remote: GitRemote, stack_factory
):
    first = remote.commit({**JOBS, "package-lock.json": "{}\n"})
    stack = stack_factory(
        remote,
        **env(
            tmp_path,
            DEV_RESTART_WHEN_CHANGED="package-lock.json, yarn.lock",
            POST_DEPLOY_WHEN_CHANGED="seeds/",
        ),
    )
    wait_until(lambda: marks(tmp_path, "app", first), 60, what="the app to start")

    source = remote.commit({"src/index.js": "console.log(3)\n"})
    stack.wait_for_log(f"PRE_DEPLOY skipped for commit {source[:7]}", 30)
    stack.wait_for_log(
        f"[INFO] POST_DEPLOY skipped for commit {source[:7]}: nothing changed under seeds/", 10
    )
    stack.wait_for_syncs(2)
    assert len(marks(tmp_path, "app")) == 1, "a source change must not restart the app"
    assert not marks(tmp_path, "post", source)

    lockfile = remote.commit({"package-lock.json": '{"lockfileVersion": 3}\n'})
    wait_until(lambda: marks(tmp_path, "app", lockfile), 30, what="the app to restart on the lockfile change")
    assert f"[APP] Restarting the app for commit {lockfile[:7]}: it changes package-lock.json, yarn.lock" in (
        stack.log()
    )
    assert len(marks(tmp_path, "app")) == 2
