"""The application factory: the composition root that wires settings, database, registry and routes together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from litestar import Litestar, Response, get
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.admin import controllers as admin_controllers
from hub.admin.service import ensure_admin_key_once
from hub.ocpi.codec import encode
from hub.parties import controllers as party_controllers
from hub.platform.clock import Clock
from hub.platform.http import PartnerClient
from hub.platform.logging import configure_logging
from hub.platform.web import EXCEPTION_HANDLERS, OcpiAsgiWrapper
from hub.runtime import build_runtime
from hub.settings import Settings, load_settings
from hub.worker import build_background

log = structlog.get_logger("hub.app")


@get("/health/live", operation_id="Live", tags=["health"])
async def live() -> dict[str, str]:
    return {"status": "ok"}


@get("/health/ready", operation_id="Ready", tags=["health"])
async def ready(state: State) -> Response[dict[str, str]]:
    """Ready when the database answers; a load balancer sends no traffic to an instance that cannot reach it."""
    engine: AsyncEngine = state.engine
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means "not ready"; the reason is in the body
        return Response({"status": "unavailable", "database": str(exc)}, status_code=503)
    return Response({"status": "ok"})


def create_app(
    settings: Settings | None = None,
    *,
    engine: AsyncEngine | None = None,
    client: PartnerClient | None = None,
    clock: Clock | None = None,
) -> Litestar:
    settings = settings or load_settings()
    runtime = build_runtime(settings, engine=engine, client=client, clock=clock)
    # Outbox relay and in-process jobs on the embedded default, a Redis wake-up for the workers otherwise (DESIGN §2).
    background = build_background(runtime)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if settings.secret_key_generated:
            log.warning("HUB_SECRET_KEY not set: generated one beside the database file; keep it with the database")
        await ensure_admin_key_once(runtime.sessions, runtime.clock, settings.admin_token)
        background.start()
        try:
            yield
        finally:
            await background.close()
            await runtime.close()

    state = State(
        {
            "settings": settings,
            "engine": runtime.engine,
            "sessions": runtime.sessions,
            "registry": runtime.registry,
            "clock": runtime.clock,
            # Version details never change while the process runs: encode them once (hub hot path stays small).
            "version_details_json": encode(party_controllers.version_details(settings.public_url)),
        }
    )
    return Litestar(
        route_handlers=[*party_controllers.ROUTES, *admin_controllers.ROUTES, live, ready],
        state=state,
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(title="OCPI hub admin API", version="0.1.0", path="/schema"),
        debug=False,
    )


def asgi() -> OcpiAsgiWrapper:
    """The ASGI entry point for servers (``hub.app:asgi``, a factory): settings from the environment."""
    configure_logging()
    return wrap(create_app())


def wrap(app: Litestar) -> OcpiAsgiWrapper:
    return OcpiAsgiWrapper(app)
