"""Reading Baton's metrics in tests, and finding promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from kernel.metrics import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
PROMTOOL_CANDIDATES = ("/usr/bin/promtool", "/usr/local/bin/promtool")


def promtool() -> str:
    """The promtool binary, or skip the test (it comes with the Debian package
    ``prometheus``; `.ci/run` installs it)."""
    found = shutil.which("promtool") or next(
        (p for p in PROMTOOL_CANDIDATES if Path(p).is_file()), None
    )
    if found is None:
        pytest.skip("promtool is not installed (apt-get install prometheus); .ci/run installs it")
    return found


def run_promtool(*args: str, stdin: str | None = None, cwd: Path | None = None) -> str:
    """Run promtool; fail the test with its output when it does not succeed."""
    result = subprocess.run(
        [promtool(), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def value(name: str, **labels: str) -> float:
    """A sample's current value in Baton's registry (0 when never recorded)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
