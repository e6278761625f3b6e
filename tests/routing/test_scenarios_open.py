"""End-to-end open routing (no TO) and the hub URLs that stand in for partner URLs: scenarios 6 and 7.

Hub notes §1.9 item 3, §4.5-§4.8, §1.6 (Link rewriting), §4.3 (CDR Location), §4.6 (response_url); ADR 0005, 0007;
§9 checklist lines "Tokens authorize", "Commands: async result relay", "Rewrite Link, CDR Location, response_url".
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from routing.links import CommandLink
from tests.hub.objects import builders
from tests.peers import PeerPlatform, ScriptedResponse, encode_authorization
from tests.routing.world import (
    AUTHORIZE_TIMEOUT,
    CPA,
    CPB,
    CPC,
    EMA,
    EMB,
    HUB,
    RECEIVER,
    SENDER,
    PartyKey,
    World,
    json_of,
    path_of,
    pushes,
    routed,
)

pytest_plugins = ("tests.routing.scenarios_conftest",)


async def _broadcast(world: World, peer: PeerPlatform, party: PartyKey, path: str, body: bytes) -> None:
    """A broadcast PUT of ``path`` (``module/cc/pid/id``) by ``party``."""
    module, _, tail = path.partition("/")
    answer = await world.call(peer, "PUT", RECEIVER, module, tail, frm=party, to=HUB, body=body)
    assert answer.status_code == 1000, answer.envelope


def _to_of(received: object) -> tuple[str | None, str | None]:
    header = received.header  # type: ignore[attr-defined]
    return header("ocpi-to-country-code"), header("ocpi-to-party-id")


def _from_of(received: object) -> tuple[str | None, str | None]:
    header = received.header  # type: ignore[attr-defined]
    return header("ocpi-from-country-code"), header("ocpi-from-party-id")


def _token_auth(peer: PeerPlatform) -> str:
    assert peer.token_b is not None
    return encode_authorization(peer.token_b, peer.config.token_form)


async def test_open_routing_follows_the_content(world: World) -> None:
    """Scenario 6: the receiver follows from the content; the hub fills in OCPI-to for it (hub notes §1.9 table
    "Open routing"); unknown or ambiguous → 4001, an unknown token on authorize → HTTP 404 + 2004."""
    # What the hub learns from broadcasts: locations (one id at two CPOs), tokens (one uid at two eMSPs).
    await _broadcast(world, world.cpo_a, CPA, "locations/NL/CPA/LOC-A", builders.location("LOC-A", party_id="CPA"))
    loc_b = builders.location("LOC-B", country_code="BE", party_id="CPB")
    await _broadcast(world, world.cpo_b, CPB, "locations/BE/CPB/LOC-B", loc_b)
    for peer, party in ((world.cpo_a, CPA), (world.cpo_b, CPC)):
        body = builders.location("SHARED", country_code=party[0], party_id=party[1])
        await _broadcast(world, peer, party, f"locations/{party[0]}/{party[1]}/SHARED", body)
    token = builders.token("TOK1", country_code="DE", party_id="EMA")
    await _broadcast(world, world.emsp_a, EMA, "tokens/DE/EMA/TOK1", token)
    for peer, party in ((world.emsp_a, EMA), (world.emsp_b, EMB)):
        await _broadcast(
            world,
            peer,
            party,
            f"tokens/{party[0]}/{party[1]}/TWIN",
            builders.token("TWIN", country_code=party[0], party_id=party[1]),
        )
    await world.settle()
    for peer in world.peers:
        peer.received.clear()

    # Real-time authorization by the stored token: ALLOWED and BLOCKED pass through as the eMSP answered.
    authorize = world.emsp_a.module_path("tokens", SENDER) + "/TOK1/authorize"
    for allowed in ("ALLOWED", "BLOCKED"):
        info = {"allowed": allowed, "token": json_of(token), "authorization_reference": f"ref-{allowed}"}
        world.emsp_a.set_response("POST", authorize, ScriptedResponse(data=info))
        answer = await world.call(
            world.cpo_a, "POST", SENDER, "tokens", "tok1/authorize?type=RFID", frm=CPA,
            body=b'{"location_id": "LOC-A", "evse_uids": ["EVSE1"]}',
        )  # fmt: skip
        assert (answer.status, answer.status_code, answer.data) == (200, 1000, info), allowed
        forwarded = pushes(world.emsp_a, "tokens")[-1]
        assert (forwarded.method, forwarded.path.lower(), forwarded.query_string) == (
            "POST",
            authorize.lower(),
            "type=RFID",
        )
        assert forwarded.body == b'{"location_id": "LOC-A", "evse_uids": ["EVSE1"]}'
        assert _to_of(forwarded) == EMA
        assert _from_of(forwarded) == CPA
        assert forwarded.header("authorization") == _token_auth(world.emsp_a)
    unknown = await world.call(world.cpo_a, "POST", SENDER, "tokens", "NOPE/authorize", frm=CPA)
    assert (unknown.status, unknown.status_code) == (404, 2004)
    assert unknown.envelope is not None
    assert "data" not in unknown.envelope
    twin = await world.call(world.cpo_a, "POST", SENDER, "tokens", "TWIN/authorize", frm=CPA)
    assert (twin.status, twin.status_code) == (200, 4001), twin.envelope
    # The driver is waiting: a slow eMSP is cut off after authorize_timeout, well before forward_timeout.
    world.emsp_a.set_response("POST", authorize, ScriptedResponse(data={}, delay=AUTHORIZE_TIMEOUT + 0.7))
    started = time.monotonic()
    slow = await world.call(world.cpo_a, "POST", SENDER, "tokens", "TOK1/authorize", frm=CPA)
    elapsed = time.monotonic() - started
    assert (slow.status, slow.status_code) == (200, 4002)
    assert AUTHORIZE_TIMEOUT - 0.1 < elapsed < AUTHORIZE_TIMEOUT + 0.5, elapsed
    # TOK1's owner is now remembered in memory (routing.tokenowners); another eMSP pushing the same (uid, type)
    # makes it ambiguous at once, not after the memory's time-to-live.
    await _broadcast(
        world, world.emsp_b, EMB, f"tokens/{EMB[0]}/{EMB[1]}/TOK1",
        builders.token("TOK1", country_code=EMB[0], party_id=EMB[1]),
    )  # fmt: skip
    now_twin = await world.call(world.cpo_a, "POST", SENDER, "tokens", "TOK1/authorize", frm=CPA)
    assert (now_twin.status, now_twin.status_code) == (200, 4001), now_twin.envelope

    # Sessions: PUT by cdr_token's eMSP, PATCH by the session the hub remembers.
    session = builders.charging_session("S1", country_code="NL", party_id="CPA", emsp=EMA)
    patch = b'{"kwh": 3.25, "last_updated": "2026-01-01T10:10:00Z"}'
    for method, body in (("PUT", session), ("PATCH", patch)):
        answer = await world.call(world.cpo_a, method, RECEIVER, "sessions", "NL/CPA/S1", frm=CPA, body=body)
        assert answer.status_code == 1000, (method, answer.envelope)
        forwarded = pushes(world.emsp_a, "sessions")[-1]
        assert (forwarded.method, forwarded.path, forwarded.body) == (
            method,
            "/ocpi/2.2.1/sessions/receiver/NL/CPA/S1",
            body,
        )
        assert _to_of(forwarded) == EMA
    assert pushes(world.emsp_b, "sessions") == []
    unknown_session = await world.call(world.cpo_a, "PATCH", RECEIVER, "sessions", "NL/CPA/S9", frm=CPA, body=patch)
    assert unknown_session.status_code == 4001

    # The session's other parties: the eMSP's charging preferences go to its CPO, the CPO's ActiveChargingProfile
    # to the session's eMSP.
    preferences = world.cpo_a.module_path("sessions", SENDER) + "/S1/charging_preferences"
    world.cpo_a.set_response("PUT", preferences, ScriptedResponse(data="ACCEPTED"))
    answer = await world.call(
        world.emsp_a, "PUT", SENDER, "sessions", "S1/charging_preferences", frm=EMA, body={"profile_type": "GREEN"}
    )
    assert (answer.status_code, answer.data) == (1000, "ACCEPTED")
    assert _to_of(pushes(world.cpo_a, "sessions")[-1]) == CPA
    active = {"start_date_time": "2026-01-01T10:00:00Z", "charging_profile": {"charging_rate_unit": "A"}}
    answer = await world.call(world.cpo_a, "PUT", SENDER, "chargingprofiles", "S1", frm=CPA, body=active)
    assert answer.status_code == 1000
    (pushed,) = pushes(world.emsp_a, "chargingprofiles")
    assert (pushed.path, _to_of(pushed)) == ("/ocpi/2.2.1/chargingprofiles/sender/S1", EMA)

    # Commands: START_SESSION by location, STOP_SESSION by session, CANCEL_RESERVATION by an earlier RESERVE_NOW.
    cmd_answer = ScriptedResponse(data={"result": "ACCEPTED", "timeout": 30})
    for peer in (world.cpo_a, world.cpo_b):
        for command in ("START_SESSION", "STOP_SESSION", "RESERVE_NOW", "CANCEL_RESERVATION"):
            peer.set_response("POST", peer.module_path("commands", RECEIVER) + f"/{command}", cmd_answer)
    url = "https://emsp.example/cmd"
    expiry = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    commands: list[tuple[str, dict[str, object], PeerPlatform, PartyKey]] = [
        ("START_SESSION", {"location_id": "loc-a", "token": json_of(token), "response_url": url}, world.cpo_a, CPA),
        ("STOP_SESSION", {"session_id": "s1", "response_url": url}, world.cpo_a, CPA),
        ("RESERVE_NOW", {"location_id": "LOC-B", "reservation_id": "RES1", "expiry_date": expiry,
                         "token": json_of(token), "response_url": url}, world.cpo_b, CPB),
        ("CANCEL_RESERVATION", {"reservation_id": "res1", "response_url": url}, world.cpo_b, CPB),
    ]  # fmt: skip
    for command, command_body, cpo, party in commands:
        answer = await world.call(world.emsp_a, "POST", RECEIVER, "commands", command, frm=EMA, body=command_body)
        assert (answer.status_code, answer.data) == (1000, {"result": "ACCEPTED", "timeout": 30}), command
        forwarded = pushes(cpo, "commands")[-1]
        assert forwarded.path == f"/ocpi/2.2.1/commands/receiver/{command}", command
        assert _to_of(forwarded) == party, command
        assert _from_of(forwarded) == EMA, command
    # Charging profiles: by the session's CPO.
    profile = {"charging_profile": {"charging_rate_unit": "W"}, "response_url": url}
    world.cpo_a.set_response("PUT", world.cpo_a.module_path("chargingprofiles", RECEIVER) + "/S1", cmd_answer)
    answer = await world.call(world.emsp_a, "PUT", RECEIVER, "chargingprofiles", "S1", frm=EMA, body=profile)
    assert answer.status_code == 1000
    assert _to_of(pushes(world.cpo_a, "chargingprofiles")[-1]) == CPA
    # Unknown or ambiguous keys: 4001, asking for OCPI-to-*, and nothing sent.
    before = [len(peer.received) for peer in world.peers]
    for command, bad in (
        ("START_SESSION", {"location_id": "SHARED", "token": json_of(token), "response_url": url}),
        ("START_SESSION", {"location_id": "NOWHERE", "token": json_of(token), "response_url": url}),
        ("STOP_SESSION", {"session_id": "S9", "response_url": url}),
        ("CANCEL_RESERVATION", {"reservation_id": "RES9", "response_url": url}),
    ):
        answer = await world.call(world.emsp_a, "POST", RECEIVER, "commands", command, frm=EMA, body=bad)
        assert (answer.status, answer.status_code) == (200, 4001), (command, bad)
        assert "OCPI-to" in answer.envelope["status_message"]  # type: ignore[index]
    # Another eMSP's session is not eMSP B's to stop.
    theirs = await world.call(world.emsp_b, "POST", RECEIVER, "commands", "STOP_SESSION", frm=EMB,
                              body={"session_id": "S1", "response_url": url})  # fmt: skip
    assert theirs.status_code == 4001
    # A location update has no content key: open routing does not guess (nor broadcast).
    location = builders.location("LOC-A", party_id="CPA")
    guess = await world.call(world.cpo_a, "PUT", RECEIVER, "locations", "NL/CPA/LOC-A", frm=CPA, body=location)
    assert guess.status_code == 4001
    assert [len(peer.received) for peer in world.peers] == before


async def test_cdr_is_stored_when_the_emsp_is_down_and_served_later(world: World) -> None:
    """Scenario 6: a CDR open-routed to an eMSP that is down is kept by the hub (ADR 0007); the CPO gets 4003; the
    eMSP, back, pulls it from the hub byte for byte; the CPO's retry after that is accepted (idempotent)."""
    cdr = builders.cdr("CDR-DOWN", country_code="NL", party_id="CPA", emsp=EMB).rstrip(b"}") + b', "x_vendor": 1.50}'
    await world.stop(world.emsp_b)
    answer = await world.call(world.cpo_a, "POST", RECEIVER, "cdrs", frm=CPA, body=cdr)
    assert (answer.status, answer.status_code) == (200, 4003)
    await world.restart(world.emsp_b)
    page = await world.call(world.emsp_b, "GET", SENDER, "cdrs", frm=EMB, to=HUB)
    assert page.status_code == 1000
    assert page.header("x-total-count") == "1"
    assert cdr in page.body  # the CPO's bytes, not a re-encoding
    again = await world.call(world.cpo_a, "POST", RECEIVER, "cdrs", frm=CPA, body=cdr)
    assert (again.status, again.status_code) == (200, 1000)  # the eMSP's own answer, relayed
    (forwarded,) = pushes(world.emsp_b, "cdrs", method="POST")
    assert forwarded.body == cdr
    assert _to_of(forwarded) == EMB
    # Other eMSPs never see it.
    other = await world.call(world.emsp_a, "GET", SENDER, "cdrs", frm=EMA, to=HUB)
    assert other.data == []


