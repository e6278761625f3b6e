"""Command line for the clearing house (mounted by the composition root, ``hub.cli``):

* ``ocpi-hub clearing price --cdr FILE [--tariff FILE] [--time-zone TZ]``: the pure pricing engine;
* ``ocpi-hub clearing check --cdr FILE [--tariff FILE] [--time-zone TZ] [--store]``: pre-flight, nothing stored;
* ``ocpi-hub clearing import FILE``: take in the CDRs of a JSON file, with a progress bar and a summary;
* ``ocpi-hub clearing sync``: take in the CDRs the hub stored and clearing has not taken in yet;
* ``ocpi-hub clearing show COUNTRY_CODE PARTY_ID CDR_ID``: everything clearing holds about one CDR.

Machine-readable output goes to stdout as JSON (numbers as JSON numbers); progress bars and tables go to stderr.
The commands that need the database read ``HUB_DATABASE_URL`` (DESIGN §9) with the hub's default; clearing does
not import the hub's settings (ADR 0207).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, TypeVar

import click
import msgspec
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

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
from clearing.verification import DEFAULT_TOLERANCE
from hub.platform.clock import SystemClock
from hub.platform.db import create_engine, create_sessionmaker

__all__ = [
    "DEFAULT_DATABASE_URL",
    "check_command",
    "clearing_group",
    "import_command",
    "intake_commands",
    "price_command",
    "show_command",
    "sync_command",
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
    url = _database_url()

    async def main() -> T:
        engine = create_engine(url)
        try:
            return await work(create_sessionmaker(engine))
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


#: The intake commands, for the composition root to mount beside ``price``.
intake_commands: Final = (check_command, import_command, sync_command, show_command)


@click.group("clearing")
def clearing_group() -> None:
    """Clearing house tools: price, check, import, sync and show CDRs."""


clearing_group.add_command(price_command)
for _command in intake_commands:
    clearing_group.add_command(_command)
