"""The clearing part of the JSON admin API (DESIGN §9): CDR reports, pre-flight checks, periods, statements,
exports, reconciliation, disputes and commercial decisions under ``/admin/api/clearing/``.

Like the CLI (``clearing.cli``) this module sits above clearing and calls the same service methods; it adds only
HTTP: roles (reads for admin/finance/viewer, writes for admin/finance), status codes and encoding. Amounts stay
``Decimal`` and go out as JSON numbers. Every write also appends a row to the hub's audit log in its transaction.
"""

from __future__ import annotations

import io
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import ClientException, NotFoundException, ValidationException
from litestar.params import FromPath, FromQuery

from clearing.document import RefusedPayload
from clearing.intake import ClearingService, UnknownRecordError
from clearing.settlement.exports import ReconcileError, read_party_csv, reconcile, write_csv
from clearing.settlement.service import PeriodError, SettlementService, StatementReport
from clearing.settlement.terms import TermsError, parse_party
from clearing.states import StateError
from hub.admin.controllers import FINANCE_ROLES, READ_ROLES, require_operator
from hub.admin.service import Operator, record_audit
from hub.runtime import Runtime

# Decimals as JSON numbers (not strings), as the CLI prints them.
_ENCODER: Final = msgspec.json.Encoder(decimal_format="number")
_JSON: Final = "application/json"
_RESOLUTIONS: Final = ("credit", "adjustment", "rejection")


def _json(value: Any, status_code: int = 200) -> Response[bytes]:
    return Response(_ENCODER.encode(value), status_code=status_code, media_type=_JSON)


def _runtime(request: Request[Any, Any, State]) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _request_id(request: Request[Any, Any, State]) -> str | None:
    value = request.headers.get("x-request-id")
    return value[:64] if value else None


