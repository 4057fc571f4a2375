"""``hotreload demo``: a local example app repository and the whole stack running on it.

It creates a bare repository (the "remote") holding a small HTTP app, a PRE_DEPLOY
migration and a POST_DEPLOY seed, then runs ``honcho start`` on the Procfile against it
and prints how to push a commit and watch the jobs run::

    hotreload demo --dir /tmp/hotreload-demo
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

APP = '''"""Demo app: answers with the deployed commit and the schema version the migration wrote."""
import http.server
import os
import pathlib
import subprocess

PORT = int(os.environ.get("APP_PORT", "8080"))
DB = pathlib.Path(os.environ["DEMO_DB"])


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        version = (DB / "schema_version").read_text().strip() if (DB / "schema_version").exists() else "none"
        # Read at each request, as a dev server that reloads itself would see the new code.
        commit = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], capture_output=True, text=True).stdout.strip()
        body = f"commit {commit or '?'}, schema {version}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


print(f"demo app listening on http://127.0.0.1:{PORT}", flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
'''

MIGRATE = """#!/usr/bin/env bash
set -euo pipefail
echo "[PRE-DEPLOY] Running migrations for ${DEPLOY_COMMIT_SHA:0:7}..."
mkdir -p "$DEMO_DB"
# The job runs in PRE_DEPLOY_FOLDER (scripts/pre-deploy); the migrations are at the top.
count=$(ls "$(git rev-parse --show-toplevel)/migrations" | wc -l)
echo "$count" > "$DEMO_DB/schema_version"
echo "[PRE-DEPLOY] ✓ Schema at version $count"
"""

SEED = """#!/usr/bin/env bash
set -euo pipefail
echo "[POST-DEPLOY] Seeding sample data for ${DEPLOY_COMMIT_SHA:0:7}..."
date -u +%FT%TZ >> "$DEMO_DB/seeded_at"
echo "[POST-DEPLOY] ✓ Seed done"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def create_demo_repository(root: Path) -> tuple[Path, Path]:
    """The bare "remote" and a working clone to push from."""
    remote = root / "remote.git"
    work = root / "my-app"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(remote), cwd=root)
    git("clone", "--quiet", str(remote), str(work), cwd=root)
    (work / "scripts" / "pre-deploy").mkdir(parents=True)
    (work / "scripts" / "post-deploy").mkdir(parents=True)
    (work / "migrations").mkdir()
    (work / "migrations" / "001_init.sql").write_text("CREATE TABLE users (id int);\n")
    (work / "server.py").write_text(APP)
    (work / "scripts" / "pre-deploy" / "migrate.sh").write_text(MIGRATE)
    (work / "scripts" / "post-deploy" / "seed.sh").write_text(SEED)
    git("checkout", "--quiet", "-B", "main", cwd=work)
    git("add", ".", cwd=work)
    git(
        "-c",
        "user.name=demo",
        "-c",
        "user.email=demo@example.com",
        "commit",
        "--quiet",
        "-m",
        "Demo app",
        cwd=work,
    )
    git("push", "--quiet", "origin", "main", cwd=work)
    return remote, work


def project_root() -> Path:
    here = Path(__file__).resolve().parent.parent
    return here if (here / "Procfile").exists() else Path.cwd()


def demo_environment(root: Path, remote: Path, interval: str) -> dict[str, str]:
    app_port, health_port, redis_port = free_port(), free_port(), free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GITHUB_", "PRE_DEPLOY_", "POST_DEPLOY_", "FAILED_DEPLOY_", "REDIS_URL"))
    }
    env.update(
        {
            "GITHUB_REPO_URL": str(remote),
            "GITHUB_BRANCH": "main",
            "GITHUB_SYNC_INTERVAL": interval,
            "WORKSPACE_PATH": str(root / "workspace"),
            "DEV_START_COMMAND": "python3 server.py",
            "PRE_DEPLOY_FOLDER": "scripts/pre-deploy",
            "PRE_DEPLOY_COMMAND": "bash migrate.sh",
            "PRE_DEPLOY_TIMEOUT": "60",
            "POST_DEPLOY_FOLDER": "scripts/post-deploy",
            "POST_DEPLOY_COMMAND": "bash seed.sh",
            "POST_DEPLOY_TIMEOUT": "60",
            "DEMO_DB": str(root / "db"),
            "APP_PORT": str(app_port),
            "DEV_HEALTH_PORT": str(health_port),
            "HOTRELOAD_REDIS_PORT": str(redis_port),
            # Named, so the CLI in another shell finds this stack (see the line the demo prints).
            "DEPLOYMENT_ID": "demo",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env_path()}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def env_path() -> str:
    return os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")


def run_demo(args: argparse.Namespace) -> int:
    root = Path(args.dir or tempfile.mkdtemp(prefix="hotreload-demo-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if (root / "remote.git").exists():
        print(f"{root} already holds a demo; choose another --dir", file=sys.stderr)
        return 2
    remote, work = create_demo_repository(root)
    env = demo_environment(root, remote, args.interval)
    print(
        f"""
hotreload demo in {root}
  remote (bare repository): {remote}
  your clone to push from:  {work}
  the app:                  http://127.0.0.1:{env["APP_PORT"]}/
  health:                   http://127.0.0.1:{env["DEV_HEALTH_PORT"]}/dev_health

Push a commit and watch [PRE-DEPLOY] and [POST-DEPLOY] run for it within {args.interval}s:
  cd {work} && touch migrations/$(date +%s).sql && git add . && \\
    git -c user.name=you -c user.email=you@example.com commit -m 'Add a migration' && git push

See and steer it from another shell (the CLI finds a stack by its Redis and deployment id):
  export HOTRELOAD_REDIS_PORT={env["HOTRELOAD_REDIS_PORT"]} DEPLOYMENT_ID={env["DEPLOYMENT_ID"]} && {Path(sys.executable).parent / "hotreload"} status

Ctrl-C (or SIGTERM) stops everything.
""",
        flush=True,
    )
    root_dir = project_root()
    honcho = [sys.executable, "-m", "honcho", "-f", str(root_dir / "Procfile"), "-d", str(root_dir), "start"]
    # Become honcho rather than wait for it: a SIGTERM to this process must stop the stack,
    # not orphan it.
    os.execve(sys.executable, honcho, env)
