"""Five replicas of one deployment on one redis-server and one bare repository: PRE_DEPLOY once per commit.

Each replica is a whole container stack (the real Procfile under honcho) with its own
workspace, INSTANCE_ID and worker; they share REDIS_URL and DEPLOYMENT_ID. Every job
appends ``<time> <job> <commit> <instance>`` to one marks file, so the assertions are
about what ran where, and when::

    stacks = start_replicas(tmp_path, remote, stack_factory, scope="once")
    push(remote, stacks)            # a commit, and `hotreload sync` on every replica
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import redis

from tests.conftest import VENV_BIN, GitRemote, Stack, run_git, wait_until
from workers.contract import DeployKeys, wake_poller
from workers.lease import HEARTBEAT_INTERVAL, LEASE_TTL

pytestmark = pytest.mark.e2e

DEPLOYMENT = "shop"
REPLICAS = 5
# Each job marks its start (with its attempt) and end; PRE_DEPLOY takes a moment so that two
# overlapping runs would show, waits while the file named by $HOLD exists (the test's slow
# migration), and fails in a commit that has a file named "broken".
JOB_SH = (
    'k="$1"\n'
    'echo "$(date +%s.%N) $k-start $DEPLOY_COMMIT_SHA $DEPLOY_INSTANCE $DEPLOY_ATTEMPT" >> "$MARKS"\n'
    'if [ "$k" = pre ]; then sleep 0.5; while [ -e "$HOLD" ]; do sleep 0.05; done; [ ! -e broken ] || exit 1; fi\n'
    'echo "$(date +%s.%N) $k-end $DEPLOY_COMMIT_SHA $DEPLOY_INSTANCE" >> "$MARKS"\n'
)
APP_SH = 'echo "$(date +%s.%N) app $DEPLOY_COMMIT_SHA $INSTANCE_ID" >> "$MARKS"\nexec sleep 600\n'


def instance(n: int) -> str:
    return f"web-{n}"


def start_replicas(tmp_path: Path, remote: GitRemote, stack_factory, scope: str) -> dict[str, Stack]:
    stacks = {}
    for n in range(REPLICAS):
        stacks[instance(n)] = stack_factory(
            remote,
            INSTANCE_ID=instance(n),
            DEPLOYMENT_ID=DEPLOYMENT,
            POST_DEPLOY_SCOPE=scope,
            PRE_DEPLOY_COMMAND="bash job.sh pre",
            POST_DEPLOY_COMMAND="bash job.sh post",
            DEV_START_COMMAND="bash app.sh",
            DEV_RESTART_ON_DEPLOY="true",
            MARKS=str(tmp_path / "marks.txt"),
            HOLD=str(tmp_path / "hold"),
            # Every process of this "container" carries it, so the test can kill them all.
            HOTRELOAD_TEST_CONTAINER=f"{tmp_path.name}-{instance(n)}",
        )
    return stacks


def marks(tmp_path: Path, what: str, commit: str | None = None) -> list[tuple[float, str, str]]:
    """(time, commit, instance) of each ``what`` mark (pre-start, pre-end, post-end, app)."""
    path = tmp_path / "marks.txt"
    found = []
    for line in path.read_text().splitlines() if path.exists() else []:
        parts = line.split()
        if len(parts) >= 4 and parts[1] == what and (commit is None or parts[2] == commit):
            found.append((float(parts[0]), parts[2], parts[3]))
    return found


def attempts(tmp_path: Path, commit: str) -> list[str]:
    """DEPLOY_ATTEMPT of each PRE_DEPLOY run of ``commit``, in order."""
    lines = (tmp_path / "marks.txt").read_text().splitlines()
    return [p[4] for p in (line.split() for line in lines) if p[1:3] == ["pre-start", commit]]


def connection(stacks: dict[str, Stack]) -> redis.Redis:
    return redis.Redis.from_url(next(iter(stacks.values())).env["REDIS_URL"], decode_responses=True)


def processed(stacks: dict[str, Stack], name: str) -> str | None:
    return connection(stacks).get(DeployKeys(DEPLOYMENT, name).processed)  # type: ignore[return-value]


def all_processed(stacks: dict[str, Stack], commit: str) -> bool:
    return all(processed(stacks, name) == commit for name in stacks)


def push(remote: GitRemote, stacks: dict[str, Stack], n: int, files: dict[str, str] | None = None) -> str:
    """A new commit on the branch, then `hotreload sync` on every replica: they race for it at once."""
    sha = remote.commit({"version.txt": f"{n}\n", **(files or {})}, message=f"v{n}")
    r = connection(stacks)
    for name in stacks:
        wake_poller(r, DeployKeys(DEPLOYMENT, name), "sync")
    return sha


def assert_no_overlapping_pre_deploys(tmp_path: Path) -> None:
    runs = sorted(
        (start, end)
        for start, commit, name in marks(tmp_path, "pre-start")
        for end, c2, n2 in marks(tmp_path, "pre-end")
        if (c2, n2) == (commit, name)
    )
    for (_, end), (start, _) in zip(runs, runs[1:], strict=False):
        assert start >= end, "two PRE_DEPLOY runs overlapped (the migration race)"


def kill_container(stack: Stack) -> int:
    """SIGKILL every process of one replica (honcho, its processes, the running job), as a host crash would."""
    tag = f"HOTRELOAD_TEST_CONTAINER={stack.env['HOTRELOAD_TEST_CONTAINER']}".encode()
    killed = 0
    for _ in range(20):
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if tag in f.read().split(b"\0"):
                        found.append(int(pid))
            except OSError:
                continue
        if not found:
            return killed
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    raise AssertionError("processes of the killed replica keep coming back")


def test_five_replicas_run_each_pre_deploy_once_and_post_deploy_once(tmp_path, remote, stack_factory):
    first = remote.commit({"job.sh": JOB_SH, "app.sh": APP_SH, "version.txt": "0\n"})
    stacks = start_replicas(tmp_path, remote, stack_factory, scope="once")
    wait_until(
        lambda: all_processed(stacks, first), 60, interval=0.1, what="every replica to deploy the boot commit"
    )
    wait_until(
        lambda: len(marks(tmp_path, "app", first)) == REPLICAS, 30, interval=0.1, what="every app to start"
    )
    assert len(marks(tmp_path, "pre-start", first)) == 1, "the boot PRE_DEPLOY ran on more than one replica"
    booted_by = marks(tmp_path, "pre-start", first)[0][2]
    pre_end = marks(tmp_path, "pre-end", first)[0][0]
    assert all(t > pre_end for t, _, _ in marks(tmp_path, "app", first)), (
        "an app started before the PRE_DEPLOY"
    )

    commits, latencies = [], []
    for n in range(1, 11):
        pushed = time.time()
        sha = push(remote, stacks, n)
        commits.append(sha)
        started = wait_until(
            lambda sha=sha: marks(tmp_path, "pre-start", sha), 30, interval=0.05, what=f"PRE of v{n}"
        )
        latencies.append(started[0][0] - pushed)
        # Every other push lands while this PRE_DEPLOY still runs: that commit waits its turn.
        time.sleep(max(0.0, pushed + 1.0 - time.time()) if n % 2 else 0.0)
    final = commits[-1]
    wait_until(
        lambda: all_processed(stacks, final), 60, interval=0.1, what="every replica to deploy the last commit"
    )
    wait_until(
        lambda: marks(tmp_path, "post-end", final), 30, interval=0.1, what="POST_DEPLOY of the last commit"
    )
    wait_until(
        lambda: len(marks(tmp_path, "app", final)) == REPLICAS,
        30,
        interval=0.1,
        what="every app on the last commit",
    )
    for stack in stacks.values():
        stack.wait_for_syncs(2)  # several more sync cycles on every replica: nothing may run again

    r = connection(stacks)
    for sha in [first, *commits]:
        assert len(marks(tmp_path, "pre-start", sha)) == 1, (
            f"PRE_DEPLOY of {sha[:7]} did not run exactly once"
        )
        assert len(marks(tmp_path, "pre-end", sha)) == 1
        assert len(marks(tmp_path, "post-start", sha)) <= 1, (
            f"POST_DEPLOY of {sha[:7]} ran on several replicas"
        )
        record = r.hgetall(DeployKeys(DEPLOYMENT, "x").commit_record(sha))
        assert record["pre_outcome"] == "succeeded"
        assert record["pre_instance"] == marks(tmp_path, "pre-start", sha)[0][2]
    assert len(marks(tmp_path, "post-start", final)) == 1, "POST_DEPLOY_SCOPE=once: one replica runs it"
    assert_no_overlapping_pre_deploys(tmp_path)
    for name, stack in stacks.items():
        assert run_git("rev-parse", "HEAD", cwd=Path(stack.env["WORKSPACE_PATH"])) == final, name
        assert stack.process is not None and stack.process.poll() is None, f"{name} exited"
    logs = "".join(stack.log() for stack in stacks.values())
    for sha in commits:
        assert logs.count(f"Commit {sha[:7]} deployed: PRE_DEPLOY succeeded\n") == 1
    assert "is running the PRE_DEPLOY of commit" in logs, "no push landed during a PRE_DEPLOY"
    # /status and `hotreload status` show, per commit, which instance ran each job.
    one = next(iter(stacks.values()))
    url = f"http://127.0.0.1:{one.env['DEV_HEALTH_PORT']}/status"
    with urllib.request.urlopen(url, timeout=5) as response:
        views = {view["commit"]: view for view in json.loads(response.read())["commits"]}
    for sha in commits:
        runner = marks(tmp_path, "pre-start", sha)[0][2]
        assert views[sha]["jobs"]["PRE_DEPLOY"] == {runner: "succeeded"}
    post_runner = marks(tmp_path, "post-start", final)[0][2]
    assert views[final]["jobs"]["POST_DEPLOY"] == {post_runner: "succeeded"}
    table = subprocess.run(
        [str(VENV_BIN / "hotreload"), "status"], env=one.env, capture_output=True, text=True, timeout=30
    )
    runner = marks(tmp_path, "pre-start", final)[0][2]
    assert f"PRE_DEPLOY {runner} succeeded; POST_DEPLOY {post_runner} succeeded" in table.stdout, table.stdout
    assert f"Commit {final[:7]}" in table.stdout

    ran = Counter(name for _, _, name in marks(tmp_path, "pre-start"))
    print(
        f"\nreplicas: PRE_DEPLOY runs per instance {dict(sorted(ran.items()))} (boot by {booted_by}); "
        f"POST_DEPLOY runs {len(marks(tmp_path, 'post-start'))} for {len(commits) + 1} commits; "
        f"push to PRE start median {sorted(latencies)[len(latencies) // 2]:.2f}s max {max(latencies):.2f}s"
    )


def test_a_killed_lease_holder_is_taken_over_and_post_deploy_runs_on_each_replica(
    tmp_path, remote, stack_factory
):
    first = remote.commit({"job.sh": JOB_SH, "app.sh": APP_SH, "version.txt": "0\n"})
    stacks = start_replicas(tmp_path, remote, stack_factory, scope="each")
    wait_until(
        lambda: all_processed(stacks, first), 60, interval=0.1, what="every replica to deploy the boot commit"
    )
    wait_until(
        lambda: {n for _, _, n in marks(tmp_path, "post-end", first)} == set(stacks),
        30,
        interval=0.1,
        what="POST_DEPLOY_SCOPE=each: the boot commit's POST_DEPLOY on every replica",
    )
    assert len(marks(tmp_path, "pre-start", first)) == 1

    (tmp_path / "hold").touch()  # the next PRE_DEPLOY is a slow migration
    second = push(remote, stacks, 1)
    _, _, holder = wait_until(
        lambda: marks(tmp_path, "pre-start", second), 30, interval=0.05, what="the slow PRE"
    )[0]
    others = {name: stack for name, stack in stacks.items() if name != holder}
    for name, stack in others.items():
        stack.wait_for_log(f"PRE_DEPLOY is running on instance {holder}; waiting for its outcome", 10)
        assert processed(stacks, name) == first, "a replica deployed before the PRE_DEPLOY ended"
        assert run_git("rev-parse", "HEAD", cwd=Path(stack.env["WORKSPACE_PATH"])) == first

    killed_at = time.time()
    assert kill_container(stacks[holder]) >= 5
    (tmp_path / "hold").unlink()
    taken = wait_until(
        lambda: [m for m in marks(tmp_path, "pre-start", second) if m[2] != holder],
        LEASE_TTL + 10,
        interval=0.05,
        what="another replica to take the commit over",
    )
    takeover = taken[0][0] - killed_at
    assert LEASE_TTL - HEARTBEAT_INTERVAL - 1 <= takeover <= LEASE_TTL + 5, f"takeover after {takeover:.1f}s"
    successor = taken[0][2]

    wait_until(
        lambda: all(processed(others, n) == second for n in others),
        30,
        interval=0.1,
        what="the survivors to deploy",
    )
    wait_until(
        lambda: {n for _, _, n in marks(tmp_path, "post-end", second)} == set(others),
        30,
        interval=0.1,
        what="POST_DEPLOY_SCOPE=each: POST_DEPLOY on every surviving replica",
    )
    for stack in others.values():
        stack.wait_for_syncs(2)
    assert len(marks(tmp_path, "pre-start", second)) == 2, "the killed run and the takeover, nothing else"
    assert [m[2] for m in marks(tmp_path, "pre-end", second)] == [successor], "the killed run must not finish"
    assert sorted(n for _, _, n in marks(tmp_path, "post-start", second)) == sorted(others)
    r = connection(stacks)
    record = r.hgetall(DeployKeys(DEPLOYMENT, "x").commit_record(second))
    assert (record["pre_outcome"], record["pre_instance"]) == ("succeeded", successor)
    runs = [run for run in r.zrange(DeployKeys(DEPLOYMENT, "x").runs, 0, -1) if f"-{second[:12]}-pre-" in run]
    assert len(runs) == 1, f"the outcome is recorded once: {runs}"
    logs = "".join(stack.log() for stack in others.values())
    assert logs.count(f"Commit {second[:7]} deployed: PRE_DEPLOY succeeded\n") == 1

    # A failing PRE_DEPLOY: every replica keeps the previous commit; the retries, with one
    # shared back-off, run one at a time on whichever replica wins the lease.
    broken = push(remote, others, 2, {"broken": "1"})
    wait_until(
        lambda: len(attempts(tmp_path, broken)) >= 3,
        30,
        interval=0.1,
        what="two retries of the broken commit",
    )
    assert attempts(tmp_path, broken)[:3] == ["1", "2", "3"], (
        "each attempt runs once, numbered across replicas"
    )
    starts = [t for t, _, _ in marks(tmp_path, "pre-start", broken)]
    assert starts[2] - starts[1] > starts[1] - starts[0], "the back-off does not grow"
    assert not marks(tmp_path, "pre-end", broken) and not marks(tmp_path, "app", broken)
    assert all(processed(stacks, n) == second for n in others), "a replica left the last good commit"
    record_key = DeployKeys(DEPLOYMENT, "x").commit_record(broken)
    wait_until(
        lambda: int(r.hget(record_key, "pre_attempt") or 0) >= 3,
        10,
        interval=0.05,
        what="the 3rd attempt's outcome",
    )
    assert r.hget(record_key, "pre_outcome") == "failed"
    print(f"\nreplicas: lease holder {holder} killed, {successor} took over after {takeover:.1f}s")


def test_replicas_booting_on_a_failing_commit_wait_for_its_pre_deploy_and_do_not_start(
    tmp_path, remote, stack_factory
):
    remote.commit({"job.sh": JOB_SH, "app.sh": APP_SH, "broken": "1"})
    stacks = {name: stack for name, stack in start_replicas(tmp_path, remote, stack_factory, "once").items()}
    codes = {name: stack.wait_exit(60) for name, stack in stacks.items()}
    assert codes == dict.fromkeys(stacks, 1), "every replica exits 1, as a single instance would"
    for stack in stacks.values():
        assert "ERROR: Initial PRE_DEPLOY job failed. Container cannot start." in stack.log()
    sha = marks(tmp_path, "pre-start")[0][1]
    tried = attempts(tmp_path, sha)
    assert len(tried) == len(set(tried)) < REPLICAS, f"a boot attempt ran on several replicas: {tried}"
    assert not marks(tmp_path, "app"), "an app started on a commit whose PRE_DEPLOY failed"
    logs = "".join(stack.log() for stack in stacks.values())
    assert "waiting for its outcome" in logs, "no replica waited for the boot PRE_DEPLOY of another"
