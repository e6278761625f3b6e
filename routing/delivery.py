"""Delivering one outbox message to its receiver: the ``routing.deliver`` job (DESIGN §6).

At-least-once and idempotent, because jobs can run twice (house style §2.4): an attempt first takes a lease on the
row in its own short transaction (only if the row is due and first in line of its unit), calls the receiver with no
transaction open (ADR 0003), then records the outcome in a new transaction, fenced by the attempt number so that an
attempt whose lease ran out cannot overwrite a newer one. A worker that dies mid-call leaves a ``delivering`` row
whose lease expires; the relay then hands it out again.

Outcomes (transport_and_format §4.1.7, status_codes §5):

* HTTP 2xx with an OCPI 1xxx envelope: delivered.
* An OCPI 2xxx/3xxx envelope with HTTP < 500, or an HTTP 4xx other than 408/425/429: failed at once. The receiver
  refused the content (or our credentials); sending it again changes nothing.
* No connection, a timeout, HTTP 5xx/408/425/429 (whatever the envelope says), an OCPI 4xxx (a hub behind it could
  not deliver) or a 2xx body that is not an OCPI envelope: transient. Retried after `DeliveryPolicy.backoff` until
  ``max_attempts`` attempts were made, then failed, and `DeliveryHooks.on_receiver_unreachable` runs (the party goes
  OFFLINE in HubClientInfo).

Nothing else retries a push: the spec has no queueing for OFFLINE parties (hub notes §3, "no queueing"), so a failed
message stays visible and re-deliverable (`routing.outbox.redeliver`) and the party can resync by GET All.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec
import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub.ocpi.envelope import OcpiStatusView
from hub.parties.models import Platform, RegistrationStatus
from hub.parties.service import PartyRegistry
from hub.platform.clock import Clock
from hub.platform.http import PartnerCallError, PartnerClient
from hub.platform.ids import new_id
from routing.outbox import (
    OutboxMessage,
    OutboxStatus,
    available_condition,
    due_condition,
    is_available,
    is_open,
)

__all__ = [
    "DELIVERER_KEY",
    "DELIVER_JOB",
    "DELIVER_TO_JOB",
    "AttemptRecord",
    "Deliverer",
    "DeliveryHooks",
    "DeliveryPolicy",
    "Outcome",
    "classify",
    "deliver",
    "deliver_job_id",
    "deliver_to",
    "deliver_to_job_id",
]

log = structlog.get_logger("routing.delivery")

#: The job's name, and the key under which the job context carries the process's `Deliverer`.
DELIVER_JOB = "routing.deliver"
DELIVERER_KEY = "routing.deliverer"


#: The job the relay enqueues: deliver what is due for one receiver, in batches (see `Deliverer.deliver_to`).
DELIVER_TO_JOB = "routing.deliver_to"


def deliver_job_id(outbox_id: int, attempts: int) -> str:
    """One job id per attempt: duplicates of the same attempt collapse in the queue, a retry gets a fresh id."""
    return f"{DELIVER_JOB}:{outbox_id}:{attempts}"


def deliver_to_job_id(platform_id: int, head_id: int, attempts: int, due_at: datetime) -> str:
    """One job id per receiver and state of its oldest due message: the same state seen twice collapses in the
    queue; once that message was sent, retried or released its state differs and so does the id."""
    return f"{DELIVER_TO_JOB}:{platform_id}:{head_id}:{attempts}:{int(due_at.timestamp() * 1_000_000)}"


class Outcome(enum.StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"  # transient failure, another attempt is scheduled
    FAILED = "failed"  # permanent, or transient with no attempts left
    SKIPPED = "skipped"  # not due, not first in line, leased by another attempt, already final, or locked right now
    LEASE_LOST = "lease_lost"  # our lease expired and another attempt took the row; that one records the outcome


def _default_backoff(attempt: int) -> float:
    # Same curve as hub.platform.jobs.compute_backoff (0.2 s, 1 s, …); composition roots pass that one.
    return min(30.0, 0.2 * 5.0 ** max(0, attempt - 1))


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    #: Attempts in total, the first included (DESIGN §6: "a few quick retries").
    max_attempts: int = 3
    #: Seconds one HTTP attempt may take.
    timeout: float = 10.0
    #: Seconds an attempt owns its row. Longer than ``timeout`` plus the two short transactions around the call, or
    #: a slow but live attempt would be repeated by another worker.
    lease: float = 40.0
    #: Seconds to wait after failed attempt n (1-based) before attempt n+1.
    backoff: Callable[[int], float] = _default_backoff
    #: Messages one ``routing.deliver_to`` run claims at once (a receiver's due messages, in line per object).
    batch_size: int = 200
    #: Calls one ``routing.deliver_to`` run has in flight to its receiver (different objects; one object's messages
    #: always go one after the other).
    concurrency: int = 8
    #: Seconds a ``routing.deliver_to`` run goes on claiming and starting calls; what is left goes to the next run.
    #: The run ends at most ``timeout`` later, so its job timeout must cover ``batch_time + timeout`` and more.
    batch_time: float = 5.0


ReceiverHook = Callable[[int], Awaitable[None]]


async def _ignore(_platform_id: int) -> None:
    return None


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One call made to a receiver, for the message log (DESIGN §5: everything that leaves is logged)."""

    at: datetime  # when the call started
    outbox_id: int
    kind: str
    object_key: str  # "{module}/…" for broadcasts, "clientinfo/…" for HubClientInfo
    attempt: int
    receiver_platform_id: int
    method: str
    url: str
    headers: Mapping[str, str]  # as stored: routing headers and X-Correlation-ID
    request_id: str
    http_status: int | None
    ocpi_status: int | None
    latency_ms: float
    size_out: int
    size_in: int
    outcome: str  # an `Outcome` value
    error: str | None


