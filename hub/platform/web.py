"""The OCPI envelope on every answer (transport_and_format §4.1.7), exception mapping and the outer ASGI wrapper.

The wrapper runs before Litestar routes a request, so it can accept sloppy partner URLs (doubled or trailing slashes,
DESIGN §5) and guarantee the id headers on every OCPI response, errors included: X-Request-ID echoed (a new one made
when the caller sent none) and X-Correlation-ID kept (transport_and_format §4.2.1, §4.2.2).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, MethodNotAllowedException, NotFoundException
from sqlalchemy.exc import DataError

from hub.ocpi.envelope import OcpiStatus, envelope_bytes
from hub.platform.ids import new_id

log = structlog.get_logger("hub.web")

JSON = "application/json"
_SLASHES = re.compile(r"//+")


class OcpiError(Exception):
    """An error answered with the OCPI envelope: an OCPI status code and the HTTP status the spec prescribes."""

    def __init__(self, status_code: int, message: str, *, http_status: int = 200) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.http_status = http_status


def ocpi_response(
    status_code: int = OcpiStatus.SUCCESS,
    *,
    data_json: bytes | None = None,
    message: str | None = None,
    http_status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response[bytes]:
    body = envelope_bytes(status_code, data_json=data_json, message=message, timestamp=datetime.now(UTC))
    return Response(content=body, status_code=http_status, media_type=JSON, headers=headers)


def handle_ocpi_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    if not isinstance(exc, OcpiError):
        return handle_unexpected(request, exc)
    return ocpi_response(exc.status_code, message=exc.message, http_status=exc.http_status)


def _plain_error(status: int, detail: str, headers: dict[str, str] | None = None) -> Response[bytes]:
    # Outside /ocpi (admin API, health) errors are plain JSON, not the OCPI envelope.
    body = msgspec.json.encode({"status_code": status, "detail": detail})
    return Response(content=body, status_code=status, media_type=JSON, headers=headers)


def handle_http_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    if not isinstance(exc, HTTPException):
        return handle_unexpected(request, exc)
    if not request.url.path.startswith("/ocpi"):
        return _plain_error(exc.status_code, exc.detail, exc.headers)
    if isinstance(exc, NotFoundException):
        message = f"no such endpoint: {request.url.path}"
    elif isinstance(exc, MethodNotAllowedException):
        message = f"method {request.method} not allowed on {request.url.path}"
    else:
        message = exc.detail
    status = OcpiStatus.CLIENT_ERROR if exc.status_code < 500 else OcpiStatus.SERVER_ERROR
    return ocpi_response(status, message=message, http_status=exc.status_code, headers=exc.headers)


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    # The stack trace goes to the log only; the partner gets the generic server error (status_codes §3000).
    log.exception(
        "unhandled error", path=request.url.path, method=request.method, request_id=request.headers.get("x-request-id")
    )
    if not request.url.path.startswith("/ocpi"):
        return _plain_error(500, "internal error; see the hub's log")
    return ocpi_response(OcpiStatus.SERVER_ERROR, message="internal error; see the hub's log", http_status=500)


def handle_data_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """The database refused a value the request carried (SQLSTATE class 22: a U+0000 in text, a number out of its
    column's range): the input was bad, so a 400 (OCPI 2001) that says so, not a 500. Logged as a warning with
    the driver's words in case the value was the hub's own."""
    if not isinstance(exc, DataError):
        return handle_unexpected(request, exc)
    reason = str(exc.orig).splitlines()[0] if exc.orig is not None else "invalid value"
    log.warning("database refused a value", path=request.url.path, method=request.method, reason=reason)
    detail = "a value in the request is not valid for the database (a U+0000 character, or a number out of range)"
    if not request.url.path.startswith("/ocpi"):
        return _plain_error(400, detail)
    return ocpi_response(OcpiStatus.INVALID_OR_MISSING_PARAMETERS, message=detail, http_status=400)


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    OcpiError: handle_ocpi_error,
    HTTPException: handle_http_exception,
    DataError: handle_data_error,
    Exception: handle_unexpected,
}


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]


def _normalise(path: str) -> str:
    path = _SLASHES.sub("/", path)
    return path.rstrip("/") if len(path) > 1 else path


class OcpiAsgiWrapper:
    """Normalises paths and adds the request/correlation id headers before and after Litestar."""

    def __init__(self, app: ASGIApp, *, fast_path: tuple[Callable[[str], bool], ASGIApp] | None = None) -> None:
        self.app = app
        # The routing fast path serves the functional modules without the framework (DESIGN §11).
        self._fast_match: Callable[[str], bool] | None = fast_path[0] if fast_path else None
        self._fast_app: ASGIApp | None = fast_path[1] if fast_path else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if "//" in path or (len(path) > 1 and path.endswith("/")):
            path = _normalise(path)
            scope["path"] = path
            raw = scope.get("raw_path")
            # raw_path keeps the percent-encoding (an id may contain an encoded "/"); normalise it the same way.
            scope["raw_path"] = _normalise(raw.decode("latin-1")).encode("latin-1") if raw else path.encode()
        if not path.startswith("/ocpi"):
            await self.app(scope, receive, send)
            return
        request_id = correlation_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value
            elif name == b"x-correlation-id":
                correlation_id = value
        if request_id is None or correlation_id is None:
            # Be liberal (DESIGN §5): make the missing ids so the logs and later hops can still correlate.
            headers = list(scope["headers"])
            if request_id is None:
                request_id = new_id().encode()
                headers.append((b"x-request-id", request_id))
            if correlation_id is None:
                correlation_id = new_id().encode()
                headers.append((b"x-correlation-id", correlation_id))
            scope["headers"] = headers
        extra = [(b"x-request-id", request_id), (b"x-correlation-id", correlation_id)]

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        if self._fast_match is not None and self._fast_app is not None and self._fast_match(path):
            await self._fast_app(scope, receive, send_with_ids)
        else:
            await self.app(scope, receive, send_with_ids)
