"""The credentials handshake with the hub as Receiver: a partner registers itself with a token A (credentials ch.)."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.parties.models import Party, Platform
from hub.platform.crypto import TokenCipher
from tests.peers import PeerConfig, PeerError, PeerPlatform
from tests.peers.net import closed_port_url
from tests.support.hub_server import HubServer

Invite = Callable[..., Awaitable[str]]


async def _platforms(engine: AsyncEngine) -> list[Platform]:
    async with engine.connect() as connection:
        rows = (await connection.execute(select(Platform).order_by(Platform.id))).all()
    return [Platform(**row._mapping) for row in rows]


async def _parties(engine: AsyncEngine) -> list[tuple[str, str, str, bool]]:
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                select(Party.country_code, Party.party_id, Party.role, Party.active_key).order_by(Party.id)
            )
        ).all()
    return [(cc, pid, role, key is not None) for cc, pid, role, key in rows]


@pytest.mark.parametrize("form", ["base64", "raw"])
async def test_partner_registers_with_token_a_and_gets_token_c(hub: HubServer, invite: Invite, form: str) -> None:
    token_a = await invite("CPO A")
    async with PeerPlatform(PeerConfig(token_form=form)) as peer:  # type: ignore[arg-type]
        theirs = await peer.register(hub.versions_url, token_a)

        # The hub's credentials: our versions URL, a fresh token C and exactly one role, HUB (credentials §2.2.1).
        assert theirs["url"] == hub.versions_url
        assert theirs["token"] not in (token_a, peer.token_b)
        assert theirs["roles"] == [
            {"role": "HUB", "business_details": {"name": "Test Hub"}, "party_id": "HUB", "country_code": "NL"}
        ]
        # Before answering, the hub read our versions and version details with token B, in the form we use.
        callbacks = peer.find_received(path="/ocpi/versions") + peer.find_received(path="/ocpi/2.2.1")
        assert len(callbacks) == 2
        assert peer.token_b is not None
        expected = base64.b64encode(peer.token_b.encode()).decode() if form == "base64" else peer.token_b
        assert {r.header("authorization") for r in callbacks} == {f"Token {expected}"}

        (platform,) = await _platforms(hub.engine)
        assert platform.status == "REGISTERED"
        assert platform.version == "2.2.1"
        assert platform.token_form == form
        assert platform.versions_url == peer.versions_url
        assert await _parties(hub.engine) == [("NL", "CPA", "CPO", True)]
        # Tokens at rest: inbound ones only as hashes, the outbound one encrypted with HUB_SECRET_KEY.
        assert platform.token_a_hash is None
        assert platform.inbound_token_hash not in (None, theirs["token"])
        assert platform.outbound_token is not None
        assert peer.token_b not in platform.outbound_token
        assert TokenCipher(hub.settings.secret_key).decrypt(platform.outbound_token) == peer.token_b

        # Token C works, in the partner's form, and GET credentials echoes it.
        creds = await peer.get_credentials()
        assert creds["token"] == theirs["token"]
        assert creds["roles"][0]["role"] == "HUB"


async def test_token_c_is_stored_nowhere_in_plain_text(hub: HubServer, invite: Invite) -> None:
    token_a = await invite()
    async with PeerPlatform() as peer:
        theirs = await peer.register(hub.versions_url, token_a)
        async with hub.engine.connect() as connection:
            dump = (await connection.execute(text("SELECT row_to_json(p)::text FROM platforms p"))).scalars().all()
        assert dump
        assert all(theirs["token"] not in row and token_a not in row for row in dump)
        assert all(peer.token_b is not None and peer.token_b not in row for row in dump)


async def test_token_a_is_dead_after_registration(hub: HubServer, invite: Invite) -> None:
    token_a = await invite()
    async with PeerPlatform() as peer:
        await peer.register(hub.versions_url, token_a)
        response = await peer.request("GET", hub.versions_url, token=token_a)
        assert response.status == 401
        assert response.envelope is not None
        assert "timestamp" in response.envelope


async def test_token_a_opens_only_versions_and_credentials(hub: HubServer, invite: Invite) -> None:
    token_a = await invite()
    async with PeerPlatform() as peer:
        assert (await peer.request("GET", hub.versions_url, token=token_a)).status == 200
        assert (await peer.request("GET", f"{hub.url}/ocpi/2.2.1", token=token_a)).status == 200
        creds = await peer.request("GET", f"{hub.url}/ocpi/2.2.1/credentials", token=token_a)
        assert creds.status == 200
        assert creds.data["token"] == token_a
        for path in ("/ocpi/2.2.1/sender/locations", "/ocpi/2.2.1/receiver/cdrs/NL/CPA/1", "/ocpi/2.2.1/hubclientinfo"):
            response = await peer.request("GET", f"{hub.url}{path}", token=token_a)
            assert response.status == 401, path
            assert response.status_code == 2000


async def test_registered_token_passes_auth_on_functional_modules(hub: HubServer, invite: Invite) -> None:
    token_a = await invite()
    async with PeerPlatform() as peer:
        await peer.register(hub.versions_url, token_a)
        response = await peer.request("GET", f"{hub.url}/ocpi/2.2.1/sender/locations")
        # Authenticated and authorised: the answer is an OCPI status, never an HTTP auth error (§4.1.1).
        assert response.status == 200
        assert response.status_code is not None


async def test_post_when_registered_is_405(hub: HubServer, invite: Invite) -> None:
    token_a = await invite()
    async with PeerPlatform() as peer:
        await peer.register(hub.versions_url, token_a)
        response = await peer.request("POST", "credentials", body=peer.credentials_object("another-token"))
        assert response.status == 405
        assert response.status_code == 2000


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_put_and_delete_when_not_registered_are_405(hub: HubServer, invite: Invite, method: str) -> None:
    token_a = await invite()
    async with PeerPlatform() as peer:
        body = peer.credentials_object("some-token-b") if method == "PUT" else None
        response = await peer.request(method, f"{hub.url}/ocpi/2.2.1/credentials", body=body, token=token_a)
        assert response.status == 405
        assert response.envelope is not None
        assert response.envelope["timestamp"].endswith("Z")


async def test_patch_on_credentials_is_405(hub: HubServer, invite: Invite) -> None:
    token_a = await invite()
    async with PeerPlatform() as peer:
        await peer.register(hub.versions_url, token_a)
        response = await peer.request("PATCH", "credentials", body={})
        assert response.status == 405
        assert response.status_code == 2000


async def test_put_rotates_tokens_without_a_gap(hub: HubServer, invite: Invite) -> None:
    token_a = await invite()
    async with PeerPlatform() as peer:
        await peer.register(hub.versions_url, token_a)
        old_c, old_b = peer.token_c, peer.token_b
        before = len(peer.find_received(path="/ocpi/versions"))
        theirs = await peer.update_credentials()

        assert peer.token_c == theirs["token"] != old_c
        assert peer.token_b != old_b
        # The hub re-read our endpoints with the new token B (credentials §PUT: MUST re-fetch).
        callbacks = peer.find_received(path="/ocpi/versions")
        assert len(callbacks) == before + 1
        assert peer.token_b is not None
        assert callbacks[-1].header("authorization") == "Token " + base64.b64encode(peer.token_b.encode()).decode()
        # Old token C refused, new one accepted.
        assert (await peer.request("GET", hub.versions_url, token=old_c)).status == 401
        assert (await peer.request("GET", hub.versions_url)).status == 200
        (platform,) = await _platforms(hub.engine)
        assert TokenCipher(hub.settings.secret_key).decrypt(platform.outbound_token or "") == peer.token_b


async def test_put_can_change_roles(hub: HubServer, invite: Invite) -> None:
    token_a = await invite()
    async with PeerPlatform() as peer:
        await peer.register(hub.versions_url, token_a)
        peer.config.roles = [("NL", "CPA", "CPO", "CPO A"), ("BE", "CPB", "CPO", "CPO B")]
        await peer.update_credentials()
        assert await _parties(hub.engine) == [("NL", "CPA", "CPO", True), ("BE", "CPB", "CPO", True)]
        peer.config.roles = [("BE", "CPB", "CPO", "CPO B")]
        await peer.update_credentials()
        assert await _parties(hub.engine) == [("NL", "CPA", "CPO", False), ("BE", "CPB", "CPO", True)]


async def test_delete_ends_all_access_and_frees_the_parties(hub: HubServer, invite: Invite) -> None:
    token_a = await invite()
    async with PeerPlatform() as peer:
        await peer.register(hub.versions_url, token_a)
        token_c = peer.token_c
        await peer.unregister()
        assert (await peer.request("GET", hub.versions_url, token=token_c)).status == 401
        assert (await peer.request("GET", f"{hub.url}/ocpi/2.2.1/credentials", token=token_c)).status == 401
        (platform,) = await _platforms(hub.engine)
        assert platform.status == "UNREGISTERED"
        assert platform.inbound_token_hash is None
        assert platform.outbound_token is None
        assert await _parties(hub.engine) == [("NL", "CPA", "CPO", False)]

    # The same party may come back through a new invitation.
    async with PeerPlatform() as again:
        await again.register(hub.versions_url, await invite("CPO A again"))
        assert ("NL", "CPA", "CPO", True) in await _parties(hub.engine)


async def test_party_registered_by_another_platform_is_refused(hub: HubServer, invite: Invite) -> None:
    async with PeerPlatform() as first, PeerPlatform(PeerConfig(roles=[("nl", "cpa", "CPO", "Impostor")])) as second:
        await first.register(hub.versions_url, await invite("first"))
        token_a = await invite("second")
        with pytest.raises(PeerError) as refused:
            await second.register(hub.versions_url, token_a)
        assert refused.value.status_code == 2001
        assert refused.value.response is not None
        message = refused.value.response.envelope["status_message"]  # type: ignore[index]
        assert "NL/CPA/CPO" in message
        assert "'first'" in message
        # The first registration is untouched, and the second platform may still register with other parties.
        assert await _parties(hub.engine) == [("NL", "CPA", "CPO", True)]
        assert (await first.request("GET", hub.versions_url)).status == 200
        second.config.roles = [("NL", "CPX", "CPO", "Other")]
        await second.register(hub.versions_url, token_a)


async def test_versions_down_gives_3001_and_keeps_token_a(hub: HubServer, invite: Invite) -> None:
    token_a = await invite()
    async with PeerPlatform(PeerConfig(versions_status=500)) as peer:
        with pytest.raises(PeerError) as failed:
            await peer.register(hub.versions_url, token_a)
        assert failed.value.status_code == 3001
        peer.versions_status = None
        await peer.register(hub.versions_url, token_a)  # the invitation is still usable
        assert peer.registered


async def test_versions_url_refusing_connections_gives_3001(hub: HubServer, invite: Invite) -> None:
    token_a = await invite()
    async with PeerPlatform() as peer:
        body = {**peer.credentials_object("token-b"), "url": closed_port_url()}
        response = await peer.request("POST", f"{hub.url}/ocpi/2.2.1/credentials", body=body, token=token_a)
        assert response.status == 200
        assert response.status_code == 3001
        assert "versions" in response.envelope["status_message"]  # type: ignore[index]


async def test_slow_versions_gives_3001_within_the_partner_timeout(
    hub_factory: Callable[..., Awaitable[HubServer]], invite_on: Callable[..., Awaitable[str]]
) -> None:
    hub = await hub_factory(partner_timeout=0.3)
    token_a = await invite_on(hub)
    async with PeerPlatform(PeerConfig(versions_delay=2.0)) as peer:
        with pytest.raises(PeerError) as failed:
            await peer.register(hub.versions_url, token_a)
        assert failed.value.status_code == 3001
        assert "timed out" in failed.value.response.envelope["status_message"]  # type: ignore[union-attr,index]


async def test_missing_credentials_endpoint_gives_3003(hub: HubServer, invite: Invite) -> None:
    async with PeerPlatform(PeerConfig(advertise_credentials=False)) as peer:
        with pytest.raises(PeerError) as failed:
            await peer.register(hub.versions_url, await invite())
        assert failed.value.status_code == 3003
        assert "credentials" in failed.value.response.envelope["status_message"]  # type: ignore[union-attr,index]


async def test_no_mutual_version_gives_3002(hub: HubServer, invite: Invite) -> None:
    async with PeerPlatform(PeerConfig(versions=["2.1.1"])) as peer:
        token_a = await invite()
        # A token the peer accepts on its versions endpoint, so only the version list can stop the hub.
        body = peer.credentials_object(peer.issue_token_a())
        response = await peer.request("POST", f"{hub.url}/ocpi/2.2.1/credentials", body=body, token=token_a)
        assert response.status_code == 3002
        assert "2.1.1" in response.envelope["status_message"]  # type: ignore[index]


async def test_invalid_json_is_http_400_with_2001(hub: HubServer, invite: Invite) -> None:
    token_a = await invite()
    async with PeerPlatform() as peer:
        response = await peer.request("POST", f"{hub.url}/ocpi/2.2.1/credentials", body=b"{not json", token=token_a)
        assert response.status == 400
        assert response.status_code == 2001


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda c: c.pop("roles"), "roles"),
        (lambda c: c.update(token=42), "token"),
        (lambda c: c["roles"][0].update(role="KING"), "role"),
        (lambda c: c["roles"][0].update(country_code="NLD"), "country_code"),
        (lambda c: c.update(roles=[]), "roles"),
    ],
)
async def test_invalid_credentials_give_2001_naming_the_field(
    hub: HubServer, invite: Invite, mutate: Callable[[dict[str, object]], object], field: str
) -> None:
    token_a = await invite()
    async with PeerPlatform() as peer:
        body = peer.credentials_object("token-b")
        mutate(body)
        response = await peer.request("POST", f"{hub.url}/ocpi/2.2.1/credentials", body=body, token=token_a)
        assert response.status == 200
        assert response.status_code == 2001
        assert field in response.envelope["status_message"]  # type: ignore[index]
        # Nothing was registered: the invitation is still open.
        (platform,) = await _platforms(hub.engine)
        assert platform.status == "INVITED"


async def test_duplicate_roles_in_one_object_give_2001(hub: HubServer, invite: Invite) -> None:
    roles = [("NL", "CPA", "CPO", "A"), ("nl", "cpa", "CPO", "A again")]
    async with PeerPlatform(PeerConfig(roles=roles)) as peer:
        with pytest.raises(PeerError) as failed:
            await peer.register(hub.versions_url, await invite())
        assert failed.value.status_code == 2001
