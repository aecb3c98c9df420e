"""Worker side of secrets: opening the transit envelope, substitution, masking."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import replace
from typing import Any

from kernel.secrets import (
    MASK,
    Masker,
    TransitKeys,
    execute_with_secrets,
    mask_log_event,
    queue_transit_key,
    seal_transit,
    substitute,
)
from kernel.wire.protocol import ExecutionResult, LogLine, TaskMessage

KEY = os.urandom(32)
KEYS = TransitKeys({"t1": KEY})
VALUE = 'p@ss w0rd/+"ü'


def message(
    spec: dict[str, Any], payload: dict[str, Any] | None = None, **extra: Any
) -> TaskMessage:
    base = TaskMessage(
        tenant_id="t-1", run_id="r", task_run_id="tr", task_name="x", attempt=1, spec=spec, **extra
    )
    if payload is None:
        return base
    key = queue_transit_key(KEY, base.tenant_id, base.queue)  # what the engine seals with
    return replace(base, secrets=seal_transit("t1", key, base, payload))


class Recorder:
    """An executor that records what it was given, logs it and returns it as output."""

    def __init__(self, error: str | None = None) -> None:
        self.seen: TaskMessage | None = None
        self.error = error

    async def execute(self, msg: TaskMessage, log: Any) -> ExecutionResult:
        self.seen = msg
        await log(LogLine("stdout", f"env={json.dumps(msg.spec.get('env'))}"))
        await log(LogLine("stdout", f"cmd={msg.spec.get('command')}"))
        if self.error:
            return ExecutionResult.failed(self.error.replace("{v}", VALUE))
        return ExecutionResult.ok({"echo": msg.spec.get("command"), VALUE: [VALUE, 1]})


async def run(
    msg: TaskMessage, executor: Recorder, keys: TransitKeys = KEYS
) -> tuple[ExecutionResult, list[str]]:
    lines: list[str] = []

    async def sink(line: LogLine) -> None:
        lines.append(line.line)

    return await execute_with_secrets(executor, msg, sink, keys), lines


SPEC = {"type": "shell", "command": "echo ${{ secrets.PW }}", "env": {"PW": "${{secrets.PW}}"}}


async def test_values_are_substituted_and_masked_everywhere() -> None:
    executor = Recorder()
    result, lines = await run(message(SPEC, {"values": {"PW": VALUE}}), executor)
    assert executor.seen is not None
    assert executor.seen.spec["command"] == f"echo {VALUE}"
    assert executor.seen.spec["env"] == {"PW": VALUE}
    assert executor.seen.secrets is None
    assert result.status == "succeeded"
    everything = json.dumps([result.output, result.error, lines])
    assert VALUE not in everything and json.dumps(VALUE)[1:-1] not in everything
    assert lines == [f'env={{"PW": "{MASK}"}}', f"cmd=echo {MASK}"]
    assert result.output == {"echo": f"echo {MASK}", MASK: [MASK, 1]}


async def test_the_error_is_masked() -> None:
    result, _ = await run(message(SPEC, {"values": {"PW": VALUE}}), Recorder(error="bad {v}"))
    assert result.error == f"bad {MASK}"


def test_encodings_and_lines_of_a_value_are_masked() -> None:
    pem = "-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34\n-----END KEY-----"
    masker = Masker([VALUE, pem])
    b64 = base64.b64encode(VALUE.encode()).decode()
    assert VALUE not in masker.text(f"url=https://x/?q={VALUE}")
    assert masker.text(b64) == MASK
    assert masker.text("p%40ss%20w0rd%2F%2B%22%C3%BC") == MASK
    assert masker.text("MIIBOgIBAAJBAKj34") == MASK
    assert Masker([]).text("unchanged") == "unchanged"


async def test_a_missing_secret_fails_the_attempt_clearly() -> None:
    executor = Recorder()
    result, lines = await run(message(SPEC, {"values": {}, "missing": ["PW"]}), executor)
    assert executor.seen is None  # nothing ran
    assert result.status == "failed" and result.reason == "error"
    assert result.error is not None and "PW is not defined in this tenant" in result.error
    assert lines == [result.error]


async def test_an_unreadable_secret_fails_the_attempt_clearly() -> None:
    result, _ = await run(message(SPEC, {"values": {}, "unreadable": ["PW"]}), Recorder())
    assert result.error is not None and "PW is not readable" in result.error


async def test_a_wrong_transit_key_fails_without_running() -> None:
    executor = Recorder()
    result, _ = await run(
        message(SPEC, {"values": {"PW": VALUE}}), executor, TransitKeys({"t1": os.urandom(32)})
    )
    assert executor.seen is None
    assert result.error is not None and "could not be decrypted" in result.error
    result, _ = await run(message(SPEC, {"values": {"PW": VALUE}}), executor, TransitKeys())
    assert result.error is not None and "no transit key" in result.error


async def test_an_envelope_is_bound_to_its_message() -> None:
    sealed = message(SPEC, {"values": {"PW": VALUE}})
    for moved in (
        replace(sealed, tenant_id="t-2"),
        replace(sealed, attempt=2),
        replace(sealed, queue="other"),
        replace(sealed, task_run_id="another"),
    ):
        result, _ = await run(moved, Recorder())
        assert result.error is not None and "could not be decrypted" in result.error


async def test_references_without_an_envelope_fail() -> None:
    result, _ = await run(message(SPEC), Recorder())
    assert result.error is not None and "carries none" in result.error


async def test_tasks_without_references_run_unchanged() -> None:
    executor = Recorder()
    plain = message({"type": "shell", "command": "echo hi"})
    result, lines = await run(plain, executor)
    assert executor.seen == plain and result.status == "succeeded"
    assert lines[1] == "cmd=echo hi"


def test_the_envelope_is_ciphertext_only() -> None:
    sealed = message(SPEC, {"values": {"PW": VALUE}})
    assert VALUE not in sealed.to_json()
    assert base64.b64encode(VALUE.encode()).decode() not in sealed.to_json()
    assert TaskMessage.from_json(sealed.to_json()) == sealed


async def test_the_process_log_is_masked_while_the_task_runs() -> None:
    """The worker's own log lines (structlog and the standard library, exception text
    included) pass through ``mask_log_event`` with the running attempt's masker."""
    seen: list[dict[str, Any]] = []

    class Logging(Recorder):
        async def execute(self, msg: TaskMessage, log: Any) -> ExecutionResult:
            event = {"event": "x", "host": msg.spec["env"]["PW"], "args": [msg.spec["command"]]}
            seen.append(dict(mask_log_event(None, "info", event)))
            return ExecutionResult.ok()

    await run(message(SPEC, {"values": {"PW": VALUE}}), Logging())
    assert seen == [{"event": "x", "host": MASK, "args": [f"echo {MASK}"]}]
    outside = {"event": "y", "host": VALUE}
    assert mask_log_event(None, "info", dict(outside)) == outside  # no attempt running


