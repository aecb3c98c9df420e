"""A dashboard form's submission and the page that shows it again when it is refused.

Every settings form (members, API tokens, secrets, worker credentials) does the same: run
the action in a savepoint, so a refused one leaves nothing behind; show the page again with
the field problems (422) when the fields do not validate, or with the service's message and
status when the service refuses; let a server error (5xx) propagate to the error page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import Request, Response
from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.core.errors import BatonError
from backend.web.render import form_problems, page

T = TypeVar("T")


@dataclass(frozen=True)
class FormState:
    """What a settings page shows of its form: the values typed, the problems by field,
    the service's message, and the status to answer with."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    message: str | None = None
    status: int = 200


BLANK = FormState()
CREATED = FormState(status=201)  # the page that shows a new secret, once


class Refused(FormState):
    """Why a form's action did not happen, with the values typed, to show the form again."""


def service_problems(error: BatonError) -> dict[str, str]:
    """A service's ``ValidationFailed`` details (``loc: [body, field]``) as field -> message."""
    details = error.details if isinstance(error.details, list) else []
    return {
        str(d["loc"][-1]): str(d.get("msg", ""))
        for d in details
        if isinstance(d, dict) and d.get("loc")
    }


async def submit(
    session: AsyncSession,
    action: Callable[[], Awaitable[T]],
    values: dict[str, Any],
    *,
    service_fields: bool = False,
) -> T | Refused:
    """``action()``'s result, or why it was refused (with ``values``, what was typed, to show
    again). ``service_fields``: show the service's validation details next to the fields
    too (not only its message)."""
    try:
        async with session.begin_nested():
            return await action()
    except ValidationError as error:
        return Refused(values, form_problems(error), status=422)
    except BatonError as error:
        if error.status_code >= 500:
            raise
        errors = service_problems(error) if service_fields else {}
        return Refused(values, errors, error.message, error.status_code)


def form_page(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    form: FormState = BLANK,
    notice: str | None = None,
    no_store: bool = False,
) -> Response:
    """A settings page with its form's state: the values typed, the problems by field, the
    service's message, the notice a redirect asked for (already looked up, never URL text).
    ``no_store``: the page shows a secret once; no cache may keep it."""
    response = page(
        request,
        template,
        {
            **context,
            "values": form.values,
            "errors": form.errors,
            "message": form.message,
            "notice": notice,
        },
        status=form.status,
    )
    if no_store:
        response.headers["Cache-Control"] = "no-store"
    return response
