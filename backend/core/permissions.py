"""Roles and the one permission table.

Roles are ordered ``owner > admin > editor > operator > viewer``; each permission names
the lowest role that holds it. ``backend.core.deps.Authorized`` is the one dependency
that enforces this table on every route.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    owner = "owner"
    admin = "admin"
    editor = "editor"
    operator = "operator"
    viewer = "viewer"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank

    def can_grant(self, other: Role) -> bool:
        """A role may hand out only roles at or below its own."""
        return self.at_least(other)


_RANK = {Role.viewer: 1, Role.operator: 2, Role.editor: 3, Role.admin: 4, Role.owner: 5}


class Permission(StrEnum):
    profile_read = "profile:read"
    members_read = "members:read"
    members_manage = "members:manage"
    tokens_read = "tokens:read"
    tokens_manage = "tokens:manage"
    audit_read = "audit:read"
    jobs_read = "jobs:read"
    jobs_write = "jobs:write"
    runs_read = "runs:read"
    runs_operate = "runs:operate"
    secrets_read = "secrets:read"
    secrets_write = "secrets:write"
    tenant_manage = "tenant:manage"
    workers_read = "workers:read"
    workers_manage = "workers:manage"


MINIMUM_ROLE: dict[Permission, Role] = {
    Permission.profile_read: Role.viewer,
    Permission.members_read: Role.viewer,
    Permission.jobs_read: Role.viewer,
    Permission.runs_read: Role.viewer,
    Permission.runs_operate: Role.operator,
    Permission.jobs_write: Role.editor,
    # Secret names are no secret (job specs show them). Writing a value is for editors:
    # whoever can write a job can already make a task use - and so reveal - any secret.
    Permission.secrets_read: Role.viewer,
    Permission.secrets_write: Role.editor,
    Permission.tokens_read: Role.admin,
    Permission.tokens_manage: Role.admin,
    Permission.members_manage: Role.admin,
    Permission.audit_read: Role.admin,
    Permission.workers_read: Role.admin,
    Permission.workers_manage: Role.admin,
    Permission.tenant_manage: Role.owner,
}


def allows(role: Role, permission: Permission) -> bool:
    return role.at_least(MINIMUM_ROLE[permission])
