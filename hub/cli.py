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
from hub.admin.service import ensure_admin_key_once
from hub.agreements.service import (
    AgreementError,
    PartyRef,
    add_agreement,
    agreement_as_dict,
    end_agreement,
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
    except RegistryError as exc:
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
            async with rt.sessions.begin() as session:
                agreement = await add_agreement(
                    session,
                    cpo_ref,
                    emsp_ref,
                    now=rt.clock.now(),
                    valid_from=_utc(valid_from),
                    valid_to=_utc(valid_to),
                )
                result = agreement_as_dict(agreement)
        except AgreementError as exc:
            raise RegistryError(str(exc)) from exc
        await rt.agreements_changed(_key(cpo_ref), _key(emsp_ref))
        return result

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
        async with rt.sessions.begin() as session:
            ended = await end_agreement(session, cpo_ref, emsp_ref, now=rt.clock.now())
        if ended:
            await rt.agreements_changed(_key(cpo_ref), _key(emsp_ref))
        return ended

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


def _key(ref: PartyRef) -> tuple[str, str]:
    return (ref.country_code, ref.party_id)


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
        async with rt.sessions.begin() as session:
            return await outbox.redeliver(session, ids=list(ids) or None, platform_id=platform_id)

    click.echo(f"{_run(work)} failed push(es) queued again")


@main.group()
def clearing() -> None:
    """Clearing house: pricing, settlement, statements."""


clearing.add_command(price_command)
for clearing_command in intake_commands:
    clearing.add_command(clearing_command)
