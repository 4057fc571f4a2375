"""producer.settings: defaults, every validation rule, token handling, secrecy."""

from __future__ import annotations

import hashlib
import pickle
import socket
from pathlib import Path

import pytest
from pydantic import ValidationError

from producer.settings import ConfigError, JobConfig, Settings, load_settings, settings_table
from workers.contract import DeployKeys, JobKind

TOKEN = "ghp_S3cretT0kenValue1234567890"


def problems_of(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    problems = caught.value.problems
    assert problems, "a ConfigError must list at least one problem"
    return problems


def single_problem(env: dict[str, str], variable: str) -> str:
    problems = problems_of(env)
    assert len(problems) == 1, problems
    line = problems[0]
    assert line.startswith(f"{variable}: "), line
    assert "\n" not in line
    return line


# ------------------------------------------------------------------------ defaults


def test_defaults_match_the_table() -> None:
    s = load_settings({})
    assert s.GITHUB_REPO_URL is None
    assert s.GITHUB_BRANCH is None
    assert s.GITHUB_TOKEN is None
    assert s.GITHUB_REPO_FOLDER is None
    assert Path("/workspaces/app") == s.WORKSPACE_PATH
    assert s.GITHUB_SYNC_INTERVAL == 30
    assert s.DEV_START_COMMAND is None
    assert s.DEV_RESTART_ON_DEPLOY is False
    for kind in JobKind:
        job = s.job(kind)
        assert job == JobConfig(kind=kind, command=None, folder=None, repo_url=None, timeout=300)
        assert not job.enabled
    assert s.REDIS_URL is None
    assert s.HOTRELOAD_REDIS_PORT == 6379
    assert s.ENABLE_DEV_HEALTH is True
    assert s.DEV_HEALTH_PORT == 9090
    assert s.GITHUB_WEBHOOK_SECRET is None
    assert s.INSTANCE_ID is None
    assert s.DEPLOYMENT_ID is None
    assert s.POST_DEPLOY_SCOPE == "once"
    assert s.RETRY_BACKOFF_MAX == 600
    assert s.JOB_OUTPUT_MAX_LINES == 1000
    assert s.KILL_GRACE == 3
    assert s.RQ_DASHBOARD_BIND == "127.0.0.1"
    assert s.RQ_DASHBOARD_PORT == 9181
    assert s.RQ_DASHBOARD_USERNAME is None
    assert s.RQ_DASHBOARD_PASSWORD is None
    assert s.LOG_LEVEL == "info"
    assert s.token is None
    assert s.secret_values() == []
    assert s.embedded_redis
    assert s.redis_url_effective == "redis://127.0.0.1:6379/0"
    assert s.app_dir == Path("/workspaces/app")
    assert s.instance_id == socket.gethostname()


def test_explicit_mapping_ignores_os_environ_and_unknown_or_lowercase_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_SYNC_INTERVAL", "7")
    s = load_settings({"github_sync_interval": "abc", "SOMETHING_ELSE": "x", "GITHUB_SYNC_INTERVAL": "5"})
    assert s.GITHUB_SYNC_INTERVAL == 5
    assert s.token is None


def test_default_source_is_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_SYNC_INTERVAL", "7")
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("PRE_DEPLOY_TIMEOUT", "0")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.problems == [
        "PRE_DEPLOY_TIMEOUT: must be a positive whole number of seconds, got '0'"
    ]
    monkeypatch.delenv("PRE_DEPLOY_TIMEOUT")
    s = load_settings()
    assert s.GITHUB_SYNC_INTERVAL == 7
    assert s.token == TOKEN
    # Settings() itself reads os.environ and raises the same ConfigError.
    assert Settings().GITHUB_SYNC_INTERVAL == 7
    monkeypatch.setenv("LOG_LEVEL", "loud")
    with pytest.raises(ConfigError) as caught:
        Settings()
    assert caught.value.problems == ["LOG_LEVEL: must be one of debug, info, warning, error, got 'loud'"]


def test_empty_and_blank_values_count_as_unset() -> None:
    env = {name: "" for name in Settings.model_fields}
    env["PRE_DEPLOY_COMMAND"] = "   "
    env["POST_DEPLOY_REPO_URL"] = ""  # the guide: empty = use the main app repository
    s = load_settings(env)
    assert s.public_dict() == load_settings({}).public_dict()
    assert not s.job(JobKind.PRE).enabled


def test_values_are_stripped() -> None:
    s = load_settings({"GITHUB_SYNC_INTERVAL": " 0.5\n", "GITHUB_BRANCH": " main "})
    assert s.GITHUB_SYNC_INTERVAL == 0.5
    assert s.GITHUB_BRANCH == "main"


# ------------------------------------------------------------------------ accepted values


def test_a_full_configuration() -> None:
    s = load_settings(
        {
            "GITHUB_REPO_URL": "https://github.com/user/monorepo",
            "GITHUB_BRANCH": "feature/x-1",
            "GITHUB_REPO_FOLDER": "apps/backend",
            "WORKSPACE_PATH": "/srv/work/",
            "GITHUB_SYNC_INTERVAL": "0.5",
            "DEV_START_COMMAND": "npm run dev",
            "DEV_RESTART_ON_DEPLOY": "YES",
            "PRE_DEPLOY_COMMAND": "bash migrate.sh",
            "PRE_DEPLOY_FOLDER": "scripts/pre-deploy",
            "PRE_DEPLOY_TIMEOUT": "600",
            "POST_DEPLOY_COMMAND": "bash seed.sh",
            "POST_DEPLOY_REPO_URL": "git@github.com:user/jobs.git",
            "POST_DEPLOY_FOLDER": "seeding",
            "POST_DEPLOY_TIMEOUT": "60",
            "FAILED_DEPLOY_COMMAND": "bash notify.sh",
            "REDIS_URL": "rediss://redis.example.com:6380/2",
            "ENABLE_DEV_HEALTH": "off",
            "DEV_HEALTH_PORT": "8081",
            "INSTANCE_ID": "web-1",
            "DEPLOYMENT_ID": "shop.dev",
            "POST_DEPLOY_SCOPE": "each",
            "RETRY_BACKOFF_MAX": "120",
            "JOB_OUTPUT_MAX_LINES": "50",
            "KILL_GRACE": "1.5",
            "RQ_DASHBOARD_BIND": "0.0.0.0",
            "RQ_DASHBOARD_PORT": "9200",
            "RQ_DASHBOARD_USERNAME": "admin",
            "RQ_DASHBOARD_PASSWORD": "pw-1234",
            "LOG_LEVEL": "DEBUG",
        }
    )
    assert Path("/srv/work") == s.WORKSPACE_PATH
    assert s.app_dir == Path("/srv/work/apps/backend")
    assert s.GITHUB_SYNC_INTERVAL == 0.5
    assert s.DEV_RESTART_ON_DEPLOY is True
    assert s.ENABLE_DEV_HEALTH is False
    assert s.job(JobKind.PRE) == JobConfig(JobKind.PRE, "bash migrate.sh", "scripts/pre-deploy", None, 600)
    assert s.job(JobKind.POST) == JobConfig(
        JobKind.POST, "bash seed.sh", "seeding", "git@github.com:user/jobs.git", 60
    )
    assert s.job(JobKind.FAILED).enabled
    assert s.job(JobKind.FAILED).timeout == 300
    assert not s.embedded_redis
    assert s.redis_url_effective == "rediss://redis.example.com:6380/2"
    assert s.deployment_id == "shop.dev"
    assert s.instance_id == "web-1"
    assert s.keys == DeployKeys(deployment="shop.dev", instance="web-1")
    assert s.POST_DEPLOY_SCOPE == "each"
    assert s.KILL_GRACE == 1.5
    assert s.LOG_LEVEL == "debug"


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/user/repo",
        "https://github.com/user/repo.git",
        "http://git.local:3000/user/repo.git",
        "ssh://git@github.com/user/repo.git",
        "ssh://git@host:2222/repo",
        "git://example.com/repo.git",
        "file:///srv/git/repo.git",
        "git@github.com:user/repo.git",
        "/tmp/pytest-of-root/remote.git",
        "https://[::1]:8443/repo.git",
    ],
)
def test_repository_forms_accepted(url: str) -> None:
    s = load_settings({"GITHUB_REPO_URL": url})
    assert url == s.GITHUB_REPO_URL
    assert s.token is None


