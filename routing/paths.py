"""Reading the hub's functional-module URLs: ``/ocpi/2.2.1/{sender|receiver}/{module}/{tail…}``.

The hub advertises one URL per module and interface (hub/parties/controllers.py); a request on the SENDER URL is a
pull from a data owner, one on the RECEIVER URL a push to a receiver. Hub-owned URLs live under ``/ocpi/2.2.1/hub/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

PREFIX = "/ocpi/2.2.1/"
FUNCTIONAL_MODULES = frozenset({"cdrs", "chargingprofiles", "commands", "locations", "sessions", "tariffs", "tokens"})
INTERFACES = {"sender": "SENDER", "receiver": "RECEIVER"}
# Modules whose objects are client-owned and pushed as /{country_code}/{party_id}/{id} (transport §client owned).
CLIENT_OWNED = frozenset({"locations", "sessions", "tariffs", "tokens"})
# Broadcast push and the hub's store serve these (hub notes §1.9 item 2, DESIGN §4).
BROADCAST_MODULES = frozenset({"locations", "tariffs", "tokens"})


@dataclass(frozen=True, slots=True)
class ModulePath:
    # SENDER | RECEIVER: the interface the caller addressed on the hub, which is also the receiving platform's
    # interface the hub calls: a pull on our SENDER URL is answered by the owner's SENDER interface, a push to our
    # RECEIVER URL goes to the receiver's RECEIVER interface (hub notes §1.9 item 1).
    interface: str
    module: str
    tail: tuple[str, ...]  # decoded path segments after the module


def parse(path: str, *, encoded: bool = False) -> ModulePath | None:
    """Read a (normalised) hub URL path. With ``encoded`` the path is the raw, percent-encoded one (ASGI
    ``raw_path``): segments are split first and decoded once each, so an id holding an encoded "/" or "%" survives.
    """
    if not path.startswith(PREFIX):
        return None
    parts = path[len(PREFIX) :].split("/")
    if len(parts) < 2 or parts[0] not in INTERFACES or parts[1] not in FUNCTIONAL_MODULES:
        return None
    tail = tuple(unquote(part) if encoded else part for part in parts[2:] if part)
    return ModulePath(INTERFACES[parts[0]], parts[1], tail)
