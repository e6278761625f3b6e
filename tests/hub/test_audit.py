"""The audit log: a row with before/after for every change made through the admin API or the CLI, append-only."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.hub.test_operator_actions import ADMIN, call, two_platforms
from tests.support.cli import hub_env, run_cli
from tests.support.hub_server import HubServer

Invite = Callable[..., Awaitable[str]]


async def audit(hub: HubServer, query: str = "") -> list[dict[str, object]]:
    status, rows = await call("GET", f"{hub.url}/admin/api/audit{query}")
    assert status == 200, rows
    assert isinstance(rows, list)
    return rows


async def test_party_actions_are_audited_with_before_and_after(hub: HubServer, invite: Invite) -> None:
    async with two_platforms(hub, invite) as (cpo, _emsp, cpo_id):
        secrets = {cpo.token_b, cpo.token_c}
        for action, request_id in (("suspend", "req-suspend-1"), ("activate", "req-activate-1")):
            status, _ = await call(
                "POST",
                f"{hub.url}/admin/api/parties/{cpo_id}/{action}",
                headers={**ADMIN, "X-Request-ID": request_id},
            )
            assert status == 200
        status, _ = await call("POST", f"{hub.url}/admin/api/parties/{cpo_id}/rotate")
        assert status == 200
        secrets |= {cpo.token_b, cpo.token_c}
        status, _ = await call("DELETE", f"{hub.url}/admin/api/parties/{cpo_id}")
        assert status == 200
        # A refused action changes nothing and is not audited.
        status, _ = await call("POST", f"{hub.url}/admin/api/parties/{cpo_id}/suspend")
        assert status == 409

    rows = await audit(hub, f"?target=platform:{cpo_id}")
    assert [r["action"] for r in rows] == ["party.delete", "party.rotate", "party.activate", "party.suspend"]
    delete, rotate, activate, suspend = rows
    assert suspend["actor"] == "HUB_ADMIN_TOKEN"
    assert isinstance(suspend["operator_key_id"], int)
    assert suspend["request_id"] == "req-suspend-1"
    assert activate["request_id"] == "req-activate-1"
    assert isinstance(rotate["request_id"], str)
    assert rotate["request_id"]
    for row, before, after in (
        (suspend, "REGISTERED", "SUSPENDED"),
        (activate, "SUSPENDED", "REGISTERED"),
        (rotate, "REGISTERED", "REGISTERED"),
        (delete, "REGISTERED", "UNREGISTERED"),
    ):
        assert isinstance(row["before"], dict)
        assert isinstance(row["after"], dict)
        assert (row["before"]["status"], row["after"]["status"]) == (before, after), row["action"]
    assert isinstance(rotate["before"], dict)
    assert isinstance(rotate["after"], dict)
    assert rotate["after"]["updated_at"] != rotate["before"]["updated_at"]
    assert isinstance(delete["after"], dict)
    assert delete["after"]["platform_notified"] is True
    # No token is logged.
    logged = json.dumps(rows)
    assert not [secret for secret in secrets if secret is None or secret in logged]

    assert next(r["action"] for r in await audit(hub, "?target=platform:*")) == "party.delete"
    future = quote((datetime.now(UTC) + timedelta(hours=1)).isoformat())
    assert await audit(hub, f"?target=platform:{cpo_id}&since={future}") == []


async def test_agreements_deliveries_and_keys_are_audited(hub: HubServer) -> None:
    status, _ = await call("POST", f"{hub.url}/admin/api/agreements", json={"cpo": "NL/CPA", "emsp": "DE/EMA"})
    assert status == 201
    status, _ = await call("DELETE", f"{hub.url}/admin/api/agreements/NL/CPA/DE/EMA")
    assert status == 200
    status, _ = await call("POST", f"{hub.url}/admin/api/deliveries/retry", json={"platform": 7})
    assert status == 200
    status, key = await call("POST", f"{hub.url}/admin/api/operators", json={"name": "auditor", "role": "viewer"})
    assert status == 201
    status, _ = await call("DELETE", f"{hub.url}/admin/api/operators/{key['id']}")
    assert status == 200

    added, ended = reversed(await audit(hub, "?target=agreement:NL/CPA:DE/EMA"))
    assert (added["action"], added["before"]) == ("agreement.add", None)
    assert isinstance(added["after"], dict)
    assert added["after"]["active"] is True
    assert ended["action"] == "agreement.end"
    assert isinstance(ended["before"], dict)
    assert ended["before"]["active"] is True
    assert isinstance(ended["after"], dict)
    assert ended["after"]["active"] is False

    (retry,) = await audit(hub, "?target=deliveries:platform:7")
    assert retry["action"] == "deliveries.retry"
    assert retry["after"] == {"queued": 0}

    revoked, created = await audit(hub, f"?target=operator_key:{key['id']}")
    assert (created["action"], created["before"]) == ("operator.add", None)
    assert revoked["action"] == "operator.revoke"
    assert isinstance(revoked["before"], dict)
    assert revoked["before"]["active"] is True
    assert isinstance(revoked["after"], dict)
    assert revoked["after"]["active"] is False
    assert key["key"] not in json.dumps(await audit(hub))

    # A refused write leaves no trace.
    status, _ = await call("DELETE", f"{hub.url}/admin/api/agreements/NL/CPA/DE/EMA")
    assert status == 404
    assert len(await audit(hub, "?target=agreement:NL/CPA:DE/EMA")) == 2


async def test_cli_changes_are_audited_as_cli(hub: HubServer) -> None:
    env = hub_env(hub.settings)
    added = await run_cli("agreements", "add", "--cpo", "NL/CPA", "--emsp", "DE/EMA", env=env)
    assert added.code == 0, added.stderr
    key = await run_cli("operators", "add", "--name", "bot", "--role", "finance", "--json", env=env)
    assert key.code == 0, key.stderr
    retried = await run_cli("deliveries", "retry", "--all", env=env)
    assert retried.code == 0, retried.stderr
    listed = await run_cli("audit", "list", "--json", env=env)
    assert listed.code == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["action"], r["actor"], r["operator_key_id"]) for r in rows] == [
        ("deliveries.retry", "cli", None),
        ("operator.add", "cli", None),
        ("agreement.add", "cli", None),
    ]
    only = await run_cli("audit", "list", "--target", "agreement:*", "--json", env=env)
    assert [r["action"] for r in json.loads(only.stdout)] == ["agreement.add"]
    table = await run_cli("audit", "list", env=env)
    assert "operator.add" in table.stdout


async def test_the_audit_log_is_append_only(hub: HubServer) -> None:
    status, _ = await call("POST", f"{hub.url}/admin/api/agreements", json={"cpo": "NL/CPA", "emsp": "DE/EMA"})
    assert status == 201
    for statement in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with hub.engine.begin() as connection:
                await connection.execute(text(statement))
    (row,) = await audit(hub)
    assert row["actor"] == "HUB_ADMIN_TOKEN"
