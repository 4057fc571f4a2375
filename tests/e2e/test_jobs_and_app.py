"""Jobs and the app on the real Procfile under honcho: one job at a time and each once,
timeouts, output, the app supervisor, and a clean stop.

Every job here writes ``<time> <kind>-start|end <commit>`` lines to a marks file, so the
assertions are about what the jobs did and when, not about how the code is built::

    c1 = remote.commit(JOB_FILES)
    stack = stack_factory(remote, **job_env(tmp_path))
    wait_until(lambda: mark(tmp_path, "post-end", c1))
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import redis
from rq.exceptions import DuplicateJobError
from rq.job import Job

from tests.conftest import GitRemote, Stack, run_git, wait_until
from workers.commit_tracker import CommitTracker
from workers.contract import DeployKeys, JobKind, JobSpec
from workers.deploy_state import DeployState

pytestmark = pytest.mark.e2e

KEYS = DeployKeys(deployment="e2e", instance="test")

# One script for every job kind. Files of the commit make its PRE_DEPLOY or POST_DEPLOY slow:
# <kind>.sleep holds seconds to sleep, <kind>.wait the path of a file the test creates to let
# the job end (empty: no waiting).
JOB_SH = (
    'k="$1"\n'
    'echo "$(date +%s.%N) $k-start $DEPLOY_COMMIT_SHA" >> "$MARKS"\n'
    'sleep "$(cat "$k.sleep" 2>/dev/null || echo 0)"\n'
    'if [ -s "$k.wait" ]; then while [ ! -f "$(cat "$k.wait")" ]; do sleep 0.05; done; fi\n'
    'echo "$(date +%s.%N) $k-end $DEPLOY_COMMIT_SHA" >> "$MARKS"\n'
)
JOB_FILES = {"job.sh": JOB_SH, "pre.sleep": "0", "post.sleep": "0", "pre.wait": "", "post.wait": ""}


def job_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {
        "MARKS": str(tmp_path / "marks.txt"),
        "DEPLOYMENT_ID": KEYS.deployment,
        "INSTANCE_ID": KEYS.instance,
        "PRE_DEPLOY_COMMAND": "bash job.sh pre",
        "POST_DEPLOY_COMMAND": "bash job.sh post",
    }
    env.update(overrides)
    return env


def marks(tmp_path: Path) -> list[tuple[float, str, str]]:
    path = tmp_path / "marks.txt"
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3:
            found.append((float(parts[0]), parts[1], parts[2]))
    return found


def mark(tmp_path: Path, what: str, commit: str) -> list[float]:
    """Times at which ``what`` (e.g. ``pre-start``) was written for ``commit``."""
    return [t for t, w, c in marks(tmp_path) if w == what and c == commit]


def client(stack: Stack) -> redis.Redis:
    return redis.Redis.from_url(stack.env["REDIS_URL"])


def alive(stack: Stack) -> bool:
    return stack.process is not None and stack.process.poll() is None


def proc_entries(name: str) -> list[tuple[int, bytes]]:
    """(pid, content of /proc/PID/<name>) of every live process we may read."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/{name}", "rb") as f:
                found.append((int(entry), f.read()))
        except OSError:
            continue
    return found


def marker_processes(marker: str) -> list[int]:
    """Processes whose command line holds ``marker`` (set as argv[0] with ``exec -a``)."""
    return [pid for pid, cmdline in proc_entries("cmdline") if marker.encode() in cmdline]


def stack_processes(stack: Stack) -> list[int]:
    """Every process started by this stack: honcho, its processes, the work horse, jobs, the app."""
    entry = f"WORKSPACE_PATH={stack.env['WORKSPACE_PATH']}".encode()
    return [pid for pid, environ in proc_entries("environ") if entry in environ.split(b"\0")]


def health(stack: Stack) -> dict | None:
    url = f"http://127.0.0.1:{stack.env['DEV_HEALTH_PORT']}/dev_health"
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return json.loads(response.read()) if response.status == 200 else None
    except OSError:
        return None


# -- 3. One job at a time, each once ---------------------------------------------------------


