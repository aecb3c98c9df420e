"""Write the results table of docs/benchmarks.md (only between its result markers)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, NamedTuple

from bench.common import BenchConfig, JsonDict

START = "<!-- bench:results:start -->"
END = "<!-- bench:results:end -->"


class Row(NamedTuple):
    scenario: str
    key: str  # the metric in Baton's JSON line
    label: str
    better: str  # "higher" | "lower" | "": no ratio
    celery_key: str | None = None  # the metric in Celery's line, if named differently


ROWS: list[Row] = [
    Row("throughput", "tasks_per_s", "tasks/s, first enqueue -> last completion", "higher"),
    Row("throughput", "seconds", "seconds for all tasks", "lower"),
    Row("throughput", "enqueue_tasks_per_s", "enqueue rate, tasks/s", "higher"),
    Row("throughput", "exactly_once", "every task ran exactly once", ""),
    Row("latency", "achieved_rate_per_s", "trigger rate achieved, /s", ""),
    Row("latency", "p50_ms", "trigger -> start p50, ms", "lower"),
    Row("latency", "p95_ms", "trigger -> start p95, ms", "lower"),
    Row("latency", "p99_ms", "trigger -> start p99, ms", "lower"),
    Row("latency", "due_to_start_p50_ms", "due -> start p50, ms (incl. waiting to be sent)",
        "lower"),
    Row("latency", "due_to_start_p99_ms", "due -> start p99, ms (incl. waiting to be sent)",
        "lower"),
    Row("fairness", "a_waiting_at_b_start", "tenant A tasks waiting when B starts", ""),
    Row("fairness", "b_started", "tenant B tasks started (of b_tasks)", ""),
    Row("fairness", "b_p50_ms", "tenant B trigger -> start p50, ms", "lower"),
    Row("fairness", "b_p99_ms", "tenant B trigger -> start p99, ms", "lower"),
    Row("fairness", "a_tasks_per_s_meanwhile", "tenant A tasks/s meanwhile", "higher"),
    Row("chain40", "seconds_median", "submit -> last step done, s (median of runs)", "lower"),
    Row("chain40", "seconds_min", "submit -> last step done, s (fastest run)", "lower"),
    Row("chain40", "seconds_max", "submit -> last step done, s (slowest run)", "lower"),
    Row("chain40", "per_step_ms_median", "per-step overhead = median / 40, ms", "lower"),
    Row("chain40", "hop_ms_p50", "step done -> next step starts p50, ms", ""),
    Row("chain40", "engine_cpu_ms_per_task", "engine (scheduler) CPU per task, ms", ""),
    Row("chain40", "system_cpu_ms_per_task", "CPU per task, every component, ms", "lower"),
    Row("fanout500", "seconds_median",
        "1 -> 500 -> join, s (median); Baton: for_each", "lower"),
    Row("fanout500", "seconds_max", "1 -> 500 -> join, s (slowest run); Baton: for_each",
        "lower"),
    Row("fanout500", "explicit_seconds_median",
        "1 -> 500 -> join, s (median); Baton: 500 tasks in the spec", "lower", "seconds_median"),
    Row("fanout500", "fanout_dispatch_ms_median",
        "first done -> 500th started, ms (Baton: for_each)", ""),
    Row("fanout500", "join_wait_ms_median", "500th done -> join starts, ms (Baton: for_each)",
        ""),
    Row("fanout500", "engine_cpu_ms_per_task", "engine (scheduler) CPU per task, ms", ""),
    Row("fanout500", "system_cpu_ms_per_task", "CPU per task, every component, ms", "lower"),
    Row("dag1000", "seconds", "1,000-task DAG, submit -> done, s", "lower"),
    Row("dag1000", "tasks_per_s", "tasks/s over the run", "higher"),
    Row("dag1000", "engine_cpu_ms_per_task", "engine (scheduler) CPU per task, ms", ""),
    Row("dag1000", "system_cpu_ms_per_task", "CPU per task, every component, ms", "lower"),
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


NOISY = 0.1  # share of the machine's busy CPU time used by other processes


def _noise(results: list[JsonDict]) -> float:
    """Share of the machine's busy CPU time, over every measured window, that processes
    outside the benchmark used (the ``other`` of each line's ``cpu_seconds``)."""
    windows = [r["cpu_seconds"] for r in results if isinstance(r.get("cpu_seconds"), dict)]
    machine = sum(float(w.get("machine", 0.0)) for w in windows)
    other = sum(float(w.get("other", 0.0)) for w in windows)
    return other / machine if machine > 0 else 0.0


def results_section(results: list[JsonDict], machine: dict[str, Any], cfg: BenchConfig) -> str:
    by_key = {(r["scenario"], r["system"]): r for r in results}
    lines = [
        START,
        "",
        f"Run of {machine.get('date', '?')} at `BATON_BENCH_SCALE={cfg.scale:g}` on "
        f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, "
        f"{machine.get('ram_gib', '?')} GiB RAM, Python {machine.get('python', '?')}, "
        f"PostgreSQL {machine.get('postgresql', '?')}, Redis {machine.get('redis', '?')} "
        f"({machine.get('services', '?')}), Celery {machine.get('celery', '?')}, "
        f"Baton {machine.get('baton_commit', '?')}.",
        "",
    ]
    noise = _noise(results)
    if noise >= NOISY:
        lines += [f"**Noisy run:** processes outside the benchmark used {noise:.0%} of the "
                  "machine's busy CPU time in the measured windows (`other` in "
                  "`cpu_seconds`); expect better figures on an idle machine.", ""]
    lines += [
        "| scenario | metric | better | Baton | Celery | Baton/Celery |",
        "|---|---|---|---:|---:|---:|",
    ]
    for row in ROWS:
        baton = by_key.get((row.scenario, "baton"), {})
        celery = by_key.get((row.scenario, "celery"), {})
        celery_key = row.celery_key or row.key
        if row.key not in baton and celery_key not in celery:
            continue
        b, c = baton.get(row.key), celery.get(celery_key)
        ratio = _ratio(b, c) if row.better else ""
        lines.append(f"| {row.scenario} | {row.label} | {row.better} | {_fmt(b)} | {_fmt(c)} "
                     f"| {ratio} |")
    errors = [r for r in results if "error" in r]
    for r in errors:
        lines.append("")
        lines.append(f"**{r['scenario']} / {r['system']} failed:** "
                     f"`{str(r['error']).splitlines()[0][:300]}`")
    setups: dict[tuple[str, str], list[str]] = {}
    for r in results:
        if "setup" in r:
            setups.setdefault((r["system"], r["setup"]), []).append(r["scenario"])
    if setups:
        lines += ["", "Setup:", ""]
        lines += [f"- {system} ({', '.join(scenarios)}): {setup}"
                  for (system, setup), scenarios in setups.items()]
    lines += ["", "<details><summary>Raw JSON lines of this run</summary>", "", "```json"]
    lines += [json.dumps({k: v for k, v in r.items() if k != "machine"}) for r in results]
    lines += ["```", "", "</details>", "", END]
    return "\n".join(lines)


def write_report(path: Path, results: list[JsonDict], machine: dict[str, Any],
                 cfg: BenchConfig) -> None:
    """Replace the results section of ``path`` (creating the page if it does not exist)."""
    text = path.read_text() if path.exists() else TEMPLATE
    if START not in text or END not in text:
        text = text.rstrip() + f"\n\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + results_section(results, machine, cfg) + tail)


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
    write_report(Path(sys.argv[2]) if len(sys.argv) == 3 else DOCS, results,
                 results[0].get("machine", {}), cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
