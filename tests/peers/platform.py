"""``PeerPlatform``: a small, independent OCPI 2.2.1 platform served on a loopback port.

It plays a CPO, eMSP (or any other role) platform the hub talks to, both as server (versions, credentials,
functional modules, HubClientInfo receiver) and as client (credentials handshake, arbitrary requests).
It deliberately imports nothing from ``hub``, ``routing`` or ``clearing`` and works on plain JSON, so a
misreading of the spec in the hub's wire model cannot be mirrored here.

Token naming follows the handshake as seen by the party that *starts* it (credentials §"Registration"):
``token_b`` is always the token the partner uses to call us, ``token_c`` the token we use to call the
partner, whichever side of the handshake this peer played.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict

from tests.peers.config import OCPI_VERSION, RECEIVER, SENDER, PeerConfig
from tests.peers.net import LOOPBACK
from tests.peers.wire import (
    TokenForm,
    authorization_candidates,
    dump_json,
    encode_authorization,
    envelope,
    is_success,
    is_valid_token,
    load_json,
    new_id,
    new_token,
    parse_timestamp,
)

log = logging.getLogger(__name__)

# How an inbound request was authenticated: with a registration token A, or with the partner's token.
Caller = Literal["token_a", "partner"]

# Configuration modules are platform-to-platform and never routed, so no OCPI-from/to headers on them
# (transport_and_format §"Message Routing Headers").
CONFIGURATION_MODULES = frozenset({"versions", "credentials", "hubclientinfo"})
ROUTING_HEADERS = (
    ("ocpi-from-country-code", "OCPI-to-country-code"),
    ("ocpi-from-party-id", "OCPI-to-party-id"),
    ("ocpi-to-country-code", "OCPI-from-country-code"),
    ("ocpi-to-party-id", "OCPI-from-party-id"),
)
# mod_hub_client_info, ClientInfo object and ConnectionStatus enum.
CLIENT_INFO_FIELDS = ("party_id", "country_code", "role", "status", "last_updated")
CONNECTION_STATUSES = frozenset({"CONNECTED", "OFFLINE", "PLANNED", "SUSPENDED"})

_current: contextvars.ContextVar[Received] = contextvars.ContextVar("peer_current_request")


@dataclass
class Received:
    """One request as it arrived on the wire, recorded before anything else looks at it."""

    method: str
    path: str
    query: dict[str, str]
    query_string: str
    headers: dict[str, str]  # names lower-cased; repeated headers joined with ", "
    body: bytes
    at: datetime
    # Filled in while answering: which token kind authenticated it, in which form, and our HTTP status.
    caller: Caller | None = None
    token_form: TokenForm | None = None
    status: int | None = None

    @property
    def module(self) -> str | None:
        """``versions`` for the version endpoints, else the module segment of ``/ocpi/{version}/{module}/…``."""
        parts = [part for part in self.path.split("/") if part]
        if len(parts) < 2 or parts[0] != "ocpi":  # /ocpi/{x} is the shortest OCPI path
            return None
        return "versions" if len(parts) == 2 else parts[2]

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return load_json(self.body)


@dataclass(frozen=True)
class PeerResponse:
    """What a partner answered to one of our calls."""

    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes
    envelope: dict[str, Any] | None  # the parsed JSON body when it is an object, else None

    @property
    def status_code(self) -> int | None:
        code = self.envelope.get("status_code") if self.envelope else None
        return code if isinstance(code, int) else None

    @property
    def data(self) -> Any:
        return self.envelope.get("data") if self.envelope else None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class PeerError(Exception):
    """A partner could not be reached or answered with an error (HTTP or OCPI level)."""

    def __init__(self, message: str, response: PeerResponse | None = None) -> None:
        super().__init__(message)
        self.response = response
        self.status: int | None = response.status if response else None
        self.envelope: dict[str, Any] | None = response.envelope if response else None

    @property
    def status_code(self) -> int | None:
        return self.response.status_code if self.response else None


class NoMutualVersionError(PeerError):
    """The partner's versions list does not contain the version this peer speaks (OCPI 3002 territory)."""


@dataclass
class ScriptedResponse:
    """A canned answer for one (method, path) of a functional module, replacing the default behaviour."""

    http_status: int = 200
    status_code: int = 1000
    data: Any = None
    message: str | None = None
    delay: float = 0.0
    raw_body: bytes | None = None  # sent as is instead of an envelope (e.g. to answer invalid JSON)
    # Extra response headers, e.g. a CDR POST's ``Location``, a list's ``Link`` or a redirect's ``Location``.
    headers: Mapping[str, str] | None = None


