"""End-to-end direct routing (TO = another party): every module both ways, hub errors, sender checks.

Scenarios 1-3 of the routing test plan; the checklist lines of hub notes §9 they cover are named per test. Real hub,
real PostgreSQL, four real partner platforms registered through the handshake (``tests.routing.world``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qsl

import aiohttp
from sqlalchemy import select

from hub.objects.models import SessionRow
from tests.hub.objects import builders
from tests.peers import PeerPlatform, ScriptedResponse, encode_authorization
from tests.routing.world import (
    CPA,
    CPB,
    CPC,
    EMA,
    EMB,
    FORWARD_TIMEOUT,
    HUB,
    RECEIVER,
    SENDER,
    MakeWorld,
    PartyKey,
    World,
    client_info,
    json_of,
    pushes,
    routed,
    told,
    until,
)

pytest_plugins = ("tests.routing.scenarios_conftest",)

# Bytes as a partner wrote them: odd spacing, an unknown field and a number with a trailing zero (DESIGN §5).
ODD = b', "x_vendor_field": {"nested": [1, 2.50]} , "x_price": 1.50 }'


def odd(body: bytes) -> bytes:
    """``body`` (a JSON object) with the ODD tail: what the receiver gets must be these bytes, unchanged."""
    return body.rstrip()[:-1] + ODD


@dataclass
class Case:
    name: str
    requester: str  # World attribute of the calling peer
    frm: PartyKey
    receiver: str  # World attribute of the receiving peer
    to: PartyKey
    method: str
    interface: str
    module: str
    tail: str  # path tail after the module URL, with query
    body: bytes | None = None
    answer: ScriptedResponse | None = None  # what the receiver answers; None: its default behaviour
    rewritten: bool = False  # commands/profiles: the hub swaps the response_url, the rest must survive


def cases() -> list[Case]:
    session = builders.charging_session("S1", country_code="NL", party_id="CPA", emsp=EMA)
    session_patch = b'{"kwh": 5.50, "last_updated": "2026-01-01T10:05:00Z"}'
    cdr = builders.cdr("CDR1", country_code="BE", party_id="CPB", emsp=EMB)
    tariff = builders.tariff("T1", country_code="BE", party_id="CPC")
    token = builders.token("TOK1", country_code="DE", party_id="EMA")
    location = builders.location("LOC1", country_code="NL", party_id="CPA")
    counts = {"X-Total-Count": "7", "X-Limit": "3"}
    start = (
        b'{"response_url": "https://emsp-a.example/cmd/1", "token": '
        + token
        + b', "location_id": "LOC1", "evse_uid": "EVSE1", "x_vendor": 1.50}'
    )
    set_profile = (
        b'{"charging_profile": {"charging_rate_unit": "W", "charging_profile_period": '
        b'[{"start_period": 0, "limit": 11000.0}]}, "response_url": "https://emsp-a.example/cp/1", "x_vendor": 1.50}'
    )
    active_profile = (
        b'{"start_date_time": "2026-01-01T10:00:00Z", "charging_profile": {"charging_rate_unit": "A", '
        b'"charging_profile_period": [{"start_period": 0, "limit": 16.0}]} , "x_vendor": 1.50}'
    )
    a, b, ca, cb = "emsp_a", "emsp_b", "cpo_a", "cpo_b"
    cmd_ok = ScriptedResponse(data={"result": "ACCEPTED", "timeout": 30})
    status_patch = odd(b'{"status": "CHARGING", "last_updated": "2026-01-01T10:00:00Z"}')
    # fmt: off
    return [
        # name, requester (peer, party), receiver (peer, party), method, interface, module, tail, body
        Case("locations: GET list", a, EMA, ca, CPA, "GET", SENDER, "locations", "?offset=0&limit=1"),
        Case("locations: GET one", b, EMB, ca, CPA, "GET", SENDER, "locations", "LOC1",
             answer=ScriptedResponse(data={"id": "LOC1", "x": 1.5})),
        Case("locations: PUT", ca, CPA, a, EMA, "PUT", RECEIVER, "locations", "NL/CPA/LOC1", odd(location)),
        Case("locations: PATCH EVSE", ca, CPA, b, EMB, "PATCH", RECEIVER, "locations", "NL/CPA/LOC1/EVSE1",
             status_patch),
        Case("locations: receiver GET", ca, CPA, a, EMA, "GET", RECEIVER, "locations", "NL/CPA/LOC1/EVSE1",
             answer=ScriptedResponse(data={"uid": "EVSE1"})),
        Case("sessions: GET list", a, EMA, ca, CPA, "GET", SENDER, "sessions",
             "?date_from=2026-01-01T00:00:00Z&limit=5", answer=ScriptedResponse(data=[], headers=counts)),
        Case("sessions: PUT", ca, CPA, a, EMA, "PUT", RECEIVER, "sessions", "NL/CPA/S1", odd(session)),
        Case("sessions: PATCH", ca, CPA, a, EMA, "PATCH", RECEIVER, "sessions", "NL/CPA/S1", session_patch),
        Case("sessions: charging preferences", a, EMA, ca, CPA, "PUT", SENDER, "sessions", "S1/charging_preferences",
             b'{"profile_type": "FAST", "energy_need": 12.50}', answer=ScriptedResponse(data="ACCEPTED")),
        Case("cdrs: GET list (second party of a platform)", b, EMB, cb, CPB, "GET", SENDER, "cdrs",
             "?date_from=2026-01-01T00:00:00Z&date_to=2026-02-01T00:00:00Z",
             answer=ScriptedResponse(data=[], headers=counts)),
        Case("cdrs: POST", cb, CPB, b, EMB, "POST", RECEIVER, "cdrs", "", odd(cdr)),
        Case("tariffs: GET list", a, EMA, cb, CPC, "GET", SENDER, "tariffs", "?limit=10",
             answer=ScriptedResponse(data=[], headers=counts)),
        Case("tariffs: PUT", cb, CPC, a, EMA, "PUT", RECEIVER, "tariffs", "BE/CPC/T1", odd(tariff)),
        Case("tariffs: DELETE", cb, CPC, a, EMA, "DELETE", RECEIVER, "tariffs", "BE/CPC/T1"),
        Case("tokens: GET list", ca, CPA, a, EMA, "GET", SENDER, "tokens", "?offset=5&limit=5",
             answer=ScriptedResponse(data=[], headers=counts)),
        Case("tokens: PUT", a, EMA, ca, CPA, "PUT", RECEIVER, "tokens", "DE/EMA/TOK1?type=RFID", odd(token)),
        Case("tokens: PATCH", a, EMA, cb, CPB, "PATCH", RECEIVER, "tokens", "DE/EMA/TOK1?type=RFID",
             odd(b'{"valid": false, "last_updated": "2026-01-01T10:00:00Z"}')),
        Case("tokens: authorize", ca, CPA, a, EMA, "POST", SENDER, "tokens", "TOK1/authorize?type=RFID",
             odd(b'{"location_id": "LOC1", "evse_uids": ["EVSE1"]}'),
             answer=ScriptedResponse(data={"allowed": "ALLOWED", "token": json_of(token)})),
        Case("commands: START_SESSION", a, EMA, ca, CPA, "POST", RECEIVER, "commands", "START_SESSION", start,
             answer=cmd_ok, rewritten=True),
        Case("chargingprofiles: PUT", a, EMA, ca, CPA, "PUT", RECEIVER, "chargingprofiles", "S1", set_profile,
             answer=cmd_ok, rewritten=True),
        Case("chargingprofiles: GET", b, EMB, cb, CPB, "GET", RECEIVER, "chargingprofiles",
             "S2?duration=900&response_url=https%3A%2F%2Femsp-b.example%2Fcp%2F2", answer=cmd_ok, rewritten=True),
        Case("chargingprofiles: DELETE", b, EMB, cb, CPB, "DELETE", RECEIVER, "chargingprofiles",
             "S2?response_url=https%3A%2F%2Femsp-b.example%2Fcp%2F3", answer=cmd_ok, rewritten=True),
        Case("chargingprofiles: ActiveChargingProfile PUT", ca, CPA, a, EMA, "PUT", SENDER, "chargingprofiles", "S1",
             active_profile),
    ]
    # fmt: on


def _auth_of(peer: PeerPlatform) -> str:
    """The Authorization header the hub must send ``peer``: its token, in the form the peer itself uses."""
    assert peer.token_b is not None
    return encode_authorization(peer.token_b, peer.config.token_form)


async def test_direct_routing_of_every_module_both_ways(world: World) -> None:
    """Scenario 1 (hub notes §1.8, §1.9 item 1; §9 "X-Request-ID", "Direct routing", "forward raw bodies").

    Path tail and query kept, body byte for byte, new X-Request-ID per hop, same X-Correlation-ID, routing headers
    kept, the receiver's token in its own form, the receiver's answer relayed (HTTP status, envelope, paging headers).
    """
    # The CPO's own list for the paginated GET: two locations, one per page (the peer's X-Limit is 100).
    for loc in ("LOC1", "LOC2"):
        world.cpo_a.put_object(
            f"/ocpi/2.2.1/locations/sender/{loc}", {"id": loc, "last_updated": "2026-01-01T10:00:00Z"}
        )
    for case in cases():
        requester: PeerPlatform = getattr(world, case.requester)
        receiver: PeerPlatform = getattr(world, case.receiver)
        path, _, query = case.tail.partition("?")
        expected_path = receiver.module_path(case.module, case.interface) + (f"/{path}" if path else "")
        if case.answer is not None:
            receiver.set_response(case.method, expected_path, case.answer)
        before = len(receiver.received)
        ids = {"X-Request-ID": f"req-{case.name}", "X-Correlation-ID": f"corr-{case.name}"}
        answer = await world.call(
            requester, case.method, case.interface, case.module, case.tail, frm=case.frm, to=case.to, body=case.body,
            headers=ids,
        )  # fmt: skip
        got = receiver.received[before:]
        assert len(got) == 1, f"{case.name}: the receiver got {len(got)} requests"
        (forwarded,) = got
        # Where it went: same method, path tail and query, on the receiver's interface of that module.
        assert (forwarded.method, forwarded.path) == (case.method, expected_path), case.name
        if case.rewritten and "response_url" in query:
            assert forwarded.query.keys() == dict(parse_qsl(query)).keys(), case.name
            assert {k: v for k, v in forwarded.query.items() if k != "response_url"} == {
                k: v for k, v in parse_qsl(query) if k != "response_url"
            }, case.name
        else:
            assert forwarded.query_string == query, case.name
        # What it carried: the body byte for byte (commands and profiles: everything but the response_url).
        if case.rewritten:
            assert case.body is None or json_of(forwarded.body).keys() == json_of(case.body).keys(), case.name
            if case.body is not None:
                sent, arrived = json_of(case.body), json_of(forwarded.body)
                assert {k: v for k, v in arrived.items() if k != "response_url"} == {
                    k: v for k, v in sent.items() if k != "response_url"
                }, case.name
                assert b'"x_vendor":1.50' in forwarded.body.replace(b" ", b""), f"{case.name}: 1.50 re-encoded"
                assert arrived["response_url"].startswith(world.hub.url + "/ocpi/2.2.1/hub/results/"), case.name
            else:
                hub_url = forwarded.query["response_url"]
                assert hub_url.startswith(world.hub.url + "/ocpi/2.2.1/hub/results/"), case.name
        else:
            assert forwarded.body == (case.body or b""), f"{case.name}: body changed on the way"
        if not case.body:
            assert forwarded.header("content-type") is None, f"{case.name}: Content-Type without a body"
        # Ids: a new request id for this hop, the correlation id kept end to end (transport §Unique message IDs).
        assert forwarded.header("x-request-id") not in (None, ids["X-Request-ID"]), case.name
        assert forwarded.header("x-correlation-id") == ids["X-Correlation-ID"], case.name
        # Routing headers as the requester sent them; the receiver's own token in the form it uses.
        assert (forwarded.header("ocpi-from-country-code"), forwarded.header("ocpi-from-party-id")) == case.frm
        assert (forwarded.header("ocpi-to-country-code"), forwarded.header("ocpi-to-party-id")) == case.to
        assert forwarded.header("authorization") == _auth_of(receiver), case.name
        assert forwarded.caller == "partner", case.name
        # The answer: the receiver's HTTP status and envelope, its routing headers, the requester's own ids.
        assert answer.status == forwarded.status, case.name
        assert answer.header("x-request-id") == ids["X-Request-ID"], case.name
        assert answer.header("x-correlation-id") == ids["X-Correlation-ID"], case.name
        assert answer.status_code == 1000, f"{case.name}: {answer.envelope}"
        assert (answer.header("ocpi-from-country-code"), answer.header("ocpi-from-party-id")) == case.to, case.name
        assert (answer.header("ocpi-to-country-code"), answer.header("ocpi-to-party-id")) == case.frm, case.name
        if case.answer is not None:
            assert answer.data == case.answer.data, case.name
            if case.answer.headers:
                assert answer.header("x-total-count") == "7", case.name
                assert answer.header("x-limit") == "3", case.name
    # The paginated GET: totals relayed, the CPO's next link replaced by a hub URL (checked in detail elsewhere).
    listed = await world.call(world.emsp_a, "GET", SENDER, "locations", "?limit=1", frm=EMA, to=CPA)
    assert (listed.header("x-total-count"), listed.header("x-limit")) == ("2", "100")
    assert listed.data == [{"id": "LOC1", "last_updated": "2026-01-01T10:00:00Z"}]
    link = listed.header("link") or ""
    assert link.startswith(f"<{world.hub.url}/ocpi/2.2.1/hub/proxy/"), link
    assert link.endswith('>; rel="next"'), link
    assert world.cpo_a.base_url not in link


async def test_receiver_errors_pass_through_unchanged(world: World) -> None:
    """A receiver's own 2xxx/3xxx (with its HTTP status) reaches the requester as it was (status_codes §hub)."""
    base = world.cpo_a.module_path("locations", SENDER)
    answers = {  # location id: (HTTP status, OCPI status, message) the CPO answers
        "GONE": (200, 2003, "no such location here"),
        "BAD": (200, 2001, "bad id"),
        "DOWN": (200, 3000, "database down"),
        "MISSING": (404, 2000, "unknown object"),
    }
    for loc, (http, code, message) in answers.items():
        world.cpo_a.set_response("GET", f"{base}/{loc}", ScriptedResponse(http, code, message=message))
        answer = await world.call(world.emsp_a, "GET", SENDER, "locations", loc, frm=EMA, to=CPA)
        assert (answer.status, answer.status_code) == (http, code), loc
        assert answer.envelope is not None
        assert answer.envelope["status_message"] == message, loc
        assert (answer.header("ocpi-from-party-id"), answer.header("ocpi-to-party-id")) == ("CPA", "EMA"), loc