def test_jobs_never_overlap_and_a_long_post_deploy_does_not_hold_up_detection(
    tmp_path, remote: GitRemote, stack_factory
):
    release = tmp_path / "release-post"
    first = remote.commit({**JOB_FILES, "post.wait": str(release)})
    stack = stack_factory(remote, **job_env(tmp_path))
    wait_until(lambda: mark(tmp_path, "post-start", first), 40, what="the long POST_DEPLOY to start")
    second = remote.commit({"post.wait": ""})
    # The POST_DEPLOY runs until we release it: the poller must see the new commit meanwhile.
    stack.wait_for_log(f"New commit detected on main: {second}", 10)
    assert not mark(tmp_path, "post-end", first)
    # Give a broken lock time to start the next PRE_DEPLOY alongside the POST_DEPLOY.
    time.sleep(1.5)
    assert not mark(tmp_path, "pre-start", second), "a PRE_DEPLOY started while a POST_DEPLOY ran"
    release.touch()
    wait_until(lambda: mark(tmp_path, "post-end", second), 20, what="the second commit's deploy")
    assert mark(tmp_path, "pre-start", second)[0] >= mark(tmp_path, "post-end", first)[0], (
        "the next PRE_DEPLOY started while the POST_DEPLOY was still running"
    )
    # No two jobs of the deployment ever ran at the same time.
    runs = sorted(
        (start, mark(tmp_path, w.replace("-start", "-end"), c)[0])
        for start, w, c in marks(tmp_path)
        if w.endswith("-start")
    )
    assert len(runs) == 4
    for (_, end), (next_start, _) in zip(runs, runs[1:], strict=False):
        assert next_start >= end, f"jobs overlap: {runs}"


def test_post_deploy_runs_for_every_commit_that_went_live_before_the_next_deploys(
    tmp_path, remote: GitRemote, stack_factory
):
    """A commit whose PRE_DEPLOY succeeded was live: its POST_DEPLOY runs even when a newer head waits.

    It used to be skipped as superseded, and never ran when the newer commit's PRE_DEPLOY
    then failed and the older commit stayed live (tests/e2e/test_planner_seams.py).
    """
    first = remote.commit(JOB_FILES)
    stack = stack_factory(remote, **job_env(tmp_path))
    wait_until(lambda: mark(tmp_path, "post-end", first), 40, what="boot deploy")
    release = tmp_path / "release-pre"
    second = remote.commit({"pre.wait": str(release)})
    wait_until(lambda: mark(tmp_path, "pre-start", second), 20, what="the long PRE_DEPLOY to start")
    third = remote.commit({"pre.wait": ""})
    tracker = CommitTracker(client(stack), KEYS)
    wait_until(lambda: tracker.head() == third, 10, what="the poller to see the newer commit")
    release.touch()
    wait_until(lambda: mark(tmp_path, "post-end", third), 30, what="the newest commit's deploy")

    assert mark(tmp_path, "pre-end", second), "the PRE_DEPLOY of the older commit was cut short"
    post_second = mark(tmp_path, "post-end", second)
    assert post_second, "POST_DEPLOY did not run for a commit that went live"
    assert float(post_second[0]) <= float(mark(tmp_path, "pre-start", third)[0]), (
        "the newer commit was deployed before the live commit's POST_DEPLOY ended"
    )
    assert f"Skipping job for commit {second[:7]}" not in stack.log()
    assert tracker.processed() == third


def test_a_commit_is_deployed_once_under_a_burst_of_sync_commands(tmp_path, remote: GitRemote, stack_factory):
    first = remote.commit(JOB_FILES)
    stack = stack_factory(remote, **job_env(tmp_path))
    wait_until(lambda: mark(tmp_path, "post-end", first), 40, what="boot deploy")
    connection = client(stack)

    stop = threading.Event()

    def hammer() -> None:
        # What `hotreload sync` and webhooks do: each one wakes the poller for a full cycle.
        while not stop.is_set():
            connection.rpush(KEYS.commands, "sync", "sync", "wake")
            time.sleep(0.005)

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    try:
        second = remote.commit({"pre.sleep": "1"})
        wait_until(lambda: mark(tmp_path, "post-end", second), 20, what="the second commit's deploy")
        time.sleep(1)  # keep waking the poller after the deploy too
    finally:
        stop.set()
        thread.join()
    assert len(mark(tmp_path, "pre-start", second)) == 1
    assert len(mark(tmp_path, "post-start", second)) == 1

    # The same PRE_DEPLOY enqueued again (a second decision racing the first) is refused ...
    tracker = CommitTracker(connection, KEYS)
    pre_runs = [r for r in tracker.recent_run_ids(20) if second[:12] in r and "-pre-" in r]
    assert len(pre_runs) == 1, tracker.recent_run_ids(20)
    spec = JobSpec.from_dict(Job.fetch(pre_runs[0], connection=connection).args[0])
    with pytest.raises(DuplicateJobError):
        DeployState(connection, KEYS).enqueue(spec)
    # ... and never runs: the next commit's jobs come after anything queued before them.
    third = remote.commit()
    wait_until(lambda: mark(tmp_path, "post-end", third), 20, what="the third commit's deploy")
    assert len(mark(tmp_path, "pre-start", second)) == 1