@dataclass
class _Partner:
    version: str
    versions_url: str
    endpoints: dict[tuple[str, str], str]
    roles: list[dict[str, Any]] = field(default_factory=list)


class PeerPlatform:
    """An OCPI 2.2.1 platform for tests: serves on loopback, records everything, can misbehave on demand.

    Misbehaviour switches (plain attributes, read on every request):

    * ``versions_delay``: seconds to sleep before answering GET versions / version details;
    * ``versions_status``: HTTP status for versions / version details instead of 200, with a non-OCPI body;
    * ``fail_all``: HTTP status answered to *every* request, with a plain-text body;
    * ``reject_registration_with``: OCPI status code answered to an incoming credentials POST.
    """

    def __init__(self, config: PeerConfig | None = None) -> None:
        self.config = config or PeerConfig()
        self.versions_delay: float = self.config.versions_delay
        self.versions_status: int | None = self.config.versions_status
        self.fail_all: int | None = self.config.fail_all
        self.reject_registration_with: int | None = self.config.reject_registration_with

        self.received: list[Received] = []
        self.errors: list[BaseException] = []  # unexpected exceptions while serving (should stay empty)
        # ClientInfo objects pushed to our hubclientinfo receiver, keyed by upper-cased (country_code, party_id)
        # because both are CiStrings (types.asciidoc).
        self.client_infos: dict[tuple[str, str], dict[str, Any]] = {}
        # Objects PUT to functional module paths, keyed by case-folded path (ids are CiStrings).
        self.objects: dict[str, Any] = {}
        self.scripted: dict[tuple[str, str], ScriptedResponse] = {}

        self.token_b: str | None = None  # the partner calls us with this
        self.token_c: str | None = None  # we call the partner with this
        self.registered = False
        self.partner_versions_url: str | None = None
        self.partner_version: str | None = None
        self.partner_endpoints: dict[tuple[str, str], str] = {}  # (module, interface role) -> URL
        self.partner_roles: list[dict[str, Any]] = []

        self._tokens_a: set[str] = set()
        # A token we have sent in a POST/PUT and that the partner may already use to call us back before
        # it answers (credentials §"Registration": the receiver fetches our versions with it).
        self._pending_token_b: str | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._base_url: str | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = LOOPBACK, port: int = 0) -> Self:
        if self._runner is not None:
            raise RuntimeError("peer already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        # A short shutdown timeout: a test may stop a peer while a handler still sleeps in versions_delay.
        runner = web.AppRunner(self._build_app(), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._runner = runner
        self._base_url = f"http://{host}:{sock.getsockname()[1]}"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.client_timeout))
        return self

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("peer not started")
        return self._base_url

    @property
    def versions_url(self) -> str:
        return f"{self.base_url}/ocpi/versions"

    @property
    def version_url(self) -> str:
        return f"{self.base_url}/ocpi/{OCPI_VERSION}"

    @property
    def credentials_url(self) -> str:
        return f"{self.version_url}/credentials"

    def module_path(self, module: str, interface: str) -> str:
        """Path of one of our module endpoints, as advertised in our version details."""
        if module == "credentials":
            return f"/ocpi/{OCPI_VERSION}/credentials"
        return f"/ocpi/{OCPI_VERSION}/{module}/{interface.lower()}"

    def module_url(self, module: str, interface: str) -> str:
        return self.base_url + self.module_path(module, interface)

    # ------------------------------------------------------------------ test helpers

    def issue_token_a(self) -> str:
        """Create a CREDENTIALS_TOKEN_A, handed over out of band (credentials §"Registration")."""
        token = new_token()
        self._tokens_a.add(token)
        return token

    def find_received(
        self, *, path: str | None = None, module: str | None = None, method: str | None = None
    ) -> list[Received]:
        """Recorded requests matching all given filters; ``path`` matches exactly or as a ``/``-prefix."""
        return [
            rec
            for rec in self.received
            if (path is None or rec.path == path or rec.path.startswith(path.rstrip("/") + "/"))
            and (module is None or rec.module == module)
            and (method is None or rec.method == method.upper())
        ]

    def put_object(self, path: str, obj: Any) -> None:
        """Pre-load an object so that GETs on ``path`` (or its collection) return it."""
        self.objects[_object_key(path)] = obj

    def get_object(self, path: str) -> Any:
        return self.objects.get(_object_key(path))

    def set_response(self, method: str, path: str, response: ScriptedResponse) -> None:
        """Answer ``method path`` (a functional module path) with ``response`` from now on."""
        self.scripted[(method.upper(), _object_key(path))] = response

    # ------------------------------------------------------------------ client side

    async def request(
        self,
        method: str,
        url_or_module: str,
        path: str = "",
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        token: str | None = None,
        token_form: TokenForm | None = None,
        interface: str | None = None,
        authorize: bool = True,
        omit: Iterable[str] = (),
    ) -> PeerResponse:
        """Call the partner and return whatever it answered, errors included (no raising on 4xx/5xx).

        ``url_or_module`` is an absolute URL or a module identifier looked up in the partner's endpoints
        (``interface`` picks SENDER/RECEIVER; by default GET goes to SENDER and pushes to RECEIVER).
        ``body`` is JSON-encoded unless it is ``bytes``, which are sent unchanged (invalid JSON tests).
        ``headers`` override ours (case-insensitively). ``token`` defaults to ``token_c``; ``authorize=False``
        sends no Authorization header at all. ``omit`` names headers we would send and should leave out (e.g.
        ``X-Request-ID``, to see a partner generate the ids a sloppy client forgot).
        """
        if url_or_module.startswith(("http://", "https://")):
            url = url_or_module
        else:
            url = self.partner_url(url_or_module, interface, method=method)
        if path:
            url = url.rstrip("/") + "/" + path.lstrip("/")
        return await self._send(
            method,
            url,
            body=body,
            headers=headers,
            token=(token if token is not None else self.token_c) if authorize else None,
            token_form=token_form,
            omit=omit,
        )

    def partner_url(self, module: str, interface: str | None = None, *, method: str = "GET") -> str:
        """URL of one of the partner's endpoints, from the version details fetched at registration."""
        found = {role: url for (mod, role), url in self.partner_endpoints.items() if mod == module}
        if not found:
            raise PeerError(f"partner advertises no {module!r} endpoint (has: {sorted(self.partner_endpoints)})")
        if module == "credentials" or len(found) == 1:
            # The credentials role is meaningless (version_information_endpoint, Endpoint class note).
            return next(iter(found.values()))
        wanted = (interface or (SENDER if method.upper() == "GET" else RECEIVER)).upper()
        if wanted not in found:
            raise PeerError(f"partner advertises no {module!r} {wanted} endpoint (has {sorted(found)})")
        return found[wanted]

    async def register(self, versions_url: str, token_a: str) -> dict[str, Any]:
        """Run the credentials handshake as its Sender (credentials §"Registration"); returns the partner's
        credentials object."""
        partner = await self._discover(versions_url, token_a)
        credentials_url = self._credentials_endpoint(partner, versions_url)
        self._check_required(partner, versions_url)
        token_b = new_token()
        self._pending_token_b = token_b
        try:
            response = await self._send("POST", credentials_url, body=self.credentials_object(token_b), token=token_a)
            theirs = self._expect_credentials(response, f"POST {credentials_url}")
        finally:
            self._pending_token_b = None
        self._adopt(partner, theirs, token_b)
        return theirs

    async def update_credentials(self) -> dict[str, Any]:
        """PUT fresh credentials (credentials §"Updating the credentials and resetting the credentials token"):
        we send a new token for the partner and adopt the new token it returns."""
        if not self.registered or self.partner_versions_url is None or self.token_c is None:
            raise PeerError("not registered with a partner")
        # The update procedure re-reads the partner's versions first (credentials §"Updating to a newer version").
        partner = await self._discover(self.partner_versions_url, self.token_c)
        credentials_url = self._credentials_endpoint(partner, self.partner_versions_url)
        token_b = new_token()
        # The old token stays valid until the partner has answered: no window in which neither works.
        self._pending_token_b = token_b
        try:
            response = await self._send(
                "PUT", credentials_url, body=self.credentials_object(token_b), token=self.token_c
            )
            theirs = self._expect_credentials(response, f"PUT {credentials_url}")
        finally:
            self._pending_token_b = None
        self._adopt(partner, theirs, token_b)
        return theirs

    async def unregister(self) -> None:
        """DELETE our credentials at the partner (credentials §"DELETE Method"); both sides stop talking."""
        response = await self.request("DELETE", "credentials")
        self._expect_success(response, "DELETE credentials")
        self._forget_partner()

    async def get_credentials(self) -> dict[str, Any]:
        """GET the partner's credentials object for us."""
        response = await self.request("GET", "credentials")
        data = self._expect_success(response, "GET credentials")
        if not isinstance(data, dict):
            raise PeerError("GET credentials: data is not an object", response)
        return data

    def credentials_object(self, token: str) -> dict[str, Any]:
        """Our Credentials object carrying ``token`` for the partner (credentials §"Credentials object")."""
        return {
            "token": token,
            "url": self.versions_url,
            "roles": [
                {
                    "role": role,
                    "business_details": {"name": name},
                    "party_id": party_id,
                    "country_code": country_code,
                }
                for country_code, party_id, role, name in self.config.roles
            ],
        }

    async def _send(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        token: str | None = None,
        token_form: TokenForm | None = None,
        omit: Iterable[str] = (),
    ) -> PeerResponse:
        if self._session is None:
            raise RuntimeError("peer not started")
        # transport_and_format §"Unique message IDs": every request carries both ids.
        out: CIMultiDict[str] = CIMultiDict({"X-Request-ID": new_id(), "X-Correlation-ID": new_id()})
        if token is not None:
            out["Authorization"] = encode_authorization(token, token_form or self.config.token_form)
        payload: bytes | None = None
        if body is not None:
            payload = bytes(body) if isinstance(body, bytes | bytearray) else dump_json(body)
            # transport_and_format §"Request format": Content-Type for every request with a body.
            out["Content-Type"] = "application/json"
        for name, value in (headers or {}).items():
            out[name] = value
        for name in omit:
            out.popall(name, None)
        try:
            async with self._session.request(
                method.upper(), url, data=payload, headers=out, allow_redirects=False
            ) as resp:
                raw = await resp.read()
                status, resp_headers = resp.status, _lower_headers(resp.headers.items())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PeerError(f"{method.upper()} {url} failed: {exc!r}") from exc
        parsed: Any = None
        try:
            parsed = load_json(raw) if raw else None
        except ValueError:
            parsed = None
        return PeerResponse(status, resp_headers, raw, parsed if isinstance(parsed, dict) else None)

    @staticmethod
    def _expect_success(response: PeerResponse, what: str) -> Any:
        """The ``data`` of a successful answer; anything else is a PeerError carrying the answer."""
        if 200 <= response.status < 300 and response.envelope is not None and is_success(response.status_code):
            return response.data
        message = response.envelope.get("status_message") if response.envelope else None
        detail = f"OCPI {response.status_code} {message!r}" if response.envelope else f"body {response.body[:200]!r}"
        raise PeerError(f"{what} failed: HTTP {response.status}, {detail}", response)

    async def _discover(self, versions_url: str, token: str) -> _Partner:
        """GET versions, pick 2.2.1, GET its details (version_information_endpoint)."""
        response = await self._send("GET", versions_url, token=token)
        versions = self._expect_success(response, f"GET versions {versions_url}")
        if not isinstance(versions, list):
            raise PeerError(f"GET versions {versions_url}: data is not a list", response)
        offered = {
            item["version"]: item["url"]
            for item in versions
            if isinstance(item, dict) and isinstance(item.get("version"), str) and isinstance(item.get("url"), str)
        }
        if OCPI_VERSION not in offered:
            raise NoMutualVersionError(
                f"no mutual OCPI version: {versions_url} offers {sorted(offered)}, this peer speaks {OCPI_VERSION}",
                response,
            )
        details_url = offered[OCPI_VERSION]
        response = await self._send("GET", details_url, token=token)
        details = self._expect_success(response, f"GET version details {details_url}")
        if not isinstance(details, dict) or not isinstance(details.get("endpoints"), list):
            raise PeerError(f"GET version details {details_url}: no endpoints list", response)
        if details.get("version") != OCPI_VERSION:
            raise PeerError(f"GET version details {details_url}: reports version {details.get('version')!r}", response)
        endpoints: dict[tuple[str, str], str] = {}
        for item in details["endpoints"]:
            if not (isinstance(item, dict) and isinstance(item.get("identifier"), str)):
                raise PeerError(f"GET version details {details_url}: malformed endpoint {item!r}", response)
            if not isinstance(item.get("url"), str):
                raise PeerError(f"GET version details {details_url}: endpoint without url {item!r}", response)
            endpoints[(item["identifier"], str(item.get("role", "")).upper())] = item["url"]
        return _Partner(version=OCPI_VERSION, versions_url=versions_url, endpoints=endpoints)

    @staticmethod
    def _credentials_endpoint(partner: _Partner, versions_url: str) -> str:
        for (module, _), url in partner.endpoints.items():
            if module == "credentials":
                return url
        raise PeerError(
            f"partner at {versions_url} advertises no 'credentials' endpoint in its {partner.version} version "
            f"details, so there is nowhere to send our credentials (advertised: {sorted(partner.endpoints)})"
        )

    def _missing_modules(self, partner: _Partner) -> list[str]:
        present = {module for module, _ in partner.endpoints}
        return [module for module in self.config.required_modules if module not in present]

    def _check_required(self, partner: _Partner, versions_url: str) -> None:
        # credentials §"Required endpoints not available": the Sender does not POST at all.
        missing = self._missing_modules(partner)
        if missing:
            raise PeerError(f"partner at {versions_url} lacks required endpoints {missing}; not registering")

    def _expect_credentials(self, response: PeerResponse, what: str) -> dict[str, Any]:
        data = self._expect_success(response, what)
        problem = credentials_problem(data)
        if problem is not None:
            raise PeerError(f"{what}: invalid credentials object in answer: {problem}", response)
        assert isinstance(data, dict)  # checked by credentials_problem; narrows the type
        return data

    def _adopt(self, partner: _Partner, theirs: Mapping[str, Any], token_b: str) -> None:
        self.token_b = token_b
        self.token_c = theirs["token"]
        self.partner_versions_url = partner.versions_url
        self.partner_version = partner.version
        self.partner_endpoints = partner.endpoints
        self.partner_roles = list(theirs["roles"])
        self.registered = True

    def _forget_partner(self) -> None:
        self.token_b = None
        self.token_c = None
        self.registered = False
        self.partner_versions_url = None
        self.partner_version = None
        self.partner_endpoints = {}
        self.partner_roles = []

    # ------------------------------------------------------------------ server side

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/ocpi/versions", self._handle_versions)
        app.router.add_route("*", f"/ocpi/{OCPI_VERSION}/credentials", self._handle_credentials)
        app.router.add_get("/ocpi/{version}", self._handle_version_details)
        app.router.add_route("*", f"/ocpi/{OCPI_VERSION}/{{module}}", self._handle_module)
        app.router.add_route("*", f"/ocpi/{OCPI_VERSION}/{{module}}/{{tail:.*}}", self._handle_module)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        record = Received(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            query_string=request.query_string,
            headers=_lower_headers(request.headers.items()),
            body=await request.read(),
            at=datetime.now(UTC),
        )
        self.received.append(record)
        _current.set(record)
        response: web.StreamResponse
        if self.fail_all is not None:
            response = web.Response(
                status=self.fail_all, text="peer told to fail every request (fail_all)", content_type="text/plain"
            )
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:  # router 404/405 and the like: still an OCPI envelope
                response = _ocpi(2000 if exc.status < 500 else 3000, message=exc.reason, http_status=exc.status)
            except Exception as exc:  # a bug in the peer: answer 500 and keep it for the test to see
                log.exception("test peer failed on %s %s", request.method, request.path)
                self.errors.append(exc)
                response = _ocpi(3000, message=f"peer error: {exc!r}", http_status=500)
        # transport_and_format §"Unique message IDs": the response carries the request's ids.
        response.headers["X-Request-ID"] = request.headers.get("X-Request-ID") or new_id()
        response.headers["X-Correlation-ID"] = request.headers.get("X-Correlation-ID") or new_id()
        record.status = response.status
        return response

    def _authenticate(self, request: web.Request) -> tuple[Caller, str] | None:
        """Match the Authorization header against our tokens, in Base64 or raw form
        (transport_and_format §"Authorization header", compatibility note)."""
        partner_tokens = {t for t in (self.token_b, self._pending_token_b) if t is not None}
        for token, form in authorization_candidates(request.headers.get("Authorization")):
            caller: Caller | None = (
                "partner" if token in partner_tokens else "token_a" if token in self._tokens_a else None
            )
            if caller is not None:
                record = _current.get()
                record.caller, record.token_form = caller, form
                return caller, token
        return None

    async def _versions_misbehaviour(self) -> web.Response | None:
        if self.versions_delay > 0:
            await asyncio.sleep(self.versions_delay)
        if self.versions_status is not None:
            return web.Response(
                status=self.versions_status,
                text="<html><body>upstream unavailable</body></html>",
                content_type="text/html",
            )
        return None

    async def _handle_versions(self, request: web.Request) -> web.Response:
        if (broken := await self._versions_misbehaviour()) is not None:
            return broken
        # Token A is accepted here as on credentials (transport_and_format §"Authorization header").
        if self._authenticate(request) is None:
            return _unauthorized()
        return _ocpi(1000, [{"version": v, "url": f"{self.base_url}/ocpi/{v}"} for v in self.config.versions])

    async def _handle_version_details(self, request: web.Request) -> web.Response:
        if (broken := await self._versions_misbehaviour()) is not None:
            return broken
        if self._authenticate(request) is None:
            return _unauthorized()
        version = request.match_info["version"]
        if version not in self.config.versions:
            return _ocpi(2000, message=f"version {version} not offered here", http_status=404)
        endpoints = []
        for module, interface in self.config.advertised_modules():
            url = f"{self.base_url}/ocpi/{version}/credentials"
            if module != "credentials":
                url = f"{self.base_url}/ocpi/{version}/{module}/{interface.lower()}"
            endpoint = {"identifier": module, "role": interface, "url": url}
            if version in ("2.0", "2.1", "2.1.1"):
                del endpoint["role"]  # the role field only exists since 2.2 (version_information_endpoint NOTE)
            endpoints.append(endpoint)
        return _ocpi(1000, {"version": version, "endpoints": endpoints})

    async def _handle_credentials(self, request: web.Request) -> web.Response:
        auth = self._authenticate(request)
        if auth is None:
            return _unauthorized()
        caller, token = auth
        if request.method == "GET":
            # Our credentials for the caller; the token is the one it authenticated with.
            return _ocpi(1000, self.credentials_object(token))
        if request.method == "POST":
            # credentials §"POST Method": 405 when the client has already registered.
            if self.registered or caller != "token_a":
                return _ocpi(2000, message="already registered", http_status=405)
            if self.reject_registration_with is not None:
                return _ocpi(self.reject_registration_with, message="registration refused (reject_registration_with)")
            return await self._accept_credentials(request, registering=True)
        if request.method in ("PUT", "DELETE"):
            # credentials §"PUT Method" / §"DELETE Method": 405 when the client has not registered.
            if not self.registered or caller != "partner":
                return _ocpi(2000, message="not registered", http_status=405)
            if request.method == "PUT":
                return await self._accept_credentials(request, registering=False)
            self._forget_partner()
            return _ocpi(1000)
        return _ocpi(2000, message=f"{request.method} not supported on credentials", http_status=405)

    async def _accept_credentials(self, request: web.Request, *, registering: bool) -> web.Response:
        """Handle the client's credentials of a POST or PUT: fetch its versions and details with the token it
        gave us, then hand out a fresh token (credentials §"POST Method", §"PUT Method")."""
        try:
            theirs = load_json(await request.read())
        except ValueError:
            return _ocpi(2000, message="body is not valid JSON", http_status=400)
        problem = credentials_problem(theirs)
        if problem is not None:
            return _ocpi(2001, message=f"invalid credentials object: {problem}")
        try:
            partner = await self._discover(theirs["url"], theirs["token"])
        except NoMutualVersionError as exc:
            return _ocpi(3002, message=str(exc))
        except PeerError as exc:
            # credentials §"Errors during registration": could not use the client's API -> 3001.
            return _ocpi(3001, message=f"unable to use the client's API: {exc}")
        missing = self._missing_modules(partner)
        if missing:
            # credentials §"Required endpoints not available" (receiver side) -> 3003.
            return _ocpi(3003, message=f"required endpoints missing: {missing}")
        token_b = new_token()
        self._adopt(partner, {"token": theirs["token"], "roles": theirs["roles"]}, token_b)
        if registering:
            self._tokens_a.clear()  # credentials §"Registration": token A may no longer be used
        return _ocpi(1000, self.credentials_object(token_b))

    async def _handle_module(self, request: web.Request) -> web.Response:
        module = request.match_info["module"]
        auth = self._authenticate(request)
        # transport_and_format §"Authorization header": token A only opens versions and credentials.
        if auth is None or auth[0] != "partner":
            return _unauthorized()
        headers = {} if module in CONFIGURATION_MODULES else _routing_reply_headers(request)
        key = _object_key(request.path)
        scripted = self.scripted.get((request.method, key))
        if scripted is not None:
            return await _play(scripted, headers)
        segments = [part for part in request.match_info.get("tail", "").split("/") if part]
        body: Any = None
        if request.method in ("PUT", "PATCH", "POST"):
            try:
                body = load_json(await request.read())
            except ValueError:
                # status_codes.asciidoc: a body that is not valid JSON is an HTTP-layer error (400).
                return _ocpi(2000, message="body is not valid JSON", http_status=400, headers=headers)
        if module == "hubclientinfo" and len(segments) == 3:  # {interface}/{cc}/{pid}
            return self._client_info(request, segments[1], segments[2], body if request.method == "PUT" else None)
        if request.method == "GET":
            if len(segments) <= 1:
                return self._page(request, key, headers)
            if key not in self.objects:
                return _ocpi(2000, message="unknown object", http_status=404, headers=headers)
            return _ocpi(1000, self.objects[key], headers=headers)
        if request.method == "PUT":
            created = key not in self.objects
            self.objects[key] = body
            # status_codes.asciidoc: 201 when the object was newly created.
            return _ocpi(1000, http_status=201 if created else 200, headers=headers)
        if request.method == "PATCH":
            current = self.objects.get(key)
            if isinstance(current, dict) and isinstance(body, dict):
                self.objects[key] = {**current, **body}
            elif current is None:
                self.objects[key] = body  # kept so a test can see what arrived
            return _ocpi(1000, headers=headers)
        if request.method == "DELETE":
            self.objects.pop(key, None)
        return _ocpi(1000, headers=headers)

    def _client_info(self, request: web.Request, country_code: str, party_id: str, body: Any) -> web.Response:
        """HubClientInfo Receiver interface: ``{url}/{country_code}/{party_id}`` (mod_hub_client_info)."""
        key = (country_code.upper(), party_id.upper())
        if request.method == "GET":
            if key not in self.client_infos:
                return _ocpi(2000, message="unknown client info", http_status=404)
            return _ocpi(1000, self.client_infos[key])
        if request.method != "PUT":
            # POST/PATCH/DELETE are n/a on the Receiver interface (mod_hub_client_info §"Receiver Interface").
            return _ocpi(2000, message=f"{request.method} not allowed on ClientInfo", http_status=405)
        problem = client_info_problem(body, country_code, party_id)
        if problem is not None:
            return _ocpi(2001, message=problem)
        created = key not in self.client_infos
        self.client_infos[key] = body
        return _ocpi(1000, http_status=201 if created else 200)

    def _page(self, request: web.Request, collection: str, headers: dict[str, str]) -> web.Response:
        """A paginated list of the objects stored under ``collection`` (transport_and_format §"Pagination")."""
        prefix = collection + "/"
        # Only top-level objects: an EVSE PUT below its Location is part of that Location, not a list item.
        keys = [k for k in self.objects if k.startswith(prefix)]
        tops = [k for k in keys if not any(k.startswith(other + "/") for other in keys if other != k)]
        items = [self.objects[k] for k in tops]
        query = request.query
        bounds = {name: parse_timestamp(query[name]) for name in ("date_from", "date_to") if name in query}
        if None in bounds.values():
            return _ocpi(2001, message="date_from/date_to must be DateTime", headers=headers)
        try:
            offset = int(query.get("offset", "0"))
            limit = min(int(query.get("limit", str(self.config.page_limit))), self.config.page_limit)
        except ValueError:
            return _ocpi(2001, message="offset/limit must be integers", headers=headers)
        if offset < 0 or limit < 0:
            return _ocpi(2001, message="offset/limit must not be negative", headers=headers)
        date_from, date_to = bounds.get("date_from"), bounds.get("date_to")
        if date_from is not None or date_to is not None:
            items = [item for item in items if _within(item, date_from, date_to)]
        page = items[offset : offset + limit]
        headers = {**headers, "X-Total-Count": str(len(items)), "X-Limit": str(self.config.page_limit)}
        if offset + len(page) < len(items):
            # The next link carries every original filter plus the new offset/limit.
            next_query = urlencode({**query, "offset": str(offset + len(page)), "limit": str(limit)})
            headers["Link"] = f'<{self.base_url}{request.path}?{next_query}>; rel="next"'
        return _ocpi(1000, page, headers=headers)


