"""The simulated platforms of ``hub.sim`` against a real hub on loopback (PostgreSQL): credentials updates both ways
(OCPI 2.2.1 credentials §7.2.2 PUT) and real-time authorization by whitelist type (tokens §12.2.2, §12.4.3)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import aiohttp
import pytest

from hub.sim.platform import Party, SimCpo, SimEmsp, SimError
from tests.routing.world import until
from tests.support.hub_server import ADMIN_TOKEN, HubServer

HubFactory = Callable[..., Awaitable[HubServer]]
InviteOn = Callable[..., Awaitable[str]]
DAY = datetime(2026, 1, 31, tzinfo=UTC)


@asynccontextmanager
async def world(hub: HubServer, invite_on: InviteOn) -> AsyncIterator[tuple[SimCpo, SimEmsp]]:
    """One simulated CPO (NL/CP1) and eMSP (DE/MS1), registered through the handshake, their objects published."""
    cpo = SimCpo(Party("NL", "CP1", "CPO", "Sim CPO"), day_start=DAY)
    emsp = SimEmsp(Party("DE", "MS1", "EMSP", "Sim eMSP"), day_start=DAY)
    emsp.whitelists = {1: "ALWAYS", 2: "NEVER", 3: "ALLOWED_OFFLINE"}
    try:
        for platform in (cpo, emsp):
            await platform.start()
            await platform.register(hub.versions_url, await invite_on(hub, platform.party.name))
        await cpo.publish()
        await emsp.publish(3)
        await until(lambda: all(cpo.known_token(f"MS1-RFID00{i}") for i in (1, 2, 3)), what="the CPO's token list")
        yield cpo, emsp
    finally:
        await cpo.stop()
        await emsp.stop()


async def hub_get(url: str, token: str) -> int:
    """The HTTP status of a GET to the hub with a raw token (as the sims send it: ``Token base64``)."""
    header = {"Authorization": "Token " + base64.b64encode(token.encode()).decode()}
    async with aiohttp.ClientSession() as session, session.get(url, headers=header) as response:
        return response.status


async def test_the_hub_rotates_credentials_with_a_simulated_platform(hub: HubServer, invite_on: InviteOn) -> None:
    async with world(hub, invite_on) as (cpo, emsp):
        old_c, old_b = cpo.token_c or "", cpo.token_b
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
            async with admin.get(f"{hub.url}/admin/api/parties") as response:
                cpo_id = next(p["id"] for p in await response.json() if p["name"] == "Sim CPO")
            async with admin.post(f"{hub.url}/admin/api/parties/{cpo_id}/rotate") as response:
                assert response.status == 200, await response.text()
        # The CPO answered the hub's PUT: it reads the hub with the new token and gave the hub a new one of its own.
        assert cpo.credentials_updates == 1
        assert cpo.token_c not in (None, old_c)
        assert cpo.token_b != old_b
        assert await hub_get(hub.versions_url, old_c) == 401, "the hub no longer takes the CPO's old token"
        assert await hub_get(hub.versions_url, cpo.token_c or "") == 200
        # Both directions work with the new tokens: a command goes hub → CPO, a Session and a CDR come back.
        cdr = await emsp.charge(cpo, 1)
        assert cdr["auth_method"] == "COMMAND"
        # The hub called a module with the new token, so the CPO's old one is dead.
        assert cpo.previous_token_b is None
        async with (
            aiohttp.ClientSession() as session,
            session.get(cpo.versions_url, headers={"Authorization": f"Token {old_b}"}) as response,
        ):
            assert response.status == 401


async def test_a_simulated_platform_updates_its_credentials_with_the_hub(hub: HubServer, invite_on: InviteOn) -> None:
    async with world(hub, invite_on) as (cpo, emsp):
        old_c, old_b = emsp.token_c or "", emsp.token_b
        await emsp.update_credentials()
        assert (emsp.credentials_updates, emsp.token_c != old_c, emsp.token_b != old_b) == (1, True, True)
        assert await hub_get(hub.versions_url, old_c) == 401
        # The hub calls the eMSP with its new token: a Session and a CDR reach it after a command.
        cdr = await emsp.charge(cpo, 1)
        assert cdr["cdr_token"]["uid"] == "MS1-RFID001"
        assert emsp.previous_token_b is None
        # A PUT the hub refuses (a token it does not know) leaves the sim's own token as it was.
        current_b, current_c = emsp.token_b, emsp.token_c
        emsp.token_c = "not-a-token-of-the-hub"
        with pytest.raises(SimError) as refused:
            await emsp.update_credentials()
        assert (refused.value.http_status, emsp.token_b, emsp.previous_token_b) == (401, current_b, None)
        emsp.token_c = current_c
        stranger = SimEmsp(Party("FR", "MS9", "EMSP", "Stranger"), day_start=DAY)
        with pytest.raises(SimError, match="not registered"):
            await stranger.update_credentials()


async def test_the_cpo_authorizes_in_real_time_as_the_whitelist_type_says(hub: HubServer, invite_on: InviteOn) -> None:
    async with world(hub, invite_on) as (cpo, emsp):
        # ALWAYS: from the token list, the eMSP is not asked.
        always = await cpo.swipe("MS1-RFID001")
        assert (always.whitelist, always.asked, always.allowed) == ("ALWAYS", False, "ALLOWED")
        assert always.session_id is not None
        assert emsp.authorizations == {}
        # NEVER: asked through the hub; the eMSP's authorization reference goes on the Session and the CDR.
        never = await cpo.swipe("MS1-RFID002")
        assert (never.whitelist, never.asked, never.allowed) == ("NEVER", True, "ALLOWED")
        reference = never.authorization_reference or ""
        uid, allowed, location = emsp.authorizations[reference]
        assert (uid, allowed, location["location_id"]) == ("MS1-RFID002", "ALLOWED", cpo.location_id())
        session = await asyncio.wait_for(emsp._expect("session:" + reference), 5)
        assert (session["auth_method"], session["status"]) == ("AUTH_REQUEST", "ACTIVE")
        await cpo.unplug(never.session_id or "")
        cdr = await asyncio.wait_for(emsp._expect("cdr:" + (never.session_id or "")), 5)
        assert (cdr["auth_method"], cdr["authorization_reference"]) == ("AUTH_REQUEST", reference)
        # The eMSP blocks the token: the CPO asks again and does not charge.
        emsp.blocked.add("MS1-RFID002")
        blocked = await cpo.swipe("MS1-RFID002")
        assert (blocked.asked, blocked.allowed, blocked.session_id) == (True, "BLOCKED", None)
        # A token nobody knows: the hub finds no eMSP for it, the CPO does not charge.
        unknown = await cpo.swipe("NOPE-1")
        assert (unknown.whitelist, unknown.asked, unknown.allowed, unknown.session_id) == (None, True, "UNKNOWN", None)
        assert len(cpo.sessions) == 2


async def test_when_the_emsp_does_not_answer_allowed_offline_charges_and_never_does_not(
    hub_factory: HubFactory, invite_on: InviteOn
) -> None:
    hub = await hub_factory(authorize_timeout=0.3)
    async with world(hub, invite_on) as (cpo, emsp):
        emsp.authorize_delay = 1.5  # the eMSP's backend is too slow: the hub answers 4002 after 0.3 s
        offline = await cpo.swipe("MS1-RFID003")
        assert (offline.whitelist, offline.asked, offline.allowed) == ("ALLOWED_OFFLINE", True, "ALLOWED")
        assert offline.session_id in cpo.sessions
        assert cpo.sessions[offline.session_id or ""].auth_method == "WHITELIST"
        never = await cpo.swipe("MS1-RFID002")
        assert (never.asked, never.allowed, never.session_id) == (True, "NO_ANSWER", None)
        assert len(cpo.sessions) == 1


async def test_the_emsp_answers_authorize_with_an_authorization_info(hub: HubServer, invite_on: InviteOn) -> None:
    async with world(hub, invite_on) as (cpo, emsp):
        url = f"{cpo.hub_url('tokens', 'SENDER')}/MS1-RFID001/authorize?type=RFID"
        info = await cpo.call("POST", url, to=("DE", "MS1"))  # no LocationReferences: allowed anywhere
        assert (info["allowed"], info["token"]["uid"], "location" in info) == ("ALLOWED", "MS1-RFID001", False)
        assert info["authorization_reference"] in emsp.authorizations
        with pytest.raises(SimError) as refused:
            await cpo.call("POST", url.replace("RFID001", "RFID001X"), to=("DE", "MS1"))
        assert refused.value.status_code == 2004, "an unknown token is 2004 (tokens §12.2.2)"
        assert not refused.value.unanswered
