"""The message log: a search over the rows the hub wrote for every request in and every call out, and the trace of
one correlation id (every hop, in the order it happened)."""

from __future__ import annotations

from typing import Any, Final

from litestar import Request, Response, get
from litestar.datastructures import State

from hub.ui import params
from hub.ui.auth import UiError, require_user, runtime_of
from hub.ui.render import page
from routing import messagelog

PAGE: Final = 200


@get("/messages", name="ui-messages", include_in_schema=False)
async def messages(request: Request[Any, Any, State]) -> Response[str]:
    user = await require_user(request)
    party = params.text(request, "party", max_length=6)
    async with runtime_of(request).sessions() as session:
        rows = await messagelog.search(
            session,
            correlation_id=params.text(request, "correlation_id", max_length=64),
            party=party.upper() if party else None,
            module=params.text(request, "module", max_length=32),
            ocpi_status=params.integer(request, "ocpi_status", high=9999),
            platform_id=params.integer(request, "platform"),
            since=params.timestamp(request, "since"),
            limit=PAGE,
        )
    form = {k: request.query_params.get(k, "") for k in ("correlation_id", "party", "module", "ocpi_status",
                                                           "platform", "since")}  # fmt: skip
    return page(request, "messages.html", user=user, section="messages", rows=rows, form=form, limit=PAGE)


@get("/messages/trace", name="ui-trace", include_in_schema=False)
async def trace(request: Request[Any, Any, State]) -> Response[str]:
    user = await require_user(request)
    correlation_id = params.text(request, "id", max_length=64)
    if correlation_id is None:
        raise UiError(status_code=400, detail="a correlation id is required (?id=…)")
    async with runtime_of(request).sessions() as session:
        hops = await messagelog.search(session, correlation_id=correlation_id, limit=1000)
    if not hops:
        raise UiError(status_code=404, detail=f"no message with correlation id {correlation_id!r}")
    began = hops[0].at
    return page(request, "trace.html", user=user, section="messages", correlation_id=correlation_id, hops=hops,
                offsets=[(h.at - began).total_seconds() * 1000 for h in hops])  # fmt: skip


ROUTES = [messages, trace]
