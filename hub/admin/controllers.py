"""The JSON admin API under /admin/api/ (DESIGN §9), guarded by operator API keys (``Authorization: Bearer``)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException

from hub.admin.service import Operator, operator_for_key
from hub.parties.service import PartyRegistry, platform_as_dict

READ_ROLES = frozenset({"admin", "finance", "viewer"})


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


ROUTES = [list_parties]
