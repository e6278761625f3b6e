"""Operator commands: agreements and deliveries."""

from __future__ import annotations

import json

from tests.support.cli import hub_env, run_cli
from tests.support.hub_server import HubServer


async def test_agreements_add_list_end(hub: HubServer) -> None:
    env = hub_env(hub.settings)
    added = await run_cli("agreements", "add", "--cpo", "nl/cpa", "--emsp", "DE/EMA", "--json", env=env)
    assert added.code == 0, added.stderr
    assert json.loads(added.stdout)["cpo"] == "NL/CPA"
    listed = await run_cli("agreements", "list", "--json", env=env)
    assert [(a["cpo"], a["emsp"], a["active"]) for a in json.loads(listed.stdout)] == [("NL/CPA", "DE/EMA", True)]
    table = await run_cli("agreements", "list", env=env)
    assert "NL/CPA" in table.stdout
    ended = await run_cli("agreements", "end", "--cpo", "NL/CPA", "--emsp", "DE/EMA", env=env)
    assert ended.code == 0, ended.stderr
    again = await run_cli("agreements", "end", "--cpo", "NL/CPA", "--emsp", "DE/EMA", env=env)
    assert again.code == 1
    assert "no active agreement" in again.stderr
    bad = await run_cli("agreements", "add", "--cpo", "NLCPA", "--emsp", "DE/EMA", env=env)
    assert bad.code == 2
    assert "COUNTRY/PARTY" in bad.stderr


async def test_deliveries_list_and_retry(hub: HubServer) -> None:
    env = hub_env(hub.settings)
    listed = await run_cli("deliveries", "list", "--status", "failed", "--json", env=env)
    assert listed.code == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    nothing = await run_cli("deliveries", "retry", env=env)
    assert nothing.code == 2
    assert "--id N, --platform P or --all" in nothing.stderr
    retried = await run_cli("deliveries", "retry", "--all", env=env)
    assert retried.code == 0
    assert "0 failed push(es) queued again" in retried.stdout
