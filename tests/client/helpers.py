"""The ``baton`` client run in a subprocess: :class:`Cli` and what it returns."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


@dataclass(frozen=True)
class Cli:
    """The ``baton`` command with its own config directory (no profile until ``login``)."""

    config_dir: Path
    url: str
    token: str

    async def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        environment = {
            key: value for key, value in os.environ.items() if not key.startswith("BATON_")
        }
        environment.update(
            PYTHONPATH=str(ROOT),
            BATON_CONFIG_DIR=str(self.config_dir),
            COLUMNS="250",
            NO_COLOR="1",
            TERM="dumb",
            **(env or {}),
        )
        # Not subprocess.run: the server under test runs in this event loop.
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "baton_client",
            *args,
            env=environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode is not None
        return Result(process.returncode, out.decode(), err.decode())

    async def login(self) -> None:
        result = await self("login", "--url", self.url, "--token", self.token)
        assert result.code == 0, result