def test_reverting_to_an_earlier_commit_deploys_it_again(tmp_path, remote: GitRemote, stack_factory):
    first = remote.commit(JOB_FILES)
    stack = stack_factory(remote, **job_env(tmp_path))
    wait_until(lambda: mark(tmp_path, "post-end", first), 40, what="boot deploy")
    second = remote.commit()
    wait_until(lambda: mark(tmp_path, "post-end", second), 20, what="the second commit's deploy")
    run_git("reset", "--hard", first, cwd=remote.work)
    remote.push(force=True)
    tracker = CommitTracker(client(stack), KEYS)
    wait_until(lambda: tracker.processed() == first, 20, what="the revert to be deployed")
    assert len(mark(tmp_path, "pre-end", first)) == 2, "PRE_DEPLOY runs again for a reverted-to commit"
    assert stack.log().count(f"Deploying commit {first[:7]}") == 2, "at boot, then the revert once"
    assert run_git("rev-parse", "HEAD", cwd=Path(stack.env["WORKSPACE_PATH"])) == first


# -- 4. Timeouts ---------------------------------------------------------------------------------


def test_a_timed_out_pre_deploy_is_killed_with_all_its_processes(tmp_path, remote: GitRemote, stack_factory):
    marker, app_marker = f"hrjob-{uuid.uuid4().hex[:10]}", f"hrapp-{uuid.uuid4().hex[:10]}"
    first = remote.commit({**JOB_FILES, "app.sh": f"exec -a {app_marker} sleep 600\n"})
    stack = stack_factory(
        remote, PRE_DEPLOY_TIMEOUT="2", DEV_START_COMMAND="bash app.sh", **job_env(tmp_path)
    )
    wait_until(lambda: mark(tmp_path, "post-end", first), 40, what="boot deploy")
    wait_until(lambda: marker_processes(app_marker), 10, what="the app to start")
    hang = (
        # Only the first attempt hangs, so a retry cannot start new processes while we look.
        'if [ "$DEPLOY_ATTEMPT" != 1 ]; then exit 1; fi\n'
        f"(exec -a {marker}-bg sleep 300) &\n"
        # Left the job's process group and ignores SIGTERM: only the SIGKILL after KILL_GRACE ends it.
        f"setsid bash -c 'trap \"\" TERM; exec -a {marker}-setsid sleep 300' &\n"
        'echo "$(date +%s.%N) pre-hang $DEPLOY_COMMIT_SHA" >> "$MARKS"\n'
        "sleep 300\n"
    )
    second = remote.commit({"job.sh": hang})
    wait_until(lambda: mark(tmp_path, "pre-hang", second), 20, what="the hanging PRE_DEPLOY")
    wait_until(lambda: len(marker_processes(marker)) == 2, 5, what="the job's background processes")
    stack.wait_for_log("[PRE-DEPLOY] ERROR: Job timed out after 2s", 10)
    stack.wait_for_log(f"PRE_DEPLOY job for commit {second[:7]} timed out after 2s", 10)
    # KILL_GRACE is 1 s: nothing of the job may be left shortly after.
    wait_until(lambda: not marker_processes(marker), 5, what="the job's processes to be gone")
    tracker = CommitTracker(client(stack), KEYS)
    assert tracker.processed() == first, "a timed-out PRE_DEPLOY must not mark its commit processed"
    assert tracker.last_run(JobKind.PRE)["outcome"] == "timed_out"  # type: ignore[index]
    assert not mark(tmp_path, "post-start", second)
    assert len(marker_processes(app_marker)) == 1, "the app must keep running"
    assert alive(stack)


# -- 5. Output -----------------------------------------------------------------------------------