@dataclass(frozen=True, slots=True)
class DeliveryHooks:
    """What the composition root wants to hear about receivers (they are called with the receiver's platform id).

    ``on_receiver_unreachable`` runs once per message that finally failed for transient reasons,
    ``on_receiver_reachable`` after every successful delivery; both must be idempotent and cheap. They run after
    the outcome was committed; an exception is logged and does not change the outcome. ``on_attempt`` gets every
    call made to a receiver (synchronous: meant for an in-memory buffer such as the message log's).
    """

    on_receiver_unreachable: ReceiverHook = field(default=_ignore)
    on_receiver_reachable: ReceiverHook = field(default=_ignore)
    on_attempt: Callable[[AttemptRecord], None] | None = None


class _Attempt(msgspec.Struct, frozen=True):
    outbox_id: int
    number: int  # attempts after taking the lease; fences the outcome update
    kind: str
    object_key: str
    receiver_platform_id: int
    method: str
    url: str
    body: bytes | None
    headers: dict[str, str]
    token: str
    token_form: str


# Statuses that ask the client to come back later (RFC 9110 §15.5.9, RFC 8470 §5.2, RFC 6585 §4).
_RETRY_LATER = frozenset({408, 425, 429})


class _Result(msgspec.Struct, frozen=True):
    kind: str  # "delivered" | "permanent" | "transient"
    http_status: int | None = None
    error: str | None = None
    ocpi_status: int | None = None
    size_in: int = 0


