"""Configuration of a test peer: its parties, the modules it advertises, and its initial misbehaviour."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.peers.wire import TokenForm

# (country_code, party_id, role, business name): one CredentialsRole (credentials.asciidoc, CredentialsRole).
RoleSpec = tuple[str, str, str, str]
# (module identifier, interface role): one Endpoint of the version details (version_information_endpoint,
# Endpoint class), the URL being derived from the peer's base URL.
ModuleSpec = tuple[str, str]

SENDER = "SENDER"
RECEIVER = "RECEIVER"

# The version this peer implements. Only this one is used for registering; others may be *advertised*
# (PeerConfig.versions) to check how a partner copes with no mutual version (OCPI 3002).
OCPI_VERSION = "2.2.1"

# "Typically implemented by" lines of each module chapter (mod_*.asciidoc, Sender/Receiver Interface).
_CPO: list[ModuleSpec] = [
    ("locations", SENDER),
    ("sessions", SENDER),
    ("cdrs", SENDER),
    ("tariffs", SENDER),
    ("tokens", RECEIVER),
    ("commands", RECEIVER),
    ("chargingprofiles", RECEIVER),
]
_EMSP: list[ModuleSpec] = [
    ("locations", RECEIVER),
    ("sessions", RECEIVER),
    ("cdrs", RECEIVER),
    ("tariffs", RECEIVER),
    ("tokens", SENDER),
    ("commands", SENDER),
]
# Locations/Tariffs receivers are "eMSP and NSP"; a NAP only collects the same public data.
_NSP: list[ModuleSpec] = [("locations", RECEIVER), ("tariffs", RECEIVER)]
# Sessions receiver is "eMSP and SCSP"; the Charging Profiles sender is "typically SCSP".
_SCSP: list[ModuleSpec] = [("sessions", RECEIVER), ("chargingprofiles", SENDER)]
_FUNCTIONAL = ("locations", "sessions", "cdrs", "tariffs", "tokens", "commands", "chargingprofiles")
_HUB: list[ModuleSpec] = [(m, i) for m in _FUNCTIONAL for i in (SENDER, RECEIVER)] + [("hubclientinfo", SENDER)]

_BY_ROLE: dict[str, list[ModuleSpec]] = {
    "CPO": _CPO,
    "EMSP": _EMSP,
    # transport_and_format §"Broadcast Push": role OTHER is treated like an eMSP.
    "OTHER": _EMSP,
    "NSP": _NSP,
    "NAP": _NSP,
    "SCSP": _SCSP,
    "HUB": _HUB,
}


def default_modules(roles: list[RoleSpec]) -> list[ModuleSpec]:
    """The interfaces a platform with these roles typically implements, without duplicates.

    ``credentials`` is always advertised as SENDER (version_information_endpoint: "advised to send SENDER"),
    and ``hubclientinfo`` as RECEIVER because every party connecting to a hub implements that interface
    (mod_hub_client_info §"Receiver Interface").
    """
    modules: list[ModuleSpec] = [("credentials", SENDER), ("hubclientinfo", RECEIVER)]
    for _, _, role, _ in roles:
        for spec in _BY_ROLE.get(role.upper(), []):
            if spec not in modules:
                modules.append(spec)
    return modules


@dataclass
class PeerConfig:
    """How a :class:`~tests.peers.platform.PeerPlatform` presents itself.

    The misbehaviour fields only give the *initial* value of the instance attributes of the same name;
    tests change those attributes on the running peer.
    """

    roles: list[RoleSpec] = field(default_factory=lambda: [("NL", "CPA", "CPO", "CPO A")])
    # None: default_modules(roles). An explicit list is advertised exactly as given.
    modules: list[ModuleSpec] | None = None
    # False drops `credentials` from the advertised modules (the route itself keeps working): lets a test
    # check that a registering party refuses to go on without it, and how the hub answers (3003).
    advertise_credentials: bool = True
    # Versions listed by GET /ocpi/versions. Leaving out "2.2.1" (e.g. ["2.1.1"]) tests 3002 handling.
    versions: list[str] = field(default_factory=lambda: [OCPI_VERSION])
    # Form of the Authorization header on every call this peer makes.
    token_form: TokenForm = "base64"
    # Modules this peer insists on in its partner's version details: as handshake sender it refuses to
    # POST (credentials §"Required endpoints not available"); as receiver it answers 3003.
    required_modules: list[str] = field(default_factory=list)
    # Total timeout of each outbound call, including the call-backs made while answering a handshake.
    client_timeout: float = 5.0
    # X-Limit of the paginated GETs this peer serves (transport_and_format §"Paginated Response").
    page_limit: int = 100
    # Initial values of the misbehaviour switches (see PeerPlatform).
    versions_delay: float = 0.0
    versions_status: int | None = None
    fail_all: int | None = None
    reject_registration_with: int | None = None

    def advertised_modules(self) -> list[ModuleSpec]:
        modules = list(self.modules) if self.modules is not None else default_modules(self.roles)
        if not self.advertise_credentials:
            modules = [spec for spec in modules if spec[0] != "credentials"]
        return modules
