"""Unit tests of the role order and the one permission table."""

from __future__ import annotations

import itertools

import pytest

from backend.core.permissions import MINIMUM_ROLE, Permission, Role, allows

ORDER = [Role.viewer, Role.operator, Role.editor, Role.admin, Role.owner]


def test_roles_are_exactly_the_five_documented_ones() -> None:
    assert {r.value for r in Role} == {"owner", "admin", "editor", "operator", "viewer"}


def test_rank_follows_owner_admin_editor_operator_viewer() -> None:
    assert [r.rank for r in ORDER] == sorted(r.rank for r in ORDER)
    assert len({r.rank for r in Role}) == len(Role), "two roles share a rank"


@pytest.mark.parametrize(("lower", "higher"), list(itertools.combinations(ORDER, 2)))
def test_at_least_is_a_strict_order(lower: Role, higher: Role) -> None:
    assert higher.at_least(lower)
    assert not lower.at_least(higher)


@pytest.mark.parametrize("role", list(Role))
def test_at_least_is_reflexive(role: Role) -> None:
    assert role.at_least(role)


@pytest.mark.parametrize(("granter", "granted"), list(itertools.product(Role, Role)))
def test_can_grant_only_roles_at_or_below_own(granter: Role, granted: Role) -> None:
    assert granter.can_grant(granted) == (ORDER.index(granter) >= ORDER.index(granted))


def test_only_an_owner_can_grant_owner() -> None:
    assert [r for r in Role if r.can_grant(Role.owner)] == [Role.owner]


def test_every_permission_has_a_minimum_role() -> None:
    missing = [p for p in Permission if p not in MINIMUM_ROLE]
    assert missing == []
    assert set(MINIMUM_ROLE) == set(Permission)
    assert all(isinstance(role, Role) for role in MINIMUM_ROLE.values())


@pytest.mark.parametrize(("permission", "role"), list(itertools.product(Permission, Role)))
def test_allows_matches_the_table(permission: Permission, role: Role) -> None:
    assert allows(role, permission) == role.at_least(MINIMUM_ROLE[permission])


@pytest.mark.parametrize("permission", list(Permission))
def test_owner_holds_every_permission(permission: Permission) -> None:
    assert allows(Role.owner, permission)


@pytest.mark.parametrize("permission", list(Permission))
def test_permissions_are_monotonic_in_role(permission: Permission) -> None:
    held = [allows(role, permission) for role in ORDER]
    # Once a role holds a permission, every higher role holds it too.
    assert held == sorted(held)


@pytest.mark.parametrize(
    ("permission", "minimum"),
    [
        (Permission.profile_read, Role.viewer),
        (Permission.members_read, Role.viewer),
        (Permission.members_manage, Role.admin),
        (Permission.tokens_read, Role.admin),
        (Permission.tokens_manage, Role.admin),
        (Permission.audit_read, Role.admin),
        (Permission.jobs_read, Role.viewer),
        (Permission.jobs_write, Role.editor),
        (Permission.runs_read, Role.viewer),
        (Permission.runs_operate, Role.operator),
        (Permission.secrets_read, Role.viewer),
        (Permission.secrets_write, Role.editor),
        (Permission.tenant_manage, Role.owner),
        (Permission.workers_read, Role.admin),
        (Permission.workers_manage, Role.admin),
    ],
)
def test_documented_minimum_roles(permission: Permission, minimum: Role) -> None:
    assert MINIMUM_ROLE[permission] == minimum
    assert allows(minimum, permission)
    below = [r for r in ORDER if r.rank < minimum.rank]
    assert not any(allows(r, permission) for r in below)


def test_viewer_is_read_only() -> None:
    granted = {p for p in Permission if allows(Role.viewer, p)}
    assert granted == {
        Permission.profile_read,
        Permission.members_read,
        Permission.jobs_read,
        Permission.runs_read,
        Permission.secrets_read,  # names and metadata only; values are never readable
    }


def test_roles_parse_from_their_wire_values() -> None:
    assert Role("admin") is Role.admin
    with pytest.raises(ValueError):
        Role("superuser")