@pytest.mark.parametrize(
    "word,value",
    [(w, True) for w in ("true", "1", "yes", "on", "TRUE", "On")]
    + [(w, False) for w in ("false", "0", "no", "off", "False", "OFF")],
)
def test_booleans(word: str, value: bool) -> None:
    assert load_settings({"DEV_RESTART_ON_DEPLOY": word}).DEV_RESTART_ON_DEPLOY is value
    assert load_settings({"ENABLE_DEV_HEALTH": word}).ENABLE_DEV_HEALTH is value


@pytest.mark.parametrize(
    "raw,normal",
    [
        ("./scripts/pre-deploy", "scripts/pre-deploy"),
        ("scripts//pre-deploy/", "scripts/pre-deploy"),
        ("./a/./b/.", "a/b"),
        ("apps/my app", "apps/my app"),
        (".", None),
        ("./", None),
    ],
)
def test_folder_normalisation(raw: str, normal: str | None) -> None:
    s = load_settings({"GITHUB_REPO_FOLDER": raw, "PRE_DEPLOY_COMMAND": "true", "PRE_DEPLOY_FOLDER": raw})
    assert normal == s.GITHUB_REPO_FOLDER
    assert s.job(JobKind.PRE).folder == normal
    assert s.app_dir == (Path("/workspaces/app") / normal if normal else Path("/workspaces/app"))


