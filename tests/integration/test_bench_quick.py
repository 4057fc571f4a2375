"""Smoke test of the benchmark: ``python -m bench --quick`` still runs and reports every figure.

Timings are never asserted here (CI machines vary); only that each measurement was taken.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

EXPECTED = {
    "push_to_pre_start_interval_1",
    "push_to_post_done_interval_1",
    "push_to_pre_start_interval_5",
    "push_to_post_done_interval_5",
    "push_to_pre_start_webhook",
    "push_to_post_done_webhook",
    "job_path",
    "job_direct",
    "job_overhead",
    "idle_cpu_per_cycle",
    "idle_cpu_core_percent",
    "control_plane_rss",
    "control_plane_pss",
    "control_plane_rss_with_dashboard",
    "boot_overhead",
    "boot_total",
    "boot_clone",
    "boot_job",
    "burst_pre_runs",
    "burst_final_deployed",
    "push_to_serving_in_place_pre_0s",
    "push_to_serving_in_place_pre_2s",
    "push_to_serving_staged_pre_0s",
    "push_to_serving_staged_pre_2s",
    "absorbed_commits_per_minute_all",
    "absorbed_commits_per_minute_filtered",
    "bigrepo_clone_plain_depth_1",
    "bigrepo_disk_plain_depth_1",
    *(
        f"bigrepo_{what}_{shape}"
        for what in ("clone", "disk")
        for shape in ("full", "depth_1", "blob_none", "sparse")
    ),
    "bigrepo_push_all",
}


def test_quick_benchmark_runs_and_writes_every_measurement(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, f"bench failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    data = json.loads(out.read_text())
    measurements = data["measurements"]
    assert set(measurements) >= EXPECTED, f"missing: {sorted(EXPECTED - set(measurements))}"
    for name in EXPECTED - {"control_plane_pss"}:  # PSS only where smaps_rollup exists
        assert measurements[name]["trials"] >= 1, f"{name} has no trial"
    assert data["machine"]["cores"] >= 1
    assert data["mode"] == "quick"
    # The table a person reads lists the same figures next to their targets.
    assert "| Push to PRE_DEPLOY start, 1 s interval |" in proc.stdout
    assert "Per-job overhead" in proc.stdout
    # The bench's job really ran on the stack: every burst deployed its final commit.
    assert measurements["burst_final_deployed"]["values"] == [100.0]
    assert "| Burst: final commit deployed | 1/1 bursts |" in proc.stdout
