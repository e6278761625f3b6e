"""Background jobs behind a small port (house style §3.7): a job registry, two queues and the retry backoff.

arq is in maintenance mode (house style §2.4), so this module and ``hub/worker.py`` are the only ones that import it
(DESIGN §6). Contexts never import this module either: a job function is a plain ``async def f(ctx, *args)`` and the
code that enqueues declares the one method it needs (``enqueue(name, *args, job_id)``) as its own Protocol, which
both queues here satisfy. Composition roots register the functions and hand a queue to whoever enqueues.

* `ArqJobQueue` (``HUB_REDIS_URL`` set): jobs go to Redis and run in ``ocpi-hub worker`` processes.
* `InProcessJobQueue` (embedded default): the same functions run as asyncio tasks of the current process.

Both collapse a duplicate ``job_id`` while that job is queued or running, and forget it once it has finished (arq
results are not kept, see `arq_functions`): whoever enqueues relies on the database, not on the queue, to know what is
done, so a queue that loses a job (Redis flushed, process killed) loses nothing but time.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import structlog
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.typing import WorkerCoroutine
from arq.worker import Function, func

__all__ = [
    "WAKE_CHANNEL",
    "ArqJobQueue",
    "InProcessJobQueue",
    "Job",
    "JobContext",
    "JobFunction",
    "JobQueue",
    "JobRegistry",
    "arq_functions",
    "compute_backoff",
    "redis_settings",
]

log = structlog.get_logger("hub.jobs")

#: What a job function receives first: the composition root's objects (``"runtime"`` and whatever else it put
#: there) plus ``job_id`` and ``job_try`` of this run. arq hands its own dict; the in-process queue builds the same.
JobContext = dict[str, Any]
JobFunction = Callable[..., Awaitable[Any]]

#: Redis pub/sub channel on which a web process tells the workers' relays that it just committed work for them.
WAKE_CHANNEL = "ocpi-hub:jobs:wake"

_random = secrets.SystemRandom()


def compute_backoff(
    attempt: int, *, base: float = 0.2, factor: float = 5.0, cap: float = 30.0, jitter: float = 0.25
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): 0.2 s, 1 s, 5 s, … capped, ±25 %.

    The jitter spreads the retries of many messages that failed together (a receiver that went down during a
    broadcast fan-out) so that they do not hit it again in one burst when it comes back.
    """
    delay = min(cap, base * factor ** max(0, attempt - 1))
    return max(0.0, delay * _random.uniform(1 - jitter, 1 + jitter))


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    function: JobFunction
    #: Seconds one run may take before the queue cancels it.
    timeout: float = 60.0
    #: Runs arq may make of one enqueued job when a worker is cancelled under it (shutdown); never used to retry a
    #: failure: jobs retry through their own state, see the module docstring.
    max_tries: int = 3


class JobRegistry:
    """The job functions one process can run, by name; filled by a composition root."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}

    def add(self, name: str, function: JobFunction, *, timeout: float = 60.0, max_tries: int = 3) -> Job:
        if name in self._jobs:
            raise ValueError(f"job {name!r} is registered twice")
        job = Job(name, function, timeout, max_tries)
        self._jobs[name] = job
        return job

    def get(self, name: str) -> Job:
        try:
            return self._jobs[name]
        except KeyError:
            raise ValueError(f"no job named {name!r} is registered") from None

    def __iter__(self) -> Iterator[Job]:
        return iter(self._jobs.values())

    def __len__(self) -> int:
        return len(self._jobs)


class JobQueue:
    """The port: hand a job to whatever runs jobs. ``enqueue`` returns False when ``job_id`` is already queued."""

    async def enqueue(self, name: str, *args: Any, job_id: str) -> bool:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class InProcessJobQueue(JobQueue):
    """Runs registered jobs as tasks of this event loop, at most ``concurrency`` at a time (embedded default).

    Nothing survives the process: callers keep their state in the database and enqueue again (DESIGN §6).
    """

    def __init__(self, registry: JobRegistry, ctx: Mapping[str, Any], *, concurrency: int = 10) -> None:
        self._registry = registry
        self._ctx = dict(ctx)
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    async def enqueue(self, name: str, *args: Any, job_id: str) -> bool:
        if self._closed:
            raise RuntimeError("the job queue is closed")
        job = self._registry.get(name)
        if job_id in self._tasks:
            return False
        task = asyncio.create_task(self._run(job, job_id, args), name=job_id)
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job_id, None))
        return True

    async def _run(self, job: Job, job_id: str, args: tuple[Any, ...]) -> None:
        async with self._slots:
            ctx: JobContext = {**self._ctx, "job_id": job_id, "job_try": 1}
            try:
                await asyncio.wait_for(job.function(ctx, *args), job.timeout)
            except Exception:
                # The job's own state (an outbox row) decides what happens next; a crash only costs time.
                log.exception("job failed", job=job.name, job_id=job_id)

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class ArqJobQueue(JobQueue):
    """Enqueues to arq on Redis; ``ocpi-hub worker`` processes run the jobs."""

    def __init__(self, pool: ArqRedis, *, owns_pool: bool = False) -> None:
        self.pool = pool
        self._owns_pool = owns_pool

    @classmethod
    async def connect(cls, redis_url: str) -> ArqJobQueue:
        """Connect now (arq retries a few times, then raises)."""
        return cls(await create_pool(redis_settings(redis_url)), owns_pool=True)

    @classmethod
    def lazy(cls, redis_url: str) -> ArqJobQueue:
        """Connect on first use: a web process must start, and serve, while Redis is away (DESIGN §2)."""
        return cls(ArqRedis.from_url(redis_url), owns_pool=True)

    async def enqueue(self, name: str, *args: Any, job_id: str) -> bool:
        # arq refuses an id whose job key (queued or running) or result key exists; results are not kept for our
        # jobs (arq_functions), so an id is free again as soon as its run has finished.
        return await self.pool.enqueue_job(name, *args, _job_id=job_id) is not None

    async def publish_wakeup(self) -> None:
        await self.pool.publish(WAKE_CHANNEL, b"1")

    async def listen_wakeups(self, callback: Callable[[], None], *, reconnect_after: float = 1.0) -> None:
        """Call ``callback`` for every `publish_wakeup` anywhere, until cancelled; survives Redis restarts."""
        while True:
            pubsub = self.pool.pubsub()
            try:
                await pubsub.subscribe(WAKE_CHANNEL)
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                    if message is not None:
                        callback()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a lost connection: the relays still poll, so only latency suffers
                log.warning("wake-up subscription lost; resubscribing", error=str(exc))
                await asyncio.sleep(reconnect_after)
            finally:
                close: Callable[[], Awaitable[None]] = pubsub.aclose  # untyped in redis-py
                with contextlib.suppress(Exception):
                    await close()

    async def close(self) -> None:
        if self._owns_pool:
            await self.pool.aclose()


def redis_settings(redis_url: str) -> RedisSettings:
    return RedisSettings.from_dsn(redis_url)


def arq_functions(registry: JobRegistry) -> list[Function]:
    # keep_result=0: a finished job leaves no result key, so the same job id can be enqueued again when the state in
    # the database says the work is still to do (house style §2.4: ids are refused "until the result expired").
    return [
        func(
            cast("WorkerCoroutine", job.function),
            name=job.name,
            timeout=job.timeout,
            max_tries=job.max_tries,
            keep_result=0,
        )
        for job in registry
    ]
