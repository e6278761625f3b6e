"""The specification's example payloads decode into the right Structs and survive a round trip.

The files are read in place from ``<repo>/../shared/test-vectors/ocpi-2.2.1-examples`` (or
``$HUB_TEST_VECTORS/ocpi-2.2.1-examples``) and never copied into the repository; the tests skip
when the folder is absent. Two files are known to be defective (hub notes §7) and must be reported
invalid with a precise message.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hub.ocpi import v2_2_1 as ocpi
from hub.ocpi.codec import InvalidPayload, decode, encode
from hub.ocpi.envelope import OcpiResponse

REPO_ROOT = Path(__file__).resolve().parents[3]


def _vectors_dir() -> Path:
    base = os.environ.get("HUB_TEST_VECTORS")
    root = Path(base) if base else REPO_ROOT.parent / "shared" / "test-vectors"
    return root / "ocpi-2.2.1-examples"


EXAMPLES = _vectors_dir()
FILES = sorted(path.name for path in EXAMPLES.glob("*.json")) if EXAMPLES.is_dir() else []
needs_examples = pytest.mark.skipif(not FILES, reason=f"OCPI example folder not found at {EXAMPLES}")

# File name → (wire type, key of the inner object for fragment files, or None for whole documents).
# Longest matching prefix wins, so specific names override the generic module prefixes.
MAPPING: dict[str, tuple[Any, str | None]] = {
    "cdr_example": (ocpi.CDR, None),
    "credentials_example": (ocpi.Credentials, None),
    "location_energymix_example_": (ocpi.EnergyMix, "energy_mix"),
    "location_example": (ocpi.Location, None),
    "location_hours_": (ocpi.Hours, None),
    "location_regularhours_example": (ocpi.Hours, "opening_times"),
    "location_patch_example_location": (ocpi.LocationPatch, None),
    "location_patch_example_remove_evse": (ocpi.EvsePatch, None),
    "location_patch_example_status": (ocpi.EvsePatch, None),
    "location_patch_example_tariff": (ocpi.ConnectorPatch, None),
    "location_put_example_add_evse": (ocpi.EVSE, None),
    "session_example_": (ocpi.Session, None),
    "session_patch_example_": (ocpi.SessionPatch, None),
    "tariff_": (ocpi.Tariff, None),
    "tariffrestriction_example_": (ocpi.Tariff, None),
    "token_example_": (ocpi.Token, None),
    "token_patch_example": (ocpi.TokenPatch, None),
    "token_put_example": (ocpi.Token, None),
    "transport_and_format_get_token_example": (OcpiResponse[ocpi.Token], None),
    "transport_and_format_get_token_list_example": (OcpiResponse[list[ocpi.Token]], None),
    "transport_and_format_version_details_example": (OcpiResponse[ocpi.VersionDetails], None),
    "transport_and_format_version_info_example": (OcpiResponse[list[ocpi.Version]], None),
    "type_displaytext_example": (ocpi.DisplayText, None),
    "version_details_example": (ocpi.VersionDetails, None),
    "versions_info_example": (list[ocpi.Version], None),
}

# Known-defective examples (hub notes §7): expected error for the type they claim to be.
DEFECTIVE = {
    "location_put_example_add_evse.json": "Object missing required field `power_type` - at `$.connectors[0]`",
    "tariff_put_example.json": "Object missing required field `last_updated`",
}


def _lookup(name: str) -> tuple[Any, str | None]:
    matches = [prefix for prefix in MAPPING if name.startswith(prefix)]
    if not matches:
        raise LookupError(f"No wire type mapped for example {name}")
    return MAPPING[max(matches, key=len)]


def _document(name: str) -> bytes:
    """The JSON to decode: the whole file, or the inner object of a fragment file."""
    raw = (EXAMPLES / name).read_bytes()
    _, key = _lookup(name)
    if key is None:
        return raw
    fragment = msgspec.json.decode(raw, type=dict[str, msgspec.Raw])
    assert list(fragment) == [key], f"{name} should hold only {key!r}"
    return bytes(fragment[key])


_TREE_DECODER = msgspec.json.Decoder(float_hook=Decimal)


def _tree(data: bytes) -> object:
    """Untyped JSON tree with exact numbers, for comparing documents independent of formatting."""
    return _TREE_DECODER.decode(data)


@needs_examples
def test_the_known_example_set_is_present_and_every_file_is_mapped() -> None:
    assert len(FILES) == 59
    for name in FILES:
        _lookup(name)  # raises for a file without a wire type


@needs_examples
@pytest.mark.parametrize("name", [name for name in FILES if name not in DEFECTIVE])
def test_example_decodes_and_round_trips(name: str) -> None:
    type_, _ = _lookup(name)
    document = _document(name)
    value = decode(document, type_)
    encoded = encode(value)
    assert decode(encoded, type_) == value
    # Nothing was dropped or altered: the examples only use spec fields, so the re-encoded document
    # equals the original one as a JSON tree (numbers compared exactly as Decimals).
    assert _tree(encoded) == _tree(document)


@needs_examples
@pytest.mark.parametrize("name", sorted(DEFECTIVE))
def test_defective_examples_are_reported_precisely(name: str) -> None:
    type_, _ = _lookup(name)
    with pytest.raises(InvalidPayload) as info:
        decode(_document(name), type_)
    assert info.value.message == DEFECTIVE[name]


@needs_examples
def test_add_evse_example_has_further_defects_behind_the_first() -> None:
    # With the connector completed, the next defect is the numeric physical_reference; the unknown
    # `floor` (instead of floor_level) is ignored rather than rejected.
    document = msgspec.json.decode(_document("location_put_example_add_evse.json"))
    document["connectors"][0].update(
        power_type="AC_3_PHASE", max_voltage=230, max_amperage=16, last_updated="2019-06-24T12:39:09Z"
    )
    with pytest.raises(InvalidPayload) as info:
        decode(msgspec.json.encode(document), ocpi.EVSE)
    assert info.value.message == "Expected `str | null`, got `int` - at `$.physical_reference`"
    document["physical_reference"] = "3"
    evse = decode(msgspec.json.encode(document), ocpi.EVSE)
    assert evse.floor_level is None


@needs_examples
def test_version_details_examples_say_2_2() -> None:
    details = decode(_document("version_details_example.json"), ocpi.VersionDetails)
    assert details.version == ocpi.VersionNumber.V2_2
    assert {endpoint.identifier for endpoint in details.endpoints} >= {ocpi.ModuleID.CREDENTIALS}
    envelope = decode(_document("transport_and_format_version_details_example.json"), OcpiResponse[ocpi.VersionDetails])
    assert envelope.data is not None
    assert envelope.data.version == "2.2"
    assert envelope.status_code == 1000


@needs_examples
def test_cdr_example_amounts_are_decimals() -> None:
    cdr = decode(_document("cdr_example.json"), ocpi.CDR)
    assert isinstance(cdr.total_cost.excl_vat, Decimal)
    assert isinstance(cdr.total_energy, Decimal)
    assert all(isinstance(d.volume, Decimal) for period in cdr.charging_periods for d in period.dimensions)
    # Swapped coordinates (hub notes §7) still match the patterns; only the place is wrong.
    assert cdr.cdr_location.coordinates.latitude == "3.729944"


@needs_examples
def test_patch_examples_leave_unsent_fields_unset() -> None:
    patch = decode(_document("location_patch_example_status.json"), ocpi.EvsePatch)
    assert patch.status is ocpi.Status.CHARGING
    assert patch.connectors is msgspec.UNSET
    assert patch.uid is msgspec.UNSET
    token_patch = decode(_document("token_patch_example.json"), ocpi.TokenPatch)
    assert token_patch.valid is False
    assert token_patch.whitelist is msgspec.UNSET


def test_vectors_folder_can_be_overridden(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HUB_TEST_VECTORS", str(tmp_path))
    assert _vectors_dir() == tmp_path / "ocpi-2.2.1-examples"
    monkeypatch.delenv("HUB_TEST_VECTORS")
    assert _vectors_dir() == REPO_ROOT.parent / "shared" / "test-vectors" / "ocpi-2.2.1-examples"
