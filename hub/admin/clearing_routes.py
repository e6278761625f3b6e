"""The clearing part of the JSON admin API (DESIGN §9): commercial terms, CDR intake uploads, CDR reports, pre-flight
checks, periods and their close, statements, CSV and XLSX exports, reconciliation, disputes and commercial decisions
under ``/admin/api/clearing/`` (ADR 0208, ADR 0210).

Like the CLI (``clearing.cli``) this module sits above clearing and calls the same service methods; it adds only
HTTP: roles (reads for admin/finance/viewer, writes for admin/finance), status codes and encoding. Amounts stay
``Decimal`` and go out as JSON numbers. Every write also appends a row to the hub's audit log in its transaction.
"""

from __future__ import annotations

import asyncio
import io
import re
import tempfile
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import ClientException, NotFoundException, ValidationException
from litestar.params import FromPath, FromQuery
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from clearing.document import RefusedPayload
from clearing.intake import (
    DEFAULT_BATCH_SIZE,
    ClearingService,
    IntakeItem,
    IntakeOutcome,
    IntakeSummary,
    UnknownRecordError,
    batches,
    iter_file,
    run_sync,
)
from clearing.schedule import CLOSE_LOCK, ClearingLock, due_periods
from clearing.settlement.exports import ReconcileError, read_party_csv, reconcile, write_csv, write_xlsx
from clearing.settlement.models import PeriodRow, StatementRow, TermsRow
from clearing.settlement.netting import NettingError
from clearing.settlement.service import PeriodError, SettlementService, StatementReport, month_bounds
from clearing.settlement.terms import Terms, TermsError, parse_party
from clearing.states import StateError
from hub.admin.controllers import FINANCE_ROLES, READ_ROLES, require_operator
from hub.admin.params import RowId
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


