"""Envelope encryption of secret values (AES-256-GCM, ``cryptography``).

Each value gets a fresh random 256-bit data key; the value is encrypted with it and the
data key is wrapped by the key-encryption key (KEK) from settings. The tenant id and the
secret's name are associated data of both layers, so a ciphertext copied to another
tenant's or another name's row does not decrypt. Rotating the KEK re-wraps the small data
keys only (:func:`rewrap`); values are never re-encrypted for it.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from backend.core.settings import Settings

NONCE_BYTES = 12
VERSION = "v1"


class SecretUnreadable(Exception):
    """A stored value cannot be decrypted: unknown key id, wrong key or altered row."""


@dataclass(frozen=True)
class Sealed:
    value_ciphertext: bytes
    value_nonce: bytes
    wrapped_key: bytes
    wrapped_key_nonce: bytes
    key_id: str


def _value_aad(tenant_id: uuid.UUID, name: str) -> bytes:
    return "\x1f".join(("baton-secret", VERSION, str(tenant_id), name)).encode()


def _key_aad(tenant_id: uuid.UUID, name: str, key_id: str) -> bytes:
    return "\x1f".join(("baton-data-key", VERSION, str(tenant_id), name, key_id)).encode()


def _wrap(settings: Settings, tenant_id: uuid.UUID, name: str, data_key: bytes) -> Sealed:
    key_id = settings.secrets_kek_id
    nonce = os.urandom(NONCE_BYTES)
    wrapped = AESGCM(settings.secrets_keks[key_id]).encrypt(
        nonce, data_key, _key_aad(tenant_id, name, key_id)
    )
    return Sealed(b"", b"", wrapped, nonce, key_id)


def _unwrap(settings: Settings, tenant_id: uuid.UUID, name: str, sealed: Sealed) -> bytes:
    kek = settings.secrets_keks.get(sealed.key_id)
    if kek is None:
        raise SecretUnreadable(f"key-encryption key {sealed.key_id!r} is not configured")
    try:
        return AESGCM(kek).decrypt(
            sealed.wrapped_key_nonce, sealed.wrapped_key, _key_aad(tenant_id, name, sealed.key_id)
        )
    except InvalidTag:
        raise SecretUnreadable("the data key does not unwrap with the configured key") from None


def seal(settings: Settings, tenant_id: uuid.UUID, name: str, value: str) -> Sealed:
    """Encrypt ``value`` under a new data key wrapped by the current KEK."""
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(data_key).encrypt(nonce, value.encode(), _value_aad(tenant_id, name))
    wrapped = _wrap(settings, tenant_id, name, data_key)
    return Sealed(ciphertext, nonce, wrapped.wrapped_key, wrapped.wrapped_key_nonce, wrapped.key_id)


def unseal(settings: Settings, tenant_id: uuid.UUID, name: str, sealed: Sealed) -> str:
    """The value, or :class:`SecretUnreadable`."""
    data_key = _unwrap(settings, tenant_id, name, sealed)
    try:
        plaintext = AESGCM(data_key).decrypt(
            sealed.value_nonce, sealed.value_ciphertext, _value_aad(tenant_id, name)
        )
    except InvalidTag:
        raise SecretUnreadable("the value does not decrypt with its data key") from None
    return plaintext.decode()


def rewrap(settings: Settings, tenant_id: uuid.UUID, name: str, sealed: Sealed) -> Sealed | None:
    """``sealed`` with its data key wrapped by the current KEK; None when it already is."""
    if sealed.key_id == settings.secrets_kek_id:
        return None
    wrapped = _wrap(settings, tenant_id, name, _unwrap(settings, tenant_id, name, sealed))
    return Sealed(
        sealed.value_ciphertext,
        sealed.value_nonce,
        wrapped.wrapped_key,
        wrapped.wrapped_key_nonce,
        wrapped.key_id,
    )
