"""The routing fast path: a bare ASGI app for every functional-module URL of the hub (DESIGN §5, §11).

It sits on the path of every roaming request, so it does only what routing needs: authenticate from memory, read
the body once, let the router decide, write the answer. No framework request objects, no body decoding beyond the
router's small views. Every request and its outcome goes to the message log.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from datetime import UTC, datetime
from typing import Any

import structlog

from hub.ocpi.envelope import OcpiStatus, envelope_bytes
from hub.parties.models import ConnectionStatus
from hub.platform.web import OcpiError
from routing import paths
from routing.clientinfo import ClientInfoService
from routing.forwarder import HubRoutingError, Relayed, ocpi_status_of
from routing.messagelog import MessageLog, MessageRecord
from routing.pagination import PageRequest
from routing.router import Inbound, Router
from routing.table import Caller, RoutingTable

log = structlog.get_logger("routing")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# A CDR with thousands of charging periods stays far below this; anything larger is refused before it is buffered.
MAX_BODY = 8 * 1024 * 1024
HUB_URLS = "/ocpi/2.2.1/hub/"
CLIENTINFO_URL = "/ocpi/2.2.1/hubclientinfo"
ROUTED_PREFIXES = ("/ocpi/2.2.1/sender/", "/ocpi/2.2.1/receiver/", HUB_URLS)
CLIENTINFO_LIMIT = 1000


class BodyTooLargeError(Exception):
    pass


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > MAX_BODY:
                raise BodyTooLargeError
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks) if len(chunks) != 1 else chunks[0]


def _has_body(scope: Scope, headers: dict[str, str]) -> bool:
    # RFC 9112 §6.3: an HTTP/1.x request with neither Content-Length nor Transfer-Encoding has no body. Asking the
    # server for one anyway is a round trip into its I/O thread on every GET (granian; the routing profile).
    if scope.get("http_version", "1.1") not in ("1.0", "1.1"):
        return True
    return "content-length" in headers or "transfer-encoding" in headers


async def _send(send: Send, status: int, headers: dict[str, str], body: bytes) -> None:
    raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    if "content-type" not in headers:
        raw.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _error(status_code: int, message: str, http_status: int) -> Relayed:
    body = envelope_bytes(status_code, message=message, timestamp=datetime.now(UTC))
    return Relayed(http_status, {"content-type": "application/json"}, body)


class RequestStats:
    """Per-process request counters for /metrics: a dict increment per request, nothing more on the hot path."""

    def __init__(self) -> None:
        self.count: Counter[tuple[str, int, int | None]] = Counter()
        self.seconds: dict[str, float] = {}

    def observe(self, module: str, http_status: int, ocpi_status: int | None, seconds: float) -> None:
        self.count[(module, http_status, ocpi_status)] += 1
        self.seconds[module] = self.seconds.get(module, 0.0) + seconds


class RoutingApp:
    def __init__(
        self, *, table: RoutingTable, router: Router, message_log: MessageLog, clientinfo: ClientInfoService
    ) -> None:
        self._table = table
        self._router = router
        self._log = message_log
        self._clientinfo = clientinfo
        self._background: set[asyncio.Task[object]] = set()
        self.stats = RequestStats()

    @property
    def router(self) -> Router:
        return self._router

    @staticmethod
    def handles(path: str) -> bool:
        # A prefix test only: the full parse happens once, in __call__ (it answers 404 for an unknown module).
        return path.startswith(ROUTED_PREFIXES) or path == CLIENTINFO_URL

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        arrived = datetime.now(UTC)
        method: str = scope["method"]
        path: str = scope["path"]
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        correlation_id = headers.get("x-correlation-id", "")
        request_id = headers.get("x-request-id", "")
        inbound: Inbound | None = None
        caller: Caller | None = None
        size_in = 0
        relayed = False  # True: the reply is an answer that came back (from a receiver or the hub's store)
        try:
            module_path: paths.ModulePath | None = None
            if path != CLIENTINFO_URL and not path.startswith(HUB_URLS):
                raw_path = scope.get("raw_path")
                module_path = paths.parse(raw_path.decode("latin-1"), encoded=True) if raw_path else paths.parse(path)
                if module_path is None:
                    # An unknown URL is 404 whoever asks (transport §HTTP status), before any token is looked at.
                    raise OcpiError(OcpiStatus.CLIENT_ERROR, f"no such endpoint: {path}", http_status=404)
            caller = await self._table.authenticate(headers.get("authorization"))
            if caller is None:
                # transport §authorization: unknown token → 401. A token A opens only versions and credentials.
                raise OcpiError(OcpiStatus.CLIENT_ERROR, "unknown or unregistered credentials token", http_status=401)
            self._traffic_from(caller)
            body = await _read_body(receive) if _has_body(scope, headers) else b""
            size_in = len(body)
            query = scope.get("query_string", b"").decode("latin-1")
            if path == CLIENTINFO_URL:
                reply = await self._hubclientinfo(method, query, caller)
            elif path.startswith(HUB_URLS):
                reply = await self._hub_url(method, path, body, caller, correlation_id)
            else:
                if module_path is None:  # parsed above; keeps `reply` bound on every path
                    raise OcpiError(OcpiStatus.CLIENT_ERROR, f"no such endpoint: {path}", http_status=404)
                inbound = Inbound(method, module_path, query, headers, body, caller, correlation_id)
                reply = await self._router.handle(inbound)
            relayed = True
        except HubRoutingError as exc:
            reply = _error(exc.status_code, exc.message, exc.http_status)
        except OcpiError as exc:
            reply = _error(exc.status_code, exc.message, exc.http_status)
        except BodyTooLargeError:
            reply = _error(OcpiStatus.CLIENT_ERROR, f"request body larger than {MAX_BODY} bytes", 413)
        except Exception:
            log.exception("unhandled routing error", path=path, method=method, request_id=request_id)
            reply = _error(OcpiStatus.SERVER_ERROR, "internal error; see the hub's log", 500)
        if inbound is not None and inbound.sender is not None and "ocpi-from-country-code" not in reply.headers:
            # transport §routing headers: every response of a functional module names its parties. The hub's own
            # answers (its errors) come from the hub; a receiver's answer that lacked them, from that receiver.
            frm = inbound.receiver if relayed and inbound.receiver is not None else self._router.hub_party
            reply = _with_routing(reply, frm, inbound.sender)
        await _send(send, reply.status, reply.headers, reply.body)
        module = inbound.path.module if inbound else path.removeprefix("/ocpi/2.2.1/").split("/")[0]
        ocpi_status = ocpi_status_of(reply.body)
        latency = time.perf_counter() - started
        self.stats.observe(module, reply.status, ocpi_status, latency)
        self._log.record(
            MessageRecord(
                at=arrived,
                direction="in",
                correlation_id=correlation_id,
                request_id=request_id,
                platform_id=caller.platform.platform_id if caller else None,
                from_party=_key(inbound.sender) if inbound else None,
                to_party=_key(inbound.receiver) if inbound else None,
                target_platform_id=inbound.target_platform_id if inbound else None,
                module=module,
                method=method,
                path=path,
                http_status=reply.status,
                ocpi_status=ocpi_status,
                latency_ms=latency * 1000,
                size_in=size_in,
                size_out=len(reply.body),
            )
        )

    def _traffic_from(self, caller: Caller) -> None:
        """A platform that calls us is alive (mod_hub_client_info §still alive check): note it, and end OFFLINE."""
        platform = caller.platform
        self._clientinfo.seen(platform.platform_id)
        if platform.connection_status == ConnectionStatus.OFFLINE:
            self.spawn(self._clientinfo.set_status(platform.platform_id, ConnectionStatus.CONNECTED, reason="traffic"))

    def spawn(self, work: Coroutine[Any, Any, object]) -> None:
        """Run status bookkeeping beside the request, never in its way (the task is kept until it ends)."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _hubclientinfo(self, method: str, query: str, caller: Caller) -> Relayed:
        # mod_hub_client_info §Sender interface: GET only, paginated; the hub is the Sender, nobody pushes to it.
        if method != "GET":
            raise OcpiError(OcpiStatus.CLIENT_ERROR, f"method {method} not allowed on hubclientinfo", http_status=405)
        page = PageRequest.parse(query, cap=CLIENTINFO_LIMIT)
        items, total = await self._clientinfo.page(
            caller.platform.platform_id,
            offset=page.offset,
            limit=page.limit,
            date_from=page.date_from,
            date_to=page.date_to,
        )
        return page.answer(items, total, url=f"{self._router.public_url}{CLIENTINFO_URL}/")

    async def _hub_url(self, method: str, path: str, body: bytes, caller: Caller, correlation_id: str) -> Relayed:
        rest = path[len(HUB_URLS) :].split("/")
        if len(rest) == 2 and rest[0] == "results" and method == "POST":
            return await self._router.relay_result(caller, rest[1], body, correlation_id)
        if len(rest) == 2 and rest[0] == "proxy" and method == "GET":
            return await self._router.proxy_get(caller, rest[1], correlation_id)
        raise OcpiError(OcpiStatus.CLIENT_ERROR, f"no such endpoint: {method} {path}", http_status=404)


def _with_routing(reply: Relayed, frm: tuple[str, str], to: tuple[str, str]) -> Relayed:
    headers = {
        **reply.headers,
        "ocpi-from-country-code": frm[0],
        "ocpi-from-party-id": frm[1],
        "ocpi-to-country-code": to[0],
        "ocpi-to-party-id": to[1],
    }
    return Relayed(reply.status, headers, reply.body)


def _key(party: tuple[str, str] | None) -> str | None:
    return None if party is None else f"{party[0]}/{party[1]}"
