"""Requests addressed to the hub itself (TO = hub): broadcast push and GET All (hub notes §1.9 items 2 and 4).

A broadcast push is stored and its fan-out written to the outbox in one transaction, then answered at once; workers
deliver it to every permitted party of the opposite role that has a RECEIVER endpoint for the module (DESIGN §6).
GET All pages are served from the stored raw JSON without re-encoding, paginated by the hub (transport §pagination).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal, cast
from urllib.parse import parse_qsl, quote

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub.objects.service import Change, ObjectStore, Viewer
from hub.ocpi.envelope import OcpiStatus, envelope_bytes
from hub.ocpi.types import ci_key
from hub.platform.web import OcpiError
from routing import outbox
from routing.forwarder import Relayed
from routing.pagination import PageRequest
from routing.paths import BROADCAST_MODULES, ModulePath
from routing.router import Inbound
from routing.table import CPO_ROLES, EMSP_LIKE_ROLES, PartyKey, RoutingSnapshot, RoutingTable

# The most objects one page carries, per module (reported as X-Limit, transport §pagination).
PAGE_LIMITS = {"locations": 500, "tariffs": 500, "tokens": 1000, "sessions": 500, "cdrs": 500}
GET_ALL_MODULES = frozenset(PAGE_LIMITS)
StoredModule = Literal["locations", "tariffs", "tokens", "sessions", "cdrs"]


def _invalid(message: str) -> OcpiError:
    return OcpiError(OcpiStatus.INVALID_OR_MISSING_PARAMETERS, message)


def _audience_roles(owner_roles: frozenset[str]) -> set[str]:
    """The roles a party with ``owner_roles`` broadcasts to (hub notes §1.9 item 2)."""
    wanted: set[str] = set()
    if owner_roles & CPO_ROLES:
        wanted |= EMSP_LIKE_ROLES
    if owner_roles & {"EMSP", "OTHER"}:
        wanted |= CPO_ROLES
    return wanted


def in_audience(snapshot: RoutingSnapshot, owner: PartyKey, party: PartyKey) -> bool:
    """Does a broadcast from ``owner`` reach ``party``: opposite role, and the roaming policy permits the pair."""
    wanted = _audience_roles(snapshot.roles_of_party.get(owner, frozenset()))
    roles = snapshot.roles_of_party.get(party, frozenset())
    return party != owner and bool(roles & wanted) and snapshot.permitted(owner, party)


def receivers_of(snapshot: RoutingSnapshot, owner: PartyKey, module: str) -> list[tuple[PartyKey, int, str]]:
    """Every (party, platform, RECEIVER URL) a broadcast from ``owner`` goes to (hub notes §1.9 item 2).

    CPO data goes to eMSP-like parties (eMSP, NSP, NAP, SCSP, OTHER); eMSP and OTHER data goes to CPOs. Only parties
    the roaming policy lets the owner exchange data with, on platforms that offer the module's RECEIVER interface.
    """
    out: list[tuple[PartyKey, int, str]] = []
    for party in sorted(snapshot.roles_of_party):
        if not in_audience(snapshot, owner, party):
            continue
        platform = snapshot.platform_of(party)
        if platform is None:
            continue
        url = platform.endpoint(module, "RECEIVER")
        if url is not None:
            out.append((party, platform.platform_id, url))
    return out


class HubStore:
    def __init__(
        self,
        *,
        table: RoutingTable,
        sessions: async_sessionmaker[AsyncSession],
        store: ObjectStore,
        public_url: str,
        hub_party: PartyKey,
    ) -> None:
        self._table = table
        self._sessions = sessions
        self._store = store
        self._public_url = public_url
        self._hub_party = hub_party
        #: Told (uid, type) after a Token push is stored, so the router forgets who owned it (routing.tokenowners).
        self.on_token_stored: Callable[[str, str], None] | None = None

    async def handle(self, req: Inbound, sender: PartyKey) -> Relayed:
        path = req.path
        if path.interface == "SENDER" and req.method == "GET" and not path.tail and path.module in GET_ALL_MODULES:
            return await self.get_all(req, sender)
        if (
            path.interface == "RECEIVER"
            and path.module in BROADCAST_MODULES
            and req.method in ("PUT", "PATCH", "DELETE")
        ):
            return await self.broadcast(req, sender)
        raise _invalid(
            f"{req.method} on the {path.module} {path.interface} interface cannot be addressed to the hub: "
            "TO = hub means a broadcast push (locations, tariffs, tokens) or GET All on a Sender interface"
        )

    # ---- broadcast push ----------------------------------------------------------------------------------------------

    async def broadcast(self, req: Inbound, sender: PartyKey) -> Relayed:
        path = req.path
        tail = path.tail
        if len(tail) < 3 or (ci_key(tail[0]), ci_key(tail[1])) != sender:
            raise _invalid(f"a broadcast {req.method} must be sent to /{sender[0]}/{sender[1]}/{{id}} by its owner")
        if req.method == "DELETE" and path.module != "tariffs":
            raise _invalid(f"DELETE is not defined for {path.module} (mod_{path.module})")
        snapshot = self._table.snapshot
        cc, pid, object_id = tail[0], tail[1], tail[2]
        async with self._sessions.begin() as session:
            change = await self._apply(session, req, path, cc, pid, object_id)
            receivers = receivers_of(snapshot, sender, path.module)
            object_key = "/".join((path.module, ci_key(cc), ci_key(pid), ci_key(object_id)))
            if path.module == "tokens":
                object_key += "/" + (_query_type(req.query) or "RFID")
            # A full PUT of the whole object makes earlier pending pushes of it pointless (DESIGN §6 coalescing).
            coalesce = req.method == "PUT" and len(tail) == 3
            # The path segments were decoded when the URL was read: encoded again for the receivers' URLs.
            suffix = "".join("/" + quote(part, safe="") for part in tail) + (f"?{req.query}" if req.query else "")
            # One INSERT for all receivers (and one coalescing UPDATE): a row per statement made a broadcast to 200
            # parties cost 200 round trips inside this transaction (make bench fan-out, ADR 0009).
            await outbox.enqueue_many(
                session,
                [
                    outbox.Push(
                        receiver_platform_id=platform_id,
                        url=url + suffix,
                        headers={
                            "X-Correlation-ID": req.correlation_id,
                            # Fan-out legs come from the hub, to each receiver (hub notes §1.9 "Broadcast push").
                            "OCPI-from-country-code": self._hub_party[0],
                            "OCPI-from-party-id": self._hub_party[1],
                            "OCPI-to-country-code": party[0],
                            "OCPI-to-party-id": party[1],
                        },
                        # Per receiving party, not per platform: the fan-out to a platform hosting two receiving
                        # parties is two pushes, and the full PUT to one must not supersede the other's.
                        object_key=f"{object_key}>{party[0]}/{party[1]}",
                    )
                    for party, platform_id, url in receivers
                ],
                kind="broadcast",
                method=req.method,
                body=req.body if req.method != "DELETE" else None,
                coalesce=coalesce,
            )
        # The outbox wakes the relay itself once this transaction commits (routing.outbox.install_wakeup).
        req.notes["fanout"] = len(receivers)
        if path.module == "tokens" and self.on_token_stored is not None:
            # After the commit: an authorize arriving meanwhile cannot bring the old owners back into memory.
            self.on_token_stored(object_id, _query_type(req.query) or "RFID")
        body = envelope_bytes(OcpiStatus.SUCCESS, timestamp=datetime.now(UTC))
        # transport §HTTP status: 201 for a newly created object.
        status = 201 if change is not None and change.created else 200
        return Relayed(status, {"content-type": "application/json", **self._from_hub(sender)}, body)

    async def _apply(  # noqa: PLR0917 - the owner and id come from the OCPI URL path
        self, session: AsyncSession, req: Inbound, path: ModulePath, cc: str, pid: str, object_id: str
    ) -> Change | None:
        tail, body, store = path.tail, req.body, self._store
        if path.module == "locations":
            if req.method == "PUT":
                if len(tail) == 3:
                    return await store.put_location(session, cc, pid, object_id, body)
                if len(tail) == 4:
                    return await store.put_evse(session, cc, pid, object_id, tail[3], body)
                if len(tail) == 5:
                    return await store.put_connector(session, cc, pid, object_id, tail[3], tail[4], body)
            elif req.method == "PATCH":
                if len(tail) == 3:
                    return await store.patch_location(session, cc, pid, object_id, body)
                if len(tail) == 4:
                    return await store.patch_evse(session, cc, pid, object_id, tail[3], body)
                if len(tail) == 5:
                    return await store.patch_connector(session, cc, pid, object_id, tail[3], tail[4], body)
            raise _invalid("locations URL must be /{cc}/{pid}/{location_id}[/{evse_uid}[/{connector_id}]]")
        if len(tail) != 3:
            raise _invalid(f"{path.module} URL must be /{{country_code}}/{{party_id}}/{{id}}")
        if path.module == "tariffs":
            if req.method == "PUT":
                return await store.put_tariff(session, cc, pid, object_id, body)
            if req.method == "DELETE":
                await store.delete_tariff(session, cc, pid, object_id)
                return None
            raise _invalid("tariffs take PUT and DELETE (mod_tariffs: no PATCH)")
        token_type = _query_type(req.query) or "RFID"
        if req.method == "PUT":
            return await store.put_token(session, cc, pid, object_id, token_type, body)
        return await store.patch_token(session, cc, pid, object_id, token_type, body)

    # ---- GET All -----------------------------------------------------------------------------------------------------

    async def get_all(self, req: Inbound, sender: PartyKey) -> Relayed:
        module = cast(StoredModule, req.path.module)
        page_request = PageRequest.parse(req.query, cap=PAGE_LIMITS[module])
        snapshot = self._table.snapshot
        caller = req.caller.platform
        # GET All serves what the broadcasts would have brought the requesting party (hub notes §1.9 items 2, 4):
        # objects of owners whose audience it is (opposite role, permitted pair), and its own platform's. Without
        # the role rule an eMSP could read every other eMSP's tokens (contract ids) from the hub.
        own = caller.party_keys
        permitted = frozenset(p for p in snapshot.roles_of_party if p in own or in_audience(snapshot, p, sender))
        viewer = Viewer(parties=caller.parties, permitted_owners=permitted)
        async with self._sessions() as session:
            page = await self._store.page(
                session,
                module,
                viewer=viewer,
                date_from=page_request.date_from,
                date_to=page_request.date_to,
                offset=page_request.offset,
                limit=page_request.limit,
                after_id=page_request.after_id,
                total=page_request.known_total,
            )
        url = f"{self._public_url}/ocpi/2.2.1/sender/{module}/"
        return page_request.answer(
            page.items, page.total, url=url, headers=self._from_hub(sender), last_id=page.last_id
        )

    def _from_hub(self, to: PartyKey) -> dict[str, str]:
        return {
            "ocpi-from-country-code": self._hub_party[0],
            "ocpi-from-party-id": self._hub_party[1],
            "ocpi-to-country-code": to[0],
            "ocpi-to-party-id": to[1],
        }


def _query_type(query: str) -> str | None:
    return next((v for k, v in parse_qsl(query) if k == "type"), None)
