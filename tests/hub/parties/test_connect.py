"""The credentials handshake with the hub as Sender (``ocpi-hub parties connect``), and the parties CLI."""

from __future__ import annotations

import json

from sqlalchemy import select

from hub.parties.models import Platform
from tests.peers import PeerConfig, PeerPlatform
from tests.peers.net import closed_port_url
from tests.support.cli import hub_env, run_cli
from tests.support.hub_server import HubServer


async def test_cli_connect_registers_the_hub_with_a_platform(hub: HubServer) -> None:
    roles = [("DE", "EMA", "EMSP", "eMSP A"), ("DE", "EMB", "EMSP", "eMSP B")]
    async with PeerPlatform(PeerConfig(roles=roles)) as peer:
        token_a = peer.issue_token_a()
        result = await run_cli(
            "parties",
            "connect",
            "--versions-url",
            peer.versions_url,
            "--token-a",
            token_a,
            "--name",
            "eMSP platform",
            env=hub_env(hub.settings),
        )
        assert result.code == 0, result.stderr
        platform = json.loads(result.stdout)
        assert platform["status"] == "REGISTERED"
        assert platform["direction"] == "OUTBOUND"
        assert platform["name"] == "eMSP platform"
        assert [(p["country_code"], p["party_id"], p["role"]) for p in platform["parties"]] == [
            ("DE", "EMA", "EMSP"),
            ("DE", "EMB", "EMSP"),
        ]
        assert {(e["identifier"], e["role"]) for e in platform["endpoints"]} >= {("credentials", "SENDER")}

        # The platform called our versions back with the token B we sent it, and registered the hub's HUB role.
        assert peer.registered
        assert [r["role"] for r in peer.partner_roles] == ["HUB"]
        assert peer.partner_versions_url == hub.versions_url
        # Both tokens work from now on: the platform's token B at the hub, the hub's token C at the platform.
        assert (await peer.request("GET", hub.versions_url)).status == 200
        creds = await peer.get_credentials()
        assert creds["token"] == peer.token_c
        # Token A is no longer usable at the platform (credentials §Registration step 6 is its business) and the
        # hub no longer holds it: nothing but hashes and ciphertext stay in the database.
        async with hub.engine.connect() as connection:
            stored = (await connection.execute(select(Platform.outbound_token, Platform.inbound_token_hash))).one()
        assert token_a not in str(stored)
        assert peer.token_b is not None
        assert peer.token_b not in str(stored)


async def test_cli_connect_with_a_wrong_token_a_fails_cleanly(hub: HubServer) -> None:
    async with PeerPlatform() as peer:
        result = await run_cli(
            "parties",
            "connect",
            "--versions-url",
            peer.versions_url,
            "--token-a",
            "not-issued",
            env=hub_env(hub.settings),
        )
        assert result.code != 0
        assert "401" in result.stderr
        assert "Traceback" not in result.stderr
        assert result.stdout == ""


async def test_cli_connect_to_an_unreachable_platform_fails_cleanly(hub: HubServer) -> None:
    result = await run_cli(
        "parties", "connect", "--versions-url", closed_port_url(), "--token-a", "x", env=hub_env(hub.settings)
    )
    assert result.code != 0
    assert "cannot use the platform's API" in result.stderr
    assert "Traceback" not in result.stderr


async def test_connect_refused_by_the_platform_leaves_no_live_registration(hub: HubServer) -> None:
    async with PeerPlatform(PeerConfig(reject_registration_with=2001)) as peer:
        result = await run_cli(
            "parties",
            "connect",
            "--versions-url",
            peer.versions_url,
            "--token-a",
            peer.issue_token_a(),
            env=hub_env(hub.settings),
        )
        assert result.code != 0
        assert "refused the registration" in result.stderr
        async with hub.engine.connect() as connection:
            status, inbound = (await connection.execute(select(Platform.status, Platform.inbound_token_hash))).one()
        assert (status, inbound) == ("UNREGISTERED", None)


async def test_connect_refuses_private_addresses_unless_allowed(hub: HubServer) -> None:
    env = hub_env(hub.settings, HUB_ALLOW_PRIVATE_PEERS="0")
    async with PeerPlatform() as peer:
        result = await run_cli(
            "parties", "connect", "--versions-url", peer.versions_url, "--token-a", peer.issue_token_a(), env=env
        )
    assert result.code != 0
    assert "non-public address" in result.stderr


async def test_cli_invite_prints_exactly_the_versions_url_and_token_a(hub: HubServer) -> None:
    result = await run_cli("parties", "invite", "--name", "CPO A", env=hub_env(hub.settings))
    assert result.code == 0, result.stderr
    invitation = json.loads(result.stdout)
    assert set(invitation) == {"versions_url", "token_a"}
    assert invitation["versions_url"] == hub.versions_url
    # The printed token A is a working invitation.
    async with PeerPlatform() as peer:
        await peer.register(invitation["versions_url"], invitation["token_a"])
        listed = await run_cli("parties", "list", "--json", env=hub_env(hub.settings))
        assert listed.code == 0, listed.stderr
        (platform,) = json.loads(listed.stdout)
        assert platform["name"] == "CPO A"
        assert platform["status"] == "REGISTERED"
        assert platform["parties"] == [
            {"country_code": "NL", "party_id": "CPA", "role": "CPO", "name": "CPO A", "active": True}
        ]
        table = await run_cli("parties", "list", env=hub_env(hub.settings))
        assert "CPO A" in table.stdout
        assert "NL/CPA CPO" in table.stdout


async def test_cli_rejects_bad_input_with_a_message(hub: HubServer) -> None:
    missing = await run_cli("parties", "invite", env=hub_env(hub.settings))
    assert missing.code == 2
    assert "--name" in missing.stderr
    blank = await run_cli("parties", "invite", "--name", "  ", env=hub_env(hub.settings))
    assert blank.code == 1
    assert "name" in blank.stderr
    bad_policy = await run_cli("parties", "list", env=hub_env(hub.settings, HUB_ROAMING_POLICY="closed"))
    assert bad_policy.code == 1
    assert "HUB_ROAMING_POLICY" in bad_policy.stderr
