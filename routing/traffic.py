"""Traffic summaries of the message log for operators: requests into the hub per minute and module, and how many of
them failed (the dashboard's overview).

Only inbound rows count: a routed request is one row in and one row per call the hub made for it, so counting both
would double the traffic. The minutes are grouped in the database (one row per minute and module comes back, not one
per request), with the dialect's own truncation: ``date_trunc`` on PostgreSQL, ``strftime`` on SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from routing.messagelog import MessageLogRow

__all__ = ["MinuteTraffic", "TrafficSummary", "is_error", "traffic_per_minute"]


@dataclass(frozen=True, slots=True)
class MinuteTraffic:
    minute: datetime  # the start of the minute, UTC
    module: str
    requests: int
    errors: int


@dataclass(frozen=True, slots=True)
class TrafficSummary:
    since: datetime  # the first minute of the window
    minutes: int
    rows: list[MinuteTraffic]

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.rows)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.rows)

    @property
    def error_rate(self) -> float | None:
        """Failed share of the window's requests; None when there were none (no rate, rather than 0 %)."""
        return self.errors / self.requests if self.requests else None

    def modules(self) -> list[str]:
        """Modules by traffic, busiest first (ties by name), so a chart's legend and layers keep a stable order."""
        totals: dict[str, int] = {}
        for row in self.rows:
            totals[row.module] = totals.get(row.module, 0) + row.requests
        return sorted(totals, key=lambda m: (-totals[m], m))


def is_error() -> Any:
    """An answer that failed: no HTTP answer at all, HTTP 4xx/5xx, or an OCPI status of 2000 and up (client errors,
    server errors and the hub's 4xxx)."""
    return or_(
        MessageLogRow.http_status.is_(None),
        MessageLogRow.http_status >= 400,
        MessageLogRow.ocpi_status >= 2000,
    )


def _minute(value: Any) -> datetime:
    if isinstance(value, str):  # SQLite's strftime
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"unexpected minute value {value!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def traffic_per_minute(session: AsyncSession, *, now: datetime, minutes: int = 30) -> TrafficSummary:
    """Inbound requests and failed answers per minute and module over the last ``minutes`` minutes (the current,
    unfinished minute included)."""
    minutes = max(1, minutes)
    current = now.astimezone(UTC).replace(second=0, microsecond=0)
    since = current - timedelta(minutes=minutes - 1)
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        bucket: Any = func.date_trunc("minute", MessageLogRow.at)
    else:
        bucket = func.strftime("%Y-%m-%d %H:%M:00", MessageLogRow.at)
    query = (
        select(
            bucket.label("minute"),
            MessageLogRow.module,
            func.count().label("requests"),
            func.sum(case((is_error(), 1), else_=0)).label("errors"),
        )
        .where(MessageLogRow.direction == "in", MessageLogRow.at >= since)
        .group_by(bucket, MessageLogRow.module)
        .order_by(bucket, MessageLogRow.module)
    )
    rows = [
        MinuteTraffic(minute=_minute(minute), module=module, requests=int(requests), errors=int(errors or 0))
        for minute, module, requests, errors in (await session.execute(query)).tuples()
    ]
    return TrafficSummary(since=since, minutes=minutes, rows=[r for r in rows if r.minute <= current])
