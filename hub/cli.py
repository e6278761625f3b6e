"""The ``ocpi-hub`` command (DESIGN §9): serve, worker, db upgrade, parties, clearing (composition root).

Machine-readable output goes to stdout as JSON; tables are for humans; every failure is a one-line message on stderr
with a non-zero exit code.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from clearing.cli import intake_commands, price_command
from hub.admin import actions
from hub.admin.service import (
    CLI_ACTOR,
    OperatorKeyError,
    audit_as_dict,
    ensure_admin_key_once,
    list_audit,
    list_operator_keys,
    operator_key_as_dict,
)
from hub.agreements.service import (
    AgreementError,
    PartyRef,
    agreement_as_dict,
    list_agreements,
)
from hub.parties.service import RegistryError, platform_as_dict
from hub.platform.logging import configure_logging
from hub.runtime import Runtime, build_runtime
from hub.settings import Settings, SettingsError, load_settings
from routing import outbox
from routing.outbox import OutboxStatus, outbox_as_dict

T = TypeVar("T")


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc


def _run(work: Callable[[Runtime], Awaitable[T]]) -> T:
    settings = _settings()

    async def main() -> T:
        runtime = build_runtime(settings)
        try:
            return await work(runtime)
        finally:
            await runtime.close()

    try:
        return asyncio.run(main())
    except (RegistryError, OperatorKeyError) as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot reach the database: {exc}") from exc


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


@click.group()
@click.version_option(package_name="ocpi-hub")
def main() -> None:
    """OCPI 2.2.1 roaming hub and clearing house."""
    # Logs go to stderr: stdout carries the JSON other tools read.
    configure_logging()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Server processes.")
def serve(host: str, port: int, workers: int) -> None:
    """Serve the OCPI endpoints, the admin API and health checks (granian, uvloop)."""
    from granian.constants import Interfaces, Loops
    from granian.server import Server

    if not os.environ.get("HUB_PUBLIC_URL"):
        # Without a public URL the hub advertises where it listens; the server processes inherit the variable.
        os.environ["HUB_PUBLIC_URL"] = f"http://{host}:{port}"
    settings = _settings()
    generated = _run(lambda rt: ensure_admin_key_once(rt.sessions, rt.clock, settings.admin_token))
    if generated:
        click.echo(f"Generated the first admin API key (shown once, keep it): {generated}", err=True)
    if settings.secret_key_generated:
        click.echo("HUB_SECRET_KEY was not set: generated one beside the database file.", err=True)
    click.echo(f"OCPI versions endpoint: {settings.versions_url}", err=True)
    Server(
        "hub.app:asgi",
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        loop=Loops.uvloop,
        factory=True,
        log_access=False,
        # A worker process that dies (a crash in a native library, the OOM killer) is started again, not left gone.
        respawn_failed_workers=True,
    ).serve()


@main.command()
def worker() -> None:
    """Run the background worker (fan-out deliveries, HubClientInfo, liveness, clearing jobs) on HUB_REDIS_URL."""
    from hub.worker import run_worker

    settings = _settings()
    if settings.redis_url is None:
        raise click.ClickException(
            "HUB_REDIS_URL is not set: without Redis, `ocpi-hub serve` runs the background jobs in-process"
        )
    run_worker(settings)


@main.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply the Alembic migrations to HUB_DATABASE_URL."""
    from hub.migrate import upgrade

    settings = _settings()
    try:
        upgrade(settings.database_url, revision)
    except OSError as exc:
        raise click.ClickException(f"cannot reach the database: {exc}") from exc
    click.echo(f"database at revision {revision}", err=True)


@main.group()
def parties() -> None:
    """Onboard and list partner platforms."""


@parties.command("invite")
@click.option("--name", required=True, help="A name for the platform that will register itself.")
def parties_invite(name: str) -> None:
    """Issue a token A; prints JSON {"versions_url", "token_a"} to hand to the platform."""

    async def work(rt: Runtime) -> dict[str, Any]:
        _, token_a = await rt.registry.invite(name)
        return {"versions_url": rt.settings.versions_url, "token_a": token_a}

    _print_json(_run(work))


@parties.command("connect")
@click.option("--versions-url", required=True, help="The platform's versions endpoint.")
@click.option("--token-a", required=True, help="The token A the platform issued to the hub.")
@click.option("--name", default=None, help="A name for the platform (default: its versions URL).")
def parties_connect(versions_url: str, token_a: str, name: str | None) -> None:
    """Register the hub with a platform (the hub must be serving: the platform calls it back)."""

    async def work(rt: Runtime) -> dict[str, Any]:
        platform = await rt.registry.connect(versions_url, token_a, name=name)
        return platform_as_dict(platform)

    _print_json(_run(work))


