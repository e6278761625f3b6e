"""``ocpi-hub clearing price``: the command prints the computed totals as JSON and fails clearly on bad input."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from clearing.cli import clearing_group, price_command
from tests.clearing.builders import vectors_dir

CASE = vectors_dir() / "tariff-cases" / "simple_3hour_5parking"
TOTALS = [
    "total_cost",
    "total_energy",
    "total_energy_cost",
    "total_time",
    "total_time_cost",
    "total_parking_time",
    "total_parking_cost",
    "total_reservation_cost",
    "total_fixed_cost",
]

TARIFF = {
    "id": "T1",
    "currency": "EUR",
    "elements": [{"price_components": [{"type": "ENERGY", "price": 0.25, "vat": 10, "step_size": 1}]}],
}
CDR = {
    "id": "CDR1",
    "start_date_time": "2024-01-15T10:00:00Z",
    "end_date_time": "2024-01-15T11:00:00Z",
    "currency": "EUR",
    "cdr_location": {"country": "NLD", "time_zone": "Europe/Amsterdam"},
    "tariffs": [TARIFF],
    "charging_periods": [{"start_date_time": "2024-01-15T10:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 20}]}],
}


def invoke(*args: str) -> Any:
    return CliRunner().invoke(price_command, list(args))


def write(directory: Path, name: str, document: object) -> Path:
    path = directory / name
    path.write_text(json.dumps(document))
    return path


def test_command_is_named_price_and_mounted_in_the_group() -> None:
    assert price_command.name == "price"
    assert clearing_group.get_command(None, "price") is price_command  # type: ignore[arg-type]


@pytest.mark.skipif(not CASE.is_dir(), reason=f"test vectors not found at {CASE}")
def test_prices_a_test_vector_with_an_explicit_tariff() -> None:
    result = invoke("--cdr", str(CASE / "cdr1.json"), "--tariff", str(CASE / "tariff.json"), "--time-zone", "UTC")
    assert result.exit_code == 0, result.output
    output = json.loads(result.output, parse_float=Decimal)
    assert set(TOTALS) <= set(output)
    assert output["total_cost"] == {"excl_vat": Decimal("11.25"), "incl_vat": Decimal("12.75")}
    assert output["total_parking_cost"] == {"excl_vat": Decimal("3.75"), "incl_vat": Decimal("4.5")}
    assert output["total_parking_time"] == Decimal("0.7")
    assert output["total_time"] == Decimal("3.2")
    assert [line["dimension"] for line in output["lines"]] == ["TIME", "PARKING_TIME"]
    assert output["warnings"] == []
    # Numbers are JSON numbers, not strings.
    assert '"excl_vat": 11.25' in result.output or '"excl_vat": 11.2500' in result.output


def test_uses_the_cdr_tariffs_and_location_time_zone(tmp_path: Path) -> None:
    result = invoke("--cdr", str(write(tmp_path, "cdr.json", CDR)))
    assert result.exit_code == 0, result.output
    output = json.loads(result.output, parse_float=Decimal)
    assert output["total_cost"] == {"excl_vat": Decimal(5), "incl_vat": Decimal("5.5")}
    assert output["total_energy"] == Decimal(20)
    assert output["time_zone"] == "Europe/Amsterdam"
    assert output["lines"][0]["reasons"] == ["no restrictions"]


def test_tariff_file_may_hold_a_list(tmp_path: Path) -> None:
    other = {**TARIFF, "id": "T2", "elements": [{"price_components": [{"type": "ENERGY", "price": 1, "step_size": 1}]}]}
    cdr = {**CDR, "tariffs": [], "charging_periods": [{**CDR["charging_periods"][0], "tariff_id": "T2"}]}  # type: ignore[index]
    result = invoke(
        "--cdr", str(write(tmp_path, "cdr.json", cdr)), "--tariff", str(write(tmp_path, "t.json", [TARIFF, other]))
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["total_cost"]["excl_vat"] == 20


BAD_INPUT = [
    ({}, ["--cdr", "missing.json"], "cannot read the CDR file"),
    ({"cdr.json": "{not json"}, ["--cdr", "cdr.json"], "not valid JSON"),
    ({"cdr.json": {"id": "x"}}, ["--cdr", "cdr.json"], "not a valid CDR"),
    ({"cdr.json": {**CDR, "tariffs": []}}, ["--cdr", "cdr.json"], "no tariffs"),
    ({"cdr.json": CDR, "t.json": {"id": "T"}}, ["--cdr", "cdr.json", "--tariff", "t.json"], "not a valid Tariff"),
    ({"cdr.json": CDR, "t.json": []}, ["--cdr", "cdr.json", "--tariff", "t.json"], "empty list"),
    ({"cdr.json": CDR}, ["--cdr", "cdr.json", "--time-zone", "Nowhere/Special"], "unknown time zone"),
]


@pytest.mark.parametrize(("files", "args", "message"), BAD_INPUT, ids=[case[2] for case in BAD_INPUT])
def test_bad_input_fails_with_a_clear_message(
    tmp_path: Path, files: dict[str, object], args: list[str], message: str
) -> None:
    for name, content in files.items():
        (tmp_path / name).write_text(content if isinstance(content, str) else json.dumps(content))
    result = invoke(*[str(tmp_path / arg) if arg.endswith(".json") else arg for arg in args])
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
