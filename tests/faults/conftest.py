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
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

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
