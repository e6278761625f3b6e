"""Command line for the clearing house (mounted by the composition root, ``hub.cli``):

* ``ocpi-hub clearing price --cdr FILE [--tariff FILE] [--time-zone TZ]``: the pure pricing engine;
* ``ocpi-hub clearing check --cdr FILE [--tariff FILE] [--time-zone TZ] [--store]``: pre-flight, nothing stored;
* ``ocpi-hub clearing import FILE``: take in the CDRs of a JSON file, with a progress bar and a summary;
* ``ocpi-hub clearing sync``: take in the CDRs the hub stored and clearing has not taken in yet;
* ``ocpi-hub clearing show COUNTRY_CODE PARTY_ID CDR_ID``: everything clearing holds about one CDR;
* ``ocpi-hub clearing terms set/list``, ``close-period [--period YYYY-MM]``, ``statement --period P [--party CC/PID]
  [--json]``, ``export --period P --format csv --out FILE``, ``reconcile --period P --party CC/PID --file F``,
  ``dispute open/resolve``: settlement (ADR 0208);
* ``ocpi-hub clearing run-schedule [--grace SECONDS] [--json]``: the worker's clearing schedule once (intake of stored
  CDRs, then every due period closed; ADR 0210);
* ``ocpi-hub clearing rates set --period P --from USD --to EUR --rate 0.92 --date 2026-10-31 --source ECB`` and
  ``rates list --period P``: the period's reference rates for agreements that convert currencies (ADR 0209).

Machine-readable output goes to stdout as JSON (numbers as JSON numbers); progress bars and tables go to stderr.
The commands that need the database read ``HUB_DATABASE_URL`` (DESIGN §9) with the hub's default; clearing does
not import the hub's settings (ADR 0207).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, TypeVar

import click
import msgspec
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from clearing.checks import check_cdr
from clearing.document import RefusedPayload
from clearing.intake import (
    DEFAULT_BATCH_SIZE,
    ClearingService,
    IntakeSummary,
    UnknownRecordError,
    import_file,
    run_sync,
)
from clearing.pricing import InputError, PricingError, Tariff, decode_cdr, decode_tariffs, price_cdr
from clearing.schedule import DEFAULT_GRACE, ScheduleResult, run_scheduled
from clearing.settlement.exports import (
    EXPORT_SCHEMA_VERSION,
    ReconcileError,
    read_party_csv,
    reconcile,
    write_csv,
    write_xlsx,
)
from clearing.settlement.netting import NettingError
from clearing.settlement.service import (
    CloseResult,
    PeriodError,
    RateReport,
    SettlementService,
    StatementReport,
    previous_month,
)
from clearing.settlement.terms import (
    DEFAULT_APPROVAL_WINDOW_DAYS,
    FEE_KINDS,
    ROUNDING_RULES,
    VAT_REGIMES,
    FeeRule,
    Terms,
    TermsError,
    parse_party,
)
from clearing.verification import DEFAULT_TOLERANCE
from hub.platform.clock import SystemClock
from hub.platform.db import create_engine, create_sessionmaker

__all__ = [
    "DEFAULT_DATABASE_URL",
    "check_command",
    "clearing_group",
    "close_period_command",
    "dispute_group",
    "export_command",
    "import_command",
    "intake_commands",
    "price_command",
    "rates_group",
    "reconcile_command",
    "run_schedule_command",
    "settlement_commands",
    "show_command",
    "statement_command",
    "sync_command",
    "terms_group",
]

T = TypeVar("T")

#: The hub's embedded default (DESIGN §9); a test keeps it equal to ``hub.settings.DEFAULT_DATABASE_URL``.
DEFAULT_DATABASE_URL: Final = "sqlite+aiosqlite:///./ocpi-hub.db"

# Decimals as JSON numbers, not strings (types "number"), so consumers read amounts without parsing strings.
_ENCODER: Final = msgspec.json.Encoder(decimal_format="number")


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise click.ClickException(f"cannot read the {what} file {path}: {exc.strerror or exc}") from None


def _tariffs(path: Path) -> list[Tariff]:
    try:
        tariffs = decode_tariffs(_read(path, "tariff"))
    except InputError as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    if not tariffs:
        raise click.ClickException(f"{path}: the tariff file holds an empty list; give at least one Tariff")
    return tariffs


@click.command("price")
@click.option(
    "--cdr",
    "cdr_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON file with one OCPI 2.2.1 CDR.",
)
@click.option(
    "--tariff",
    "tariff_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSON file with one Tariff or a list of Tariffs; default: the CDR's own tariffs.",
)
@click.option(
    "--time-zone",
    default=None,
    help="IANA time zone of the location (e.g. Europe/Amsterdam); default: the CDR location's, else UTC.",
)
def price_command(cdr_file: Path, tariff_file: Path | None, time_zone: str | None) -> None:
    """Recompute a CDR's totals from its charging periods and print them, with lines and warnings, as JSON."""
    try:
        cdr = decode_cdr(_read(cdr_file, "CDR"))
    except InputError as exc:
        raise click.ClickException(f"{cdr_file}: {exc}") from None
    tariffs = _tariffs(tariff_file) if tariff_file is not None else None
    try:
        result = price_cdr(cdr, tariffs, time_zone)
    except PricingError as exc:
        raise click.ClickException(f"cannot price {cdr_file}: {exc}") from None
    click.echo(msgspec.json.format(_ENCODER.encode(result), indent=2).decode())