async def test_start_session_to_cdr_through_hub_urls(world: World) -> None:
    """Scenario 7: START_SESSION → CommandResponse → async CommandResult through the hub's response_url → session
    PUT/PATCH → CDR POST whose Location becomes a hub URL the CPO can GET through the hub."""
    token = builders.token("TOK1", country_code="DE", party_id="EMA")
    emsp_result_path = world.emsp_a.module_path("commands", SENDER) + "/START_SESSION/c-1"
    start = {
        "response_url": world.emsp_a.base_url + emsp_result_path,
        "token": json_of(token),
        "location_id": "LOC1",
        "evse_uid": "EVSE1",
    }
    world.cpo_a.set_response(
        "POST", world.cpo_a.module_path("commands", RECEIVER) + "/START_SESSION",
        ScriptedResponse(data={"result": "ACCEPTED", "timeout": 30}),
    )  # fmt: skip
    answer = await world.call(world.emsp_a, "POST", RECEIVER, "commands", "START_SESSION", frm=EMA, to=CPA, body=start)
    assert (answer.status_code, answer.data) == (1000, {"result": "ACCEPTED", "timeout": 30})
    (command,) = pushes(world.cpo_a, "commands")
    hub_url = json_of(command.body)["response_url"]
    assert hub_url.startswith(world.hub.url + "/ocpi/2.2.1/hub/results/"), hub_url
    assert len(hub_url) <= 255, hub_url  # types §URL: string(255)
    assert world.emsp_a.base_url not in command.body.decode()

    # The CPO posts the CommandResult to the hub's URL; it reaches the eMSP's own response_url with the eMSP's token.
    result = b'{"result": "ACCEPTED", "message": [{"language": "en", "text": "Charging"}]}'
    posted = await world.cpo_a.request(
        "POST", hub_url, body=result, headers=routed(CPA, EMA, **{"X-Correlation-ID": "corr-res"})
    )
    assert (posted.status, posted.status_code) == (200, 1000), posted.envelope
    (delivered,) = [r for r in world.emsp_a.received if r.path == emsp_result_path]
    assert (delivered.method, delivered.body) == ("POST", result)
    assert delivered.header("authorization") == _token_auth(world.emsp_a)
    assert _from_of(delivered) == CPA
    assert _to_of(delivered) == EMA
    assert delivered.header("x-correlation-id") == "corr-res"
    # Not for another CPO, nor for the eMSP itself; an unknown id is refused too.
    for peer in (world.cpo_b, world.emsp_a):
        foreign = await peer.request("POST", hub_url, body=result)
        assert (foreign.status, foreign.status_code) == (404, 2000), foreign.envelope
    missing = await world.cpo_a.request("POST", hub_url[:-4] + "0000", body=result)
    assert missing.status == 404
    # Expired: the mapping lives for the CommandResponse timeout (+ grace); past it the hub refuses.
    async with world.sessions.begin() as session:
        await session.execute(
            update(CommandLink)
            .where(CommandLink.id == hub_url.rsplit("/", 1)[1])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    expired = await world.cpo_a.request("POST", hub_url, body=result)
    assert (expired.status, expired.status_code) == (404, 2000)
    assert len([r for r in world.emsp_a.received if r.path == emsp_result_path]) == 1

    # A reservation's late CANCELED_RESERVATION comes long after the command: its mapping lives until the
    # reservation's expiry_date, not just the CommandResponse timeout (mod_commands §RESERVE_NOW, ADR 0005).
    reserve_result_path = world.emsp_a.module_path("commands", SENDER) + "/RESERVE_NOW/r-1"
    expiry = datetime.now(UTC) + timedelta(hours=2)
    world.cpo_a.set_response(
        "POST", world.cpo_a.module_path("commands", RECEIVER) + "/RESERVE_NOW",
        ScriptedResponse(data={"result": "ACCEPTED", "timeout": 30}),
    )  # fmt: skip
    reserve = {
        "response_url": world.emsp_a.base_url + reserve_result_path,
        "token": json_of(token),
        "expiry_date": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "reservation_id": "RES-1",
        "location_id": "LOC1",
    }
    assert (
        await world.call(world.emsp_a, "POST", RECEIVER, "commands", "RESERVE_NOW", frm=EMA, to=CPA, body=reserve)
    ).status_code == 1000
    reserve_url = json_of(pushes(world.cpo_a, "commands")[-1].body)["response_url"]
    async with world.sessions() as session:
        mapping = await session.get(CommandLink, reserve_url.rsplit("/", 1)[1])
    assert mapping is not None
    assert mapping.expires_at >= expiry.replace(microsecond=0)
    for outcome in (b'{"result": "ACCEPTED"}', b'{"result": "CANCELED_RESERVATION"}'):
        assert (await world.cpo_a.request("POST", reserve_url, body=outcome)).status_code == 1000
    assert [r.body for r in world.emsp_a.received if r.path == reserve_result_path] == [
        b'{"result": "ACCEPTED"}',
        b'{"result": "CANCELED_RESERVATION"}',
    ]
    # Charging profiles: the SetChargingProfile's response_url is a hub URL too, and the result goes back the same way.
    profile_result_path = world.emsp_a.module_path("chargingprofiles", SENDER) + "/result/p-1"
    world.cpo_a.set_response(
        "PUT", world.cpo_a.module_path("chargingprofiles", RECEIVER) + "/S1",
        ScriptedResponse(data={"result": "ACCEPTED", "timeout": 10}),
    )  # fmt: skip
    profile = {
        "charging_profile": {"charging_rate_unit": "W"},
        "response_url": world.emsp_a.base_url + profile_result_path,
    }
    assert (
        await world.call(world.emsp_a, "PUT", RECEIVER, "chargingprofiles", "S1", frm=EMA, to=CPA, body=profile)
    ).status_code == 1000
    profile_url = json_of(pushes(world.cpo_a, "chargingprofiles")[-1].body)["response_url"]
    assert profile_url.startswith(world.hub.url + "/ocpi/2.2.1/hub/results/")
    assert (await world.cpo_a.request("POST", profile_url, body={"result": "ACCEPTED"})).status_code == 1000
    (profile_result,) = [r for r in world.emsp_a.received if r.path == profile_result_path]
    assert _from_of(profile_result) == CPA
    assert _to_of(profile_result) == EMA

    # The session, open-routed by cdr_token, then patched by the remembered session.
    session_body = builders.charging_session("S1", country_code="NL", party_id="CPA", emsp=EMA, auth_method="COMMAND")
    assert (
        await world.call(world.cpo_a, "PUT", RECEIVER, "sessions", "NL/CPA/S1", frm=CPA, body=session_body)
    ).status == 201
    patch = b'{"status": "COMPLETED", "last_updated": "2026-01-01T11:00:00Z"}'
    assert (
        await world.call(world.cpo_a, "PATCH", RECEIVER, "sessions", "NL/CPA/S1", frm=CPA, body=patch)
    ).status_code == 1000
    assert [r.method for r in pushes(world.emsp_a, "sessions")] == ["PUT", "PATCH"]

    # The CDR: the eMSP answers 201 with its own Location; the CPO gets a hub URL and reads the CDR through it.
    cdr = builders.cdr("CDR1", country_code="NL", party_id="CPA", emsp=EMA)
    stored_at = world.emsp_a.module_path("cdrs", RECEIVER) + "/stored/CDR1"
    world.emsp_a.put_object(stored_at, json_of(cdr))
    world.emsp_a.set_response(
        "POST", world.emsp_a.module_path("cdrs", RECEIVER),
        ScriptedResponse(http_status=201, headers={"Location": world.emsp_a.base_url + stored_at}),
    )  # fmt: skip
    posted_cdr = await world.call(world.cpo_a, "POST", RECEIVER, "cdrs", frm=CPA, body=cdr)
    assert (posted_cdr.status, posted_cdr.status_code) == (201, 1000)
    location = posted_cdr.header("location") or ""
    assert location.startswith(world.hub.url + "/ocpi/2.2.1/hub/proxy/"), location
    fetched = await world.cpo_a.request("GET", location)
    assert (fetched.status, fetched.status_code, fetched.data) == (200, 1000, json_of(cdr))
    (read,) = [r for r in world.emsp_a.received if r.method == "GET" and r.path == stored_at]
    assert read.header("authorization") == _token_auth(world.emsp_a)
    assert _from_of(read) == CPA
    assert _to_of(read) == EMA
    # Only the platform the link was given to may use it.
    stolen = await world.emsp_b.request("GET", location)
    assert (stolen.status, stolen.status_code) == (404, 2000)
    tampered = await world.cpo_a.request("GET", location[:-3] + ("AAA" if not location.endswith("AAA") else "BBB"))
    assert tampered.status == 404


async def test_routed_pages_are_proxied_through_hub_links(world: World) -> None:
    """Scenario 7: a directly-routed paginated GET's Link becomes a hub URL that proxies the owner's next page,
    with the original routing headers (a platform with two parties must know whose list is paged), for the
    original requester only (hub notes §1.6 [INFER], ADR 0005)."""
    for tariff_id in ("T1", "T2", "T3"):
        world.cpo_b.put_object(
            f"/ocpi/2.2.1/tariffs/sender/{tariff_id}", {"id": tariff_id, "last_updated": "2026-01-01T10:00:00Z"}
        )
    first = await world.call(world.emsp_b, "GET", SENDER, "tariffs", "?limit=1", frm=EMB, to=CPC)
    ids = [t["id"] for t in first.data]
    pages = [first]
    while (link := pages[-1].header("link")) is not None:
        url = link.removeprefix("<").removesuffix('>; rel="next"')
        assert url.startswith(world.hub.url + "/ocpi/2.2.1/hub/proxy/"), link
        assert world.cpo_b.base_url not in link
        if len(pages) == 1:
            stolen = await world.emsp_a.request("GET", url)
            assert (stolen.status, stolen.status_code) == (404, 2000)
        page = await world.emsp_b.request("GET", url)
        assert page.status_code == 1000, page.envelope
        assert (page.header("x-total-count"), page.header("x-limit")) == ("3", "100")
        ids += [t["id"] for t in page.data]
        pages.append(page)
        assert len(pages) <= 3
    assert ids == ["T1", "T2", "T3"]
    gets = pushes(world.cpo_b, "tariffs", method="GET")
    assert [r.query for r in gets] == [{"limit": "1"}, {"limit": "1", "offset": "1"}, {"limit": "1", "offset": "2"}]
    for got in gets:
        assert path_of(world.cpo_b.base_url + got.path) == "/ocpi/2.2.1/tariffs/sender"
        assert _from_of(got) == EMB, got.headers
        assert _to_of(got) == CPC, got.headers
        assert got.header("authorization") == _token_auth(world.cpo_b)


async def test_a_single_location_get_is_routed_to_its_owner(world: World) -> None:
    """Open routing of a single-object GET (hub notes §1.9 item 3): the hub knows the location from broadcasts and
    sends the GET to its CPO with OCPI-to filled in; an id two CPOs use, or one nobody broadcast, is 4001."""
    await _broadcast(world, world.cpo_a, CPA, "locations/NL/CPA/LOC-A", builders.location("LOC-A", party_id="CPA"))
    for peer, party in ((world.cpo_a, CPA), (world.cpo_b, CPC)):
        body = builders.location("SHARED", country_code=party[0], party_id=party[1])
        await _broadcast(world, peer, party, f"locations/{party[0]}/{party[1]}/SHARED", body)
    await world.settle()
    world.cpo_a.put_object(world.cpo_a.module_path("locations", SENDER) + "/LOC-A", {"id": "LOC-A"})
    world.cpo_a.received.clear()

    answer = await world.call(world.emsp_a, "GET", SENDER, "locations", "loc-a", frm=EMA)
    assert (answer.status, answer.status_code) == (200, 1000), answer.envelope
    (forwarded,) = [r for r in world.cpo_a.received if r.module == "locations"]
    assert forwarded.path.endswith("/loc-a")
    assert (forwarded.header("ocpi-to-country-code"), forwarded.header("ocpi-to-party-id")) == CPA
    for unknown in ("SHARED", "NOBODY"):
        refused = await world.call(world.emsp_a, "GET", SENDER, "locations", unknown, frm=EMA)
        assert refused.status_code == 4001, unknown
