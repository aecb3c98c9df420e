"""Dashboard page: billing - the tenant's plan and its limits, upgrades through Stripe
Checkout, the Customer Portal, and the invoices Stripe holds.

For the tenant's owners and admins (the API's ``members:manage``); starting Checkout or
opening the portal is the owners' (``stripe_billing.checkout`` / ``portal`` say so, as for
the API). With billing ``none`` (on-prem) the page says that limits come from the
installation's configuration.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response

from backend.billing import service as usage_service
from backend.billing import stripe_billing
from backend.billing.schemas import CheckoutCreate, InvoicePublic
from backend.core.db import SessionDep
from backend.core.deps import SettingsDep
from backend.core.errors import ServiceUnavailable
from backend.core.permissions import Permission
from backend.core.principal import Principal
from backend.core.settings import Settings
from backend.plans import service as plans_service
from backend.web.csrf import CsrfChecked
from backend.web.forms import BLANK, FormState, Refused, form_page, submit
from backend.web.render import redirect
from backend.web.session import WebAuthorized

router = APIRouter(include_in_schema=False)

# What Stripe's redirect back may ask the page to say (never free text from the URL).
NOTICES = {
    "done": "Thank you: the upgrade applies as soon as Stripe confirms the payment.",
    "cancelled": "Checkout was cancelled; nothing changed.",
}


async def _billing_page(
    request: Request,
    session: SessionDep,
    settings: Settings,
    principal: Principal,
    *,
    form: FormState = BLANK,
    notice: str | None = None,
) -> Response:
    state = await stripe_billing.billing_state(session, settings, principal)
    report = await usage_service.usage_report(session, principal)
    context: dict[str, Any] = {
        "principal": principal,
        "section": "billing",
        "state": state,
        "limits": report.limits,
        "can_pay": stripe_billing.can_manage(principal),
        "paid_plans": [],
        "invoices": [],
        "invoices_error": None,
    }
    if settings.billing == "stripe":
        context["paid_plans"] = [
            plan
            for plan in await plans_service.list_plans(session)
            if plan.name in settings.stripe_prices and plan.name != state.plan
        ]
        invoices: list[InvoicePublic] = []
        try:
            invoices = await stripe_billing.invoices(session, settings, principal)
        except ServiceUnavailable as error:
            context["invoices_error"] = error.message
        context["invoices"] = invoices
    return form_page(
        request, "settings/billing.html", context, form=form, notice=NOTICES.get(notice or "")
    )


@router.get("/settings/billing")
async def billing(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    checkout: Annotated[str | None, Query(max_length=20)] = None,
    principal: Principal = WebAuthorized(Permission.members_manage),
) -> Response:
    """The plan, its limits, the subscription, upgrades and the invoices."""
    return await _billing_page(request, session, settings, principal, notice=checkout)


@router.post("/settings/billing/checkout")
async def start_checkout(
    request: Request,
    _: CsrfChecked,
    session: SessionDep,
    settings: SettingsDep,
    plan: Annotated[str, Form(max_length=100)] = "",
    principal: Principal = WebAuthorized(Permission.members_manage),
) -> Response:
    """Upgrade (as ``POST /api/v1/billing/checkout``): off to Stripe Checkout."""

    async def start() -> str:
        body = CheckoutCreate.model_validate({"plan": plan})
        return await stripe_billing.checkout(session, settings, principal, body.plan)

    outcome = await submit(session, start, {"plan": plan})
    if isinstance(outcome, Refused):
        return await _billing_page(request, session, settings, principal, form=outcome)
    return redirect(request, outcome)


@router.post("/settings/billing/portal")
async def open_portal(
    request: Request,
    _: CsrfChecked,
    session: SessionDep,
    settings: SettingsDep,
    principal: Principal = WebAuthorized(Permission.members_manage),
) -> Response:
    """Cards, invoices, cancellation (as ``POST /api/v1/billing/portal``): off to Stripe's
    Customer Portal."""

    async def open_session() -> str:
        return await stripe_billing.portal(session, settings, principal)

    outcome = await submit(session, open_session, {})
    if isinstance(outcome, Refused):
        return await _billing_page(request, session, settings, principal, form=outcome)
    return redirect(request, outcome)
