"""Deciding where a functional-module request goes and taking it there (hub notes §1.9, DESIGN §5).

Four scenarios, chosen by the ``OCPI-to-*`` headers:
- TO names another party: direct routing to the platform that hosts it;
- TO names the hub: broadcast push (stored, answered, fanned out) or GET All from the hub's store;
- no TO: open routing, the receiver follows from the content (token, session, CDR token, command target);
- anything else is answered with the 4xxx hub error that says why the hub could not deliver.

Bodies travel as raw bytes. Only what routing needs is decoded, with small view Structs.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import msgspec
import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub.objects.bulk import cdr_insert, session_put
from hub.objects.models import LocationRow, SessionRow, TokenRow
from hub.objects.service import ObjectStore
from hub.ocpi.codec import WireError, decode
from hub.ocpi.envelope import OcpiStatus
from hub.ocpi.types import ci_key, parse_datetime
from hub.parties.models import ConnectionStatus
from hub.platform.clock import Clock
from hub.platform.groupcommit import GroupCommit
from hub.platform.web import OcpiError
from routing.forwarder import Forwarder, HubRoutingError, Relayed
from routing.links import CommandLink, LinkSigner, SignedTarget
from routing.paths import CLIENT_OWNED, ModulePath
from routing.table import Caller, PartyKey, PlatformRoute, RoutingSnapshot, RoutingTable
from routing.tokenowners import TokenOwners

log = structlog.get_logger("routing")

# How long a directly-routed next page link stays usable; paging through a large set takes a while.
PAGE_LINK_TTL = timedelta(hours=1)
# A command mapping lives until the CPO's CommandResponse.timeout says otherwise (mod_commands §CommandResponse).
COMMAND_LINK_TTL = timedelta(minutes=10)
RESULT_GRACE = timedelta(minutes=5)


@dataclass(slots=True)
class Inbound:
    """One request on a functional-module URL of the hub, as the ASGI layer read it."""

    method: str
    path: ModulePath
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    caller: Caller
    correlation_id: str
    # Filled in while routing, for the message log.
    sender: PartyKey | None = None
    receiver: PartyKey | None = None
    target_platform_id: int | None = None
    notes: dict[str, Any] = field(default_factory=dict)


class _PartyRef(msgspec.Struct):
    country_code: str
    party_id: str


class _CdrTokenView(msgspec.Struct):
    """The part of a Session or CDR that says whose customer charged (mod_sessions, mod_cdrs: cdr_token)."""

    cdr_token: _PartyRef
    country_code: str | None = None
    party_id: str | None = None


class _CommandView(msgspec.Struct):
    response_url: str | None = None
    location_id: str | None = None
    session_id: str | None = None
    reservation_id: str | None = None
    expiry_date: str | None = None


class _CommandResponseView(msgspec.Struct):
    result: str | None = None
    timeout: int | None = None


class _EnvelopeData(msgspec.Struct):
    data: msgspec.Raw = msgspec.Raw(b"null")


def _hub_error(status: int, message: str) -> HubRoutingError:
    return HubRoutingError(status, message)


def _invalid(message: str) -> OcpiError:
    return OcpiError(OcpiStatus.INVALID_OR_MISSING_PARAMETERS, message)


class Router:
    def __init__(
        self,
        *,
        table: RoutingTable,
        forwarder: Forwarder,
        sessions: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        signer: LinkSigner,
        clock: Clock,
        public_url: str,
        hub_party: PartyKey,
        forward_timeout: float,
        authorize_timeout: float,
        hub_handler: Callable[[Inbound, PartyKey], Awaitable[Relayed]],
    ) -> None:
        self._table = table
        self._forwarder = forwarder
        self._sessions = sessions
        #: Stored Sessions and CDRs share transactions here (group commit); its counters are in /metrics.
        self.writes = GroupCommit(sessions)
        #: Token owners for open-routed authorize; the hub's store forgets an entry when that token is pushed.
        self.token_owners = TokenOwners()
        self._store = store
        self._signer = signer
        self._clock = clock
        self.public_url = self._public_url = public_url
        self.hub_party = hub_party
        self._forward_timeout = forward_timeout
        self._authorize_timeout = authorize_timeout
        self._hub_handler = hub_handler
        # Told when a receiver cannot be reached (4003), so HubClientInfo can show it OFFLINE; set by the app.
        self.on_unreachable: Callable[[int], None] | None = None
        # Told when a receiver shown OFFLINE answered after all, so HubClientInfo shows it CONNECTED again.
        self.on_reachable: Callable[[int], None] | None = None

    # ---- entry ---------------------------------------------------------------------------------------------------

    async def handle(self, req: Inbound) -> Relayed:
        snapshot = self._table.snapshot
        req.sender = sender = self._sender(req)
        to = self._to(req)
        if req.method in ("PUT", "PATCH", "POST"):
            req.body = unwrap_single(req.body)
        if to is None:
            return await self._open_route(req, snapshot, sender)
        if to == self.hub_party:
            req.receiver = to
            return await self._hub_handler(req, sender)
        return await self._direct(req, snapshot, sender, to, to_header_sent=True)

    def _sender(self, req: Inbound) -> PartyKey:
        """The requesting party: OCPI-from-* must be one of the caller's own parties (no spoofing, DESIGN §5)."""
        cc, pid = req.headers.get("ocpi-from-country-code"), req.headers.get("ocpi-from-party-id")
        own = req.caller.platform.party_keys
        if not cc and not pid:
            # transport §routing headers are required on functional modules; a platform that hosts one party is
            # identified by its token alone, so the hub infers them (be liberal, DESIGN §5).
            if len(own) == 1:
                return next(iter(own))
            raise _invalid(
                "OCPI-from-country-code and OCPI-from-party-id are required for a platform with several parties"
            )
        if not cc or not pid:
            raise _invalid("OCPI-from-country-code and OCPI-from-party-id must be sent together")
        key = (ci_key(cc), ci_key(pid))
        if key not in own:
            log.warning("spoofed OCPI-from refused", platform_id=req.caller.platform.platform_id, claimed=key)
            raise OcpiError(
                OcpiStatus.CLIENT_ERROR, f"OCPI-from {cc}/{pid} is not one of the parties registered with your token"
            )
        return key

    @staticmethod
    def _to(req: Inbound) -> PartyKey | None:
        cc, pid = req.headers.get("ocpi-to-country-code"), req.headers.get("ocpi-to-party-id")
        if not cc and not pid:
            return None
        if not cc or not pid:
            raise _invalid("OCPI-to-country-code and OCPI-to-party-id must be sent together")
        return (ci_key(cc), ci_key(pid))

    def _check_url_owner(self, req: Inbound, sender: PartyKey) -> None:
        """Client-owned pushes carry the owner in the URL; it must be the caller's (transport §client owned)."""
        path = req.path
        if (
            path.interface != "RECEIVER"
            or path.module not in CLIENT_OWNED
            or req.method not in ("PUT", "PATCH", "DELETE")
        ):
            return
        if len(path.tail) < 3:
            raise _invalid(f"{req.method} {path.module} needs /{{country_code}}/{{party_id}}/{{id}} in the URL")
        owner = (ci_key(path.tail[0]), ci_key(path.tail[1]))
        if owner not in req.caller.platform.party_keys:
            raise _invalid(f"the URL names {path.tail[0]}/{path.tail[1]}, which is not one of your parties")
        if owner != sender:
            raise _invalid(f"the URL names {path.tail[0]}/{path.tail[1]} but OCPI-from is {sender[0]}/{sender[1]}")

    # ---- direct routing --------------------------------------------------------------------------------------------

    async def _direct(
        self, req: Inbound, snapshot: RoutingSnapshot, sender: PartyKey, to: PartyKey, *, to_header_sent: bool
    ) -> Relayed:
        req.receiver = to
        target = snapshot.platform_of(to)
        if target is None:
            raise _hub_error(OcpiStatus.UNKNOWN_RECEIVER, f"unknown receiver {to[0]}/{to[1]}")
        if not snapshot.permitted(sender, to):
            raise _hub_error(
                OcpiStatus.UNKNOWN_RECEIVER,
                f"no roaming agreement between {sender[0]}/{sender[1]} and {to[0]}/{to[1]}",
            )
        req.target_platform_id = target.platform_id
        self._check_url_owner(req, sender)
        module, interface = req.path.module, req.path.interface
        base = target.endpoint(module, interface)
        if base is None:
            raise _hub_error(OcpiStatus.UNKNOWN_RECEIVER, f"{to[0]}/{to[1]} offers no {module} {interface} endpoint")
        body = req.body
        query = req.query
        timeout = self._forward_timeout
        link: CommandLink | None = None
        if module == "sessions" and interface == "RECEIVER" and req.method in ("PUT", "PATCH"):
            await self._record_session(req, sender)
        elif module == "cdrs" and interface == "RECEIVER" and req.method == "POST":
            await self._record_cdr(req, sender)
        elif module == "tokens" and interface == "SENDER" and req.path.tail[-1:] == ("authorize",):
            timeout = self._authorize_timeout
        elif module == "commands" and interface == "RECEIVER" and req.method == "POST":
            body, link = await self._rewrite_command(req, sender, to)
        elif module == "chargingprofiles" and interface == "RECEIVER":
            body, query, link = await self._rewrite_profile_request(req, sender, to)
        url = base + "".join("/" + _quote(part) for part in req.path.tail) + (f"?{query}" if query else "")
        headers = self._forward_headers(req, sender, to, to_header_sent=to_header_sent)
        try:
            # A bodiless GET/DELETE goes on without a body, so without Content-Type (transport §request format).
            relayed = await self._forwarder.forward(
                target, req.method, url, body=body or None, headers=headers, timeout=timeout, module=module
            )
        except HubRoutingError as exc:
            if exc.status_code == OcpiStatus.CONNECTION_PROBLEM and self.on_unreachable is not None:
                self.on_unreachable(target.platform_id)
            raise
        if target.connection_status == ConnectionStatus.OFFLINE and self.on_reachable is not None:
            self.on_reachable(target.platform_id)
        if link is not None:
            await self._after_command_response(link, relayed)
        return self._rewrite_response_links(relayed, target, req.caller.platform, sender, to)

    def _forward_headers(self, req: Inbound, sender: PartyKey, to: PartyKey, *, to_header_sent: bool) -> dict[str, str]:
        h = req.headers
        # transport §routing: the hub keeps the routing headers (originals when the requester sent them) and the
        # correlation id; X-Request-ID is new per hop (set by the client).
        headers = {
            "X-Correlation-ID": req.correlation_id,
            "OCPI-from-country-code": h.get("ocpi-from-country-code") or sender[0],
            "OCPI-from-party-id": h.get("ocpi-from-party-id") or sender[1],
            "OCPI-to-country-code": h.get("ocpi-to-country-code") if to_header_sent else to[0],
            "OCPI-to-party-id": h.get("ocpi-to-party-id") if to_header_sent else to[1],
        }
        return {k: v for k, v in headers.items() if v is not None}

    def _rewrite_response_links(
        self,
        relayed: Relayed,
        target: PlatformRoute,
        requester: PlatformRoute,
        requester_party: PartyKey | None,
        target_party: PartyKey | None,
    ) -> Relayed:
        link = relayed.headers.get("link")
        location = relayed.headers.get("location")
        if not link and not location:
            return relayed
        headers = dict(relayed.headers)
        expires = int((self._clock.now() + PAGE_LINK_TTL).timestamp())

        def proxy_url(url: str) -> str:
            signed = SignedTarget(
                url, target.platform_id, requester.platform_id, expires, requester_party, target_party
            )
            return f"{self._public_url}/ocpi/2.2.1/hub/proxy/{self._signer.sign(signed)}"

        if link:
            headers["link"] = _rewrite_link_header(link, proxy_url)
        if location:
            headers["location"] = proxy_url(location.strip())
        return Relayed(relayed.status, headers, relayed.body)

    async def proxy_get(self, caller: Caller, token: str, correlation_id: str) -> Relayed:
        """GET a partner URL the hub handed out as a signed link (next page, CDR Location)."""
        target_link = self._signer.verify(token, now=self._clock.now())
        if target_link is None or target_link.requester_platform_id != caller.platform.platform_id:
            raise OcpiError(OcpiStatus.CLIENT_ERROR, "unknown or expired hub link", http_status=404)
        target = self._table.snapshot.platforms.get(target_link.target_platform_id)
        if target is None:
            raise _hub_error(OcpiStatus.CONNECTION_PROBLEM, "the platform behind this link is no longer connected")
        headers = {"X-Correlation-ID": correlation_id}
        frm, to = target_link.requester_party, target_link.target_party
        if frm is not None and to is not None:
            # The same routing headers as the request that produced the link: the next page of a multi-party
            # platform's list belongs to the party the requester addressed (transport §routing headers).
            headers |= {
                "OCPI-from-country-code": frm[0],
                "OCPI-from-party-id": frm[1],
                "OCPI-to-country-code": to[0],
                "OCPI-to-party-id": to[1],
            }
        relayed = await self._forwarder.forward(
            target,
            "GET",
            target_link.url,
            body=None,
            headers=headers,
            timeout=self._forward_timeout,
            module="proxy",
        )
        return self._rewrite_response_links(relayed, target, caller.platform, frm, to)

    # ---- recording what passes (DESIGN §4: every Session and CDR) ----------------------------------------------------

    async def _record_session(self, req: Inbound, sender: PartyKey) -> None:
        tail = req.path.tail
        if len(tail) != 3:
            raise _invalid("sessions push URL must be /{country_code}/{party_id}/{session_id}")
        # Stored before it is forwarded (DESIGN §4), in a transaction shared with concurrent writes (group commit). A
        # PUT is checked here, in the request, and written in one statement with the other PUTs of its transaction.
        store, body = self._store, req.body
        if req.method == "PUT":
            await self.writes.run_bulk(store.put_sessions, session_put(tail[0], tail[1], tail[2], body))
        else:
            await self.writes.run(lambda session: store.patch_session(session, tail[0], tail[1], tail[2], body))

    async def _record_cdr(self, req: Inbound, sender: PartyKey) -> None:
        view = self._view(req.body, _CdrTokenView, "CDR")
        if view.country_code is None or view.party_id is None:
            raise _invalid("CDR without country_code/party_id")
        owner = (ci_key(view.country_code), ci_key(view.party_id))
        if owner != sender:
            raise _invalid(
                f"the CDR belongs to {view.country_code}/{view.party_id} but OCPI-from is {sender[0]}/{sender[1]}"
            )
        await self.writes.run_bulk(self._store.store_cdrs, cdr_insert(view.country_code, view.party_id, req.body))

    @staticmethod
    def _view(body: bytes, view: type[Any], what: str) -> Any:
        try:
            return decode(body, view)
        except WireError as exc:
            http_status = 400 if exc.__class__.__name__ == "InvalidJson" else 200
            raise OcpiError(
                OcpiStatus.INVALID_OR_MISSING_PARAMETERS, f"{what}: {exc.message}", http_status=http_status
            ) from exc

    # ---- commands and charging profiles: response_url rewriting ---------------------------------------------------

    async def _new_link(
        self,
        req: Inbound,
        sender: PartyKey,
        to: PartyKey,
        *,
        response_url: str,
        command: str,
        reservation_id: str | None = None,
        expires_at: datetime | None = None,
    ) -> CommandLink:
        now = self._clock.now()
        link = CommandLink(
            id=secrets.token_hex(16),
            module=req.path.module,
            command=command,
            requester_platform_id=req.caller.platform.platform_id,
            requester_country_code=sender[0],
            requester_party_id=sender[1],
            target_country_code=to[0],
            target_party_id=to[1],
            response_url=response_url,
            reservation_id=reservation_id,
            expires_at=expires_at or now + COMMAND_LINK_TTL,
            created_at=now,
            results=0,
        )
        async with self._sessions.begin() as session:
            session.add(link)
        return link

    def _result_url(self, link: CommandLink) -> str:
        return f"{self._public_url}/ocpi/2.2.1/hub/results/{link.id}"

    async def _rewrite_command(self, req: Inbound, sender: PartyKey, to: PartyKey) -> tuple[bytes, CommandLink | None]:
        command = req.path.tail[0] if req.path.tail else ""
        fields = self._top_level(req.body, "command")
        view = self._view(req.body, _CommandView, "command")
        if view.response_url is None:
            raise _invalid("command without response_url")
        expires_at = None
        if command == "RESERVE_NOW" and view.expiry_date:
            # A reservation's late results (e.g. CANCELED_RESERVATION) may come until it expires (mod_commands).
            try:
                expires_at = parse_datetime(view.expiry_date) + RESULT_GRACE
            except ValueError as exc:
                raise _invalid(f"expiry_date: {exc}") from exc
        link = await self._new_link(
            req,
            sender,
            to,
            response_url=view.response_url,
            command=command,
            # A CiString (mod_commands §ReserveNow): kept as its key so CANCEL_RESERVATION finds it in any case.
            reservation_id=ci_key(view.reservation_id) if command == "RESERVE_NOW" and view.reservation_id else None,
            expires_at=expires_at,
        )
        fields["response_url"] = msgspec.Raw(msgspec.json.encode(self._result_url(link)))
        return msgspec.json.encode(fields), link

    async def _rewrite_profile_request(
        self, req: Inbound, sender: PartyKey, to: PartyKey
    ) -> tuple[bytes, str, CommandLink | None]:
        if req.method == "PUT":
            fields = self._top_level(req.body, "charging profile")
            raw = fields.get("response_url")
            if raw is None:
                raise _invalid("SetChargingProfile without response_url")
            link = await self._new_link(req, sender, to, response_url=msgspec.json.decode(raw, type=str), command="SET")
            fields["response_url"] = msgspec.Raw(msgspec.json.encode(self._result_url(link)))
            return msgspec.json.encode(fields), req.query, link
        if req.method in ("GET", "DELETE"):
            pairs = parse_qsl(req.query, keep_blank_values=True)
            original = next((v for k, v in pairs if k == "response_url"), None)
            if original is None:
                raise _invalid(f"{req.method} chargingprofiles needs a response_url query parameter")
            command = "GET" if req.method == "GET" else "CLEAR"
            link = await self._new_link(req, sender, to, response_url=original, command=command)
            pairs = [(k, self._result_url(link) if k == "response_url" else v) for k, v in pairs]
            return req.body, urlencode(pairs), link
        return req.body, req.query, None

    @staticmethod
    def _top_level(body: bytes, what: str) -> dict[str, msgspec.Raw]:
        # Only the top-level keys are split; every other value stays byte for byte (DESIGN §5).
        try:
            return msgspec.json.decode(body, type=dict[str, msgspec.Raw])
        except msgspec.DecodeError as exc:
            raise OcpiError(OcpiStatus.INVALID_OR_MISSING_PARAMETERS, f"{what}: {exc}", http_status=400) from exc

    async def _after_command_response(self, link: CommandLink, relayed: Relayed) -> None:
        """Keep the mapping as long as the CPO said the result may take (CommandResponse.timeout)."""
        if link.module != "commands" or link.command == "RESERVE_NOW":
            return
        try:
            data = msgspec.json.decode(relayed.body, type=_EnvelopeData).data
            response = msgspec.json.decode(data, type=_CommandResponseView)
        except msgspec.DecodeError:
            return
        if response.timeout:
            expires = self._clock.now() + timedelta(seconds=response.timeout) + RESULT_GRACE
            async with self._sessions.begin() as session:
                stored = await session.get(CommandLink, link.id, with_for_update=True)
                if stored is not None:
                    stored.expires_at = max(stored.expires_at, expires)

    async def relay_result(self, caller: Caller, link_id: str, body: bytes, correlation_id: str) -> Relayed:
        """A CPO's asynchronous result, posted to the hub's URL, goes on to the requester's response_url."""
        now = self._clock.now()
        async with self._sessions.begin() as session:
            link = await session.get(CommandLink, link_id)
            if link is None or link.expires_at < now:
                raise OcpiError(OcpiStatus.CLIENT_ERROR, "unknown or expired response_url", http_status=404)
            if (link.target_country_code, link.target_party_id) not in caller.platform.party_keys:
                raise OcpiError(OcpiStatus.CLIENT_ERROR, "this result belongs to another party", http_status=404)
            link.results += 1
            requester = (link.requester_country_code, link.requester_party_id)
            target = (link.target_country_code, link.target_party_id)
            url, platform_id, module = link.response_url, link.requester_platform_id, link.module
        platform = self._table.snapshot.platforms.get(platform_id)
        if platform is None:
            raise _hub_error(OcpiStatus.CONNECTION_PROBLEM, "the requester of this command is no longer connected")
        headers = {
            "X-Correlation-ID": correlation_id,
            "OCPI-from-country-code": target[0],
            "OCPI-from-party-id": target[1],
            "OCPI-to-country-code": requester[0],
            "OCPI-to-party-id": requester[1],
        }
        return await self._forwarder.forward(
            platform, "POST", url, body=body, headers=headers, timeout=self._forward_timeout, module=module
        )

    # ---- open routing (hub notes §4.8) ------------------------------------------------------------------------------

    async def _open_route(self, req: Inbound, snapshot: RoutingSnapshot, sender: PartyKey) -> Relayed:
        to = await self._open_destination(req, snapshot, sender)
        return await self._direct(req, snapshot, sender, to, to_header_sent=False)

    async def _open_destination(self, req: Inbound, snapshot: RoutingSnapshot, sender: PartyKey) -> PartyKey:
        module, interface, tail, method = req.path.module, req.path.interface, req.path.tail, req.method
        if (
            module == "tokens"
            and interface == "SENDER"
            and method == "POST"
            and len(tail) == 2
            and tail[1] == "authorize"
        ):
            return await self._token_owner(tail[0], _query_value(req.query, "type") or "RFID", snapshot, sender)
        if module == "sessions" and interface == "RECEIVER" and method == "PUT":
            return self._emsp_of(self._view(req.body, _CdrTokenView, "session"))
        if module == "sessions" and interface == "RECEIVER" and method == "PATCH" and len(tail) == 3:
            async with self._sessions() as session:
                emsp = await self._store.session_emsp(session, tail[0], tail[1], tail[2])
            if emsp is None:
                raise _hub_error(OcpiStatus.UNKNOWN_RECEIVER, f"unknown session {tail[2]}: send it with PUT first")
            return (ci_key(emsp[0]), ci_key(emsp[1]))
        if module == "cdrs" and interface == "RECEIVER" and method == "POST":
            return self._emsp_of(self._view(req.body, _CdrTokenView, "CDR"))
        if module == "commands" and interface == "RECEIVER" and method == "POST" and tail:
            view = self._view(req.body, _CommandView, "command")
            if tail[0] == "STOP_SESSION" and view.session_id:
                return await self._session_owner(view.session_id, sender)
            if tail[0] == "CANCEL_RESERVATION" and view.reservation_id:
                return await self._reservation_owner(view.reservation_id, req.caller.platform.platform_id)
            if view.location_id:
                return await self._location_owner(view.location_id, snapshot, sender)
        if module == "locations" and interface == "SENDER" and method == "GET" and tail:
            # A single Location (or one of its EVSEs/Connectors) without OCPI-to: its owner is the only permitted
            # CPO that broadcast that id (hub notes §1.9 item 3: open routing of single-object GETs; §4.8).
            return await self._location_owner(tail[0], snapshot, sender)
        if module == "chargingprofiles" and interface == "RECEIVER" and tail:
            return await self._session_owner(tail[0], sender)
        if module == "chargingprofiles" and interface == "SENDER" and method == "PUT" and tail:
            return await self._session_emsp_by_id(tail[0], sender)
        if module == "sessions" and interface == "SENDER" and len(tail) == 2 and tail[1] == "charging_preferences":
            return await self._session_owner(tail[0], sender)
        raise _hub_error(
            OcpiStatus.UNKNOWN_RECEIVER,
            f"cannot tell the receiver of {method} {module} from its content: send OCPI-to-country-code/party-id",
        )

    @staticmethod
    def _emsp_of(view: _CdrTokenView) -> PartyKey:
        return (ci_key(view.cdr_token.country_code), ci_key(view.cdr_token.party_id))

    async def _session_owner(self, session_id: str, emsp: PartyKey) -> PartyKey:
        """The CPO of a session that belongs to the requesting eMSP (commands, profiles, preferences)."""
        return await self._session_counterpart(session_id, requester=emsp, requester_is_cpo=False)

    async def _session_emsp_by_id(self, session_id: str, cpo: PartyKey) -> PartyKey:
        """The eMSP of one of the requesting CPO's sessions (ActiveChargingProfile PUT)."""
        return await self._session_counterpart(session_id, requester=cpo, requester_is_cpo=True)

    async def _session_counterpart(self, session_id: str, *, requester: PartyKey, requester_is_cpo: bool) -> PartyKey:
        cpo = (SessionRow.country_code, SessionRow.party_id)
        emsp = (SessionRow.emsp_country_code, SessionRow.emsp_party_id)
        mine, theirs = (cpo, emsp) if requester_is_cpo else (emsp, cpo)
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(*theirs).where(
                        SessionRow.session_id == ci_key(session_id),
                        mine[0] == requester[0],
                        mine[1] == requester[1],
                    )
                )
            ).all()
        return self._unique(rows, f"session {session_id}")

    async def _location_owner(self, location_id: str, snapshot: RoutingSnapshot, sender: PartyKey) -> PartyKey:
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(LocationRow.country_code, LocationRow.party_id).where(
                        LocationRow.location_id == ci_key(location_id)
                    )
                )
            ).all()
        permitted = [(cc, pid) for cc, pid in rows if snapshot.permitted(sender, (cc, pid))]
        return self._unique(permitted, f"location {location_id}")

    async def _token_owner(self, uid: str, token_type: str, snapshot: RoutingSnapshot, sender: PartyKey) -> PartyKey:
        """The eMSP of a stored Token (uid, type) for a real-time authorization (hub notes §4.8).

        (uid, type) is unique only per eMSP (mod_tokens §Token): a token no eMSP pushed is unknown (HTTP 404 + 2004,
        mod_tokens §real-time authorization), one several eMSPs pushed is ambiguous (4001, send OCPI-to-*), as ADR
        0007 says. Guessing would send a driver's authorisation to the wrong eMSP.
        """
        key = TokenOwners.key(uid, token_type)
        rows = self.token_owners.get(key)
        if rows is None:
            async with self._sessions() as session:
                found = (
                    await session.execute(
                        select(TokenRow.country_code, TokenRow.party_id)
                        .where(TokenRow.uid == key[0], TokenRow.type == key[1])
                        .limit(100)
                    )
                ).all()
            rows = tuple((cc, pid) for cc, pid in found)
            self.token_owners.put(key, rows)
        if not rows:
            raise OcpiError(OcpiStatus.UNKNOWN_TOKEN, f"unknown token {uid} ({token_type})", http_status=404)
        permitted = [(cc, pid) for cc, pid in rows if snapshot.permitted(sender, (cc, pid))]
        return self._unique(permitted, f"token {uid} ({token_type})")

    async def _reservation_owner(self, reservation_id: str, platform_id: int) -> PartyKey:
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(CommandLink.target_country_code, CommandLink.target_party_id).where(
                        CommandLink.reservation_id == ci_key(reservation_id),
                        CommandLink.requester_platform_id == platform_id,
                    )
                )
            ).all()
        return self._unique(list(set(rows)), f"reservation {reservation_id}")

    @staticmethod
    def _unique(rows: Any, what: str) -> PartyKey:
        keys = {(row[0], row[1]) for row in rows}
        if not keys:
            raise _hub_error(OcpiStatus.UNKNOWN_RECEIVER, f"{what} is unknown to the hub: send OCPI-to-* headers")
        if len(keys) > 1:
            raise _hub_error(OcpiStatus.UNKNOWN_RECEIVER, f"{what} is ambiguous: send OCPI-to-* headers")
        return next(iter(keys))