async def test_a_malformed_envelope_fails_the_attempt() -> None:
    for envelope in (5, "x", {"kid": "t1"}, {"kid": "t1", "nonce": "!", "ciphertext": "!"}):
        result, _ = await run(replace(message(SPEC), secrets=envelope), Recorder())  # type: ignore[arg-type]
        assert result.status == "failed" and result.error is not None


def test_substitution_reaches_every_field_of_each_task_type() -> None:
    ref, values = "${{ secrets.PW }}", {"PW": VALUE}
    docker = {"type": "docker", "image": "i", "command": ["sh", "-c", f"x {ref}"],
              "env": {"A": ref}}  # fmt: skip
    http = {"type": "http", "url": f"https://h/?q={ref}", "headers": {"X": f"Bearer {ref}"},
            "body": {"a": [{"b": ref}], "n": 1}}  # fmt: skip
    assert substitute(docker, values) == {
        **docker, "command": ["sh", "-c", f"x {VALUE}"], "env": {"A": VALUE}
    }  # fmt: skip
    assert substitute(http, values) == {
        **http, "url": f"https://h/?q={VALUE}", "headers": {"X": f"Bearer {VALUE}"},
        "body": {"a": [{"b": VALUE}], "n": 1},
    }  # fmt: skip
    python = {"type": "python", "function": "m:f", "kwargs": {"k": ref}}
    assert substitute(python, values) == python  # kwargs are never substituted