# ------------------------------------------------------------------------ rejected values


@pytest.mark.parametrize(
    "variable,value,expected",
    [
        (
            "GITHUB_SYNC_INTERVAL",
            "abc",
            "GITHUB_SYNC_INTERVAL: must be a positive number of seconds, got 'abc'",
        ),
        ("GITHUB_SYNC_INTERVAL", "0", "GITHUB_SYNC_INTERVAL: must be a positive number of seconds, got '0'"),
        (
            "GITHUB_SYNC_INTERVAL",
            "-1",
            "GITHUB_SYNC_INTERVAL: must be a positive number of seconds, got '-1'",
        ),
        (
            "GITHUB_SYNC_INTERVAL",
            "nan",
            "GITHUB_SYNC_INTERVAL: must be a positive number of seconds, got 'nan'",
        ),
        (
            "GITHUB_SYNC_INTERVAL",
            "inf",
            "GITHUB_SYNC_INTERVAL: must be a positive number of seconds, got 'inf'",
        ),
        ("GITHUB_SYNC_INTERVAL", "1e400", None),
        ("GITHUB_SYNC_INTERVAL", "1e12", None),
        ("RETRY_BACKOFF_MAX", "0", None),
        ("RETRY_BACKOFF_MAX", "ten", None),
        ("KILL_GRACE", "-3", None),
        ("KILL_GRACE", "", "ok"),
        (
            "PRE_DEPLOY_TIMEOUT",
            "abc",
            "PRE_DEPLOY_TIMEOUT: must be a positive whole number of seconds, got 'abc'",
        ),
        ("POST_DEPLOY_TIMEOUT", "0", None),
        ("FAILED_DEPLOY_TIMEOUT", "-5", None),
        ("PRE_DEPLOY_TIMEOUT", "2.5", None),
        ("PRE_DEPLOY_TIMEOUT", "9" * 5000, None),
        ("JOB_OUTPUT_MAX_LINES", "0", None),
        ("JOB_OUTPUT_MAX_LINES", "many", None),
        ("HOTRELOAD_REDIS_PORT", "0", "HOTRELOAD_REDIS_PORT: must be a port number from 1 to 65535, got '0'"),
        ("DEV_HEALTH_PORT", "65536", None),
        ("RQ_DASHBOARD_PORT", "http", None),
        ("DEV_RESTART_ON_DEPLOY", "maybe", None),
        ("ENABLE_DEV_HEALTH", "2", None),
        ("LOG_LEVEL", "verbose", "LOG_LEVEL: must be one of debug, info, warning, error, got 'verbose'"),
        ("POST_DEPLOY_SCOPE", "all", "POST_DEPLOY_SCOPE: must be one of once, each, got 'all'"),
        ("INSTANCE_ID", "web 1", None),
        ("INSTANCE_ID", "a" * 65, None),
        ("INSTANCE_ID", "web:1", None),
        ("DEPLOYMENT_ID", "shop/dev", None),
        ("WORKSPACE_PATH", "relative/dir", "WORKSPACE_PATH: must be an absolute path, got 'relative/dir'"),
        ("WORKSPACE_PATH", "/", None),
        ("GITHUB_REPO_FOLDER", "/abs/path", None),
        ("GITHUB_REPO_FOLDER", "../outside", None),
        ("GITHUB_REPO_FOLDER", "apps/../../x", None),
        ("RQ_DASHBOARD_BIND", "not a host", None),
        (
            "DEPLOY_STRATEGY",
            "blue-green",
            "DEPLOY_STRATEGY: must be one of in-place, staged, got 'blue-green'",
        ),
        ("DEPLOY_STRATEGY", "Staged", "ok"),
        (
            "DEV_RESTART_WHEN_CHANGED",
            "/etc/passwd",
            "DEV_RESTART_WHEN_CHANGED: must be comma-separated paths relative to the app folder, "
            "not absolute paths, got '/etc/passwd'",
        ),
        ("DEV_RESTART_WHEN_CHANGED", "package.json, ../x.lock", None),
        ("DEV_RESTART_WHEN_CHANGED", "a\x01b", None),
        ("STAGED_SHARED_PATHS", "node_modules", "STAGED_SHARED_PATHS: set without DEPLOY_STRATEGY=staged"),
    ],
)
def test_each_rule_rejects_bad_input(variable: str, value: str, expected: str | None) -> None:
    if expected == "ok":
        load_settings({variable: value})
        return
    line = single_problem({variable: value}, variable)
    if expected is not None:
        assert line == expected


