"""End-to-end broadcast push and GET All (TO = the hub): scenarios 4 and 5 of the routing test plan.

Hub notes §1.9 items 2 and 4, §1.6 (pagination), DESIGN §4 and §6; §9 checklist lines "Direct routing, broadcast
push, open routing, GET All", "Pagination on every list GET served by the hub", "Store broadcast Locations/Tariffs/
Tokens for GET All".
"""

from __future__ import annotations

import re
import time
from typing import Any

from sqlalchemy import select

from routing import outbox
from routing.outbox import OutboxMessage, OutboxStatus
from tests.hub.objects import builders
from tests.peers import PeerPlatform, PeerResponse, Received, encode_authorization
from tests.routing.world import (
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
    pushes,
    routed,
    told,
    until,
)

pytest_plugins = ("tests.routing.scenarios_conftest",)

LINK = re.compile(r'^<([^>]+)>; rel="next"$')


def _fan_out_leg(received: Received, receiver: PeerPlatform, to: PartyKey, correlation_id: str) -> None:
    """A fan-out leg: FROM = hub, TO = that receiver, the broadcaster's correlation id, a request id of its own,
    the receiver's token in its form (hub notes §1.9 table "Broadcast push")."""
    assert (received.header("ocpi-from-country-code"), received.header("ocpi-from-party-id")) == HUB
    assert (received.header("ocpi-to-country-code"), received.header("ocpi-to-party-id")) == to
    assert received.header("x-correlation-id") == correlation_id
    assert received.header("x-request-id") not in (None, correlation_id)
    assert receiver.token_b is not None
    assert received.header("authorization") == encode_authorization(receiver.token_b, receiver.config.token_form)


def _hub_answer(answer: PeerResponse, http: int, to: PartyKey) -> None:
    assert (answer.status, answer.status_code) == (http, 1000), answer.envelope
    assert (answer.header("ocpi-from-country-code"), answer.header("ocpi-from-party-id")) == HUB
    assert (answer.header("ocpi-to-country-code"), answer.header("ocpi-to-party-id")) == to