def test_job_output_is_streamed_prefixed_kept_capped_and_jobs_get_the_deploy_variables(
    tmp_path, remote: GitRemote, stack_factory
):
    release = tmp_path / "release"
    script = (
        'echo "vars: $DEPLOY_JOB $DEPLOY_COMMIT_SHA prev=$DEPLOY_PREVIOUS_SHA $DEPLOY_BRANCH $CUSTOM_SETTING"\n'
        'for i in $(seq 1 12); do echo "line $i"; done\n'
        'if [ -f block ] && [ "$DEPLOY_JOB" = PRE_DEPLOY ]; then\n'
        '  echo "waiting for release"\n'
        '  while [ ! -f "$RELEASE" ]; do sleep 0.05; done\n'
        "fi\n"
        'echo "[PRE-DEPLOY] done"\n'
    )
    first = remote.commit({"job.sh": script})
    stack = stack_factory(
        remote,
        **job_env(tmp_path, JOB_OUTPUT_MAX_LINES="5", CUSTOM_SETTING="from-the-stack", RELEASE=str(release)),
    )
    stack.wait_for_log("[POST-DEPLOY] vars: POST_DEPLOY", 40)
    second = remote.commit({"block": "1"})
    # The job is blocked until we release it: its lines must already be in the log.
    stack.wait_for_log("[PRE-DEPLOY] waiting for release", 20)
    log = stack.log()
    assert f"[PRE-DEPLOY] vars: PRE_DEPLOY {second} prev={first} main from-the-stack" in log
    assert "[PRE-DEPLOY] line 12" in log
    release.touch()
    stack.wait_for_log(f"[POST-DEPLOY] vars: POST_DEPLOY {second} prev={first} main from-the-stack", 20)
    log = stack.log()
    assert "[PRE-DEPLOY] [PRE-DEPLOY] done" not in log, "a line that has the prefix gets it once"
    assert "[PRE-DEPLOY] line 1\n" in log.replace("\r", ""), "the log is not capped"

    connection = client(stack)
    tracker = CommitTracker(connection, KEYS)
    wait_until(lambda: (tracker.last_run(JobKind.POST) or {}).get("commit") == second, 10, what="POST run")
    pre_run = tracker.last_run(JobKind.PRE)
    assert pre_run is not None
    assert pre_run["commit"] == second and pre_run["outcome"] == "succeeded" and pre_run["exit_code"] == "0"
    history = tracker.recent_run_ids(10)
    assert history[:2] == [tracker.last_run(JobKind.POST)["run_id"], pre_run["run_id"]]  # type: ignore[index]
    assert len(history) == 4, "boot PRE and POST, then the second commit's PRE and POST"
    job = Job.fetch(pre_run["run_id"], connection=connection)
    assert job.meta["output"] == ["line 10", "line 11", "line 12", "waiting for release", "[PRE-DEPLOY] done"]
    assert job.meta["outcome"] == "succeeded"


# -- 6. The app ----------------------------------------------------------------------------------


def test_an_app_that_exits_leaves_the_container_up_and_starts_again_on_the_next_deploy(
    tmp_path, remote: GitRemote, stack_factory
):
    app = 'echo "$(date +%s.%N) app-start $(git rev-parse HEAD)" >> "$MARKS"\nexit 7\n'
    first = remote.commit({**JOB_FILES, "app.sh": app})
    stack = stack_factory(remote, DEV_START_COMMAND="bash app.sh", **job_env(tmp_path))
    stack.wait_for_log("DEV_START_COMMAND exited with code 7", 40)
    assert mark(tmp_path, "app-start", first)
    wait_until(lambda: mark(tmp_path, "post-end", first), 20, what="boot POST_DEPLOY")
    assert alive(stack), "the container must stay up when the app exits"
    assert health(stack) is not None
    second = remote.commit()
    wait_until(lambda: mark(tmp_path, "app-start", second), 20, what="the app to start again")
    assert mark(tmp_path, "pre-end", second)[0] < mark(tmp_path, "app-start", second)[0]
    stack.wait_for_log("DEV_START_COMMAND exited with code 7", 10, count=2)
    wait_until(lambda: mark(tmp_path, "post-end", second), 20, what="the second commit's POST_DEPLOY")
    assert alive(stack)