# --- database commands -------------------------------------------------------------------------------------------


def _database_url() -> str:
    return os.environ.get("HUB_DATABASE_URL") or DEFAULT_DATABASE_URL


def _with_database(work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]) -> T:
    """Run ``work`` against ``HUB_DATABASE_URL``; turn an unreachable or unmigrated database into a clear message."""
    return _with_engine(lambda _engine, sessions: work(sessions))


def _with_engine(work: Callable[[AsyncEngine, async_sessionmaker[AsyncSession]], Awaitable[T]]) -> T:
    """`_with_database` for work that also needs the engine itself (e.g. for a cluster-wide lock)."""
    url = _database_url()

    async def main() -> T:
        engine = create_engine(url)
        try:
            return await work(engine, create_sessionmaker(engine))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except DBAPIError as exc:
        raise click.ClickException(
            f"database error at HUB_DATABASE_URL ({exc.orig.__class__.__name__}: {str(exc.orig).strip()}); "
            "is it reachable and migrated (`ocpi-hub db upgrade`)?"
        ) from None
    except OSError as exc:
        raise click.ClickException(f"cannot reach the database: {exc}") from None


def _echo_json(value: Any) -> None:
    click.echo(msgspec.json.format(_ENCODER.encode(value), indent=2).decode())


def _summary_table(title: str, summary: IntakeSummary) -> Table:
    table = Table(title=title)
    table.add_column("outcome")
    table.add_column("CDRs", justify="right")
    for name, count in (
        ("seen", summary.seen),
        ("accepted", summary.accepted),
        ("duplicates (unchanged)", summary.duplicates),
        ("conflicts (refused)", summary.conflicts),
        ("invalid (refused)", summary.invalid),
    ):
        table.add_row(name, str(count))
    for prefix, counts in (("validation", summary.validation), ("pricing", summary.pricing)):
        for state, count in sorted(counts.items()):
            table.add_row(f"{prefix}: {state}", str(count))
    return table


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


