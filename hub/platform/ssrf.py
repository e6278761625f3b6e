"""The SSRF guard for partner-supplied URLs (DESIGN §7).

A partner chooses the versions URL and the endpoint URLs the hub will call. Without a guard, a malicious partner could
point the hub at its own admin port or at cloud metadata services. Private, loopback, link-local and reserved ranges
are refused unless ``HUB_ALLOW_PRIVATE_PEERS`` is set (tests and the demo run every platform on loopback).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit


class UnsafeUrlError(ValueError):
    """The URL is not one the hub may call; the message says why."""


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
    )


async def check_url(url: str, *, allow_private: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise UnsafeUrlError(f"not an http(s) URL: {url!r}")
    if allow_private:
        return
    host = parts.hostname
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise UnsafeUrlError(f"cannot resolve {host!r}: {exc}") from exc
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for address in addresses:
        if not _is_public(address):
            raise UnsafeUrlError(f"{url!r} resolves to a non-public address ({address}); set HUB_ALLOW_PRIVATE_PEERS")
