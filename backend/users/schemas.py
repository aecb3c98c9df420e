"""A user as the API shows it (to the auth and member endpoints)."""

from __future__ import annotations

import uuid

from backend.core.schemas import ResponseModel


class UserPublic(ResponseModel):
    id: uuid.UUID
    email: str
