"""End-to-end tolerance (DESIGN §5 "be liberal in what you accept, exact in what you send"): scenario 10.

CiStrings in any case, ``null`` optional fields, missing id headers, sloppy slashes, a single object wrapped in a
list, partner redirects; §9 checklist lines "DateTime parsing, CiString case-insensitive keys", "X-Request-ID echoed".
"""

from __future__ import annotations

from tests.hub.objects import builders
from tests.peers import ScriptedResponse, encode_authorization
from tests.routing.world import CPA, EMA, EMB, HUB, RECEIVER, SENDER, World, json_of, pushes, routed

pytest_plugins = ("tests.routing.scenarios_conftest",)


async def test_cistrings_in_any_case(world: World) -> None:
    """TO headers and URL ids compare case-insensitively; the original values are what is forwarded."""
    world.cpo_a.put_object("/ocpi/2.2.1/locations/sender/LOC1", {"id": "LOC1"})
    answer = await world.call(world.emsp_a, "GET", SENDER, "locations", "LOC1", frm=("de", "ema"), to=("nl", "Cpa"))
    assert answer.status_code == 1000
    (forwarded,) = pushes(world.cpo_a, "locations")
    assert (forwarded.header("ocpi-to-country-code"), forwarded.header("ocpi-to-party-id")) == ("nl", "Cpa")
    assert (forwarded.header("ocpi-from-country-code"), forwarded.header("ocpi-from-party-id")) == ("de", "ema")

    location = builders.location("LOC1", party_id="CPA")
    assert (
        await world.call(world.cpo_a, "PUT", RECEIVER, "locations", "NL/CPA/LOC1", frm=CPA, to=HUB, body=location)
    ).status == 201
    patch = b'{"status": "BLOCKED", "last_updated": "2026-01-05T00:00:00Z"}'
    patched = await world.call(
        world.cpo_a,
        "PATCH",
        RECEIVER,
        "locations",
        "nl/cpa/loc1/evse1",
        frm=("Nl", "cPa"),
        to=("nl", "hub"),
        body=patch,
    )
    assert (patched.status, patched.status_code) == (200, 1000), patched.envelope
    await world.settle()
    legs = pushes(world.emsp_a, "locations")
    assert [(r.method, r.path) for r in legs] == [
        ("PUT", "/ocpi/2.2.1/locations/receiver/NL/CPA/LOC1"),
        ("PATCH", "/ocpi/2.2.1/locations/receiver/nl/cpa/loc1/evse1"),
    ]
    stored = (await world.call(world.emsp_a, "GET", SENDER, "locations", frm=EMA, to=HUB)).data
    assert [e["status"] for e in stored[0]["evses"]] == ["BLOCKED", "AVAILABLE"]
    assert (stored[0]["country_code"], stored[0]["party_id"], stored[0]["id"]) == ("NL", "CPA", "LOC1")


async def test_null_optional_fields_are_absent(world: World) -> None:
    """``null`` in an optional field is treated as absent (types §cardinality ``?``), stored and forwarded as sent."""
    location = (
        builders.location("LOC1", party_id="CPA").rstrip(b"}")
        + b', "postal_code": null, "directions": null, "opening_times": null, "related_locations": null}'
    )
    stored = await world.call(world.cpo_a, "PUT", RECEIVER, "locations", "NL/CPA/LOC1", frm=CPA, to=HUB, body=location)
    assert (stored.status, stored.status_code) == (201, 1000), stored.envelope
    session = builders.charging_session(
        "S1", party_id="CPA", emsp=EMA, end_date_time=None, total_cost=None, meter_id=None, charging_periods=None
    )
    routed_session = await world.call(world.cpo_a, "PUT", RECEIVER, "sessions", "NL/CPA/S1", frm=CPA, body=session)
    assert routed_session.status_code == 1000, routed_session.envelope
    await world.settle()
    assert [r.body for r in pushes(world.emsp_a, "locations")] == [location]
    assert [r.body for r in pushes(world.emsp_a, "sessions")] == [session]


async def test_missing_ids_are_generated_and_carried_on(world: World) -> None:
    """A request without X-Request-ID/X-Correlation-ID gets both generated; the forwarded request carries the
    generated correlation id and a request id of its own (transport §Unique message IDs)."""
    world.cpo_a.put_object("/ocpi/2.2.1/locations/sender/LOC1", {"id": "LOC1"})
    answer = await world.call(
        world.emsp_a, "GET", SENDER, "locations", "LOC1", frm=EMA, to=CPA, omit=("X-Request-ID", "X-Correlation-ID")
    )
    assert answer.status_code == 1000
    request_id, correlation_id = answer.header("x-request-id"), answer.header("x-correlation-id")
    assert request_id
    assert correlation_id
    assert len(request_id) == len(correlation_id) == 36
    (forwarded,) = pushes(world.cpo_a, "locations")
    assert forwarded.header("x-correlation-id") == correlation_id
    assert forwarded.header("x-request-id") not in (None, request_id)


