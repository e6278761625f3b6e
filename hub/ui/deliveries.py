"""Deliveries: the pushes the hub fanned out (broadcasts, HubClientInfo), failed ones first, with the admin's
re-deliver button (the admin API's retry, audited)."""

from __future__ import annotations

from typing import Any, Final

from litestar import Request, Response, get, post
from litestar.datastructures import State

from hub.admin import actions
from hub.admin.controllers import WRITE_ROLES
from hub.ui import params
from hub.ui.auth import UiError, redirect, require_action, require_user, runtime_of
from hub.ui.render import page
from routing import outbox
from routing.outbox import OutboxStatus

PAGE: Final = 200
STATUSES: Final = tuple(s.value for s in OutboxStatus)


@get("/deliveries", name="ui-deliveries", include_in_schema=False)
async def deliveries(request: Request[Any, Any, State]) -> Response[str]:
    user = await require_user(request)
    status = params.text(request, "status", max_length=16) or "failed"
    if status not in (*STATUSES, "all"):
        raise UiError(status_code=400, detail=f"status must be one of {', '.join(STATUSES)} or all")
    platform_id = params.integer(request, "platform")
    runtime = runtime_of(request)
    async with runtime.sessions() as session:
        rows = await outbox.list_messages(
            session, status=None if status == "all" else status, platform_id=platform_id, limit=PAGE
        )
        counts = await outbox.count_by_status(session)
    names = {p.id: p.name for p in await runtime.registry.list_platforms()}
    queued = params.integer(request, "queued")
    return page(request, "deliveries.html", user=user, section="deliveries", rows=rows, counts=counts,
                status=status, statuses=STATUSES, platform_id=platform_id, names=names, queued=queued)  # fmt: skip


@post("/deliveries/retry", name="ui-deliveries-retry", include_in_schema=False, status_code=303)
async def retry(request: Request[Any, Any, State]) -> Response[str]:
    user, form = await require_action(request, WRITE_ROLES)
    raw_id = form.get("id", "").strip()
    if raw_id and not raw_id.isdigit():
        raise UiError(status_code=400, detail=f"id must be a delivery number, not {raw_id!r}")
    ids = [int(raw_id)] if raw_id else None
    count = await actions.deliveries_retry(runtime_of(request), user.operator, ids=ids, platform_id=None)
    return redirect(f"/ui/deliveries?status=failed&queued={count}")


ROUTES = [deliveries, retry]
