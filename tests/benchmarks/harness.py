"""Processes and load for the benchmarks: nginx (reference proxy and fast upstream), the hub, wrk, RSS readings.

Everything runs on loopback and stops by itself: wrk runs are bounded in time, every process is terminated when the
run ends (DESIGN §11: ratios to a baseline measured in the same run).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

ENVELOPE = '{"status_code":1000,"status_message":"OK","timestamp":"2026-01-01T00:00:00Z"}'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


@dataclass
class Nginx:
    """An upstream that answers every request with a fixed OCPI envelope, and a proxy_pass in front of it."""

    upstream_port: int = field(default_factory=free_port)
    proxy_port: int = field(default_factory=free_port)
    prefix: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-nginx-")))
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        (self.prefix / "logs").mkdir(exist_ok=True)
        conf = self.prefix / "nginx.conf"
        conf.write_text(
            f"""
worker_processes 2;
pid {self.prefix}/nginx.pid;
error_log {self.prefix}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {self.prefix}/body;
    proxy_temp_path {self.prefix}/proxy;
    fastcgi_temp_path {self.prefix}/fastcgi;
    uwsgi_temp_path {self.prefix}/uwsgi;
    scgi_temp_path {self.prefix}/scgi;
    keepalive_requests 1000000;
    upstream fast {{ server 127.0.0.1:{self.upstream_port}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{self.upstream_port};
        client_max_body_size 10m;
        location / {{
            default_type application/json;
            # Read the body like a real receiver would, then answer the envelope.
            client_body_buffer_size 1m;
            return 200 '{ENVELOPE}';
        }}
    }}
    server {{
        listen 127.0.0.1:{self.proxy_port};
        client_max_body_size 10m;
        location / {{
            proxy_pass http://fast;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""
        )
        self.process = subprocess.Popen(
            ["nginx", "-p", str(self.prefix), "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_port(self.upstream_port)
        wait_port(self.proxy_port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGQUIT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
            if self.process.poll() is None:
                self.process.kill()
        shutil.rmtree(self.prefix, ignore_errors=True)

    @property
    def upstream(self) -> str:
        return f"http://127.0.0.1:{self.upstream_port}"

    @property
    def proxy(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"


@dataclass(frozen=True)
class WrkRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: str | None = None
    # Where the body's unique part goes: "{n}" in the body/path is replaced by a value no other request of any run has
    # (each run draws its own prefix: with a counter alone, the next run's CDRs were replays of the previous run's).
    unique: bool = False


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    errors: int
    non2xx: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "requests": self.requests,
            "requests_per_s": round(self.rps, 1),
            "errors": self.errors,
            "non_2xx": self.non2xx,
            "p50_ms": round(self.p50_ms, 3),
            "p90_ms": round(self.p90_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "max_ms": round(self.max_ms, 3),
        }


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def wrk_script(requests: list[WrkRequest], *, delay_ms: float = 0.0) -> str:
    """A wrk Lua script cycling through ``requests``; ``delay_ms`` paces each connection (fixed-rate load)."""
    lines = ["local reqs = {}", f"local run = {_lua_string(secrets.token_hex(4))}"]
    for index, request in enumerate(requests, start=1):
        headers = ", ".join(f"[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in request.headers.items())
        body = "nil" if request.body is None else _lua_string(request.body)
        lines.append(
            f"reqs[{index}] = {{method = {_lua_string(request.method)}, path = {_lua_string(request.path)}, "
            f"headers = {{{headers}}}, body = {body}, unique = {'true' if request.unique else 'false'}}}"
        )
    lines.append(
        f"""
local counter = 0
local thread_id = 0
local threads = {{}}
setup = function(thread)
    thread_id = thread_id + 1
    thread:set("tid", thread_id)
    table.insert(threads, thread)
end
request = function()
    counter = counter + 1
    local r = reqs[(counter % #reqs) + 1]
    local path, body = r.path, r.body
    if r.unique then
        local n = run .. tostring(tid) .. "x" .. tostring(counter)
        path = string.gsub(path, "{{n}}", n)
        if body then body = string.gsub(body, "{{n}}", n) end
    end
    return wrk.format(r.method, path, r.headers, body)
end
{"delay = function() return " + f"{delay_ms:.3f}" + " end" if delay_ms > 0 else ""}
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format('BENCHJSON {{"requests":%d,"duration_us":%d,"errors":%d,"non2xx":%d,'
        .. '"p50":%d,"p90":%d,"p99":%d,"max":%d}}\\n',
        summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
        latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""
    )
    return "\n".join(lines)


async def run_wrk(
    base_url: str,
    requests: list[WrkRequest],
    *,
    duration: float = 8.0,
    connections: int = 32,
    threads: int = 2,
    delay_ms: float = 0.0,
) -> WrkResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(wrk_script(requests, delay_ms=delay_ms))
        script = handle.name
    try:
        process = await asyncio.create_subprocess_exec(
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration:g}s",
            "--timeout",
            "10s",
            "-s",
            script,
            base_url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), duration + 60)
    finally:
        os.unlink(script)
    for line in stdout.decode().splitlines():
        if line.startswith("BENCHJSON "):
            raw: dict[str, Any] = json.loads(line.removeprefix("BENCHJSON "))
            return WrkResult(
                requests=raw["requests"],
                duration_s=raw["duration_us"] / 1e6,
                errors=raw["errors"],
                non2xx=raw["non2xx"],
                p50_ms=raw["p50"] / 1000,
                p90_ms=raw["p90"] / 1000,
                p99_ms=raw["p99"] / 1000,
                max_ms=raw["max"] / 1000,
            )
    raise RuntimeError(f"wrk printed no result: {stdout.decode()[-500:]} {stderr.decode()[-500:]}")


def process_tree(pid: int) -> Iterator[int]:
    yield pid
    children = Path(f"/proc/{pid}/task/{pid}/children")
    with contextlib.suppress(OSError):
        for child in children.read_text().split():
            yield from process_tree(int(child))


def peak_rss_mb(pid: int) -> dict[int, float]:
    """VmHWM (peak resident set) of a process and its children, in MiB."""
    peaks: dict[int, float] = {}
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks[member] = int(line.split()[1]) / 1024
    return peaks


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def version(*command: str) -> str:
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
        except OSError:
            return "missing"
        return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "unknown"

    commit = version("git", "rev-parse", "HEAD")
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "python": version("python3", "--version"),
        "nginx": version("nginx", "-v"),
        "wrk": version("wrk", "-v"),
        "postgres": version("psql", "--version"),
        "git_commit": commit,
        # Measured code that is not the commit (edits not committed yet) must not pass for it.
        "git_uncommitted_changes": version("git", "status", "--porcelain", "--untracked-files=no") != "unknown",
    }


# ---- PostgreSQL -----------------------------------------------------------------------------------------------------

#: The server the benchmarks create their scratch databases on (as the tests: HUB_TEST_DATABASE_URL).
ADMIN_URL = os.environ.get("HUB_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")


async def connect(database_url: str) -> asyncpg.Connection:
    """A plain asyncpg connection to a SQLAlchemy-style URL (the benchmarks' own queries and COPY)."""
    url = make_url(database_url)
    return await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, database=url.database
    )


async def admin_sql(sql: str) -> None:
    """Run one statement on the admin database (CREATE/DROP DATABASE)."""
    connection = await connect(ADMIN_URL)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def durable_write_floor(database_url: str, *, samples: int = 1000, pause: float = 0.002) -> dict[str, float]:
    """PostgreSQL's own latency for committing one row durably, one write at a time with a short pause between.

    The hub acknowledges a Session PUT or a CDR only once it is committed (DESIGN §4, §6: nothing accepted is lost),
    so this is the least any stored write can add, however fast the hub's own code; two in three routed requests
    of the mix are such writes. It is PostgreSQL's round trip with its WAL flush, measured like the hub's statement
    (a one-row ``INSERT … RETURNING`` in its own transaction) on a table of its own, the body a Session's size.
    """
    connection = await connect(database_url)
    body = b"x" * 900
    try:
        await connection.execute("CREATE TABLE bench_floor (id text PRIMARY KEY, data bytea, at timestamptz)")
        latencies: list[float] = []
        for n in range(samples):
            started = time.perf_counter()
            await connection.fetchval(
                "INSERT INTO bench_floor VALUES ($1, $2, now()) RETURNING (xmax = 0)", f"row{n}", body
            )
            latencies.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(pause)
        await connection.execute("DROP TABLE bench_floor")
    finally:
        await connection.close()
    latencies.sort()
    return {
        "samples": samples,
        "pause_ms": pause * 1000,
        "p50_ms": round(latencies[len(latencies) // 2], 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 3),
    }
