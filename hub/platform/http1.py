"""A lean HTTP/1.1 client on asyncio protocols: the hub's outbound hop (DESIGN §11: the client sets the ceiling).

Every routed request costs one outbound call, so that call must cost little. aiohttp's client spent about 200 µs of
CPU per call here, four times what a request on a kept-alive connection needs (docs/performance.md). This module does
only what the hub asks of an outbound call: keep-alive pools per origin, TLS, a total timeout, Content-Length and
chunked bodies, gzip/deflate answers, redirects, and errors that tell "could not connect" from "answered badly".
No cookies, no proxies, no HTTP/2.

Errors: :class:`ConnectFailed` and :class:`Disconnected` (both ``OSError``: the partner is unreachable or dropped the
connection before answering), :class:`BrokenResponse` (it answered, but not in HTTP), ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Final, cast
from urllib.parse import urljoin, urlsplit

MAX_HEAD: Final = 64 * 1024
MAX_BODY: Final = 64 * 1024 * 1024
MAX_REDIRECTS: Final = 10
#: An idle connection older than this is closed rather than reused: servers drop idle keep-alives after 5 to 75 s, and
#: a request written into a connection the server is closing is lost.
KEEPALIVE: Final = 15.0
#: Methods that may be sent again when a reused connection turns out to be closed before any answer byte arrived.
RETRYABLE: Final = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})


class ConnectFailed(OSError):  # noqa: N818 - reads as what happened, like ConnectionRefusedError
    """No connection could be made (refused, unknown host, TLS handshake failed)."""


class Disconnected(ConnectionError):  # noqa: N818
    """The connection closed before any byte of the answer arrived."""


class BrokenResponse(Exception):  # noqa: N818
    """The partner answered, but not in valid HTTP/1.x (or it broke off in the middle of its answer)."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    #: Header names in lower case; a repeated header's values joined with ", " (RFC 9110 §5.3).
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _TRAILERS, _EOF, _IDLE = range(7)


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection and the parser of the answer to the request in flight on it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Response] | None = None
        self._state = _IDLE
        self._head_only = False
        self._received = False
        self._status = 0
        self._headers: dict[str, str] = {}
        self._keep_alive = False
        self._remaining = 0
        self._parts: list[bytes] = []
        self._size = 0

    # ---- asyncio.Protocol ------------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it: no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            # Bytes nobody asked for: the connection is out of step and cannot be reused.
            self.close()
            return
        self._received = True
        self._buffer += data
        try:
            self._parse()
        except BrokenResponse as exc:
            self._fail(exc)
            self.close()

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost finishes an answer that runs until EOF

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._state == _EOF:
            self._finish(bytes(self._buffer), keep_alive=False)
        elif not self._received:
            self._fail(Disconnected("the partner closed the connection before answering"))
        else:
            self._fail(BrokenResponse("the partner closed the connection in the middle of its answer"))

    # ---- requests --------------------------------------------------------------------------------------------------

    def send(self, request: bytes, *, head_only: bool) -> asyncio.Future[Response]:
        assert self.transport is not None  # noqa: S101 - set by connection_made before the pool hands it out
        self._waiter = asyncio.get_running_loop().create_future()
        self._state = _HEAD
        self._head_only = head_only
        self._received = False
        self._parts = []
        self._size = 0
        self.transport.write(request)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self._state = _IDLE

    def _finish(self, body: bytes, *, keep_alive: bool) -> None:
        # Left-over bytes after a complete answer mean the connection is out of step: do not reuse it.
        reusable = keep_alive and not self._buffer
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(Response(self._status, self._headers, body, reusable))
        self._state = _IDLE

    # ---- parsing (RFC 9112) ----------------------------------------------------------------------------------------

    def _grow(self, size: int) -> None:
        self._size += size
        if self._size > MAX_BODY:
            raise BrokenResponse(f"answer larger than {MAX_BODY} bytes")

    def _parse(self) -> None:  # one small state machine reads best in one place
        buffer = self._buffer
        while True:
            state = self._state
            if state == _HEAD:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEAD:
                        raise BrokenResponse("response head too large")
                    return
                head = bytes(buffer[:end])
                del buffer[: end + 4]
                self._read_head(head)
            elif state == _LENGTH:
                if len(buffer) < self._remaining:
                    return
                body = bytes(buffer[: self._remaining])
                del buffer[: self._remaining]
                self._finish(body, keep_alive=self._keep_alive)
                return
            elif state == _CHUNK_SIZE:
                eol = buffer.find(b"\r\n")
                if eol < 0:
                    if len(buffer) > 1024:
                        raise BrokenResponse("chunk size line too long")
                    return
                try:
                    size = int(bytes(buffer[:eol]).split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise BrokenResponse("invalid chunk size") from None
                del buffer[: eol + 2]
                if size < 0:
                    raise BrokenResponse("invalid chunk size")
                self._grow(size)
                self._remaining = size
                self._state = _TRAILERS if size == 0 else _CHUNK_DATA
            elif state == _CHUNK_DATA:
                if len(buffer) < self._remaining + 2:
                    return
                if buffer[self._remaining : self._remaining + 2] != b"\r\n":
                    raise BrokenResponse("chunk not terminated by CRLF")
                self._parts.append(bytes(buffer[: self._remaining]))
                del buffer[: self._remaining + 2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                eol = buffer.find(b"\r\n")
                if eol < 0:
                    return
                del buffer[: eol + 2]
                if eol == 0:  # the empty line after the (ignored) trailer fields
                    self._finish(b"".join(self._parts), keep_alive=self._keep_alive)
                    return
            elif state == _EOF:
                self._grow(len(buffer) - self._size)
                return
            else:
                return

    def _read_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise BrokenResponse(f"not an HTTP/1.x status line: {lines[0][:60]!r}")
        try:
            status = int(parts[1])
        except ValueError:
            raise BrokenResponse(f"invalid status code: {parts[1][:10]!r}") from None
        if not 100 <= status <= 999:
            raise BrokenResponse(f"invalid status code: {status}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                raise BrokenResponse(f"invalid header line: {line[:60]!r}")
            key = name.decode("latin-1").lower()
            text = value.strip().decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        if status < 200:
            if status == 101:
                raise BrokenResponse("unexpected 101 Switching Protocols")
            return
        self._status = status
        self._headers = headers
        connection = headers.get("connection", "").lower()
        self._keep_alive = "keep-alive" in connection if parts[0] == b"HTTP/1.0" else "close" not in connection
        if self._head_only or status in (204, 304):
            self._finish(b"", keep_alive=self._keep_alive)
            return
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._state = _CHUNK_SIZE
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                raise BrokenResponse("invalid Content-Length") from None
            if length < 0:
                raise BrokenResponse("invalid Content-Length")
            self._grow(length)
            self._remaining = length
            self._state = _LENGTH
        else:
            self._keep_alive = False
            self._state = _EOF


class _Pool:
    """Connections to one origin: idle ones reused last-in first-out, at most ``limit`` open."""

    def __init__(self, scheme: str, host: str, port: int, limit: int, tls: ssl.SSLContext | None) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.limit = limit
        self.idle: list[_Connection] = []
        self.open = 0
        self.waiters: deque[asyncio.Future[None]] = deque()
        default = 443 if scheme == "https" else 80
        name = f"[{host}]" if ":" in host else host
        self.host_header = name if port == default else f"{name}:{port}"

    async def acquire(self) -> tuple[_Connection, bool]:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            while self.idle:
                connection = self.idle.pop()
                if not connection.closed and now - connection.idle_since < KEEPALIVE:
                    return connection, True
                connection.close()
                self.open -= 1
            if self.open < self.limit:
                break
            waiter: asyncio.Future[None] = loop.create_future()
            self.waiters.append(waiter)
            try:
                await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()
        self.open += 1
        try:
            _, connection = await loop.create_connection(
                _Connection, self.host, self.port, ssl=self.tls, server_hostname=self.host if self.tls else None
            )
        except BaseException as exc:
            self.open -= 1
            self._wake()
            if isinstance(exc, OSError):
                raise ConnectFailed(exc.errno, exc.strerror or exc.__class__.__name__) from exc
            raise
        return connection, False

    def release(self, connection: _Connection, *, reusable: bool) -> None:
        if reusable and not connection.closed:
            connection.idle_since = asyncio.get_running_loop().time()
            self.idle.append(connection)
        else:
            connection.close()
            self.open -= 1
        self._wake()

    def _wake(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        for connection in self.idle:
            connection.close()
        self.open -= len(self.idle)
        self.idle.clear()


class Http1Client:
    def __init__(self, *, max_connections: int = 200) -> None:
        self._limit = max_connections
        self._pools: dict[tuple[str, str, int], _Pool] = {}
        self._tls: ssl.SSLContext | None = None

    def _pool(self, scheme: str, host: str, port: int) -> _Pool:
        key = (scheme, host, port)
        pool = self._pools.get(key)
        if pool is None:
            tls = None
            if scheme == "https":
                if self._tls is None:
                    self._tls = ssl.create_default_context()
                tls = self._tls
            pool = self._pools[key] = _Pool(scheme, host, port, self._limit, tls)
        return pool

    async def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    async def request(
        self, method: str, url: str, *, headers: dict[str, str], body: bytes | None, timeout: float
    ) -> Response:
        """Send one request (following redirects) and return the whole answer; the total time is bounded."""
        async with asyncio.timeout(timeout):
            for _ in range(MAX_REDIRECTS + 1):
                response = await self._once(method, url, headers, body)
                location = response.headers.get("location")
                if response.status not in REDIRECTS or not location:
                    return response
                target = urljoin(url, location)
                if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                    # RFC 9110 §15.4: 303 (and, as browsers and aiohttp do, 301/302 after a POST) becomes a GET.
                    method, body = ("GET" if method != "HEAD" else method), None
                if _origin(target) != _origin(url):
                    # Credentials are for the partner we called, not for wherever it redirects us.
                    headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                url = target
            raise BrokenResponse(f"more than {MAX_REDIRECTS} redirects")

    async def _once(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> Response:
        parts = urlsplit(url)
        scheme, host = parts.scheme, parts.hostname
        if scheme not in ("http", "https") or not host:
            raise BrokenResponse(f"not an http(s) URL: {url[:80]}")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise BrokenResponse(f"invalid port in {url[:80]}") from None
        pool = self._pool(scheme, host, port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request = _serialise(method, target, pool.host_header, headers, body)
        head_only = method == "HEAD"
        for attempt in range(2):
            connection, reused = await pool.acquire()
            reusable = False
            try:
                response = await connection.send(request, head_only=head_only)
                reusable = response.keep_alive
            except Disconnected:
                # A kept-alive connection the partner had just closed: the request never reached it; send it again
                # on a new connection when that is safe.
                if reused and attempt == 0 and method in RETRYABLE:
                    continue
                raise
            finally:
                pool.release(connection, reusable=reusable)
            return _decoded(response)
        raise Disconnected("the partner closed the connection before answering")  # pragma: no cover - loop returns


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or ""), parts.port


def _serialise(method: str, target: str, host: str, headers: dict[str, str], body: bytes | None) -> bytes:
    lines = [f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: gzip, deflate\r\n"]
    for name, value in headers.items():
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            # A header value must never be able to start another header or request (RFC 9112 §5: request smuggling).
            raise ValueError(f"header {name!r} contains a line break")
        lines.append(f"{name}: {value}\r\n")
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body) if body else 0}\r\n")
    lines.append("\r\n")
    head = "".join(lines).encode("latin-1")
    return head + body if body else head


def _decoded(response: Response) -> Response:
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if not encoding or encoding == "identity" or not response.body:
        return response
    try:
        if encoding in ("gzip", "x-gzip"):
            body = zlib.decompress(response.body, 16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            try:
                body = zlib.decompress(response.body)
            except zlib.error:  # some servers send raw deflate without the zlib wrapper
                body = zlib.decompress(response.body, -zlib.MAX_WBITS)
        else:
            return response  # an encoding we did not ask for: passed on as it came
    except zlib.error as exc:
        raise BrokenResponse(f"answer not valid {encoding}: {exc}") from None
    headers = {k: v for k, v in response.headers.items() if k not in ("content-encoding", "content-length")}
    return Response(response.status, headers, body, response.keep_alive)
