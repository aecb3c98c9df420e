"""Secrets: create, list, read metadata, set a value, delete, re-wrap under a new KEK.

Values are write-only: the service takes them and encrypts them at once
(:mod:`backend.secrets.crypto`); nothing here returns, logs or audits a value. The only
reader of values is the dispatcher (:mod:`backend.secrets.dispatch`), which seals them for
the worker pool.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import structlog
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.audit import service as audit
from backend.core.errors import Conflict, NotFound
from backend.core.models import utcnow
from backend.core.principal import SYSTEM_ACTOR, Principal
from backend.core.settings import Settings
from backend.secrets import crypto
from backend.secrets.models import Secret
from backend.secrets.repository import SecretRepository
from kernel.secrets import is_secret_name

log = structlog.get_logger(__name__)


def _store(secret: Secret, sealed: crypto.Sealed) -> None:
    secret.value_ciphertext = sealed.value_ciphertext
    secret.value_nonce = sealed.value_nonce
    secret.wrapped_key = sealed.wrapped_key
    secret.wrapped_key_nonce = sealed.wrapped_key_nonce
    secret.key_id = sealed.key_id


def sealed_of(secret: Secret) -> crypto.Sealed:
    return crypto.Sealed(
        secret.value_ciphertext,
        secret.value_nonce,
        secret.wrapped_key,
        secret.wrapped_key_nonce,
        secret.key_id,
    )


async def create_secret(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    *,
    name: str,
    value: str,
    description: str = "",
) -> Secret:
    """Create a secret in the principal's tenant (409 if the name is taken)."""
    repo = SecretRepository(session, principal.tenant_id)
    if await repo.get(name=name) is not None:
        raise Conflict(f"A secret named {name} already exists; update it instead")
    sealed = crypto.seal(settings, principal.tenant_id, name, value)
    secret = Secret(
        tenant_id=principal.tenant_id,
        name=name,
        description=description,
        value_ciphertext=sealed.value_ciphertext,
        value_nonce=sealed.value_nonce,
        wrapped_key=sealed.wrapped_key,
        wrapped_key_nonce=sealed.wrapped_key_nonce,
        key_id=sealed.key_id,
        created_by=principal.user_id,
        updated_by=principal.user_id,
    )
    try:
        async with session.begin_nested():  # a concurrent create of the same name
            await repo.add(secret)
    except IntegrityError:
        raise Conflict(f"A secret named {name} already exists; update it instead") from None
    await audit.record_for(
        session, principal, "secret.created", target_type="secret", target_id=secret.id,
        details={"name": name},
    )  # fmt: skip
    return secret


async def list_secrets(session: AsyncSession, principal: Principal) -> list[Secret]:
    """The tenant's secrets by name (metadata only)."""
    return await SecretRepository(session, principal.tenant_id).list_all()


async def get_secret(session: AsyncSession, principal: Principal, name: str) -> Secret:
    """One secret's metadata; another tenant's secret is not found."""
    if not is_secret_name(name):  # not a name any secret can have (nor one to query with)
        raise NotFound("Secret not found")
    secret = await SecretRepository(session, principal.tenant_id).get(name=name)
    if secret is None:
        raise NotFound("Secret not found")
    return secret


async def update_secret(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    name: str,
    *,
    value: str | None,
    description: str | None,
) -> Secret:
    """Set a new value (under a new data key) and/or description."""
    secret = await get_secret(session, principal, name)
    changed = []
    if value is not None:
        _store(secret, crypto.seal(settings, principal.tenant_id, name, value))
        changed.append("value")
    if description is not None and description != secret.description:
        secret.description = description
        changed.append("description")
    secret.updated_at = utcnow()
    secret.updated_by = principal.user_id
    session.add(secret)
    await session.flush()
    await audit.record_for(
        session, principal, "secret.updated", target_type="secret", target_id=secret.id,
        details={"name": name, "changed": changed},
    )  # fmt: skip
    return secret


async def delete_secret(session: AsyncSession, principal: Principal, name: str) -> None:
    """Delete a secret; tasks that still reference it fail at dispatch with a clear error."""
    secret = await get_secret(session, principal, name)
    await SecretRepository(session, principal.tenant_id).delete(secret)
    await audit.record_for(
        session, principal, "secret.deleted", target_type="secret", target_id=secret.id,
        details={"name": name},
    )  # fmt: skip


@dataclass
class RotationReport:
    rewrapped: int = 0
    current: int = 0
    failed: int = 0


async def rewrap_tenant(
    session: AsyncSession, settings: Settings, tenant_id: uuid.UUID, report: RotationReport
) -> None:
    """Re-wrap every data key of one tenant (already scoped) with the current KEK, and
    audit it when anything moved. Idempotent: keys already under it are counted, not
    touched."""
    rewrapped = []
    for secret in await SecretRepository(session, tenant_id).list_all():
        try:
            sealed = crypto.rewrap(settings, tenant_id, secret.name, sealed_of(secret))
        except crypto.SecretUnreadable as error:
            report.failed += 1
            log.error("secrets.rewrap_failed", tenant_id=str(tenant_id), secret=secret.name,
                      key_id=secret.key_id, error=str(error))  # fmt: skip
            continue
        if sealed is None:
            report.current += 1
            continue
        _store(secret, sealed)
        session.add(secret)
        rewrapped.append(secret.name)
    report.rewrapped += len(rewrapped)
    await session.flush()
    if rewrapped:
        await audit.record(
            session, tenant_id=tenant_id, actor=SYSTEM_ACTOR, action="secret.key_rotated",
            details={"key_id": settings.secrets_kek_id, "names": sorted(rewrapped)},
        )  # fmt: skip
