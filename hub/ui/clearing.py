"""Clearing for finance: periods with their state, a period's statements per counterparty with the chart of net
positions and the payment advice, one CDR's explanation (pricing breakdown, validation findings, history), disputes.

Reads go through the clearing services the admin API and the CLI use; opening a dispute is the admin API's action
(finance and admin roles) with its audit row.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.params import FromPath

from clearing.browse import explain_price, list_cdrs, list_periods, statement_parties
from clearing.intake import ClearingService, UnknownRecordError
from clearing.settlement.service import PeriodError, SettlementService, StatementReport
from clearing.settlement.terms import TermsError, parse_party
from hub.admin.controllers import FINANCE_ROLES
from hub.admin.service import record_audit
from hub.ui import params
from hub.ui.auth import UiError, redirect, require_action, require_user, runtime_of
from hub.ui.charts import net_positions_chart
from hub.ui.render import page

PAGE: Final = 100
PRICING_STATES: Final = ("matched", "within_tolerance", "mismatch", "unpriceable")
DISPUTE_STATES: Final = ("open", "credited", "adjusted", "rejected")


def party_param(request: Request[Any, Any, State], name: str = "party") -> str | None:
    value = params.text(request, name, max_length=6)
    if value is None:
        return None
    try:
        cc, pid = parse_party(value)
    except TermsError as exc:
        raise UiError(status_code=400, detail=str(exc)) from exc
    return f"{cc}/{pid}"


@get("/clearing", name="ui-clearing", include_in_schema=False)
async def clearing_home(request: Request[Any, Any, State]) -> Response[str]:
    user = await require_user(request)
    party = party_param(request)
    cdr_id = params.text(request, "cdr_id", max_length=39)
    pricing = params.text(request, "pricing", max_length=16)
    if pricing is not None and pricing not in PRICING_STATES:
        raise UiError(status_code=400, detail=f"pricing must be one of {', '.join(PRICING_STATES)}")
    async with runtime_of(request).sessions() as session:
        periods = await list_periods(session)
        cdrs = await list_cdrs(session, party=party, cdr_id=cdr_id, pricing_state=pricing, limit=PAGE)
    form = {"party": party or "", "cdr_id": cdr_id or "", "pricing": pricing or ""}
    return page(request, "clearing.html", user=user, section="clearing", periods=periods, cdrs=cdrs, form=form,
                pricing_states=PRICING_STATES, limit=PAGE)  # fmt: skip


def _positions(netting: dict[str, Any]) -> list[tuple[str, list[tuple[str, Decimal]]]]:
    after = netting.get("multilateral_after_fees") or {}
    return [
        (currency, [(party, Decimal(str(value))) for party, value in parties.items()])
        for currency, parties in sorted(after.items())
    ]


@get("/clearing/periods/{label:str}", name="ui-period", include_in_schema=False)
async def period(request: Request[Any, Any, State], label: FromPath[str]) -> Response[str]:
    user = await require_user(request)
    party = party_param(request)
    runtime = runtime_of(request)
    settlement = SettlementService(runtime.clock)
    async with runtime.sessions() as session:
        try:
            row = await settlement.period(session, label)
            statements = await settlement.statements(session, label, party)
        except PeriodError as exc:
            raise UiError(status_code=404, detail=str(exc)) from exc
        parties = (await statement_parties(session, [label]))[label]
    netting = row.netting or {}
    charts = [(currency, net_positions_chart(rows, currency)) for currency, rows in _positions(netting) if rows]
    payments = [p for p in netting.get("payments", []) if party is None or party in (p.get("payer"), p.get("payee"))]
    return page(request, "period.html", user=user, section="clearing", period=row, statements=statements,
                charts=charts, payments=payments, party=party, parties=parties,
                hub_fees=netting.get("hub_fees", {}), totals=_totals(statements))  # fmt: skip


def _totals(statements: list[StatementReport]) -> dict[str, dict[str, Decimal]]:
    totals: dict[str, dict[str, Decimal]] = {}
    for s in statements:
        row = totals.setdefault(s.currency, {"payable": Decimal(0), "fees": Decimal(0), "energy": Decimal(0)})
        row["payable"] += s.payable
        row["fees"] += s.fees_cpo + s.fees_emsp
        row["energy"] += s.total_energy
    return totals


@get("/clearing/cdrs/{country_code:str}/{party_id:str}/{cdr_id:str}", name="ui-cdr", include_in_schema=False)
async def cdr(
    request: Request[Any, Any, State], country_code: FromPath[str], party_id: FromPath[str], cdr_id: FromPath[str]
) -> Response[str]:
    user = await require_user(request)
    runtime = runtime_of(request)
    async with runtime.sessions() as session:
        try:
            report = await ClearingService(runtime.clock).report(session, country_code, party_id, cdr_id)
        except UnknownRecordError as exc:
            raise UiError(status_code=404, detail=str(exc)) from exc
        key = f"{report.record['country_code']}/{report.record['party_id']}/{report.record['cdr_id']}"
        disputes = [d for d in await SettlementService(runtime.clock).disputes(session) if d.cdr == key]
        price = report.price or {}
        explanation = price.get("explanation") or {}
        recomputed = price.get("outcome") == "matched" and not explanation and bool(price.get("time_zone"))
        if recomputed:
            record = report.record
            explanation = await explain_price(session, record["country_code"], record["party_id"],
                                              record["cdr_id"], time_zone=price["time_zone"]) or {}  # fmt: skip
    return page(request, "cdr.html", user=user, section="clearing", report=report, record=report.record,
                price=price, lines=explanation.get("lines") or [],
                steps=explanation.get("step_adjustments") or [], limits=explanation.get("limit_adjustments") or [],
                disputes=disputes, recomputed=recomputed and bool(explanation),
                notice=request.query_params.get("done") == "dispute")  # fmt: skip


@post(
    "/clearing/cdrs/{country_code:str}/{party_id:str}/{cdr_id:str}/dispute",
    name="ui-cdr-dispute",
    include_in_schema=False,
    status_code=303,
)
async def open_dispute(
    request: Request[Any, Any, State], country_code: FromPath[str], party_id: FromPath[str], cdr_id: FromPath[str]
) -> Response[str]:
    user, form = await require_action(request, FINANCE_ROLES)
    reason = form.get("reason", "").strip()
    if not reason:
        raise UiError(status_code=400, detail="a dispute needs a reason")
    runtime = runtime_of(request)
    try:
        async with runtime.sessions() as session, session.begin():
            dispute_id = await SettlementService(runtime.clock).open_dispute(
                session, country_code, party_id, cdr_id, actor=user.name, reason=reason
            )
            await record_audit(
                session, actor=user.operator, action="clearing.dispute.open", target=f"dispute:{dispute_id}",
                before=None, after={"country_code": country_code, "party_id": party_id, "cdr_id": cdr_id,
                                    "reason": reason}, now=runtime.clock.now(),
            )  # fmt: skip
    except LookupError as exc:
        raise UiError(status_code=404, detail=str(exc)) from exc
    except PeriodError as exc:
        raise UiError(status_code=409, detail=str(exc)) from exc
    return redirect(f"/ui/clearing/cdrs/{country_code}/{party_id}/{cdr_id}?done=dispute")


@get("/clearing/disputes", name="ui-disputes", include_in_schema=False)
async def disputes(request: Request[Any, Any, State]) -> Response[str]:
    user = await require_user(request)
    state = params.text(request, "state", max_length=16)
    if state is not None and state not in DISPUTE_STATES:
        raise UiError(status_code=400, detail=f"state must be one of {', '.join(DISPUTE_STATES)}")
    runtime = runtime_of(request)
    async with runtime.sessions() as session:
        rows = await SettlementService(runtime.clock).disputes(session, state=state)
    return page(request, "disputes.html", user=user, section="clearing", disputes=rows, state=state or "",
                states=DISPUTE_STATES)  # fmt: skip


ROUTES = [clearing_home, period, cdr, open_dispute, disputes]
