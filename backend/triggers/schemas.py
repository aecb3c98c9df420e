"""Request and response bodies of the webhook endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import Field, StringConstraints, model_validator

from backend.core.schemas import RequestModel, ResponseModel
from backend.jobs.spec import MAX_PARAM_KEY
from backend.triggers.mapping import PathError, parse_path

MAX_MAPPINGS = 50
ParamName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PARAM_KEY)]


class WebhookCreate(RequestModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9 _.-]+$")
    signature: Literal["none", "github", "stripe"] = Field(
        default="none",
        description="github: X-Hub-Signature-256; stripe: Stripe-Signature t=..,v1=..",
    )
    secret_name: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[A-Z_][A-Z0-9_]{0,63}$",
        description="The tenant secret holding the shared signing secret",
    )
    tolerance_seconds: int = Field(
        default=300, ge=10, le=3600, description="stripe scheme: accepted timestamp age"
    )
    mapping: dict[ParamName, str] = Field(
        default_factory=dict,
        max_length=MAX_MAPPINGS,
        description='Run param -> JSON path into the payload, e.g. {"sha": "$.after"}',
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.signature != "none" and self.secret_name is None:
            raise ValueError(f"signature {self.signature} needs secret_name")
        if self.signature == "none" and self.secret_name is not None:
            raise ValueError("secret_name is used only with a signature scheme")
        for name, path in self.mapping.items():
            try:
                parse_path(path)
            except PathError as error:
                raise ValueError(f"mapping[{name}]: {error}") from None
        return self


class WebhookPublic(ResponseModel):
    id: uuid.UUID
    job_id: uuid.UUID
    name: str
    token_prefix: str
    signature: str
    secret_name: str | None
    tolerance_seconds: int
    mapping: dict[str, str]
    created_at: datetime


class WebhookCreated(WebhookPublic):
    token: str = Field(description="The endpoint's secret; shown once")
    url: str = Field(description="POST JSON here to start a run")


class DeliveryPublic(ResponseModel):
    id: uuid.UUID
    endpoint_id: uuid.UUID
    job_id: uuid.UUID
    received_at: datetime
    outcome: str
    reason: str | None
    status_code: int
    run_id: uuid.UUID | None
    idempotency_key: str | None
    body_bytes: int
    source_ip: str | None


class DeliveryReceipt(ResponseModel):
    delivery_id: uuid.UUID
    outcome: Literal["accepted", "duplicate"]
    run_id: uuid.UUID