def test_without_repository_or_start_command_it_says_what_to_set_and_stays_up(stack_factory):
    stack = stack_factory(None)
    stack.wait_for_log("No GITHUB_REPO_URL set", 20)
    stack.wait_for_log("No DEV_START_COMMAND set", 20)
    assert wait_until(lambda: health(stack), 10, what="/dev_health")["status"] == "ok"
    time.sleep(2)  # the template stays up: nothing may exit by itself
    assert alive(stack), stack.log()[-3000:]
    assert health(stack) is not None


# -- 9. Clean stop -------------------------------------------------------------------------------

HANGING_PRE = (
    "(exec -a $MARKER-bg sleep 300) &\n"
    # Left its process group, and ignores SIGTERM: only SIGKILL after KILL_GRACE stops it.
    "setsid bash -c 'trap \"\" TERM; exec -a $MARKER-setsid sleep 300' &\n"
    'echo "$(date +%s.%N) pre-hang $DEPLOY_COMMIT_SHA" >> "$MARKS"\n'
    "exec -a $MARKER-fg sleep 300\n"
)


def stop_and_measure(stack: Stack, marker: str, signum: int) -> float:
    """Stop the stack as a user does and time it until none of its processes is left.

    SIGTERM goes to honcho alone (what a container runtime does to PID 1); SIGINT to honcho's
    process group (what Ctrl-C in a terminal does).
    """
    assert stack.process is not None
    started = time.monotonic()
    if signum == signal.SIGINT:
        os.killpg(stack.process.pid, signum)
    else:
        os.kill(stack.process.pid, signum)
    assert stack.wait_exit(15) == 128 + signum, "honcho exits with the signal's conventional code"
    wait_until(lambda: not stack_processes(stack), 15, what="every process of the stack to end")
    elapsed = time.monotonic() - started
    assert not marker_processes(marker), "a job process survived the stop"
    return elapsed


def test_sigterm_during_a_pre_deploy_stops_everything_and_records_the_run_as_interrupted(
    tmp_path, remote: GitRemote, stack_factory
):
    marker = f"hrmark-{uuid.uuid4().hex[:10]}"
    first = remote.commit({**JOB_FILES, "app.sh": "exec sleep 600\n"})
    stack = stack_factory(
        remote, MARKER=marker, DEV_START_COMMAND="bash app.sh", KILL_GRACE="3", **job_env(tmp_path)
    )
    wait_until(lambda: mark(tmp_path, "post-end", first), 40, what="boot deploy")
    second = remote.commit({"job.sh": HANGING_PRE})
    wait_until(lambda: mark(tmp_path, "pre-hang", second), 20, what="the hanging PRE_DEPLOY")
    wait_until(lambda: len(marker_processes(marker)) == 3, 5, what="the job's processes")

    elapsed = stop_and_measure(stack, marker, signal.SIGTERM)
    assert elapsed < 10, f"stopping took {elapsed:.1f}s"
    tracker = CommitTracker(client(stack), KEYS)
    run = tracker.last_run(JobKind.PRE)
    assert run is not None and run["commit"] == second
    assert run["outcome"] == "interrupted"
    assert tracker.processed() == first
    assert "[PRE-DEPLOY] ERROR: Job interrupted (stop requested)" in stack.log()
    print(f"SIGTERM stop during a later PRE_DEPLOY: {elapsed:.2f}s")


def test_ctrl_c_during_the_boot_pre_deploy_stops_everything_and_records_the_run_as_interrupted(
    tmp_path, remote: GitRemote, stack_factory
):
    marker = f"hrmark-{uuid.uuid4().hex[:10]}"
    first = remote.commit({**JOB_FILES, "job.sh": HANGING_PRE, "app.sh": "exec sleep 600\n"})
    stack = stack_factory(remote, MARKER=marker, DEV_START_COMMAND="bash app.sh", **job_env(tmp_path))
    wait_until(lambda: mark(tmp_path, "pre-hang", first), 40, what="the hanging boot PRE_DEPLOY")
    wait_until(lambda: len(marker_processes(marker)) == 3, 5, what="the job's processes")

    elapsed = stop_and_measure(stack, marker, signal.SIGINT)
    assert elapsed < 10, f"stopping took {elapsed:.1f}s"
    assert "sending SIGKILL" not in stack.log(), "a process had to be killed by honcho"
    run = CommitTracker(client(stack), KEYS).last_run(JobKind.PRE)
    assert run is not None and run["commit"] == first
    assert run["outcome"] == "interrupted"
    print(f"Ctrl-C stop during the boot PRE_DEPLOY: {elapsed:.2f}s")
