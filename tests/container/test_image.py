"""The real image, run as users run it: a repository mounted in, jobs, the app, ports, stop, reaping, Node."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import psutil
import pytest

from bench.container import Engine
from tests.conftest import GitRemote, RedisServer, free_port, wait_until
from tests.container.conftest import http_get, http_json
from workers.commit_tracker import CommitTracker
from workers.contract import DeployKeys, JobKind

pytestmark = [pytest.mark.container, pytest.mark.timeout(900)]

REPO_IN_CONTAINER = "/repos/app.git"
APP_PY = """\
import http.server, pathlib, time
with open("/marks/marks.txt", "a") as marks:
    marks.write(f"{time.time():.6f} app\\n")
print("[APP] listening on 8080", flush=True)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("version " + pathlib.Path("VERSION").read_text().strip()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
"""
JOBS = {
    "scripts/pre-deploy/migrate.sh": (
        'echo "$(date +%s.%N) pre $DEPLOY_COMMIT_SHA" >> /marks/marks.txt\n'
        'echo "migrating $DEPLOY_COMMIT_SHA"\n'
    ),
    "scripts/post-deploy/seed.sh": 'echo "$(date +%s.%N) post $DEPLOY_COMMIT_SHA" >> /marks/marks.txt\necho seeded\n',
    "app.py": APP_PY,
    "VERSION": "one\n",
}
JOB_ENV = {
    "GITHUB_REPO_URL": REPO_IN_CONTAINER,
    "GITHUB_BRANCH": "main",
    "GITHUB_SYNC_INTERVAL": "1",
    "PRE_DEPLOY_FOLDER": "scripts/pre-deploy",
    "PRE_DEPLOY_COMMAND": "bash migrate.sh",
    "POST_DEPLOY_FOLDER": "scripts/post-deploy",
    "POST_DEPLOY_COMMAND": "bash seed.sh",
    "DEV_START_COMMAND": "python3 app.py",
    "KILL_GRACE": "2",
}


def mounts(remote: GitRemote, marks_dir: Path) -> list[str]:
    """The bare repository (read-only, as a remote is) and the folder where jobs and the app leave marks."""
    marks_dir.mkdir(exist_ok=True)
    return ["--volume", f"{remote.bare}:{REPO_IN_CONTAINER}:ro", "--volume", f"{marks_dir}:/marks"]


def marks(marks_dir: Path, kind: str, commit: str | None = None) -> list[list[str]]:
    path = marks_dir / "marks.txt"
    lines = [line.split() for line in path.read_text().splitlines()] if path.exists() else []
    return [m for m in lines if len(m) > 1 and m[1] == kind and (commit is None or m[2] == commit)]


def published(app_port: int, health_port: int) -> list[str]:
    return ["--publish", f"127.0.0.1:{app_port}:8080", "--publish", f"127.0.0.1:{health_port}:9090"]


def answer(url: str) -> str:
    got = http_get(url)
    return got[1] if got and got[0] == 200 else ""


def test_the_stack_boots_from_a_mounted_repository_serves_its_ports_and_deploys_a_push(
    tmp_path, engine: Engine, image: str, run_container
):
    remote, marks_dir = GitRemote(tmp_path), tmp_path / "marks"
    first = remote.commit(JOBS)
    app_port, health_port = free_port(), free_port()
    container = run_container(image, JOB_ENV, mounts(remote, marks_dir) + published(app_port, health_port))
    app_url, health_url = f"http://127.0.0.1:{app_port}/", f"http://127.0.0.1:{health_port}"

    container.wait_for_log("[APP] listening on 8080", 120)
    assert wait_until(lambda: answer(app_url), 30, what="the app on its published port") == "version one"
    wait_until(lambda: marks(marks_dir, "post", first), 30, what="POST_DEPLOY of the boot commit")
    pre, app, post = (
        marks(marks_dir, "pre", first)[0],
        marks(marks_dir, "app")[0],
        marks(marks_dir, "post")[0],
    )
    assert float(pre[0]) < float(app[0]), "the app started before the boot PRE_DEPLOY"
    # POST_DEPLOY follows the PRE_DEPLOY; it runs beside the app's start, not after it.
    assert float(pre[0]) < float(post[0]), "POST_DEPLOY ran before PRE_DEPLOY"
    log = container.logs()
    assert f"migrating {first}" in log and "[POST-DEPLOY] seeded" in log

    health = wait_until(lambda: http_json(f"{health_url}/dev_health"), 10, what="/dev_health on 9090")
    assert health["status"] == "ok"
    status = wait_until(lambda: http_json(f"{health_url}/status"), 10, what="/status on 9090")
    assert status["processed"] == first and status["branch"] == "main"
    # The image's own HEALTHCHECK, run as the engine runs it.
    check = engine.run(["image", "inspect", "--format", "{{json .Config.Healthcheck.Test}}", image]).stdout
    assert "/dev_health" in check
    healthcheck_command = json.loads(check)[1]
    container.exec("sh", "-c", healthcheck_command)

    second = remote.commit({"VERSION": "two\n"})
    wait_until(lambda: answer(app_url) == "version two", 60, what="the app to serve the pushed commit")
    wait_until(lambda: marks(marks_dir, "post", second), 60, what="POST_DEPLOY of the pushed commit")
    wait_until(
        lambda: (http_json(f"{health_url}/status") or {}).get("processed") == second,
        20,
        what="/status to show the pushed commit processed",
    )
    assert float(marks(marks_dir, "pre", second)[0][0]) < float(marks(marks_dir, "post", second)[0][0])


def test_a_failing_boot_pre_deploy_exits_the_container_with_code_1(tmp_path, image: str, run_container):
    remote, marks_dir = GitRemote(tmp_path), tmp_path / "marks"
    remote.commit({**JOBS, "scripts/pre-deploy/migrate.sh": 'echo "cannot reach db"; exit 3\n'})
    container = run_container(image, JOB_ENV, mounts(remote, marks_dir) + ["--network", "none"])
    assert container.wait_exit(120) == 1
    log = container.logs()
    assert "ERROR: Initial PRE_DEPLOY job failed. Container cannot start." in log
    assert "[PRE-DEPLOY] cannot reach db" in log
    assert not marks(marks_dir, "app"), "the app started although the boot PRE_DEPLOY failed"


def host_processes_with(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if marker in " ".join(process.info["cmdline"] or []):
            found.append(process)
    return found


def test_stop_ends_every_process_within_10s_records_the_job_interrupted_and_no_zombie_is_left(
    tmp_path, engine: Engine, image: str, run_container, redis_server: RedisServer
):
    """SIGTERM to PID 1 (tini) as ``stop`` sends it; an external Redis on the host keeps the record."""
    remote, marks_dir = GitRemote(tmp_path), tmp_path / "marks"
    leaves_a_child = (
        'echo "$(date +%s.%N) pre $DEPLOY_COMMIT_SHA" >> /marks/marks.txt\n'
        '(sleep 1; echo "$(date +%s.%N) child-done" >> /marks/marks.txt) >/dev/null 2>&1 &\n'
        'echo "left a child behind"\n'
    )
    first = remote.commit({**JOBS, "scripts/pre-deploy/migrate.sh": leaves_a_child})
    keys = DeployKeys(f"container-{random.randrange(10**6)}", "container")
    env = {
        **JOB_ENV,
        "REDIS_URL": redis_server.url,
        "DEPLOYMENT_ID": keys.deployment,
        "INSTANCE_ID": keys.instance,
        "DEV_HEALTH_PORT": str(free_port()),
        "DEV_START_COMMAND": "exec sleep 100000",
    }
    # Host networking: the container reaches the host's Redis on 127.0.0.1.
    container = run_container(image, env, mounts(remote, marks_dir) + ["--network", "host"])
    wait_until(lambda: marks(marks_dir, "post", first), 120, what="the boot deploy")
    wait_until(lambda: marks(marks_dir, "child-done"), 20, what="the job's background child to finish")

    def zombies() -> list[str]:
        rows = container.exec("ps", "-eo", "stat=,pid=,ppid=,args=").splitlines()
        return [row.strip() for row in rows if row.strip().startswith("Z")]

    # A process that exits is a zombie until some parent reaps it; tini reaps the orphans.
    wait_until(lambda: not zombies(), 10, what="no zombie in the container")

    marker = f"6000.{random.randrange(10**6):06d}"
    hangs = f'echo "$(date +%s.%N) pre-hang $DEPLOY_COMMIT_SHA" >> /marks/marks.txt\nsleep {marker}\n'
    second = remote.commit({"scripts/pre-deploy/migrate.sh": hangs})
    wait_until(lambda: marks(marks_dir, "pre-hang", second), 30, what="the hanging PRE_DEPLOY")
    wait_until(lambda: host_processes_with(marker), 10, what="the job's sleep")

    started = time.monotonic()
    engine.run(["stop", "--time", "10", container.name], timeout=30)
    elapsed = time.monotonic() - started
    exit_code = container.wait_exit(5)
    assert elapsed < 10, f"stop took {elapsed:.1f}s"
    assert exit_code == 143, f"the container did not stop on SIGTERM (exit code {exit_code}, 137 = killed)"
    wait_until(lambda: not host_processes_with(marker), 5, what="the job's processes to end")
    tracker = CommitTracker(redis_server.client(), keys)
    run = tracker.last_run(JobKind.PRE)
    assert run is not None and run["commit"] == second
    assert run["outcome"] == "interrupted"
    assert tracker.processed() == first
    log = container.logs()
    assert "[PRE-DEPLOY] ERROR: Job interrupted (stop requested)" in log
    assert "sending SIGKILL" not in log, "honcho had to kill a process"
    print(f"container stop during a PRE_DEPLOY: {elapsed:.2f}s")


NODE_SERVER = """\
const http = require("http");
const fs = require("fs");
http.createServer((req, res) => res.end(`node ${process.version} ${fs.readFileSync("VERSION", "utf8").trim()}`))
  .listen(8080, "0.0.0.0", () => console.log("[APP] node listening on 8080"));
"""
NODE_MIGRATE = """\
const fs = require("fs");
fs.appendFileSync("/marks/marks.txt", `${Date.now() / 1000} pre ${process.env.DEPLOY_COMMIT_SHA}\\n`);
console.log(`node migrated ${process.env.DEPLOY_COMMIT_SHA}`);
"""


def test_install_node_runs_a_node_app_and_a_node_pre_deploy(tmp_path, node_image: str, run_container):
    remote, marks_dir = GitRemote(tmp_path), tmp_path / "marks"
    first = remote.commit({"server.js": NODE_SERVER, "migrate.js": NODE_MIGRATE, "VERSION": "one\n"})
    app_port, health_port = free_port(), free_port()
    env = {
        "GITHUB_REPO_URL": REPO_IN_CONTAINER,
        "GITHUB_BRANCH": "main",
        "PRE_DEPLOY_COMMAND": "node migrate.js",
        "DEV_START_COMMAND": "node server.js",
    }
    container = run_container(node_image, env, mounts(remote, marks_dir) + published(app_port, health_port))
    container.wait_for_log("[APP] node listening on 8080", 120)
    body = wait_until(lambda: answer(f"http://127.0.0.1:{app_port}/"), 30, what="the node app")
    assert body.startswith("node v") and body.endswith(" one")
    assert f"[PRE-DEPLOY] node migrated {first}" in container.logs()
    assert marks(marks_dir, "pre", first)
