"""Operator actions on a platform, end to end: a real hub on loopback, real peer platforms, PostgreSQL.

suspend (token 401, others told SUSPENDED, routing drops it), activate (back to CONNECTED), rotate (credentials PUT
from the hub: new tokens both ways, the old ones dead), delete (credentials DELETE at the platform, tokens dead); and
the operator keys' roles on the admin API.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from tests.peers import PeerConfig, PeerPlatform
from tests.peers.wire import authorization_candidates
from tests.routing.world import client_info, until
from tests.support.cli import hub_env, run_cli
from tests.support.hub_server import ADMIN_TOKEN, HubServer

Invite = Callable[..., Awaitable[str]]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CPA = ("NL", "CPA")
EMA = ("DE", "EMA")


async def call(method: str, url: str, *, json: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, json=json, headers=ADMIN if headers is None else headers) as response,
    ):
        return response.status, await response.json(content_type=None)


@asynccontextmanager
async def two_platforms(hub: HubServer, invite: Invite) -> AsyncIterator[tuple[PeerPlatform, PeerPlatform, int]]:
    """A CPO (NL/CPA) and an eMSP (DE/EMA) registered with the hub, each told the other is CONNECTED."""
    async with PeerPlatform() as cpo, PeerPlatform(PeerConfig(roles=[("DE", "EMA", "EMSP", "eMSP A")])) as emsp:
        await cpo.register(hub.versions_url, await invite("cpo"))
        await emsp.register(hub.versions_url, await invite("emsp"))
        await until(lambda: client_info(emsp, CPA) == "CONNECTED", what="the eMSP to learn of the CPO")
        status, platforms = await call("GET", f"{hub.url}/admin/api/parties")
        assert status == 200
        cpo_id = next(p["id"] for p in platforms if p["name"] == "cpo")
        yield cpo, emsp, cpo_id


async def locations_from_emsp(emsp: PeerPlatform) -> int | None:
    answer = await emsp.request(
        "GET",
        "locations",
        "NL/CPA/LOC1",
        interface="SENDER",
        headers={"OCPI-to-country-code": "NL", "OCPI-to-party-id": "CPA"},
    )
    return answer.status_code


async def test_suspend_then_activate(hub: HubServer, invite: Invite) -> None:
    async with two_platforms(hub, invite) as (cpo, emsp, cpo_id):
        assert (await cpo.request("GET", "hubclientinfo")).status == 200

        status, suspended = await call("POST", f"{hub.url}/admin/api/parties/{cpo_id}/suspend")
        assert status == 200, suspended
        assert (suspended["status"], suspended["connection_status"]) == ("SUSPENDED", "SUSPENDED")
        # Its token opens nothing, configuration modules included.
        assert (await cpo.request("GET", "hubclientinfo")).status == 401
        assert (await cpo.request("GET", "credentials")).status == 401
        await until(lambda: client_info(emsp, CPA) == "SUSPENDED", what="the eMSP to be told SUSPENDED")
        # The eMSP's own GET of HubClientInfo lists the suspended CPO as SUSPENDED too (not missing).
        listed = (await emsp.request("GET", "hubclientinfo")).data
        assert {(i["country_code"], i["party_id"]): i["status"] for i in listed}[CPA] == "SUSPENDED"
        # Routing dropped it: nothing reaches the CPO any more.
        before = len(cpo.find_received(module="locations"))
        assert await locations_from_emsp(emsp) != 1000
        assert len(cpo.find_received(module="locations")) == before
        # Suspending twice is refused.
        status, _ = await call("POST", f"{hub.url}/admin/api/parties/{cpo_id}/suspend")
        assert status == 409

        status, active = await call("POST", f"{hub.url}/admin/api/parties/{cpo_id}/activate")
        assert status == 200, active
        assert (active["status"], active["connection_status"]) == ("REGISTERED", "CONNECTED")
        assert (await cpo.request("GET", "hubclientinfo")).status == 200
        await until(lambda: client_info(emsp, CPA) == "CONNECTED", what="the eMSP to be told CONNECTED again")
        await locations_from_emsp(emsp)
        assert len(cpo.find_received(module="locations")) == before + 1
        status, _ = await call("POST", f"{hub.url}/admin/api/parties/{cpo_id}/activate")
        assert status == 409
    status, _ = await call("POST", f"{hub.url}/admin/api/parties/999/suspend")
    assert status == 404


async def test_rotate_replaces_both_tokens(hub: HubServer, invite: Invite) -> None:
    async with two_platforms(hub, invite) as (cpo, emsp, cpo_id):
        old_to_hub, old_from_hub = cpo.token_c, cpo.token_b
        assert old_to_hub is not None
        assert old_from_hub is not None

        status, rotated = await call("POST", f"{hub.url}/admin/api/parties/{cpo_id}/rotate")
        assert status == 200, rotated
        assert rotated["status"] == "REGISTERED"
        # The peer got the hub's PUT, carrying the new token it now uses to call the hub.
        puts = cpo.find_received(module="credentials", method="PUT")
        assert len(puts) == 1
        assert puts[0].json()["token"] == cpo.token_c
        assert cpo.token_c not in (None, old_to_hub)
        assert cpo.token_b not in (None, old_from_hub)

        assert (await cpo.request("GET", "hubclientinfo", token=old_to_hub)).status == 401
        assert (await cpo.request("GET", "hubclientinfo")).status == 200
        # The hub calls the peer with the new token C the peer answered (the peer only accepts that one now).
        await locations_from_emsp(emsp)
        call_in = cpo.find_received(module="locations")[-1]
        assert call_in.caller == "partner"
        assert cpo.token_b in {token for token, _ in authorization_candidates(call_in.header("authorization"))}


async def test_a_refused_rotation_keeps_the_old_token(hub: HubServer, invite: Invite) -> None:
    async with two_platforms(hub, invite) as (cpo, _emsp, cpo_id):
        old_to_hub = cpo.token_c
        cpo.fail_all = 500
        status, answer = await call("POST", f"{hub.url}/admin/api/parties/{cpo_id}/rotate")
        assert status == 409, answer
        cpo.fail_all = None
        assert cpo.token_c == old_to_hub
        assert (await cpo.request("GET", "hubclientinfo")).status == 200


async def test_delete_unregisters_at_both_ends(hub: HubServer, invite: Invite) -> None:
    async with two_platforms(hub, invite) as (cpo, emsp, cpo_id):
        token, url = cpo.token_c, cpo.partner_url("hubclientinfo")
        status, deleted = await call("DELETE", f"{hub.url}/admin/api/parties/{cpo_id}")
        assert status == 200, deleted
        assert deleted["status"] == "UNREGISTERED"
        assert deleted["platform_notified"] is True
        assert len(cpo.find_received(module="credentials", method="DELETE")) == 1
        assert not cpo.registered
        assert (await cpo.request("GET", url, token=token)).status == 401
        await until(lambda: client_info(emsp, CPA) == "SUSPENDED", what="the eMSP to be told SUSPENDED")
        assert all(not p["active"] for p in deleted["parties"])
        status, _ = await call("DELETE", f"{hub.url}/admin/api/parties/{cpo_id}")
        assert status == 409
        status, _ = await call("POST", f"{hub.url}/admin/api/parties/{cpo_id}/activate")
        assert status == 409


async def test_roles_on_the_admin_api(hub: HubServer) -> None:
    keys: dict[str, str] = {}
    for role in ("viewer", "finance"):
        status, created = await call("POST", f"{hub.url}/admin/api/operators", json={"name": role, "role": role})
        assert status == 201, created
        assert created["role"] == role
        assert "key_hash" not in created
        keys[role] = created["key"]
    viewer = {"Authorization": f"Bearer {keys['viewer']}"}
    finance = {"Authorization": f"Bearer {keys['finance']}"}
    for path in ("parties", "agreements", "deliveries", "messages", "operators", "audit"):
        status, _ = await call("GET", f"{hub.url}/admin/api/{path}", headers=viewer)
        assert status == 200, path
    writes = [
        ("POST", "parties/1/suspend", None),
        ("POST", "parties/1/rotate", None),
        ("DELETE", "parties/1", None),
        ("POST", "agreements", {"cpo": "NL/CPA", "emsp": "DE/EMA"}),
        ("DELETE", "agreements/NL/CPA/DE/EMA", None),
        ("POST", "deliveries/retry", {}),
        ("POST", "operators", {"name": "x", "role": "admin"}),
        ("DELETE", "operators/1", None),
    ]
    for method, path, body in writes:
        for headers in (viewer, finance):
            status, _ = await call(method, f"{hub.url}/admin/api/{path}", json=body, headers=headers)
            assert status == 403, (method, path)
        status, _ = await call(
            method, f"{hub.url}/admin/api/{path}", json=body, headers={"Authorization": "Bearer nope"}
        )
        assert status == 401, (method, path)
    status, _ = await call("GET", f"{hub.url}/admin/api/parties", headers={"Authorization": "Bearer nope"})
    assert status == 401
    status, _ = await call("POST", f"{hub.url}/admin/api/operators", json={"name": "x", "role": "root"})
    assert status == 400

    status, listed = await call("GET", f"{hub.url}/admin/api/operators")
    viewer_id = next(k["id"] for k in listed if k["name"] == "viewer")
    status, revoked = await call("DELETE", f"{hub.url}/admin/api/operators/{viewer_id}")
    assert status == 200
    assert revoked["active"] is False
    status, _ = await call("GET", f"{hub.url}/admin/api/parties", headers=viewer)
    assert status == 401
    status, _ = await call("DELETE", f"{hub.url}/admin/api/operators/{viewer_id}")
    assert status == 409


async def test_cli_party_actions_and_operators(hub: HubServer, invite: Invite) -> None:
    env = hub_env(hub.settings)
    async with two_platforms(hub, invite) as (cpo, emsp, cpo_id):
        suspended = await run_cli("parties", "suspend", "--id", str(cpo_id), "--json", env=env)
        assert suspended.code == 0, suspended.stderr
        assert json.loads(suspended.stdout)["status"] == "SUSPENDED"

        async def refused() -> bool:  # the serving hub's routing table follows within its poll interval
            return (await cpo.request("GET", "hubclientinfo")).status == 401

        await until(refused, what="the serving hub to refuse the suspended platform's token")
        await until(lambda: client_info(emsp, CPA) == "SUSPENDED", what="the eMSP to be told SUSPENDED")
        activated = await run_cli("parties", "activate", "--id", str(cpo_id), env=env)
        assert activated.code == 0, activated.stderr
        assert "activated: status REGISTERED, connection CONNECTED" in activated.stdout
        rotated = await run_cli("parties", "rotate", "--id", str(cpo_id), "--json", env=env)
        assert rotated.code == 0, rotated.stderr
        assert (await cpo.request("GET", "hubclientinfo")).status == 200
        deleted = await run_cli("parties", "delete", "--id", str(cpo_id), env=env)
        assert deleted.code == 0, deleted.stderr
        assert "deleted: status UNREGISTERED" in deleted.stdout
        again = await run_cli("parties", "delete", "--id", str(cpo_id), env=env)
        assert again.code == 1
        assert "already unregistered" in again.stderr
        missing = await run_cli("parties", "suspend", "--id", "999", env=env)
        assert missing.code == 1
        assert "no platform with id 999" in missing.stderr

    added = await run_cli("operators", "add", "--name", "ops", "--role", "viewer", "--json", env=env)
    assert added.code == 0, added.stderr
    key = json.loads(added.stdout)
    status, _ = await call("GET", f"{hub.url}/admin/api/parties", headers={"Authorization": f"Bearer {key['key']}"})
    assert status == 200
    listed = await run_cli("operators", "list", env=env)
    assert "ops" in listed.stdout
    assert "viewer" in listed.stdout
    assert key["key"] not in listed.stdout
    revoked = await run_cli("operators", "revoke", "--id", str(key["id"]), env=env)
    assert revoked.code == 0, revoked.stderr
    status, _ = await call("GET", f"{hub.url}/admin/api/parties", headers={"Authorization": f"Bearer {key['key']}"})
    assert status == 401
    bad = await run_cli("operators", "add", "--name", "x", "--role", "root", env=env)
    assert bad.code == 2
