"""End-to-end HubClientInfo and the message log: scenarios 8 and 9 of the routing test plan.

mod_hub_client_info (push on every change, SUSPENDED instead of delete, paginated Sender GET, still-alive check),
hub notes §3, DESIGN §4 (PLANNED without agreement: see test_scenarios_direct) and §5 (message log); §9 checklist
line "HubClientInfo: PUT to every party's receiver on each change, SUSPENDED instead of delete, paginated Sender GET,
still-alive GET versions after ~5 min silence".
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from hub.parties.models import Platform
from tests.conftest import InviteOn
from tests.hub.objects import builders
from tests.peers import PeerConfig, PeerPlatform, ScriptedResponse
from tests.routing.world import (
    ALL_PARTIES,
    CPA,
    CPB,
    CPC,
    EMA,
    EMB,
    HUB,
    RECEIVER,
    SENDER,
    MakeWorld,
    World,
    client_info,
    routed,
    told,
    until,
)

pytest_plugins = ("tests.routing.scenarios_conftest",)

EMC = ("GB", "EMC")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z$")


async def test_clientinfo_on_registration_and_deletion(world: World, invite_on: InviteOn) -> None:
    """Every platform learns every other party (CONNECTED, with role and a DateTime); a newcomer is announced to
    all and caught up on all; its credentials DELETE is announced as SUSPENDED (mod_hub_client_info §PUT)."""
    roles = {CPA: "CPO", CPB: "CPO", CPC: "CPO", EMA: "EMSP", EMB: "EMSP"}
    for peer in world.peers:
        own = {(cc, pid) for cc, pid, _, _ in peer.config.roles}
        assert set(peer.client_infos) == set(ALL_PARTIES) - own, peer.config.roles
        for party, info in peer.client_infos.items():
            assert (info["role"], info["status"]) == (roles[party], "CONNECTED")
            assert TIMESTAMP.match(info["last_updated"]), info

    newcomer = await PeerPlatform(PeerConfig(roles=[("GB", "EMC", "EMSP", "eMSP C")])).start()
    try:
        await newcomer.register(world.hub.versions_url, await invite_on(world.hub, "eMSP C"))
        await until(lambda: set(newcomer.client_infos) == set(ALL_PARTIES), what="the newcomer's catch-up")
        assert {info["status"] for info in newcomer.client_infos.values()} == {"CONNECTED"}
        await told(world.peers, EMC, "CONNECTED")
        # The pushes are configuration-module calls: no routing headers (transport §routing headers).
        put = next(r for r in world.cpo_a.received if r.module == "hubclientinfo" and r.path.endswith("/GB/EMC"))
        assert put.method == "PUT"
        assert put.header("ocpi-to-party-id") is None
        assert put.header("ocpi-from-party-id") is None

        await newcomer.unregister()
        await told(world.peers, EMC, "SUSPENDED")
        # Suspended, not gone: the Sender GET still lists it.
        listed = await world.emsp_a.request("GET", "hubclientinfo")
        assert {(i["country_code"], i["party_id"]): i["status"] for i in listed.data}[EMC] == "SUSPENDED"
    finally:
        await newcomer.stop()


async def test_clientinfo_sender_get_is_paginated(world: World) -> None:
    """The hub's Sender GET: offset/limit, Link rel="next" to the end with the filters, X-Total-Count, X-Limit."""
    seen: list[tuple[str, str, str]] = []
    page = await world.emsp_a.request("GET", "hubclientinfo", "?limit=2")
    pages = [page]
    while True:
        assert (page.status, page.status_code) == (200, 1000)
        assert page.header("x-total-count") == "5"
        assert page.header("x-limit") is not None
        seen += [(i["country_code"], i["party_id"], i["status"]) for i in page.data]
        link = page.header("link")
        if link is None:
            break
        url = link.removeprefix("<").removesuffix('>; rel="next"')
        assert url.startswith(world.hub.url + "/ocpi/2.2.1/hubclientinfo"), link
        assert "limit=2" in url, link
        page = await world.emsp_a.request("GET", url)
        pages.append(page)
        assert len(pages) <= 3
    assert [len(p.data) for p in pages] == [2, 2, 1]
    assert sorted(seen) == sorted((cc, pid, "CONNECTED") for cc, pid in ALL_PARTIES)
    # date_from after everything happened: nothing, and no next link.
    later = (datetime.now(UTC) + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    empty = await world.emsp_a.request("GET", "hubclientinfo", f"?date_from={later}")
    assert (empty.data, empty.header("x-total-count"), empty.header("link")) == ([], "0", None)


async def test_still_alive_probe_marks_the_dead_offline_and_keeps_the_live(make_world: MakeWorld) -> None:
    """After liveness_after seconds of silence the hub GETs each silent platform's versions: one that does not
    answer goes OFFLINE (announced to the others), one that answers stays CONNECTED (mod_hub_client_info §still
    alive check)."""
    world = await make_world(liveness_after=1.0)
    await world.stop(world.emsp_b)
    await asyncio.sleep(1.1)  # everyone silent for longer than liveness_after
    await world.runtime.clientinfo.probe_silent()
    await told((world.cpo_a, world.cpo_b, world.emsp_a), EMB, "OFFLINE")
    for peer in (world.cpo_a, world.cpo_b, world.emsp_a):
        probes = [r for r in peer.received if r.method == "GET" and r.path == "/ocpi/versions"]
        assert probes, f"{peer.config.roles[0][3]} was not probed"
        assert probes[0].caller == "partner"  # with the hub's token for it
    async with world.sessions() as session:
        rows = (await session.execute(select(Platform.versions_url, Platform.connection_status))).tuples().all()
    statuses = dict(rows)
    assert statuses[world.emsp_b.versions_url] == "OFFLINE"
    for peer in (world.cpo_a, world.cpo_b, world.emsp_a):
        assert statuses[peer.versions_url] == "CONNECTED"
        assert client_info(world.cpo_a if peer is not world.cpo_a else world.emsp_a, _party(peer)) == "CONNECTED"


def _party(peer: PeerPlatform) -> tuple[str, str]:
    cc, pid, _, _ = peer.config.roles[0]
    return cc, pid


async def test_message_log_traces_every_hop(world: World) -> None:
    """Scenario 9 (DESIGN §5): every request in and every call out is logged with ids, parties, statuses and
    latency; ``routing.messagelog.search`` by correlation id shows the path across hops, in before out."""
    world.cpo_a.put_object("/ocpi/2.2.1/locations/sender/LOC1", {"id": "LOC1"})
    direct = await world.call(
        world.emsp_a, "GET", SENDER, "locations", "LOC1", frm=EMA, to=CPA,
        headers={"X-Correlation-ID": "corr-direct", "X-Request-ID": "req-direct"},
    )  # fmt: skip
    assert direct.status_code == 1000
    inbound, outbound = await world.log_of("corr-direct", at_least=2)
    assert (inbound.direction, outbound.direction) == ("in", "out")
    assert inbound.at <= outbound.at
    assert (inbound.request_id, inbound.platform_id) == ("req-direct", world.platform_id(world.emsp_a))
    assert (inbound.from_party, inbound.to_party, inbound.module, inbound.method) == (
        "DE/EMA",
        "NL/CPA",
        "locations",
        "GET",
    )
    assert (inbound.http_status, inbound.ocpi_status, inbound.target_platform_id) == (
        200, 1000, world.platform_id(world.cpo_a)
    )  # fmt: skip
    assert inbound.path == "/ocpi/2.2.1/sender/locations/LOC1"
    assert outbound.request_id not in ("", "req-direct")
    assert outbound.request_id == world.cpo_a.received[-1].header("x-request-id")
    assert (outbound.platform_id, outbound.from_party, outbound.to_party) == (
        world.platform_id(world.cpo_a),
        "DE/EMA",
        "NL/CPA",
    )
    assert outbound.path == world.cpo_a.base_url + "/ocpi/2.2.1/locations/sender/LOC1"
    assert (outbound.http_status, outbound.ocpi_status) == (200, 1000)
    assert inbound.latency_ms >= outbound.latency_ms > 0
    assert inbound.size_out == len(direct.body)

    # A broadcast: the push in, then one call out per receiving party, all under the broadcaster's correlation id.
    location = builders.location("LOC1", party_id="CPA")
    put = await world.call(world.cpo_a, "PUT", RECEIVER, "locations", "NL/CPA/LOC1", frm=CPA, to=HUB, body=location,
                           headers={"X-Correlation-ID": "corr-broadcast"})  # fmt: skip
    assert put.status == 201
    rows = await world.log_of("corr-broadcast", at_least=3)
    assert [r.direction for r in rows] == ["in", "out", "out"]
    assert rows[0].to_party == "NL/HUB"
    assert rows[0].size_in == len(location)
    assert sorted(r.to_party or "" for r in rows[1:]) == ["DE/EMA", "FR/EMB"]
    assert {r.from_party for r in rows[1:]} == {"NL/HUB"}
    assert {r.http_status for r in rows[1:]} == {201}

    # A failure is logged on both sides, with the hub's status in and the error out.
    await world.stop(world.emsp_b)
    failed = await world.call(world.cpo_a, "PUT", RECEIVER, "locations", "NL/CPA/LOC1", frm=CPA, to=EMB, body=location,
                              headers={"X-Correlation-ID": "corr-failed"})  # fmt: skip
    assert failed.status_code == 4003
    inbound, outbound = await world.log_of("corr-failed", at_least=2)
    assert (inbound.direction, inbound.ocpi_status) == ("in", 4003)
    assert (outbound.direction, outbound.http_status) == ("out", None)
    assert outbound.error
    assert "Connect" in outbound.error

    # A command result through the hub's response_url: in (the CPO's POST), out (to the eMSP's URL).
    world.cpo_a.set_response(
        "POST", world.cpo_a.module_path("commands", RECEIVER) + "/STOP_SESSION",
        ScriptedResponse(data={"result": "ACCEPTED", "timeout": 5}),
    )  # fmt: skip
    command = {"session_id": "S1", "response_url": world.emsp_a.base_url + "/ocpi/2.2.1/commands/sender/STOP/1"}
    await world.call(world.emsp_a, "POST", RECEIVER, "commands", "STOP_SESSION", frm=EMA, to=CPA, body=command)
    hub_url = [r for r in world.cpo_a.received if r.module == "commands"][-1].json()["response_url"]
    result = await world.cpo_a.request(
        "POST", hub_url, body={"result": "ACCEPTED"}, headers=routed(CPA, EMA, **{"X-Correlation-ID": "corr-result"})
    )
    assert result.status_code == 1000
    rows = await world.log_of("corr-result", at_least=2)
    assert [(r.direction, r.method) for r in rows] == [("in", "POST"), ("out", "POST")]
    assert rows[1].path == command["response_url"]
    assert rows[1].platform_id == world.platform_id(world.emsp_a)