async def test_sloppy_slashes_are_accepted(world: World) -> None:
    """URLs with a trailing slash or doubled slashes reach the same endpoint (DESIGN §5)."""
    world.cpo_a.put_object("/ocpi/2.2.1/locations/sender/LOC1", {"id": "LOC1"})
    for path in (
        "/ocpi/2.2.1/sender/locations/LOC1/",
        "//ocpi//2.2.1/sender//locations//LOC1",
        "/ocpi/2.2.1/sender/locations//LOC1//",
    ):
        answer = await world.emsp_a.request("GET", world.hub.url + path, headers=routed(EMA, CPA))
        assert (answer.status, answer.status_code, answer.data) == (200, 1000, {"id": "LOC1"}), path
    assert {r.path for r in pushes(world.cpo_a, "locations")} == {"/ocpi/2.2.1/locations/sender/LOC1"}
    listed = await world.emsp_a.request(
        "GET", world.hub.url + "/ocpi/2.2.1//sender/locations/", headers=routed(EMA, HUB)
    )
    assert (listed.status_code, listed.data) == (1000, [])


async def test_a_single_object_wrapped_in_a_list_is_unwrapped(world: World) -> None:
    """DESIGN §5: ``[ {object} ]`` is taken as the object: stored, fanned out and forwarded as the object's own
    bytes. A list of two is no single object: refused (2001)."""
    location = builders.location("LOC1", party_id="CPA")
    wrapped = b"[ " + location + b" ]"
    stored = await world.call(world.cpo_a, "PUT", RECEIVER, "locations", "NL/CPA/LOC1", frm=CPA, to=HUB, body=wrapped)
    assert (stored.status, stored.status_code) == (201, 1000), stored.envelope
    await world.settle()
    assert [r.body for r in pushes(world.emsp_b, "locations")] == [location]
    listed = await world.call(world.emsp_a, "GET", SENDER, "locations", frm=EMA, to=HUB)
    assert listed.data == [json_of(location)]
    # Directly routed too, and on the open-routed session PUT that the hub records.
    token = builders.token("TOK1", country_code="DE", party_id="EMA")
    direct = await world.call(
        world.emsp_a, "PUT", RECEIVER, "tokens", "DE/EMA/TOK1", frm=EMA, to=CPA, body=b"[" + token + b"]"
    )
    assert direct.status_code == 1000
    assert pushes(world.cpo_a, "tokens")[-1].body == token
    session = builders.charging_session("S1", party_id="CPA", emsp=EMB)
    opened = await world.call(
        world.cpo_a, "PUT", RECEIVER, "sessions", "NL/CPA/S1", frm=CPA, body=b"[" + session + b"]"
    )
    assert opened.status_code == 1000, opened.envelope
    assert pushes(world.emsp_b, "sessions")[-1].body == session
    two = b"[" + location + b"," + location + b"]"
    refused = await world.call(world.cpo_a, "PUT", RECEIVER, "locations", "NL/CPA/LOC1", frm=CPA, to=HUB, body=two)
    assert (refused.status, refused.status_code) == (200, 2001)


async def test_receiver_redirects_are_followed(world: World) -> None:
    """A receiver that moved an endpoint answers 307/302: the hub follows with the same method, body, token and
    routing headers (DESIGN §5), and relays the final answer."""
    base = world.emsp_a.module_path("locations", RECEIVER)
    moved = world.emsp_a.base_url + base + "/moved/NL/CPA/LOC9"
    world.emsp_a.set_response(
        "PUT", base + "/NL/CPA/LOC9", ScriptedResponse(http_status=307, headers={"Location": moved})
    )
    location = builders.location("LOC9", party_id="CPA")
    answer = await world.call(world.cpo_a, "PUT", RECEIVER, "locations", "NL/CPA/LOC9", frm=CPA, to=EMA, body=location)
    assert (answer.status, answer.status_code) == (201, 1000), answer.envelope
    first, second = pushes(world.emsp_a, "locations")
    assert (first.path, first.status) == (base + "/NL/CPA/LOC9", 307)
    assert (second.method, second.path, second.body, second.status) == (
        "PUT",
        base + "/moved/NL/CPA/LOC9",
        location,
        201,
    )
    assert world.emsp_a.token_b is not None
    assert second.header("authorization") == encode_authorization(world.emsp_a.token_b, "base64")
    assert (second.header("ocpi-from-party-id"), second.header("ocpi-to-party-id")) == ("CPA", "EMA")
    assert second.header("x-correlation-id") == first.header("x-correlation-id")
    # A GET moved with 302.
    sender = world.cpo_a.module_path("locations", SENDER)
    world.cpo_a.put_object(sender + "/new/LOC1", {"id": "LOC1"})
    world.cpo_a.set_response(
        "GET",
        sender + "/LOC1",
        ScriptedResponse(http_status=302, headers={"Location": world.cpo_a.base_url + sender + "/new/LOC1"}),
    )
    got = await world.call(world.emsp_a, "GET", SENDER, "locations", "LOC1", frm=EMA, to=CPA)
    assert (got.status, got.status_code, got.data) == (200, 1000, {"id": "LOC1"})


async def test_percent_encoded_ids_are_decoded_once(world: World) -> None:
    """An id holding "%" travels intact: the hub reads the raw path and decodes each segment exactly once."""
    token = builders.token("A%41 1", country_code="DE", party_id="EMA")
    stored = await world.call(world.emsp_a, "PUT", RECEIVER, "tokens", "DE/EMA/A%2541%201", frm=EMA, to=HUB, body=token)
    assert (stored.status, stored.status_code) == (201, 1000), stored.envelope
    await world.settle()
    (leg,) = [r for r in pushes(world.cpo_a, "tokens") if r.method == "PUT"]
    # The fan-out URL carries the same id, encoded again: "A%41 1" → A%2541%201 (not "AA 1").
    assert leg.path.endswith("/DE/EMA/A%41 1")  # the peer's server decoded A%2541%201 once
    assert leg.body == token
