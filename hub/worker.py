"""Composition root of the background work: ``ocpi-hub worker`` (arq on Redis) and its twin inside the web process.

DESIGN §2: with ``HUB_REDIS_URL`` the web processes only write outbox rows (and wake the workers through Redis
pub/sub after each commit); ``ocpi-hub worker`` processes run the outbox relay and the jobs. Without it (the embedded
default) every web process runs the same relay and the same job functions in-process. Either way a delivery is the
same ``routing.delivery.deliver_to`` (one receiver's due pushes, in order per object, ADR 0009) over the same rows,
so losing Redis or a process loses no accepted push (DESIGN §6). The clearing schedule runs here too, once
cluster-wide (arq ``unique`` cron plus a database lock, ADR 0210).

Besides ``hub/platform/jobs.py`` this is the only module that imports arq (DESIGN §6).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging.config
import signal
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

import structlog
from arq.cron import cron
from arq.logs import default_log_config
from arq.worker import Worker
from sqlalchemy.ext.asyncio import AsyncEngine

from clearing.schedule import ScheduleResult, run_scheduled
from hub.parties.models import ConnectionStatus
from hub.platform.clock import Clock, SystemClock
from hub.platform.http import PartnerClient
from hub.platform.jobs import (
    ArqJobQueue,
    InProcessJobQueue,
    JobContext,
    JobQueue,
    JobRegistry,
    arq_functions,
    compute_backoff,
    redis_settings,
)
from hub.platform.logging import configure_logging
from hub.runtime import Runtime, build_runtime
from hub.settings import Settings
from routing.delivery import (
    DELIVER_JOB,
    DELIVER_TO_JOB,
    DELIVERER_KEY,
    RELAY_WAKE_KEY,
    AttemptRecord,
    Deliverer,
    DeliveryHooks,
    DeliveryPolicy,
    deliver,
    deliver_to,
)
from routing.messagelog import MessageRecord
from routing.outbox import install_wakeup
from routing.relay import OutboxRelay, RelaySettings

__all__ = [
    "CLEARING_JOB",
    "Background",
    "build_background",
    "clearing_schedule",
    "delivery_hooks",
    "delivery_policy",
    "job_context",
    "job_registry",
    "run_clearing_schedule",
    "run_worker",
    "worker_settings",
]

log = structlog.get_logger("hub.worker")


def delivery_policy(settings: Settings) -> DeliveryPolicy:
    # The lease outlives the HTTP timeout by far: a live attempt must never be repeated because it was slow.
    return DeliveryPolicy(
        max_attempts=3,
        timeout=settings.partner_timeout,
        lease=settings.partner_timeout + 30.0,
        backoff=compute_backoff,
    )


def delivery_hooks(runtime: Runtime) -> DeliveryHooks:
    """What happens when a receiver stops (or starts again) answering pushes.

    The single plug point for HubClientInfo (hub notes §3 and §1.9: forwarding failures drive CONNECTED/OFFLINE):
    mark the party OFFLINE on ``on_receiver_unreachable`` and CONNECTED again on ``on_receiver_reachable``.
    """
    clientinfo, message_log = runtime.clientinfo, runtime.message_log

    async def unreachable(platform_id: int) -> None:
        await clientinfo.set_status(platform_id, ConnectionStatus.OFFLINE, reason="pushes to it keep failing")

    async def reachable(platform_id: int) -> None:
        # Called after every delivered push: only a platform not already CONNECTED (as far as this process's routing
        # table knows; the status change reloads it) costs a database round trip (make bench fan-out profile).
        route = runtime.table.snapshot.platforms.get(platform_id)
        if route is not None and route.connection_status == ConnectionStatus.CONNECTED:
            return
        await clientinfo.set_status(platform_id, ConnectionStatus.CONNECTED, reason="a push was delivered")

    def attempted(record: AttemptRecord) -> None:
        headers = record.headers
        message_log.record(
            MessageRecord(
                at=record.at,
                direction="out",
                correlation_id=headers.get("X-Correlation-ID", ""),
                request_id=record.request_id,
                platform_id=record.receiver_platform_id,
                from_party=_party(headers, "from"),
                to_party=_party(headers, "to"),
                target_platform_id=record.receiver_platform_id,
                # The object key starts with the OCPI module ("locations/NL/CPA/LOC1", "clientinfo/…").
                module=record.object_key.split("/", 1)[0].replace("clientinfo", "hubclientinfo"),
                method=record.method,
                path=record.url,
                http_status=record.http_status,
                ocpi_status=record.ocpi_status,
                latency_ms=record.latency_ms,
                size_in=record.size_in,
                size_out=record.size_out,
                error=record.error,
            )
        )

    return DeliveryHooks(on_receiver_unreachable=unreachable, on_receiver_reachable=reachable, on_attempt=attempted)


def _party(headers: Mapping[str, str], side: str) -> str | None:
    cc, pid = headers.get(f"OCPI-{side}-country-code"), headers.get(f"OCPI-{side}-party-id")
    return f"{cc.upper()}/{pid.upper()}" if cc and pid else None


def job_registry(policy: DeliveryPolicy) -> JobRegistry:
    registry = JobRegistry()
    # The job outlives the HTTP attempt and the two transactions around it; the lease outlives the job.
    registry.add(DELIVER_JOB, deliver, timeout=policy.timeout + 15.0)
    # What the relay enqueues: a receiver's due messages in batches; it starts calls for batch_time seconds.
    registry.add(DELIVER_TO_JOB, deliver_to, timeout=policy.batch_time + policy.timeout + 15.0)
    return registry


# Leases, due times and backoffs pace real network calls and real sleeps, across processes: they run on the wall
# clock even where the runtime's clock is a test's fixed one (that one is for business time, e.g. last_updated).
_WALL_CLOCK = SystemClock()


def job_context(runtime: Runtime, *, policy: DeliveryPolicy, hooks: DeliveryHooks) -> JobContext:
    """The objects job functions find in their ctx; built once per process."""
    deliverer = Deliverer(
        runtime.sessions,
        registry=runtime.registry,
        client=runtime.client,
        clock=_WALL_CLOCK,
        policy=policy,
        hooks=hooks,
    )
    return {"runtime": runtime, DELIVERER_KEY: deliverer}


# ---- inside the web process ------------------------------------------------------------------------------------------


class Background:
    """The background side of one web process: build it with the runtime, `start` it in the lifespan, `close` it
    before the runtime. `notify` after committing outbox rows (sessions of ``runtime.sessions`` do it by themselves,
    see `routing.outbox.install_wakeup`).
    """

    def __init__(
        self,
        queue: JobQueue,
        relay: OutboxRelay | None,
        publisher: ArqJobQueue | None = None,
        *,
        periodic: tuple[tuple[str, float, Callable[[], Awaitable[object]]], ...] = (),
    ) -> None:
        self.queue = queue
        self.relay = relay
        self._publisher = publisher
        self._periodic = periodic
        self._tasks: set[asyncio.Task[None]] = set()

    def notify(self) -> None:
        """Wake the relay: this process's own (embedded default), or the workers' through Redis pub/sub."""
        if self.relay is not None:
            self.relay.notify()
        elif self._publisher is not None:
            task = asyncio.get_running_loop().create_task(self._publish(self._publisher))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _publish(publisher: ArqJobQueue) -> None:
        try:
            await publisher.publish_wakeup()
        except Exception as exc:  # Redis away: the workers' relays still poll, the push is only later
            log.warning("could not wake the workers", error=f"{exc.__class__.__name__}: {exc}")

    def start(self) -> None:
        if self.relay is not None:
            self.relay.start()
        for name, interval, work in self._periodic:
            task = asyncio.get_running_loop().create_task(_every(name, interval, work), name=name)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self.relay is not None:
            await self.relay.stop()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.queue.close()


def build_background(
    runtime: Runtime,
    *,
    policy: DeliveryPolicy | None = None,
    hooks: DeliveryHooks | None = None,
    relay_settings: RelaySettings | None = None,
    concurrency: int = 10,
) -> Background:
    """Without Redis: relay + in-process jobs. With Redis: only the wake-up publisher for the workers' relays."""
    settings = runtime.settings
    if settings.redis_url is None:
        policy = policy or delivery_policy(settings)
        context = job_context(runtime, policy=policy, hooks=hooks or delivery_hooks(runtime))

        def wake() -> None:  # a finished delivery makes the next one of its unit due (the queue copies ctx)
            background.notify()

        context[RELAY_WAKE_KEY] = wake
        queue = InProcessJobQueue(job_registry(policy), context, concurrency=concurrency)
        # No worker without Redis: this process runs the clearing schedule on a timer (the workers' cron otherwise).
        periodic = ((CLEARING_JOB, settings.clearing_interval, lambda: run_clearing_schedule(runtime)),)
        relay = OutboxRelay(runtime.sessions, queue, _WALL_CLOCK, relay_settings)
        background = Background(queue, relay, periodic=periodic)
    else:
        publisher = ArqJobQueue.lazy(settings.redis_url)
        background = Background(publisher, None, publisher)
    install_wakeup(runtime.sessions, background.notify)
    return background