class Deliverer:
    """Sends outbox messages; one per process, shared by every ``routing.deliver`` run."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        registry: PartyRegistry,
        client: PartnerClient,
        clock: Clock,
        policy: DeliveryPolicy | None = None,
        hooks: DeliveryHooks | None = None,
    ) -> None:
        self._sessions = sessions
        self._registry = registry
        self._client = client
        self._clock = clock
        self.policy = policy or DeliveryPolicy()
        self.hooks = hooks or DeliveryHooks()

    async def deliver(self, outbox_id: int) -> Outcome:
        claimed = await self._claim(outbox_id)
        if not isinstance(claimed, _Attempt):
            return claimed
        request_id = new_id()  # transport §"Unique message IDs": a new id per hop and per attempt
        bound = log.bind(outbox_id=outbox_id, attempt=claimed.number, request_id=request_id)
        started_at, started = self._clock.now(), time.perf_counter()
        result = await self._send(claimed, request_id)
        latency_ms = (time.perf_counter() - started) * 1000
        outcome = await self._record(claimed, result)
        if self.hooks.on_attempt is not None:
            self._report(self.hooks.on_attempt, claimed, result, outcome, request_id, started_at, latency_ms)
        if outcome is Outcome.DELIVERED:
            bound.debug("delivered", http_status=result.http_status)
            await self._call_hook(self.hooks.on_receiver_reachable, claimed.receiver_platform_id)
        elif outcome is Outcome.RETRY:
            bound.info("delivery failed, will retry", error=result.error, http_status=result.http_status)
        elif outcome is Outcome.FAILED:
            bound.warning("delivery failed", error=result.error, http_status=result.http_status)
            if result.kind == "transient":
                await self._call_hook(self.hooks.on_receiver_unreachable, claimed.receiver_platform_id)
        else:
            bound.warning("lease expired during the attempt; another attempt owns the message")
        return outcome

    @staticmethod
    def _report(  # noqa: PLR0917  # private: one call site, every value of one attempt
        hook: Callable[[AttemptRecord], None],
        attempt: _Attempt,
        result: _Result,
        outcome: Outcome,
        request_id: str,
        at: datetime,
        latency_ms: float,
    ) -> None:
        record = AttemptRecord(
            at=at,
            outbox_id=attempt.outbox_id,
            kind=attempt.kind,
            object_key=attempt.object_key,
            attempt=attempt.number,
            receiver_platform_id=attempt.receiver_platform_id,
            method=attempt.method,
            url=attempt.url,
            headers=attempt.headers,
            request_id=request_id,
            http_status=result.http_status,
            ocpi_status=result.ocpi_status,
            latency_ms=latency_ms,
            size_out=len(attempt.body or b""),
            size_in=result.size_in,
            outcome=outcome.value,
            error=result.error,
        )
        try:
            hook(record)
        except Exception:
            log.exception("delivery attempt hook failed", outbox_id=attempt.outbox_id)

    # ---- step 1: take the lease --------------------------------------------------------------------------------

    async def _claim(self, outbox_id: int) -> _Attempt | Outcome:
        now = self._clock.now()
        async with self._sessions() as session, session.begin():
            due = due_condition(now)
            if session.get_bind().dialect.name == "postgresql":
                # SKIP LOCKED: a duplicate run of this job, or a coalescing enqueue holding the row, makes this run
                # give up at once instead of waiting behind it; the lease then decides who sends.
                locked = await session.scalar(
                    select(OutboxMessage.id)
                    .where(OutboxMessage.id == outbox_id, due)
                    .with_for_update(skip_locked=True, of=OutboxMessage)
                )
                if locked is None:
                    return Outcome.SKIPPED
            # The conditional UPDATE is the compare-and-set on SQLite (one writer at a time) and a no-op re-check
            # under the row lock on PostgreSQL.
            row = (
                await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id == outbox_id, due)
                    .values(
                        status=OutboxStatus.DELIVERING,
                        attempts=OutboxMessage.attempts + 1,
                        locked_until=now + timedelta(seconds=self.policy.lease),
                    )
                    .returning(
                        OutboxMessage.attempts,
                        OutboxMessage.kind,
                        OutboxMessage.object_key,
                        OutboxMessage.receiver_platform_id,
                        OutboxMessage.method,
                        OutboxMessage.url,
                        OutboxMessage.body,
                        OutboxMessage.headers,
                    )
                    .execution_options(synchronize_session=False)
                )
            ).one_or_none()
            if row is None:
                return Outcome.SKIPPED
            attempts, kind, object_key, platform_id, method, url, body, headers = row
            platform = await session.get(Platform, platform_id)
            token = await self._registry.outbound_token(platform) if platform is not None else None
            if platform is None or platform.status != RegistrationStatus.REGISTERED or token is None:
                # Unregistered since the push was accepted: nobody to send to, and retrying will not change that.
                await self._finish(
                    session,
                    outbox_id,
                    attempts,
                    status=OutboxStatus.FAILED,
                    error="receiver platform is not registered",
                    http_status=None,
                    now=now,
                )
                log.warning("delivery failed", outbox_id=outbox_id, error="receiver platform is not registered")
                return Outcome.FAILED
            return _Attempt(
                outbox_id=outbox_id,
                number=attempts,
                kind=kind,
                object_key=object_key,
                receiver_platform_id=platform_id,
                method=method,
                url=url,
                body=body,
                headers=dict(headers or {}),
                # The token at send time, not at enqueue time: a credentials rotation in between is honoured.
                token=token,
                token_form=platform.token_form,
            )

    # ---- step 2: call the receiver, no transaction open ---------------------------------------------------------

    async def _send(self, attempt: _Attempt, request_id: str) -> _Result:
        try:
            response = await self._client.request(
                attempt.method,
                attempt.url,
                token=attempt.token,
                token_form=attempt.token_form,
                body=attempt.body,
                headers={**attempt.headers, "X-Request-ID": request_id},
                timeout=self.policy.timeout,
            )
        except PartnerCallError as exc:
            return _Result("transient", error=exc.message)
        return classify(response.status, response.body)

    # ---- step 3: record the outcome -----------------------------------------------------------------------------

    def _decide(self, attempt: _Attempt, result: _Result) -> tuple[OutboxStatus, Outcome]:
        if result.kind == "delivered":
            return OutboxStatus.DELIVERED, Outcome.DELIVERED
        if result.kind == "permanent" or attempt.number >= self.policy.max_attempts:
            return OutboxStatus.FAILED, Outcome.FAILED
        return OutboxStatus.PENDING, Outcome.RETRY

    async def _record(self, attempt: _Attempt, result: _Result) -> Outcome:
        now = self._clock.now()
        status, outcome = self._decide(attempt, result)
        async with self._sessions() as session, session.begin():
            owned = await self._finish(
                session,
                attempt.outbox_id,
                attempt.number,
                status=status,
                error=result.error,
                http_status=result.http_status,
                now=now,
            )
        return outcome if owned else Outcome.LEASE_LOST

    async def _finish(
        self,
        session: AsyncSession,
        outbox_id: int,
        number: int,
        *,
        status: OutboxStatus,
        error: str | None,
        http_status: int | None,
        now: datetime,
    ) -> bool:
        values: dict[str, Any] = {
            "status": status,
            "locked_until": None,
            "last_http_status": http_status,
            "last_error": error,
        }
        if status is OutboxStatus.DELIVERED:
            values["delivered_at"] = now
        elif status is OutboxStatus.PENDING:
            values["next_attempt_at"] = now + timedelta(seconds=self.policy.backoff(number))
        result: Any = await session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.id == outbox_id,
                OutboxMessage.status == OutboxStatus.DELIVERING,
                OutboxMessage.attempts == number,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)

    # ---- a receiver's due messages, in batches: the ``routing.deliver_to`` job ----------------------------------

    async def deliver_to(self, platform_id: int) -> dict[str, int]:
        """Deliver what is due for one receiver; returns how many messages ended how (`Outcome` values).

        Round after round for up to ``policy.batch_time`` seconds: lease the receiver's available messages in one
        transaction (per object only an unbroken line from its oldest open message, so order is kept), send them
        with no transaction open (one object's messages one after the other, up to ``policy.concurrency`` objects
        at once), and record every outcome in one more transaction, fenced by attempt number as in `deliver`.
        Messages leased but not sent (time is up, or an earlier one of the same object must be retried first) are
        put back as they were. Safe to run any number of times, at once too: leases decide who sends what.
        """
        counts: Counter[str] = Counter()
        stop_at = time.monotonic() + self.policy.batch_time
        while True:
            claimed = await self._claim_batch(platform_id)
            if isinstance(claimed, int):  # the receiver is gone: those messages failed
                counts[Outcome.FAILED.value] += claimed
                break
            if not claimed:
                break
            counts.update(await self._run_batch(platform_id, claimed, stop_at))
            if time.monotonic() >= stop_at:
                break
        return dict(counts)

    async def _claim_batch(self, platform_id: int) -> list[list[_Attempt]] | int:
        now = self._clock.now()
        async with self._sessions() as session, session.begin():
            rows = (
                await session.execute(
                    select(
                        OutboxMessage.id,
                        OutboxMessage.object_key,
                        OutboxMessage.status,
                        OutboxMessage.next_attempt_at,
                        OutboxMessage.locked_until,
                    )
                    .where(OutboxMessage.receiver_platform_id == platform_id, is_open(OutboxMessage.status))
                    # "id + 0": in id order, but not by walking the primary key, which PostgreSQL prefers for
                    # ORDER BY id LIMIT n and which steps over every delivered row of the outbox (all at low ids)
                    # before the open ones; this way it reads the open rows by status and sorts those.
                    .order_by(OutboxMessage.id + 0)
                    .limit(self.policy.batch_size)
                )
            ).all()
            # Oldest first, so each object's rows here are the oldest of its open ones: its line starts with the
            # first and goes on while they are available; a held or not yet due row stops it.
            lines: dict[str, list[int]] = {}
            blocked: set[str] = set()
            for outbox_id, object_key, status, due_at, locked_until in rows:
                if object_key in blocked:
                    continue
                if is_available(status, due_at, locked_until, now):
                    lines.setdefault(object_key, []).append(outbox_id)
                else:
                    blocked.add(object_key)
            if not lines:
                return []
            if session.get_bind().dialect.name == "postgresql":
                # SKIP LOCKED, as in `deliver`: what another run or a coalescing enqueue holds is not waited for;
                # a line is cut where a row was skipped. The condition is checked again on the locked rows.
                locked = set(
                    await session.scalars(
                        select(OutboxMessage.id)
                        .where(OutboxMessage.id.in_(_flat(lines.values())), available_condition(now))
                        .with_for_update(skip_locked=True, of=OutboxMessage)
                    )
                )
                lines, _ = _unbroken(lines, locked)
                if not lines:
                    return []
            # The conditional UPDATE is the compare-and-set on SQLite and a re-check under the locks on PostgreSQL.
            claimed = {
                row[0]: row
                for row in (
                    await session.execute(
                        update(OutboxMessage)
                        .where(OutboxMessage.id.in_(_flat(lines.values())), available_condition(now))
                        .values(
                            status=OutboxStatus.DELIVERING,
                            attempts=OutboxMessage.attempts + 1,
                            locked_until=now + timedelta(seconds=self.policy.lease),
                        )
                        .returning(
                            OutboxMessage.id,
                            OutboxMessage.attempts,
                            OutboxMessage.kind,
                            OutboxMessage.object_key,
                            OutboxMessage.method,
                            OutboxMessage.url,
                            OutboxMessage.body,
                            OutboxMessage.headers,
                        )
                        .execution_options(synchronize_session=False)
                    )
                ).all()
            }
            lines, stray = _unbroken(lines, set(claimed))
            if stray:  # taken behind a row someone else got first: back in line, untouched
                await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_(stray))
                    .values(status=OutboxStatus.PENDING, attempts=OutboxMessage.attempts - 1, locked_until=None)
                    .execution_options(synchronize_session=False)
                )
            if not lines:
                return []
            platform = await session.get(Platform, platform_id)
            token = await self._registry.outbound_token(platform) if platform is not None else None
            if platform is None or platform.status != RegistrationStatus.REGISTERED or token is None:
                # Unregistered since the pushes were accepted: nobody to send to, and retrying will not change that.
                failed = _flat(lines.values())
                await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_(failed))
                    .values(
                        status=OutboxStatus.FAILED,
                        locked_until=None,
                        last_http_status=None,
                        last_error="receiver platform is not registered",
                    )
                    .execution_options(synchronize_session=False)
                )
                log.warning("delivery failed", outbox_ids=failed, error="receiver platform is not registered")
                return len(failed)
            return [
                [
                    _Attempt(
                        outbox_id=outbox_id,
                        number=claimed[outbox_id][1],
                        kind=claimed[outbox_id][2],
                        object_key=claimed[outbox_id][3],
                        receiver_platform_id=platform_id,
                        method=claimed[outbox_id][4],
                        url=claimed[outbox_id][5],
                        body=claimed[outbox_id][6],
                        headers=dict(claimed[outbox_id][7] or {}),
                        token=token,
                        token_form=platform.token_form,
                    )
                    for outbox_id in line
                ]
                for line in lines.values()
            ]

    async def _run_batch(self, platform_id: int, lines: list[list[_Attempt]], stop_at: float) -> Counter[str]:
        # No call starts so late that it could still be running when the lease ends (the outcome must land inside
        # it), except the first of each of the first ``concurrency`` lines: a lease shorter than the timeout
        # still gets one attempt per message, as `deliver` makes.
        margin = min(5.0, self.policy.lease * 0.25)
        deadline = min(stop_at, time.monotonic() + self.policy.lease - self.policy.timeout - margin)
        slots = asyncio.Semaphore(self.policy.concurrency)
        sent: list[_Sent] = []
        unsent: list[_Attempt] = []

        async def run_line(index: int, line: list[_Attempt]) -> None:
            for position, attempt in enumerate(line):
                async with slots:
                    if time.monotonic() > deadline and not (position == 0 and index < self.policy.concurrency):
                        unsent.extend(line[position:])
                        return
                    one = await self._attempt(attempt)
                sent.append(one)
                if one.status is OutboxStatus.PENDING:  # to be retried: what follows it waits for it
                    unsent.extend(line[position + 1 :])
                    return

        await asyncio.gather(*(run_line(index, line) for index, line in enumerate(lines)))
        owned = await self._record_batch(sent, unsent)

        counts: Counter[str] = Counter()
        turns: list[ReceiverHook] = []  # reachable / unreachable in the order they happened, repeats collapsed
        for one in sent:
            outcome = one.outcome if one.attempt.outbox_id in owned else Outcome.LEASE_LOST
            counts[outcome.value] += 1
            if self.hooks.on_attempt is not None:
                self._report(
                    self.hooks.on_attempt, one.attempt, one.result, outcome, one.request_id, one.at, one.latency_ms
                )
            turn: ReceiverHook | None = None
            if outcome is Outcome.DELIVERED:
                turn = self.hooks.on_receiver_reachable
            elif outcome is Outcome.FAILED:
                log.warning(
                    "delivery failed",
                    outbox_id=one.attempt.outbox_id,
                    attempt=one.attempt.number,
                    error=one.result.error,
                    http_status=one.result.http_status,
                )
                if one.result.kind == "transient":
                    turn = self.hooks.on_receiver_unreachable
            elif outcome is Outcome.RETRY:
                log.info(
                    "delivery failed, will retry",
                    outbox_id=one.attempt.outbox_id,
                    attempt=one.attempt.number,
                    error=one.result.error,
                    http_status=one.result.http_status,
                )
            else:
                log.warning("lease expired during the attempt; another attempt owns the message")
            if turn is not None and (not turns or turns[-1] is not turn):
                turns.append(turn)
        if counts[Outcome.DELIVERED.value]:
            log.debug("delivered", platform_id=platform_id, messages=counts[Outcome.DELIVERED.value])
        for hook in turns:
            await self._call_hook(hook, platform_id)
        return counts

    async def _attempt(self, attempt: _Attempt) -> _Sent:
        request_id = new_id()  # a new id per hop and per attempt
        at, started = self._clock.now(), time.perf_counter()
        try:
            result = await self._send(attempt, request_id)
        except Exception as exc:  # a bug must not strand the rest of the batch; the row is retried like a timeout
            log.exception("delivery attempt crashed", outbox_id=attempt.outbox_id)
            result = _Result("transient", error=f"{exc.__class__.__name__}: {exc}")
        latency_ms = (time.perf_counter() - started) * 1000
        status, outcome = self._decide(attempt, result)
        return _Sent(attempt, result, status, outcome, request_id, at, latency_ms)

    async def _record_batch(self, sent: Sequence[_Sent], unsent: Sequence[_Attempt]) -> set[int]:
        """Record a batch's outcomes in one transaction; returns the ids whose lease was still ours."""
        now = self._clock.now()
        owned: set[int] = set()
        delivered: dict[tuple[int, int | None], list[int]] = {}
        async with self._sessions() as session, session.begin():
            for one in sent:
                attempt = one.attempt
                if one.status is OutboxStatus.DELIVERED:
                    delivered.setdefault((attempt.number, one.result.http_status), []).append(attempt.outbox_id)
                elif await self._finish(
                    session,
                    attempt.outbox_id,
                    attempt.number,
                    status=one.status,
                    error=one.result.error,
                    http_status=one.result.http_status,
                    now=now,
                ):
                    owned.add(attempt.outbox_id)
            # Delivered rows in bulk: one UPDATE per attempt number and HTTP status, nearly always one in all.
            for (number, http_status), ids in delivered.items():
                owned.update(
                    await session.scalars(
                        update(OutboxMessage)
                        .where(
                            OutboxMessage.id.in_(ids),
                            OutboxMessage.status == OutboxStatus.DELIVERING,
                            OutboxMessage.attempts == number,
                        )
                        .values(
                            status=OutboxStatus.DELIVERED,
                            locked_until=None,
                            last_http_status=http_status,
                            last_error=None,
                            delivered_at=now,
                        )
                        .returning(OutboxMessage.id)
                        .execution_options(synchronize_session=False)
                    )
                )
            # Leased but never sent: as before the lease, due at once (a new due time also tells the relay that
            # this is not the state it handed out before).
            numbers: dict[int, list[int]] = {}
            for attempt in unsent:
                numbers.setdefault(attempt.number, []).append(attempt.outbox_id)
            for number, ids in numbers.items():
                await session.execute(
                    update(OutboxMessage)
                    .where(
                        OutboxMessage.id.in_(ids),
                        OutboxMessage.status == OutboxStatus.DELIVERING,
                        OutboxMessage.attempts == number,
                    )
                    .values(status=OutboxStatus.PENDING, attempts=number - 1, locked_until=None, next_attempt_at=now)
                    .execution_options(synchronize_session=False)
                )
        return owned

    @staticmethod
    async def _call_hook(hook: ReceiverHook, platform_id: int) -> None:
        try:
            await hook(platform_id)
        except Exception:
            log.exception("delivery hook failed", platform_id=platform_id, hook=getattr(hook, "__name__", repr(hook)))


