"""The big-repository case: clone time, disk used and push-to-PRE_DEPLOY for each clone shape.

The bench makes the repository itself with ``git fast-import`` (tens of thousands of small
files in a monorepo layout, thousands of commits, a few large incompressible files with
several versions in the history) and serves it as ``file://``, so every clone transfers a
pack as a git host would send it. Each shape of hotreload's clone (full, GIT_CLONE_DEPTH=1,
GIT_CLONE_FILTER=blob:none, GIT_SPARSE_CHECKOUT, all three) is timed with the poller's own
``GitCheckout``, measured with ``du``, then run as a stack for push-to-PRE_DEPLOY; a plain
``git clone --depth 1`` is the floor every ratio is taken against::

    big = BigRemote.generate(root, BigPlan(files=30_000, commits=3_000, ...))
    figures = measure(root, big, server, plan)
"""

from __future__ import annotations

import random
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bench.deploys import launch
from bench.report import Figure
from bench.stack import GitRemote, RedisServer, run_git, wait_until
from producer.git_clone import CloneShape
from producer.git_sync import GitCheckout

APP = "services/app"


@dataclass(frozen=True)
class BigPlan:
    files: int
    commits: int
    big_files: int
    big_versions: int
    big_mb: int
    clones: int
    pushes: int
    #: The shapes whose push-to-PRE_DEPLOY is measured (each starts a stack).
    push_shapes: tuple[str, ...] = ("full", "depth_1", "blob_none", "sparse", "all")


FULL_BIG = BigPlan(files=30_000, commits=3_000, big_files=4, big_versions=3, big_mb=8, clones=3, pushes=5)
QUICK_BIG = BigPlan(
    files=300, commits=30, big_files=1, big_versions=2, big_mb=1, clones=1, pushes=1, push_shapes=("all",)
)

#: name -> (label, the poller's clone shape, the stack's settings)
SHAPES: dict[str, tuple[str, CloneShape, dict[str, str]]] = {
    "full": ("full clone", CloneShape(), {}),
    "depth_1": ("GIT_CLONE_DEPTH=1", CloneShape(depth=1), {"GIT_CLONE_DEPTH": "1"}),
    "blob_none": (
        "GIT_CLONE_FILTER=blob:none",
        CloneShape(filter="blob:none"),
        {"GIT_CLONE_FILTER": "blob:none"},
    ),
    "sparse": (
        "GIT_SPARSE_CHECKOUT (app folder)",
        CloneShape(sparse=(APP,)),
        {"GIT_SPARSE_CHECKOUT": "true"},
    ),
    "all": (
        "depth 1 + blob:none + sparse",
        CloneShape(depth=1, filter="blob:none", sparse=(APP,)),
        {"GIT_CLONE_DEPTH": "1", "GIT_CLONE_FILTER": "blob:none", "GIT_SPARSE_CHECKOUT": "true"},
    ),
}


class BigRemote(GitRemote):
    """A bare repository written by ``git fast-import``; "pushes" are fast-import commits onto the branch."""

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        super().__init__(root, "big")

    @property
    def url(self) -> str:
        return self.bare.as_uri()  # file://: a pack is made and sent, as a host does

    def head(self) -> str:
        return run_git("rev-parse", f"refs/heads/{self.branch}", cwd=self.bare)

    def _import(self, stream: bytes) -> None:
        subprocess.run(["git", "fast-import", "--quiet", "--done"], cwd=self.bare, input=stream, check=True)

    def commit(
        self, files: dict[str, str] | None = None, message: str | None = None, push: bool = True
    ) -> str:
        self.counter += 1
        changes = files or {f"{APP}/CHANGES": f"{self.counter}\n"}
        parent = f"from refs/heads/{self.branch}^0\n"  # a new fast-import: go on from the branch's head
        body = b"".join(_modify(path, content.encode()) for path, content in changes.items())
        self._import(_commit(self.branch, message or f"change {self.counter}", parent, body) + b"done\n")
        return self.head()

    def push(self, force: bool = False) -> float:
        return time.time()  # commit() already moved the branch of the bare repository

    @classmethod
    def generate(cls, root: Path, plan: BigPlan, seed: int = 11) -> BigRemote:
        """The whole history in one fast-import stream (seconds, not minutes of git commit)."""
        big = cls(root)
        rng = random.Random(seed)
        paths = [f"services/svc{i % 60:02d}/src/mod{i % 23}/file{i}.py" for i in range(plan.files)]
        out = [
            _commit(
                big.branch,
                "import",
                "",
                b"".join(_modify(p, _source(rng, p)) for p in paths) + _modify(f"{APP}/README", b"the app\n"),
            )
        ]
        every = max(1, plan.commits // plan.big_versions)
        for n in range(1, plan.commits):
            body = b"".join(_modify(p, _source(rng, p)) for p in rng.sample(paths, 3))
            if n % every == 1:
                for k in range(plan.big_files):
                    body += _modify(f"assets/big{k}.bin", rng.randbytes(plan.big_mb * 1024 * 1024))
            out.append(_commit(big.branch, f"commit {n}", "", body))  # in one stream: on top of the last
        big._import(b"".join(out) + b"done\n")
        return big


def _source(rng: random.Random, path: str) -> bytes:
    lines = [f"# {path}"] + [
        f"value_{rng.randrange(10**9)} = {rng.random()!r}" for _ in range(rng.randrange(3, 30))
    ]
    return ("\n".join(lines) + "\n").encode()


def _modify(path: str, data: bytes) -> bytes:
    return f"M 100644 inline {path}\ndata {len(data)}\n".encode() + data + b"\n"


def _commit(branch: str, message: str, parent: str, body: bytes) -> bytes:
    who = f"bench <bench@example.com> {int(time.time())} +0000"
    head = (
        f"commit refs/heads/{branch}\nauthor {who}\ncommitter {who}\ndata {len(message)}\n{message}\n{parent}"
    )
    return head.encode() + body + b"\n"


def disk_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0]) / 1024