_TOLERANCE = click.option(
    "--tolerance",
    type=click.FloatRange(min=0),
    default=None,
    help=f"Allowed difference per amount when comparing prices (default {DEFAULT_TOLERANCE}).",
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")


def _tolerance(value: float | None) -> Decimal:
    return DEFAULT_TOLERANCE if value is None else Decimal(str(value))


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--batch-size", default=DEFAULT_BATCH_SIZE, show_default=True, type=click.IntRange(1, 10_000))
@_TOLERANCE
@_JSON
def import_command(file: Path, batch_size: int, tolerance: float | None, as_json: bool) -> None:
    """Take in the CDRs of FILE (one CDR, a list, an OCPI envelope, or JSON Lines); re-importing changes nothing."""
    console = Console(stderr=True)
    service = ClearingService(SystemClock(), tolerance=_tolerance(tolerance))

    async def work(sessions: async_sessionmaker[AsyncSession]) -> IntakeSummary:
        with _progress(console) as progress:
            task = progress.add_task(f"importing {file.name}", total=None)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            return await import_file(sessions, service, file, batch_size=batch_size, progress=advance)

    try:
        summary = _with_database(work)
    except RefusedPayload as exc:
        raise click.ClickException(f"{file}: {exc.message}") from None
    if as_json:
        _echo_json(summary)
    else:
        Console(file=sys.stdout).print(_summary_table(f"clearing import {file.name}", summary))


@click.command("sync")
@click.option("--batch-size", default=DEFAULT_BATCH_SIZE, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Stop after this many CDRs.")
@_TOLERANCE
@_JSON
def sync_command(batch_size: int, limit: int | None, tolerance: float | None, as_json: bool) -> None:
    """Take in the CDRs the hub stored that clearing has not taken in yet, one transaction per batch."""
    console = Console(stderr=True)
    service = ClearingService(SystemClock(), tolerance=_tolerance(tolerance))

    async def work(sessions: async_sessionmaker[AsyncSession]) -> IntakeSummary:
        with _progress(console) as progress:
            task = progress.add_task("taking in stored CDRs", total=limit)

            def advance(batch: IntakeSummary) -> None:
                progress.advance(task, batch.seen)

            return await run_sync(sessions, service, batch_size=batch_size, limit=limit, progress=advance)

    summary = _with_database(work)
    if as_json:
        _echo_json(summary)
    else:
        Console(file=sys.stdout).print(_summary_table("clearing sync", summary))


@click.command("check")
@click.option("--cdr", "cdr_file", required=True, type=click.Path(dir_okay=False, path_type=Path), help="CDR JSON.")
@click.option(
    "--tariff",
    "tariff_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSON file with one Tariff or a list; default: the stored versions (--store) or the CDR's own tariffs.",
)
@click.option("--time-zone", default=None, help="IANA time zone of the location; default: the stored location's.")
@click.option("--store", "use_store", is_flag=True, help="Also match against the database (HUB_DATABASE_URL).")
@click.option("--strict", is_flag=True, help="Exit with status 2 on a validation error or a price mismatch.")
@_TOLERANCE
def check_command(
    *,
    cdr_file: Path,
    tariff_file: Path | None,
    time_zone: str | None,
    use_store: bool,
    strict: bool,
    tolerance: float | None,
) -> None:
    """Validate and price a CDR without storing it; print the findings and the price verification as JSON."""
    cdr = _read(cdr_file, "CDR")
    tariffs = _read(tariff_file, "tariff") if tariff_file is not None else None
    try:
        if use_store:
            service = ClearingService(SystemClock(), tolerance=_tolerance(tolerance))

            async def work(sessions: async_sessionmaker[AsyncSession]) -> Any:
                async with sessions() as session:
                    return await service.preflight(session, cdr, tariffs, time_zone=time_zone)

            report = _with_database(work)
        else:
            report = check_cdr(
                cdr, tariffs, now=datetime.now(UTC), time_zone=time_zone, tolerance=_tolerance(tolerance)
            )
    except RefusedPayload as exc:
        raise click.ClickException(f"{cdr_file if tariff_file is None else 'input'}: {exc.message}") from None
    _echo_json(report)
    if strict and (report.validation_state == "error" or report.price.outcome == "mismatch"):
        sys.exit(2)


@click.command("show")
@click.argument("country_code")
@click.argument("party_id")
@click.argument("cdr_id")
def show_command(country_code: str, party_id: str, cdr_id: str) -> None:
    """Print everything clearing holds about one CDR as JSON: record, links, findings, price check, history."""
    service = ClearingService(SystemClock())

    async def work(sessions: async_sessionmaker[AsyncSession]) -> Any:
        async with sessions() as session:
            return await service.report(session, country_code, party_id, cdr_id)

    try:
        report = _with_database(work)
    except UnknownRecordError as exc:
        raise click.ClickException(str(exc)) from None
    _echo_json(report)


# --- settlement (ADR 0208) -----------------------------------------------------------------------------------------


def _party_option(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        cc, pid = parse_party(value)
    except TermsError as exc:
        raise click.BadParameter(str(exc)) from None
    return f"{cc}/{pid}"


def _fee(value: str) -> tuple[str, FeeRule]:
    kind, sep, rest = value.partition("=")
    rate, sep2, payer = rest.partition(":")
    if not sep or not sep2 or kind not in FEE_KINDS or payer not in ("cpo", "emsp"):
        raise click.BadParameter(f"{value!r}: give KIND=RATE:PAYER, KIND one of {', '.join(FEE_KINDS)}, PAYER cpo|emsp")
    try:
        return kind, FeeRule(rate=Decimal(rate), payer=payer)  # type: ignore[arg-type]
    except ArithmeticError:
        raise click.BadParameter(f"{value!r}: the rate {rate!r} is not a number") from None


@click.group("terms")
def terms_group() -> None:
    """Commercial terms per (CPO, eMSP): currency, tolerance, approval window, rounding, hub fees, VAT regime,
    currency conversion."""


@terms_group.command("set")
@click.option("--cpo", required=True, help="CPO party as CC/PID, e.g. NL/CPO.")
@click.option("--emsp", required=True, help="eMSP party as CC/PID, e.g. DE/MSP.")
@click.option("--valid-from", required=True, type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]), help="UTC.")
@click.option("--currency", default="EUR", show_default=True)
@click.option("--tolerance", type=click.FloatRange(min=0), default=None, help="Price verification tolerance.")
@click.option(
    "--approval-window-days",
    type=click.IntRange(min=0),
    default=DEFAULT_APPROVAL_WINDOW_DAYS,
    show_default=True,
    help="Pending CDRs older than this are approved when their period closes.",
)
@click.option("--rounding", type=click.Choice(sorted(ROUNDING_RULES)), default="half_up", show_default=True)
@click.option("--decimals", type=click.IntRange(0, 4), default=2, show_default=True)
@click.option(
    "--fee",
    "fees",
    multiple=True,
    help="KIND=RATE:PAYER, KIND per_session|per_kwh|percent|per_period, PAYER cpo|emsp (repeatable).",
)
@click.option(
    "--vat-regime",
    type=click.Choice(VAT_REGIMES),
    default="as_stated",
    show_default=True,
    help="as_stated: the CDR's VAT; domestic: VAT at --vat-rate; reverse_charge / outside_scope: no VAT, with a note.",
)
@click.option("--vat-rate", default=None, help="VAT in percent for --vat-regime domestic, e.g. 19.")
@click.option("--vat-note", default=None, help="The VAT note printed on statements instead of the regime's default.")
@click.option(
    "--settlement-currency",
    default=None,
    help="Convert CDRs in other currencies into this one at the period's reference rate (needs --rate-source).",
)
@click.option("--rate-source", default=None, help="The reference rate source the agreement names, e.g. ECB.")
@click.option("--by", "actor", default="operator:cli", show_default=True)
def terms_set_command(
    *,
    cpo: str,
    emsp: str,
    valid_from: datetime,
    currency: str,
    tolerance: float | None,
    approval_window_days: int,
    rounding: str,
    decimals: int,
    fees: tuple[str, ...],
    vat_regime: str,
    vat_rate: str | None,
    vat_note: str | None,
    settlement_currency: str | None,
    rate_source: str | None,
    actor: str,
) -> None:
    """Record a version of the terms between CPO and eMSP, effective from --valid-from."""
    terms = Terms(
        cpo=_party_option(cpo) or cpo,
        emsp=_party_option(emsp) or emsp,
        valid_from=valid_from.replace(tzinfo=UTC),
        currency=currency.upper(),
        tolerance=None if tolerance is None else Decimal(str(tolerance)),
        approval_window_days=approval_window_days,
        rounding=rounding,
        decimals=decimals,
        fees=dict(_fee(f) for f in fees),
        vat_regime=vat_regime,
        vat_rate=None if vat_rate is None else _decimal(vat_rate, "--vat-rate"),
        vat_note=vat_note,
        settlement_currency=settlement_currency.upper() if settlement_currency else None,
        rate_source=rate_source,
    )
    try:
        terms.check()  # before touching the database, so a wrong combination is a usage error
    except TermsError as exc:
        raise click.UsageError(str(exc)) from None
    service = SettlementService(SystemClock())

    async def work(sessions: async_sessionmaker[AsyncSession]) -> int:
        async with sessions() as session, session.begin():
            return await service.set_terms(session, terms, actor=actor)

    try:
        terms_id = _with_database(work)
    except TermsError as exc:
        raise click.ClickException(str(exc)) from None
    _echo_json({"id": terms_id, **msgspec.to_builtins(terms, builtin_types=(Decimal,))})


@terms_group.command("list")
def terms_list_command() -> None:
    """Print every version of every pair's terms as JSON."""
    service = SettlementService(SystemClock())

    async def work(sessions: async_sessionmaker[AsyncSession]) -> list[Terms]:
        async with sessions() as session:
            return await service.list_terms(session)

    _echo_json(_with_database(work))


_PERIOD = click.option("--period", required=True, help="Period label, YYYY-MM.")


def _decimal(value: str, option: str) -> Decimal:
    try:
        number = Decimal(value)
    except ArithmeticError:
        raise click.BadParameter(f"{value!r} is not a number", param_hint=option) from None
    if not number.is_finite():
        raise click.BadParameter(f"{value!r} is not a finite number", param_hint=option)
    return number


@click.group("rates")
def rates_group() -> None:
    """Reference exchange rates per period, for agreements that convert into a settlement currency (ADR 0209)."""


@rates_group.command("set")
@_PERIOD
@click.option("--from", "base", required=True, help="The currency converted from (ISO 4217), e.g. USD.")
@click.option("--to", "quote", required=True, help="The settlement currency converted into, e.g. EUR.")
@click.option("--rate", required=True, help="1 FROM = RATE TO, e.g. 0.92.")
@click.option("--date", "rate_date", required=True, type=click.DateTime(["%Y-%m-%d"]), help="The rate's date.")
@click.option("--source", required=True, help="The reference source the agreements name, e.g. ECB.")
@click.option("--by", "actor", default="operator:cli", show_default=True)
def rates_set_command(
    *, period: str, base: str, quote: str, rate: str, rate_date: datetime, source: str, actor: str
) -> None:
    """Fix the period's rate FROM→TO from SOURCE (replaces the same pair and source); refused once it is closed."""
    value = _decimal(rate, "--rate")
    service = SettlementService(SystemClock())

    async def work(sessions: async_sessionmaker[AsyncSession]) -> RateReport:
        async with sessions() as session, session.begin():
            return await service.set_rate(session, period, base, quote, value, rate_date.date(), source, actor=actor)

    try:
        _echo_json(_with_database(work))
    except PeriodError as exc:
        raise click.ClickException(str(exc)) from None


@rates_group.command("list")
@_PERIOD
def rates_list_command(period: str) -> None:
    """Print the period's reference rates as JSON."""
    service = SettlementService(SystemClock())

    async def work(sessions: async_sessionmaker[AsyncSession]) -> list[RateReport]:
        async with sessions() as session:
            return await service.rates(session, period)

    try:
        _echo_json(_with_database(work))
    except PeriodError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("close-period")
@click.option("--period", default=None, help="YYYY-MM; default: the previous calendar month (UTC).")
@click.option("--batch-size", default=DEFAULT_BATCH_SIZE, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--by", "actor", default="operator:cli", show_default=True)
def close_period_command(period: str | None, batch_size: int, actor: str) -> None:
    """Close a settlement period: statements per (CPO, eMSP, currency), netting; closing twice changes nothing."""
    label = period or previous_month(datetime.now(UTC))
    service = SettlementService(SystemClock(), batch_size=batch_size)
    console = Console(stderr=True)

    async def work(sessions: async_sessionmaker[AsyncSession]) -> CloseResult:
        with _progress(console) as progress:
            task = progress.add_task(f"closing {label}", total=None)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            return await service.close_period(sessions, label, actor=actor, progress=advance)

    try:
        result = _with_database(work)
    except (PeriodError, NettingError, TermsError) as exc:
        raise click.ClickException(str(exc)) from None
    _echo_json(result)


async def _statements(sessions: async_sessionmaker[AsyncSession], period: str, party: str | None) -> Any:
    service = SettlementService(SystemClock())
    async with sessions() as session:
        return await service.statements(session, period, party)


def _load_statements(period: str, party: str | None) -> list[StatementReport]:
    try:
        statements: list[StatementReport] = _with_database(lambda s: _statements(s, period, party))
    except PeriodError as exc:
        raise click.ClickException(str(exc)) from None
    return statements


@click.command("statement")
@_PERIOD
@click.option("--party", default=None, help="Only statements where this CC/PID is the CPO or the eMSP.")
@_JSON
def statement_command(period: str, party: str | None, as_json: bool) -> None:
    """Show a closed period's statements: CDR lines, fee and adjustment lines, totals, engine version, hash."""
    statements = _load_statements(period, _party_option(party))
    if as_json:
        _echo_json(statements)
        return
    out = Console(file=sys.stdout)
    for st in statements:
        table = Table(title=f"{period} {st.cpo} -> {st.emsp} {st.currency} (hash {st.input_hash[:12]})")
        for column in ("#", "kind", "cdr / note", "included", "excl VAT", "incl VAT"):
            table.add_column(column)
        for line in st.lines:
            name = (line.details or {}).get("cdr_id") if line.kind == "cdr" else line.note
            table.add_row(str(line.position), line.kind, str(name), "yes" if line.included else "no",
                          str(line.amount_excl_vat), str(line.amount_incl_vat))  # fmt: skip
        table.add_row("", "vat", f"{st.vat_regime}: {st.vat_note or ''}", "", "", str(st.vat_amount))
        table.add_row("", "payable", "", "", "", str(st.payable))
        out.print(table)


@click.command("export")
@_PERIOD
@click.option("--format", "fmt", type=click.Choice(["csv", "xlsx"]), default="csv", show_default=True)
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--party", default=None, help="Only statements where this CC/PID is the CPO or the eMSP.")
def export_command(period: str, fmt: str, out_file: Path, party: str | None) -> None:
    """Write a period's statements and their lines to FILE as CSV or XLSX (one sheet, same columns).

    Schema version 2, one row per statement (kind=statement, totals) then one per line (kind=cdr, adjustment or
    fee), columns: schema_version, period, statement_id, cpo, emsp, currency, kind, position, included, note, cdr_id,
    session_id, start_date_time, end_date_time, energy_kwh, stated_excl_vat, stated_incl_vat, recomputed_excl_vat,
    recomputed_incl_vat, verification, payer, quantity, amount_excl_vat, amount_incl_vat, cdr_count, fees_cpo,
    fees_emsp, payable, engine_version, input_hash, vat_regime, vat_rate, vat_amount, vat_note, original_currency,
    original_excl_vat, original_incl_vat, fx_rate, fx_rate_date, fx_source (see clearing.settlement.exports).
    """
    with _progress(Console(stderr=True)) as progress:
        task = progress.add_task(f"exporting {period}", total=None)
        statements = _load_statements(period, _party_option(party))
        progress.update(task, total=sum(1 + len(st.lines) for st in statements))

        def tracked() -> Iterator[StatementReport]:
            for statement in statements:
                yield statement
                progress.advance(task, 1 + len(statement.lines))  # once the statement's rows are written

        if fmt == "xlsx":
            rows = write_xlsx(tracked(), out_file)
        else:
            with out_file.open("w", newline="", encoding="utf-8") as handle:
                rows = write_csv(tracked(), handle)
    click.echo(f"wrote {rows} rows ({fmt}, schema {EXPORT_SCHEMA_VERSION}) to {out_file}", err=True)


def _close_grace() -> timedelta:
    """HUB_CLEARING_CLOSE_GRACE as the hub reads it (seconds, default a day); clearing does not import hub settings."""
    value = os.environ.get("HUB_CLEARING_CLOSE_GRACE") or str(int(DEFAULT_GRACE.total_seconds()))
    try:
        seconds = float(value)
    except ValueError:
        raise click.ClickException(f"HUB_CLEARING_CLOSE_GRACE must be a number of seconds, got {value!r}") from None
    if not 0 <= seconds < float("inf"):
        raise click.ClickException(f"HUB_CLEARING_CLOSE_GRACE must be zero or more seconds, got {value!r}")
    return timedelta(seconds=seconds)


@click.command("run-schedule")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds after a period's end before it closes; default HUB_CLEARING_CLOSE_GRACE, else 86400.",
)
@click.option("--batch-size", default=DEFAULT_BATCH_SIZE, show_default=True, type=click.IntRange(1, 10_000))
@_JSON
def run_schedule_command(grace: float | None, batch_size: int, as_json: bool) -> None:
    """Run the clearing schedule once, as the worker does every minute: take in the CDRs the hub stored, then close
    every period whose end plus the grace has passed. A run going on elsewhere makes this one skip."""
    wait = _close_grace() if grace is None else timedelta(seconds=grace)
    console = Console(stderr=True)

    async def work(engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> ScheduleResult:
        with _progress(console) as progress:
            taking = progress.add_task("taking in stored CDRs", total=None)
            closing: list[TaskID] = []

            def taken(batch: IntakeSummary) -> None:
                progress.advance(taking, batch.seen)

            def close(label: str) -> None:
                closing.append(progress.add_task(f"closing {label}", total=None))

            def advance(done: int, total: int) -> None:
                progress.update(closing[-1], completed=done, total=total)

            result = await run_scheduled(engine, sessions, SystemClock(), grace=wait, batch_size=batch_size,
                                         progress=advance, intake_progress=taken, on_close=close)  # fmt: skip
            progress.update(taking, total=result.intake.seen if result.intake else 0)
            return result

    try:
        result = _with_engine(work)
    except (NettingError, TermsError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        _echo_json(result)
        return
    if not result.ran:
        click.echo("another clearing schedule run is going on; nothing done", err=True)
        return
    taken_in = result.intake.accepted if result.intake else 0
    closed = ", ".join(c.period for c in result.closed) or "none"
    click.echo(f"taken in: {taken_in} CDRs; closed: {closed}")
    if result.close_skipped or result.error:
        raise click.ClickException(result.error or result.close_skipped or "")


@click.command("reconcile")
@_PERIOD
@click.option("--party", required=True, help="The party whose records FILE holds, CC/PID.")
@click.option("--file", "file", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="CSV with a header and the columns cdr_id and amount (incl. VAT).")  # fmt: skip
def reconcile_command(period: str, party: str, file: Path) -> None:
    """Compare a party's CSV of (cdr_id, amount) with our settled lines; print the categories as JSON."""
    name = _party_option(party) or party
    statements = _load_statements(period, name)
    try:
        theirs = read_party_csv(file.read_text(encoding="utf-8-sig"))
    except ReconcileError as exc:
        raise click.ClickException(f"{file}: {exc}") from None
    _echo_json(reconcile(statements, name, period, theirs))


@click.group("dispute")
def dispute_group() -> None:
    """Open and resolve disputes on CDRs (held out of settlement while open)."""


@dispute_group.command("open")
@click.argument("country_code")
@click.argument("party_id")
@click.argument("cdr_id")
@click.option("--by", "actor", required=True, help="Who disputes, e.g. msp:alice.")
@click.option("--reason", required=True)
def dispute_open_command(country_code: str, party_id: str, cdr_id: str, actor: str, reason: str) -> None:
    """Open a dispute on the CDR COUNTRY_CODE PARTY_ID CDR_ID; prints its id."""
    service = SettlementService(SystemClock())

    async def work(sessions: async_sessionmaker[AsyncSession]) -> int:
        async with sessions() as session, session.begin():
            return await service.open_dispute(session, country_code, party_id, cdr_id, actor=actor, reason=reason)

    try:
        _echo_json({"dispute_id": _with_database(work)})
    except (LookupError, PeriodError) as exc:
        raise click.ClickException(str(exc)) from None


@dispute_group.command("resolve")
@click.argument("dispute_id", type=int)
@click.option("--credit", "outcome", flag_value="credit", help="Resolved by the credit CDR intake linked.")
@click.option("--adjust", "amount", default=None, help="Resolved by an adjustment of this amount (next statement).")
@click.option("--reject", "outcome", flag_value="rejection", help="Rejected: the CDR settles as sent.")
@click.option("--by", "actor", required=True)
@click.option("--reason", required=True)
def dispute_resolve_command(dispute_id: int, outcome: str | None, amount: str | None, actor: str, reason: str) -> None:
    """Resolve a dispute by --credit, --adjust AMOUNT or --reject."""
    if (outcome is None) == (amount is None):
        raise click.UsageError("give exactly one of --credit, --adjust AMOUNT, --reject")
    try:
        value = None if amount is None else Decimal(amount)
    except ArithmeticError:
        raise click.BadParameter(f"{amount!r} is not a number", param_hint="--adjust") from None
    service = SettlementService(SystemClock())

    async def work(sessions: async_sessionmaker[AsyncSession]) -> Any:
        async with sessions() as session, session.begin():
            return await service.resolve_dispute(
                session, dispute_id, outcome or "adjustment", actor=actor, reason=reason, amount=value
            )

    try:
        _echo_json(_with_database(work))
    except (LookupError, PeriodError) as exc:
        raise click.ClickException(str(exc)) from None


#: The settlement commands (mounted with the intake commands).
settlement_commands: Final = (
    terms_group,
    rates_group,
    close_period_command,
    statement_command,
    export_command,
    reconcile_command,
    dispute_group,
    run_schedule_command,
)


#: The intake and settlement commands, for the composition root to mount beside ``price``.
intake_commands: Final = (check_command, import_command, sync_command, show_command, *settlement_commands)


@click.group("clearing")
def clearing_group() -> None:
    """Clearing house tools: price, check, import, sync and show CDRs; terms, periods, statements, disputes."""


clearing_group.add_command(price_command)
for _command in intake_commands:
    clearing_group.add_command(_command)