@parties.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def parties_list(as_json: bool) -> None:
    """List the registered platforms and their parties."""

    async def work(rt: Runtime) -> list[dict[str, Any]]:
        return [platform_as_dict(p) for p in await rt.registry.list_platforms()]

    platforms = _run(work)
    if as_json:
        _print_json(platforms)
        return
    table = Table(title="Platforms")
    for column in ("id", "name", "status", "direction", "version", "parties"):
        table.add_column(column)
    for p in platforms:
        names = ", ".join(
            f"{party['country_code']}/{party['party_id']} {party['role']}" + ("" if party["active"] else " (inactive)")
            for party in p["parties"]
        )
        table.add_row(str(p["id"]), p["name"], p["status"], p["direction"], p["version"] or "-", names or "-")
    Console(file=sys.stdout).print(table)


def _party_action(action: actions.PartyAction, platform_id: int, as_json: bool, done: str) -> None:
    async def work(rt: Runtime) -> dict[str, Any]:
        return await actions.party_action(rt, CLI_ACTOR, action, platform_id)

    result = _run(work)
    if as_json:
        _print_json(result)
        return
    click.echo(
        f"platform {result['id']} ({result['name']}) {done}: status {result['status']},"
        f" connection {result['connection_status']}"
    )
    if action == "delete" and not result.get("platform_notified"):
        click.echo("the platform did not confirm the credentials DELETE (it may no longer be reachable)", err=True)


_ID = click.option("--id", "platform_id", type=int, required=True, help="The platform id (see `parties list`).")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@parties.command("suspend")
@_ID
@_JSON
def parties_suspend(platform_id: int, as_json: bool) -> None:
    """Suspend a platform: its token stops working and its parties are announced SUSPENDED (undo: activate)."""
    _party_action("suspend", platform_id, as_json, "suspended")


@parties.command("activate")
@_ID
@_JSON
def parties_activate(platform_id: int, as_json: bool) -> None:
    """Activate a suspended platform again."""
    _party_action("activate", platform_id, as_json, "activated")


@parties.command("delete")
@_ID
@_JSON
def parties_delete(platform_id: int, as_json: bool) -> None:
    """Unregister a platform for good (credentials DELETE at the platform, best effort)."""
    _party_action("delete", platform_id, as_json, "deleted")


@parties.command("rotate")
@_ID
@_JSON
def parties_rotate(platform_id: int, as_json: bool) -> None:
    """Renew the credentials with a platform: new tokens both ways (the hub must be serving)."""
    _party_action("rotate", platform_id, as_json, "has new credentials")


@main.group()
def operators() -> None:
    """Operator API keys for the admin API (roles admin, finance, viewer)."""


@operators.command("add")
@click.option("--name", required=True, help="Who or what uses the key.")
@click.option("--role", required=True, type=click.Choice(["admin", "finance", "viewer"]))
@_JSON
def operators_add(name: str, role: str, as_json: bool) -> None:
    """Create a key; the key is printed this once (only its hash is kept)."""

    async def work(rt: Runtime) -> tuple[dict[str, object], str]:
        return await actions.operator_add(rt, CLI_ACTOR, name=name, role=role)

    result, plain = _run(work)
    if as_json:
        _print_json({**result, "key": plain})
        return
    click.echo(f"operator key {result['id']} ({result['name']}, {result['role']}): {plain}")
    click.echo("the key is shown only now: keep it", err=True)


@operators.command("list")
@_JSON
def operators_list(as_json: bool) -> None:
    """List the operator keys (never the keys themselves)."""

    async def work(rt: Runtime) -> list[dict[str, object]]:
        async with rt.sessions() as session:
            return [operator_key_as_dict(k) for k in await list_operator_keys(session)]

    rows = _run(work)
    if as_json:
        _print_json(rows)
        return
    table = Table(title="Operator keys")
    for column in ("id", "name", "role", "created_at", "revoked_at"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row[c] or "-") for c in ("id", "name", "role", "created_at", "revoked_at")))
    Console(file=sys.stdout).print(table)


@operators.command("revoke")
@click.option("--id", "key_id", type=int, required=True, help="The key id (see `operators list`).")
@_JSON
def operators_revoke(key_id: int, as_json: bool) -> None:
    """Revoke a key for good."""

    async def work(rt: Runtime) -> dict[str, object]:
        return await actions.operator_revoke(rt, CLI_ACTOR, key_id)

    result = _run(work)
    if as_json:
        _print_json(result)
    else:
        click.echo(f"operator key {result['id']} ({result['name']}) revoked")