def _party(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        cc, pid = parse_party(value)
    except TermsError as exc:
        raise ValidationException(str(exc)) from exc
    return f"{cc}/{pid}"


def _conflict(exc: Exception) -> ClientException:
    return ClientException(str(exc), status_code=409)


async def _statements(request: Request[Any, Any, State], label: str, party: str | None) -> list[StatementReport]:
    runtime = _runtime(request)
    async with runtime.sessions() as session:
        try:
            return await SettlementService(runtime.clock).statements(session, label, party)
        except PeriodError as exc:
            raise NotFoundException(str(exc)) from exc


async def _audit(  # noqa: PLR0917 - one audit row
    request: Request[Any, Any, State], session: Any, operator: Operator, action: str, target: str, after: object
) -> None:
    await record_audit(
        session,
        actor=operator,
        action=action,
        target=target,
        before=None,
        after=msgspec.to_builtins(after),
        now=_runtime(request).clock.now(),
        request_id=_request_id(request),
    )


# --- CDRs --------------------------------------------------------------------------------------------------------


@get(
    "/admin/api/clearing/cdrs/{country_code:str}/{party_id:str}/{cdr_id:str}",
    operation_id="ClearingCdrReport",
    tags=["clearing"],
)
async def cdr_report(
    request: Request[Any, Any, State], *, country_code: FromPath[str], party_id: FromPath[str], cdr_id: FromPath[str]
) -> Response[bytes]:
    """Everything clearing holds about one CDR (as ``clearing show``): record, links, findings, price check, history."""
    await require_operator(request, READ_ROLES)
    runtime = _runtime(request)
    async with runtime.sessions() as session:
        try:
            report = await ClearingService(runtime.clock).report(session, country_code, party_id, cdr_id)
        except UnknownRecordError as exc:
            raise NotFoundException(str(exc)) from exc
    return _json(report)


class CommercialIn(msgspec.Struct, forbid_unknown_fields=True):
    state: str
    reason: str


@post(
    "/admin/api/clearing/cdrs/{country_code:str}/{party_id:str}/{cdr_id:str}/commercial",
    operation_id="ClearingCommercialDecision",
    tags=["clearing"],
    status_code=200,
)
async def commercial_decision(
    request: Request[Any, Any, State], *, country_code: FromPath[str], party_id: FromPath[str], cdr_id: FromPath[str]
) -> Response[bytes]:
    """Approve, decline, credit or write off a CDR (``{state, reason}``); answers with the CDR report."""
    operator = await require_operator(request, FINANCE_ROLES)
    try:
        body = msgspec.json.decode(await request.body(), type=CommercialIn)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValidationException(str(exc)) from exc
    runtime = _runtime(request)
    service = ClearingService(runtime.clock)
    try:
        async with runtime.sessions() as session, session.begin():
            await service.set_commercial_state(
                session, country_code, party_id, cdr_id, body.state, actor=operator.name, reason=body.reason
            )
            await _audit(request, session, operator, "clearing.commercial", f"cdr:{country_code}/{party_id}/{cdr_id}",
                         {"state": body.state, "reason": body.reason})  # fmt: skip
        async with runtime.sessions() as session:
            report = await service.report(session, country_code, party_id, cdr_id)
    except UnknownRecordError as exc:
        raise NotFoundException(str(exc)) from exc
    except StateError as exc:
        raise _conflict(exc) from exc
    return _json(report)


@post("/admin/api/clearing/check", operation_id="ClearingCheck", tags=["clearing"], status_code=200)
async def check(request: Request[Any, Any, State]) -> Response[bytes]:
    """Pre-flight a CDR (the body, or ``{"cdr": …, "tariffs": […]}``) against the database; nothing is stored."""
    await require_operator(request, READ_ROLES)
    raw = await request.body()
    try:
        document = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise ValidationException(f"the body is not JSON: {exc}") from exc
    tariffs: bytes | None = None
    if isinstance(document, dict) and "cdr" in document:
        raw = msgspec.json.encode(document["cdr"])
        if document.get("tariffs") is not None:
            tariffs = msgspec.json.encode(document["tariffs"])
    runtime = _runtime(request)
    async with runtime.sessions() as session:
        try:
            report = await ClearingService(runtime.clock).preflight(session, raw, tariffs)
        except RefusedPayload as exc:
            raise ValidationException(exc.message) from exc
    return _json(report)


# --- periods -----------------------------------------------------------------------------------------------------


@get("/admin/api/clearing/periods/{label:str}", operation_id="ClearingPeriod", tags=["clearing"])
async def get_period(request: Request[Any, Any, State], *, label: FromPath[str]) -> Response[bytes]:
    """A period: its bounds, state, who closed it, and its netting (gross, bilateral, multilateral, payment advice)."""
    await require_operator(request, READ_ROLES)
    runtime = _runtime(request)
    async with runtime.sessions() as session:
        try:
            period = await SettlementService(runtime.clock).period(session, label)
        except PeriodError as exc:
            raise NotFoundException(str(exc)) from exc
    return _json(
        {
            "label": period.label,
            "start": period.start,
            "end": period.end,
            "state": period.state,
            "closed_at": period.closed_at,
            "closed_by": period.closed_by,
            "netting": period.netting or {},
        }
    )


@get("/admin/api/clearing/periods/{label:str}/statements", operation_id="ClearingStatements", tags=["clearing"])
async def get_statements(
    request: Request[Any, Any, State], *, label: FromPath[str], party: FromQuery[str | None] = None
) -> Response[bytes]:
    """The period's statements with their lines; ``party=CC/PID`` keeps those where it is the CPO or the eMSP."""
    await require_operator(request, READ_ROLES)
    return _json(await _statements(request, label, _party(party)))


@get("/admin/api/clearing/periods/{label:str}/export.csv", operation_id="ClearingExport", tags=["clearing"])
async def export_csv(
    request: Request[Any, Any, State], *, label: FromPath[str], party: FromQuery[str | None] = None
) -> Response[bytes]:
    """The period's statements and lines as CSV (the schema of ``clearing export``), as an attachment."""
    await require_operator(request, READ_ROLES)
    statements = await _statements(request, label, _party(party))
    out = io.StringIO(newline="")
    write_csv(statements, out)
    suffix = f"-{party.replace('/', '-').upper()}" if party else ""
    return Response(
        out.getvalue().encode(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="settlement-{label}{suffix}.csv"'},
    )


@post(
    "/admin/api/clearing/periods/{label:str}/reconcile",
    operation_id="ClearingReconcile",
    tags=["clearing"],
    status_code=200,
)
async def reconcile_csv(
    request: Request[Any, Any, State], *, label: FromPath[str], party: FromQuery[str]
) -> Response[bytes]:
    """Compare a party's CSV body (``cdr_id,amount`` incl. VAT) with our settled lines; nothing is stored."""
    await require_operator(request, READ_ROLES)
    name = _party(party) or party
    statements = await _statements(request, label, name)
    try:
        theirs = read_party_csv((await request.body()).decode("utf-8-sig"))
    except (ReconcileError, UnicodeDecodeError) as exc:
        raise ValidationException(str(exc)) from exc
    return _json(reconcile(statements, name, label, theirs))


# --- disputes ----------------------------------------------------------------------------------------------------


class DisputeIn(msgspec.Struct, forbid_unknown_fields=True):
    country_code: str
    party_id: str
    cdr_id: str
    reason: str


class ResolveIn(msgspec.Struct, forbid_unknown_fields=True):
    resolution: str
    reason: str
    amount: Decimal | None = None


@get("/admin/api/clearing/disputes", operation_id="ClearingDisputes", tags=["clearing"])
async def get_disputes(request: Request[Any, Any, State]) -> Response[bytes]:
    """Disputes, oldest first; ``state=open`` for those holding CDRs out of settlement."""
    await require_operator(request, READ_ROLES)
    state = request.query_params.get("state")  # not a keyword: ``state`` is Litestar's reserved app state
    runtime = _runtime(request)
    async with runtime.sessions() as session:
        return _json(await SettlementService(runtime.clock).disputes(session, state=state))


@post("/admin/api/clearing/disputes", operation_id="OpenDispute", tags=["clearing"], status_code=201)
async def open_dispute(request: Request[Any, Any, State]) -> Response[bytes]:
    """Open a dispute on a CDR, by the calling operator; the CDR is held out of settlement until it is resolved."""
    operator = await require_operator(request, FINANCE_ROLES)
    try:
        body = msgspec.json.decode(await request.body(), type=DisputeIn)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValidationException(str(exc)) from exc
    runtime = _runtime(request)
    try:
        async with runtime.sessions() as session, session.begin():
            dispute_id = await SettlementService(runtime.clock).open_dispute(
                session, body.country_code, body.party_id, body.cdr_id, actor=operator.name, reason=body.reason
            )
            await _audit(request, session, operator, "clearing.dispute.open", f"dispute:{dispute_id}", body)
    except LookupError as exc:
        raise NotFoundException(str(exc)) from exc
    except PeriodError as exc:
        raise _conflict(exc) from exc
    return _json({"dispute_id": dispute_id}, status_code=201)


@post(
    "/admin/api/clearing/disputes/{dispute_id:int}/resolve",
    operation_id="ResolveDispute",
    tags=["clearing"],
    status_code=200,
)
async def resolve_dispute(request: Request[Any, Any, State], *, dispute_id: FromPath[int]) -> Response[bytes]:
    """Resolve by ``credit`` (the credit CDR taken in), ``adjustment`` (``amount``, next statement) or ``rejection``."""
    operator = await require_operator(request, FINANCE_ROLES)
    try:
        body = msgspec.json.decode(await request.body(), type=ResolveIn)
    except (msgspec.DecodeError, msgspec.ValidationError, InvalidOperation) as exc:
        raise ValidationException(str(exc)) from exc
    if body.resolution not in _RESOLUTIONS:
        raise ValidationException(f"resolution must be one of {', '.join(_RESOLUTIONS)}")
    if (body.resolution == "adjustment") != (body.amount is not None):
        raise ValidationException("an adjustment needs an amount; credit and rejection take none")
    if body.amount is not None and not body.amount.is_finite():
        raise ValidationException("the amount must be a finite number")
    runtime = _runtime(request)
    try:
        async with runtime.sessions() as session, session.begin():
            report = await SettlementService(runtime.clock).resolve_dispute(
                session, dispute_id, body.resolution, actor=operator.name, reason=body.reason, amount=body.amount
            )
            await _audit(request, session, operator, "clearing.dispute.resolve", f"dispute:{dispute_id}", body)
    except LookupError as exc:
        raise NotFoundException(str(exc)) from exc
    except PeriodError as exc:
        raise _conflict(exc) from exc
    return _json(report)


ROUTES = [
    cdr_report,
    commercial_decision,
    check,
    get_period,
    get_statements,
    export_csv,
    reconcile_csv,
    get_disputes,
    open_dispute,
    resolve_dispute,
]
