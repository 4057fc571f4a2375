"""The staging checkout with real git: reset per deploy, dependency folders linked, rebuilt when broken."""

from __future__ import annotations

import shutil
from pathlib import Path

from producer.git_sync import GitCheckout
from producer.settings import load_settings
from producer.staging import Staging
from tests.conftest import GitRemote, run_git


def staging_for(tmp_path: Path, remote: GitRemote, **env: str) -> tuple[Staging, GitCheckout]:
    settings = load_settings(
        {
            "GITHUB_REPO_URL": remote.url,
            "GITHUB_BRANCH": "main",
            "WORKSPACE_PATH": str(tmp_path / "ws"),
            "DEPLOY_STRATEGY": "staged",
            **env,
        }
    )
    live = GitCheckout(remote.url, settings.WORKSPACE_PATH, "main", None, [])
    live.ensure_cloned()
    return Staging(settings, live), live


def test_each_deploy_gets_a_clean_checkout_of_its_commit_with_the_live_dependencies(tmp_path, remote):
    first = remote.commit({".gitignore": "node_modules/\n.cache/\n", "app.js": "1\n"})
    staging, live = staging_for(tmp_path, remote)
    (live.path / "node_modules" / "dep").mkdir(parents=True)
    (live.path / ".cache").mkdir()
    (live.path / "notes.txt").write_text("untracked, not ignored\n")

    staging.prepare(first)
    assert run_git("rev-parse", "HEAD", cwd=staging.path) == first
    assert (staging.path / "node_modules").resolve() == (live.path / "node_modules").resolve()
    assert (staging.path / ".cache").is_symlink()
    assert not (staging.path / "notes.txt").exists(), "only ignored folders are shared"
    (staging.path / "written-by-pre-deploy.txt").write_text("x\n")

    second = remote.commit({"app.js": "2\n"})
    live.fetch()
    staging.prepare(second)
    assert run_git("rev-parse", "HEAD", cwd=staging.path) == second
    assert (staging.path / "app.js").read_text() == "2\n"
    assert not (staging.path / "written-by-pre-deploy.txt").exists(), "each deploy starts clean"
    assert (live.path / "node_modules" / "dep").is_dir(), "cleaning never reaches the live folders"
    assert run_git("rev-parse", "HEAD", cwd=live.path) == first, "the workspace stays where it was"


def test_shared_paths_are_exactly_those_listed_in_a_monorepo_app_folder(tmp_path, remote):
    sha = remote.commit({".gitignore": "node_modules/\n", "apps/web/index.js": "1\n"})
    staging, live = staging_for(
        tmp_path, remote, GITHUB_REPO_FOLDER="apps/web", STAGED_SHARED_PATHS="data, vendor"
    )
    (live.path / "apps/web/data").mkdir(parents=True)
    (live.path / "apps/web/node_modules").mkdir()
    staging.prepare(sha)
    assert staging.app_dir == staging.path / "apps/web"
    assert (staging.app_dir / "data").is_symlink()
    assert not (staging.app_dir / "node_modules").exists()
    assert not (staging.app_dir / "vendor").exists(), "a listed folder the workspace lacks is not made up"


def test_a_broken_staging_tree_or_a_recloned_workspace_is_rebuilt(tmp_path, remote):
    sha = remote.commit({"app.js": "1\n"})
    staging, live = staging_for(tmp_path, remote)
    staging.prepare(sha)
    (Path(run_git("rev-parse", "--git-dir", cwd=staging.path)) / "index.lock").write_text("")
    newer = remote.commit({"app.js": "2\n"})
    live.fetch()
    staging.prepare(newer)  # a git killed mid-checkout left its lock
    assert run_git("rev-parse", "HEAD", cwd=staging.path) == newer

    shutil.rmtree(live.path)  # the workspace was deleted and is cloned again
    live._repo = None
    live.ensure_cloned()
    staging.prepare(sha)
    assert run_git("rev-parse", "HEAD", cwd=staging.path) == sha
    assert run_git("worktree", "list", cwd=live.path).count(str(staging.path)) == 1
