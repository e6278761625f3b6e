"""Parties: the registered platforms with their parties, and one platform's detail (endpoints, recent traffic),
with the admin's suspend and activate buttons (the admin API's actions, audited)."""

from __future__ import annotations

from typing import Any, Final

from litestar import Request, Response, get, post
from litestar.datastructures import State

from hub.admin import actions
from hub.admin.controllers import WRITE_ROLES
from hub.admin.params import RowId
from hub.parties.service import PlatformNotFoundError, RegistryError
from hub.ui.auth import UiError, redirect, require_action, require_user, runtime_of
from hub.ui.overview import party_status
from hub.ui.render import page
from routing import messagelog

RECENT: Final = 50
NOTICES: Final = {"suspend": "The platform is suspended.", "activate": "The platform is active again."}


@get("/parties", name="ui-parties", include_in_schema=False)
async def parties(request: Request[Any, Any, State]) -> Response[str]:
    user = await require_user(request)
    query = (request.query_params.get("q") or "").strip()
    platforms = await runtime_of(request).registry.list_platforms()
    if query:
        needle = query.upper()

        def matches(p: Any) -> bool:
            names = [p.name or "", *(f"{x.country_code}/{x.party_id}" for x in p.parties),
                     *(x.business_name or "" for x in p.parties)]  # fmt: skip
            return any(needle in name.upper() for name in names)

        platforms = [p for p in platforms if matches(p)]
    return page(request, "parties.html", user=user, section="parties", platforms=platforms, query=query,
                status_of=party_status)  # fmt: skip


@get("/parties/{platform_id:int}", name="ui-party", include_in_schema=False)
async def party(request: Request[Any, Any, State], platform_id: RowId) -> Response[str]:
    user = await require_user(request)
    runtime = runtime_of(request)
    try:
        platform = await runtime.registry.get_platform(platform_id)
    except PlatformNotFoundError as exc:
        raise UiError(status_code=404, detail=str(exc)) from exc
    async with runtime.sessions() as session:
        recent = await messagelog.search(session, platform_id=platform_id, limit=RECENT)
    return page(request, "party.html", user=user, section="parties", platform=platform, recent=recent,
                status=party_status(platform), notice=NOTICES.get(request.query_params.get("done") or ""))  # fmt: skip


async def _act(request: Request[Any, Any, State], platform_id: int, action: actions.PartyAction) -> Response[str]:
    user, _ = await require_action(request, WRITE_ROLES)
    try:
        await actions.party_action(runtime_of(request), user.operator, action, platform_id)
    except PlatformNotFoundError as exc:
        raise UiError(status_code=404, detail=str(exc)) from exc
    except RegistryError as exc:
        raise UiError(status_code=409, detail=str(exc)) from exc
    return redirect(f"/ui/parties/{platform_id}?done={action}")


@post("/parties/{platform_id:int}/suspend", name="ui-party-suspend", include_in_schema=False, status_code=303)
async def suspend(request: Request[Any, Any, State], platform_id: RowId) -> Response[str]:
    return await _act(request, platform_id, "suspend")


@post("/parties/{platform_id:int}/activate", name="ui-party-activate", include_in_schema=False, status_code=303)
async def activate(request: Request[Any, Any, State], platform_id: RowId) -> Response[str]:
    return await _act(request, platform_id, "activate")


ROUTES = [parties, party, suspend, activate]