@main.group()
def audit() -> None:
    """The append-only log of operator changes (admin API and CLI)."""


@audit.command("list")
@click.option("--target", default=None, help="e.g. platform:3 (exact) or platform:* (prefix).")
@click.option("--since", type=click.DateTime(), default=None, help="UTC time of the oldest entry to show.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@_JSON
def audit_list(target: str | None, since: datetime | None, limit: int, as_json: bool) -> None:
    """List audit entries, newest first."""

    async def work(rt: Runtime) -> list[dict[str, object]]:
        async with rt.sessions() as session:
            return [audit_as_dict(e) for e in await list_audit(session, target=target, since=_utc(since), limit=limit)]

    rows = _run(work)
    if as_json:
        _print_json(rows)
        return
    table = Table(title="Audit log")
    for column in ("id", "at", "actor", "action", "target", "request id"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row[c] or "-") for c in ("id", "at", "actor", "action", "target", "request_id")))
    Console(file=sys.stdout).print(table)


@main.group()
def agreements() -> None:
    """Roaming agreements between a CPO party and an eMSP party (used when HUB_ROAMING_POLICY=agreements)."""


def _party_ref(text: str) -> PartyRef:
    try:
        return PartyRef.parse(text)
    except AgreementError as exc:
        raise click.BadParameter(str(exc)) from exc


@agreements.command("add")
@click.option("--cpo", required=True, help="The CPO party, COUNTRY/PARTY (e.g. NL/CPA).")
@click.option("--emsp", required=True, help="The eMSP party, COUNTRY/PARTY (e.g. DE/EMA).")
@click.option("--valid-from", type=click.DateTime(), default=None, help="UTC start (default: now).")
@click.option("--valid-to", type=click.DateTime(), default=None, help="UTC end (default: open-ended).")
@click.option("--json", "as_json", is_flag=True)
def agreements_add(cpo: str, emsp: str, valid_from: datetime | None, valid_to: datetime | None, as_json: bool) -> None:
    """Let a CPO and an eMSP roam with each other."""
    cpo_ref, emsp_ref = _party_ref(cpo), _party_ref(emsp)

    async def work(rt: Runtime) -> dict[str, object]:
        try:
            return await actions.agreement_add(
                rt, CLI_ACTOR, cpo_ref, emsp_ref, valid_from=_utc(valid_from), valid_to=_utc(valid_to)
            )
        except AgreementError as exc:
            raise RegistryError(str(exc)) from exc

    result = _run(work)
    if as_json:
        _print_json(result)
    else:
        click.echo(f"agreement {result['id']}: {result['cpo']} ↔ {result['emsp']} active")


@agreements.command("end")
@click.option("--cpo", required=True)
@click.option("--emsp", required=True)
def agreements_end(cpo: str, emsp: str) -> None:
    """End an agreement (the pair may no longer exchange data under the agreements policy)."""
    cpo_ref, emsp_ref = _party_ref(cpo), _party_ref(emsp)

    async def work(rt: Runtime) -> bool:
        return await actions.agreement_end(rt, CLI_ACTOR, cpo_ref, emsp_ref)

    if not _run(work):
        raise click.ClickException(f"no active agreement between {cpo_ref} and {emsp_ref}")
    click.echo(f"agreement between {cpo_ref} and {emsp_ref} ended")


@agreements.command("list")
@click.option("--json", "as_json", is_flag=True)
def agreements_list(as_json: bool) -> None:
    """List the agreements."""

    async def work(rt: Runtime) -> list[dict[str, object]]:
        async with rt.sessions() as session:
            return [agreement_as_dict(a) for a in await list_agreements(session)]

    rows = _run(work)
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"Roaming agreements (policy: {_settings().roaming_policy})")
    for column in ("id", "cpo", "emsp", "active", "valid_from", "valid_to"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            *(
                str(row[c]) if row[c] is not None else "-"
                for c in ("id", "cpo", "emsp", "active", "valid_from", "valid_to")
            )
        )
    Console(file=sys.stdout).print(table)


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)


@main.group()
def deliveries() -> None:
    """Pushes the hub fans out (broadcasts, HubClientInfo): failed ones and re-delivery."""


