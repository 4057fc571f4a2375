"""``python -m bench``: measure hotreload the same way every time, on the real stack.

Sets up its own redis-server, local bare repository and ``honcho start`` stacks, runs every
measurement, prints a markdown table (each figure next to its target and the bash
template's figure) and writes the figures as JSON::

    python -m bench                  # full run, several minutes
    python -m bench --quick          # a tiny version in seconds (the CI smoke test)
    python -m bench --json out.json  # JSON here instead of bench/results/<timestamp>.json
    python -m bench --only push,idle # groups: push, webhook, burst, idle, overhead, boot, steer, serving, bigrepo
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import bigrepo, boot, idle, job_overhead, latency, serving, steering
from bench.deploys import launch
from bench.report import Figure, describe, machine, markdown_table, write_json
from bench.stack import ROOT, BenchError, GitRemote, RedisServer, Workdir

GROUPS = ("push", "webhook", "burst", "idle", "overhead", "boot", "steer", "serving", "bigrepo")


@dataclass(frozen=True)
class Plan:
    interval_1: int
    interval_5: int
    webhook: int
    bursts: int
    idle_seconds: float
    overhead: int
    boots: int
    serving: int  # trials per strategy and PRE_DEPLOY duration
    absorbed: int  # commits pushed one after the other, with and without the path filter
    steering: int  # trials of hotreload resume and of hotreload cancel


FULL = Plan(
    interval_1=20,
    interval_5=10,
    webhook=20,
    bursts=3,
    idle_seconds=60,
    overhead=30,
    boots=5,
    serving=10,
    absorbed=20,
    steering=5,
)
QUICK = Plan(
    interval_1=3,
    interval_5=1,
    webhook=2,
    bursts=1,
    idle_seconds=3,
    overhead=5,
    boots=1,
    serving=1,
    absorbed=3,
    steering=1,
)


def median_at_most(limit: float) -> Callable[[Figure], bool]:
    return lambda f: f.median <= limit


def push_figures(name: str, label: str, result: latency.PushResult, pre: dict[str, object]) -> list[Figure]:
    notes = "" if result.trigger.startswith(("poll", "webhook")) else result.trigger
    return [
        Figure(
            f"push_to_pre_start_{name}",
            f"Push to PRE_DEPLOY start, {label}",
            "s",
            result.pre,
            notes=notes,
            details={"trigger": result.trigger},
            **pre,  # type: ignore[arg-type]
        ),
        Figure(
            f"push_to_post_done_{name}",
            f"Push to POST_DEPLOY done, {label}",
            "s",
            result.post,
            notes=notes,
            details={"trigger": result.trigger},
        ),
    ]


def run(plan: Plan, groups: set[str], root: Path) -> tuple[list[Figure], list[dict[str, object]]]:
    figures: list[Figure] = []
    processes: list[dict[str, object]] = []
    server = RedisServer(root / "redis").start()
    try:
        remote = GitRemote(root)
        remote.commit({"README": "bench app\n"})

        if groups & {"push", "burst", "idle"}:
            d = launch(root, "interval-1", remote, server, GITHUB_SYNC_INTERVAL="1")
            try:
                if "idle" in groups:
                    cost = idle.measure_idle(d, plan.idle_seconds)
                    processes = cost.processes
                    common = {
                        "seconds": round(cost.seconds, 2),
                        "cycles": round(cost.cycles, 1),
                        "cycles_observed": cost.cycles_observed,
                        "cpu_s_by_role": cost.cpu_by_role,
                    }
                    figures += [
                        Figure(
                            "idle_cpu_per_cycle",
                            "Idle CPU per sync cycle, 1 s interval (our tree + redis-server)",
                            "ms",
                            [cost.cpu_ms_per_cycle],
                            target="≤ 9.5 ms (half the template)",
                            template="19 ms",
                            met=lambda f: f.median <= 9.5,
                            details=common,
                            single=True,
                        ),
                        Figure(
                            "idle_cpu_per_cycle_without_redis",
                            "Idle CPU per sync cycle, without redis-server",
                            "ms",
                            [cost.cpu_ms_per_cycle_without_redis],
                            template="19 ms (has no Redis)",
                            single=True,
                        ),
                        Figure(
                            "idle_cpu_core_percent",
                            "Idle CPU, share of one core (our tree + redis-server)",
                            "%",
                            [cost.core_percent],
                            target="≤ 0.95 %",
                            template="1.9 %",
                            met=lambda f: f.median <= 0.95,
                            single=True,
                        ),
                        Figure(
                            "control_plane_rss",
                            "Control-plane memory, RSS summed (without redis-server and the app)",
                            "MB",
                            [cost.rss_mb],
                            target="< 100 MB",
                            template="≈ 8 MB (shell processes)",
                            met=lambda f: f.median < 100,
                            details={"processes": cost.counted},
                            single=True,
                        ),
                        Figure(
                            "control_plane_pss",
                            "Control-plane memory, PSS summed (shared pages split)",
                            "MB",
                            [cost.pss_mb] if cost.pss_mb is not None else [],
                            single=True,
                        ),
                    ]
                if "push" in groups:
                    result = latency.push_trials(d, remote, plan.interval_1)
                    figures += push_figures(
                        "interval_1",
                        "1 s interval",
                        result,
                        {
                            "target": "median ≤ 0.66 s",
                            "template": "0.66 s median, 1.08 s max",
                            "met": median_at_most(0.66),
                        },
                    )
                if "burst" in groups:
                    b = latency.bursts(d, remote, plan.bursts)
                    figures += [
                        Figure(
                            "burst_pre_runs",
                            "Burst of 10 pushes in 2 s: PRE_DEPLOY runs per burst",
                            "runs",
                            [float(n) for n in b.runs],
                            target="≤ 3",
                            template="2 to 3",
                            met=lambda f: f.max <= 3,
                        ),
                        Figure(
                            "burst_final_deployed",
                            "Burst: final commit deployed",
                            "%",
                            [100.0 if deployed else 0.0 for deployed in b.deployed],
                            target="every burst",
                            template="every burst",
                            met=lambda f: min(f.values) == 100.0,
                            display=f"{sum(b.deployed)}/{len(b.deployed)} bursts",
                        ),
                        Figure(
                            "burst_last_push_to_final_pre_start",
                            "Burst: last push to the final commit's PRE_DEPLOY start",
                            "s",
                            b.final_pre,
                        ),
                    ]
            finally:
                d.stop()

        if "idle" in groups:
            # The same memory figure with rq-dashboard on (ENABLE_RQ_DASHBOARD=true; off by default).
            d = launch(
                root, "dashboard", remote, server, GITHUB_SYNC_INTERVAL="30", ENABLE_RQ_DASHBOARD="true"
            )
            try:
                idle.wait_for_dashboard(d)
                cost = idle.measure_idle(d, 0.5)
            finally:
                d.stop()
            figures.append(
                Figure(
                    "control_plane_rss_with_dashboard",
                    "Control-plane memory with rq-dashboard on, RSS summed",
                    "MB",
                    [cost.rss_mb],
                    target="< 100 MB",
                    template="no dashboard",
                    met=lambda f: f.median < 100,
                    details={"pss_mb": cost.pss_mb, "processes": cost.counted},
                    single=True,
                )
            )

        if "push" in groups:
            d = launch(root, "interval-5", remote, server, GITHUB_SYNC_INTERVAL="5")
            try:
                result = latency.push_trials(d, remote, plan.interval_5)
            finally:
                d.stop()
            figures += push_figures("interval_5", "5 s interval", result, {"template": "2.4 s median"})

        if "webhook" in groups:
            d = launch(
                root,
                "webhook",
                remote,
                server,
                GITHUB_SYNC_INTERVAL="30",
                GITHUB_WEBHOOK_SECRET=latency.WEBHOOK_SECRET,
            )
            try:
                result = latency.push_trials(d, remote, plan.webhook, webhook=True)
            finally:
                d.stop()
            figures += push_figures(
                "webhook",
                "webhook (30 s interval)",
                result,
                {"target": "median < 0.3 s", "template": "no webhook", "met": lambda f: f.median < 0.3},
            )

        if "overhead" in groups:
            t = job_overhead.measure_job_overhead(root, remote, server, plan.overhead)
            direct = statistics.median(t.direct)
            figures += [
                Figure(
                    "job_path",
                    "PRE_DEPLOY `true` through enqueue, worker, runner, outcome",
                    "ms",
                    [v * 1000 for v in t.path],
                    details=job_overhead.details(t),
                ),
                Figure("job_direct", "`bash -c true` run directly", "ms", [v * 1000 for v in t.direct]),
                Figure(
                    "job_overhead",
                    "Per-job overhead (path minus the median of direct)",
                    "ms",
                    [(v - direct) * 1000 for v in t.path],
                    target="< 25 ms",
                    template="5 ms",
                    met=lambda f: f.median < 25,
                ),
            ]

        if "boot" in groups:
            bt = boot.measure_boot(root, remote, server, plan.boots)
            figures += [
                Figure(
                    "boot_overhead",
                    "Boot overhead: honcho start to the app's first line, minus clone and job",
                    "s",
                    bt.overhead,
                ),
                Figure("boot_total", "Boot: honcho start to the app's first line", "s", bt.total),
                Figure("boot_clone", "Boot: the clone alone (git clone, run directly)", "s", bt.clone),
                Figure("boot_job", "Boot: the PRE_DEPLOY `true` alone (runner's duration)", "s", bt.job),
            ]
        if "steer" in groups:
            st = steering.measure_steering(root, remote, server, plan.steering)
            figures += [
                Figure(
                    "resume_to_pre_start",
                    "`hotreload resume` to the waiting head's PRE_DEPLOY start (CLI start-up included)",
                    "s",
                    st.resume_to_pre,
                ),
                Figure(
                    "cancel_to_tree_gone",
                    "`hotreload cancel` to the running job's process tree gone (CLI start-up included)",
                    "s",
                    st.cancel_to_gone,
                ),
            ]
        if "serving" in groups:
            figures += serving.serving_figures(root, remote, server, plan.serving, plan.absorbed)

        if "bigrepo" in groups:
            figures += bigrepo.measure(root, server, bigrepo.QUICK_BIG if plan is QUICK else bigrepo.FULL_BIG)
    finally:
        server.stop()
    return figures, processes


def process_table(processes: list[dict[str, object]]) -> str:
    lines = ["| Process | RSS | PSS | Counted |", "|---|---:|---:|---|"]
    for p in processes:
        counted = p["role"] not in idle.EXCLUDED_FROM_MEMORY
        pss = p["pss_kb"]
        lines.append(
            f"| {p['command']} | {int(p['rss_kb']) / 1024:.1f} MB | "  # type: ignore[call-overload]
            f"{'–' if pss is None else f'{int(pss) / 1024:.1f} MB'} | {'yes' if counted else 'no'} |"  # type: ignore[call-overload]
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny version in seconds (smoke test)")
    parser.add_argument(
        "--json", type=Path, help="write the JSON here (default bench/results/<timestamp>.json)"
    )
    parser.add_argument("--only", help=f"comma-separated groups to run: {', '.join(GROUPS)}")
    parser.add_argument("--seed", type=int, default=None, help="seed for the random push times")
    args = parser.parse_args(argv)
    groups = set(GROUPS)
    if args.only:
        groups = {g.strip() for g in args.only.split(",") if g.strip()}
        unknown = groups - set(GROUPS)
        if unknown:
            parser.error(f"unknown group(s): {', '.join(sorted(unknown))}; choose from {', '.join(GROUPS)}")
    random.seed(args.seed)
    plan = QUICK if args.quick else FULL
    info = machine()
    started = time.time()
    try:
        with Workdir() as root:
            figures, processes = run(plan, groups, root)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    took = time.time() - started
    mode = "quick" if args.quick else "full"
    path = args.json or ROOT / "bench" / "results" / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    info["load_average_at_end"] = list(os.getloadavg())
    write_json(path, figures, info, mode=mode, seconds=round(took, 1), plan=plan.__dict__)
    print(f"## hotreload benchmark ({mode} run, {took:.0f} s)\n")
    load = " → ".join(f"{info[k][0]:.2f}" for k in ("load_average_at_start", "load_average_at_end"))
    print(f"Machine: {describe(info)}; 1-minute load average {load}\n")
    print(markdown_table(figures))
    for line in notes(figures):
        print(line)
    if processes:
        print("\nLong-lived processes of the stack while idle:\n")
        print(process_table(processes))
    print(f"\nJSON: {path}")
    return 0


def notes(figures: list[Figure]) -> list[str]:
    """Where the time and the CPU go, from the figures' details."""
    by_name = {f.name: f for f in figures}
    lines = []
    if "idle_cpu_per_cycle" in by_name:
        d = by_name["idle_cpu_per_cycle"].details
        roles = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in sorted(d["cpu_s_by_role"].items()) if v > 0)
        lines.append(
            f"\nIdle: {d['seconds']:.0f} s, {d['cycles']:g} sync cycles "
            f"({'counted by the poller' if d['cycles_observed'] else 'one per interval'}); CPU by process: {roles}."
        )
    if "job_path" in by_name:
        b = by_name["job_path"].details["breakdown_median_s"]
        lines.append(
            f"\nPer-job path (medians): queued → started {b['queued'] * 1000:.1f} ms (dequeue, work-horse fork), "
            f"in the work horse {b['in_work_horse'] * 1000:.1f} ms (of which the command {b['command'] * 1000:.1f} ms), "
            f"after the horse {b['after_horse'] * 1000:.1f} ms (callbacks, registries, wake-up)."
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