# ---- ocpi-hub worker -------------------------------------------------------------------------------------------------


def worker_settings(
    settings: Settings,
    *,
    engine: AsyncEngine | None = None,
    client: PartnerClient | None = None,
    clock: Clock | None = None,
    policy: DeliveryPolicy | None = None,
    hooks: DeliveryHooks | None = None,
    relay_settings: RelaySettings | None = None,
    max_jobs: int = 20,
) -> dict[str, Any]:
    """arq's WorkerSettings (as the dict arq accepts): the jobs, and the relay started with the worker."""
    if settings.redis_url is None:
        raise ValueError("HUB_REDIS_URL is not set: without Redis the web process runs the jobs itself")
    policy = policy or delivery_policy(settings)
    registry = job_registry(policy)

    async def startup(ctx: JobContext) -> None:
        runtime = build_runtime(settings, engine=engine, client=client, clock=clock)
        await runtime.table.start()  # HubClientInfo shows parties without an agreement as PLANNED
        await runtime.message_log.start()  # the deliveries' calls are logged too
        ctx.update(job_context(runtime, policy=policy, hooks=hooks or delivery_hooks(runtime)))
        queue = ArqJobQueue(ctx["redis"])
        relay = OutboxRelay(runtime.sessions, queue, _WALL_CLOCK, relay_settings)
        ctx[RELAY_WAKE_KEY] = relay.notify  # a finished delivery makes the next one of its unit due
        install_wakeup(runtime.sessions, relay.notify)
        relay.start()
        ctx["hub.relay"] = relay
        ctx["hub.wake_listener"] = asyncio.create_task(queue.listen_wakeups(relay.notify), name="wake-listener")
        log.info("worker started", jobs=[job.name for job in registry])

    async def shutdown(ctx: JobContext) -> None:
        listener: asyncio.Task[None] | None = ctx.pop("hub.wake_listener", None)
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        relay: OutboxRelay | None = ctx.pop("hub.relay", None)
        if relay is not None:
            await relay.stop()
        runtime: Runtime | None = ctx.pop("runtime", None)
        if runtime is not None:
            await runtime.table.stop()
            await runtime.message_log.stop()
            await runtime.close()
        log.info("worker stopped")

    return {
        "functions": arq_functions(registry),
        # mod_hub_client_info §still alive check: once a minute, cluster-wide (unique), probe the silent platforms.
        "cron_jobs": [
            cron(probe_liveness, name=LIVENESS_JOB, second=0, unique=True, timeout=120),
            # Intake of the stored CDRs and the close of every due period, once a minute and once cluster-wide:
            # unique here, and a database lock inside (clearing.schedule) for everything else that might close.
            cron(clearing_schedule, name=CLEARING_JOB, second=30, unique=True, timeout=CLEARING_TIMEOUT),
        ],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "redis_settings": redis_settings(settings.redis_url),
        "max_jobs": max_jobs,
        # Results are never kept, failed runs included: a job id must be free again once its run is over, because
        # the outbox, not arq, decides what still has to be done (hub.platform.jobs).
        "keep_result": 0,
        # A queued delivery starts within 0.1 s; the poll is one cheap ZRANGEBYSCORE.
        "poll_delay": 0.1,
    }


