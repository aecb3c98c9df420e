"""Write the results table of docs/benchmarks.md (only between its result markers).

One column per system that has results (Baton, then its peers: Celery, Dramatiq), one ratio
column Baton/peer per peer, and - in the dispatch and DAG table - the targets of issue #14
("Hot path v2") with whether this run meets them (at full scale; a quick run's verdicts are
indicative only). A second table gives the CPU per task of every component.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from bench.common import PEERS, SCHEDULER_SCENARIOS, BenchConfig, JsonDict

START = "<!-- bench:results:start -->"
END = "<!-- bench:results:end -->"


Lookup = Callable[[str, str, str], Any]  # (scenario, system, key) -> value or None


class Target(NamedTuple):
    """A goal of issue #14: its wording and a check over the run's results (None: cannot
    tell, e.g. a figure or a peer missing)."""

    text: str
    check: Callable[[Lookup], bool | None]


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def at_most(scenario: str, key: str, limit: float, text: str) -> Target:
    def check(get: Lookup) -> bool | None:
        value = _num(get(scenario, "baton", key))
        return None if value is None else value <= limit

    return Target(text, check)


def at_least(scenario: str, key: str, limit: float, text: str) -> Target:
    def check(get: Lookup) -> bool | None:
        value = _num(get(scenario, "baton", key))
        return None if value is None else value >= limit

    return Target(text, check)


def versus(scenario: str, key: str, peer: str, factor: float, higher: bool, text: str) -> Target:
    """Baton's figure against ``factor`` x the peer's in the same run (``higher``: Baton's
    must be at least that, else at most)."""

    def check(get: Lookup) -> bool | None:
        ours, theirs = _num(get(scenario, "baton", key)), _num(get(scenario, peer, key))
        if ours is None or theirs is None:
            return None
        return ours >= factor * theirs if higher else ours <= factor * theirs

    return Target(text, check)


def _fairness_target(get: Lookup) -> bool | None:
    p99 = _num(get("fairness", "baton", "b_p99_ms"))
    a_rate = _num(get("fairness", "baton", "a_tasks_per_s_meanwhile"))
    throughput = _num(get("throughput", "baton", "tasks_per_s"))
    if p99 is None or a_rate is None:
        return None
    if p99 > 50:
        return False
    return None if throughput is None else a_rate >= 0.8 * throughput


def burst_within(limit: float, text: str) -> Target:
    """schedules100k: every fire of the burst happened, the last within ``limit`` s."""

    def check(get: Lookup) -> bool | None:
        latest = _num(get("schedules100k", "baton", "lateness_max_s"))
        if get("schedules100k", "baton", "all_fired") is False:
            return False
        return None if latest is None else latest <= limit

    return Target(text, check)


def takeover_within_lease(text: str) -> Target:
    """scheduler_failover: the chosen tenant taken over within its lease + 1 s, no fire
    lost or duplicated."""

    def check(get: Lookup) -> bool | None:
        takeover = _num(get("scheduler_failover", "baton", "takeover_seconds"))
        lease = _num(get("scheduler_failover", "baton", "lease_seconds"))
        if get("scheduler_failover", "baton", "no_fire_lost_or_duplicated") is False:
            return False
        return None if takeover is None or lease is None else takeover <= lease + 1

    return Target(text, check)


class Row(NamedTuple):
    scenario: str
    key: str  # the metric in Baton's JSON line
    label: str
    better: str  # "higher" | "lower" | "": no ratio
    peer_key: str | None = None  # the metric in the peers' lines, if named differently
    targets: tuple[Target, ...] = ()  # issue #14's target, then its stretch goal


ROWS: list[Row] = [
    Row(
        "throughput",
        "tasks_per_s",
        "tasks/s, first enqueue -> last completion",
        "higher",
        targets=(
            versus("throughput", "tasks_per_s", "celery", 2, True, ">= 2x Celery"),
            versus("throughput", "tasks_per_s", "dramatiq", 1, True, ">= Dramatiq"),
        ),
    ),
    Row("throughput", "seconds", "seconds for all tasks", "lower"),
    Row("throughput", "enqueue_tasks_per_s", "enqueue rate, tasks/s", "higher"),
    Row("throughput", "exactly_once", "every task ran exactly once", ""),
    Row(
        "throughput",
        "system_cpu_ms_per_task",
        "CPU per task, every component, ms",
        "lower",
        targets=(
            at_most("throughput", "system_cpu_ms_per_task", 0.6, "<= 0.6 ms"),
            versus("throughput", "system_cpu_ms_per_task", "celery", 1, False, "<= Celery's"),
        ),
    ),
    Row("latency", "achieved_rate_per_s", "trigger rate achieved, /s", ""),
    Row(
        "latency",
        "p50_ms",
        "trigger -> start p50, ms",
        "lower",
        targets=(
            at_most("latency", "p50_ms", 5, "<= 5 ms"),
            at_most("latency", "p50_ms", 3, "<= 3 ms"),
        ),
    ),
    Row("latency", "p95_ms", "trigger -> start p95, ms", "lower"),
    Row(
        "latency",
        "p99_ms",
        "trigger -> start p99, ms",
        "lower",
        targets=(at_most("latency", "p99_ms", 15, "<= 15 ms"),),
    ),
    Row(
        "latency", "due_to_start_p50_ms", "due -> start p50, ms (incl. waiting to be sent)", "lower"
    ),
    Row(
        "latency", "due_to_start_p99_ms", "due -> start p99, ms (incl. waiting to be sent)", "lower"
    ),
    Row(
        "latency",
        "scheduled_due_to_start_p50_ms",
        "delayed run: due instant -> start p50, ms",
        "lower",
    ),
    Row(
        "latency",
        "scheduled_due_to_start_p99_ms",
        "delayed run: due instant -> start p99, ms",
        "lower",
        targets=(at_most("latency", "scheduled_due_to_start_p99_ms", 20, "<= 20 ms"),),
    ),
    Row("latency", "system_cpu_ms_per_task", "CPU per task, every component, ms", "lower"),
    Row("fairness", "a_waiting_at_b_start", "tenant A tasks waiting when B starts", ""),
    Row("fairness", "b_started", "tenant B tasks started (of b_tasks)", ""),
    Row("fairness", "b_p50_ms", "tenant B trigger -> start p50, ms", "lower"),
    Row(
        "fairness",
        "b_p99_ms",
        "tenant B trigger -> start p99, ms",
        "lower",
        targets=(
            Target("<= 50 ms while A drains at >= 80 % of throughput's tasks/s", _fairness_target),
        ),
    ),
    Row("fairness", "a_tasks_per_s_meanwhile", "tenant A tasks/s meanwhile", "higher"),
    Row("fairness", "system_cpu_ms_per_task", "CPU per task, every component, ms", "lower"),
    Row(
        "trigger_rate",
        "sustained_per_s",
        "sustained single triggers/s at p99 <= 50 ms",
        "higher",
        targets=(
            at_least("trigger_rate", "sustained_per_s", 1500, ">= 1,500/s"),
            at_least("trigger_rate", "share_of_ceiling", 0.5, ">= 50 % of the ceiling"),
        ),
    ),
    Row("trigger_rate", "sustained_p99_ms", "p99 at that rate, ms", ""),
    Row("trigger_rate", "closed_loop_per_s", "closed loop (64 clients): triggers/s", ""),
    Row("trigger_rate", "closed_loop_p99_ms", "closed loop: p99, ms", ""),
    Row(
        "trigger_rate",
        "ceiling_sustained_per_s",
        "ceiling (bare route, one asyncpg INSERT): sustained/s at p99 <= 50 ms",
        "",
    ),
    Row("trigger_rate", "ceiling_closed_loop_per_s", "ceiling: closed loop, requests/s", ""),
    Row("trigger_rate", "share_of_ceiling", "Baton / ceiling, sustained", ""),
    Row("trigger_rate", "every_201_committed", "every 201 is a committed run", ""),
    Row(
        "trigger_rate",
        "system_cpu_ms_per_trigger",
        "CPU per trigger, API + PostgreSQL + Redis (+ engine, workers if run), ms",
        "",
    ),
    Row(
        "trigger_rate",
        "ceiling_system_cpu_ms_per_trigger",
        "ceiling: CPU per request, app + PostgreSQL, ms",
        "",
    ),
    Row(
        "trigger_rate", "loadgen_cpu_share_max", "load generator: busiest step, share of a core", ""
    ),
    Row(
        "chain40",
        "seconds_median",
        "submit -> last step done, s (median of runs)",
        "lower",
        targets=(
            at_most("chain40", "seconds_median", 0.2, "<= 200 ms"),
            versus("chain40", "seconds_median", "celery", 2, False, "<= 2x Celery"),
        ),
    ),
    Row("chain40", "seconds_min", "submit -> last step done, s (fastest run)", "lower"),
    Row("chain40", "seconds_max", "submit -> last step done, s (slowest run)", "lower"),
    Row("chain40", "per_step_ms_median", "per-step overhead = median / 40, ms", "lower"),
    Row("chain40", "hop_ms_p50", "step done -> next step starts p50, ms", ""),
    Row("chain40", "hop_to_engine_ms_p50", "of which: step done -> engine transaction p50, ms", ""),
    Row(
        "chain40",
        "hop_engine_to_start_ms_p50",
        "of which: engine transaction -> next step starts p50, ms",
        "",
    ),
    Row("chain40", "engine_cpu_ms_per_task", "engine (scheduler) CPU per task, ms", ""),
    Row("chain40", "system_cpu_ms_per_task", "CPU per task, every component, ms", "lower"),
    Row(
        "fanout500",
        "seconds_median",
        "1 -> 500 -> join, s (median); Baton: for_each",
        "lower",
        targets=(versus("fanout500", "seconds_median", "celery", 1, False, "<= Celery"),),
    ),
    Row("fanout500", "seconds_max", "1 -> 500 -> join, s (slowest run); Baton: for_each", "lower"),
    Row(
        "fanout500",
        "explicit_seconds_median",
        "1 -> 500 -> join, s (median); Baton: 500 tasks in the spec",
        "lower",
        "seconds_median",
    ),
    Row(
        "fanout500",
        "fanout_dispatch_ms_median",
        "first done -> 500th started, ms (Baton: for_each)",
        "",
    ),
    Row("fanout500", "join_wait_ms_median", "500th done -> join starts, ms (Baton: for_each)", ""),
    Row("fanout500", "engine_cpu_ms_per_task", "engine (scheduler) CPU per task, ms", ""),
    Row("fanout500", "system_cpu_ms_per_task", "CPU per task, every component, ms", "lower"),
    Row(
        "dag1000",
        "seconds",
        "1,000-task DAG, submit -> done, s",
        "lower",
        targets=(at_most("dag1000", "seconds", 1.0, "<= 1.0 s"),),
    ),
    Row("dag1000", "tasks_per_s", "tasks/s over the run", "higher"),
    Row("dag1000", "engine_cpu_ms_per_task", "engine (scheduler) CPU per task, ms", ""),
    Row("dag1000", "system_cpu_ms_per_task", "CPU per task, every component, ms", "lower"),
]

# The cron-scheduler scenarios have a results block of their own, so running only them
# (BATON_BENCH_SCENARIOS=schedules10k,scheduler_failover,schedules100k) leaves the table
# above alone. schedules100k's burst carries issue #15's target ("Scheduler at scale").
SCHEDULER_START = "<!-- bench:scheduler:start -->"
SCHEDULER_END = "<!-- bench:scheduler:end -->"

SCHEDULER_ROWS: list[Row] = [
    Row("schedules10k", "schedules", "schedules (entries), each firing every minute", ""),
    Row("schedules10k", "fires_expected", "fires due in the measured minutes", ""),
    Row("schedules10k", "fires", "fires that happened (of those due)", "higher"),
    Row("schedules10k", "all_fired", "every due instant fired", ""),
    Row(
        "schedules10k",
        "lateness_p50_s",
        "lateness p50, s (Baton: run admissible - instant; beat: sent - instant)",
        "lower",
    ),
    Row(
        "schedules10k",
        "lateness_p99_s",
        "lateness p99, s",
        "lower",
        targets=(
            at_most("schedules10k", "lateness_p99_s", 1.0, "<= 1 s"),
            at_most("schedules10k", "lateness_p99_s", 0.1, "<= 100 ms"),
        ),
    ),
    Row("schedules10k", "lateness_max_s", "lateness max, s", "lower"),
    Row(
        "schedules10k",
        "scheduler_cpu_ms_per_fire",
        "scheduler CPU per fire, ms",
        "lower",
        targets=(at_most("schedules10k", "scheduler_cpu_ms_per_fire", 1.0, "<= 1 ms"),),
    ),
    Row("schedules10k", "executed_all", "every fired run succeeded (engine + workers)", ""),
    Row(
        "schedules10k",
        "admissible_to_dispatch_p99_s",
        "fired run admissible -> its task dispatched by the engine p99, s",
        "lower",
    ),
    Row(
        "schedules10k",
        "admissible_to_start_p99_s",
        "fired run admissible -> its task started p99, s",
        "lower",
    ),
    Row(
        "schedules10k",
        "system_cpu_ms_per_fire",
        "CPU per fire, scheduler + PostgreSQL + Redis (Celery: beat + Redis), ms",
        "lower",
    ),
    Row("scheduler_failover", "schedules", "schedules over 20 tenants, every 5 s", ""),
    Row("scheduler_failover", "lease_seconds", "lease (BATON_SCHEDULER_LEASE_SECONDS), s", ""),
    Row(
        "scheduler_failover",
        "takeover_seconds",
        "SIGKILL -> the chosen tenant's next fire on the survivor, s",
        "",
        targets=(takeover_within_lease("<= lease + 1 s"),),
    ),
    Row(
        "scheduler_failover",
        "takeover_all_median_s",
        "SIGKILL -> next fire, median of the killed replica's tenants, s",
        "",
    ),
    Row(
        "scheduler_failover",
        "takeover_all_max_s",
        "SIGKILL -> next fire, slowest of the killed replica's tenants, s",
        "",
    ),
    Row(
        "scheduler_failover",
        "restarted_first_fire_s",
        "restarted replica: start -> its first fire, s",
        "",
    ),
    Row("scheduler_failover", "fires_expected", "fires due over the run", ""),
    Row("scheduler_failover", "fires_lost", "fires lost", ""),
    Row("scheduler_failover", "fires_duplicated", "fires duplicated", ""),
    Row("scheduler_failover", "no_fire_lost_or_duplicated", "every instant fired exactly once", ""),
    Row(
        "scheduler_failover",
        "lateness_p99_s",
        "lateness p99 over the run, s (run admissible - instant)",
        "",
    ),
    Row("schedules100k", "schedules", "hourly schedules, all at the same minute", ""),
    Row("schedules100k", "tenants", "tenants", ""),
    Row("schedules100k", "seed_seconds", "creating them (signup + create_jobs), s", ""),
    Row("schedules100k", "fires", "fires of the burst (of those due)", ""),
    Row("schedules100k", "fires_lost", "fires lost", ""),
    Row("schedules100k", "fires_duplicated", "fires duplicated", ""),
    Row("schedules100k", "exactly_once", "every instant fired exactly once", ""),
    Row("schedules100k", "prepared_ahead", "fires prepared before their instant", ""),
    Row(
        "schedules100k",
        "lateness_p50_s",
        "lateness p50, s (run admissible - instant)",
        "",
    ),
    Row("schedules100k", "lateness_p99_s", "lateness p99, s", ""),
    Row(
        "schedules100k",
        "lateness_max_s",
        "lateness max, s: the whole burst fired within",
        "",
        targets=(burst_within(60, "<= 60 s"), burst_within(20, "<= 20 s")),
    ),
    Row("schedules100k", "stamped_max_s", "runs.created_at - instant, max, s", ""),
    Row("schedules100k", "scheduler_cpu_ms_per_fire", "scheduler CPU per fire, ms", ""),
    Row("schedules100k", "postgres_cpu_ms_per_fire", "PostgreSQL CPU per fire, ms", ""),
    Row("schedules100k", "redis_cpu_ms_per_fire", "Redis CPU per fire, ms", ""),
    Row("schedules100k", "burst_rss_peak_mib", "scheduler RSS, peak in the burst, MiB", ""),
    Row(
        "schedules100k",
        "idle_scheduler_cpu_pct",
        "scheduler CPU between bursts, % of a core",
        "",
    ),
    Row("schedules100k", "idle_scheduler_rss_mib", "scheduler RSS between bursts, MiB", ""),
]

TEMPLATE = f"""# Benchmarks

