"""Issue 2 §10: the embedded defaults, on the real Procfile.

With REDIS_URL unset the Procfile's ``redis`` process runs a private redis-server on
HOTRELOAD_REDIS_PORT; ``hotreload demo`` runs the whole stack on an example repository,
and the push command it prints deploys a commit within GITHUB_SYNC_INTERVAL + a few
seconds.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import redis

from tests.conftest import VENV_BIN, wait_until

pytestmark = pytest.mark.e2e


def tagged_processes(tag: str) -> list[tuple[int, str]]:
    """Pid and command line of the live processes whose environment holds ``HOTRELOAD_TEST_TAG=tag``.

    honcho starts each process in its own session, and orphans are re-parented, so the
    environment (inherited by every descendant) is what finds them all -- except
    redis-server, which writes its title over its environment: check its port instead.
    """
    needle = f"HOTRELOAD_TEST_TAG={tag}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as handle:
                if needle not in handle.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry.name}/stat") as handle:
                state = handle.read().rpartition(")")[2].split()[0]
            with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if state != "Z":
            found.append((int(entry.name), cmdline))
    return found


def cmdlines() -> list[str]:
    found = []
    for entry in os.scandir("/proc"):
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                found.append(handle.read().replace(b"\0", b" ").decode(errors="replace").strip())
        except OSError:
            continue
    return found


def answers(port: int | str) -> bool:
    try:
        redis.Redis(host="127.0.0.1", port=int(port), socket_connect_timeout=0.5).ping()
        return True
    except redis.RedisError:
        return False


def test_without_redis_url_the_procfile_runs_a_private_redis(tmp_path, remote, stack_factory):
    tag = uuid.uuid4().hex
    sha = remote.commit({"pre.sh": 'echo "pre $DEPLOY_COMMIT_SHA" >> "$MARKS"\n'})
    stack = stack_factory(
        remote,
        use_redis=False,
        PRE_DEPLOY_COMMAND="bash pre.sh",
        MARKS=str(tmp_path / "marks.txt"),
        HOTRELOAD_TEST_TAG=tag,
    )
    assert "REDIS_URL" not in stack.env
    port = stack.env["HOTRELOAD_REDIS_PORT"]
    marks = tmp_path / "marks.txt"
    wait_until(lambda: marks.exists() and f"pre {sha}" in marks.read_text(), 40, what="the boot PRE_DEPLOY")
    # redis-server retitles itself "redis-server 127.0.0.1:PORT" (over its environment too).
    assert any(c.endswith(f"redis-server 127.0.0.1:{port}") for c in cmdlines()), (
        "no redis-server on the port"
    )
    client = redis.Redis(host="127.0.0.1", port=int(port), decode_responses=True)

    def processed() -> list[str | None]:
        return [client.get(k) for k in client.scan_iter("hotreload:*:instance:test:processed")]

    # The job's line is written before its outcome is recorded: wait for the record.
    wait_until(lambda: processed() == [sha], 10, what="the deploy state in the private redis-server")
    stack.stop()
    assert not answers(port), "the private redis-server outlived the stack"
    assert not tagged_processes(tag)


def test_demo_deploys_a_pushed_commit_and_stops_on_sigterm(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "PRE_DEPLOY", "POST_DEPLOY", "FAILED_DEPLOY", "DEV_", "REDIS_URL"))
    }
    tag = env["HOTRELOAD_TEST_TAG"] = uuid.uuid4().hex
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    log_path = tmp_path / "demo.log"
    with open(log_path, "wb") as log_file:
        demo = subprocess.Popen(
            [str(VENV_BIN / "hotreload"), "demo", "--dir", str(tmp_path / "demo")],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log() -> str:
        return log_path.read_text(errors="replace")

    def seen(text: str) -> bool:
        if demo.poll() is not None and text not in log():
            raise AssertionError(f"the demo exited ({demo.returncode}):\n{log()[-3000:]}")
        return text in log()

    try:
        wait_until(lambda: seen("[POST-DEPLOY] ✓ Seed done"), 40, what="the demo's boot deploy")
        interval = float(re.search(r"run for it within (\d+)s", log()).group(1))
        app_url = re.search(r"the app: +(http://\S+)", log()).group(1)
        # The push command exactly as printed (backslash-continued lines), run by a shell.
        printed = log().split("run for it within")[1].split("\n", 1)[1].split("\n\n")[0]
        command = printed.replace("\\\n", " ")
        pushed_at = time.monotonic()
        subprocess.run(["bash", "-c", command], check=True, capture_output=True, env=env)
        work = Path(re.search(r"your clone to push from: +(\S+)", log()).group(1))
        sha = subprocess.run(
            ["git", "rev-parse", "--short=7", "HEAD"], cwd=work, check=True, capture_output=True, text=True
        ).stdout.strip()
        wait_until(lambda: seen(f"[POST-DEPLOY] Seeding sample data for {sha}"), interval + 8, what="jobs")
        assert f"[PRE-DEPLOY] Running migrations for {sha}" in log()
        took = time.monotonic() - pushed_at
        assert took < interval + 5, f"push to POST_DEPLOY took {took:.1f}s"
        with urllib.request.urlopen(app_url, timeout=5) as response:
            body = response.read().decode()
        assert body == f"commit {sha}, schema 2\n", body
        # The CLI line the demo prints, run as printed from another shell, answers for this stack.
        cli_line = re.search(r"another shell.*\n +(export .+)", log()).group(1)
        shown = subprocess.run(["bash", "-c", cli_line], capture_output=True, text=True, env=env, timeout=30)
        assert shown.returncode == 0, shown.stderr
        assert sha in shown.stdout and "Deployment" in shown.stdout, shown.stdout

        os.kill(demo.pid, signal.SIGTERM)
        stopping = time.monotonic()
        try:
            demo.wait(10)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the demo still runs 10 s after SIGTERM:\n{log()[-3000:]}") from None
        wait_until(lambda: not tagged_processes(tag), 5, what="every demo process to end")
        print(
            f"demo: push to POST_DEPLOY output {took:.2f}s at a {interval:g}s interval, "
            f"stopped {time.monotonic() - stopping:.2f}s after SIGTERM"
        )
    finally:
        # Only what this test started: the demo and the processes that carry its tag.
        for pid, _ in tagged_processes(tag):
            os.kill(pid, signal.SIGKILL)
        if demo.poll() is None:
            demo.kill()
            demo.wait(5)
