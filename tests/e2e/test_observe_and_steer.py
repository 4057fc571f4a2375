"""Seeing and steering deploys on the real Procfile: webhook, CLI, /status, /metrics, FAILED_DEPLOY."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bench.stack import metric_samples, signed_push_request
from tests.conftest import GitRemote, Stack, wait_until

pytestmark = pytest.mark.e2e

SECRET = "whsec-e2e-0123456789"
HOTRELOAD = str(Path(sys.executable).parent / "hotreload")

JOBS = {
    "scripts/pre-deploy/migrate.sh": (
        'echo "migrating $DEPLOY_COMMIT_SHA"\n'
        'echo "$(date +%s.%N) pre $DEPLOY_COMMIT_SHA $DEPLOY_PREVIOUS_SHA $DEPLOY_ATTEMPT" >> "$MARKS"\n'
    ),
    "scripts/post-deploy/seed.sh": 'echo "$(date +%s.%N) post $DEPLOY_COMMIT_SHA" >> "$MARKS"\necho seeded\n',
    "scripts/failed/notify.sh": (
        'echo "$(date +%s.%N) failed $DEPLOY_COMMIT_SHA $DEPLOY_FAILED_JOB $DEPLOY_EXIT_CODE '
        '$DEPLOY_ATTEMPT $DEPLOY_JOB" >> "$MARKS"\necho "notifying the team"\n'
    ),
}


def job_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "MARKS": str(tmp_path / "marks.txt"),
        "PRE_DEPLOY_FOLDER": "scripts/pre-deploy",
        "PRE_DEPLOY_COMMAND": "bash migrate.sh",
        "POST_DEPLOY_FOLDER": "scripts/post-deploy",
        "POST_DEPLOY_COMMAND": "bash seed.sh",
        "FAILED_DEPLOY_FOLDER": "scripts/failed",
        "FAILED_DEPLOY_COMMAND": "bash notify.sh",
        **extra,
    }


def marks(tmp_path: Path, kind: str, commit: str | None = None) -> list[list[str]]:
    path = tmp_path / "marks.txt"
    if not path.exists():
        return []
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r[1] == kind and (commit is None or r[2] == commit)]


def get(stack: Stack, path: str) -> tuple[int, bytes]:
    url = f"http://127.0.0.1:{stack.env['DEV_HEALTH_PORT']}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def status(stack: Stack) -> dict:
    code, body = get(stack, "/status")
    return json.loads(body) if code == 200 else {}


def metrics(stack: Stack) -> dict[str, float]:
    code, body = get(stack, "/metrics")
    assert code == 200
    return metric_samples(body.decode())


def webhook(stack: Stack, branch: str, sha: str) -> tuple[int, dict]:
    request = signed_push_request(stack.env["DEV_HEALTH_PORT"], SECRET, branch, sha)
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, json.loads(response.read())


def cli(stack: Stack, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HOTRELOAD, *args], env=stack.env, capture_output=True, text=True, timeout=timeout, cwd=os.getcwd()
    )


def test_push_webhook_sync_and_the_cli_on_the_running_stack(tmp_path, remote: GitRemote, stack_factory):
    first = remote.commit(JOBS)
    # A long interval: only the webhook or `hotreload sync` can make a deploy start within seconds.
    stack = stack_factory(
        remote,
        GITHUB_SYNC_INTERVAL="300",
        GITHUB_WEBHOOK_SECRET=SECRET,
        DEV_START_COMMAND="echo app crashing; exit 7",
        **job_env(tmp_path),
    )
    wait_until(lambda: marks(tmp_path, "post", first), 60, what="boot deploy")
    wait_until(lambda: status(stack).get("state") == "running", 15, what="state running")
    # The app crashed: the health endpoint still answers (the container stays up to be debugged).
    stack.wait_for_log("DEV_START_COMMAND exited with code 7")
    assert get(stack, "/dev_health")[0] == 200

    # Webhook: a push elsewhere does nothing, a push to the branch deploys at once.
    second = remote.commit({"README": "two"})
    assert webhook(stack, "feature", second) == (
        202,
        {"action": "ignored", "reason": "push to another branch"},
    )
    pushed = time.time()
    assert webhook(stack, remote.branch, second) == (202, {"action": "sync"})
    wait_until(lambda: marks(tmp_path, "pre", second), 10, what="PRE_DEPLOY started by the webhook")
    latency = float(marks(tmp_path, "pre", second)[0][0]) - pushed
    print(f"webhook to PRE_DEPLOY start: {latency:.3f}s")
    assert latency < 5
    wait_until(lambda: marks(tmp_path, "post", second), 30, what="POST_DEPLOY of the second commit")

    # `hotreload sync` does the same from a shell.
    third = remote.commit({"README": "three"})
    result = cli(stack, "sync")
    assert result.returncode == 0 and "Sync requested" in result.stdout
    wait_until(lambda: marks(tmp_path, "post", third), 30, what="deploy after hotreload sync")
    wait_until(lambda: status(stack).get("state") == "running", 15, what="state running")

    # /status and `hotreload status --json` say the same thing.
    current = status(stack)
    assert current["branch"] == remote.branch
    assert current["processed"] == third and current["checked_out"] == third
    pre = current["last_runs"]["PRE_DEPLOY"]
    assert pre["commit"] == third and pre["outcome"] == "succeeded" and pre["exit_code"] == 0
    assert pre["duration"] >= 0 and pre["started_at"]
    assert current["last_runs"]["POST_DEPLOY"]["commit"] == third
    assert current["sync_failures"] == 0 and current["failing_commit"] is None
    cli_status = json.loads(cli(stack, "status", "--json").stdout)
    assert {k: cli_status[k] for k in ("state", "processed", "last_runs")} == {
        k: current[k] for k in ("state", "processed", "last_runs")
    }

    # `hotreload jobs`, newest first, and `hotreload logs` of the third commit's PRE_DEPLOY.
    jobs = cli(stack, "jobs").stdout.splitlines()
    assert jobs[0].split()[:4] == ["RUN", "KIND", "COMMIT", "OUTCOME"]
    assert jobs[1].split()[1:4] == ["POST_DEPLOY", third[:7], "succeeded"]
    assert jobs[2].split()[1:4] == ["PRE_DEPLOY", third[:7], "succeeded"]
    logs = cli(stack, "logs", jobs[2].split()[0])
    assert logs.returncode == 0 and f"migrating {third}" in logs.stdout

    # `hotreload run pre`: same folder, variables and worker as the container; the output follows.
    run = cli(stack, "run", "pre")
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"migrating {third}" in run.stdout and "(hotreload run)" in run.stdout
    again = marks(tmp_path, "pre", third)
    assert len(again) == 2 and again[1][3] == second, "DEPLOY_PREVIOUS_SHA as for the deploy of the commit"
    assert cli(stack, "run", "post").returncode == 0
    assert len(marks(tmp_path, "post", third)) == 2

    m = metrics(stack)
    assert m["hotreload_job_runs_total{kind=PRE_DEPLOY,outcome=succeeded}"] == 4
    assert m["hotreload_job_runs_total{kind=POST_DEPLOY,outcome=succeeded}"] == 4
    assert m["hotreload_job_duration_seconds_count{kind=PRE_DEPLOY}"] == 4
    assert m["hotreload_job_last_success{kind=PRE_DEPLOY}"] == 1
    assert m["hotreload_syncs_total{result=changed}"] == 2
    assert m[f"hotreload_processed_commit_info{{branch={remote.branch},commit={third}}}"] == 1
    assert m["hotreload_last_successful_sync_timestamp_seconds{}"] >= pushed
    for text in (stack.log(), json.dumps(current), get(stack, "/metrics")[1].decode()):
        assert SECRET not in text

    # A burst of deliveries (six pushes landed, six webhooks) is merged into one sync of the last commit.
    burst = [remote.commit({"README": f"burst {n}"}, push=False) for n in range(6)]
    remote.push()
    for sha in burst:
        assert webhook(stack, remote.branch, sha) == (202, {"action": "sync"})
    wait_until(lambda: marks(tmp_path, "post", burst[-1]), 30, what="the burst's last commit deployed")
    # One more look at the remote (seen in the metrics): nothing left to deploy.
    unchanged = metrics(stack)["hotreload_syncs_total{result=unchanged}"]
    cli(stack, "sync")
    wait_until(
        lambda: metrics(stack)["hotreload_syncs_total{result=unchanged}"] > unchanged, 10, what="a sync"
    )
    ran = [row[2] for row in marks(tmp_path, "pre") if row[2] in burst]
    assert ran == [burst[-1]], f"{len(ran)} PRE_DEPLOY runs for a burst of 6 deliveries"


def test_failed_deploy_runs_at_boot_before_the_container_exits(tmp_path, remote: GitRemote, stack_factory):
    sha = remote.commit({**JOBS, "scripts/pre-deploy/migrate.sh": 'echo "[PRE-DEPLOY] no db"; exit 3\n'})
    stack = stack_factory(remote, **job_env(tmp_path))
    assert stack.wait_exit(60) == 1
    failed = marks(tmp_path, "failed", sha)
    assert failed == [failed[0][:1] + ["failed", sha, "PRE_DEPLOY", "3", "1", "FAILED_DEPLOY"]]
    log = stack.log()
    assert "notifying the team" in log
    assert log.index("notifying the team") < log.index(
        "ERROR: Initial PRE_DEPLOY job failed. Container cannot start."
    )


def test_failed_deploy_after_a_later_failure_is_lenient_and_runs_once_per_failure(
    tmp_path, remote: GitRemote, stack_factory
):
    good = remote.commit(JOBS)
    stack = stack_factory(remote, **job_env(tmp_path))
    wait_until(lambda: marks(tmp_path, "post", good), 60, what="boot deploy")
    bad = remote.commit(
        {
            "scripts/pre-deploy/migrate.sh": "exit 5\n",
            "scripts/failed/notify.sh": JOBS["scripts/failed/notify.sh"] + "exit 1\n",
        }
    )
    wait_until(lambda: len(marks(tmp_path, "failed", bad)) >= 2, 40, what="FAILED_DEPLOY after two failures")
    stack.wait_for_log("[WARN] FAILED_DEPLOY job failed (lenient mode - continuing)")
    attempts = [row[5] for row in marks(tmp_path, "failed", bad)]
    assert attempts[:2] == ["1", "2"] and len(set(attempts)) == len(attempts), attempts
    assert {tuple(row[3:5]) for row in marks(tmp_path, "failed", bad)} == {("PRE_DEPLOY", "5")}
    current = status(stack)
    assert current["processed"] == good and current["failing_commit"]["commit"] == bad
    assert current["last_runs"]["FAILED_DEPLOY"]["commit"] == bad
    m = metrics(stack)
    assert m["hotreload_job_last_success{kind=PRE_DEPLOY}"] == 0
    assert m["hotreload_job_runs_total{kind=PRE_DEPLOY,outcome=failed}"] >= 2
    assert stack.process is not None and stack.process.poll() is None, (
        "a failing FAILED_DEPLOY stopped the stack"
    )


CHROMIUM = "/usr/bin/chromium"


def chromium(url: str, profile: Path, *mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1400,1000",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=8000",
            *mode,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )


@pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK), reason="chromium not installed (bin/bootstrap installs it)"
)
def test_rq_dashboard_lists_the_deploy_job_with_its_description_and_output(
    tmp_path, remote: GitRemote, stack_factory
):
    import psutil

    from producer.settings import load_settings
    from tests.conftest import free_port
    from workers.contract import JobKind

    sha = remote.commit(JOBS)
    port = free_port()
    password = "dash-pw-4242"
    stack = stack_factory(
        remote,
        ENABLE_RQ_DASHBOARD="true",
        RQ_DASHBOARD_PORT=str(port),
        RQ_DASHBOARD_USERNAME="admin",
        RQ_DASHBOARD_PASSWORD=password,
        **job_env(tmp_path),
    )
    wait_until(lambda: marks(tmp_path, "post", sha), 60, what="boot deploy")
    run_id = wait_until(lambda: status(stack)["last_runs"]["PRE_DEPLOY"]["run_id"], 10, what="PRE run")
    queue = load_settings(stack.env).keys.queue(JobKind.PRE)
    base = f"http://127.0.0.1:{port}"

    def answer(url: str) -> int:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    assert wait_until(lambda: answer(base + "/"), 30, what="rq-dashboard to listen") == 401, "no basic auth"

    # The password reached rq-dashboard through its environment, not its arguments (ps shows those).
    dashboards = [
        p
        for p in psutil.process_iter(["cmdline"])
        if any("rq-dashboard" in a for a in p.info["cmdline"] or [])
    ]
    dashboards = [p for p in dashboards if p.environ().get("RQ_DASHBOARD_PORT") == str(port)]
    assert dashboards and all(password not in " ".join(p.cmdline()) for p in dashboards)
    (server,) = [p for p in dashboards if p.net_connections(kind="tcp")]
    assert server.net_connections(kind="tcp")[0].laddr.ip == "127.0.0.1"
    print(f"rq-dashboard RSS: {server.memory_info().rss / 2**20:.1f} MiB")

    description = f"PRE_DEPLOY {sha[:7]} bash migrate.sh"
    jobs_url = f"http://admin:{password}@127.0.0.1:{port}/0/view/jobs/{urllib.request.quote(queue, safe='')}/finished/8/asc/1"
    dom = chromium(jobs_url, tmp_path / "chromium", "--dump-dom")
    assert description in dom.stdout, dom.stdout[-3000:] + dom.stderr[-2000:]
    assert run_id in dom.stdout
    shot = tmp_path / "rq-dashboard-jobs.png"
    chromium(jobs_url, tmp_path / "chromium", f"--screenshot={shot}")
    assert shot.exists() and shot.stat().st_size > 10_000
    # The job's page shows its kept output (rq-dashboard's Metadata: our job.meta).
    detail = chromium(
        f"http://admin:{password}@127.0.0.1:{port}/0/view/job/{run_id}", tmp_path / "chromium", "--dump-dom"
    )
    assert f"migrating {sha}" in detail.stdout and description in detail.stdout


def test_health_and_status_answer_while_the_clone_keeps_failing(tmp_path, stack_factory):
    import socket

    # The dashboard cannot bind its port either: it is started again, and the stack stays up.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        stack = stack_factory(
            None,
            GITHUB_REPO_URL=str(tmp_path / "missing.git"),
            GITHUB_BRANCH="main",
            ENABLE_RQ_DASHBOARD="true",
            RQ_DASHBOARD_PORT=str(taken.getsockname()[1]),
        )
        stack.wait_for_log("[WARN] rq-dashboard exited with code 1; starting it again", 30)
    stack.wait_for_log("[ERROR] Clone failed (attempt 1)")
    code, body = get(stack, "/dev_health")
    assert code == 200 and json.loads(body)["state"] == "cloning"
    current = wait_until(
        lambda: status(stack).get("state") == "cloning" and status(stack), 10, what="/status"
    )
    assert "missing.git" in current["last_error"] and current["processed"] is None
