"""Getting a request to the receiving platform and its answer back, bytes untouched (DESIGN §5, hub notes §1.9).

A hub failure never looks like a receiver's answer: 4002 when the receiver did not answer in time, 4003 when it
cannot be reached, 4000 otherwise, e.g. an answer that is not valid HTTP (status_codes §4xxx). Whatever the receiver
answered passes through unchanged, except error bodies that are not OCPI envelopes, which are wrapped so the
requester always gets an envelope.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from hub.ocpi.envelope import OcpiStatus, envelope_bytes
from hub.platform.http import HttpResult, PartnerCallError, PartnerClient
from hub.platform.http1 import BrokenResponse, ConnectFailed
from routing.messagelog import MessageLog, MessageRecord
from routing.table import PlatformRoute

# Headers of the receiver's answer that mean something to the requester; the rest (server, date, connection…)
# belongs to that hop. X-Request-ID is answered with the requester's own id by the web wrapper.
RELAYED_HEADERS = (
    "content-type",
    "link",
    "x-total-count",
    "x-limit",
    "location",
    "ocpi-from-country-code",
    "ocpi-from-party-id",
    "ocpi-to-country-code",
    "ocpi-to-party-id",
)


class HubRoutingError(Exception):
    """The hub could not deliver: an OCPI 4xxx status (or 2001 for an undeliverable request) and a message."""

    def __init__(self, status_code: int, message: str, *, http_status: int = 200) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.http_status = http_status


@dataclass(frozen=True, slots=True)
class Relayed:
    status: int
    headers: dict[str, str]
    body: bytes


def ocpi_status_of(body: bytes) -> int | None:
    """The envelope's status_code, found without parsing the body (only for logs and error mapping).

    The envelope is small and its status_code a top-level key; the payload can be megabytes. A byte search for the
    last ``"status_code"`` finds it in microseconds; a nested key of that name would only mislabel a log line.
    """
    at = body.rfind(b'"status_code"')
    if at < 0:
        return None
    colon = body.find(b":", at + 13)
    if colon < 0:
        return None
    digits = body[colon + 1 : colon + 16].lstrip(b" \t\r\n")
    end = 0
    while end < len(digits) and 48 <= digits[end] <= 57:
        end += 1
    return int(digits[:end]) if end else None


def _looks_like_envelope(result: HttpResult) -> bool:
    stripped = result.body.lstrip()
    return stripped[:1] == b"{" and ocpi_status_of(result.body) is not None


def _wrap_plain_error(result: HttpResult) -> Relayed:
    # Be liberal (DESIGN §5): a receiver answering a bare 404/422/403/500 page still gets the requester an envelope.
    if result.status == 404:
        status = OcpiStatus.CLIENT_ERROR
    elif result.status in (400, 422):
        status = OcpiStatus.INVALID_OR_MISSING_PARAMETERS
    elif result.status in (401, 403):
        status = OcpiStatus.CONNECTION_PROBLEM  # the receiver refuses the hub's own credentials
    elif result.status >= 500:
        status = OcpiStatus.SERVER_ERROR
    else:
        status = OcpiStatus.CLIENT_ERROR
    snippet = result.body[:200].decode("utf-8", "replace").strip()
    message = f"receiver answered HTTP {result.status} without an OCPI envelope" + (f": {snippet}" if snippet else "")
    http_status = result.status if result.status == 404 else (200 if result.status < 500 else result.status)
    body = envelope_bytes(status, message=message, timestamp=datetime.now(UTC))
    return Relayed(http_status, {"content-type": "application/json"}, body)


class Forwarder:
    def __init__(self, client: PartnerClient, message_log: MessageLog | None = None) -> None:
        self._client = client
        self._log = message_log

    async def forward(
        self,
        target: PlatformRoute,
        method: str,
        url: str,
        *,
        body: bytes | None,
        headers: dict[str, str],
        timeout: float,
        module: str,
    ) -> Relayed:
        started = time.perf_counter()
        called = datetime.now(UTC)
        result: HttpResult | None = None
        error: str | None = None
        try:
            if target.token is None:
                raise HubRoutingError(
                    OcpiStatus.CONNECTION_PROBLEM, f"receiver platform {target.name!r} is not connected"
                )
            try:
                result = await self._client.request(
                    method,
                    url,
                    token=target.token,
                    token_form=target.token_form,
                    body=body,
                    headers=headers,
                    timeout=timeout,
                )
            except PartnerCallError as exc:
                error = exc.message
                raise _call_failure(exc, timeout) from exc
        finally:
            if self._log is not None:
                self._log.record(
                    MessageRecord(
                        at=called,
                        direction="out",
                        correlation_id=headers.get("X-Correlation-ID", ""),
                        request_id=result.request_id if result is not None else "",
                        platform_id=target.platform_id,
                        from_party=_party(headers, "from"),
                        to_party=_party(headers, "to"),
                        target_platform_id=target.platform_id,
                        module=module,
                        method=method,
                        path=url,
                        http_status=result.status if result is not None else None,
                        ocpi_status=ocpi_status_of(result.body) if result is not None else None,
                        latency_ms=(time.perf_counter() - started) * 1000,
                        size_in=len(result.body) if result is not None else 0,
                        size_out=len(body or b""),
                        error=error,
                    )
                )
        if result.status >= 400 and not _looks_like_envelope(result):
            return _wrap_plain_error(result)
        # result.headers is case-insensitive: pick the few that mean something to the requester.
        relayed = {name: value for name in RELAYED_HEADERS if (value := result.headers.get(name)) is not None}
        return Relayed(result.status, relayed, result.body)


def _call_failure(exc: PartnerCallError, timeout: float) -> HubRoutingError:
    """The hub error for a call that produced no usable answer (status_codes §4xxx).

    4002 when the receiver did not answer in time; 4003 ("receiving party is not connected") only when no connection
    could be made or it was dropped before an answer; 4000 when the receiver did answer but not in HTTP (a truncated
    body, a broken status line): it is connected, so announcing it OFFLINE would be wrong. The partner's URL stays
    in the hub's log, out of the requester's answer.
    """
    if exc.timed_out:
        return HubRoutingError(OcpiStatus.TIMEOUT_ON_FORWARDED_REQUEST, f"receiver did not answer within {timeout:g} s")
    cause = exc.__cause__
    if isinstance(cause, OSError):
        return HubRoutingError(OcpiStatus.CONNECTION_PROBLEM, f"receiver unreachable: {_reason(cause)}")
    return HubRoutingError(OcpiStatus.HUB_ERROR, f"receiver answered with a broken HTTP response: {_reason(cause)}")


def _reason(cause: BaseException | None) -> str:
    if isinstance(cause, ConnectFailed):
        return f"cannot connect ({cause.strerror or cause.__class__.__name__})"
    if isinstance(cause, BrokenResponse | OSError):
        return f"{cause.__class__.__name__}: {cause}"
    return cause.__class__.__name__ if cause is not None else "unknown error"


def _party(headers: dict[str, str], side: str) -> str | None:
    cc, pid = headers.get(f"OCPI-{side}-country-code"), headers.get(f"OCPI-{side}-party-id")
    return f"{cc.upper()}/{pid.upper()}" if cc and pid else None
