"""The pure PATCH merge and Location sub-object helpers: number formatting, null handling, appends, last_updated."""

from __future__ import annotations

from decimal import Decimal

from hub.objects import merge


def test_a_round_trip_keeps_numbers_unknown_fields_and_key_order() -> None:
    data = b'{"z":1,"price":1.50,"big":12345678901234567890,"tiny":0.0001,"x_vendor":{"a":[1,2.50]}}'
    value = merge.load_object(data)
    assert value["price"] == Decimal("1.50")
    assert merge.dump(value) == data


def test_patch_fields_replace_whole_values_and_nulls_change_nothing() -> None:
    stored = {"name": "Old", "coordinates": {"latitude": "1.00000", "longitude": "2.00000"}, "facilities": ["CAFE"]}
    patch = {"coordinates": {"latitude": "3.00000"}, "facilities": ["WIFI"], "name": None, "last_updated": "x"}
    merged = merge.merge_patch(stored, patch)
    assert merged == {
        "name": "Old",
        "coordinates": {"latitude": "3.00000"},
        "facilities": ["WIFI"],
        "last_updated": "x",
    }
    assert stored["facilities"] == ["CAFE"]  # the stored dict is not modified


def test_append_fields_are_added_to_the_stored_list_and_empty_lists_add_nothing() -> None:
    stored = {"charging_periods": [1], "kwh": 1}
    assert merge.merge_patch(stored, {"charging_periods": [2, 3]}, append={"charging_periods"}) == {
        "charging_periods": [1, 2, 3],
        "kwh": 1,
    }
    assert merge.merge_patch(stored, {"charging_periods": []}, append={"charging_periods"}) == stored
    assert merge.merge_patch({}, {"charging_periods": [4]}, append={"charging_periods"}) == {"charging_periods": [4]}


def test_touch_moves_a_parent_forward_only() -> None:
    parent = {"last_updated": "2026-01-01T10:00:00Z"}
    merge.touch(parent, "2026-01-01T11:00:00.5")
    assert parent["last_updated"] == "2026-01-01T11:00:00.5"  # the partner's text, not a reformatted one
    merge.touch(parent, "2026-01-01T09:00:00Z")
    assert parent["last_updated"] == "2026-01-01T11:00:00.5"


def test_put_evse_and_connector_match_ids_case_insensitively() -> None:
    location: merge.JsonObject = {
        "last_updated": "2026-01-01T10:00:00Z",
        "evses": [{"uid": "abc", "connectors": [{"id": "c1"}]}],
    }
    assert not merge.put_evse(location, {"uid": "ABC", "status": "CHARGING", "last_updated": "2026-01-01T10:00:00Z"})
    assert location["evses"] == [{"uid": "ABC", "status": "CHARGING", "last_updated": "2026-01-01T10:00:00Z"}]
    assert merge.put_evse(location, {"uid": "def", "connectors": [], "last_updated": "2026-01-02T10:00:00Z"})
    assert [e["uid"] for e in location["evses"]] == ["ABC", "def"]
    assert location["last_updated"] == "2026-01-02T10:00:00Z"
    evse = merge.find_evse(location, "DEF")
    assert evse is not None
    assert merge.put_connector(location, evse, {"id": "X", "last_updated": "2026-01-03T10:00:00Z"})
    assert not merge.put_connector(location, evse, {"id": "x", "last_updated": "2026-01-03T10:00:00Z"})
    assert evse["connectors"] == [{"id": "x", "last_updated": "2026-01-03T10:00:00Z"}]
    assert evse["last_updated"] == location["last_updated"] == "2026-01-03T10:00:00Z"


def test_slice_child_returns_the_stored_bytes_of_an_evse_or_connector() -> None:
    data = b'{"evses":[{"uid":"E1","connectors":[{"id":"1","p":1.50}]},{"uid":"e2" , "connectors":[ {"id":"A"} ]}]}'
    assert merge.slice_child(data, "e1") == b'{"uid":"E1","connectors":[{"id":"1","p":1.50}]}'
    assert merge.slice_child(data, "E2", "a") == b'{"id":"A"}'
    assert merge.slice_child(data, "E3") is None
    assert merge.slice_child(data, "E1", "2") is None
    assert merge.slice_child(b'{"id":"L"}', "E1") is None


def test_normalised_ignores_nulls_and_number_formatting() -> None:
    a = merge.load_object(b'{"a": 1.5, "b": null, "c": [{"d": null, "e": 2}]}')
    b = merge.load_object(b'{"c":[{"e":2}],"a":1.50}')
    assert merge.normalised(a) == merge.normalised(b)
    assert merge.normalised(a) != merge.normalised(merge.load_object(b'{"a": 1.51, "c": [{"e": 2}]}'))
