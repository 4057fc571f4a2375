"""Property tests of producer.settings: any environment gives Settings or a clean ConfigError.

Whatever the values (text, numbers, unicode, huge strings, near-valid URLs), loading
either succeeds or raises ConfigError whose every line is ``KNOWN_VARIABLE: ...`` on
one line, and no secret marker ever shows in a problem line, public_dict(), repr or str.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producer.settings import ConfigError, Settings, load_settings
from workers.contract import JobKind

FIELDS = tuple(Settings.model_fields)
SECRET_FIELDS = ("GITHUB_TOKEN", "WEBHOOK_SECRET", "GITHUB_WEBHOOK_SECRET", "RQ_DASHBOARD_PASSWORD")
URL_FIELDS = ("GITHUB_REPO_URL", *(f"{kind.value}_REPO_URL" for kind in JobKind))
NO_ECHO = (*SECRET_FIELDS, *URL_FIELDS, "REDIS_URL")

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)

# A secret marker: long and distinctive, so that it cannot be part of any fixed message.
markers = st.text(alphabet="0123456789abcdef", min_size=16, max_size=24).map(lambda h: f"SeCrEt{h}MaRk")

near_valid = st.sampled_from(
    [
        "",
        " ",
        "0",
        "1",
        "-1",
        "0.5",
        "1e400",
        "nan",
        "inf",
        "-inf",
        "65535",
        "65536",
        "true",
        "off",
        "maybe",
        "once",
        "each",
        "DEBUG",
        "..",
        "../x",
        "./a/b/",
        "/",
        "/abs/path",
        "a b",
        "main",
        "-main",
        "x.lock",
        "https://",
        "htps:/x",
        "https://github.com/u/r.git",
        "https://github.com",
        "git@github.com:u/r.git",
        "ssh://git@host:22/r",
        "ssh://u:p@host/r",
        "file:///srv/r.git",
        "file://host/r",
        "git://h/r",
        "https://[::1/r",
        "https://h:0/r",
        "redis://",
        "redis://:pw@h:6379/0",
        "rediss://h/99999999",
        "unix:///tmp/r.sock",
        "unix://",
        "127.0.0.1",
        "::",
        "web-1",
        "a" * 64,
        "a" * 65,
    ]
)
numbers = st.one_of(
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats().map(str),
    st.decimals(allow_nan=True).map(str),
)
huge = st.tuples(
    st.sampled_from(["9", "a", "/", ".", " ", "é", "\n", "https://h/"]), st.integers(1_000, 200_000)
).map(lambda pair: pair[0] * pair[1])
surrogates = st.text(st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF), min_size=1, max_size=5)
any_text = st.one_of(st.text(), st.text(st.characters(codec="ascii")), surrogates)
values = st.one_of(any_text, numbers, near_valid, huge)


def url_with_token(marker: str) -> st.SearchStrategy[str]:
    """URLs that carry the marker as a credential, well-formed or not."""
    return st.one_of(
        st.tuples(
            st.sampled_from(["https", "http", "HTTPS", "ssh", "git", "file", "redis", "ftp"]), any_text
        ).map(lambda p: f"{p[0]}://{marker}@{p[1]}"),
        st.tuples(
            st.sampled_from(["https", "http"]), st.sampled_from(["user", "", "x-access-token"]), any_text
        ).map(lambda p: f"{p[0]}://{p[1]}:{marker}@{p[2]}"),
        st.sampled_from(well_formed_urls(marker)),
    )


def well_formed_urls(marker: str) -> list[str]:
    """Valid URLs with the marker as credential: git ones for *_REPO_URL, redis ones for REDIS_URL."""
    return [
        f"https://{marker}@github.com/u/r.git",
        f"http://user:{marker}@git.local:3000/u/r",
        f"redis://:{marker}@localhost:6379/0",
        f"rediss://default:{marker}@redis.example.com/1",
    ]


@st.composite
def environments(draw: st.DrawFn) -> tuple[dict[str, str], list[str]]:
    """A random environment, and the secret markers it holds."""
    env = draw(st.dictionaries(st.sampled_from(FIELDS), values, max_size=12))
    secrets: list[str] = []
    for name in SECRET_FIELDS:
        if draw(st.booleans()):
            marker = draw(markers)
            env[name] = marker
            secrets.append(marker)
    for name in (*URL_FIELDS, "REDIS_URL"):
        if draw(st.integers(0, 3)) == 0:
            marker = draw(markers)
            env[name] = draw(url_with_token(marker))
            secrets.append(marker)
    # Unknown and wrongly-cased variables are ignored.
    if draw(st.booleans()):
        env["github_token_lowercase"] = draw(any_text)
        env["UNRELATED"] = draw(any_text)
    return env, secrets


def check(env: dict[str, str], secrets: list[str]) -> Settings | None:
    """Load env; assert the contract of the outcome. Any other exception fails the test."""
    try:
        loaded = load_settings(env)
    except ConfigError as error:
        assert error.problems, "ConfigError without problems"
        for line in error.problems:
            name, sep, message = line.partition(": ")
            assert sep and name in FIELDS, line[:200]
            assert message, line[:200]
            assert len(line.splitlines()) == 1, line[:200]
            if name in NO_ECHO:
                assert ", got " not in line, f"the value of {name} is echoed"
            for secret in secrets:
                assert secret not in line, "secret in a problem line"
        text = str(error) + repr(error)
        for secret in secrets:
            assert secret not in text
        return None
    shown = [repr(loaded), str(loaded), repr(loaded.public_dict()), repr(loaded.model_dump())]
    shown += [repr(loaded.job(kind)) for kind in JobKind]
    for secret in secrets:
        for text in shown:
            assert secret not in text, "secret shown by a loaded Settings"
    for name in SECRET_FIELDS:
        if name in env and env[name].strip():
            assert env[name].strip() in loaded.secret_values()
    check_invariants(loaded)
    return loaded


def check_invariants(s: Settings) -> None:
    for number in (s.GITHUB_SYNC_INTERVAL, s.RETRY_BACKOFF_MAX, s.KILL_GRACE):
        assert math.isfinite(number) and number > 0
    for kind in JobKind:
        job = s.job(kind)
        assert job.timeout > 0
        if job.folder is not None:
            assert not job.folder.startswith(("/", "./")) and ".." not in job.folder.split("/")
        if not job.enabled:
            assert job.folder is None and job.repo_url is None
    for url in (s.GITHUB_REPO_URL, *(s.job(kind).repo_url for kind in JobKind)):
        if url is not None and url.startswith(("https://", "http://")):
            assert "@" not in url.split("//", 1)[1].split("/", 1)[0], "credentials left in a URL"
    for port in (s.HOTRELOAD_REDIS_PORT, s.DEV_HEALTH_PORT, s.RQ_DASHBOARD_PORT):
        assert 1 <= port <= 65535
    assert s.WORKSPACE_PATH.is_absolute()
    assert len(s.deployment_id) >= 1 and len(s.keys.prefix) > 0
    assert s.redis_url_effective.startswith(("redis://", "rediss://", "unix://"))


@FUZZ
@given(name=st.sampled_from(FIELDS), value=values, marker=markers)
def test_any_single_variable(name: str, value: str, marker: str) -> None:
    check({name: value, "GITHUB_TOKEN": marker, "GITHUB_WEBHOOK_SECRET": marker + "w"}, [marker])


@FUZZ
@given(env_and_secrets=environments())
def test_any_environment(env_and_secrets: tuple[dict[str, str], list[str]]) -> None:
    env, secrets = env_and_secrets
    check(env, secrets)


@FUZZ
@given(name=st.sampled_from(URL_FIELDS), marker=markers, data=st.data())
def test_tokens_in_urls_never_leak(name: str, marker: str, data: st.DataObject) -> None:
    url = data.draw(url_with_token(marker))
    env = {name: url}
    if name != "GITHUB_REPO_URL":
        env[f"{name.removesuffix('_REPO_URL')}_COMMAND"] = "true"
    if url.lower().startswith(("https://", "http://")):
        # A credential of an http(s) URL also in another variable's value: echoes mask it.
        # (An ssh:// user name is no secret, so it is not masked elsewhere.)
        env["LOG_LEVEL"] = data.draw(st.sampled_from(["info", marker, f"x{marker}y"]))
    loaded = check(env, [marker])
    if url in well_formed_urls(marker)[:2] and env.get("LOG_LEVEL", "info") == "info":
        assert loaded is not None, "a valid URL with a token was rejected"
        assert loaded.token == marker
        assert marker in loaded.secret_values()


@FUZZ
@given(marker=markers, data=st.data())
def test_redis_password_never_leaks(marker: str, data: st.DataObject) -> None:
    url = data.draw(st.one_of(st.sampled_from(well_formed_urls(marker)[2:]), url_with_token(marker)))
    level = data.draw(st.sampled_from(["info", marker]))
    loaded = check({"REDIS_URL": url, "LOG_LEVEL": level}, [marker])
    if url in well_formed_urls(marker)[2:] and level == "info":
        assert loaded is not None, "a valid REDIS_URL was rejected"
        assert marker in loaded.secret_values()
        assert loaded.redis_url_effective == url


@FUZZ
@given(value=st.one_of(numbers, any_text, near_valid))
def test_numbers_are_positive_finite_or_rejected(value: Any) -> None:
    for name in ("GITHUB_SYNC_INTERVAL", "RETRY_BACKOFF_MAX", "KILL_GRACE", "PRE_DEPLOY_TIMEOUT"):
        loaded = check({name: value}, [])
        if loaded is not None and value.strip():
            number = float(value.strip())
            assert math.isfinite(number) and number > 0
