"""Whether the sandbox works on this machine: tried once per process with a trial task."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from worker.sandbox.launch import TOOLS, SandboxError, sandbox_python, start_in_sandbox, tool
from worker.sandbox.limits import SandboxLimits

_probed: list[str | None] = []


async def unavailable_reason() -> str | None:
    """Why the sandbox cannot run tasks here, or None when it can (tried once, then cached).

    Two first calls at once may both try; they reach the same answer.
    """
    if not _probed:
        reason = await _probe()
        _probed[:] = [reason]
    return _probed[0]


async def _probe() -> str | None:
    try:
        for name in TOOLS:
            tool(name)
    except SandboxError as exc:
        return str(exc)
    if sandbox_python() is None:
        return "no Python interpreter under /usr for the sandbox's supervisor"
    with tempfile.TemporaryDirectory(prefix="baton-shell-probe-") as workdir:
        try:
            started = await start_in_sandbox(
                ["/bin/true"],
                {},
                Path(workdir),
                asyncio.subprocess.DEVNULL,
                asyncio.subprocess.PIPE,
                SandboxLimits(),
            )
        except SandboxError as exc:
            return str(exc)
        try:
            stderr = started.process.stderr
            error = await stderr.read() if stderr is not None else b""
            await started.process.wait()
            code = started.returncode()
        finally:
            await started.close()
    if code != 0:
        detail = error.decode(errors="replace").strip()
        return f"a trial sandboxed task failed (exit code {code}): {detail}"
    return None