@pytest.mark.parametrize(
    "branch",
    [
        "my branch",
        "a..b",
        "-main",
        "main/",
        "main.lock",
        "feat/x.lock/y",
        "a~1",
        "a^",
        "a:b",
        "a?",
        "a*",
        "a[b",
        "a\\b",
        "@",
        "a@{1}",
        ".hidden",
        "a/.b",
        "end.",
        "a//b",
        "tab\there",
    ],
)
def test_invalid_branch_names(branch: str) -> None:
    line = single_problem({"GITHUB_BRANCH": branch}, "GITHUB_BRANCH")
    assert "is not a valid git branch name" in line
    assert f"got {branch!r}" in line


@pytest.mark.parametrize("branch", ["main", "feature/x-1", "release-2.0", "user@host", "ünïcode"])
def test_valid_branch_names(branch: str) -> None:
    assert branch == load_settings({"GITHUB_BRANCH": branch}).GITHUB_BRANCH


@pytest.mark.parametrize(
    "url",
    [
        "htps:/x",
        "https://",
        "https:///path",
        "https://github.com/user/my repo",
        "https://github.com",
        "https://github.com/",
        "ftp://example.com/repo.git",
        "github.com/user/repo",
        "relative/path",
        "~/repo",
        "https://host:99999/repo",
        "https://host:port/repo",
        "https://-oProxyCommand=x/repo",
        "ssh://user:pass@host/repo",
        "git://user@host/repo",
        "file://otherhost/srv/repo",
        "file://",
        "https://[::1/repo",
        "git@-host:repo",
    ],
)
def test_malformed_repository_urls_are_rejected_without_echo(url: str) -> None:
    for variable in ("GITHUB_REPO_URL", "PRE_DEPLOY_REPO_URL"):
        env = {variable: url, "PRE_DEPLOY_COMMAND": "true"}
        line = single_problem(env, variable)
        assert "got" not in line
        for piece in url.split("/"):
            if len(piece) >= 5 and not piece.endswith(":"):
                assert piece not in line.partition(": ")[2], (piece, line)


