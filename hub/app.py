"""The application factory: the composition root that wires settings, database, registry and routes together."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
from litestar import Litestar, Response, get
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.admin import clearing_routes as admin_clearing_routes
from hub.admin import controllers as admin_controllers
from hub.admin.service import ensure_admin_key_once
from hub.objects.service import ObjectStore
from hub.ocpi.codec import encode
from hub.parties import controllers as party_controllers
from hub.parties.models import ConnectionStatus
from hub.platform.clock import Clock
from hub.platform.http import PartnerClient
from hub.platform.logging import configure_logging
from hub.platform.web import EXCEPTION_HANDLERS, OcpiAsgiWrapper
from hub.runtime import Runtime, build_runtime
from hub.settings import Settings, load_settings
from hub.ui import router as ui_router
from hub.worker import build_background, delivery_hooks
from routing import outbox
from routing.asgi import RoutingApp
from routing.forwarder import Forwarder
from routing.hubstore import HubStore
from routing.links import LinkSigner
from routing.router import Router

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
    background = build_background(runtime, hooks=delivery_hooks(runtime))
    routing_app = build_routing_app(runtime)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if settings.secret_key_generated:
            log.warning("HUB_SECRET_KEY not set: generated one beside the database file; keep it with the database")
        await ensure_admin_key_once(runtime.sessions, runtime.clock, settings.admin_token)
        await runtime.table.start()
        await runtime.message_log.start()
        background.start()
        # Without Redis there is no worker: this process runs the still-alive probe itself (with Redis, the
        # workers' unique cron job does, once cluster-wide).
        liveness = None if settings.redis_url else asyncio.create_task(_liveness_loop(runtime), name="liveness")
        signal = runtime.routing_signal
        # Another process changed the registry or an agreement: reload now rather than at the next poll.
        listener = None if signal is None else asyncio.create_task(signal.listen(_reloader(runtime)), name="signal")
        try:
            yield
        finally:
            for task in (liveness, listener):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await background.close()
            await runtime.message_log.stop()
            await runtime.table.stop()
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
            "routing_app": routing_app,
            "runtime": runtime,
        }
    )
    return Litestar(
        route_handlers=[
            *party_controllers.ROUTES,
            *admin_controllers.ROUTES,
            *admin_clearing_routes.ROUTES,
            ui_router,  # the dashboard, /ui/ (Litestar routes it; the OCPI fast path never sees it)
            live,
            ready,
            metrics,
        ],
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
    """Put the OCPI wrapper around the app; functional-module URLs go straight to the routing fast path."""
    routing_app: RoutingApp = app.state.routing_app
    return OcpiAsgiWrapper(app, fast_path=(routing_app.handles, routing_app))


def build_routing_app(runtime: Runtime) -> RoutingApp:
    settings = runtime.settings
    hub_party = (settings.country_code, settings.party_id)
    store = ObjectStore(runtime.clock)
    hubstore = HubStore(
        table=runtime.table,
        sessions=runtime.sessions,
        store=store,
        public_url=settings.public_url,
        hub_party=hub_party,
    )
    router = Router(
        table=runtime.table,
        forwarder=Forwarder(runtime.client, runtime.message_log),
        sessions=runtime.sessions,
        store=store,
        signer=LinkSigner(settings.secret_key),
        clock=runtime.clock,
        public_url=settings.public_url,
        hub_party=hub_party,
        forward_timeout=settings.forward_timeout,
        authorize_timeout=settings.authorize_timeout,
        hub_handler=hubstore.handle,
    )
    app = RoutingApp(table=runtime.table, router=router, message_log=runtime.message_log, clientinfo=runtime.clientinfo)

    def unreachable(platform_id: int) -> None:
        app.spawn(runtime.clientinfo.set_status(platform_id, ConnectionStatus.OFFLINE, reason="forwarding failed"))

    def reachable(platform_id: int) -> None:
        app.spawn(runtime.clientinfo.set_status(platform_id, ConnectionStatus.CONNECTED, reason="it answered"))

    hubstore.on_token_stored = router.token_owners.forget
    router.on_unreachable = unreachable
    router.on_reachable = reachable
    return app


def _reloader(runtime: Runtime) -> Callable[[], Awaitable[None]]:
    async def reload() -> None:
        await runtime.table.reload()

    return reload


# How often the embedded hub looks for silent platforms; each is probed only after HUB_LIVENESS_AFTER of silence.
LIVENESS_TICK = 60.0


async def _liveness_loop(runtime: Runtime) -> None:
    while True:
        await asyncio.sleep(min(LIVENESS_TICK, runtime.settings.liveness_after))
        try:
            await runtime.clientinfo.probe_silent()
        except Exception:  # the next round retries; a database hiccup must not end the probe
            log.exception("still-alive probe failed")


@get("/metrics", operation_id="Metrics", tags=["health"], media_type="text/plain; version=0.0.4")
async def metrics(state: State) -> str:
    """Prometheus text exposition: this process's routed requests, platforms by status, pushes by status."""
    runtime: Runtime = state.runtime
    routing: RoutingApp = state.routing_app
    lines = [
        "# HELP ocpi_hub_requests_total Requests on functional-module URLs handled by this process.",
        "# TYPE ocpi_hub_requests_total counter",
    ]
    for (module, http_status, ocpi_status), count in sorted(routing.stats.count.items(), key=str):
        lines.append(
            f'ocpi_hub_requests_total{{module="{module}",http_status="{http_status}",'
            f'ocpi_status="{ocpi_status if ocpi_status is not None else ""}"}} {count}'
        )
    lines += [
        "# HELP ocpi_hub_request_seconds_total Time spent answering them.",
        "# TYPE ocpi_hub_request_seconds_total counter",
    ]
    lines += [
        f'ocpi_hub_request_seconds_total{{module="{m}"}} {s:.6f}' for m, s in sorted(routing.stats.seconds.items())
    ]
    statuses = Counter(p.connection_status for p in runtime.table.snapshot.platforms.values())
    lines += [
        "# HELP ocpi_hub_platforms Registered platforms by HubClientInfo status.",
        "# TYPE ocpi_hub_platforms gauge",
    ]
    lines += [f'ocpi_hub_platforms{{status="{s}"}} {n}' for s, n in sorted(statuses.items())]
    async with runtime.sessions() as session:
        pushes = await outbox.count_by_status(session)
    lines += ["# HELP ocpi_hub_pushes Outbox pushes by status.", "# TYPE ocpi_hub_pushes gauge"]
    lines += [f'ocpi_hub_pushes{{status="{s}"}} {n}' for s, n in sorted(pushes.items())]
    lines += [
        "# HELP ocpi_hub_message_log_dropped_total Log records dropped while the database was unreachable.",
        "# TYPE ocpi_hub_message_log_dropped_total counter",
        f"ocpi_hub_message_log_dropped_total {runtime.message_log.dropped}",
        "# HELP ocpi_hub_message_log_batches_total Transactions that wrote message log records.",
        "# TYPE ocpi_hub_message_log_batches_total counter",
        f"ocpi_hub_message_log_batches_total {runtime.message_log.transactions}",
    ]
    writes = routing.router.writes
    lines += [
        "# HELP ocpi_hub_stored_writes_total Session and CDR writes stored before forwarding (group commit).",
        "# TYPE ocpi_hub_stored_writes_total counter",
        f"ocpi_hub_stored_writes_total {writes.items}",
        "# HELP ocpi_hub_stored_write_batches_total Transactions those writes shared.",
        "# TYPE ocpi_hub_stored_write_batches_total counter",
        f"ocpi_hub_stored_write_batches_total {writes.batches}",
        "# HELP ocpi_hub_stored_write_fallbacks_total Batches written again one write at a time after a failure.",
        "# TYPE ocpi_hub_stored_write_fallbacks_total counter",
        f"ocpi_hub_stored_write_fallbacks_total {writes.fallbacks}",
    ]
    return "\n".join(lines) + "\n"
