"""PATCH merge and Location sub-object edits on plain JSON dicts: pure functions, no I/O.

Objects are decoded with msgspec into dicts whose JSON numbers are `Decimal` (floats) or `int`, and encoded back
with ``decimal_format="number"``, so ``1.50`` stays ``1.50`` and money never passes through a float (DESIGN §8).
Unknown fields and key order survive the round trip.

Merge rules (transport_and_format PATCH, mod_sessions §9.2.2.3): top-level fields of the PATCH replace the stored ones,
nested objects and lists as whole values; a ``null`` is treated like an absent field (DESIGN §5; a PATCH cannot
remove data, mod_locations §8.2.2.3); fields named in ``append`` (Session ``charging_periods``) are appended to the
stored list, and an empty list there changes nothing.
"""

from __future__ import annotations

from collections.abc import Collection
from decimal import Decimal
from typing import Any, Final

import msgspec

from hub.ocpi.types import ci_key, parse_datetime

__all__ = [
    "JsonObject",
    "dump",
    "find_connector",
    "find_evse",
    "load_object",
    "merge_patch",
    "normalised",
    "put_connector",
    "put_evse",
    "slice_child",
    "touch",
]

JsonObject = dict[str, Any]

_ENCODER: Final = msgspec.json.Encoder(decimal_format="number")
_DECODER: Final = msgspec.json.Decoder(float_hook=Decimal)


def load_object(data: bytes) -> JsonObject:
    """Decode a JSON object, keeping non-integer numbers as `Decimal`; raise ValueError for anything else."""
    value = _DECODER.decode(data)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def dump(value: object) -> bytes:
    return _ENCODER.encode(value)


def merge_patch(stored: JsonObject, patch: JsonObject, *, append: Collection[str] = ()) -> JsonObject:
    """Return ``stored`` with the PATCH's fields applied (see the module docstring for the rules)."""
    merged = dict(stored)
    for name, value in patch.items():
        if value is None:
            continue
        if name in append:
            # mod_sessions §9.2.2.3: the periods of a PATCH are added to the existing list; an empty one adds nothing.
            if value:
                merged[name] = [*(merged.get(name) or ()), *value]
            continue
        merged[name] = value
    return merged


def _is_newer(candidate: Any, current: Any) -> bool:
    if not isinstance(current, str):
        return True
    try:
        return bool(parse_datetime(candidate) >= parse_datetime(current))
    except (TypeError, ValueError):
        return True


def touch(parent: JsonObject, last_updated: str) -> None:
    """Carry a child's ``last_updated`` up to its parent (mod_locations §8.2.2.2, §8.2.2.3).

    The parent's ``last_updated`` covers its children ("when this Location or one of its EVSEs or Connectors were
    last updated"), so it takes the child's value unless it is already later: an out-of-order child never moves a
    parent back in time. The partner's text is copied, never a hub timestamp (hub notes §5 item 10).
    """
    if _is_newer(last_updated, parent.get("last_updated")):
        parent["last_updated"] = last_updated


def find_evse(location: JsonObject, evse_uid: str) -> JsonObject | None:
    key = ci_key(evse_uid)
    for evse in location.get("evses") or ():
        if isinstance(evse, dict) and isinstance(evse.get("uid"), str) and ci_key(evse["uid"]) == key:
            return evse
    return None


def find_connector(evse: JsonObject, connector_id: str) -> JsonObject | None:
    key = ci_key(connector_id)
    for connector in evse.get("connectors") or ():
        if isinstance(connector, dict) and isinstance(connector.get("id"), str) and ci_key(connector["id"]) == key:
            return connector
    return None


def _replace_or_append(items: list[Any], old: JsonObject | None, new: JsonObject) -> None:
    for index, item in enumerate(items):
        if item is old:
            items[index] = new
            return
    items.append(new)


def put_evse(location: JsonObject, evse: JsonObject) -> bool:
    """Create or replace an EVSE (matched by uid) inside a Location; return True when it is new."""
    old = find_evse(location, evse["uid"])
    evses = location.get("evses")
    if not isinstance(evses, list):
        evses = location["evses"] = []
    _replace_or_append(evses, old, evse)
    touch(location, evse["last_updated"])
    return old is None


def put_connector(location: JsonObject, evse: JsonObject, connector: JsonObject) -> bool:
    """Create or replace a Connector (matched by id) inside one of the Location's EVSEs; return True when new."""
    old = find_connector(evse, connector["id"])
    connectors = evse.get("connectors")
    if not isinstance(connectors, list):
        connectors = evse["connectors"] = []
    _replace_or_append(connectors, old, connector)
    touch(evse, connector["last_updated"])
    touch(location, connector["last_updated"])
    return old is None


class _ChildrenView(msgspec.Struct):
    """Just enough of a Location or EVSE to find a child: each child stays raw bytes of the stored JSON."""

    evses: list[msgspec.Raw] | None = None
    connectors: list[msgspec.Raw] | None = None


class _IdView(msgspec.Struct):
    uid: str | None = None
    id: str | None = None


_CHILDREN: Final = msgspec.json.Decoder(_ChildrenView)
_ID: Final = msgspec.json.Decoder(_IdView)


def _child(items: list[msgspec.Raw] | None, field: str, wanted: str) -> bytes | None:
    key = ci_key(wanted)
    for raw in items or ():
        value = getattr(_ID.decode(raw), field)
        if isinstance(value, str) and ci_key(value) == key:
            return bytes(raw)
    return None


def slice_child(location: bytes, evse_uid: str, connector_id: str | None = None) -> bytes | None:
    """The bytes of one EVSE (or of one of its Connectors) inside a stored Location, without re-encoding."""
    evse = _child(_CHILDREN.decode(location).evses, "uid", evse_uid)
    if evse is None or connector_id is None:
        return evse
    return _child(_CHILDREN.decode(evse).connectors, "id", connector_id)


def normalised(value: Any) -> Any:
    """A JSON value with ``null`` object members dropped, for content comparison (null = absent, DESIGN §5)."""
    if isinstance(value, dict):
        return {name: normalised(item) for name, item in value.items() if item is not None}
    if isinstance(value, list):
        return [normalised(item) for item in value]
    return value
