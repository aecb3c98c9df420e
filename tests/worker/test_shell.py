"""Shell executor: real /bin/sh processes, their output, exit codes and process-group cleanup."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
from pathlib import Path

import pytest

from kernel.wire.protocol import LogLine
from tests.fixtures.waiting import eventually
from tests.worker.helpers import LogCollector, MessageFactory
from tests.worker.processes import running, sleeper
from worker.executors import (
    DockerExecutor,
    ExecutorPolicy,
    HttpExecutor,
    PythonExecutor,
    ShellExecutor,
    UnsupportedExecutor,
    executor_for,
)
from worker.executors.base import MAX_LINE_BYTES, TRUNCATED_MARK
from worker.sandbox.probe import unavailable_reason

POLICY = ExecutorPolicy(kill_grace_seconds=0.5)
HOST = ExecutorPolicy(kill_grace_seconds=0.5, sandbox=False)


@pytest.fixture(params=["sandbox", "host"])
async def policy(request: pytest.FixtureRequest) -> ExecutorPolicy:
    """The executor's behaviour, in the sandbox (the default) and without it."""
    if request.param == "host":
        return HOST
    reason = await unavailable_reason()
    if reason is not None:
        pytest.skip(f"the sandbox is unavailable here: {reason}")
    return POLICY


async def test_success_streams_and_reads_output(
    logs: LogCollector, make_message: MessageFactory, policy: ExecutorPolicy
) -> None:
    command = 'echo hello; echo oops >&2; printf \'{"rows": 3, "ok": true}\' > "$BATON_OUTPUT"'
    result = await ShellExecutor(policy).execute(make_message({"command": command}), logs)
    assert result.status == "succeeded", result
    assert result.output == {"rows": 3, "ok": True}
    assert result.exit_code == 0
    assert logs.text("stdout") == ["hello"]
    assert logs.text("stderr") == ["oops"]


