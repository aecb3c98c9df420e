"""What machine the numbers come from: CPU, cores, RAM, Python, servers, date."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.common import ROOT


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def _git(*args: str) -> str:
    try:
        out = subprocess.run(  # noqa: S603 - argv fixed by callers below
            ["git", *args],  # noqa: S607 - read-only git queries
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def _git_commit() -> str:
    """The commit measured; ``+dirty`` when tracked files differ from it.

    ``BATON_BENCH_COMMIT`` names it instead, for a tree that is not a git checkout (e.g.
    ``git archive`` of a commit, measured while the checkout itself is being edited)."""
    named = os.environ.get("BATON_BENCH_COMMIT", "").strip()
    if named:
        return named
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return f"{commit}+dirty" if dirty else commit


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info(server_versions: dict[str, str], services_source: str) -> dict[str, Any]:
    """The ``machine`` object of every JSON result line."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count() or 0,
        "ram_gib": _ram_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "postgresql": server_versions.get("postgresql", "?"),
        "redis": server_versions.get("redis", "?"),
        "services": services_source,
        "celery": _version("celery"),
        "dramatiq": _version("dramatiq"),
        "baton_commit": _git_commit(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
