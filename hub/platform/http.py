"""The hub's outbound HTTP client: one connection pool per process (DESIGN §11: the client sets the ceiling).

Callers get raw bytes back; decoding is theirs, and only as deep as they need. The transport is
:mod:`hub.platform.http1`, a lean HTTP/1.1 client, because this call sits on the path of every routed request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import msgspec

from hub.ocpi.headers import encode_token
from hub.platform.http1 import BrokenResponse, Http1Client
from hub.platform.ids import new_id


class PartnerCallError(Exception):
    """The partner could not be called; ``timed_out`` tells a timeout from a refused or broken connection."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.timed_out = timed_out


class HttpResult(msgspec.Struct, frozen=True):
    status: int
    headers: Mapping[str, str]  # names in lower case
    body: bytes
    request_id: str = ""  # the X-Request-ID this call carried (a new one per hop, transport §4.2.1)


class PartnerClient:
    def __init__(self, *, default_timeout: float = 10.0, max_connections: int = 200) -> None:
        self._default_timeout = default_timeout
        self._client = Http1Client(max_connections=max_connections)

    async def close(self) -> None:
        await self._client.close()

    async def request(
        self,
        method: str,
        url: str,
        *,
        token: str | None = None,
        token_form: str = "base64",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> HttpResult:
        out: dict[str, str] = {"X-Request-ID": new_id()}
        if token is not None:
            out["Authorization"] = encode_token(token, "raw" if token_form == "raw" else "base64")
        if body is not None:
            out["Content-Type"] = "application/json"
        if headers:
            out.update(headers)
        if "X-Correlation-ID" not in out:
            out["X-Correlation-ID"] = new_id()
        request_id = out["X-Request-ID"]
        seconds = timeout or self._default_timeout
        try:
            response = await self._client.request(method, url, headers=out, body=body, timeout=seconds)
        except TimeoutError as exc:
            raise PartnerCallError(f"{method} {url} timed out after {seconds} s", timed_out=True) from exc
        except (OSError, BrokenResponse, ValueError) as exc:
            raise PartnerCallError(f"{method} {url} failed: {exc.__class__.__name__}: {exc}") from exc
        except asyncio.CancelledError:
            raise
        return HttpResult(status=response.status, headers=response.headers, body=response.body, request_id=request_id)
