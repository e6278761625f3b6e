"""The JSON admin API under /admin/api/ (DESIGN §9), guarded by operator API keys (``Authorization: Bearer``).

The operators' surface spans every context (parties, routing's deliveries and message log, agreements), so like the
CLI it sits above them and may import each.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.exceptions import (
    ClientException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.params import FromPath, FromQuery

from hub.admin import actions
from hub.admin.params import Limit, RowId, RowIdFilter, StatusCodeFilter
from hub.admin.service import (
    Operator,
    OperatorKeyError,
    audit_as_dict,
    list_audit,
    list_operator_keys,
    operator_for_key,
    operator_key_as_dict,
)
from hub.agreements.service import (
    AgreementError,
    PartyRef,
    agreement_as_dict,
    list_agreements,
)
from hub.parties.service import PartyRegistry, PlatformNotFoundError, RegistryError, platform_as_dict
from hub.runtime import Runtime
from routing import messagelog, outbox
from routing.outbox import outbox_as_dict

# Reads: any role. Writes: admin. The finance role is meant for the clearing routes (DESIGN §7).
READ_ROLES = frozenset({"admin", "finance", "viewer"})
WRITE_ROLES = frozenset({"admin"})
FINANCE_ROLES = frozenset({"admin", "finance"})


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


def _request_id(request: Request[Any, Any, State]) -> str:
    return (request.headers.get("x-request-id") or str(uuid.uuid4()))[:64]


@get("/admin/api/parties/{platform_id:int}", operation_id="GetParty", tags=["parties"])
async def get_party(request: Request[Any, Any, State], *, platform_id: RowId) -> Response[dict[str, object]]:
    """One platform and its parties."""
    await require_operator(request, READ_ROLES)
    registry: PartyRegistry = request.app.state.registry
    try:
        return Response(platform_as_dict(await registry.get_platform(platform_id)))
    except PlatformNotFoundError as exc:
        raise NotFoundException(str(exc)) from exc


async def _party_action(
    request: Request[Any, Any, State], action: actions.PartyAction, platform_id: int
) -> Response[dict[str, object]]:
    operator = await require_operator(request, WRITE_ROLES)
    try:
        result = await actions.party_action(
            _runtime(request), operator, action, platform_id, request_id=_request_id(request)
        )
    except PlatformNotFoundError as exc:
        raise NotFoundException(str(exc)) from exc
    except RegistryError as exc:
        raise ClientException(str(exc), status_code=409) from exc
    return Response(result)


@post("/admin/api/parties/{platform_id:int}/suspend", operation_id="SuspendParty", tags=["parties"], status_code=200)
async def suspend_party(request: Request[Any, Any, State], *, platform_id: RowId) -> Response[dict[str, object]]:
    """Suspend a registered platform: its token stops working, its parties are announced SUSPENDED (reversible)."""
    return await _party_action(request, "suspend", platform_id)


@post("/admin/api/parties/{platform_id:int}/activate", operation_id="ActivateParty", tags=["parties"], status_code=200)
async def activate_party(request: Request[Any, Any, State], *, platform_id: RowId) -> Response[dict[str, object]]:
    """Undo a suspension: the platform is REGISTERED and its parties CONNECTED again."""
    return await _party_action(request, "activate", platform_id)


@post("/admin/api/parties/{platform_id:int}/rotate", operation_id="RotateParty", tags=["parties"], status_code=200)
async def rotate_party(request: Request[Any, Any, State], *, platform_id: RowId) -> Response[dict[str, object]]:
    """Renew the credentials with the platform (credentials PUT from the hub): both tokens are replaced."""
    return await _party_action(request, "rotate", platform_id)


@delete("/admin/api/parties/{platform_id:int}", operation_id="DeleteParty", tags=["parties"], status_code=200)
async def delete_party(request: Request[Any, Any, State], *, platform_id: RowId) -> Response[dict[str, object]]:
    """Unregister a platform for good (credentials DELETE at the platform, best effort); every token dies."""
    return await _party_action(request, "delete", platform_id)


class OperatorIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    role: str


@get("/admin/api/operators", operation_id="ListOperators", tags=["operators"])
async def get_operators(request: Request[Any, Any, State]) -> Response[list[dict[str, object]]]:
    """Operator API keys (never the keys themselves)."""
    await require_operator(request, READ_ROLES)
    async with _runtime(request).sessions() as session:
        return Response([operator_key_as_dict(k) for k in await list_operator_keys(session)])


@post("/admin/api/operators", operation_id="AddOperator", tags=["operators"], status_code=201)
async def post_operator(request: Request[Any, Any, State]) -> Response[dict[str, object]]:
    """Create an operator key with a role; the answer's ``key`` is shown this once (only its hash is kept)."""
    operator = await require_operator(request, WRITE_ROLES)
    try:
        body = msgspec.json.decode(await request.body(), type=OperatorIn)
        result, plain = await actions.operator_add(
            _runtime(request), operator, name=body.name, role=body.role, request_id=_request_id(request)
        )
    except (msgspec.DecodeError, msgspec.ValidationError, OperatorKeyError) as exc:
        raise ValidationException(str(exc)) from exc
    return Response({**result, "key": plain}, status_code=201)


