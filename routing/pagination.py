"""Pages the hub serves itself (GET All, HubClientInfo): the query it reads and the headers it answers with.

transport_and_format §pagination: ``offset``/``limit``/``date_from``/``date_to`` in; ``X-Total-Count``, ``X-Limit``
(the server's cap) and a ``Link rel="next"`` carrying every filter of the original request out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode

from hub.ocpi.envelope import OcpiStatus, envelope_bytes
from hub.ocpi.types import parse_datetime
from hub.platform.web import OcpiError
from routing.forwarder import Relayed

CURSOR = "after"
# The crawl's total, counted on its first page and carried in the hub's next links with the cursor: counting every
# matching object again on each page cost more than reading the page (make bench GET All, docs/performance.md).
TOTAL = "total"


@dataclass(frozen=True, slots=True)
class PageRequest:
    params: dict[str, str]
    offset: int
    limit: int
    cap: int
    date_from: datetime | None
    date_to: datetime | None
    # Not an OCPI parameter: the hub's own next links carry the last id served, so the next page seeks instead of
    # skipping `offset` rows. Requests without it (a client computing its own offsets) page by offset as usual.
    after_id: int | None
    # With the cursor only: the X-Total-Count of the crawl's first page. A crawl answers the count it started with;
    # objects that arrive meanwhile come with the next incremental sync (date_from), as with any snapshot.
    known_total: int | None

    @classmethod
    def parse(cls, query: str, *, cap: int) -> PageRequest:
        params = dict(parse_qsl(query))
        return cls(
            params=params,
            offset=_int(params, "offset", 0),
            limit=min(_int(params, "limit", cap), cap),
            cap=cap,
            date_from=_date(params, "date_from"),
            date_to=_date(params, "date_to"),
            after_id=_int(params, CURSOR, 0) if CURSOR in params else None,
            known_total=_int(params, TOTAL, 0) if CURSOR in params and TOTAL in params else None,
        )

    def answer(
        self,
        items: list[bytes],
        total: int,
        *,
        url: str,
        headers: dict[str, str] | None = None,
        last_id: int | None = None,
    ) -> Relayed:
        """The page as an envelope around the stored bytes (never re-encoded), with the pagination headers."""
        out = {"content-type": "application/json", "x-total-count": str(total), "x-limit": str(self.cap)}
        next_offset = self.offset + len(items)
        if items and next_offset < total:
            following = {**self.params, "offset": str(next_offset), "limit": str(self.limit)}
            if last_id is not None:
                following[CURSOR] = str(last_id)
                following[TOTAL] = str(total)
            query = urlencode(following)
            out["link"] = f'<{url}?{query}>; rel="next"'
        data = b"[" + b",".join(items) + b"]"
        body = envelope_bytes(OcpiStatus.SUCCESS, data_json=data, timestamp=datetime.now(UTC))
        return Relayed(200, {**out, **(headers or {})}, body)


def _int(params: dict[str, str], name: str, default: int) -> int:
    value = params.get(name)
    if value is None:
        return default
    if not value.isdigit():
        raise OcpiError(
            OcpiStatus.INVALID_OR_MISSING_PARAMETERS, f"{name} must be a non-negative integer, got {value!r}"
        )
    return int(value)


def _date(params: dict[str, str], name: str) -> datetime | None:
    value = params.get(name)
    if value is None:
        return None
    try:
        return parse_datetime(value)
    except ValueError as exc:
        raise OcpiError(OcpiStatus.INVALID_OR_MISSING_PARAMETERS, f"{name}: {exc}") from exc