async def test_broadcast_of_locations_tariffs_and_tokens(world: World) -> None:
    """Scenario 4: stored, answered at once (201 when new), fanned out to every opposite-role party with FROM = hub;
    the owner and same-role parties get nothing; per receiver the pushes of one object arrive in order."""
    emsps = ((world.emsp_a, EMA), (world.emsp_b, EMB))
    loc_path = "/ocpi/2.2.1/locations/receiver/NL/CPA/LOC1"
    location = builders.location("LOC1", country_code="NL", party_id="CPA").rstrip(b"}") + b', "x_vendor": 1.50}'
    put = await world.call(
        world.cpo_a, "PUT", RECEIVER, "locations", "NL/CPA/LOC1", frm=CPA, to=HUB, body=location,
        headers={"X-Correlation-ID": "corr-loc"},
    )  # fmt: skip
    _hub_answer(put, 201, CPA)
    await world.settle()
    for peer, party in emsps:
        (leg,) = pushes(peer, "locations")
        assert (leg.method, leg.path, leg.body) == ("PUT", loc_path, location)
        _fan_out_leg(leg, peer, party, "corr-loc")
    assert pushes(world.cpo_a, "locations") == []
    assert pushes(world.cpo_b, "locations") == []

    # Sub-objects: an EVSE PUT (new → 201), an EVSE PATCH and a connector PATCH, sent back to back.
    evse = builders.dump(builders.evse("EVSE3", last_updated="2026-01-02T10:00:00Z"))
    evse_patch = b'{"status": "CHARGING", "last_updated": "2026-01-02T10:01:00Z"}'
    connector_patch = b'{"tariff_ids": ["T2"], "last_updated": "2026-01-02T10:02:00Z"}'
    steps = [
        ("PUT", "NL/CPA/LOC1/EVSE3", evse, 201),
        ("PATCH", "NL/CPA/LOC1/EVSE1", evse_patch, 200),
        ("PATCH", "NL/CPA/LOC1/EVSE1/1", connector_patch, 200),
    ]
    for method, tail, body, http in steps:
        answer = await world.call(world.cpo_a, method, RECEIVER, "locations", tail, frm=CPA, to=HUB, body=body)
        _hub_answer(answer, http, CPA)
    await world.settle()
    for peer, _ in emsps:
        legs = pushes(peer, "locations")[1:]
        assert [(r.method, r.path, r.body) for r in legs] == [
            (method, f"/ocpi/2.2.1/locations/receiver/{tail}", body) for method, tail, body, _ in steps
        ]
    # The store merged them: the connector's tariff, the EVSE's status, the new EVSE, parents' last_updated.
    page = await world.call(world.emsp_a, "GET", SENDER, "locations", frm=EMA, to=HUB)
    (stored,) = page.data
    evses = {e["uid"]: e for e in stored["evses"]}
    assert evses.keys() == {"EVSE1", "EVSE2", "EVSE3"}
    assert evses["EVSE1"]["status"] == "CHARGING"
    assert evses["EVSE1"]["connectors"][0]["tariff_ids"] == ["T2"]
    assert stored["last_updated"] == "2026-01-02T10:02:00Z"
    assert stored["x_vendor"] == 1.5

    # Tariffs: PUT then DELETE, from the second party of a multi-party platform.
    tariff = builders.tariff("T1", country_code="BE", party_id="CPC")
    created = await world.call(world.cpo_b, "PUT", RECEIVER, "tariffs", "BE/CPC/T1", frm=CPC, to=HUB, body=tariff)
    _hub_answer(created, 201, CPC)
    listed = await world.call(world.emsp_b, "GET", SENDER, "tariffs", frm=EMB, to=HUB)
    assert [t["id"] for t in listed.data] == ["T1"]
    deleted = await world.call(world.cpo_b, "DELETE", RECEIVER, "tariffs", "BE/CPC/T1", frm=CPC, to=HUB)
    _hub_answer(deleted, 200, CPC)
    await world.settle()
    for peer, party in emsps:
        legs = pushes(peer, "tariffs")
        assert [(r.method, r.path, r.body) for r in legs] == [
            ("PUT", "/ocpi/2.2.1/tariffs/receiver/BE/CPC/T1", tariff),
            ("DELETE", "/ocpi/2.2.1/tariffs/receiver/BE/CPC/T1", b""),
        ]
        _fan_out_leg(legs[1], peer, party, legs[1].header("x-correlation-id") or "")
    assert pushes(world.cpo_a, "tariffs") == []
    assert pushes(world.cpo_b, "tariffs") == []
    listed = await world.call(world.emsp_b, "GET", SENDER, "tariffs", frm=EMB, to=HUB)
    assert listed.data == []

    # Tokens: eMSP data goes to every CPO party (two of them on one platform), not to the other eMSP.
    token = builders.token("TOK1", country_code="DE", party_id="EMA")
    token_patch = b'{"valid": false, "last_updated": "2026-01-03T10:00:00Z"}'
    put = await world.call(
        world.emsp_a, "PUT", RECEIVER, "tokens", "DE/EMA/TOK1?type=RFID", frm=EMA, to=HUB, body=token
    )
    _hub_answer(put, 201, EMA)
    patched = await world.call(
        world.emsp_a, "PATCH", RECEIVER, "tokens", "DE/EMA/TOK1?type=RFID", frm=EMA, to=HUB, body=token_patch
    )
    _hub_answer(patched, 200, EMA)
    await world.settle()
    expected = [("PUT", token), ("PATCH", token_patch)]
    assert [(r.method, r.body) for r in pushes(world.cpo_a, "tokens")] == expected
    assert all(r.query_string == "type=RFID" for r in pushes(world.cpo_a, "tokens"))
    by_party: dict[str | None, list[tuple[str, bytes]]] = {}
    for r in pushes(world.cpo_b, "tokens"):
        by_party.setdefault(r.header("ocpi-to-party-id"), []).append((r.method, r.body))
    assert by_party == {"CPB": expected, "CPC": expected}
    assert pushes(world.emsp_b, "tokens") == []
    assert pushes(world.emsp_a, "tokens") == []
    stored_tokens = await world.call(world.cpo_a, "GET", SENDER, "tokens", frm=CPA, to=HUB)
    assert [(t["uid"], t["valid"]) for t in stored_tokens.data] == [("TOK1", False)]