def time_plain_clone(big: BigRemote, dest: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        ["git", "clone", "--quiet", "--no-tags", "--depth", "1", "--branch", big.branch, big.url, str(dest)],
        check=True,
    )
    return time.perf_counter() - start


def time_clone(big: BigRemote, dest: Path, shape: CloneShape) -> float:
    """The poller's clone (GitCheckout.ensure_cloned) with this shape, run directly."""
    checkout = GitCheckout(big.url, dest, big.branch, None, [], shape=shape)
    start = time.perf_counter()
    checkout.ensure_cloned()
    return time.perf_counter() - start


def push_to_pre(
    root: Path, name: str, big: BigRemote, server: RedisServer, env: dict[str, str], pushes: int
) -> list[float]:
    """Push-to-PRE_DEPLOY start on a stack of this shape (1 s interval)."""
    d = launch(root, f"big-{name}", big, server, GITHUB_SYNC_INTERVAL="1", GITHUB_REPO_FOLDER=APP, **env)
    delays = []
    try:
        for _ in range(pushes):
            wait_until(lambda: d.idle_at(big.head()), 60, "the big-repository stack to be idle", 0.01)
            sha = big.commit()
            pushed = time.time()
            started = wait_until(partial(d.pre_started, sha), 60, f"PRE_DEPLOY of {sha[:7]}", 0.01)
            delays.append(started - pushed)
    finally:
        d.stop()
    return delays


def clone_trials(
    root: Path, big: BigRemote, plan: BigPlan
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Clone times and disk per variant ("plain" and each shape), taken in rounds: a change in the
    machine's load falls on every variant alike. A first plain clone, not counted, warms the caches."""
    clones: dict[str, Callable[[Path], float]] = {"plain": partial(time_plain_clone, big)}
    for name, (_, shape, _) in SHAPES.items():
        clones[name] = partial(time_clone, big, shape=shape)
    times: dict[str, list[float]] = {name: [] for name in clones}
    disk: dict[str, float] = {}
    time_plain_clone(big, root / "warm-up")
    shutil.rmtree(root / "warm-up")
    for i in range(plan.clones):
        for name, clone in clones.items():
            dest = root / f"clone-{name}-{i}"
            times[name].append(clone(dest))
            disk[name] = disk_mb(dest)
            shutil.rmtree(dest)
    return times, disk


def measure(root: Path, server: RedisServer, plan: BigPlan) -> list[Figure]:
    made = time.perf_counter()
    big = BigRemote.generate(root / "bigrepo", plan)
    made = time.perf_counter() - made
    repo = {
        "files": plan.files + 1,
        "commits": plan.commits,
        "served_mb": round(disk_mb(big.bare), 1),
        "generated_s": round(made, 1),
    }
    times, disk = clone_trials(root, big, plan)
    floor = statistics.median(times["plain"])
    figures = [
        Figure(
            "bigrepo_clone_plain_depth_1",
            "Big repo: clone, plain `git clone --depth 1` (the floor)",
            "s",
            times["plain"],
            details=repo,
        ),
        Figure(
            "bigrepo_disk_plain_depth_1",
            "Big repo: disk, plain `git clone --depth 1`",
            "MB",
            [disk["plain"]],
            single=True,
        ),
    ]
    for name, (label, _, env) in SHAPES.items():
        ratios = {
            "time_ratio": round(statistics.median(times[name]) / floor, 2),
            "disk_ratio": round(disk[name] / disk["plain"], 2),
        }
        figures += [
            Figure(
                f"bigrepo_clone_{name}",
                f"Big repo: clone, {label}",
                "s",
                times[name],
                notes=f"{ratios['time_ratio']:g}× the floor",
                details=ratios,
            ),
            Figure(
                f"bigrepo_disk_{name}",
                f"Big repo: disk, {label}",
                "MB",
                [disk[name]],
                single=True,
                notes=f"{ratios['disk_ratio']:g}× the floor",
            ),
        ]
        if name in plan.push_shapes:
            delays = push_to_pre(root, name, big, server, env, plan.pushes)
            figures.append(
                Figure(f"bigrepo_push_{name}", f"Big repo: push to PRE_DEPLOY start, {label}", "s", delays)
            )
    return figures
