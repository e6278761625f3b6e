"""Command line for the clearing house: ``ocpi-hub clearing price --cdr FILE [--tariff FILE] [--time-zone TZ]``.

The composition root (``hub.cli``) mounts `price_command` (or the whole `clearing_group`); this module only reads
the files it is given, calls the pure pricing engine and prints the result as JSON, with numbers as JSON numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import click
import msgspec

from clearing.pricing import InputError, PricingError, Tariff, decode_cdr, decode_tariffs, price_cdr

__all__ = ["clearing_group", "price_command"]

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


@click.group("clearing")
def clearing_group() -> None:
    """Clearing house tools: price CDRs."""


clearing_group.add_command(price_command)
