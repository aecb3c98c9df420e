"""Write the results table of docs/benchmarks.md (only between its result markers)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from bench.common import BenchConfig, JsonDict

START = "<!-- bench:results:start -->"
END = "<!-- bench:results:end -->"

# (scenario, metric key, label, better: "higher" | "lower" | "")
ROWS: list[tuple[str, str, str, str]] = [
    ("throughput", "tasks_per_s", "tasks/s, first enqueue -> last completion", "higher"),
    ("throughput", "seconds", "seconds for all tasks", "lower"),
    ("throughput", "enqueue_tasks_per_s", "enqueue rate, tasks/s", "higher"),
    ("throughput", "exactly_once", "every task ran exactly once", ""),
    ("latency", "achieved_rate_per_s", "trigger rate achieved, /s", ""),
    ("latency", "p50_ms", "trigger -> start p50, ms", "lower"),
    ("latency", "p95_ms", "trigger -> start p95, ms", "lower"),
    ("latency", "p99_ms", "trigger -> start p99, ms", "lower"),
    ("latency", "due_to_start_p50_ms", "due -> start p50, ms (incl. waiting to be sent)", "lower"),
    ("latency", "due_to_start_p99_ms", "due -> start p99, ms (incl. waiting to be sent)", "lower"),
    ("fairness", "a_waiting_at_b_start", "tenant A tasks waiting when B starts", ""),
    ("fairness", "b_started", "tenant B tasks started (of b_tasks)", ""),
    ("fairness", "b_p50_ms", "tenant B trigger -> start p50, ms", "lower"),
    ("fairness", "b_p99_ms", "tenant B trigger -> start p99, ms", "lower"),
    ("fairness", "a_tasks_per_s_meanwhile", "tenant A tasks/s meanwhile", "higher"),
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
        "| scenario | metric | better | Baton | Celery | Baton/Celery |",
        "|---|---|---|---:|---:|---:|",
    ]
    for scenario, key, label, better in ROWS:
        baton = by_key.get((scenario, "baton"), {})
        celery = by_key.get((scenario, "celery"), {})
        if key not in baton and key not in celery:
            continue
        b, c = baton.get(key), celery.get(key)
        ratio = _ratio(b, c) if better else ""
        lines.append(f"| {scenario} | {label} | {better} | {_fmt(b)} | {_fmt(c)} | {ratio} |")
    errors = [r for r in results if "error" in r]
    for r in errors:
        lines.append("")
        lines.append(f"**{r['scenario']} / {r['system']} failed:** "
                     f"`{str(r['error']).splitlines()[0][:300]}`")
    setups = sorted({f"{r['system']}: {r['setup']}" for r in results if "setup" in r})
    if setups:
        lines += ["", "Setup: " + "; ".join(setups) + "."]
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