@pytest.mark.parametrize(
    "url",
    [
        "http://:SEKRIT@localhost:6379",
        "SEKRIT",
        "redis://",
        "redis://:SEKRIT@/0",
        "redis://SEKRIT:abc/0",
        "redis://SEKRIT:6379/db",
        "unix://",
        "unix://SEKRIT/tmp/redis.sock",
        "mysql://user:SEKRIT@host/db",
        "redis://SEKRIT name/0",
    ],
)
def test_bad_redis_urls_are_rejected_without_echo(url: str) -> None:
    line = single_problem({"REDIS_URL": url}, "REDIS_URL")
    assert "SEKRIT" not in line
    assert "got" not in line


@pytest.mark.parametrize(
    "url", ["redis://localhost:6379/0", "redis://:pw@h:6379", "rediss://u:p@host/1", "unix:///tmp/redis.sock"]
)
def test_good_redis_urls(url: str) -> None:
    s = load_settings({"REDIS_URL": url})
    assert s.redis_url_effective == url
    assert not s.embedded_redis


def test_embedded_redis_port() -> None:
    s = load_settings({"HOTRELOAD_REDIS_PORT": "7000"})
    assert s.embedded_redis
    assert s.redis_url_effective == "redis://127.0.0.1:7000/0"


@pytest.mark.parametrize("prefix", [kind.value for kind in JobKind])
def test_folder_or_repo_without_command(prefix: str) -> None:
    assert problems_of({f"{prefix}_FOLDER": "scripts"}) == [f"{prefix}_FOLDER: set without {prefix}_COMMAND"]
    assert problems_of({f"{prefix}_REPO_URL": "https://github.com/u/jobs"}) == [
        f"{prefix}_REPO_URL: set without {prefix}_COMMAND"
    ]
    # An empty command is unset too.
    assert problems_of({f"{prefix}_COMMAND": "", f"{prefix}_FOLDER": "scripts"}) == [
        f"{prefix}_FOLDER: set without {prefix}_COMMAND"
    ]
    s = load_settings({f"{prefix}_COMMAND": "true", f"{prefix}_FOLDER": "scripts"})
    assert s.job(JobKind(prefix)).enabled


@pytest.mark.parametrize("prefix", ["PRE_DEPLOY", "POST_DEPLOY"])
def test_when_changed_is_a_list_of_pathspecs_of_a_configured_job(prefix: str) -> None:
    assert problems_of({f"{prefix}_WHEN_CHANGED": "prisma/"}) == [
        f"{prefix}_WHEN_CHANGED: set without {prefix}_COMMAND"
    ]
    s = load_settings(
        {f"{prefix}_COMMAND": "true", f"{prefix}_WHEN_CHANGED": " prisma/ ,, migrations/*.sql "}
    )
    assert s.job(JobKind(prefix)).watched == ("prisma/", "migrations/*.sql")
    line = single_problem(
        {f"{prefix}_COMMAND": "true", f"{prefix}_WHEN_CHANGED": "prisma/, ../db"}, f"{prefix}_WHEN_CHANGED"
    )
    assert "'..'" in line


def test_staged_strategy_and_its_shared_paths() -> None:
    s = load_settings({"DEPLOY_STRATEGY": "staged", "STAGED_SHARED_PATHS": "./node_modules/, web/.venv"})
    assert s.DEPLOY_STRATEGY == "staged"
    assert s.shared_paths == ("node_modules", "web/.venv")
    assert load_settings({}).DEPLOY_STRATEGY == "in-place"
    line = single_problem(
        {"DEPLOY_STRATEGY": "staged", "STAGED_SHARED_PATHS": "../shared"}, "STAGED_SHARED_PATHS"
    )
    assert "'..'" in line