@deliveries.command("list")
@click.option("--status", type=click.Choice([s.value for s in OutboxStatus]), default=None)
@click.option("--platform", "platform_id", type=int, default=None, help="Only pushes to this platform id.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def deliveries_list(status: str | None, platform_id: int | None, limit: int, as_json: bool) -> None:
    """List pushes, newest first."""

    async def work(rt: Runtime) -> list[dict[str, object]]:
        async with rt.sessions() as session:
            rows = await outbox.list_messages(session, status=status, platform_id=platform_id, limit=limit)
            return [outbox_as_dict(row) for row in rows]

    rows = _run(work)
    if as_json:
        _print_json(rows)
        return
    table = Table(title="Deliveries")
    for column in ("id", "to platform", "kind", "method", "object", "status", "attempts", "last error"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row["id"]),
            str(row["receiver_platform_id"]),
            str(row["kind"]),
            str(row["method"]),
            str(row["object_key"]),
            str(row["status"]),
            str(row["attempts"]),
            str(row["last_error"] or "-"),
        )
    Console(file=sys.stdout).print(table)


@deliveries.command("retry")
@click.option("--id", "ids", type=int, multiple=True, help="A failed push to retry (repeatable).")
@click.option("--platform", "platform_id", type=int, default=None, help="Retry every failed push to this platform.")
@click.option("--all", "retry_all", is_flag=True, help="Retry every failed push.")
def deliveries_retry(ids: tuple[int, ...], platform_id: int | None, retry_all: bool) -> None:
    """Put failed pushes back in line (the serving hub or the workers deliver them)."""
    if not ids and platform_id is None and not retry_all:
        raise click.UsageError("say which: --id N, --platform P or --all")

    async def work(rt: Runtime) -> int:
        return await actions.deliveries_retry(rt, CLI_ACTOR, ids=list(ids) or None, platform_id=platform_id)

    click.echo(f"{_run(work)} failed push(es) queued again")


@main.group()
def clearing() -> None:
    """Clearing house: pricing, settlement, statements."""


clearing.add_command(price_command)
for clearing_command in intake_commands:
    clearing.add_command(clearing_command)


@main.command()
@click.option("--cpos", default=3, show_default=True, type=click.IntRange(1, 9), help="Simulated CPO platforms.")
@click.option("--emsps", default=3, show_default=True, type=click.IntRange(1, 9), help="Simulated eMSP platforms.")
@click.option("--sessions", default=30, show_default=True, type=click.IntRange(0, 2000), help="Charging sessions.")
@click.option("--port", default=0, show_default=True, type=click.IntRange(0, 65535), help="Hub port (0: any free).")
@click.option("--mismatch-every", default=7, show_default=True, type=click.IntRange(0, 1000),
              help="Every n-th CDR of a CPO states a wrong price (0: never).")  # fmt: skip
@click.option("--keep-running", is_flag=True, help="Keep the hub and the platforms up until Ctrl-C.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout instead of tables.")
def demo(  # noqa: PLR0917 - click passes every option as an argument
    cpos: int, emsps: int, sessions: int, port: int, mismatch_every: int, keep_running: bool, as_json: bool
) -> None:
    """Run the hub with simulated CPOs and eMSPs in a temporary folder: roaming for a day, then clearing."""
    import tempfile
    from pathlib import Path

    from hub.sim.report import print_result, summary
    from hub.sim.world import DemoOptions, DemoResult, prepare, run_demo

    err = Console(stderr=True)
    options = DemoOptions(cpos=cpos, emsps=emsps, sessions=sessions, port=port, mismatch_every=mismatch_every)
    with tempfile.TemporaryDirectory(prefix="ocpi-hub-demo-") as folder:
        try:
            settings, sock = prepare(Path(folder), port)
        except OSError as exc:
            raise click.ClickException(f"cannot start the demo hub: {exc}") from exc

        async def hold(result: DemoResult) -> None:
            if as_json:
                _print_json(summary(result))
            else:
                print_result(Console(file=sys.stdout), result)
            err.print(
                f"Hub running at {result.hub_url}: dashboard {result.dashboard_url} (sign in with the key"
                f" {result.admin_key}), admin API {result.admin_url}; Ctrl-C to stop."
            )

        from rich.progress import Progress

        with Progress(console=err, transient=as_json) as bar:
            tasks: dict[str, Any] = {}

            def advance(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done, total=total)

            try:
                result = asyncio.run(
                    run_demo(settings, sock, options, progress=advance, keep_running=hold if keep_running else None)
                )
            except KeyboardInterrupt:
                err.print("stopped")
                return
        if keep_running:  # the results were shown while it ran
            err.print("stopped")
            return
    if as_json:
        _print_json(summary(result))
    else:
        print_result(Console(file=sys.stdout), result)
    if result.sessions_completed == 0 or result.period_state != "closed":
        raise click.ClickException("the demo did not complete: see the errors above")
