"""The lean outbound HTTP/1.1 client (hub.platform.http1) against real sockets on loopback.

Each test serves canned bytes from an asyncio server, because the point is how the client reads what real servers
send: chunked and EOF-delimited bodies, interim 1xx answers, compressed bodies, connections dropped at every stage.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import uvloop

from hub.platform.http1 import BrokenResponse, ConnectFailed, Disconnected, Http1Client

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """A loopback server that records what it received and answers with the handler's bytes."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def start(self) -> Server:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        request = head + (await reader.readexactly(length) if length else b"")
        self.requests.append(request)
        return request


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[Server]]]:
    servers: list[Server] = []

    async def start(handler: Handler) -> Server:
        server = await Server(handler).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        assert server.server is not None
        server.server.close()


@pytest.fixture
async def client() -> AsyncIterator[Http1Client]:
    c = Http1Client()
    yield c
    await c.close()


def answering(*responses: bytes, keep_open: bool = True) -> Callable[[Server], Handler]:
    """A handler that answers successive requests on one connection with ``responses`` in turn."""

    def make(server: Server) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for response in responses:
                await server.read_request(reader)
                writer.write(response)
                await writer.drain()
            if keep_open:
                await reader.read()  # until the client closes

        return handle

    return make


async def start_answering(serve: Callable[[Handler], Awaitable[Server]], *responses: bytes) -> Server:
    holder: list[Server] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answering(*responses)(holder[0])(reader, writer)

    server = await serve(handle)
    holder.append(server)
    return server


OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{"status_code":1}'


async def test_content_length_answers_reuse_one_connection(
    serve: Callable[..., Awaitable[Server]], client: Http1Client
) -> None:
    server = await start_answering(serve, OK, OK, OK)
    for _ in range(3):
        response = await client.request(
            "GET", server.url + "/a?b=1", headers={"X-Request-ID": "r"}, body=None, timeout=5
        )
        assert (response.status, response.body) == (200, b'{"status_code":1}')
        assert response.headers["content-type"] == "application/json"
    assert server.connections == 1
    assert server.requests[0].startswith(b"GET /a?b=1 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"X-Request-ID: r\r\n" in server.requests[0]
    assert b"Content-Length" not in server.requests[0]  # a bodiless GET carries no body framing


async def test_a_body_is_sent_with_its_length(serve: Callable[..., Awaitable[Server]], client: Http1Client) -> None:
    server = await start_answering(serve, OK)
    await client.request("PUT", server.url + "/s", headers={}, body=b'{"id":"S1"}', timeout=5)
    assert server.requests[0].endswith(b'Content-Length: 11\r\n\r\n{"id":"S1"}')


async def test_chunked_interim_and_repeated_headers(
    serve: Callable[..., Awaitable[Server]], client: Http1Client
) -> None:
    chunked = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nLink: <a>; rel=x\r\nLink: <b>; rel=next\r\n\r\n"
        b'4;ext=1\r\n{"a"\r\n3\r\n:1}\r\n0\r\nX-Trailer: t\r\n\r\n'
    )
    server = await start_answering(serve, chunked, OK)
    response = await client.request("GET", server.url + "/", headers={}, body=None, timeout=5)
    assert response.body == b'{"a":1}'
    assert response.headers["link"] == "<a>; rel=x, <b>; rel=next"
    assert response.keep_alive
    # The connection is still in step: the next answer on it is read correctly.
    assert (await client.request("GET", server.url + "/", headers={}, body=None, timeout=5)).status == 200
    assert server.connections == 1


async def test_gzip_answers_are_decoded(serve: Callable[..., Awaitable[Server]], client: Http1Client) -> None:
    packed = gzip.compress(b'{"data":[]}')
    answer = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed) + packed
    server = await start_answering(serve, answer)
    response = await client.request("GET", server.url + "/", headers={}, body=None, timeout=5)
    assert response.body == b'{"data":[]}'
    assert "content-encoding" not in response.headers