`make bench` runs every scenario for Baton and for Celery on the same machine, in the same
run, and refreshes the table below. See the end of this page for how each number is taken.

{START}
{END}
"""


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) < 1:
            return f"{value:.2g}" if abs(value) < 0.1 else f"{value:.3f}"
        if abs(value) < 10:
            return f"{value:.2f}"
        return f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "-" if value is None else str(value)


def _ratio(baton: Any, celery: Any) -> str:
    if isinstance(baton, bool) or isinstance(celery, bool):
        return ""
    if not isinstance(baton, int | float) or not isinstance(celery, int | float) or not celery:
        return ""
    return f"{baton / celery:.2f}x"


def _targets(targets: tuple[Target, ...], get: Lookup) -> str:
    """``<= 5 ms: **no** (<= 3 ms: **no**)``: each goal and whether this run meets it."""
    verdicts = {True: "yes", False: "**no**", None: "?"}
    parts = [f"{t.text}: {verdicts[t.check(get)]}" for t in targets]
    if len(parts) > 1:
        return f"{parts[0]} ({'; '.join(parts[1:])})"
    return parts[0] if parts else ""


COMPONENTS = ("api", "scheduler", "workers", "postgres", "redis", "ceiling_app")
COMPONENT_LABELS = {"scheduler": "engine", "ceiling_app": "ceiling app"}


def _component_table(results: list[JsonDict]) -> list[str]:
    """CPU per task (per trigger for trigger_rate) of every component, ms: one line per
    scenario and system that reports it (the ceiling of trigger_rate as its own line)."""
    lines: list[tuple[str, str, dict[str, Any], Any]] = []
    for r in results:
        if isinstance(r.get("cpu_ms_per_task"), dict):
            lines.append(
                (r["scenario"], r["system"], r["cpu_ms_per_task"], r.get("system_cpu_ms_per_task"))
            )
        if isinstance(r.get("cpu_ms_per_trigger"), dict):
            lines.append(
                (
                    r["scenario"],
                    r["system"],
                    r["cpu_ms_per_trigger"],
                    r.get("system_cpu_ms_per_trigger"),
                )
            )
        if isinstance(r.get("ceiling_cpu_ms_per_trigger"), dict):
            lines.append(
                (
                    r["scenario"],
                    "ceiling",
                    r["ceiling_cpu_ms_per_trigger"],
                    r.get("ceiling_system_cpu_ms_per_trigger"),
                )
            )
    if not lines:
        return []
    used = [c for c in COMPONENTS if any(c in per for _, _, per, _ in lines)]
    header = [
        "scenario",
        "system",
        *(COMPONENT_LABELS.get(c, c) for c in used),
        "every component",
        "client / load generator",
    ]
    out = [
        "",
        'CPU per task (trigger_rate: per trigger) of each component, ms; "every '
        "component\" leaves out the benchmark's own client:",
        "",
        "| " + " | ".join(header) + " |",
        "|---|---|" + "---:|" * (len(used) + 2),
    ]
    for scenario, system, per, total in lines:
        client = per.get("loadgen", per.get("client"))
        cells = [scenario, system, *(_fmt(per.get(c)) for c in used), _fmt(total), _fmt(client)]
        out.append("| " + " | ".join(cells) + " |")
    return out


NOISY = 0.1  # share of the machine's busy CPU time used by other processes


def _noise(results: list[JsonDict]) -> float:
    """Share of the machine's busy CPU time, over every measured window, that processes
    outside the benchmark used (the ``other`` of each line's ``cpu_seconds``)."""
    windows = [r["cpu_seconds"] for r in results if isinstance(r.get("cpu_seconds"), dict)]
    machine = sum(float(w.get("machine", 0.0)) for w in windows)
    other = sum(float(w.get("other", 0.0)) for w in windows)
    return other / machine if machine > 0 else 0.0


def results_section(
    results: list[JsonDict],
    machine: dict[str, Any],
    cfg: BenchConfig,
    rows: list[Row] | None = None,
    start: str = START,
    end: str = END,
    target_header: str = "#14 target (stretch)",
) -> str:
    rows = ROWS if rows is None else rows
    by_key = {(r["scenario"], r["system"]): r for r in results}
    lines = [
        start,
        "",
        f"Run of {machine.get('date', '?')} at `BATON_BENCH_SCALE={cfg.scale:g}` on "
        f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, "
        f"{machine.get('ram_gib', '?')} GiB RAM, Python {machine.get('python', '?')}, "
        f"PostgreSQL {machine.get('postgresql', '?')}, Redis {machine.get('redis', '?')} "
        f"({machine.get('services', '?')}), Celery {machine.get('celery', '?')}, "
        f"Dramatiq {machine.get('dramatiq', '?')}, Baton {machine.get('baton_commit', '?')}.",
        "",
    ]
    noise = _noise(results)
    if noise >= NOISY:
        lines += [
            f"**Noisy run:** processes outside the benchmark used {noise:.0%} of the "
            "machine's busy CPU time in the measured windows (`other` in "
            "`cpu_seconds`); expect better figures on an idle machine.",
            "",
        ]
    peers = [p for p in PEERS if any(r["system"] == p for r in results)]
    with_targets = any(row.targets for row in rows)

    def get(scenario: str, system: str, key: str) -> Any:
        return by_key.get((scenario, system), {}).get(key)

    header = ["scenario", "metric", "better", "Baton", *(p.capitalize() for p in peers)]
    header += [f"Baton/{p.capitalize()}" for p in peers]
    if with_targets:
        header += [target_header]
    lines += [
        "| " + " | ".join(header) + " |",
        "|---|---|---|" + "---:|" * (1 + 2 * len(peers)) + ("---|" if with_targets else ""),
    ]
    for row in rows:
        baton = by_key.get((row.scenario, "baton"), {})
        peer_key = row.peer_key or row.key
        values = [by_key.get((row.scenario, p), {}).get(peer_key) for p in peers]
        if row.key not in baton and all(v is None for v in values):
            continue
        b = baton.get(row.key)
        cells = [row.scenario, row.label, row.better, _fmt(b), *(_fmt(v) for v in values)]
        cells += [_ratio(b, v) if row.better else "" for v in values]
        if with_targets:
            cells.append(_targets(row.targets, get))
        lines.append("| " + " | ".join(cells) + " |")
    lines += _component_table(results)
    errors = [r for r in results if "error" in r]
    for r in errors:
        lines.append("")
        lines.append(
            f"**{r['scenario']} / {r['system']} failed:** `{str(r['error']).splitlines()[0][:300]}`"
        )
    setups: dict[tuple[str, str], list[str]] = {}
    for r in results:
        if "setup" in r:
            setups.setdefault((r["system"], r["setup"]), []).append(r["scenario"])
    if setups:
        lines += ["", "Setup:", ""]
        lines += [
            f"- {system} ({', '.join(scenarios)}): {setup}"
            for (system, setup), scenarios in setups.items()
        ]
    lines += ["", "<details><summary>Raw JSON lines of this run</summary>", "", "```json"]
    lines += [json.dumps({k: v for k, v in r.items() if k != "machine"}) for r in results]
    lines += ["```", "", "</details>", "", end]
    return "\n".join(lines)


# The soak scenario has a block of its own: its result is a set of series over time, and
# what it answers (does anything grow under a steady load?) is a slope, not a ratio.
SOAK_START = "<!-- bench:soak:start -->"
SOAK_END = "<!-- bench:soak:end -->"
SOAK_SERIES: list[tuple[str, str]] = [
    ("redis_used_memory", "Redis used_memory, bytes (whole server)"),
    ("redis_key_bytes", "Redis keys of the run, MEMORY USAGE bytes"),
    ("redis_updates_bytes", "of which the live-updates stream (capped), bytes"),
    ("stream_entries", "entries in the tenant's dispatch and events streams"),
    ("runs_kept", "runs kept in PostgreSQL (retention cuts the rest)"),
    ("runs_dead_tuples", "dead tuples in runs"),
    ("runs_bytes", "runs, bytes with indexes"),
    ("task_runs_bytes", "task_runs, bytes"),
    ("task_attempts_bytes", "task_attempts, bytes"),
    ("task_logs_bytes", "task_logs, bytes (all partitions)"),
    ("p99_ms", "trigger request p99 in the window, ms"),
]
# A series counts as flat when its fitted change over the second half of the run is within
# this share of its last value (or the value stays at 0). The second half, because capped
# structures (the live-updates stream) and the tables up to the retention window fill
# during the first minutes by design.
FLAT_SHARE = 0.10


def _growth(slope: Any, minutes: float, last: Any) -> str:
    """The fitted change over ``minutes`` as a share of the last value."""
    rate, final = _num(slope), _num(last)
    if rate is None or final is None:
        return "n/a"
    if final == 0:
        return "flat (0)" if rate == 0 else f"{rate * minutes:+,.0f}"
    share = rate * minutes / final
    verdict = "flat" if abs(share) <= FLAT_SHARE else "grows" if share > 0 else "shrinks"
    return f"{share:+.1%} ({verdict})"


def soak_section(result: JsonDict, machine: dict[str, Any], cfg: BenchConfig) -> str:
    """The soak block: each series' first and last sample, its least-squares slope per
    minute after the first minute and over the second half, and whether it stayed flat
    over the second half."""
    lines = [
        SOAK_START,
        "",
        f"Run of {machine.get('date', '?')} at `BATON_BENCH_SCALE={cfg.scale:g}` on "
        f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, Baton "
        f"{machine.get('baton_commit', '?')}.",
        "",
    ]
    if "error" in result:
        lines += [f"**soak failed:** `{str(result['error']).splitlines()[0][:300]}`", ""]
        return "\n".join([*lines, SOAK_END])
    minutes = float(result.get("minutes", 0.0))
    lines += [
        f"{result.get('triggers', '?')} triggers at {result.get('target_rate_per_s', '?')}/s "
        f"for {minutes:g} min, retention {result.get('retention_seconds', '?')} s "
        f"({result.get('runs_pruned', '?')} runs pruned), {result.get('tasks_succeeded', '?')}"
        f" tasks succeeded; trigger p50 {_fmt(result.get('trigger_p50_ms'))} ms, p99 "
        f"{_fmt(result.get('trigger_p99_ms'))} ms. Setup: {result.get('setup', '?')}.",
        "",
        "| series | first | last | slope/min (after 1st min) | slope/min (2nd half) "
        "| change over the 2nd half |",
        "|---|---:|---:|---:|---:|---|",
    ]
    first, last = result.get("first", {}), result.get("last", {})
    slopes = result.get("slopes_per_minute", {})
    second = result.get("slopes_per_minute_second_half", {})
    for key, label in SOAK_SERIES:
        if key not in last:
            continue
        cells = [label, _fmt(first.get(key)), _fmt(last.get(key))]
        cells += [_fmt(slopes.get(key)), _fmt(second.get(key))]
        cells.append(_growth(second.get(key), minutes / 2, last.get(key)))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "<details><summary>Raw JSON line</summary>", "", "```json"]
    lines += [json.dumps({k: v for k, v in result.items() if k != "machine"})]
    lines += ["```", "", "</details>", "", SOAK_END]
    return "\n".join(lines)


