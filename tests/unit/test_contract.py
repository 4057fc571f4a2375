"""Pure logic of the job contract and the retry back-off."""

from __future__ import annotations

from workers.commit_tracker import RetryState
from workers.contract import DeployKeys, JobKind, JobSpec


def spec(**overrides: object) -> JobSpec:
    values: dict[str, object] = dict(
        kind=JobKind.PRE,
        command="bash migrate.sh",
        cwd="/w/app",
        timeout=300,
        commit="a" * 40,
        previous="b" * 40,
        branch="main",
        workspace="/w/app",
        deployment="dep",
        instance="web-1",
    )
    values.update(overrides)
    return JobSpec(**values)  # type: ignore[arg-type]


def test_spec_round_trips_through_a_plain_dict() -> None:
    original = spec(attempt=3, boot=7)
    assert JobSpec.from_dict(original.to_dict()) == original
    assert original.to_dict()["kind"] == "PRE_DEPLOY"


def test_description_and_tag_are_what_a_person_reads() -> None:
    assert spec().description() == "PRE_DEPLOY aaaaaaa bash migrate.sh"
    assert JobKind.POST.tag == "[POST-DEPLOY]"


def test_job_env_has_the_deploy_variables() -> None:
    env = spec(previous=None).job_env()
    assert env["DEPLOY_COMMIT_SHA"] == "a" * 40
    assert env["DEPLOY_PREVIOUS_SHA"] == ""
    assert env["DEPLOY_BRANCH"] == "main"
    assert env["DEPLOY_JOB"] == "PRE_DEPLOY"


def test_job_ids_differ_per_boot_deploy_and_attempt() -> None:
    keys = DeployKeys("dep", "web-1")
    specs = [spec(boot=b, seq=d, attempt=a) for b in (1, 2) for d in (1, 2) for a in (1, 2)]
    assert len({keys.job_id(s) for s in specs}) == 8
    assert keys.queues()[0].endswith(":pre")


def test_retry_backoff_doubles_and_is_capped() -> None:
    delays = [RetryState("c", n, 100.0, "x").next_at(2.0, 30.0) - 100.0 for n in (1, 2, 3, 4, 5, 6)]
    assert delays == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_job_env_names_the_live_workspace_the_checkout_and_the_strategy() -> None:
    live = spec(workspace="/w/app").job_env()
    assert (live["DEPLOY_WORKSPACE"], live["DEPLOY_CHECKOUT"], live["DEPLOY_STRATEGY"]) == (
        "/w/app",
        "/w/app",
        "in-place",
    )
    staged = spec(workspace="/w/app", checkout="/w/app.staged", strategy="staged")
    assert staged.staged and not spec(checkout="/w/app").staged
    assert staged.job_env()["DEPLOY_CHECKOUT"] == "/w/app.staged"
    assert staged.job_env()["DEPLOY_WORKSPACE"] == "/w/app"
    assert JobSpec.from_dict(staged.to_dict()) == staged


def test_a_job_queued_by_an_older_version_still_reads() -> None:
    older = {**spec().to_dict(), "generation": 4}  # a field this version dropped
    assert JobSpec.from_dict(older) == spec()
