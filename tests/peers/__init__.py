"""Real OCPI 2.2.1 partner platforms for the hub's tests, served on loopback ports (no mocks).

``PeerPlatform`` is its own small OCPI platform: it imports nothing from ``hub``, ``routing`` or
``clearing`` and speaks plain JSON over aiohttp, so it checks the hub's wire behaviour independently.
"""

from tests.peers.config import OCPI_VERSION, RECEIVER, SENDER, ModuleSpec, PeerConfig, RoleSpec, default_modules
from tests.peers.net import closed_port_url, free_port
from tests.peers.platform import (
    NoMutualVersionError,
    PeerError,
    PeerPlatform,
    PeerResponse,
    Received,
    ScriptedResponse,
)
from tests.peers.wire import TokenForm, encode_authorization

__all__ = [
    "OCPI_VERSION",
    "RECEIVER",
    "SENDER",
    "ModuleSpec",
    "NoMutualVersionError",
    "PeerConfig",
    "PeerError",
    "PeerPlatform",
    "PeerResponse",
    "Received",
    "RoleSpec",
    "ScriptedResponse",
    "TokenForm",
    "closed_port_url",
    "default_modules",
    "encode_authorization",
    "free_port",
]