def test_dashboard_credentials_come_in_pairs() -> None:
    assert problems_of({"RQ_DASHBOARD_USERNAME": "admin"}) == [
        "RQ_DASHBOARD_USERNAME: set without RQ_DASHBOARD_PASSWORD"
    ]
    assert problems_of({"RQ_DASHBOARD_PASSWORD": "pw-secret"}) == [
        "RQ_DASHBOARD_PASSWORD: set without RQ_DASHBOARD_USERNAME"
    ]


def test_port_clashes() -> None:
    assert problems_of({"DEV_HEALTH_PORT": "9181"}) == [
        "RQ_DASHBOARD_PORT: is the same port as DEV_HEALTH_PORT (9181)"
    ]
    assert problems_of({"HOTRELOAD_REDIS_PORT": "9090"}) == [
        "DEV_HEALTH_PORT: is the same port as HOTRELOAD_REDIS_PORT (9090)"
    ]
    # No clash with a port that is not in use.
    load_settings({"HOTRELOAD_REDIS_PORT": "9090", "REDIS_URL": "redis://r:6379/0"})
    load_settings({"DEV_HEALTH_PORT": "9181", "ENABLE_DEV_HEALTH": "false"})


def test_several_problems_at_once_give_several_lines_in_table_order() -> None:
    problems = problems_of(
        {
            "LOG_LEVEL": "loud",
            "GITHUB_SYNC_INTERVAL": "abc",
            "GITHUB_REPO_URL": "htps:/x",
            "PRE_DEPLOY_FOLDER": "scripts",
            "POST_DEPLOY_TIMEOUT": "0",
            "DEV_HEALTH_PORT": "99999",
            "REDIS_URL": "http://nope",
        }
    )
    assert [line.partition(":")[0] for line in problems] == [
        "GITHUB_REPO_URL",
        "GITHUB_SYNC_INTERVAL",
        "PRE_DEPLOY_FOLDER",
        "POST_DEPLOY_TIMEOUT",
        "REDIS_URL",
        "DEV_HEALTH_PORT",
        "LOG_LEVEL",
    ]
    for line in problems:
        assert "\n" not in line
        assert "validation error" not in line
        assert "errors.pydantic.dev" not in line
        assert "For further information" not in line


def test_config_error_text_and_pickling() -> None:
    error = ConfigError(["A: one", "B: two"])
    assert str(error) == "A: one\nB: two"
    copy = pickle.loads(pickle.dumps(error))
    assert copy.problems == ["A: one", "B: two"]


def test_long_values_are_truncated_and_quoted() -> None:
    line = single_problem({"LOG_LEVEL": "x" * 500}, "LOG_LEVEL")
    assert line == f"LOG_LEVEL: must be one of debug, info, warning, error, got {'x' * 60!r}..."
    line = single_problem({"INSTANCE_ID": "a\nb"}, "INSTANCE_ID")
    assert line.endswith("got 'a\\nb'")


# ------------------------------------------------------------------------ tokens and secrets


def test_token_taken_out_of_https_url_token_form() -> None:
    s = load_settings({"GITHUB_REPO_URL": f"https://{TOKEN}@github.com/user/repo.git"})
    assert s.token == TOKEN
    assert s.GITHUB_REPO_URL == "https://github.com/user/repo.git"
    assert s.GITHUB_TOKEN is None


def test_token_taken_out_of_https_url_user_password_form() -> None:
    s = load_settings({"GITHUB_REPO_URL": f"https://x-access-token:{TOKEN}@github.com/user/repo.git"})
    assert s.token == TOKEN
    assert s.GITHUB_REPO_URL == "https://github.com/user/repo.git"
    s = load_settings({"GITHUB_REPO_URL": "http://oauth2:p%40ss@git.local:8080/r.git"})
    assert s.token == "p@ss"
    assert s.GITHUB_REPO_URL == "http://git.local:8080/r.git"


