"""Tenant secrets on the worker: references, the transit envelope, substitution, masking.

A job spec names a secret as ``${{ secrets.NAME }}``; job versions keep only that
reference. At dispatch the engine resolves the references of one task and puts their
values in the message *sealed for the tenant's queue* (:func:`seal_transit`, AES-256-GCM
under a per-(tenant, queue) key derived by HKDF from the pool's transit key,
:func:`queue_transit_key`, bound to the tenant, queue, task run and attempt), so a Redis
reader without that key sees only ciphertext. The engine holds the pool key, and so does
the API (it derives the queue keys it puts in tenant-hosted workers' credentials) and the
shared pool (it derives each queue's key itself); a tenant-hosted worker holds only its
queue's derived keys. Just before execution the worker opens
the envelope, substitutes the values into the fields that may hold references
(:data:`SECRET_FIELDS`) and masks every value - raw, as it appears inside a JSON string,
URL-encoded and base64-encoded - as ``***`` in log lines, the error and the output.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Iterator, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from urllib.parse import quote

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kernel.wire.protocol import ExecutionResult, LogLine, LogSink, TaskMessage


class Executor(Protocol):
    """What :func:`execute_with_secrets` runs: the worker's executors
    (``worker.executors.base.Executor``), named here so the kernel imports no worker code."""

    async def execute(self, message: TaskMessage, log: LogSink) -> ExecutionResult: ...


SECRET_NAME_PATTERN = r"^[A-Z_][A-Z0-9_]{0,63}$"
_NAME = re.compile(SECRET_NAME_PATTERN)
# ``${{ secrets.NAME }}`` (spaces inside the braces optional).
REFERENCE = re.compile(r"\$\{\{\s*secrets\.([A-Z_][A-Z0-9_]{0,63})\s*\}\}")
# Anything that means to be a secret reference, well-formed or not (checked at save time).
REFERENCE_LIKE = re.compile(r"\$\{\{\s*secrets\b[^}]*\}?\}?")
# Where a task may use references, per task type: these fields (strings, string lists, and
# the values of objects, nested for an http body) are what the worker substitutes.
SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    "shell": ("command", "env"),
    "http": ("url", "headers", "body"),
    "docker": ("command", "env"),
    "python": ("env",),
}
MASK = "***"
TRANSIT_VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12


def is_secret_name(name: str) -> bool:
    return bool(_NAME.match(name))


def references_in(value: Any) -> set[str]:
    """Every secret name referenced in the strings of ``value`` (nested lists/objects)."""
    return {match.group(1) for text in _strings(value) for match in REFERENCE.finditer(text)}


def referenced_names(spec: dict[str, Any]) -> set[str]:
    """The secrets a task spec uses, in the fields where references are substituted."""
    fields = SECRET_FIELDS.get(str(spec.get("type", "")), ())
    return set().union(*(references_in(spec.get(name)) for name in fields))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


# ---------------------------------------------------------------------- transit envelope


@dataclass(frozen=True)
class TransitKeys:
    """The keys a worker can open envelopes with, by key id (the current one and previous ones,
    accepted during a rotation). A shared-pool worker holds the pool keys and derives each
    tenant queue's key from them; a tenant-hosted worker holds only its own queue's keys, from
    its credential (``per_queue``)."""

    keys: dict[str, bytes] = field(default_factory=dict)
    per_queue: bool = False


def queue_transit_key(pool_key: bytes, tenant_id: str, queue: str) -> bytes:
    """The key sealing the secrets of one tenant's queue, derived from the pool key
    (HKDF-SHA256): a tenant-hosted worker's credential carries its queue's key, never the
    pool key that opens every other tenant's envelopes."""
    info = "\x1f".join(("baton-transit-queue", TRANSIT_VERSION, tenant_id, queue)).encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(pool_key)


def transit_associated_data(message: TaskMessage) -> bytes:
    """What an envelope is bound to: it cannot be replayed into another tenant's, queue's,
    task's or attempt's message."""
    parts = ("baton-transit", TRANSIT_VERSION, message.tenant_id, message.queue,
             message.task_run_id, str(message.attempt))  # fmt: skip
    return "\x1f".join(parts).encode()


def seal_transit(
    key_id: str, key: bytes, message: TaskMessage, payload: dict[str, Any]
) -> dict[str, str]:
    """Encrypt ``payload`` (JSON) for the worker pool; the result goes in ``message.secrets``."""
    nonce = os.urandom(NONCE_BYTES)
    plaintext = json.dumps(payload, separators=(",", ":")).encode()
    sealed = AESGCM(key).encrypt(nonce, plaintext, transit_associated_data(message))
    return {
        "v": TRANSIT_VERSION,
        "kid": key_id,
        "nonce": base64.b64encode(nonce).decode(),
        "ciphertext": base64.b64encode(sealed).decode(),
    }


class SecretsUnavailable(Exception):
    """The task's secrets cannot be given to it; the message is the attempt's error."""


def worker_transit_key(keys: TransitKeys, tenant_id: str, queue: str, key_id: str) -> bytes | None:
    """The key this worker opens ``tenant_id``/``queue`` envelopes sealed under ``key_id``
    with: its own queue key (tenant-hosted), or the one derived from the pool key."""
    key = keys.keys.get(key_id)
    if key is None or keys.per_queue:
        return key
    return queue_transit_key(key, tenant_id, queue)