async def test_sessions_and_cdrs_are_never_broadcast(world: World) -> None:
    """Scenario 4 (hub notes §1.9 item 2, GDPR): TO = hub on a Session PUT or CDR POST is refused with 2001."""
    session = builders.charging_session("S1", country_code="NL", party_id="CPA", emsp=EMA)
    cdr = builders.cdr("CDR1", country_code="NL", party_id="CPA", emsp=EMA)
    refused = await world.call(world.cpo_a, "PUT", RECEIVER, "sessions", "NL/CPA/S1", frm=CPA, to=HUB, body=session)
    assert (refused.status, refused.status_code) == (200, 2001)
    refused = await world.call(world.cpo_a, "POST", RECEIVER, "cdrs", "", frm=CPA, to=HUB, body=cdr)
    assert (refused.status, refused.status_code) == (200, 2001)
    refused = await world.call(world.cpo_a, "GET", RECEIVER, "locations", "NL/CPA/LOC1", frm=CPA, to=HUB)
    assert refused.status_code == 2001  # a Receiver GET addressed to the hub is no defined scenario either
    await world.settle()
    assert all(not pushes(peer, m) for peer in world.peers for m in ("sessions", "cdrs", "locations"))
    for party in (EMA, EMB):
        peer = world.emsp_a if party == EMA else world.emsp_b
        for module in ("sessions", "cdrs"):
            page = await world.call(peer, "GET", SENDER, module, frm=party, to=HUB)
            assert page.data == [], (party, module)


async def test_broadcast_reaches_the_others_while_one_emsp_is_down(world: World) -> None:
    """Scenario 4 (DESIGN §6): the broadcaster is answered at once; the live eMSP gets the push; the down one is
    marked OFFLINE (HubClientInfo to the others), its push kept as failed and delivered by `outbox.redeliver` once
    it is back, after which it is CONNECTED again."""
    await world.stop(world.emsp_b)
    location = builders.location("LOC2", country_code="NL", party_id="CPA")
    started = time.monotonic()
    answer = await world.call(
        world.cpo_a, "PUT", RECEIVER, "locations", "NL/CPA/LOC2", frm=CPA, to=HUB, body=location,
        headers={"X-Correlation-ID": "corr-down"},
    )  # fmt: skip
    assert time.monotonic() - started < 1.0, "the broadcaster waited for the fan-out"
    _hub_answer(answer, 201, CPA)
    await until(lambda: pushes(world.emsp_a, "locations"), what="eMSP A's copy")
    await told((world.cpo_a, world.cpo_b, world.emsp_a), EMB, "OFFLINE")
    emsp_b_id = world.platform_id(world.emsp_b)

    async def failed_rows() -> list[OutboxMessage]:
        async with world.sessions() as session:
            rows = await session.scalars(
                select(OutboxMessage).where(
                    OutboxMessage.receiver_platform_id == emsp_b_id, OutboxMessage.kind == "broadcast"
                )
            )
            found = list(rows)
        return found if found and all(r.status == OutboxStatus.FAILED for r in found) else []

    (failed,) = await until(failed_rows, what="the push to the down eMSP to be kept as failed")
    assert failed.url.endswith("/ocpi/2.2.1/locations/receiver/NL/CPA/LOC2")

    await world.restart(world.emsp_b)
    async with world.sessions.begin() as session:
        assert await outbox.redeliver(session, platform_id=emsp_b_id) >= 1
    (leg,) = await until(lambda: pushes(world.emsp_b, "locations"), what="the redelivered push")
    assert (leg.method, leg.path, leg.body) == ("PUT", "/ocpi/2.2.1/locations/receiver/NL/CPA/LOC2", location)
    _fan_out_leg(leg, world.emsp_b, EMB, "corr-down")
    await told((world.cpo_a, world.cpo_b, world.emsp_a), EMB, "CONNECTED")