def unwrap_single(body: bytes) -> bytes:
    """A single object sent wrapped in a one-element list, as some partners do, is taken as the object (DESIGN §5).

    Only the list brackets go: the object's own bytes stay as sent. Anything else (an object, a longer list, not
    JSON) is returned unchanged for the usual validation to judge.
    """
    if body.lstrip()[:1] != b"[":
        return body
    try:
        items = msgspec.json.decode(body, type=list[msgspec.Raw])
    except msgspec.DecodeError:
        return body
    if len(items) == 1 and bytes(items[0]).lstrip()[:1] == b"{":
        return bytes(items[0])
    return body


def _query_value(query: str, name: str) -> str | None:
    for key, value in parse_qsl(query):
        if key == name:
            return value
    return None


def _quote(segment: str) -> str:
    return quote(segment, safe="")


def _rewrite_link_header(value: str, replace: Callable[[str], str]) -> str:
    """Replace every ``<url>`` of a Link header (transport §pagination: ``<url>; rel="next"``)."""
    out: list[str] = []
    rest = value
    while True:
        start = rest.find("<")
        end = rest.find(">", start + 1)
        if start < 0 or end < 0:
            out.append(rest)
            break
        out.append(rest[:start] + "<" + replace(rest[start + 1 : end]) + ">")
        rest = rest[end + 1 :]
    return "".join(out)
