"""Deficit round robin across tenants."""

from __future__ import annotations

import uuid

from backend.engine.admission import FairShare


def test_each_due_tenant_gets_its_weighted_share_per_round() -> None:
    fair = FairShare(quantum=10)
    heavy, light = uuid.uuid4(), uuid.uuid4()
    fair.add(heavy)
    fair.add(light)
    weights = {heavy: 3, light: 1}
    granted: dict[uuid.UUID, int] = {heavy: 0, light: 0}
    for _ in range(8):  # four rounds of two turns
        turn = fair.next_turn(weights)
        assert turn is not None
        tenant, allowance = turn
        granted[tenant] += allowance
        fair.used(tenant, allowance, still_due=True)
    assert granted[heavy] == 3 * granted[light]


def test_a_tenant_that_empties_loses_its_credit_and_leaves_the_ring() -> None:
    fair = FairShare(quantum=5)
    tenant = uuid.uuid4()
    fair.add(tenant)
    turn = fair.next_turn({})
    assert turn == (tenant, 5)
    fair.used(tenant, 2, still_due=False)
    assert fair.next_turn({}) is None
    fair.add(tenant)
    assert fair.next_turn({}) == (tenant, 5)


def test_unused_allowance_carries_over_while_due() -> None:
    fair = FairShare(quantum=4)
    tenant = uuid.uuid4()
    fair.add(tenant)
    _, allowance = fair.next_turn({}) or (None, 0)
    fair.used(tenant, 1, still_due=True)
    assert fair.next_turn({}) == (tenant, allowance - 1 + 4)


def test_quota_comes_from_tenant_then_plan_then_defaults() -> None:
    from backend.core.settings import Settings
    from backend.engine.admission import quota_of
    from backend.tenants.models import Tenant

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        tenant_max_concurrent_tasks=7,
        tenant_weight=1,
        plan_limits={"pro": {"max_concurrent_tasks": 50, "weight": 3}},
    )
    assert quota_of(None, settings) == (7, 1)
    assert quota_of(Tenant(slug="a", name="a", plan="free"), settings) == (7, 1)
    assert quota_of(Tenant(slug="b", name="b", plan="pro"), settings) == (50, 3)
    own = Tenant(slug="c", name="c", plan="pro", max_concurrent_tasks=5, weight=9)
    assert quota_of(own, settings) == (5, 9)
