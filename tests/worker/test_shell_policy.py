"""Safe defaults: shell and docker refused unless allowed, shell sandboxed unless turned off."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from backend.cli import dev_shell
from backend.core.settings import Settings
from backend.processes import worker_config
from tests.worker.helpers import LogCollector, MessageFactory
from worker.executors import ExecutorPolicy, executor_for
from worker.main import log_shell_policy
from worker.sandbox import probe

SHELL_SETTINGS = ("BATON_WORKER_ALLOW_SHELL", "BATON_WORKER_ALLOW_DOCKER", "BATON_WORKER_SANDBOX")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in SHELL_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def policy_of(settings: Settings) -> ExecutorPolicy:
    return worker_config(settings, queues=["default"], concurrency=1).policy


def test_defaults_refuse_shell_and_docker(clean_env: pytest.MonkeyPatch) -> None:
    policy = policy_of(Settings(_env_file=None))  # type: ignore[call-arg]
    assert (policy.allow_shell, policy.allow_docker, policy.sandbox) == (False, False, True)


async def test_a_default_worker_refuses_shell_tasks(
    clean_env: pytest.MonkeyPatch, logs: LogCollector, make_message: MessageFactory
) -> None:
    policy = policy_of(Settings(_env_file=None))  # type: ignore[call-arg]
    result = await executor_for("shell", policy).execute(make_message({"command": "true"}), logs)
    assert (result.status, result.reason) == ("failed", "unsupported")


def test_settings_are_passed_to_the_policy(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("BATON_WORKER_ALLOW_SHELL", "true")
    clean_env.setenv("BATON_WORKER_SANDBOX", "false")
    clean_env.setenv("BATON_WORKER_SANDBOX_MEMORY_MB", "300")
    clean_env.setenv("BATON_WORKER_SANDBOX_PROCESSES", "40")
    policy = policy_of(Settings(_env_file=None))  # type: ignore[call-arg]
    assert (policy.allow_shell, policy.sandbox) == (True, False)
    assert (policy.sandbox_limits.memory_mb, policy.sandbox_limits.processes) == (300, 40)


def test_dev_allows_shell_only_sandboxed(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("BATON_WORKER_SANDBOX", "false")
    settings = dev_shell(Settings(_env_file=None))  # type: ignore[call-arg]
    assert (settings.worker_allow_shell, settings.worker_sandbox) == (True, True)
    # An explicit choice stands.
    clean_env.setenv("BATON_WORKER_ALLOW_SHELL", "false")
    settings = dev_shell(Settings(_env_file=None))  # type: ignore[call-arg]
    assert settings.worker_allow_shell is False
    clean_env.setenv("BATON_WORKER_ALLOW_SHELL", "true")
    settings = dev_shell(Settings(_env_file=None))  # type: ignore[call-arg]
    assert (settings.worker_allow_shell, settings.worker_sandbox) == (True, False)


async def test_worker_start_says_how_shell_is_treated(monkeypatch: pytest.MonkeyPatch) -> None:
    with capture_logs() as logged:
        await log_shell_policy(ExecutorPolicy(allow_shell=False))
        await log_shell_policy(ExecutorPolicy(allow_shell=True, sandbox=False))
        monkeypatch.setattr(probe, "_probed", ["bwrap is not installed"])
        await log_shell_policy(ExecutorPolicy(allow_shell=True))
    events = [(entry["event"], entry["log_level"]) for entry in logged]
    assert events == [
        ("worker.shell.refused", "info"),
        ("worker.shell.unsandboxed", "warning"),
        ("worker.sandbox.unavailable", "error"),
    ]
    assert logged[2]["reason"] == "bwrap is not installed"
    assert logged[2]["setting"] == "BATON_WORKER_SANDBOX"
