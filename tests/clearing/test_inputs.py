"""The lenient Tariff and CDR views: exact decimals, UTC datetimes, nulls as absent, unknowns kept or ignored."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from clearing.pricing import InputError, decode_cdr, decode_tariff, decode_tariffs, price_cdr
from tests.clearing.builders import D, vectors_dir

TARIFF = {
    "id": "T1",
    "currency": "EUR",
    "elements": [{"price_components": [{"type": "ENERGY", "price": 0.1, "vat": None, "step_size": 1}]}],
}


def cdr_document(**changes: object) -> dict[str, object]:
    document: dict[str, object] = {
        "start_date_time": "2024-01-15T10:00:00Z",
        "end_date_time": "2024-01-15T11:00:00Z",
        "currency": "EUR",
        "tariffs": [TARIFF],
        "charging_periods": [
            {"start_date_time": "2024-01-15T10:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 3.3}]}
        ],
    }
    document.update(changes)
    return document


def test_numbers_are_exact_decimals() -> None:
    tariff = decode_tariff(json.dumps(TARIFF))
    component = tariff.elements[0].price_components[0]
    assert component.price == D("0.1")
    assert isinstance(component.price, Decimal)
    assert component.step_size == D(1)
    cdr = decode_cdr(json.dumps(cdr_document()))
    assert cdr.charging_periods[0].dimensions[0].volume == D("3.3")
    # 3.3 kWh at 0.1 is exactly 0.33; a float pipeline would give 0.33000000000000002.
    assert price_cdr(cdr, time_zone="UTC").total_cost.excl_vat == D("0.33")


@pytest.mark.parametrize(
    "text",
    ["2024-01-15T10:00:00Z", "2024-01-15T10:00:00", "2024-01-15T10:00:00.000Z", "2024-01-15T11:00:00+01:00"],
)
def test_datetimes_become_aware_utc(text: str) -> None:
    cdr = decode_cdr(json.dumps(cdr_document(start_date_time=text)))
    assert cdr.start_date_time == datetime(2024, 1, 15, 10, tzinfo=UTC)
    assert cdr.start_date_time.utcoffset() is not None


def test_fractional_seconds_are_kept() -> None:
    cdr = decode_cdr(json.dumps(cdr_document(end_date_time="2024-01-15T11:00:00.5Z")))
    assert cdr.end_date_time.microsecond == 500_000


def test_null_means_absent_and_unknown_fields_are_ignored() -> None:
    document = cdr_document(tariffs=None, total_fixed_cost=None, remark="x", cdr_token={"broken": True})
    document["charging_periods"] = [
        {
            "start_date_time": "2024-01-15T10:00:00Z",
            "tariff_id": None,
            "dimensions": [{"type": "ENERGY", "volume": 3}],
            "extra": [1, 2],
        }
    ]
    cdr = decode_cdr(json.dumps(document))
    assert cdr.tariffs == []
    assert cdr.total_fixed_cost is None
    assert cdr.charging_periods[0].tariff_id is None


def test_unknown_enum_values_do_not_fail_decoding() -> None:
    tariff = decode_tariff(
        json.dumps(
            {
                "id": "T",
                "type": "PROFILE_SOMETHING_NEW",
                "elements": [
                    {"price_components": [{"type": "energy", "price": 1, "step_size": 1}], "restrictions": None}
                ],
            }
        )
    )
    assert tariff.elements[0].price_components[0].type == "ENERGY"  # upper-cased
    assert tariff.elements[0].restrictions is None


def test_unknown_restriction_keys_are_kept_for_warnings() -> None:
    tariff = decode_tariff(
        json.dumps(
            {
                "elements": [
                    {
                        "price_components": [{"type": "ENERGY", "price": 1, "step_size": 1}],
                        "restrictions": {"max_kwh": 5, "min_soc": 20, "weekday": "MONDAY", "max_power": None},
                    }
                ]
            }
        )
    )
    restrictions = tariff.elements[0].restrictions
    assert restrictions is not None
    assert restrictions.unknown_keys == ["min_soc", "weekday"]
    assert restrictions.max_kwh == D(5)
    assert restrictions.max_power is None


def test_one_tariff_or_a_list() -> None:
    assert len(decode_tariffs(json.dumps(TARIFF))) == 1
    assert [t.id for t in decode_tariffs(json.dumps([TARIFF, {**TARIFF, "id": "T2"}]))] == ["T1", "T2"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"start_date_time": "2024-01-15T10:00:00Z"}), "end_date_time"),
        (json.dumps(cdr_document(start_date_time="yesterday")), "$.start_date_time"),
        (
            json.dumps(
                cdr_document(tariffs=[{"elements": [{"price_components": [{"type": "ENERGY", "price": "NaN"}]}]}])
            ),
            "finite",
        ),
        (json.dumps([1, 2]), "Expected `object`"),
    ],
)
def test_invalid_cdr_is_an_input_error_naming_the_problem(data: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("$", r"\$")):
        decode_cdr(data)


def test_tariff_without_elements_is_an_input_error() -> None:
    with pytest.raises(InputError, match="elements"):
        decode_tariff(json.dumps({"id": "T"}))


EXAMPLE = vectors_dir() / "ocpi-2.2.1-examples" / "cdr_example.json"


@pytest.mark.skipif(not EXAMPLE.is_file(), reason=f"OCPI examples not found at {EXAMPLE}")
def test_the_spec_cdr_example_prices_with_its_own_tariff() -> None:
    # The spec's CDR example (read in place) has swapped coordinates and states total_energy 15.342 without any
    # ENERGY dimension; neither stops pricing. 1.973 h at 2.00/h in 5 minute steps bills 2 h: 4.00 / 4.40.
    cdr = decode_cdr(EXAMPLE.read_bytes())
    result = price_cdr(cdr, time_zone="Europe/Brussels")
    assert (result.total_cost.excl_vat, result.total_cost.incl_vat) == (D("4.00"), D("4.40"))
    assert result.lines[0].tariff_id == "12"
    assert result.warning_codes() == []