async def test_unknown_receiver_is_4001(world: World) -> None:
    """Scenario 2: a TO the hub does not know → HTTP 200 + 4001, nothing sent anywhere (status_codes §4001)."""
    answer = await world.call(world.emsp_a, "GET", SENDER, "locations", "LOC1", frm=EMA, to=("XX", "ZZZ"))
    assert (answer.status, answer.status_code) == (200, 4001)
    assert "XX/ZZZ" in (answer.envelope or {}).get("status_message", "")
    # The hub's own answer names its parties too (transport §routing headers: requests and responses): FROM hub.
    assert (answer.header("ocpi-from-country-code"), answer.header("ocpi-from-party-id")) == HUB
    assert (answer.header("ocpi-to-country-code"), answer.header("ocpi-to-party-id")) == EMA
    assert all(not pushes(peer, "locations") for peer in world.peers)


async def test_agreements_policy_decides_who_roams_with_whom(make_world: MakeWorld) -> None:
    """Scenario 2 (4001 for a pair without agreement, then routed once one is in force), with the other faces of the
    same policy: the broadcast audience (scenario 4), GET All (scenario 5) and HubClientInfo PLANNED (scenario 8).
    """
    world = await make_world(roaming_policy="agreements")
    # HubClientInfo: with no agreement at all, every party of the other role is PLANNED for the viewer (DESIGN §4).
    assert client_info(world.emsp_a, CPA) == "PLANNED"
    assert client_info(world.cpo_a, EMB) == "PLANNED"
    denied = await world.call(world.emsp_a, "GET", SENDER, "locations", "LOC1", frm=EMA, to=CPA)
    assert (denied.status, denied.status_code) == (200, 4001)
    assert not pushes(world.cpo_a, "locations")

    world.cpo_a.put_object("/ocpi/2.2.1/locations/sender/LOC1", {"id": "LOC1"})
    await world.add_agreement(CPA, EMA)

    async def routed_now() -> bool:
        answer = await world.call(world.emsp_a, "GET", SENDER, "locations", "LOC1", frm=EMA, to=CPA)
        return answer.status_code == 1000

    await until(routed_now, what="the agreement to take effect in routing")
    assert pushes(world.cpo_a, "locations")[-1].header("ocpi-from-party-id") == "EMA"
    still_denied = await world.call(world.emsp_b, "GET", SENDER, "locations", "LOC1", frm=EMB, to=CPA)
    assert still_denied.status_code == 4001
    # Announced as the operator tools do after writing an agreement (CLI, admin API): CPA is no longer PLANNED for
    # eMSP A, nor eMSP A for CPA; eMSP B still sees CPA as PLANNED.
    await world.runtime.agreements_changed(CPA, EMA)
    await until(lambda: client_info(world.emsp_a, CPA) == "CONNECTED", what="CPA to be CONNECTED for eMSP A")
    await until(lambda: client_info(world.cpo_a, EMA) == "CONNECTED", what="EMA to be CONNECTED for CPO A")
    assert client_info(world.emsp_b, CPA) == "PLANNED"

    # Broadcast: only the permitted eMSP gets CPA's location.
    location = builders.location("LOC1", country_code="NL", party_id="CPA")
    stored = await world.call(world.cpo_a, "PUT", RECEIVER, "locations", "NL/CPA/LOC1", frm=CPA, to=HUB, body=location)
    assert (stored.status, stored.status_code) == (201, 1000)
    await world.settle()
    assert [r.body for r in pushes(world.emsp_a, "locations", method="PUT")] == [location]
    assert pushes(world.emsp_b, "locations") == []

    # GET All: eMSP B does not see CPA's location, eMSP A does.
    for peer, party, expected in ((world.emsp_a, EMA, ["LOC1"]), (world.emsp_b, EMB, [])):
        page = await world.call(peer, "GET", SENDER, "locations", frm=party, to=HUB)
        assert page.status_code == 1000
        assert [item["id"] for item in page.data] == expected, party
        assert page.header("x-total-count") == str(len(expected))