def _replace_block(text: str, start: str, end: str, block: str) -> str:
    if start not in text or end not in text:
        text = text.rstrip() + f"\n\n{start}\n{end}\n"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    return head + block + tail


def write_report(
    path: Path, results: list[JsonDict], machine: dict[str, Any], cfg: BenchConfig
) -> None:
    """Replace the results sections of ``path`` that this run has results for (creating the
    page if it does not exist): the dispatch and DAG table, the scheduler table, the soak
    block."""
    text = path.read_text() if path.exists() else TEMPLATE
    soak = [r for r in results if r["scenario"] == "soak" and r["system"] == "baton"]
    main = [r for r in results if r["scenario"] not in (*SCHEDULER_SCENARIOS, "soak")]
    scheduler = [r for r in results if r["scenario"] in SCHEDULER_SCENARIOS]
    if soak:
        text = _replace_block(text, SOAK_START, SOAK_END, soak_section(soak[-1], machine, cfg))
    if main:
        text = _replace_block(text, START, END, results_section(main, machine, cfg))
    if scheduler:
        text = _replace_block(
            text,
            SCHEDULER_START,
            SCHEDULER_END,
            results_section(
                scheduler,
                machine,
                cfg,
                SCHEDULER_ROWS,
                SCHEDULER_START,
                SCHEDULER_END,
                target_header="#15 target (stretch)",
            ),
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main() -> int:
    """``python -m bench.report results.jsonl [docs.md]``: re-render the table from saved
    JSON lines (what ``make bench`` printed), e.g. after editing the page's prose."""
    import sys

    from bench.common import DOCS

    if len(sys.argv) not in (2, 3):
        sys.stderr.write("usage: python -m bench.report RESULTS.jsonl [DOCS.md]\n")
        return 2
    lines = Path(sys.argv[1]).read_text().splitlines()
    results = [json.loads(line) for line in lines if line.startswith("{")]
    if not results:
        sys.stderr.write("no JSON result lines found\n")
        return 1
    cfg = BenchConfig.from_env()
    cfg = dataclasses.replace(cfg, scale=float(results[0].get("scale", cfg.scale)))
    write_report(
        Path(sys.argv[2]) if len(sys.argv) == 3 else DOCS,
        results,
        results[0].get("machine", {}),
        cfg,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
