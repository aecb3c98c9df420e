"""The ``baton`` client run in a subprocess: :class:`Cli` and what it returns."""

from __future__ import annotations

import asyncio
import os
import sys
from asyncio.subprocess import Process
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

    def environment(self, env: dict[str, str] | None = None) -> dict[str, str]:
        """The client's environment: this repository on the path, a config dir of its own."""
        environment = {
            key: value for key, value in os.environ.items() if not key.startswith("BATON_")
        }
        environment.update(
            PYTHONPATH=str(ROOT),
            BATON_CONFIG_DIR=str(self.config_dir),
            COLUMNS="250",
            NO_COLOR="1",
            TERM="dumb",
        )
        environment.update(env or {})
        return environment

    async def spawn(self, *args: str, env: dict[str, str] | None = None) -> Process:
        """The client started, its stdout and stderr piped: to read its output as it comes.
        Not subprocess.run: the server under test runs in this event loop."""
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "baton_client",
            *args,
            env=self.environment(env),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        process = await self.spawn(*args, env=env)
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode is not None
        return Result(process.returncode, out.decode(), err.decode())

    async def login(self) -> None:
        result = await self("login", "--url", self.url, "--token", self.token)
        assert result.code == 0, result