async def test_an_answer_until_eof(serve: Callable[..., Awaitable[Server]], client: Http1Client) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\n\r\nno such thing")
        await writer.drain()

    server = await serve(handle)
    response = await client.request("GET", server.url + "/", headers={}, body=None, timeout=5)
    assert (response.status, response.body, response.keep_alive) == (404, b"no such thing", False)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"", Disconnected),  # closed without a byte: unreachable, not a broken answer
        (b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"trunc', BrokenResponse),
        (b"SSH-2.0-OpenSSH\r\n\r\n", BrokenResponse),
        (b"HTTP/1.1 2x0 OK\r\n\r\n", BrokenResponse),
        (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", BrokenResponse),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", BrokenResponse),
    ],
)
async def test_broken_answers(
    serve: Callable[..., Awaitable[Server]], client: Http1Client, answer: bytes, error: type[Exception]
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()

    server = await serve(handle)
    with pytest.raises(error):
        await client.request("POST", server.url + "/", headers={}, body=b"{}", timeout=5)


async def test_refused_and_timed_out(serve: Callable[..., Awaitable[Server]], client: Http1Client) -> None:
    server = await serve(lambda reader, writer: reader.read())  # reads, never answers
    with pytest.raises(TimeoutError):
        await client.request("GET", server.url + "/", headers={}, body=None, timeout=0.3)
    assert server.server is not None
    url = server.url
    server.server.close()
    await server.server.wait_closed()
    with pytest.raises(ConnectFailed):
        await client.request("GET", url + "/", headers={}, body=None, timeout=5)


async def test_a_connection_the_server_closed_while_idle_is_not_reused(
    serve: Callable[..., Awaitable[Server]], client: Http1Client
) -> None:
    async def handle_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await holder[0].read_request(reader)
        writer.write(OK)  # says keep-alive (HTTP/1.1), then closes after a moment, as idle servers do
        await writer.drain()

    holder: list[Server] = []
    server = await serve(handle_then_close)
    holder.append(server)
    await client.request("GET", server.url + "/", headers={}, body=None, timeout=5)
    await asyncio.sleep(0.1)  # the server has closed the idle connection
    response = await client.request("GET", server.url + "/", headers={}, body=None, timeout=5)
    assert response.status == 200
    assert server.connections == 2


async def test_redirects_are_followed_and_credentials_stay_with_their_origin(
    serve: Callable[..., Awaitable[Server]], client: Http1Client
) -> None:
    other = await start_answering(serve, OK)
    moved = f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {other.url}/new\r\nContent-Length: 0\r\n\r\n".encode()
    same = b"HTTP/1.1 308 Permanent Redirect\r\nLocation: /moved\r\nContent-Length: 0\r\n\r\n"
    first = await start_answering(serve, same, moved)
    response = await client.request(
        "PUT", first.url + "/old", headers={"Authorization": "Token abc"}, body=b"{}", timeout=5
    )
    assert response.status == 200
    assert first.requests[1].startswith(b"PUT /moved HTTP/1.1")
    assert b"Authorization: Token abc" in first.requests[1]  # same origin: still ours
    assert other.requests[0].startswith(b"PUT /new HTTP/1.1")
    assert b"Authorization" not in other.requests[0]  # another origin never sees the token
    assert other.requests[0].endswith(b"\r\n\r\n{}")


async def test_header_values_cannot_smuggle_a_request(client: Http1Client) -> None:
    with pytest.raises(ValueError, match="line break"):
        await client.request(
            "GET", "http://127.0.0.1:9/", headers={"X-Correlation-ID": "a\r\nGET /admin"}, body=None, timeout=1
        )


async def test_the_pool_limit_holds_requests_until_a_connection_is_free(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(0.05)
            writer.write(OK)
            await writer.drain()

    server = await serve(slow)
    client = Http1Client(max_connections=2)
    try:
        answers = await asyncio.gather(
            *(client.request("GET", server.url + "/", headers={}, body=None, timeout=5) for _ in range(6))
        )
    finally:
        await client.close()
    assert [a.status for a in answers] == [200] * 6
    assert server.connections == 2


def test_the_client_runs_on_uvloop() -> None:
    """Production serves with uvloop (granian), whose transports are not asyncio.Transport subclasses."""

    async def scenario() -> tuple[int, bytes]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(OK)
            await writer.drain()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        client = Http1Client()
        try:
            port = server.sockets[0].getsockname()[1]
            response = await client.request("GET", f"http://127.0.0.1:{port}/", headers={}, body=None, timeout=5)
            return response.status, response.body
        finally:
            await client.close()
            server.close()

    assert uvloop.run(scenario()) == (200, b'{"status_code":1}')