class _Sent(msgspec.Struct, frozen=True):
    attempt: _Attempt
    result: _Result
    status: OutboxStatus
    outcome: Outcome
    request_id: str
    at: datetime
    latency_ms: float


def _flat(lines: Iterable[list[int]]) -> list[int]:
    return [outbox_id for line in lines for outbox_id in line]


def _unbroken(lines: dict[str, list[int]], present: set[int]) -> tuple[dict[str, list[int]], list[int]]:
    """Cut every line at its first id not in ``present``; returns the cut lines and the present ids cut off."""
    kept: dict[str, list[int]] = {}
    stray: list[int] = []
    for object_key, line in lines.items():
        for position, outbox_id in enumerate(line):
            if outbox_id not in present:
                stray.extend(i for i in line[position + 1 :] if i in present)
                line = line[:position]  # noqa: PLW2901  # the prefix is what is kept
                break
        if line:
            kept[object_key] = line
    return kept, stray


def classify(http_status: int, body: bytes) -> _Result:
    """Map a receiver's answer to delivered / permanent / transient (see the module docstring)."""
    try:
        view = msgspec.json.decode(body, type=OcpiStatusView) if body else None
    except msgspec.DecodeError:
        view = None
    size = len(body)
    retry_later = http_status >= 500 or http_status in _RETRY_LATER
    if view is None:
        kind = "permanent" if 400 <= http_status < 500 and not retry_later else "transient"
        return _Result(kind, http_status, f"HTTP {http_status} without an OCPI envelope", size_in=size)
    code = view.status_code
    what = f"HTTP {http_status}, OCPI {code}" + (f": {view.status_message}" if view.status_message else "")
    # The HTTP status first: a 5xx means the receiver's server failed, whatever its envelope says (often a
    # framework's generic 3000), so it may well accept the same content later.
    if retry_later or code >= 4000:
        return _Result("transient", http_status, what, code, size)
    if 200 <= http_status < 300 and 1000 <= code < 2000:
        return _Result("delivered", http_status, None, code, size)
    # OCPI 2xxx/3xxx: the receiver refused the content; 1xxx with a 4xx status: it did not confirm either.
    return _Result("permanent", http_status, what, code, size)


