"""The installed on-prem stack the tests drive (tests/onprem/conftest.py installs it)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INSTALLER = REPO / "scripts" / "onprem" / "baton-onprem"
ADMIN_EMAIL = "admin@onprem.example.com"


def failure(result: subprocess.CompletedProcess[str]) -> AssertionError:
    """A failed command, with the ends of its output."""
    return AssertionError(
        f"{' '.join(map(str, result.args))} exited {result.returncode}\n"
        f"stdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-6000:]}"
    )


@dataclass
class Stack:
    """An installed stack: where it lives and how to reach it."""

    dir: Path
    env: dict[str, str]  # the environment the installer and docker run with (DOCKER_HOST)
    https_port: int
    project: str

    @property
    def url(self) -> str:
        return f"https://localhost:{self.https_port}"

    @property
    def ca(self) -> Path:
        """Caddy's internal root certificate, exported by the installer."""
        return self.dir / "ca.crt"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The installer (``baton-onprem <args>``), its output captured."""
        return self.command(str(INSTALLER), *args, check=check)

    def command(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            args, env=self.env, cwd=self.dir, capture_output=True, text=True, check=False
        )
        if check and result.returncode != 0:
            raise failure(result)
        return result

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """docker compose (or docker-compose) on this stack's project."""
        if shutil.which("docker-compose") and not has_compose_plugin(self.env):
            base = ["docker-compose"]
        else:
            base = ["docker", "compose"]
        return self.command(*base, "--project-name", self.project, *args, check=check)

    def container(self, service: str) -> str:
        """The id of the (first) container of a service."""
        return self.compose("ps", "-q", service).stdout.split()[0]


def has_compose_plugin(env: dict[str, str]) -> bool:
    result = subprocess.run(
        ["docker", "compose", "version"], env=env, capture_output=True, check=False
    )
    return result.returncode == 0