LIVENESS_JOB = "routing.probe_liveness"


async def probe_liveness(ctx: JobContext) -> int:
    """GET the versions of every platform silent for longer than HUB_LIVENESS_AFTER; returns how many were probed."""
    runtime: Runtime = ctx["runtime"]
    return len(await runtime.clientinfo.probe_silent())


CLEARING_JOB = "clearing.schedule"
#: A close streams a whole period in one transaction; give a big month room (the run is idempotent if cut short).
CLEARING_TIMEOUT = 3600


async def run_clearing_schedule(runtime: Runtime) -> ScheduleResult:
    """One run of the clearing schedule with the runtime's database, clock and HUB_CLEARING_CLOSE_GRACE."""
    grace = timedelta(seconds=runtime.settings.clearing_close_grace)
    return await run_scheduled(runtime.engine, runtime.sessions, runtime.clock, grace=grace)


async def clearing_schedule(ctx: JobContext) -> dict[str, Any]:
    """The worker's cron job: intake of the CDRs the hub stored, then every due period closed (clearing.schedule)."""
    runtime: Runtime = ctx["runtime"]
    result = await run_clearing_schedule(runtime)
    return {
        "ran": result.ran,
        "taken_in": result.intake.seen if result.intake else 0,
        "closed": [closed.period for closed in result.closed],
        "error": result.error,
    }


async def _every(name: str, interval: float, work: Callable[[], Awaitable[object]]) -> None:
    """Run ``work`` every ``interval`` seconds until cancelled; a failed run is logged and the next one tries again."""
    while True:
        await asyncio.sleep(interval)
        try:
            await work()
        except Exception:
            log.exception("periodic job failed", job=name)


class HubWorker(Worker):
    """arq's worker with a shutdown that survives the jobs it cancels.

    On SIGTERM arq 0.28 cancels the running jobs, then ``close()`` gathers them without ``return_exceptions``: the
    first job whose cancellation lands (even one already past its function, finishing its bookkeeping) re-raises
    ``CancelledError`` out of ``close()``, ``on_shutdown`` never runs (the message log is not flushed, the runtime's
    connections are not closed) and the process exits 1. Cancelling a delivery mid-flight is safe (its lease expires
    and the outbox row is due again, DESIGN §6); losing the shutdown is not.
    """

    async def close(self) -> None:
        if not self._handle_signals:
            self.handle_sig(signal.SIGUSR1)
        # Wait the cancelled jobs out; their CancelledErrors are the expected outcome, not the close's.
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        self.tasks.clear()
        await super().close()


def run_worker(settings: Settings) -> None:
    """Run a worker until SIGINT/SIGTERM (``ocpi-hub worker``)."""
    configure_logging()
    logging.config.dictConfig(default_log_config(verbose=False))
    HubWorker(**worker_settings(settings)).run()
