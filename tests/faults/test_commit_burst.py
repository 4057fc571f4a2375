"""Case 5: 20 commits pushed within 2 seconds — the last one deploys, with few PRE_DEPLOYs and no overlap.

The final commit ends up deployed, PRE_DEPLOY runs at most 3 times per burst, no two jobs
overlap (the jobs write start and end times), and every POST_DEPLOY that ran belongs to a
commit whose PRE_DEPLOY succeeded.
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import run_git, wait_until
from tests.faults.harness import JOB_FILES, Marks, is_deployed, job_env, queue_busy, set_fault

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

TRIALS = 3
BURST = 20
MAX_PRE_PER_BURST = 3
SPREAD = 1.5  # seconds over which the pushes are spread (git push itself needs the rest of the 2 s)


def test_commit_burst_deploys_the_last_commit_without_overlap(tmp_path, remote, stack_factory, fault_case):
    case = fault_case("5 commit burst (20 pushes in < 2 s)")
    marks = Marks(tmp_path)
    first = remote.commit(JOB_FILES)
    set_fault(tmp_path, "pre-sleep", "1")
    set_fault(tmp_path, "post-sleep", "0.2")
    stack = stack_factory(remote, **job_env(tmp_path))
    wait_until(lambda: is_deployed(stack, marks, first), 30, what="the boot deploy")

    for n in range(TRIALS):
        with case.trial():
            burst = [remote.commit(message=f"burst {n}.{i}", push=False) for i in range(BURST)]
            started = time.monotonic()
            for i, sha in enumerate(burst):  # one push per commit, spread over the 2 s
                run_git("push", "--quiet", "origin", f"{sha}:refs/heads/{remote.branch}", cwd=remote.work)
                time.sleep(max(0.0, started + (i + 1) * SPREAD / BURST - time.monotonic()))
            window = time.monotonic() - started
            assert window < 2.0, f"the burst took {window:.2f}s to push"

            case.expect_deployed(lambda b=burst: is_deployed(stack, marks, b[-1]), 40, what="the last commit")
            wait_until(lambda: not queue_busy(stack), 10, what="idle queues")
            pres = [m for m in marks.of("pre-start") if m.commit in burst]
            assert len(pres) <= MAX_PRE_PER_BURST, f"{len(pres)} PRE_DEPLOYs for one burst"
            case.note(f"burst {n}: pushed in {window:.2f}s, {len(pres)} PRE_DEPLOY(s)")

    _assert_no_overlap(marks)
    _assert_posts_follow_successful_pres(marks)


def _assert_no_overlap(marks: Marks) -> None:
    intervals = []
    for kind in ("pre", "post"):
        for start, end in marks.runs(kind):
            assert end is not None, f"a {kind} job of {start.commit[:7]} never ended"
            intervals.append((start.at, end.at, kind, start.commit[:7]))
    intervals.sort()
    for before, after in zip(intervals, intervals[1:], strict=False):
        assert after[0] >= before[1], f"jobs overlap: {before} and {after}"


def _assert_posts_follow_successful_pres(marks: Marks) -> None:
    for start, _ in marks.runs("post"):
        pre_ends = [m for m in marks.of("pre-end", start.commit) if m.at <= start.at]
        assert pre_ends, f"POST_DEPLOY ran for {start.commit[:7]} whose PRE_DEPLOY had not succeeded"
