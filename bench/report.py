"""Figures, their targets and the template's figures: statistics, the markdown table, the JSON.

Each measurement is a ``Figure``: its trial values and how to judge them::

    fig = Figure("push_to_pre_start_interval_1", "Push to PRE_DEPLOY start, 1 s interval", "s",
                 values=[0.41, 0.62], target="median <= 0.66 s", template="0.66 s median, 1.08 s max",
                 met=lambda f: f.median <= 0.66)
    print(markdown_table([fig]))
    write_json(path, [fig], machine(), mode="full")
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): with 20 trials, p90 is the 18th smallest value."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Figure:
    """One measurement: trial values (in ``unit``), the target and the template's figure."""

    name: str
    title: str
    unit: str
    values: list[float] = field(default_factory=list)
    target: str = ""
    template: str = ""
    met: Callable[[Figure], bool] | None = None
    notes: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    #: For single-value figures (a total, a count): show the value, not median/p90/max.
    single: bool = False
    #: Shown instead of the median when set (a count such as "3/3 bursts").
    display: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def p90(self) -> float:
        return percentile(self.values, 90) if self.values else float("nan")

    @property
    def max(self) -> float:
        return max(self.values) if self.values else float("nan")

    @property
    def verdict(self) -> str:
        if self.met is None or not self.values:
            return ""
        return "yes" if self.met(self) else "**no**"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "title": self.title,
            "unit": self.unit,
            "trials": len(self.values),
            "values": [round(v, 6) for v in self.values],
            "target": self.target,
            "template": self.template,
            "met": None if self.met is None or not self.values else self.met(self),
            "notes": self.notes,
            "details": self.details,
        }
        if self.values:
            data.update(
                median=round(self.median, 6),
                p90=round(self.p90, 6),
                max=round(self.max, 6),
                min=round(min(self.values), 6),
                mean=round(statistics.fmean(self.values), 6),
            )
        return data


def fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "–"
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "%":
        return f"{value:.2f} %"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "bool":
        return "yes" if value else "no"
    if unit == "runs":
        return f"{value:g}"
    if unit.endswith("/min"):
        return f"{value:.1f} {unit}"
    return f"{value:g} {unit}"


def markdown_table(figures: list[Figure]) -> str:
    lines = [
        "| Measurement | Median | p90 | Max | Trials | Target | Met | Template |",
        "|---|---:|---:|---:|---:|---|---|---|",
    ]
    for f in figures:
        if f.display:
            cells = [f.display, "", ""]
        elif f.single:
            cells = [fmt(f.median, f.unit), "", ""]
        else:
            cells = [fmt(f.median, f.unit), fmt(f.p90, f.unit), fmt(f.max, f.unit)]
        title = f.title + (f" ({f.notes})" if f.notes else "")
        lines.append(
            f"| {title} | {' | '.join(cells)} | {len(f.values)} | {f.target} | {f.verdict} | {f.template} |"
        )
    return "\n".join(lines)


def _first_line(args: list[str]) -> str:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_mb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_mb = int(line.split()[1]) // 1024
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_mb": memory_mb,
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "git": _first_line(["git", "--version"]),
        "redis_server": _first_line([shutil.which("redis-server") or "redis-server", "--version"]),
        "load_average_at_start": list(os.getloadavg()),
    }


def describe(m: dict[str, Any]) -> str:
    return (
        f"{m['cores']} × {m['cpu']}, {m['memory_mb']} MB RAM, Linux {m['kernel']}, Python {m['python']}, "
        f"{m['git']}, {m['redis_server'].split(' sha=')[0]}"
    )


def write_json(path: Path, figures: list[Figure], machine_info: dict[str, Any], **extra: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info,
        **extra,
        "measurements": {f.name: f.to_json() for f in figures},
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
