"""What ``ocpi-hub demo`` shows: rich tables for people, a JSON summary for tools and tests."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from hub.sim.world import DemoResult


def summary(result: DemoResult) -> dict[str, Any]:
    """The demo's outcome as JSON-ready builtins (amounts as strings, exact)."""
    statements = [
        {
            "cpo": s.cpo,
            "emsp": s.emsp,
            "currency": s.currency,
            "cdr_count": s.cdr_count,
            "excluded_count": s.excluded_count,
            "total_energy": str(s.total_energy),
            "amount_incl_vat": str(s.amount_incl_vat),
            "fees_cpo": str(s.fees_cpo),
            "fees_emsp": str(s.fees_emsp),
            "payable": str(s.payable),
        }
        for s in result.statements
    ]
    return {
        "hub_url": result.hub_url,
        "admin_url": result.admin_url,
        "admin_key": result.admin_key,
        "dashboard_url": result.dashboard_url,
        "platforms": result.platforms,
        "sessions": {
            "requested": result.sessions_requested,
            "completed": result.sessions_completed,
            "failed": result.sessions_failed,
            "errors": result.errors[:10],
        },
        "cdrs": {"sent": result.cdrs_sent, "received": result.cdrs_received, "wrong_price": result.mismatches_sent},
        "intake": msgspec.to_builtins(result.intake, builtin_types=(), str_keys=True),
        "period": {"label": result.period, "state": result.period_state},
        "statements": statements,
        "net_positions": positions(result.netting),
        "payments": msgspec.to_builtins(result.netting.get("payments", [])),
        "seconds": round(result.seconds, 2),
    }


def positions(netting: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Multilateral net position after fees per currency and party (positive: receives)."""
    after = netting.get("multilateral_after_fees") or {}
    return {currency: {party: str(amount) for party, amount in parties.items()} for currency, parties in after.items()}


def print_result(console: Console, result: DemoResult) -> None:
    platforms = Table(title="Platforms registered with the hub")
    for column in ("name", "party", "role", "versions URL", "registered"):
        platforms.add_column(column)
    for p in result.platforms:
        platforms.add_row(p["name"], p["party"], p["role"], p["versions_url"], "yes" if p["registered"] else "no")
    console.print(platforms)
    console.print(
        f"Sessions: {result.sessions_completed} of {result.sessions_requested} completed"
        f" ({result.sessions_failed} failed); CDRs sent {result.cdrs_sent}, received by eMSPs {result.cdrs_received},"
        f" {result.mismatches_sent} with a wrong price"
    )
    for error in result.errors[:5]:
        console.print(f"  [red]{error}[/red]")
    intake = result.intake
    console.print(
        f"Clearing intake: {intake.get('seen', 0)} CDRs seen, {intake.get('accepted', 0)} accepted;"
        f" price check {intake.get('pricing', {})}; period {result.period}: {result.period_state}"
    )
    statements = Table(title=f"Statements {result.period}")
    for column in ("CPO", "eMSP", "CDRs", "excluded", "kWh", "incl. VAT", "fees CPO", "fees eMSP", "payable"):
        statements.add_column(column, justify="right" if column not in ("CPO", "eMSP") else "left")
    for s in result.statements:
        statements.add_row(
            s.cpo, s.emsp, str(s.cdr_count), str(s.excluded_count), f"{Decimal(str(s.total_energy)):.2f}",
            str(s.amount_incl_vat), str(s.fees_cpo), str(s.fees_emsp), str(s.payable),
        )  # fmt: skip
    console.print(statements)
    net = Table(title="Net positions after fees (positive: receives)")
    for column in ("currency", "party", "position"):
        net.add_column(column)
    for currency, parties in positions(result.netting).items():
        for party, amount in sorted(parties.items(), key=lambda item: Decimal(item[1])):
            net.add_row(currency, party, amount)
    console.print(net)
    console.print(f"Dashboard: {result.dashboard_url}  (sign in with the key {result.admin_key})")
    console.print(f"Admin API: {result.admin_url}  (Authorization: Bearer {result.admin_key})")
    console.print(f"Data in {result.folder} (removed when the demo ends)")
