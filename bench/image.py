"""``python -m bench.image``: the container's figures: image build time and size, boot to the app's first line.

Beside ``python -m bench`` (the Procfile path on the host), on the engine ``find_engine`` picks::

    python -m bench.image              # warm build, sizes, 3 boots, and the Procfile path's boot
    python -m bench.image --cold       # also: the base image made anew and a build without cache
    python -m bench.image --json out.json

Boot is timed from ``run`` being called to the timestamp the app writes as its first action
(PRE_DEPLOY ``true``, embedded Redis, a local bare repository mounted in), as ``bench.boot``
times ``honcho start`` on the host.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

from bench import boot
from bench.container import BASE_IMAGE, Engine, find_engine
from bench.stack import ROOT, GitRemote, RedisServer, Workdir, wait_until

IMAGE = "localhost/hotreload-bench:latest"
NODE_IMAGE = "localhost/hotreload-bench:node"
APP_FIRST_LINE = 'echo "$(date +%s.%N)" > /marks/first-line; exec sleep 100000'


def boot_container(engine: Engine, remote: GitRemote, marks: Path) -> float:
    """Seconds from ``run`` to the app's first line, one fresh container."""
    marks.mkdir(parents=True, exist_ok=True)
    first_line = marks / "first-line"
    first_line.unlink(missing_ok=True)
    name = f"hotreload-bench-{uuid.uuid4().hex[:8]}"
    env = {
        "GITHUB_REPO_URL": "/repos/app.git",
        "GITHUB_BRANCH": remote.branch,
        "PRE_DEPLOY_COMMAND": "true",
        "DEV_START_COMMAND": APP_FIRST_LINE,
    }
    args = ["run", "--detach", "--name", name, "--network", "none"]
    args += ["--volume", f"{remote.bare}:/repos/app.git:ro", "--volume", f"{marks}:/marks"]
    args += [f"--env={key}={value}" for key, value in env.items()]
    started = time.time()
    try:
        engine.run([*args, IMAGE])
        wait_until(
            lambda: first_line.exists() and first_line.read_text().strip(), 120, "the app's first line"
        )
        return float(first_line.read_text().split()[0]) - started
    finally:
        engine.remove(name)


def measure(engine: Engine, cold: bool, trials: int, root: Path) -> dict[str, object]:
    figures: dict[str, object] = {"engine": engine.name}
    figures["base_image_make_s"] = engine.ensure_base_image()
    if cold:
        # Made again under another name, so the images built on the real one stay.
        scratch_base = f"localhost/hotreload-bench-base:{uuid.uuid4().hex[:8]}"
        figures["base_image_make_s"] = engine.make_base_image(scratch_base)
        engine.run(["rmi", scratch_base], check=False)
        figures["build_cold_s"] = engine.build(IMAGE, ROOT, no_cache=True)[1]
    else:
        engine.build(IMAGE, ROOT)
    figures["build_warm_s"] = engine.build(IMAGE, ROOT)[1]
    figures["build_node_variant_s"] = engine.build(NODE_IMAGE, ROOT, {"INSTALL_NODE": "true"})[1]
    figures["base_image_mb"] = round(engine.image_size(BASE_IMAGE) / 1e6, 1)
    figures["image_mb"] = round(engine.image_size(IMAGE) / 1e6, 1)
    figures["node_image_mb"] = round(engine.image_size(NODE_IMAGE) / 1e6, 1)

    remote = GitRemote(root)
    remote.commit({"README": "bench\n"})
    boots = [boot_container(engine, remote, root / "marks") for _ in range(trials)]
    figures["container_boot_s"] = boots
    server = RedisServer(root / "redis").start()
    try:
        figures["procfile_boot_s"] = boot.measure_boot(root, remote, server, trials).total
    finally:
        server.stop()
    return figures


def markdown(figures: dict[str, object]) -> str:
    def seconds(key: str) -> str:
        value = figures.get(key)
        if value is None:
            return "-"
        if isinstance(value, list):
            return f"{statistics.median(value):.2f} s (median of {len(value)}, max {max(value):.2f} s)"
        return f"{float(value):.1f} s"  # type: ignore[arg-type]

    rows = [
        ("Base image made with mmdebstrap (only when missing)", seconds("base_image_make_s")),
        ("Image build without layer cache", seconds("build_cold_s")),
        ("Image build, nothing changed (layer cache)", seconds("build_warm_s")),
        ("INSTALL_NODE=true variant on the cached layers", seconds("build_node_variant_s")),
        (
            "Image size / with INSTALL_NODE=true / base",
            f"{figures['image_mb']} MB / {figures['node_image_mb']} MB / {figures['base_image_mb']} MB",
        ),
        ("Container: `run` to the app's first line", seconds("container_boot_s")),
        ("Procfile path: `honcho start` to the app's first line", seconds("procfile_boot_s")),
    ]
    lines = [f"Engine: {figures['engine']}", "", "| Measurement | Value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.image", description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="remake the base image and build without cache")
    parser.add_argument("--trials", type=int, default=3, help="container boots (default 3)")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    engine = find_engine()
    if isinstance(engine, str):
        print(f"bench.image: {engine}", file=sys.stderr)
        return 1
    try:
        with Workdir() as root:
            figures = measure(engine, args.cold, args.trials, root)
    finally:
        engine.close()
    print(markdown(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