async def test_slow_receiver_is_4002(world: World) -> None:
    """Scenario 2: the receiver answers after forward_timeout → 4002 once that time is up (status_codes §4002)."""
    path = world.emsp_a.module_path("locations", RECEIVER) + "/NL/CPA/LOC1"
    world.emsp_a.set_response("PUT", path, ScriptedResponse(delay=FORWARD_TIMEOUT + 1.0))
    started = time.monotonic()
    answer = await world.call(
        world.cpo_a,
        "PUT",
        RECEIVER,
        "locations",
        "NL/CPA/LOC1",
        frm=CPA,
        to=EMA,
        body=builders.location(party_id="CPA"),
    )
    elapsed = time.monotonic() - started
    assert (answer.status, answer.status_code) == (200, 4002)
    assert FORWARD_TIMEOUT - 0.1 < elapsed < FORWARD_TIMEOUT + 0.8, elapsed


async def test_receiver_down_is_4003_and_then_offline_for_everyone(world: World) -> None:
    """Scenario 2: a receiver that cannot be reached → 4003, and HubClientInfo tells the others it is OFFLINE; once it
    calls the hub again it is CONNECTED again (hub notes §3: forwarding failures and traffic drive the status).
    """
    await world.stop(world.emsp_b)
    answer = await world.call(
        world.cpo_a,
        "PUT",
        RECEIVER,
        "locations",
        "NL/CPA/LOC1",
        frm=CPA,
        to=EMB,
        body=builders.location(party_id="CPA"),
    )
    assert (answer.status, answer.status_code) == (200, 4003)
    await told((world.cpo_a, world.cpo_b, world.emsp_a), EMB, "OFFLINE")
    await world.restart(world.emsp_b)
    back = await world.call(world.emsp_b, "GET", SENDER, "locations", "LOC1", frm=EMB, to=CPA)
    assert back.status == 404  # the CPO has no LOC1: its own 404 + 2000 envelope, relayed
    await told((world.cpo_a, world.cpo_b, world.emsp_a), EMB, "CONNECTED")


