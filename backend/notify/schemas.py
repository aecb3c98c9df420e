"""Request and response bodies of notification channels, rules and deliveries."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import Field, model_validator

from backend.core.schemas import RequestModel, ResponseModel

EVENTS = ("failure", "recovery", "quota_cancelled", "sla_miss")
Event = Literal["failure", "recovery", "quota_cancelled", "sla_miss"]
SecretName = Field(default=None, max_length=64, pattern=r"^[A-Z_][A-Z0-9_]{0,63}$")
EMAIL = r"^[^@\s<>,;\"]{1,64}@[A-Za-z0-9.-]{1,253}$"


class ChannelCreate(RequestModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9 _.-]+$")
    kind: Literal["email", "slack", "webhook"]
    # slack / webhook: the secret whose value is the URL to POST to.
    url_secret: str | None = SecretName
    # webhook: the secret whose value signs each request (Baton-Signature).
    signing_secret: str | None = SecretName
    # email: recipients and the SMTP server (its password a secret, if it needs one).
    to: list[str] = Field(default_factory=list, max_length=20)
    smtp_host: str | None = Field(default=None, max_length=253, pattern=r"^[A-Za-z0-9.:\[\]-]+$")
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = Field(default=None, max_length=200)
    smtp_password_secret: str | None = SecretName
    smtp_starttls: bool = True
    mail_from: str | None = Field(default=None, max_length=254, pattern=EMAIL)

    @model_validator(mode="after")
    def _complete(self) -> Self:
        import re

        if self.kind in ("slack", "webhook") and self.url_secret is None:
            raise ValueError(f"a {self.kind} channel needs url_secret")
        if self.kind == "webhook" and self.signing_secret is None:
            raise ValueError("a webhook channel needs signing_secret")
        if self.kind == "email":
            if not self.to or self.smtp_host is None or self.mail_from is None:
                raise ValueError("an email channel needs to, smtp_host and mail_from")
            bad = [address for address in self.to if not re.fullmatch(EMAIL, address)]
            if bad:
                raise ValueError(f"not email addresses: {', '.join(bad)}")
        return self

    def config(self) -> dict[str, Any]:
        fields = {
            "email": ("to", "smtp_host", "smtp_port", "smtp_username", "smtp_password_secret",
                      "smtp_starttls", "mail_from"),
            "slack": ("url_secret",),
            "webhook": ("url_secret", "signing_secret"),
        }[self.kind]  # fmt: skip
        return {name: getattr(self, name) for name in fields}

    def secret_names(self) -> list[str]:
        names = (self.url_secret, self.signing_secret, self.smtp_password_secret)
        return [name for name in names if name is not None]


class ChannelPublic(ResponseModel):
    id: uuid.UUID
    name: str
    kind: str
    config: dict[str, Any]
    created_at: datetime


class RuleCreate(RequestModel):
    channel_id: uuid.UUID
    job_id: uuid.UUID | None = Field(default=None, description="None: every job of the tenant")
    events: list[Event] = Field(min_length=1, max_length=len(EVENTS))


class RulePublic(ResponseModel):
    id: uuid.UUID
    channel_id: uuid.UUID
    job_id: uuid.UUID | None
    events: list[str]
    created_at: datetime


class DeliveryPublic(ResponseModel):
    id: uuid.UUID
    channel_id: uuid.UUID
    rule_id: uuid.UUID | None
    job_id: uuid.UUID | None
    run_id: uuid.UUID | None
    event: str
    status: str
    attempts: int
    next_at: datetime
    response_code: int | None
    response_body: str | None
    error: str | None
    created_at: datetime
    sent_at: datetime | None


class SlaMissPublic(ResponseModel):
    run_id: uuid.UUID
    job_id: uuid.UUID
    kind: str
    deadline_at: datetime
    detected_at: datetime