# ---------------------------------------------------------------------- validation (own reading of the spec)


def credentials_problem(value: Any) -> str | None:
    """What is wrong with a Credentials object (credentials §"Credentials object"), or None."""
    if not isinstance(value, dict):
        return "not an object"
    if not is_valid_token(value.get("token")):
        return "token must be 1-64 printable non-whitespace ASCII characters"
    if not isinstance(value.get("url"), str) or not value["url"]:
        return "url missing"
    roles = value.get("roles")
    if not isinstance(roles, list) or not roles:
        return "roles must be a non-empty list"
    seen: set[tuple[str, str, str]] = set()
    for role in roles:
        if not isinstance(role, dict):
            return "role entry is not an object"
        details = role.get("business_details")
        name = details.get("name") if isinstance(details, dict) else None
        country_code, party_id, kind = role.get("country_code"), role.get("party_id"), role.get("role")
        if not (isinstance(country_code, str) and len(country_code) == 2):  # CiString(2)
            return f"country_code must be 2 characters: {role!r}"
        if not (isinstance(party_id, str) and 1 <= len(party_id) <= 3):  # CiString(3)
            return f"party_id must be 1-3 characters: {role!r}"
        if not isinstance(kind, str) or not isinstance(name, str):
            return f"role and business_details.name are required: {role!r}"
        # "Every role needs a unique combination of: role, party_id and country_code."
        identity = (kind, party_id.upper(), country_code.upper())
        if identity in seen:
            return f"duplicate role {identity}"
        seen.add(identity)
    return None


