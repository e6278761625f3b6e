"""The JSON admin API under /admin/api/ (DESIGN §9), guarded by operator API keys (``Authorization: Bearer``).

The operators' surface spans every context (parties, routing's deliveries and message log, agreements), so like the
CLI it sits above them and may import each.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.exceptions import (
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.params import FromPath, FromQuery

from hub.admin.service import Operator, operator_for_key
from hub.agreements.service import (
    AgreementError,
    PartyRef,
    add_agreement,
    agreement_as_dict,
    end_agreement,
    list_agreements,
)
from hub.parties.service import PartyRegistry, platform_as_dict
from hub.runtime import Runtime
from routing import messagelog, outbox
from routing.outbox import outbox_as_dict

READ_ROLES = frozenset({"admin", "finance", "viewer"})
WRITE_ROLES = frozenset({"admin"})


async def require_operator(request: Request[Any, Any, State], roles: frozenset[str]) -> Operator:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise NotAuthorizedException("an operator key is required: Authorization: Bearer <key>")
    operator = await operator_for_key(request.app.state.sessions, key.strip())
    if operator is None:
        raise NotAuthorizedException("unknown operator key")
    if operator.role not in roles:
        raise PermissionDeniedException(f"role {operator.role!r} may not do this")
    return operator


@get("/admin/api/parties", operation_id="ListParties", tags=["parties"])
async def list_parties(request: Request[Any, Any, State]) -> Response[list[dict[str, object]]]:
    """The registered platforms and their parties."""
    await require_operator(request, READ_ROLES)
    registry: PartyRegistry = request.app.state.registry
    return Response([platform_as_dict(p) for p in await registry.list_platforms()])


class AgreementIn(msgspec.Struct, forbid_unknown_fields=True):
    cpo: str
    emsp: str
    valid_from: datetime | None = None
    valid_to: datetime | None = None


def _runtime(request: Request[Any, Any, State]) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


@get("/admin/api/agreements", operation_id="ListAgreements", tags=["agreements"])
async def get_agreements(request: Request[Any, Any, State]) -> Response[list[dict[str, object]]]:
    """Roaming agreements (applied when HUB_ROAMING_POLICY=agreements)."""
    await require_operator(request, READ_ROLES)
    async with _runtime(request).sessions() as session:
        return Response([agreement_as_dict(a) for a in await list_agreements(session)])


@post("/admin/api/agreements", operation_id="AddAgreement", tags=["agreements"], status_code=201)
async def post_agreement(request: Request[Any, Any, State]) -> Response[dict[str, object]]:
    """Create (or re-activate) the agreement between a CPO party and an eMSP party."""
    await require_operator(request, WRITE_ROLES)
    try:
        body = msgspec.json.decode(await request.body(), type=AgreementIn)
        cpo, emsp = PartyRef.parse(body.cpo), PartyRef.parse(body.emsp)
    except (msgspec.DecodeError, AgreementError) as exc:
        raise ValidationException(str(exc)) from exc
    runtime = _runtime(request)
    try:
        async with runtime.sessions.begin() as session:
            agreement = await add_agreement(
                session, cpo, emsp, now=runtime.clock.now(), valid_from=body.valid_from, valid_to=body.valid_to
            )
            result = agreement_as_dict(agreement)
    except AgreementError as exc:
        raise ValidationException(str(exc)) from exc
    await runtime.agreements_changed((cpo.country_code, cpo.party_id), (emsp.country_code, emsp.party_id))
    return Response(result, status_code=201)


@delete(
    "/admin/api/agreements/{cpo_cc:str}/{cpo_pid:str}/{emsp_cc:str}/{emsp_pid:str}",
    operation_id="EndAgreement",
    tags=["agreements"],
    status_code=200,
)
async def end_agreement_route(
    request: Request[Any, Any, State],
    *,
    cpo_cc: FromPath[str],
    cpo_pid: FromPath[str],
    emsp_cc: FromPath[str],
    emsp_pid: FromPath[str],
) -> Response[dict[str, object]]:
    await require_operator(request, WRITE_ROLES)
    try:
        cpo, emsp = PartyRef.parse(f"{cpo_cc}/{cpo_pid}"), PartyRef.parse(f"{emsp_cc}/{emsp_pid}")
    except AgreementError as exc:
        raise ValidationException(str(exc)) from exc
    runtime = _runtime(request)
    async with runtime.sessions.begin() as session:
        ended = await end_agreement(session, cpo, emsp, now=runtime.clock.now())
    if not ended:
        raise NotFoundException(f"no active agreement between {cpo} and {emsp}")
    await runtime.agreements_changed((cpo.country_code, cpo.party_id), (emsp.country_code, emsp.party_id))
    return Response({"ended": True})


@get("/admin/api/deliveries", operation_id="ListDeliveries", tags=["deliveries"])
async def get_deliveries(
    request: Request[Any, Any, State],
    *,
    status: FromQuery[str | None] = None,
    platform: FromQuery[int | None] = None,
    limit: FromQuery[int] = 100,
) -> Response[list[dict[str, object]]]:
    """Pushes the hub fanned out (broadcast, HubClientInfo), newest first; ``status=failed`` for the failed ones."""
    await require_operator(request, READ_ROLES)
    async with _runtime(request).sessions() as session:
        rows = await outbox.list_messages(session, status=status, platform_id=platform, limit=min(limit, 1000))
        return Response([outbox_as_dict(row) for row in rows])


class RetryIn(msgspec.Struct, forbid_unknown_fields=True):
    ids: list[int] | None = None
    platform: int | None = None


@post("/admin/api/deliveries/retry", operation_id="RetryDeliveries", tags=["deliveries"], status_code=200)
async def retry_deliveries(request: Request[Any, Any, State]) -> Response[dict[str, int]]:
    """Put failed pushes back in line: by id, by receiving platform, or all when the body is ``{}``."""
    await require_operator(request, WRITE_ROLES)
    try:
        body = msgspec.json.decode(await request.body() or b"{}", type=RetryIn)
    except msgspec.DecodeError as exc:
        raise ValidationException(str(exc)) from exc
    async with _runtime(request).sessions.begin() as session:
        count = await outbox.redeliver(session, ids=body.ids, platform_id=body.platform)
    return Response({"queued": count})


@get("/admin/api/messages", operation_id="SearchMessages", tags=["messages"])
async def get_messages(
    request: Request[Any, Any, State],
    *,
    correlation_id: FromQuery[str | None] = None,
    platform: FromQuery[int | None] = None,
    party: FromQuery[str | None] = None,
    module: FromQuery[str | None] = None,
    ocpi_status: FromQuery[int | None] = None,
    since: FromQuery[datetime | None] = None,
    until: FromQuery[datetime | None] = None,
    limit: FromQuery[int] = 100,
) -> Response[list[dict[str, object]]]:
    """The message log: one row per request into the hub and per call it made; one correlation id shows its path."""
    await require_operator(request, READ_ROLES)
    async with _runtime(request).sessions() as session:
        rows = await messagelog.search(
            session,
            correlation_id=correlation_id,
            platform_id=platform,
            party=party.upper() if party else None,
            module=module,
            ocpi_status=ocpi_status,
            since=since,
            until=until,
            limit=min(limit, 1000),
        )
    return Response([messagelog.as_dict(row) for row in rows])


ROUTES = [
    list_parties,
    get_agreements,
    post_agreement,
    end_agreement_route,
    get_deliveries,
    retry_deliveries,
    get_messages,
]
