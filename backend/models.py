"""Every table, imported in one place so Alembic and tests see the whole schema."""

from backend.audit.models import AuditEvent
from backend.auth.models import RefreshToken, User
from backend.tenants.models import Membership, Tenant
from backend.tokens.models import ApiToken

__all__ = ["ApiToken", "AuditEvent", "Membership", "RefreshToken", "Tenant", "User"]
