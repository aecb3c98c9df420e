"""The credential string: everything a tenant-hosted worker needs, in one opaque value."""

from __future__ import annotations

import uuid

import pytest

from kernel.credential import CredentialError, WorkerCredential, secret_hash


def test_a_credential_round_trips_with_its_optional_fields() -> None:
    credential = WorkerCredential(
        tenant_id=str(uuid.uuid4()),
        queue="builds",
        redis_user="bw-1",
        redis_password="p@ss/word:with%odd chars",
        redis_url="redis://redis.example:6380/2",
        transit_keys={"t1": "a2V5"},
    )
    text = credential.encode()
    assert text.startswith("bwc_") and "p@ss" not in text
    assert WorkerCredential.parse(f"  {text}\n") == credential
    assert credential.password_hash() == secret_hash("p@ss/word:with%odd chars")


def test_its_connection_url_carries_its_own_user_whatever_the_url_had() -> None:
    credential = WorkerCredential(str(uuid.uuid4()), "q", "bw-1", "p@ss word", "redis://h:1/3")
    assert credential.connection_url(None) == "redis://bw-1:p%40ss%20word@h:1/3"
    configured = "redis://baton-engine:engine-secret@other:6379/0"
    assert credential.connection_url(configured) == "redis://bw-1:p%40ss%20word@other:6379/0"
    with pytest.raises(CredentialError, match="BATON_REDIS_URL"):
        WorkerCredential(str(uuid.uuid4()), "q", "u", "p").connection_url(None)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("bat_abc", "not a Baton worker credential"),
        ("bwc_!!!", "damaged"),
        ("bwc_" + "A" * 5000, "not a Baton worker credential"),
        (WorkerCredential("not-a-uuid", "q", "u", "p").encode(), "incomplete"),
        (WorkerCredential(str(uuid.uuid4()), "", "u", "p").encode(), "incomplete"),
    ],
)
def test_a_damaged_credential_is_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(CredentialError, match=reason):
        WorkerCredential.parse(text)
