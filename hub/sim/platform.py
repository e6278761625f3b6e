"""One simulated OCPI 2.2.1 platform (a CPO or an eMSP) on loopback: server and client in one object.

It registers with the hub as the Sender of the credentials handshake (credentials §"Registration") using a token A
the hub issued, then sends functional-module requests to the hub with OCPI-from/to routing headers.

Credentials updates, both ways (OCPI 2.2.1 credentials §7.2.2 PUT): the hub PUTs new credentials to the platform when
the operator rotates them (the platform reads the hub's endpoints with the new token and answers with a new token of
its own), and the platform can PUT its own new credentials to the hub (`SimPlatform.update_credentials`). Either way
the platform's previous token keeps working until the hub calls a module with the new one, so requests the hub sent
with the old token while the update was under way still get answered.

Real-time authorization (OCPI 2.2.1 tokens §12.2.2 "Real-time authorization", §12.4.3 WhitelistType): the eMSP serves
``POST {tokens_endpoint_url}/{uid}/authorize[?type=TYPE]`` with an AuthorizationInfo (§12.3.1); the CPO, when a driver
presents a token at the charger (`SimCpo.swipe`), asks the eMSP through the hub when the token's whitelist type says
so: NEVER and ALLOWED_OFFLINE always (ALLOWED_OFFLINE falls back to allowing it when the eMSP cannot be reached),
ALWAYS and ALLOWED from the token list it received, and an unknown token in real time.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import socket
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import aiohttp
import msgspec
from aiohttp import web

from hub.sim import pricing

VERSION: Final = "2.2.1"
_ENCODER: Final = msgspec.json.Encoder(decimal_format="number")
CPO_MODULES: Final = (
    ("commands", "RECEIVER"),
    ("locations", "SENDER"),
    ("tariffs", "SENDER"),
    ("sessions", "SENDER"),
    ("cdrs", "SENDER"),
    ("tokens", "RECEIVER"),
    ("hubclientinfo", "RECEIVER"),
)
EMSP_MODULES: Final = (
    ("commands", "SENDER"),
    ("locations", "RECEIVER"),
    ("tariffs", "RECEIVER"),
    ("sessions", "RECEIVER"),
    ("cdrs", "RECEIVER"),
    ("tokens", "SENDER"),
    ("hubclientinfo", "RECEIVER"),
)


#: OCPI status codes that mean "no answer from the other side" rather than a refusal: the receiver's server errors
#: (3xxx) and the hub's timeout on a forwarded request (4002) and connection problem (4003) (OCPI 2.2.1 §5).
_NO_ANSWER: Final = frozenset({3000, 3001, 3002, 3003, 4002, 4003})


class SimError(Exception):
    """The hub refused or failed a request of a simulated platform."""

    def __init__(self, message: str, *, http_status: int | None = None, status_code: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.status_code = status_code

    @property
    def unanswered(self) -> bool:
        """Nobody answered (connection failure, timeout, 3xxx, 4002, 4003), as against a refusal."""
        return (
            self.http_status is None
            or self.status_code in _NO_ANSWER
            or (self.status_code is None and self.http_status >= 500)
        )


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _envelope(data: Any = None, status_code: int = 1000, message: str | None = None) -> bytes:
    body: dict[str, Any] = {"status_code": status_code, "timestamp": stamp(datetime.now(UTC))}
    if data is not None:
        body["data"] = data
    if message is not None:
        body["status_message"] = message
    return _ENCODER.encode(body)


def _reply(data: Any = None, *, status: int = 200, headers: dict[str, str] | None = None, **kw: Any) -> web.Response:
    return web.Response(status=status, body=_envelope(data, **kw), content_type="application/json", headers=headers)


def _auth(token: str) -> str:
    return "Token " + base64.b64encode(token.encode()).decode()


@dataclass
class Party:
    country_code: str
    party_id: str
    role: str
    name: str

    @property
    def ref(self) -> str:
        return f"{self.country_code}/{self.party_id}"


@dataclass(frozen=True)
class Incoming:
    """One functional-module request to this platform, and the routing headers its answer carries."""

    method: str
    module: str
    tail: list[str]
    body: Any
    headers: Mapping[str, str]
    reply_headers: dict[str, str]
    query: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Counters:
    sent: int = 0
    received: int = 0
    failed: int = 0
    by_module: dict[str, int] = field(default_factory=dict)


class SimPlatform:
    """Serves versions, version details, credentials and its modules; calls the hub with the token it got."""

    def __init__(self, party: Party, modules: tuple[tuple[str, str], ...]) -> None:
        self.party = party
        self.modules = modules
        self.token_b = secrets.token_urlsafe(24)  # the hub calls us with this
        # After a credentials update: the token the hub used before, accepted until it calls a module with the new one.
        self.previous_token_b: str | None = None
        self.token_c: str | None = None  # we call the hub with this
        self.credentials_updates = 0  # credentials PUTs, from the hub (rotation) or to it
        self.hub_endpoints: dict[tuple[str, str], str] = {}
        self.hub_party: tuple[str, str] | None = None
        self.counters = Counters()
        self.objects: dict[str, Any] = {}
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._base = ""
        self._hub_versions_url = ""
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        app = web.Application()
        app.router.add_get("/ocpi/versions", self._versions)
        app.router.add_get(f"/ocpi/{VERSION}", self._details)
        app.router.add_route("*", f"/ocpi/{VERSION}/credentials", self._credentials)
        app.router.add_route("*", f"/ocpi/{VERSION}/{{module}}/{{interface}}{{tail:.*}}", self._module)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        self._base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def versions_url(self) -> str:
        return f"{self._base}/ocpi/versions"

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- client side -------------------------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        token: str | None = None,
        to: tuple[str, str] | None = None,
    ) -> Any:
        """Send one request and return the ``data`` of a successful OCPI answer (else raise `SimError`)."""
        if self._session is None:
            raise RuntimeError("platform not started")
        headers = {
            "Authorization": _auth(token or self.token_c or ""),
            "X-Request-ID": secrets.token_hex(8),
            "X-Correlation-ID": secrets.token_hex(8),
        }
        if to is not None:
            headers |= {
                "OCPI-from-country-code": self.party.country_code,
                "OCPI-from-party-id": self.party.party_id,
                "OCPI-to-country-code": to[0],
                "OCPI-to-party-id": to[1],
            }
        payload = None
        if body is not None:
            payload = _ENCODER.encode(body)
            headers["Content-Type"] = "application/json"
        self.counters.sent += 1
        try:
            async with self._session.request(method, url, data=payload, headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.counters.failed += 1
            raise SimError(f"{method} {url}: {exc!r}") from exc
        try:
            answer = msgspec.json.decode(raw) if raw else None
        except msgspec.DecodeError:
            answer = None
        code = answer.get("status_code") if isinstance(answer, dict) else None
        if not (200 <= status < 300 and isinstance(code, int) and 1000 <= code < 2000):
            self.counters.failed += 1
            raise SimError(
                f"{method} {url}: HTTP {status}, {raw[:300]!r}",
                http_status=status,
                status_code=code if isinstance(code, int) else None,
            )
        return answer.get("data") if isinstance(answer, dict) else None

    async def register(self, hub_versions_url: str, token_a: str) -> None:
        """The credentials handshake with the hub as Sender, then learn the hub's endpoints."""
        self._hub_versions_url = hub_versions_url
        details = await self._discover(hub_versions_url, token_a)
        credentials_url = next(url for (module, _), url in details.items() if module == "credentials")
        theirs = await self.call("POST", credentials_url, body=self.credentials(), token=token_a)
        self.token_c = theirs["token"]
        self.hub_endpoints = await self._discover(hub_versions_url, theirs["token"])
        hub_role = next(r for r in theirs["roles"] if r["role"] == "HUB")
        self.hub_party = (hub_role["country_code"], hub_role["party_id"])

    async def update_credentials(self) -> None:
        """Credentials PUT to the hub (credentials §7.2.2): a new token for the hub to call us, a new one back.

        The hub reads our endpoints with the new token during the PUT, so it is accepted from before the PUT; the old
        one stays accepted until the hub calls a module with the new one, and comes back if the PUT fails.
        """
        if self.token_c is None:
            raise SimError("not registered with the hub")
        credentials_url = next(url for (module, _), url in self.hub_endpoints.items() if module == "credentials")
        versions_url = self._hub_versions_url
        old, self.previous_token_b = self.token_b, self.token_b
        self.token_b = secrets.token_urlsafe(24)
        try:
            theirs = await self.call("PUT", credentials_url, body=self.credentials())
        except SimError:
            self.token_b, self.previous_token_b = old, None
            raise
        self.token_c = theirs["token"]
        self.hub_endpoints = await self._discover(versions_url, theirs["token"])
        self.credentials_updates += 1

    async def _discover(self, versions_url: str, token: str) -> dict[tuple[str, str], str]:
        versions = await self.call("GET", versions_url, token=token)
        url = next(v["url"] for v in versions if v["version"] == VERSION)
        details = await self.call("GET", url, token=token)
        return {(e["identifier"], str(e.get("role", "")).upper()): e["url"] for e in details["endpoints"]}

    def hub_url(self, module: str, interface: str = "RECEIVER") -> str:
        return self.hub_endpoints[(module, interface)]

    def credentials(self) -> dict[str, Any]:
        return {
            "token": self.token_b,
            "url": self.versions_url,
            "roles": [
                {
                    "role": self.party.role,
                    "business_details": {"name": self.party.name},
                    "country_code": self.party.country_code,
                    "party_id": self.party.party_id,
                }
            ],
        }

    async def broadcast(self, module: str, path: str, body: Any) -> None:
        """PUT an object to the hub for every interested party (OCPI-to is the hub itself)."""
        if self.hub_party is None:
            raise SimError("not registered with the hub")
        await self.call("PUT", f"{self.hub_url(module)}/{path}", body=body, to=self.hub_party)

    # ---- server side -------------------------------------------------------------------------------------------

    @staticmethod
    def _presented(request: web.Request) -> set[str]:
        """The token of the Authorization header, as sent and Base64-decoded (the hub may send either form)."""
        value = request.headers.get("Authorization", "").removeprefix("Token ").strip()
        try:
            return {value, base64.b64decode(value, validate=True).decode()}
        except ValueError:
            return {value}

    def _authorized(self, request: web.Request) -> bool:
        accepted = {self.token_b} | ({self.previous_token_b} if self.previous_token_b else set())
        return bool(self._presented(request) & accepted)

    async def _versions(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _reply(status=401, status_code=2000, message="unknown token")
        return _reply([{"version": VERSION, "url": f"{self._base}/ocpi/{VERSION}"}])

    async def _details(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _reply(status=401, status_code=2000, message="unknown token")
        endpoints = [
            {"identifier": "credentials", "role": "RECEIVER", "url": f"{self._base}/ocpi/{VERSION}/credentials"}
        ]
        endpoints += [
            {"identifier": m, "role": r, "url": f"{self._base}/ocpi/{VERSION}/{m}/{r.lower()}"} for m, r in self.modules
        ]
        return _reply({"version": VERSION, "endpoints": endpoints})

    async def _credentials(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _reply(status=401, status_code=2000, message="unknown token")
        if request.method == "GET":
            return _reply(self.credentials())
        if request.method == "DELETE":
            self.token_c = None
            return _reply()
        if request.method == "PUT" and self.token_c is not None:
            return await self._credentials_put(request)
        return _reply(status=405, status_code=2000, message="this platform registers itself")

    async def _credentials_put(self, request: web.Request) -> web.Response:
        """The hub renews the credentials (credentials §7.2.2 PUT, the hub as Sender): read its endpoints with the
        token it sent, then answer with a new token for it; the old one works until the hub uses the new one."""
        try:
            body = await request.json()
            token, versions_url = str(body["token"]), str(body["url"])
            roles = list(body["roles"])
        except (ValueError, KeyError, TypeError):
            return _reply(status=400, status_code=2001, message="a Credentials object with token, url and roles")
        try:
            endpoints = await self._discover(versions_url, token)
        except SimError as exc:
            # Credentials §7.2.2: "the server ... shall respond with 3001 Unable to use the client's API".
            return _reply(status_code=3001, message=f"cannot read the hub's endpoints with the new token: {exc}")
        self.token_c, self.hub_endpoints, self._hub_versions_url = token, endpoints, versions_url
        hub_role = next((r for r in roles if isinstance(r, dict) and r.get("role") == "HUB"), None)
        if hub_role is not None:
            self.hub_party = (hub_role["country_code"], hub_role["party_id"])
        self.previous_token_b, self.token_b = self.token_b, secrets.token_urlsafe(24)
        self.credentials_updates += 1
        return _reply(self.credentials())

    async def _module(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _reply(status=401, status_code=2000, message="unknown token")
        module = request.match_info["module"]
        if self.previous_token_b is not None and self.token_b in self._presented(request):
            self.previous_token_b = None  # the hub has switched to the new token: the old one dies now
        self.counters.received += 1
        self.counters.by_module[module] = self.counters.by_module.get(module, 0) + 1
        body = await request.json() if request.can_read_body else None
        tail = [p for p in request.match_info["tail"].split("/") if p]
        headers = _reply_headers(request)
        incoming = Incoming(request.method, module, tail, body, request.headers, headers, dict(request.query))
        return await self.handle(incoming)

    async def handle(self, call: Incoming) -> web.Response:
        """Default: keep what is pushed, answer GETs from it (subclasses handle their modules first)."""
        method, module, tail, body, headers = call.method, call.module, call.tail, call.body, call.reply_headers
        key = "/".join([module, *tail])
        if method == "GET":
            if tail:
                found = self.objects.get(key)
                return _reply(found, headers=headers) if found else _reply(status=404, status_code=2003)
            return _reply([v for k, v in self.objects.items() if k.startswith(module + "/")], headers=headers)
        if method == "PUT":
            created = key not in self.objects
            self.objects[key] = body
            return _reply(status=201 if created else 200, headers=headers)
        if method == "PATCH" and isinstance(self.objects.get(key), dict) and isinstance(body, dict):
            self.objects[key] = {**self.objects[key], **body}
        return _reply(headers=headers)


def _reply_headers(request: web.Request) -> dict[str, str]:
    pairs = (
        ("OCPI-from-country-code", "OCPI-to-country-code"),
        ("OCPI-from-party-id", "OCPI-to-party-id"),
        ("OCPI-to-country-code", "OCPI-from-country-code"),
        ("OCPI-to-party-id", "OCPI-from-party-id"),
    )
    return {out: request.headers[name] for name, out in pairs if name in request.headers}


@dataclass
class ChargeSession:
    id: str
    emsp: tuple[str, str]
    token: dict[str, Any]
    location_id: str
    evse_uid: str
    start: datetime
    authorization_reference: str
    # COMMAND for START_SESSION; AUTH_REQUEST after a real-time authorization; WHITELIST from the token list.
    auth_method: str = "COMMAND"


@dataclass(frozen=True)
class Authorization:
    """What the CPO decided when a driver presented a token at the charger (`SimCpo.swipe`)."""

    uid: str
    whitelist: str | None  # the token's WhitelistType as the CPO knows it; None: the CPO does not know the token
    asked: bool  # whether the eMSP was asked in real time (through the hub)
    allowed: str  # AllowedType: ALLOWED, BLOCKED, EXPIRED, NO_CREDIT, NOT_ALLOWED; or UNKNOWN / NO_ANSWER
    authorization_reference: str | None = None
    session_id: str | None = None


#: Whitelist types for which the CPO asks the eMSP before charging (OCPI 2.2.1 §12.4.3).
REALTIME_WHITELISTS: Final = frozenset({"NEVER", "ALLOWED_OFFLINE"})


class SimCpo(SimPlatform):
    """Answers START_SESSION/STOP_SESSION, pushes Sessions and CDRs to the eMSP through the hub."""

    def __init__(self, party: Party, *, day_start: datetime, mismatch_every: int = 0) -> None:
        super().__init__(party, CPO_MODULES)
        self.day_start = day_start
        self.mismatch_every = mismatch_every
        self.sessions: dict[str, ChargeSession] = {}
        self.cdrs_sent = 0
        self.mismatches_sent = 0
        self.commands_answered = 0
        self.authorizations: list[Authorization] = []
        # Decides how long and how much a session charges: set by the world (kWh, minutes).
        self.plan: Callable[[str], tuple[Decimal, int]] = lambda _sid: (Decimal("10.00"), 60)

    @property
    def tariff_id(self) -> str:
        return f"{self.party.party_id}-AC"

    def location_id(self, index: int = 1) -> str:
        return f"{self.party.party_id}-LOC{index}"

    def location(self, index: int = 1) -> dict[str, Any]:
        cc, pid = self.party.country_code, self.party.party_id
        return {
            "country_code": cc,
            "party_id": pid,
            "id": self.location_id(index),
            "publish": True,
            "address": f"Demo Street {index}",
            "city": "Utrecht",
            "country": "NLD",
            "coordinates": {"latitude": "52.09074", "longitude": "5.12142"},
            "evses": [
                {
                    "uid": f"{pid}-EVSE{index}",
                    "evse_id": f"{cc}*{pid}*E{index}",
                    "status": "AVAILABLE",
                    "connectors": [
                        {
                            "id": "1",
                            "standard": "IEC_62196_T2",
                            "format": "SOCKET",
                            "power_type": "AC_3_PHASE",
                            "max_voltage": 230,
                            "max_amperage": 32,
                            "tariff_ids": [self.tariff_id],
                            "last_updated": stamp(self.day_start),
                        }
                    ],
                    "last_updated": stamp(self.day_start),
                }
            ],
            "time_zone": "Europe/Amsterdam",
            "last_updated": stamp(self.day_start),
        }

    def tariff(self) -> dict[str, Any]:
        return pricing.tariff(self.party.country_code, self.party.party_id, self.tariff_id, stamp(self.day_start))

    async def publish(self) -> None:
        cc, pid = self.party.country_code, self.party.party_id
        await self.broadcast("tariffs", f"{cc}/{pid}/{self.tariff_id}", self.tariff())
        await self.broadcast("locations", f"{cc}/{pid}/{self.location_id()}", self.location())

    async def handle(self, call: Incoming) -> web.Response:
        method, module, tail, body, headers = call.method, call.module, call.tail, call.body, call.reply_headers
        if module == "commands" and method == "POST" and tail:
            emsp = (call.headers.get("OCPI-from-country-code", ""), call.headers.get("OCPI-from-party-id", ""))
            command = tail[0].upper()
            if command not in ("START_SESSION", "STOP_SESSION"):
                return _reply({"result": "NOT_SUPPORTED", "timeout": 30}, headers=headers)
            self.commands_answered += 1
            self.spawn(self._carry_out(command, body, emsp))
            return _reply({"result": "ACCEPTED", "timeout": 30}, headers=headers)
        return await super().handle(call)

    async def _carry_out(self, command: str, body: dict[str, Any], emsp: tuple[str, str]) -> None:
        """Send the CommandResult to the response_url, then the Session (and at the stop, the CDR)."""
        try:
            await self.call("POST", body["response_url"], body={"result": "ACCEPTED"}, to=emsp)
            if command == "START_SESSION":
                await self._start(body, emsp)
            else:
                await self._stop(body["session_id"])
        except SimError:
            pass  # counted in counters.failed; the eMSP times out on this session

    async def _start(self, body: dict[str, Any], emsp: tuple[str, str]) -> None:
        cc, pid = self.party.country_code, self.party.party_id
        session_id = f"{pid}-S{len(self.sessions) + 1:04d}-{secrets.token_hex(2)}"
        index = len(self.sessions)
        start = self.day_start + timedelta(minutes=(index * 37) % (22 * 60))
        session = ChargeSession(
            session_id, emsp, body["token"], body["location_id"], body.get("evse_uid") or f"{pid}-EVSE1", start,
            body.get("authorization_reference") or session_id,
        )  # fmt: skip
        self.sessions[session_id] = session
        doc = self._session_doc(session, Decimal(0), None, "ACTIVE")
        await self.call("PUT", f"{self.hub_url('sessions')}/{cc}/{pid}/{session_id}", body=doc, to=emsp)

    def _cdr_token(self, session: ChargeSession) -> dict[str, Any]:
        token = session.token
        return {
            "country_code": token["country_code"],
            "party_id": token["party_id"],
            "uid": token["uid"],
            "type": token["type"],
            "contract_id": token["contract_id"],
        }

    def _session_doc(self, session: ChargeSession, kwh: Decimal, end: datetime | None, status: str) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "country_code": self.party.country_code,
            "party_id": self.party.party_id,
            "id": session.id,
            "start_date_time": stamp(session.start),
            "kwh": kwh,
            "cdr_token": self._cdr_token(session),
            "auth_method": session.auth_method,
            "authorization_reference": session.authorization_reference,
            "location_id": session.location_id,
            "evse_uid": session.evse_uid,
            "connector_id": "1",
            "currency": pricing.CURRENCY,
            "status": status,
            "last_updated": stamp(end or session.start),
        }
        if end is not None:
            doc["end_date_time"] = stamp(end)
        return doc

    async def _stop(self, session_id: str) -> None:
        cc, pid = self.party.country_code, self.party.party_id
        session = self.sessions[session_id]
        kwh, minutes = self.plan(session_id)
        end = session.start + timedelta(minutes=minutes)
        patch = {"status": "COMPLETED", "kwh": kwh, "end_date_time": stamp(end), "last_updated": stamp(end)}
        await self.call("PATCH", f"{self.hub_url('sessions')}/{cc}/{pid}/{session_id}", body=patch, to=session.emsp)
        self.cdrs_sent += 1
        wrong = self.mismatch_every > 0 and self.cdrs_sent % self.mismatch_every == 0
        await self.call("POST", self.hub_url("cdrs"), body=self.cdr(session, kwh, end, wrong=wrong), to=session.emsp)

    def known_token(self, uid: str, token_type: str = "RFID") -> dict[str, Any] | None:
        """A token the eMSPs pushed to us through the hub (the CPO's token cache, tokens module Receiver)."""
        for key, value in self.objects.items():
            token: dict[str, Any] = value if key.startswith("tokens/") and isinstance(value, dict) else {}
            if token.get("uid") == uid and token.get("type", "RFID") == token_type:
                return token
        return None

    async def swipe(self, uid: str, *, token_type: str = "RFID", location_index: int = 1) -> Authorization:
        """A driver presents a token at the charger: authorize it as its whitelist type says, start a session if
        allowed (pushed to the eMSP through the hub) and return the decision (OCPI 2.2.1 §12.4.3).

        NEVER: only real-time authorization, no answer means no charge. ALLOWED_OFFLINE: real time, but allowed when
        the eMSP cannot be reached. ALWAYS and ALLOWED: from the token list, without asking. Unknown token: real time,
        the hub finds the eMSP by uid and type (open routing).
        """
        token = self.known_token(uid, token_type)
        whitelist = str(token.get("whitelist")) if token is not None else None
        if token is not None and whitelist not in REALTIME_WHITELISTS:
            allowed = "ALLOWED" if token.get("valid") else "BLOCKED"
            return await self._decided(
                Authorization(uid, whitelist, False, allowed), token, "WHITELIST", location_index
            )
        location_id, evse_uid = self.location_id(location_index), f"{self.party.party_id}-EVSE{location_index}"
        to = (token["country_code"], token["party_id"]) if token is not None else None
        url = f"{self.hub_url('tokens', 'SENDER')}/{uid}/authorize?type={token_type}"
        try:
            info = await self.call("POST", url, body={"location_id": location_id, "evse_uids": [evse_uid]}, to=to)
        except SimError as exc:
            if not exc.unanswered:  # a refusal: 2004 unknown token, or the hub's 4001 unknown receiver
                return await self._decided(Authorization(uid, whitelist, True, "UNKNOWN"), None, "", location_index)
            # §12.4.3 ALLOWED_OFFLINE: "when the CPO cannot get a response from the eMSP ... allow this Token".
            offline = "ALLOWED" if whitelist == "ALLOWED_OFFLINE" and token is not None else "NO_ANSWER"
            decision = Authorization(uid, whitelist, True, offline)
            return await self._decided(decision, token, "WHITELIST", location_index)
        allowed = str(info.get("allowed"))
        reference = info.get("authorization_reference")
        decision = Authorization(uid, whitelist, True, allowed, reference if isinstance(reference, str) else None)
        return await self._decided(decision, info.get("token") or token, "AUTH_REQUEST", location_index)

    async def _decided(
        self, decision: Authorization, token: dict[str, Any] | None, method: str, location_index: int
    ) -> Authorization:
        """Record the decision; when allowed, start the session and tell the eMSP (Session PUT through the hub)."""
        if decision.allowed != "ALLOWED" or token is None:
            self.authorizations.append(decision)
            return decision
        cc, pid = self.party.country_code, self.party.party_id
        session_id = f"{pid}-S{len(self.sessions) + 1:04d}-{secrets.token_hex(2)}"
        start = self.day_start + timedelta(minutes=(len(self.sessions) * 37) % (22 * 60))
        reference = decision.authorization_reference or session_id
        emsp = (token["country_code"], token["party_id"])
        session = ChargeSession(
            session_id, emsp, token, self.location_id(location_index), f"{pid}-EVSE{location_index}", start, reference,
            auth_method=method,
        )  # fmt: skip
        self.sessions[session_id] = session
        doc = self._session_doc(session, Decimal(0), None, "ACTIVE")
        await self.call("PUT", f"{self.hub_url('sessions')}/{cc}/{pid}/{session_id}", body=doc, to=emsp)
        decision = Authorization(
            decision.uid, decision.whitelist, decision.asked, decision.allowed, reference, session_id
        )
        self.authorizations.append(decision)
        return decision

    async def unplug(self, session_id: str) -> None:
        """The driver ends a session started at the charger: Session PATCH, then the CDR, to the eMSP."""
        await self._stop(session_id)

    def cdr(self, session: ChargeSession, kwh: Decimal, end: datetime, *, wrong: bool = False) -> dict[str, Any]:
        """The CDR of a finished session; ``wrong`` states a price €0.50 too high (clearing shows a mismatch)."""
        location = self.location()
        evse = location["evses"][0]
        connector = evse["connectors"][0]
        costs = pricing.session_cost(kwh)
        if wrong:
            self.mismatches_sent += 1
            total = costs["total_cost"]
            costs["total_cost"] = {k: v + Decimal("0.50") for k, v in total.items()}
        hours = (Decimal(int((end - session.start).total_seconds())) / 3600).quantize(Decimal("0.0001"))
        return {
            "country_code": self.party.country_code,
            "party_id": self.party.party_id,
            "id": f"CDR-{session.id}",
            "start_date_time": stamp(session.start),
            "end_date_time": stamp(end),
            "session_id": session.id,
            "cdr_token": self._cdr_token(session),
            "auth_method": session.auth_method,
            "authorization_reference": session.authorization_reference,
            "cdr_location": {
                "id": location["id"],
                "address": location["address"],
                "city": location["city"],
                "country": location["country"],
                "coordinates": location["coordinates"],
                "evse_uid": evse["uid"],
                "evse_id": evse["evse_id"],
                "connector_id": connector["id"],
                "connector_standard": connector["standard"],
                "connector_format": connector["format"],
                "connector_power_type": connector["power_type"],
            },
            "currency": pricing.CURRENCY,
            "tariffs": [self.tariff()],
            "charging_periods": [
                {
                    "start_date_time": stamp(session.start),
                    "dimensions": [{"type": "ENERGY", "volume": kwh}, {"type": "TIME", "volume": hours}],
                    "tariff_id": self.tariff_id,
                }
            ],
            **costs,
            "total_energy": kwh,
            "total_time": hours,
            "last_updated": stamp(end),
        }


class SimEmsp(SimPlatform):
    """Broadcasts its Tokens and starts/stops sessions with commands; waits for the Sessions and CDRs to arrive."""

    def __init__(self, party: Party, *, day_start: datetime) -> None:
        super().__init__(party, EMSP_MODULES)
        self.day_start = day_start
        self.command_results: dict[str, str] = {}
        self.cdrs: dict[str, dict[str, Any]] = {}
        # The WhitelistType of each token index (default ALLOWED), and token uids the eMSP refuses in real time.
        self.whitelists: dict[int, str] = {}
        self.blocked: set[str] = set()
        # Real-time authorizations answered: authorization_reference → (uid, allowed, location references).
        self.authorizations: dict[str, tuple[str, str, Any]] = {}
        # Seconds the eMSP's backend takes to answer an authorization: above the hub's timeout it is "no answer".
        self.authorize_delay = 0.0
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}

    def token(self, index: int = 1) -> dict[str, Any]:
        cc, pid = self.party.country_code, self.party.party_id
        return {
            "country_code": cc,
            "party_id": pid,
            "uid": f"{pid}-RFID{index:03d}",
            "type": "RFID",
            "contract_id": f"{cc}-{pid}-C{index:05d}",
            "issuer": self.party.name,
            "valid": True,
            "whitelist": self.whitelists.get(index, "ALLOWED"),
            "last_updated": stamp(self.day_start),
        }

    def _own_token(self, uid: str, token_type: str) -> dict[str, Any] | None:
        prefix = f"{self.party.party_id}-RFID"
        if token_type != "RFID" or not uid.startswith(prefix) or not uid.removeprefix(prefix).isdigit():
            return None
        return self.token(int(uid.removeprefix(prefix)))

    async def _authorize(self, call: Incoming) -> web.Response:
        """Real-time authorization (OCPI 2.2.1 §12.2.2): ``POST .../{uid}/authorize[?type=TYPE]`` with optional
        LocationReferences; an AuthorizationInfo (§12.3.1) back, or 404 with 2004 for a token we do not know."""
        uid, token_type = call.tail[-2], call.query.get("type", "RFID")
        if self.authorize_delay:
            await asyncio.sleep(self.authorize_delay)
        token = self._own_token(uid, token_type)
        if token is None:
            return _reply(status=404, status_code=2004, message=f"unknown token {uid}", headers=call.reply_headers)
        allowed = "BLOCKED" if uid in self.blocked or not token["valid"] else "ALLOWED"
        reference = f"AUTH-{secrets.token_hex(6)}"
        self.authorizations[reference] = (uid, allowed, call.body)
        info: dict[str, Any] = {"allowed": allowed, "token": token, "authorization_reference": reference}
        if isinstance(call.body, dict) and call.body.get("location_id"):
            info["location"] = call.body
        return _reply(info, headers=call.reply_headers)

    async def publish(self, count: int = 3) -> None:
        cc, pid = self.party.country_code, self.party.party_id
        for index in range(1, count + 1):
            token = self.token(index)
            await self.broadcast("tokens", f"{cc}/{pid}/{token['uid']}?type=RFID", token)

    def _expect(self, key: str) -> asyncio.Future[dict[str, Any]]:
        future = self._waiting.get(key)
        if future is None:
            future = self._waiting[key] = asyncio.get_running_loop().create_future()
        return future

    def _arrived(self, key: str, value: dict[str, Any]) -> None:
        future = self._expect(key)
        if not future.done():
            future.set_result(value)

    async def charge(self, cpo: SimCpo, token_index: int, *, timeout: float = 15.0) -> dict[str, Any]:
        """START_SESSION at ``cpo`` through the hub, wait for the Session, STOP_SESSION, wait for the CDR."""
        to = (cpo.party.country_code, cpo.party.party_id)
        reference = secrets.token_hex(8)
        commands = self.hub_url("commands")
        own = f"{self.versions_url.removesuffix('/versions')}/{VERSION}/commands/sender"
        start = {
            "response_url": f"{own}/START_SESSION/{reference}",
            "token": self.token(token_index),
            "location_id": cpo.location_id(),
            "evse_uid": f"{cpo.party.party_id}-EVSE1",
            "authorization_reference": reference,
        }
        answer = await self.call("POST", f"{commands}/START_SESSION", body=start, to=to)
        if answer.get("result") != "ACCEPTED":
            raise SimError(f"START_SESSION answered {answer}")
        session = await asyncio.wait_for(self._expect("session:" + reference), timeout)
        stop = {"response_url": f"{own}/STOP_SESSION/{reference}", "session_id": session["id"]}
        answer = await self.call("POST", f"{commands}/STOP_SESSION", body=stop, to=to)
        if answer.get("result") != "ACCEPTED":
            raise SimError(f"STOP_SESSION answered {answer}")
        return await asyncio.wait_for(self._expect("cdr:" + session["id"]), timeout)

    async def handle(self, call: Incoming) -> web.Response:
        method, module, tail, body, headers = call.method, call.module, call.tail, call.body, call.reply_headers
        if module == "commands" and method == "POST":
            self.command_results[tail[-1] if tail else ""] = str((body or {}).get("result"))
            return _reply(headers=headers)
        if module == "tokens" and method == "POST" and tail[-1:] == ["authorize"] and len(tail) >= 2:
            return await self._authorize(call)
        if module == "sessions" and method == "PUT" and isinstance(body, dict):
            reference = body.get("authorization_reference")
            if isinstance(reference, str):
                self._arrived("session:" + reference, body)
        if module == "cdrs" and method == "POST" and isinstance(body, dict):
            self.cdrs[str(body.get("id"))] = body
            self._arrived("cdr:" + str(body.get("session_id")), body)
            location = f"{self.versions_url.removesuffix('/versions')}/{VERSION}/cdrs/receiver/{body.get('id')}"
            return _reply(status=201, headers={**headers, "Location": location})
        return await super().handle(call)