async def _broken_http_server(port: int, reply: bytes) -> asyncio.Server:
    """A raw TCP server that reads a request and answers ``reply`` (not valid HTTP), then hangs up."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", port, reuse_address=True)


async def test_broken_answer_is_4000_not_offline(world: World) -> None:
    """Scenario 2: the receiver is connected but its HTTP answer is broken (a truncated body): that is no
    "connection problem (receiving party is not connected)" (4003) but a generic hub error, 4000 (status_codes §4),
    and the party is not announced OFFLINE for it.
    """
    await world.stop(world.emsp_b)
    port = world.ports[world.emsp_b.versions_url]
    truncated = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{"status_code": 10'
    server = await _broken_http_server(port, truncated)
    try:
        answer = await world.call(world.emsp_a, "GET", SENDER, "locations", "LOC1", frm=EMA, to=CPA)
        assert answer.status == 404  # control: routing to a live CPO works meanwhile
        broken = await world.call(
            world.cpo_a, "PUT", RECEIVER, "locations", "NL/CPA/LOC1", frm=CPA, to=EMB, body=b'{"id": "LOC1"}',
            headers={"X-Correlation-ID": "corr-broken"},
        )  # fmt: skip
        assert (broken.status, broken.status_code) == (200, 4000), broken.envelope
        garbage = b"HTTP/1.1 2OO OK\r\n\r\n"
        server.close()
        await server.wait_closed()
        server = await _broken_http_server(port, garbage)
        bad_status_line = await world.call(
            world.cpo_a, "PUT", RECEIVER, "locations", "NL/CPA/LOC1", frm=CPA, to=EMB, body=b'{"id": "LOC1"}'
        )
        assert (bad_status_line.status, bad_status_line.status_code) == (200, 4000), bad_status_line.envelope
        # The message log has the failed call; by then an OFFLINE announcement would have been queued.
        await world.log_of("corr-broken", at_least=2)
        await world.settle()
        assert client_info(world.cpo_a, EMB) == "CONNECTED"
    finally:
        server.close()
        await server.wait_closed()


async def test_plain_error_pages_become_envelopes(world: World) -> None:
    """Scenario 2: a receiver answering a bare 404/422/500 page → the requester still gets an OCPI envelope."""
    base = world.emsp_a.module_path("locations", RECEIVER) + "/NL/CPA"
    pages = {
        "L404": (404, b"<html><body>Not Found</body></html>", 404, 2000),
        "L422": (422, b"Unprocessable Entity", 200, 2001),
        "L500": (500, b"Internal Server Error", 500, 3000),
        "L401": (401, b"Unauthorized", 200, 4003),
    }
    for loc, (http, page, want_http, want_code) in pages.items():
        world.emsp_a.set_response("PUT", f"{base}/{loc}", ScriptedResponse(http_status=http, raw_body=page))
        answer = await world.call(
            world.cpo_a, "PUT", RECEIVER, "locations", f"NL/CPA/{loc}", frm=CPA, to=EMA, body=b'{"id": "X"}'
        )
        assert answer.envelope is not None, f"{loc}: {answer.body!r}"
        assert (answer.status, answer.status_code) == (want_http, want_code), loc
        assert isinstance(answer.envelope["timestamp"], str)
        assert str(http) in answer.envelope["status_message"], loc


async def test_sender_checks(world: World) -> None:
    """Scenario 3 (DESIGN §5, hub notes §1.9 item 8): OCPI-from must be the caller's own; inferred only for a
    single-party platform; a push's URL owner must be the sender; half a header pair is 2001.
    """
    location = builders.location("LOC1", country_code="NL", party_id="CPA")

    # A party of another platform in OCPI-from: refused, nothing forwarded.
    spoofed = await world.call(world.emsp_a, "GET", SENDER, "locations", "LOC1", frm=EMB, to=CPA)
    assert (spoofed.status, spoofed.status_code) == (200, 2000)
    assert "EMB" in spoofed.envelope["status_message"]  # type: ignore[index]
    assert pushes(world.cpo_a, "locations") == []

    # No OCPI-from from a single-party platform: inferred from its credentials and forwarded with it.
    world.cpo_a.put_object("/ocpi/2.2.1/locations/sender/LOC1", {"id": "LOC1"})
    inferred = await world.call(world.emsp_a, "GET", SENDER, "locations", "LOC1", to=CPA)
    assert inferred.status_code == 1000
    (forwarded,) = pushes(world.cpo_a, "locations")
    assert (forwarded.header("ocpi-from-country-code"), forwarded.header("ocpi-from-party-id")) == EMA

    # No OCPI-from from a platform with two parties: which one? 2001.
    ambiguous = await world.call(world.cpo_b, "GET", SENDER, "tokens", to=EMA)
    assert (ambiguous.status, ambiguous.status_code) == (200, 2001)

    # The URL of a push names a party that is not the caller's, or not the OCPI-from one.
    for peer, frm, tail in (
        (world.cpo_a, CPA, "BE/CPB/LOC1"),  # another platform's party
        (world.cpo_b, CPB, "BE/CPC/LOC1"),  # the caller's other party
    ):
        refused = await world.call(peer, "PUT", RECEIVER, "locations", tail, frm=frm, to=EMA, body=location)
        assert (refused.status, refused.status_code) == (200, 2001), tail
    # ... also for a broadcast.
    refused = await world.call(world.cpo_a, "PUT", RECEIVER, "locations", "BE/CPB/LOC1", frm=CPA, to=HUB, body=location)
    assert refused.status_code == 2001
    assert pushes(world.emsp_a, "locations") == []

    # Half a header pair: 2001.
    for headers in (
        {"OCPI-to-country-code": "NL"},
        {"OCPI-to-party-id": "CPA"},
        {"OCPI-from-country-code": "DE", "OCPI-to-country-code": "NL", "OCPI-to-party-id": "CPA"},
    ):
        half = await world.emsp_a.request("GET", world.hub_url(SENDER, "locations", "LOC1"), headers=headers)
        assert (half.status, half.status_code) == (200, 2001), headers
    assert len(pushes(world.cpo_a, "locations")) == 1


async def test_configuration_modules_are_never_routed(world: World) -> None:
    """Scenario 3 (transport §routing headers: not on versions, credentials, hubclientinfo): routing headers there
    change nothing; the hub answers for itself and calls nobody.
    """
    to_cpa = routed(EMA, CPA)
    versions = await world.emsp_a.request("GET", world.hub.versions_url, headers=to_cpa)
    assert versions.status_code == 1000
    assert versions.data[0]["url"].startswith(world.hub.url)
    credentials = await world.emsp_a.request("GET", "credentials", headers=to_cpa)
    assert credentials.status_code == 1000
    assert [(r["country_code"], r["party_id"], r["role"]) for r in credentials.data["roles"]] == [("NL", "HUB", "HUB")]
    infos = await world.emsp_a.request("GET", "hubclientinfo", headers=to_cpa)
    assert infos.status_code == 1000
    assert {(i["country_code"], i["party_id"]) for i in infos.data} >= {CPA, CPB, CPC, EMB}
    # The hub has no routed URL for them either.
    for path in ("/ocpi/2.2.1/sender/credentials", "/ocpi/2.2.1/receiver/hubclientinfo/NL/CPA"):
        missing = await world.emsp_a.request("GET", world.hub.url + path, headers=to_cpa)
        assert missing.status == 404, path
        assert missing.status_code is not None
        assert 2000 <= missing.status_code < 3000
    await asyncio.sleep(0.1)
    assert all(not [r for r in peer.received if r.module in ("credentials", "versions")] for peer in world.peers)
    assert world.cpo_a.received == []


async def test_receiver_that_answers_again_is_connected_again(world: World) -> None:
    """A receiver shown OFFLINE that answers a routed request (without calling the hub itself) is CONNECTED again:
    a successful forward is proof it is reachable (hub notes §3).
    """
    await world.stop(world.emsp_b)
    down = await world.call(
        world.cpo_a,
        "PUT",
        RECEIVER,
        "locations",
        "NL/CPA/LOC1",
        frm=CPA,
        to=EMB,
        body=builders.location(party_id="CPA"),
    )
    assert down.status_code == 4003
    await told((world.cpo_a, world.emsp_a), EMB, "OFFLINE")
    await world.restart(world.emsp_b)
    again = await world.call(
        world.cpo_a,
        "PUT",
        RECEIVER,
        "locations",
        "NL/CPA/LOC1",
        frm=CPA,
        to=EMB,
        body=builders.location(party_id="CPA"),
    )
    assert again.status_code == 1000
    await told((world.cpo_a, world.emsp_a), EMB, "CONNECTED")


async def test_bodies_come_whole_with_or_without_content_length(world: World) -> None:
    """The fast path asks the server for a body only when the request has one (RFC 9112 §6.3): a chunked Session PUT
    (no Content-Length) is still stored and forwarded byte for byte, and a bodiless GET is forwarded without one."""
    cpo, emsp = world.cpo_a, world.emsp_a
    assert cpo.token_c is not None
    body = builders.charging_session("S77", country_code="NL", party_id="CPA", emsp=EMA)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 100):
            yield body[start : start + 100]

    headers = {
        **routed(CPA, EMA),
        "Authorization": encode_authorization(cpo.token_c, cpo.config.token_form),
        "Content-Type": "application/json",
        "X-Request-ID": "chunked-1",
        "X-Correlation-ID": "chunked-1",
    }
    before = len(emsp.received)
    async with (
        aiohttp.ClientSession() as client,
        client.put(world.hub_url(RECEIVER, "sessions", "NL/CPA/S77"), data=chunks(), headers=headers) as response,
    ):
        assert response.status == 201  # the eMSP created it, and the hub relays its answer
        assert (await response.json())["status_code"] == 1000
    (forwarded,) = emsp.received[before:]
    assert forwarded.body == body
    async with world.sessions() as session:
        stored = await session.scalar(select(SessionRow.data).where(SessionRow.session_id == "S77"))
    assert stored == body

    cpo.set_response("GET", cpo.module_path("sessions", SENDER), ScriptedResponse(data=[]))
    before = len(cpo.received)
    answer = await world.call(emsp, "GET", SENDER, "sessions", frm=EMA, to=CPA)
    assert answer.status_code == 1000
    (got,) = cpo.received[before:]
    assert (got.method, got.body) == ("GET", b"")
