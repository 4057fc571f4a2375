"""Fault-suite bookkeeping: each case counts its trials and the deploys it lost, and says so at the end.

    def test_case(fault_case):
        case = fault_case("1 killed work horse")
        for _ in range(3):
            with case.trial():
                ...
                case.expect_deployed(lambda: is_deployed(stack, marks, sha), 30, what="retry")

The counts print in pytest's terminal summary ("fault suite" section), so a CI log shows,
per case, how often the fault was injected and that no deploy was lost.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import wait_until


@dataclass
class FaultCase:
    """Trials and lost deploys of one case."""

    name: str
    trials: int = 0
    deploys: int = 0
    lost: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @contextlib.contextmanager
    def trial(self) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.trials += 1
            self.seconds += time.monotonic() - started

    def expect_deployed(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        """Wait for a deploy the fault must not lose; count it lost (and fail) at the deadline."""
        try:
            value = wait_until(predicate, timeout, what=what)
        except AssertionError:
            self.lost += 1
            raise
        self.deploys += 1
        return value

    def note(self, text: str) -> None:
        self.notes.append(text)


_CASES: list[FaultCase] = []


def _leftovers(tmp_path: Path) -> list[psutil.Process]:
    """Live processes started for this test: they carry a WORKSPACE_PATH under its tmp_path."""
    entry = f"WORKSPACE_PATH={tmp_path}".encode()
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            with open(f"/proc/{proc.pid}/environ", "rb") as f:
                if any(var.startswith(entry) for var in f.read().split(b"\0")):
                    found.append(proc)
    return found


@pytest.fixture(autouse=True)
def no_leftovers(tmp_path: Path) -> Iterator[None]:
    """After the test and its stacks stopped, nothing it started may still run (it is killed, and the test errs)."""
    yield
    deadline = time.monotonic() + 5
    while (left := _leftovers(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if left:
        described = []
        for proc in left:
            with contextlib.suppress(psutil.Error):
                described.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
                proc.kill()
        pytest.fail("processes outlived the test and its stacks:\n" + "\n".join(described))


@pytest.fixture
def fault_case() -> Callable[[str], FaultCase]:
    def make(name: str) -> FaultCase:
        case = FaultCase(name)
        _CASES.append(case)
        return case

    return make


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _CASES:
        return
    terminalreporter.section("fault suite")
    for case in sorted(_CASES, key=lambda c: c.name):
        line = (
            f"{case.name}: {case.trials} trial(s), {case.deploys} deploy(s) checked, "
            f"{case.lost} lost, {case.seconds:.1f}s"
        )
        terminalreporter.write_line(line + "".join(f"; {n}" for n in case.notes))