def test_github_token_wins_over_url_token() -> None:
    s = load_settings(
        {"GITHUB_REPO_URL": "https://urltoken-abcdef@github.com/user/repo", "GITHUB_TOKEN": TOKEN}
    )
    assert s.token == TOKEN
    assert s.GITHUB_REPO_URL == "https://github.com/user/repo"
    # The overridden token is still a secret to mask.
    assert set(s.secret_values()) == {TOKEN, "urltoken-abcdef"}


def test_token_in_a_job_repo_url() -> None:
    s = load_settings(
        {
            "GITHUB_REPO_URL": "https://github.com/u/app",
            "PRE_DEPLOY_COMMAND": "true",
            "PRE_DEPLOY_REPO_URL": f"https://{TOKEN}@github.com/u/jobs",
        }
    )
    assert s.job(JobKind.PRE).repo_url == "https://github.com/u/jobs"
    assert s.token == TOKEN


def test_two_different_url_tokens_without_github_token() -> None:
    env = {
        "GITHUB_REPO_URL": f"https://{TOKEN}@github.com/u/app",
        "POST_DEPLOY_COMMAND": "true",
        "POST_DEPLOY_REPO_URL": "https://othertoken-12345@github.com/u/jobs",
    }
    line = single_problem(env, "POST_DEPLOY_REPO_URL")
    assert "different token" in line
    assert TOKEN not in line and "othertoken-12345" not in line
    load_settings({**env, "GITHUB_TOKEN": TOKEN})


def test_secret_values() -> None:
    s = load_settings(
        {
            "GITHUB_TOKEN": TOKEN,
            "GITHUB_WEBHOOK_SECRET": "hook-secret-xyz",
            "RQ_DASHBOARD_USERNAME": "admin",
            "RQ_DASHBOARD_PASSWORD": "dash-pass-123",
            "REDIS_URL": "redis://default:redis-pass-9@r:6379/0",
        }
    )
    assert set(s.secret_values()) == {TOKEN, "hook-secret-xyz", "dash-pass-123", "redis-pass-9"}
    lengths = [len(v) for v in s.secret_values()]
    assert lengths == sorted(lengths, reverse=True)
    public = s.public_dict()
    assert public["GITHUB_TOKEN"] == "***"
    assert public["GITHUB_WEBHOOK_SECRET"] == "***"
    assert public["RQ_DASHBOARD_PASSWORD"] == "***"
    assert public["RQ_DASHBOARD_USERNAME"] == "admin"
    assert public["REDIS_URL"] == "redis://***@r:6379/0"
    assert load_settings({}).public_dict()["GITHUB_TOKEN"] is None


@pytest.mark.parametrize(
    "env",
    [
        {"GITHUB_TOKEN": TOKEN, "GITHUB_REPO_URL": "https://github.com/u/r"},
        {"GITHUB_REPO_URL": f"https://{TOKEN}@github.com/u/r"},
        {"GITHUB_REPO_URL": f"https://user:{TOKEN}@github.com/u/r"},
        {"GITHUB_WEBHOOK_SECRET": TOKEN},
        {"RQ_DASHBOARD_USERNAME": "a", "RQ_DASHBOARD_PASSWORD": TOKEN},
        {"REDIS_URL": f"redis://:{TOKEN}@host:6379/0"},
    ],
)
def test_secret_never_in_public_dict_repr_or_str(env: dict[str, str]) -> None:
    s = load_settings(env)
    assert TOKEN in s.secret_values()
    for text in (repr(s), str(s), repr(s.public_dict()), repr(s.model_dump()), repr(s.job(JobKind.PRE))):
        assert TOKEN not in text