async def _all_pages(
    world: World, peer: PeerPlatform, party: PartyKey, module: str, query: str = ""
) -> tuple[list[Any], list[PeerResponse]]:
    """GET All via the hub, following ``Link rel="next"`` to the end (transport §pagination)."""
    pages = [await world.call(peer, "GET", SENDER, module, f"?{query}" if query else "", frm=party, to=HUB)]
    while (link := pages[-1].header("link")) is not None:
        match = LINK.match(link)
        assert match, link
        assert len(pages) < 20, "paging does not end"
        pages.append(await peer.request("GET", match.group(1), headers=routed(party, HUB)))
    items = []
    for page in pages:
        _hub_answer(page, 200, party)
        assert page.header("x-limit") is not None
        items.extend(page.data)
    return items, pages


async def test_get_all_pages_filters_and_visibility(world: World) -> None:
    """Scenario 5: offset/limit/date_from/date_to, Link with the filters to the end, X-Total-Count, X-Limit,
    creation order, and only what the caller may see (own sessions/CDRs, unpublished locations, eMSP tokens)."""
    times = {"L1": "10", "L2": "11", "L3": "12", "L4": "13", "L5": "14"}
    for loc, hour in times.items():
        body = builders.location(loc, country_code="NL", party_id="CPA", last_updated=f"2026-01-01T{hour}:00:00Z")
        assert (
            await world.call(world.cpo_a, "PUT", RECEIVER, "locations", f"NL/CPA/{loc}", frm=CPA, to=HUB, body=body)
        ).status == 201
    lb1 = builders.location("LB1", country_code="BE", party_id="CPB", last_updated="2026-01-01T12:30:00Z")
    assert (
        await world.call(world.cpo_b, "PUT", RECEIVER, "locations", "BE/CPB/LB1", frm=CPB, to=HUB, body=lb1)
    ).status == 201
    # Unpublished, shown only to holders of token TOK1 (mod_locations §publish_allowed_to).
    hidden = builders.location(
        "L6", country_code="NL", party_id="CPA", last_updated="2026-01-01T09:00:00Z", publish=False,
        publish_allowed_to=[{"uid": "TOK1", "type": "RFID"}],
    )  # fmt: skip
    assert (
        await world.call(world.cpo_a, "PUT", RECEIVER, "locations", "NL/CPA/L6", frm=CPA, to=HUB, body=hidden)
    ).status == 201
    for peer, party, uid in ((world.emsp_a, EMA, "TOK1"), (world.emsp_b, EMB, "TOK2")):
        token = builders.token(uid, country_code=party[0], party_id=party[1])
        put = await world.call(
            peer, "PUT", RECEIVER, "tokens", f"{party[0]}/{party[1]}/{uid}", frm=party, to=HUB, body=token
        )
        assert put.status == 201

    # Everything eMSP A may see, two per page, in creation order, to the end.
    items, pages = await _all_pages(world, world.emsp_a, EMA, "locations", "limit=2")
    assert [i["id"] for i in items] == ["L1", "L2", "L3", "L4", "L5", "LB1", "L6"]
    assert [len(p.data) for p in pages] == [2, 2, 2, 1]
    assert {p.header("x-total-count") for p in pages} == {"7"}
    # The next links carry the cursor and the crawl's count, so later pages neither skip nor count (pagination.py).
    for page in pages[:-1]:
        link = page.header("link") or ""
        assert "after=" in link, link
        assert "total=7" in link, link
    assert {p.header("x-limit") for p in pages} == {"500"}
    assert pages[-1].header("link") is None
    # eMSP B holds no TOK1: the unpublished location is not for it.
    items, _ = await _all_pages(world, world.emsp_b, EMB, "locations")
    assert [i["id"] for i in items] == ["L1", "L2", "L3", "L4", "L5", "LB1"]

    # A window: date_from inclusive, date_to exclusive; every next link carries both filters.
    window = "date_from=2026-01-01T11:00:00Z&date_to=2026-01-01T14:00:00Z&limit=1"
    items, pages = await _all_pages(world, world.emsp_a, EMA, "locations", window)
    assert [i["id"] for i in items] == ["L2", "L3", "L4", "LB1"]
    assert {p.header("x-total-count") for p in pages} == {"4"}
    for page in pages[:-1]:
        link = page.header("link") or ""
        assert "date_from=2026-01-01T11%3A00%3A00Z" in link, link
        assert "date_to=2026-01-01T14%3A00%3A00Z" in link, link
        assert link.startswith(f"<{world.hub.url}/ocpi/2.2.1/sender/locations"), link
    # offset.
    page = await world.call(world.emsp_a, "GET", SENDER, "locations", "?offset=3&limit=2", frm=EMA, to=HUB)
    assert [i["id"] for i in page.data] == ["L4", "L5"]
    assert page.header("x-total-count") == "7"

    # Tokens are eMSP data: every CPO sees both eMSPs' tokens; an eMSP sees its own, never the other's.
    items, _ = await _all_pages(world, world.cpo_b, CPC, "tokens")
    assert [(i["party_id"], i["uid"]) for i in items] == [("EMA", "TOK1"), ("EMB", "TOK2")]
    items, _ = await _all_pages(world, world.emsp_b, EMB, "tokens")
    assert [(i["party_id"], i["uid"]) for i in items] == [("EMB", "TOK2")]

    # Sessions and CDRs: open-routed to their eMSPs (and recorded by the hub); each eMSP sees only its own.
    for sid, emsp in (("S1", EMA), ("S2", EMB), ("S3", EMA)):
        body = builders.charging_session(sid, country_code="NL", party_id="CPA", emsp=emsp)
        assert (
            await world.call(world.cpo_a, "PUT", RECEIVER, "sessions", f"NL/CPA/{sid}", frm=CPA, body=body)
        ).status_code == 1000
        cdr = builders.cdr(f"C{sid}", country_code="NL", party_id="CPA", emsp=emsp)
        assert (await world.call(world.cpo_a, "POST", RECEIVER, "cdrs", frm=CPA, body=cdr)).status_code == 1000
    for peer, party, expected in (
        (world.emsp_a, EMA, ["S1", "S3"]),
        (world.emsp_b, EMB, ["S2"]),
        (world.cpo_a, CPA, []),
    ):
        sessions, _ = await _all_pages(world, peer, party, "sessions", "date_from=2026-01-01T00:00:00Z&limit=1")
        assert [s["id"] for s in sessions] == expected, party
        cdrs, _ = await _all_pages(world, peer, party, "cdrs", "limit=1")
        assert [c["id"] for c in cdrs] == [f"C{s}" for s in expected], party
    # The CDR comes back byte for byte as the CPO sent it.
    page = await world.call(world.emsp_b, "GET", SENDER, "cdrs", frm=EMB, to=HUB)
    assert page.data == [json_of(builders.cdr("CS2", country_code="NL", party_id="CPA", emsp=EMB))]
    assert builders.cdr("CS2", country_code="NL", party_id="CPA", emsp=EMB) in page.body