def _pair_party(country_code: str, party_id: str) -> str:
    return _party(f"{country_code}/{party_id}") or f"{country_code}/{party_id}"


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
    request: Request[Any, Any, State],
    session: Any,
    operator: Operator,
    action: str,
    target: str,
    after: object,
    before: object = None,
) -> None:
    await record_audit(
        session,
        actor=operator,
        action=action,
        target=target,
        before=None if before is None else msgspec.to_builtins(before),
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
async def resolve_dispute(request: Request[Any, Any, State], *, dispute_id: RowId) -> Response[bytes]:
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


# --- commercial terms (ADR 0208) -----------------------------------------------------------------------------------

_TERMS_FIELDS: Final = frozenset(Terms.__struct_fields__)


def _terms_json(terms_id: int | None, terms: Terms) -> dict[str, Any]:
    return {"id": terms_id, **msgspec.to_builtins(terms, builtin_types=(Decimal, datetime))}


def _decode_terms(raw: bytes) -> Terms:
    """The body as `Terms`: unknown fields refused, parties and currency normalised, naive times taken as UTC."""
    try:
        members = msgspec.json.decode(raw, type=dict[str, msgspec.Raw])
        unknown = sorted(set(members) - _TERMS_FIELDS)
        if unknown:
            raise ValidationException(
                f"unknown field(s) {', '.join(unknown)}; terms have {', '.join(sorted(_TERMS_FIELDS))}"
            )
        terms = msgspec.json.decode(raw, type=Terms)
        valid_from = terms.valid_from if terms.valid_from.tzinfo else terms.valid_from.replace(tzinfo=UTC)
        (cpo_cc, cpo_pid), (emsp_cc, emsp_pid) = parse_party(terms.cpo), parse_party(terms.emsp)
        terms = msgspec.structs.replace(
            terms, cpo=f"{cpo_cc}/{cpo_pid}", emsp=f"{emsp_cc}/{emsp_pid}", valid_from=valid_from.astimezone(UTC),
            currency=terms.currency.upper(),
        )  # fmt: skip
        terms.check()
    except (msgspec.ValidationError, TermsError, ArithmeticError) as exc:
        raise ValidationException(str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise ValidationException(f"the body is not JSON: {exc}") from exc
    if any(not rule.rate.is_finite() for rule in terms.fees.values()) or (
        terms.tolerance is not None and not terms.tolerance.is_finite()
    ):
        raise ValidationException("rates and the tolerance must be finite numbers")
    return terms


async def _terms_ids(session: AsyncSession) -> dict[tuple[str, str, datetime], int]:
    rows = await session.execute(
        select(TermsRow.id, TermsRow.cpo_country_code, TermsRow.cpo_party_id, TermsRow.emsp_country_code,
               TermsRow.emsp_party_id, TermsRow.valid_from)
    )  # fmt: skip
    return {(f"{r[1]}/{r[2]}", f"{r[3]}/{r[4]}", r[5]): r[0] for r in rows}


@get("/admin/api/clearing/terms", operation_id="ListClearingTerms", tags=["clearing"])
async def list_terms(
    request: Request[Any, Any, State], *, cpo: FromQuery[str | None] = None, emsp: FromQuery[str | None] = None
) -> Response[bytes]:
    """Every version of every pair's commercial terms (``cpo``/``emsp`` = CC/PID to filter), by pair and date."""
    await require_operator(request, READ_ROLES)
    cpo, emsp = _party(cpo), _party(emsp)
    runtime = _runtime(request)
    async with runtime.sessions() as session:
        ids = await _terms_ids(session)
        versions = await SettlementService(runtime.clock).list_terms(session)
    return _json(
        [
            _terms_json(ids.get((t.cpo, t.emsp, t.valid_from)), t)
            for t in versions
            if (cpo is None or t.cpo == cpo) and (emsp is None or t.emsp == emsp)
        ]
    )


@get("/admin/api/clearing/terms/{terms_id:int}", operation_id="GetClearingTerms", tags=["clearing"])
async def get_terms(request: Request[Any, Any, State], *, terms_id: RowId) -> Response[bytes]:
    """One version of a pair's terms by its id."""
    await require_operator(request, READ_ROLES)
    runtime = _runtime(request)
    async with runtime.sessions() as session:
        row = await session.get(TermsRow, terms_id)
        if row is None:
            raise NotFoundException(f"no terms {terms_id}")
        found_id, terms = await SettlementService(runtime.clock).terms_for(
            session,
            f"{row.cpo_country_code}/{row.cpo_party_id}",
            f"{row.emsp_country_code}/{row.emsp_party_id}",
            row.valid_from,
        )
    return _json(_terms_json(found_id, terms))


@get(
    "/admin/api/clearing/terms/{cpo_cc:str}/{cpo_pid:str}/{emsp_cc:str}/{emsp_pid:str}",
    operation_id="ClearingTermsInForce",
    tags=["clearing"],
)
async def terms_in_force(
    request: Request[Any, Any, State],
    *,
    cpo_cc: FromPath[str],
    cpo_pid: FromPath[str],
    emsp_cc: FromPath[str],
    emsp_pid: FromPath[str],
    at: FromQuery[datetime | None] = None,
) -> Response[bytes]:
    """The pair's terms in force at ``at`` (default: now); 404 when the pair settles with the defaults then."""
    await require_operator(request, READ_ROLES)
    cpo, emsp = _pair_party(cpo_cc, cpo_pid), _pair_party(emsp_cc, emsp_pid)
    runtime = _runtime(request)
    moment = runtime.clock.now() if at is None else at if at.tzinfo else at.replace(tzinfo=UTC)
    async with runtime.sessions() as session:
        terms_id, terms = await SettlementService(runtime.clock).terms_for(session, cpo, emsp, moment)
    if terms_id is None:
        raise NotFoundException(
            f"no terms between {cpo} and {emsp} in force at {moment.isoformat()}: the pair settles with the defaults "
            f"({terms.currency}, no fees, approval window {terms.approval_window_days} days)"
        )
    return _json(_terms_json(terms_id, terms))


@post("/admin/api/clearing/terms", operation_id="SetClearingTerms", tags=["clearing"], status_code=201)
async def set_terms(request: Request[Any, Any, State]) -> Response[bytes]:
    """Record a version of a pair's terms, in force from ``valid_from`` (the terms' fields, fees as
    ``{"per_session": {"rate": 0.10, "payer": "cpo"}, …}``). The same pair and ``valid_from`` replace that version,
    unless a closed period's statements used it (409: record a later version instead)."""
    operator = await require_operator(request, FINANCE_ROLES)
    terms = _decode_terms(await request.body())
    runtime = _runtime(request)
    service = SettlementService(runtime.clock)
    async with runtime.sessions() as session, session.begin():
        old_id, old = await service.terms_for(session, terms.cpo, terms.emsp, terms.valid_from)
        replaced = old_id is not None and old.valid_from == terms.valid_from
        if replaced:
            used = await session.scalar(
                select(PeriodRow.label)
                .join(StatementRow, StatementRow.period_id == PeriodRow.id)
                .where(StatementRow.terms_id == old_id, PeriodRow.state == "closed")
                .limit(1)
            )
            if used is not None:
                raise _conflict(
                    PeriodError(
                        f"terms {old_id} ({terms.cpo} -> {terms.emsp} from {terms.valid_from.isoformat()}) settled "
                        f"closed period {used}; record a version with a later valid_from instead"
                    )
                )
        terms_id = await service.set_terms(session, terms, actor=operator.name)
        await _audit(request, session, operator, "clearing.terms.set", f"terms:{terms_id}",
                     _terms_json(terms_id, terms), before=_terms_json(old_id, old) if replaced else None)  # fmt: skip
    return _json({**_terms_json(terms_id, terms), "replaced": replaced}, status_code=201)


# --- CDR intake uploads --------------------------------------------------------------------------------------------

#: The largest intake upload; it is spooled to a temporary file and taken in batch by batch, never held in memory.
MAX_UPLOAD: Final = 1 << 30
_NDJSON: Final = ("ndjson", "jsonl", "json-seq", "jsonlines")
_RESULTS: Final = ("all", "refused", "none")


async def take_in_batch(
    session: AsyncSession, service: ClearingService, items: Sequence[IntakeItem], *, actor: str
) -> list[IntakeOutcome]:
    """The one place the upload hands a batch to clearing (a bulk intake path plugs in here)."""
    return await service.take_in(session, items, actor=actor)


async def _spool(request: Request[Any, Any, State], path: Path) -> int:
    size = 0
    with path.open("wb") as handle:
        async for chunk in request.stream():
            size += len(chunk)
            handle.write(chunk)
    return size


@post(
    "/admin/api/clearing/cdrs",
    operation_id="ClearingIntake",
    tags=["clearing"],
    status_code=200,
    request_max_body_size=MAX_UPLOAD,
)
async def intake(
    request: Request[Any, Any, State],
    *,
    results: FromQuery[str] = "all",
    batch_size: FromQuery[int] = DEFAULT_BATCH_SIZE,
) -> Response[bytes]:
    """Take CDRs in: one CDR, a JSON array, an OCPI envelope, or NDJSON (``Content-Type: application/x-ndjson``).

    Idempotent: a CDR taken in before with the same content is a ``duplicate`` (a replay, nothing changes), with other
    content a ``conflict``; unreadable ones are ``invalid``. The body is spooled to disk and taken in in batches of
    ``batch_size``, one transaction and one audit row per batch. Answers the summary and, per ``results`` (``all``,
    ``refused`` or ``none``), the outcome of each CDR in upload order.
    """
    operator = await require_operator(request, FINANCE_ROLES)
    if results not in _RESULTS:
        raise ValidationException(f"results must be one of {', '.join(_RESULTS)}")
    if not 1 <= batch_size <= 10_000:
        raise ValidationException("batch_size must be between 1 and 10000")
    content_type = request.headers.get("content-type", "").lower()
    suffix = ".ndjson" if any(kind in content_type for kind in _NDJSON) else ".json"
    runtime = _runtime(request)
    service = ClearingService(runtime.clock)
    summary = IntakeSummary()
    shown: list[IntakeOutcome] = []
    with tempfile.TemporaryDirectory(prefix="ocpi-hub-intake-") as folder:
        path = Path(folder) / f"upload{suffix}"
        if await _spool(request, path) == 0:
            raise ValidationException("the body is empty: send a CDR, a JSON array of CDRs or NDJSON")
        try:
            _, payloads = await asyncio.to_thread(iter_file, path)
        except (RefusedPayload, msgspec.DecodeError) as exc:
            message = exc.message if isinstance(exc, RefusedPayload) else f"the body is not JSON: {exc}"
            if suffix == ".json":
                message += " (one CDR per line is NDJSON: send it with Content-Type: application/x-ndjson)"
            raise ValidationException(message) from exc
        ref = f"admin-api:{operator.name}"[:255]
        for number, batch in enumerate(batches(payloads, batch_size), start=1):
            items = [IntakeItem(raw, "api", ref) for raw in batch]
            async with runtime.sessions() as session, session.begin():
                outcomes = await take_in_batch(session, service, items, actor=operator.name)
                part = IntakeSummary()
                part.add(outcomes)
                after = {"batch": number, "seen": part.seen, "accepted": part.accepted, "duplicates": part.duplicates,
                         "conflicts": part.conflicts, "invalid": part.invalid,
                         "cdrs": [o.cdr for o in outcomes if o.status == "accepted"]}  # fmt: skip
                await _audit(request, session, operator, "clearing.intake", "clearing:intake", after)
            summary.add(outcomes)
            if results == "all":
                shown.extend(outcomes)
            elif results == "refused":
                shown.extend(o for o in outcomes if o.status in ("conflict", "invalid"))
    return _json({"summary": summary, "results": shown})


# --- periods: list, close, XLSX ---------------------------------------------------------------------------------

_MONTH: Final = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


@get("/admin/api/clearing/periods", operation_id="ClearingPeriods", tags=["clearing"])
async def list_periods(request: Request[Any, Any, State]) -> Response[bytes]:
    """Every period, oldest first, with its state; ``closes_at`` is when the schedule closes one not closed yet
    (its end plus HUB_CLEARING_CLOSE_GRACE)."""
    await require_operator(request, READ_ROLES)
    runtime = _runtime(request)
    grace = timedelta(seconds=runtime.settings.clearing_close_grace)
    async with runtime.sessions() as session:
        rows = (await session.scalars(select(PeriodRow).order_by(PeriodRow.start))).all()
    return _json(
        [
            {"label": p.label, "start": p.start, "end": p.end, "state": p.state, "closed_at": p.closed_at,
             "closed_by": p.closed_by, "closes_at": None if p.state == "closed" else p.end + grace}
            for p in rows
        ]
    )  # fmt: skip


@post(
    "/admin/api/clearing/periods/{label:str}/close",
    operation_id="CloseClearingPeriod",
    tags=["clearing"],
    status_code=200,
)
async def close_period(request: Request[Any, Any, State], *, label: FromPath[str]) -> Response[bytes]:
    """Close a period that has ended (a calendar month ``YYYY-MM`` or an existing period): statements per (CPO, eMSP,
    currency) and netting. Idempotent: a closed period answers as it is (``already_closed``)."""
    operator = await require_operator(request, FINANCE_ROLES)
    runtime = _runtime(request)
    async with runtime.sessions() as session:
        period = await session.scalar(select(PeriodRow).where(PeriodRow.label == label))
    if period is None and not _MONTH.fullmatch(label):
        raise ValidationException(f"period {label!r} is not YYYY-MM and no such period exists")
    end = period.end if period is not None else month_bounds(label)[1]
    now = runtime.clock.now()
    if (period is None or period.state != "closed") and end > now:
        raise _conflict(PeriodError(f"period {label} ends at {end.isoformat()}; it can be closed after its end"))
    async with ClearingLock(runtime.engine, CLOSE_LOCK).hold() as held:
        if not held:
            raise _conflict(PeriodError("another close is running; try again when it has finished"))
        try:
            result = await SettlementService(runtime.clock).close_period(runtime.sessions, label, actor=operator.name)
        except (PeriodError, NettingError, TermsError) as exc:
            raise _conflict(exc) from exc
    async with runtime.sessions() as session, session.begin():
        await _audit(request, session, operator, "clearing.period.close", f"period:{label}",
                     {"state": result.state, "already_closed": result.already_closed,
                      "statements": result.statements})  # fmt: skip
    return _json(result)


@get("/admin/api/clearing/periods/{label:str}/export.xlsx", operation_id="ClearingExportXlsx", tags=["clearing"])
async def export_xlsx(
    request: Request[Any, Any, State], *, label: FromPath[str], party: FromQuery[str | None] = None
) -> Response[bytes]:
    """The period's statements and lines as an XLSX workbook (sheet "settlement", the columns of the CSV export)."""
    await require_operator(request, READ_ROLES)
    statements = await _statements(request, label, _party(party))

    def build() -> bytes:
        with tempfile.TemporaryDirectory(prefix="ocpi-hub-export-") as folder:
            path = Path(folder) / "settlement.xlsx"
            write_xlsx(statements, path)
            return path.read_bytes()

    suffix = f"-{party.replace('/', '-').upper()}" if party else ""
    return Response(
        await asyncio.to_thread(build),
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": f'attachment; filename="settlement-{label}{suffix}.xlsx"'},
    )


# --- reference rates (ADR 0209) and intake from the hub's store ----------------------------------------------------


class RateIn(msgspec.Struct, forbid_unknown_fields=True):
    base: str
    quote: str
    rate: Decimal
    rate_date: date
    source: str


@get("/admin/api/clearing/periods/{label:str}/rates", operation_id="ClearingRates", tags=["clearing"])
async def get_rates(request: Request[Any, Any, State], *, label: FromPath[str]) -> Response[bytes]:
    """The period's reference exchange rates (for agreements that convert into a settlement currency)."""
    await require_operator(request, READ_ROLES)
    runtime = _runtime(request)
    async with runtime.sessions() as session:
        try:
            return _json(await SettlementService(runtime.clock).rates(session, label))
        except PeriodError as exc:
            raise NotFoundException(str(exc)) from exc


@post(
    "/admin/api/clearing/periods/{label:str}/rates", operation_id="SetClearingRate", tags=["clearing"], status_code=201
)
async def set_rate(request: Request[Any, Any, State], *, label: FromPath[str]) -> Response[bytes]:
    """Fix the period's rate: 1 ``base`` = ``rate`` ``quote`` on ``rate_date`` from ``source`` (the same pair and
    source replaced); 409 once the period is closed (its rates are fixed)."""
    operator = await require_operator(request, FINANCE_ROLES)
    try:
        body = msgspec.json.decode(await request.body(), type=RateIn)
    except (msgspec.DecodeError, InvalidOperation) as exc:
        raise ValidationException(str(exc)) from exc
    runtime = _runtime(request)
    async with runtime.sessions() as session, session.begin():
        state = await session.scalar(select(PeriodRow.state).where(PeriodRow.label == label))
        if state == "closed":
            raise _conflict(PeriodError(f"period {label} is closed: its reference rates are fixed"))
        try:
            report = await SettlementService(runtime.clock).set_rate(
                session, label, body.base, body.quote, body.rate, body.rate_date, body.source, actor=operator.name
            )
        except PeriodError as exc:
            raise ValidationException(str(exc)) from exc
        await _audit(request, session, operator, "clearing.rate.set", f"period:{label}", report)
    return _json(report, status_code=201)


@post("/admin/api/clearing/sync", operation_id="ClearingSync", tags=["clearing"], status_code=200)
async def sync_store(request: Request[Any, Any, State], *, limit: FromQuery[int | None] = None) -> Response[bytes]:
    """Take in now the CDRs the hub stored that clearing has not taken in yet (the schedule does it every minute);
    ``limit`` stops after that many. Answers the intake summary."""
    operator = await require_operator(request, FINANCE_ROLES)
    if limit is not None and limit < 1:
        raise ValidationException("limit must be 1 or more")
    runtime = _runtime(request)
    summary = await run_sync(runtime.sessions, ClearingService(runtime.clock), limit=limit, actor=operator.name)
    async with runtime.sessions() as session, session.begin():
        counts = {key: value for key, value in msgspec.to_builtins(summary).items() if key != "file_sha256"}
        await _audit(request, session, operator, "clearing.sync", "clearing:intake", counts)
    return _json(summary)


@get("/admin/api/clearing/schedule", operation_id="ClearingSchedule", tags=["clearing"])
async def get_schedule(request: Request[Any, Any, State]) -> Response[bytes]:
    """How the clearing schedule runs here and what it would close now: ``due`` lists the periods (existing, or
    calendar months still to create) whose end plus the grace has passed and that are not closed yet."""
    await require_operator(request, READ_ROLES)
    runtime = _runtime(request)
    settings = runtime.settings
    now = runtime.clock.now()
    async with runtime.sessions() as session:
        due = await due_periods(session, now, timedelta(seconds=settings.clearing_close_grace))
    return _json(
        {
            "runs": "worker cron, every minute" if settings.redis_url else "in-process timer",
            "interval_seconds": 60.0 if settings.redis_url else settings.clearing_interval,
            "close_grace_seconds": settings.clearing_close_grace,
            "now": now,
            "due": due,
        }
    )


ROUTES = [
    get_schedule,
    get_rates,
    set_rate,
    sync_store,
    list_terms,
    get_terms,
    terms_in_force,
    set_terms,
    intake,
    list_periods,
    close_period,
    export_xlsx,
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