def open_transit(message: TaskMessage, keys: TransitKeys) -> dict[str, str]:
    """The secret values sealed into ``message``, or :class:`SecretsUnavailable`."""
    envelope: dict[str, Any] = message.secrets if isinstance(message.secrets, dict) else {}
    key = worker_transit_key(keys, message.tenant_id, message.queue, str(envelope.get("kid")))
    if key is None:
        raise SecretsUnavailable(
            "this worker has no transit key to open the task's secrets "
            f"(key id {str(envelope.get('kid'))[:64]!r})"
        )
    try:
        nonce = base64.b64decode(str(envelope["nonce"]), validate=True)
        sealed = base64.b64decode(str(envelope["ciphertext"]), validate=True)
        plaintext = AESGCM(key).decrypt(nonce, sealed, transit_associated_data(message))
        payload = json.loads(plaintext)
        if not isinstance(payload, dict):
            raise ValueError("not an object")
    except (KeyError, ValueError, binascii.Error, InvalidTag):
        raise SecretsUnavailable(
            "the task's secrets could not be decrypted (wrong transit key or altered message)"
        ) from None
    for kind, what in (("missing", "not defined"), ("unreadable", "not readable")):
        names = sorted(str(n) for n in payload.get(kind) or [])
        if names:
            hint = (
                "create it under Settings > Secrets"
                if kind == "missing"
                else "its key is not among the platform's keys"
            )
            raise SecretsUnavailable(
                f"secret{'s' if len(names) > 1 else ''} {', '.join(names)} "
                f"{'are' if len(names) > 1 else 'is'} {what} in this tenant ({hint})"
            )
    values = payload.get("values") or {}
    return {str(name): str(value) for name, value in values.items()}


# --------------------------------------------------------------------------- substitution


def substitute(spec: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    """``spec`` with every reference in its secret fields replaced by the value."""
    resolved = dict(spec)
    for name in SECRET_FIELDS.get(str(spec.get("type", "")), ()):
        if name in resolved:
            resolved[name] = _substitute(resolved[name], values)
    return resolved


def _substitute(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return REFERENCE.sub(lambda m: values.get(m.group(1), m.group(0)), value)
    if isinstance(value, list):
        return [_substitute(item, values) for item in value]
    if isinstance(value, dict):
        return {key: _substitute(item, values) for key, item in value.items()}
    return value


# -------------------------------------------------------------------------------- masking


class Masker:
    """Replaces every secret value, and its simple encodings, with ``***``."""

    def __init__(self, values: list[str]) -> None:
        forms: set[str] = set()
        for value in values:
            if not value:
                continue
            forms.add(value)
            forms.add(json.dumps(value)[1:-1])  # as it appears inside a JSON string
            forms.add(quote(value, safe=""))
            encoded = base64.b64encode(value.encode()).decode()
            forms.update((encoded, encoded.rstrip("=")))  # padded, and cut into a longer text
            # A multi-line value (a PEM key) reaches the log one line at a time.
            forms.update(line for line in value.splitlines() if len(line.strip()) >= 4)
        # Longest first, so a value that contains another is masked whole.
        ordered = sorted((f for f in forms if f), key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(f) for f in ordered)) if ordered else None

    def text(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern is not None else text

    def value(self, value: Any) -> Any:
        """``value`` (JSON data) with every string, object keys included, masked."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(item) for item in value]
        if isinstance(value, dict):
            return {self.text(str(key)): self.value(item) for key, item in value.items()}
        return value

    def result(self, result: ExecutionResult) -> ExecutionResult:
        return replace(
            result,
            error=self.text(result.error) if result.error is not None else None,
            output=self.value(result.output),
        )


@dataclass(frozen=True)
class Prepared:
    """A message ready for its executor: secrets substituted, and the masker to apply."""

    message: TaskMessage
    masker: Masker


def prepare(message: TaskMessage, keys: TransitKeys) -> Prepared:
    """Open the message's secrets and substitute them, or :class:`SecretsUnavailable`."""
    names = referenced_names(message.spec)
    if not names:
        return Prepared(message, Masker([]))
    if message.secrets is None:
        raise SecretsUnavailable("the task uses secrets but the message carries none")
    values = open_transit(message, keys)
    absent = sorted(names - values.keys())
    if absent:
        raise SecretsUnavailable(f"secrets {', '.join(absent)} are missing from the message")
    resolved = replace(message, spec=substitute(message.spec, values), secrets=None)
    return Prepared(resolved, Masker(list(values.values())))


# The running attempt's masker, for the worker's own log lines (see mask_log_event).
_CURRENT_MASKER: ContextVar[Masker | None] = ContextVar("baton_secret_masker", default=None)


def mask_log_event(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask the running attempt's secrets in the process's own log
    lines (an executor's warning, an exception's text), not only in the task's log."""
    masker = _CURRENT_MASKER.get()
    if masker is None:
        return event_dict
    for key, value in event_dict.items():
        if isinstance(value, str | list | dict):
            event_dict[key] = masker.value(value)
    return event_dict


def masked_line(masker: Masker, line: LogLine) -> LogLine:
    return LogLine(line.stream, masker.text(line.line))


async def execute_with_secrets(
    executor: Executor, message: TaskMessage, log: LogSink, keys: TransitKeys
) -> ExecutionResult:
    """Run ``message`` on ``executor`` with its secrets substituted and masked everywhere
    the attempt reports (log lines, error, output). A secret that cannot be given to the
    task fails the attempt with a clear error; nothing runs."""
    try:
        prepared = prepare(message, keys)
    except SecretsUnavailable as error:
        await log(LogLine("system", str(error)))
        return ExecutionResult.failed(str(error))
    masker = prepared.masker

    async def masked(line: LogLine) -> None:
        await log(masked_line(masker, line))

    token = _CURRENT_MASKER.set(masker)  # tasks the executor starts inherit it
    try:
        return masker.result(await executor.execute(prepared.message, masked))
    finally:
        _CURRENT_MASKER.reset(token)