async def test_environment(
    logs: LogCollector,
    make_message: MessageFactory,
    policy: ExecutorPolicy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    command = (
        'printf \'{"run": "%s", "task": "%s", "attempt": "%s", "tenant": "%s", '
        '"params": %s, "item": "%s", "mine": "%s", "home": "%s", "pwd": "%s", '
        '"secret": "%s"}\' "$BATON_RUN_ID" "$BATON_TASK" "$BATON_ATTEMPT" "$BATON_TENANT_ID" '
        '"$BATON_PARAMS" "$BATON_ITEM" "$MINE" "$HOME" "$(pwd)" "${WORKER_SECRET:-unset}" '
        '> "$BATON_OUTPUT"'
    )
    monkeypatch.setenv("WORKER_SECRET", "must-not-leak")  # undone after the test, always
    message = make_message(
        {"command": command, "env": {"MINE": "yes", "BATON_RUN_ID": "spoofed"}},
        attempt=2,
        item="a.csv",
    )
    result = await ShellExecutor(policy).execute(message, logs)
    assert result.status == "succeeded", result
    out = result.output
    assert out["run"] == "run-1"  # the spec cannot override BATON_* variables
    assert (out["task"], out["attempt"], out["tenant"]) == ("step", "2", "tenant-1")
    assert out["params"] == {"day": "2024-01-01"}
    assert out["item"] == "a.csv"  # a string item is passed as is, not JSON-quoted
    assert out["mine"] == "yes"
    assert out["secret"] == "unset"  # the worker's own environment is not inherited
    assert out["home"] == out["pwd"]
    assert Path(out["pwd"]).name.startswith("baton-shell-")
    assert not Path(out["pwd"]).exists()  # the temp dir is removed afterwards


async def test_item_json_and_absent(make_message: MessageFactory) -> None:
    command = 'echo "${BATON_ITEM-absent}"'
    executor = ShellExecutor(POLICY)
    with_item, without = LogCollector(), LogCollector()
    await executor.execute(make_message({"command": command}, item={"n": 1}), with_item)
    await executor.execute(make_message({"command": command}), without)
    assert with_item.text("stdout") == ['{"n":1}']
    assert without.text("stdout") == ["absent"]


async def test_nonzero_exit(
    logs: LogCollector, make_message: MessageFactory, policy: ExecutorPolicy
) -> None:
    result = await ShellExecutor(policy).execute(make_message({"command": "echo x; exit 3"}), logs)
    assert result.status == "failed"
    assert result.reason == "error"
    assert result.error == "exit code 3"
    assert result.exit_code == 3


async def test_killed_by_signal(
    logs: LogCollector, make_message: MessageFactory, policy: ExecutorPolicy
) -> None:
    result = await ShellExecutor(policy).execute(make_message({"command": "kill -9 $$"}), logs)
    assert result.status == "failed"
    assert result.exit_code == -signal.SIGKILL
    assert result.error is not None and "SIGKILL" in result.error


@pytest.mark.parametrize(
    ("content", "status", "output"),
    [
        ("", "succeeded", None),
        ("   \n", "succeeded", None),
        ("[1, 2]", "succeeded", [1, 2]),
        ("{not json", "failed", None),
    ],
)
async def test_output_file(
    logs: LogCollector,
    make_message: MessageFactory,
    policy: ExecutorPolicy,
    content: str,
    status: str,
    output: object,
) -> None:
    command = f"printf '%s' '{content}' > \"$BATON_OUTPUT\""
    result = await ShellExecutor(policy).execute(make_message({"command": command}), logs)
    assert result.status == status, result
    assert result.output == output
    if status == "failed":
        assert result.error is not None and "not valid JSON" in result.error


async def test_no_output_file(logs: LogCollector, make_message: MessageFactory) -> None:
    result = await ShellExecutor(POLICY).execute(make_message({"command": "true"}), logs)
    assert result.status == "succeeded"
    assert result.output is None


@pytest.mark.parametrize(
    ("command", "fragment"),
    [
        ('mkfifo "$BATON_OUTPUT"', "not a regular file"),  # would block a naive open()
        ('ln -s /etc/hostname "$BATON_OUTPUT"', "cannot read BATON_OUTPUT"),
        ('mkdir "$BATON_OUTPUT"', "cannot read BATON_OUTPUT"),
    ],
)
async def test_output_must_be_a_regular_file(
    logs: LogCollector,
    make_message: MessageFactory,
    policy: ExecutorPolicy,
    command: str,
    fragment: str,
) -> None:
    result = await asyncio.wait_for(
        ShellExecutor(policy).execute(make_message({"command": command}), logs), timeout=10
    )
    assert result.status == "failed"
    assert result.error is not None and fragment in result.error


async def test_output_too_large(logs: LogCollector, make_message: MessageFactory) -> None:
    policy = ExecutorPolicy(max_output_bytes=100)
    command = 'printf \'"%s"\' "$(head -c 500 /dev/zero | tr \'\\0\' a)" > "$BATON_OUTPUT"'
    result = await ShellExecutor(policy).execute(make_message({"command": command}), logs)
    assert result.status == "failed"
    assert result.error is not None and "exceeds" in result.error


async def test_long_lines_are_capped(logs: LogCollector, make_message: MessageFactory) -> None:
    command = "head -c 40000 /dev/zero | tr '\\0' a; echo; echo next; printf 'no newline'"
    result = await ShellExecutor(POLICY).execute(make_message({"command": command}), logs)
    assert result.status == "succeeded"
    first, *rest = logs.text("stdout")
    assert first == "a" * MAX_LINE_BYTES + TRUNCATED_MARK
    assert rest == ["next", "no newline"]


async def test_log_limit_drops_lines_with_one_note(
    logs: LogCollector, make_message: MessageFactory
) -> None:
    policy = ExecutorPolicy(max_log_bytes=1000)
    command = "i=0; while [ $i -lt 200 ]; do echo line-$i-padding-padding-padding; i=$((i+1)); done"
    result = await ShellExecutor(policy).execute(make_message({"command": command}), logs)
    assert result.status == "succeeded"
    stdout = logs.text("stdout")
    assert 10 < len(stdout) < 200
    assert sum(len(line) + 1 for line in stdout) <= 1000
    assert stdout[0] == "line-0-padding-padding-padding"
    notes = logs.text("system")
    assert len(notes) == 1 and "log limit" in notes[0]


async def test_lines_stream_while_running_and_cancel_kills(
    logs: LogCollector, make_message: MessageFactory, policy: ExecutorPolicy
) -> None:
    sleep, marker = sleeper()
    message = make_message({"command": f"echo started; {sleep}"})
    task = asyncio.create_task(ShellExecutor(policy).execute(message, logs))
    await logs.wait_for(lambda line: line.line == "started")  # seen while still running
    await eventually(lambda: bool(running(marker)), what="the task's sleep runs")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert running(marker) == []


async def test_timeout_kills_grandchildren(
    logs: LogCollector, make_message: MessageFactory, policy: ExecutorPolicy
) -> None:
    sleep, marker = sleeper()
    message = make_message({"command": f"echo started; {sleep} & {sleep}; wait"})
    task = asyncio.create_task(ShellExecutor(policy).execute(message, logs))
    await eventually(lambda: len(running(marker)) == 2, what="both sleeps run")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(task, timeout=0.5)
    assert running(marker) == []


async def test_sigterm_ignored_gets_sigkill(
    logs: LogCollector, make_message: MessageFactory, policy: ExecutorPolicy
) -> None:
    policy = dataclasses.replace(policy, kill_grace_seconds=0.3)
    sleep, marker = sleeper()
    message = make_message({"command": f"trap '' TERM; {sleep} & {sleep}; wait"})
    task = asyncio.create_task(ShellExecutor(policy).execute(message, logs))
    await eventually(lambda: len(running(marker)) == 2, what="both sleeps run")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(task, timeout=0.5)
    assert running(marker) == []


async def test_background_leftovers_are_terminated(
    logs: LogCollector, make_message: MessageFactory, policy: ExecutorPolicy
) -> None:
    """The shell exits while a background child still holds stdout: no hang, no leftover."""
    sleep, marker = sleeper()
    message = make_message({"command": f"{sleep} & exit 0"})
    result = await asyncio.wait_for(ShellExecutor(policy).execute(message, logs), timeout=15)
    assert result.status == "succeeded"
    assert running(marker) == []
    if not policy.sandbox:  # a sandbox is torn down with its shell: nothing is left to note
        assert any("left running" in note for note in logs.text("system"))


async def test_leftovers_in_a_session_of_their_own_are_killed(
    logs: LogCollector, make_message: MessageFactory, policy: ExecutorPolicy
) -> None:
    """A background process that left the task's process group does not outlive the task."""
    sleep, marker = sleeper()
    message = make_message({"command": f'setsid sh -c "{sleep} &"; {sleep} & exit 0'})
    result = await asyncio.wait_for(ShellExecutor(policy).execute(message, logs), timeout=15)
    assert result.status == "succeeded"
    assert running(marker) == []


async def test_failing_sink_does_not_break_the_task(make_message: MessageFactory) -> None:
    async def broken(line: LogLine) -> None:
        raise ConnectionError("redis is away")

    message = make_message({"command": "echo a; echo b >&2; exit 4"})
    result = await ShellExecutor(POLICY).execute(message, broken)
    assert (result.status, result.exit_code) == ("failed", 4)


async def test_refused_when_not_allowed(logs: LogCollector, make_message: MessageFactory) -> None:
    policy = ExecutorPolicy(allow_shell=False)
    result = await ShellExecutor(policy).execute(make_message({"command": "touch /tmp/x"}), logs)
    assert (result.status, result.reason) == ("failed", "unsupported")


@pytest.mark.parametrize(
    "spec",
    [{}, {"command": ""}, {"command": ["ls"]}, {"command": "true", "env": {"A": {"b": 1}}}],
)
async def test_bad_spec(logs: LogCollector, make_message: MessageFactory, spec: dict) -> None:
    result = await ShellExecutor(POLICY).execute(make_message(spec), logs)
    assert (result.status, result.reason) == ("failed", "error")
    assert result.error and result.error.startswith("spec.")


def test_executor_for() -> None:
    policy = ExecutorPolicy()
    assert isinstance(executor_for("shell", policy), ShellExecutor)
    assert isinstance(executor_for("http", policy), HttpExecutor)
    assert isinstance(executor_for("python", policy), PythonExecutor)
    assert isinstance(executor_for("docker", policy), DockerExecutor)
    assert isinstance(executor_for("ftp", policy), UnsupportedExecutor)


async def test_unknown_type_fails_unsupported(
    logs: LogCollector, make_message: MessageFactory
) -> None:
    result = await executor_for("telnet", ExecutorPolicy()).execute(make_message({}), logs)
    assert (result.status, result.reason) == ("failed", "unsupported")
    assert result.error is not None and "telnet" in result.error
    assert json.dumps(result.error)
