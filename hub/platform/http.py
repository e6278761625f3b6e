"""The hub's outbound HTTP client: one pooled aiohttp session per process (DESIGN §11: the client sets the ceiling).

Callers get raw bytes back; decoding is theirs, and only as deep as they need.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping

import aiohttp
import msgspec

from hub.ocpi.headers import encode_token


class PartnerCallError(Exception):
    """The partner could not be called; ``timed_out`` tells a timeout from a refused or broken connection."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.timed_out = timed_out


class HttpResult(msgspec.Struct, frozen=True):
    status: int
    headers: Mapping[str, str]
    body: bytes
    request_id: str = ""  # the X-Request-ID this call carried (a new one per hop, transport §4.2.1)


class PartnerClient:
    def __init__(self, *, default_timeout: float = 10.0, max_connections: int = 200) -> None:
        self._default_timeout = default_timeout
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300)
            # auto_decompress stays on; raise_for_status off: partner error statuses are answers, not exceptions.
            self._session = aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",))
        return self._session

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        # A handful of distinct timeouts exist (forward, authorize, partner); build each once, not per request.
        cached = self._timeouts.get(seconds)
        if cached is None:
            cached = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        return cached

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

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
        out: dict[str, str] = {"X-Request-ID": str(uuid.uuid4())}
        if token is not None:
            out["Authorization"] = encode_token(token, "raw" if token_form == "raw" else "base64")
        if body is not None:
            out["Content-Type"] = "application/json"
        if headers:
            out.update(headers)
        out.setdefault("X-Correlation-ID", str(uuid.uuid4()))
        request_id = out["X-Request-ID"]
        client_timeout = self._timeout(timeout or self._default_timeout)
        try:
            async with self._client().request(
                method, url, data=body, headers=out, timeout=client_timeout, allow_redirects=True
            ) as response:
                payload = await response.read()
                return HttpResult(
                    # The case-insensitive multidict as aiohttp made it: no copy on the routing hot path.
                    status=response.status,
                    headers=response.headers,
                    body=payload,
                    request_id=request_id,
                )
        except TimeoutError as exc:
            raise PartnerCallError(f"{method} {url} timed out after {client_timeout.total} s", timed_out=True) from exc
        except (aiohttp.ClientError, OSError, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise PartnerCallError(f"{method} {url} failed: {exc.__class__.__name__}: {exc}") from exc