def _deliverer(ctx: Mapping[str, Any]) -> Deliverer:
    deliverer = ctx.get(DELIVERER_KEY)
    if not isinstance(deliverer, Deliverer):
        raise RuntimeError(f"the job context has no {DELIVERER_KEY!r}: the composition root did not set it up")
    return deliverer


RELAY_WAKE_KEY = "routing.relay_wake"


def _wake_relay(ctx: Mapping[str, Any]) -> None:
    # The next message of the same (receiver, object) is due now, not at the relay's next poll: without this a
    # burst of status PATCHes to one EVSE reached each receiver one poll interval apart (make bench fan-out).
    wake = ctx.get(RELAY_WAKE_KEY)
    if wake is not None:
        wake()


async def deliver(ctx: Mapping[str, Any], outbox_id: int) -> str:
    """The ``routing.deliver`` job: one attempt at one outbox message. Safe to run any number of times."""
    outcome = await _deliverer(ctx).deliver(outbox_id)
    if outcome in (Outcome.DELIVERED, Outcome.FAILED):
        _wake_relay(ctx)
    return outcome.value


async def deliver_to(ctx: Mapping[str, Any], platform_id: int) -> dict[str, int]:
    """The ``routing.deliver_to`` job: what is due for one receiver, in batches. Safe to run any number of times."""
    counts = await _deliverer(ctx).deliver_to(platform_id)
    if counts.get(Outcome.DELIVERED.value) or counts.get(Outcome.FAILED.value) or counts.get(Outcome.RETRY.value):
        _wake_relay(ctx)  # a message left over (time was up) or one of another run may be next in line
    return counts