def client_info_problem(value: Any, country_code: str, party_id: str) -> str | None:
    """What is wrong with a ClientInfo PUT to ``{url}/{country_code}/{party_id}`` (mod_hub_client_info)."""
    if not isinstance(value, dict):
        return "ClientInfo must be an object"
    missing = [name for name in CLIENT_INFO_FIELDS if not isinstance(value.get(name), str)]
    if missing:
        return f"ClientInfo lacks {missing}"
    if value["status"] not in CONNECTION_STATUSES:
        return f"unknown ConnectionStatus {value['status']!r}"
    if parse_timestamp(value["last_updated"]) is None:
        return "last_updated is not a DateTime"
    # The URL segments name the party the object is about; CiStrings compare case-insensitively.
    if (value["country_code"].upper(), value["party_id"].upper()) != (country_code.upper(), party_id.upper()):
        return "country_code/party_id in the URL differ from the object"
    return None


# ---------------------------------------------------------------------- small helpers


def _ocpi(
    status_code: int,
    data: Any = None,
    *,
    message: str | None = None,
    http_status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    return web.Response(
        status=http_status,
        body=dump_json(envelope(status_code, data, message)),
        content_type="application/json",
        headers=headers,
    )


def _unauthorized() -> web.Response:
    # transport_and_format §"Authorization header": missing or unknown token -> HTTP 401.
    return _ocpi(2000, message="missing or unknown credentials token", http_status=401)


async def _play(scripted: ScriptedResponse, headers: Mapping[str, str]) -> web.Response:
    if scripted.delay > 0:
        await asyncio.sleep(scripted.delay)
    if scripted.headers:
        headers = {**headers, **scripted.headers}
    if scripted.raw_body is not None:
        return web.Response(
            status=scripted.http_status, body=scripted.raw_body, content_type="application/json", headers=headers
        )
    return _ocpi(
        scripted.status_code, scripted.data, message=scripted.message, http_status=scripted.http_status, headers=headers
    )


def _routing_reply_headers(request: web.Request) -> dict[str, str]:
    """Swap the request's OCPI-from/to headers for the answer (transport_and_format §"Message Routing")."""
    return {
        reply_name: request.headers[name]
        for name, reply_name in ROUTING_HEADERS
        if request.headers.get(name) is not None
    }


def _object_key(path: str) -> str:
    # Ids in URLs are CiStrings (types.asciidoc), so keys ignore case; a trailing "/" names the same thing.
    return path.split("?", 1)[0].rstrip("/").casefold()


def _within(item: Any, date_from: datetime | None, date_to: datetime | None) -> bool:
    """date_from inclusive, date_to exclusive, on last_updated (transport_and_format §"Paginated Request")."""
    stamp = parse_timestamp(item.get("last_updated", "")) if isinstance(item, dict) else None
    if stamp is None:
        return False
    return (date_from is None or stamp >= date_from) and (date_to is None or stamp < date_to)


def _lower_headers(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers
