"""Finding a task's processes from the outside, whatever pid namespace they live in."""

from __future__ import annotations

import secrets
from pathlib import Path


def sleeper(seconds: int = 300) -> tuple[str, str]:
    """A ``sleep`` command and the marker its command line carries (unique per call)."""
    marker = f"{seconds}.{secrets.randbelow(10**8):08d}"
    return f"sleep {marker}", marker


def running(marker: str) -> list[int]:
    """Host pids of live processes (zombies excluded) whose arguments include ``marker``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state = stat[stat.rfind(")") + 2 :].split()[0]
        if marker.encode() in args and state not in ("Z", "X"):
            pids.append(int(entry.name))
    return pids