@delete("/admin/api/operators/{key_id:int}", operation_id="RevokeOperator", tags=["operators"], status_code=200)
async def revoke_operator(request: Request[Any, Any, State], *, key_id: RowId) -> Response[dict[str, object]]:
    """Revoke an operator key for good."""
    operator = await require_operator(request, WRITE_ROLES)
    try:
        result = await actions.operator_revoke(_runtime(request), operator, key_id, request_id=_request_id(request))
    except OperatorKeyError as exc:
        if str(exc).startswith("no operator key"):
            raise NotFoundException(str(exc)) from exc
        raise ClientException(str(exc), status_code=409) from exc
    return Response(result)


@get("/admin/api/audit", operation_id="ListAudit", tags=["audit"])
async def get_audit(
    request: Request[Any, Any, State],
    *,
    target: FromQuery[str | None] = None,
    since: FromQuery[datetime | None] = None,
    limit: Limit = 100,
) -> Response[list[dict[str, object]]]:
    """The audit log, newest first: ``target=platform:3`` (exact) or ``target=platform:*`` (prefix), ``since``."""
    await require_operator(request, READ_ROLES)
    async with _runtime(request).sessions() as session:
        rows = await list_audit(session, target=target, since=since, limit=min(limit, 1000))
    return Response([audit_as_dict(row) for row in rows])


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
    operator = await require_operator(request, WRITE_ROLES)
    try:
        body = msgspec.json.decode(await request.body(), type=AgreementIn)
        cpo, emsp = PartyRef.parse(body.cpo), PartyRef.parse(body.emsp)
    except (msgspec.DecodeError, AgreementError) as exc:
        raise ValidationException(str(exc)) from exc
    try:
        result = await actions.agreement_add(
            _runtime(request),
            operator,
            cpo,
            emsp,
            valid_from=body.valid_from,
            valid_to=body.valid_to,
            request_id=_request_id(request),
        )
    except AgreementError as exc:
        raise ValidationException(str(exc)) from exc
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
    operator = await require_operator(request, WRITE_ROLES)
    try:
        cpo, emsp = PartyRef.parse(f"{cpo_cc}/{cpo_pid}"), PartyRef.parse(f"{emsp_cc}/{emsp_pid}")
    except AgreementError as exc:
        raise ValidationException(str(exc)) from exc
    if not await actions.agreement_end(_runtime(request), operator, cpo, emsp, request_id=_request_id(request)):
        raise NotFoundException(f"no active agreement between {cpo} and {emsp}")
    return Response({"ended": True})


@get("/admin/api/deliveries", operation_id="ListDeliveries", tags=["deliveries"])
async def get_deliveries(
    request: Request[Any, Any, State],
    *,
    status: FromQuery[str | None] = None,
    platform: RowIdFilter = None,
    limit: Limit = 100,
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
    operator = await require_operator(request, WRITE_ROLES)
    try:
        body = msgspec.json.decode(await request.body() or b"{}", type=RetryIn)
    except msgspec.DecodeError as exc:
        raise ValidationException(str(exc)) from exc
    count = await actions.deliveries_retry(
        _runtime(request), operator, ids=body.ids, platform_id=body.platform, request_id=_request_id(request)
    )
    return Response({"queued": count})


@get("/admin/api/messages", operation_id="SearchMessages", tags=["messages"])
async def get_messages(
    request: Request[Any, Any, State],
    *,
    correlation_id: FromQuery[str | None] = None,
    platform: RowIdFilter = None,
    party: FromQuery[str | None] = None,
    module: FromQuery[str | None] = None,
    ocpi_status: StatusCodeFilter = None,
    since: FromQuery[datetime | None] = None,
    until: FromQuery[datetime | None] = None,
    limit: Limit = 100,
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
    get_party,
    suspend_party,
    activate_party,
    rotate_party,
    delete_party,
    get_operators,
    post_operator,
    revoke_operator,
    get_audit,
    get_agreements,
    post_agreement,
    end_agreement_route,
    get_deliveries,
    retry_deliveries,
    get_messages,
]
