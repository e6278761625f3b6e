"""Loopback port helpers for tests that need a free port or a URL where nothing listens."""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free a moment ago (the OS may hand it out again later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def closed_port_url(path: str = "/ocpi/versions", host: str = LOOPBACK) -> str:
    """A loopback URL that refuses connections: a port just released and not listened on."""
    return f"http://{host}:{free_port(host)}{path}"
