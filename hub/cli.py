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
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from clearing.cli import price_command
from hub.admin.service import ensure_admin_key_once
from hub.parties.service import RegistryError, platform_as_dict
from hub.platform.logging import configure_logging
from hub.runtime import Runtime, build_runtime
from hub.settings import Settings, SettingsError, load_settings

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
def clearing() -> None:
    """Clearing house: pricing, settlement, statements."""


clearing.add_command(price_command)