@pytest.mark.parametrize(
    "env",
    [
        # Bad values elsewhere: the token must not leak through any line.
        {"GITHUB_TOKEN": TOKEN, "GITHUB_SYNC_INTERVAL": "x", "LOG_LEVEL": TOKEN},
        {"GITHUB_TOKEN": TOKEN + "\x01"},
        {"GITHUB_REPO_URL": f"https://{TOKEN}@", "INSTANCE_ID": f"id {TOKEN}"},
        {"GITHUB_REPO_URL": f"https://{TOKEN}@github.com/u/r with space"},
        {"GITHUB_REPO_URL": f"https://{TOKEN}@github.com:badport/u/r"},
        {"PRE_DEPLOY_REPO_URL": f"https://user:{TOKEN}@github.com/u/jobs"},
        {"REDIS_URL": f"http://:{TOKEN}@host"},
        {"REDIS_URL": f"redis://:{TOKEN}@host:abc/0"},
        {"GITHUB_WEBHOOK_SECRET": TOKEN + "\n\x00", "DEPLOYMENT_ID": TOKEN},
        {"RQ_DASHBOARD_PASSWORD": TOKEN, "WORKSPACE_PATH": f"rel/{TOKEN}"},
    ],
)
def test_secret_never_in_problem_lines(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    for line in caught.value.problems:
        assert TOKEN not in line
        assert "\n" not in line
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(caught.value)


# ------------------------------------------------------------------------ identities


def test_deployment_id_is_stable_and_independent_of_the_token() -> None:
    base = {
        "GITHUB_REPO_URL": "https://github.com/u/r",
        "GITHUB_BRANCH": "main",
        "GITHUB_REPO_FOLDER": "apps/x",
    }
    plain = load_settings(base).deployment_id
    assert plain == load_settings(base).deployment_id
    assert len(plain) == 12
    int(plain, 16)
    expected = hashlib.sha1(b"https://github.com/u/r\x00main\x00apps/x").hexdigest()[:12]
    assert plain == expected
    assert load_settings({**base, "GITHUB_TOKEN": TOKEN}).deployment_id == plain
    assert (
        load_settings({**base, "GITHUB_REPO_URL": f"https://{TOKEN}@github.com/u/r"}).deployment_id == plain
    )
    assert (
        load_settings({**base, "GITHUB_REPO_URL": f"https://u:{TOKEN}@github.com/u/r"}).deployment_id == plain
    )
    assert load_settings({**base, "GITHUB_REPO_FOLDER": "./apps/x/"}).deployment_id == plain
    # Each part of the identity matters.
    assert load_settings({**base, "GITHUB_BRANCH": "dev"}).deployment_id != plain
    assert load_settings({**base, "GITHUB_REPO_FOLDER": "apps/y"}).deployment_id != plain
    assert load_settings({**base, "GITHUB_REPO_URL": "https://github.com/u/s"}).deployment_id != plain
    # DEPLOYMENT_ID overrides it.
    assert load_settings({**base, "DEPLOYMENT_ID": "mine"}).deployment_id == "mine"


def test_keys_use_the_ids() -> None:
    s = load_settings({"INSTANCE_ID": "web-2", "GITHUB_REPO_URL": "https://github.com/u/r"})
    assert s.keys.instance == "web-2"
    assert s.keys.deployment == s.deployment_id
    assert s.keys.queue(JobKind.PRE) == f"hotreload:{s.deployment_id}:web-2:pre"


def test_settings_are_frozen() -> None:
    s = load_settings({})
    with pytest.raises(ValidationError):
        s.LOG_LEVEL = "debug"


# ------------------------------------------------------------------------ documentation


def test_every_field_has_a_one_line_description() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, name
        assert "\n" not in field.description, name


def test_settings_table() -> None:
    table = settings_table()
    lines = table.strip().splitlines()
    assert lines[0] == "| Variable | Default | Meaning |"
    assert len(lines) == 2 + len(Settings.model_fields)
    rows = {line.split(" | ")[0].strip("| `"): line for line in lines[2:]}
    assert set(rows) == set(Settings.model_fields)
    assert "| `30` |" in rows["GITHUB_SYNC_INTERVAL"]
    assert "| `/workspaces/app` |" in rows["WORKSPACE_PATH"]
    assert "| `false` |" in rows["DEV_RESTART_ON_DEPLOY"]
    assert "| `300` |" in rows["PRE_DEPLOY_TIMEOUT"]
    assert "| unset |" in rows["GITHUB_TOKEN"]
    for line in lines[2:]:
        assert line.count(" | ") == 2, line
