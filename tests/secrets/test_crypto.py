"""Envelope encryption of secret values, and the settings that hold its keys."""

from __future__ import annotations

import base64
import os
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from backend.core.settings import Environment, Process, Settings, UnsafeSettings
from backend.secrets import crypto

TENANT = uuid.uuid4()


def key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_round_trip_under_a_fresh_data_key() -> None:
    config = settings(secrets_kek=key(), secrets_kek_id="k1")
    first = crypto.seal(config, TENANT, "DB_PASSWORD", "hunter2")
    second = crypto.seal(config, TENANT, "DB_PASSWORD", "hunter2")
    assert first.key_id == "k1"
    assert b"hunter2" not in first.value_ciphertext + first.wrapped_key
    assert first.value_ciphertext != second.value_ciphertext  # new data key and nonce each time
    assert first.wrapped_key != second.wrapped_key
    assert crypto.unseal(config, TENANT, "DB_PASSWORD", first) == "hunter2"


def test_wrong_kek_does_not_decrypt() -> None:
    sealed = crypto.seal(settings(secrets_kek=key(), secrets_kek_id="k1"), TENANT, "A", "v")
    with pytest.raises(crypto.SecretUnreadable):
        crypto.unseal(settings(secrets_kek=key(), secrets_kek_id="k1"), TENANT, "A", sealed)
    with pytest.raises(crypto.SecretUnreadable, match="'k1' is not configured"):
        crypto.unseal(settings(secrets_kek=key(), secrets_kek_id="k2"), TENANT, "A", sealed)


def test_ciphertext_cannot_move_to_another_tenant_or_name() -> None:
    config = settings(secrets_kek=key())
    sealed = crypto.seal(config, TENANT, "A", "v")
    with pytest.raises(crypto.SecretUnreadable):
        crypto.unseal(config, uuid.uuid4(), "A", sealed)
    with pytest.raises(crypto.SecretUnreadable):
        crypto.unseal(config, TENANT, "B", sealed)


def test_rewrap_moves_the_data_key_to_the_current_kek() -> None:
    old, new = key(), key()
    before = settings(secrets_kek=old, secrets_kek_id="old")
    sealed = crypto.seal(before, TENANT, "A", "value")
    after = settings(
        secrets_kek=new, secrets_kek_id="new", secrets_previous_keks=f'{{"old": "{old}"}}'
    )
    assert crypto.unseal(after, TENANT, "A", sealed) == "value"  # previous keys still unwrap
    moved = crypto.rewrap(after, TENANT, "A", sealed)
    assert moved is not None and moved.key_id == "new"
    assert moved.value_ciphertext == sealed.value_ciphertext  # only the data key is re-wrapped
    assert crypto.rewrap(after, TENANT, "A", moved) is None  # idempotent
    only_new = settings(secrets_kek=new, secrets_kek_id="new")
    assert crypto.unseal(only_new, TENANT, "A", moved) == "value"


@pytest.mark.parametrize(
    "values",
    [
        {"secrets_kek": "too-short"},
        {"secrets_kek": base64.b64encode(b"x" * 31).decode()},
        {"secrets_kek_id": "has space"},
        {"secrets_previous_keks": "[1]"},
        {"secrets_previous_keks": '{"old": "nope"}'},
        {"worker_transit_key": "not base64!"},
    ],
)
def test_malformed_keys_are_refused_everywhere(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        settings(**values)


PRODUCTION = {
    "environment": Environment.production,
    "jwt_secret": "p" * 40,
    "app_db_password": "not-the-dev-password",
}


def test_production_refuses_missing_or_shared_keys() -> None:
    """Nothing is generated in production: the engine (which unwraps and seals) refuses to
    start without either key, and the two keys may never be the same."""
    with pytest.raises(UnsafeSettings, match="BATON_SECRETS_KEK must be set"):
        settings(**PRODUCTION, worker_transit_key=key()).refuse_unsafe_for(Process.engine)
    with pytest.raises(UnsafeSettings, match="BATON_WORKER_TRANSIT_KEY must be set"):
        settings(**PRODUCTION, secrets_kek=key()).refuse_unsafe_for(Process.engine)
    shared = key()
    with pytest.raises(ValidationError, match="must differ"):
        settings(**PRODUCTION, secrets_kek=shared, worker_transit_key=shared)
    settings(**PRODUCTION, secrets_kek=key(), worker_transit_key=key()).refuse_unsafe_for(
        Process.api, Process.engine, Process.worker
    )


def test_development_keys_are_generated_per_installation(tmp_path: Path) -> None:
    """No key in the code: each data directory gets its own, kept (0600) across starts."""
    first = settings(environment=Environment.dev, data_dir=tmp_path / "a")
    again = settings(environment=Environment.dev, data_dir=tmp_path / "a")
    other = settings(environment=Environment.dev, data_dir=tmp_path / "b")
    assert first.secrets_kek == again.secrets_kek
    assert first.worker_transit_key == again.worker_transit_key
    assert first.secrets_kek != other.secrets_kek
    assert first.worker_transit_key != other.worker_transit_key
    assert first.secrets_kek != first.worker_transit_key
    assert len(base64.b64decode(first.secrets_kek)) == 32
    assert (tmp_path / "a" / "secrets-kek").stat().st_mode & 0o777 == 0o600
