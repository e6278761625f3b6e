"""One simulated OCPI 2.2.1 platform (a CPO or an eMSP) on loopback: server and client in one object.

It registers with the hub as the Sender of the credentials handshake (credentials §"Registration") using a token A
the hub issued, then sends functional-module requests to the hub with OCPI-from/to routing headers.
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


class SimError(Exception):
    """The hub refused or failed a request of a simulated platform."""


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
        self.token_c: str | None = None  # we call the hub with this
        self.hub_endpoints: dict[tuple[str, str], str] = {}
        self.hub_party: tuple[str, str] | None = None
        self.counters = Counters()
        self.objects: dict[str, Any] = {}
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._base = ""
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
            raise SimError(f"{method} {url}: HTTP {status}, {raw[:300]!r}")
        return answer.get("data") if isinstance(answer, dict) else None

    async def register(self, hub_versions_url: str, token_a: str) -> None:
        """The credentials handshake with the hub as Sender, then learn the hub's endpoints."""
        details = await self._discover(hub_versions_url, token_a)
        credentials_url = next(url for (module, _), url in details.items() if module == "credentials")
        theirs = await self.call("POST", credentials_url, body=self.credentials(), token=token_a)
        self.token_c = theirs["token"]
        self.hub_endpoints = await self._discover(hub_versions_url, theirs["token"])
        hub_role = next(r for r in theirs["roles"] if r["role"] == "HUB")
        self.hub_party = (hub_role["country_code"], hub_role["party_id"])

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

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        value = header.removeprefix("Token ").strip()
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except ValueError:
            decoded = value
        return self.token_b in (decoded, value)

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
        return _reply(status=405, status_code=2000, message="this platform registers itself")

    async def _module(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _reply(status=401, status_code=2000, message="unknown token")
        module = request.match_info["module"]
        self.counters.received += 1
        self.counters.by_module[module] = self.counters.by_module.get(module, 0) + 1
        body = await request.json() if request.can_read_body else None
        tail = [p for p in request.match_info["tail"].split("/") if p]
        headers = _reply_headers(request)
        return await self.handle(Incoming(request.method, module, tail, body, request.headers, headers))

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
            "auth_method": "COMMAND",
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
            "auth_method": "COMMAND",
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
            "whitelist": "ALLOWED",
            "last_updated": stamp(self.day_start),
        }

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
