"""Rules on what matching found: duplicates, the session, the token and the location (clearing notes §1.6
ID-SESSION, ID-FUZZY, SES-EXISTS, LOC-MATCH, TOK-KNOWN, LOC-KNOWN). They need the store and are skipped without it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any, Final

from clearing.document import ci_text, key_of, text, timestamp
from clearing.facts import Facts
from clearing.rules.base import Issue, Severity, need_store, rule

# A session's start and its CDR's start describe the same moment; more than this apart is suspicious.
START_SKEW: Final = timedelta(seconds=60)


@rule("CDR040", Severity.ERROR, "second CDR for one session", catalogue="ID-SESSION", store=True)
def one_cdr_per_session(facts: Facts) -> Iterator[Issue]:
    store = need_store(facts)
    if facts.cdr.credit or not store.same_session:
        return
    others = ", ".join(other.key[2] for other in store.same_session)
    yield Issue(
        f"session {text(facts.doc, 'session_id')} already has CDR {others}, which was not credited; "
        "send a credit CDR for it first (mod_cdrs §10.1.1)",
        "/session_id",
    )


@rule("CDR041", Severity.WARNING, "possible double submission under a new id", catalogue="ID-FUZZY", store=True)
def look_alike(facts: Facts) -> Iterator[Issue]:
    store = need_store(facts)
    for other in store.look_alikes:
        yield Issue(
            f"CDR {other.key[2]} has the same token and EVSE, starts within a minute and has the same energy "
            "(within 1 %)",
            "/id",
        )
    if store.more_look_alikes:
        yield Issue(f"and more CDRs like these (only the first {len(store.look_alikes)} are named)", "/id")


@rule("CDR050", Severity.INFO, "no session_id", catalogue="SES-EXISTS")
def no_session_id(facts: Facts) -> Iterator[Issue]:
    if "session_id" not in facts.doc:
        yield Issue("the CDR has no session_id, so it cannot be matched with a session", "/session_id")


@rule("CDR051", Severity.WARNING, "session unknown", catalogue="SES-EXISTS", store=True)
def session_known(facts: Facts) -> Iterator[Issue]:
    store = need_store(facts)
    if "session_id" in facts.doc and store.session is None:
        yield Issue(
            f"no session {text(facts.doc, 'session_id')} of {facts.cdr.key[0]}/{facts.cdr.key[1]} passed the hub",
            "/session_id",
        )


@rule("CDR052", Severity.WARNING, "session not completed", catalogue="SES-EXISTS", store=True)
def session_completed(facts: Facts) -> Iterator[Issue]:
    store = need_store(facts)
    session = store.session
    if session is not None and session.doc.get("status") != "COMPLETED":
        yield Issue(
            f"session {session.doc.get('id')} is {session.doc.get('status')}, not COMPLETED (mod_sessions §9.4.3)",
            "/session_id",
        )


def _token(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    token = doc.get("cdr_token")
    return token if isinstance(token, dict) else {}


@rule("CDR053", Severity.ERROR, "CDR differs from its session", catalogue="LOC-MATCH", store=True)
def session_consistent(facts: Facts) -> Iterator[Issue]:
    store = need_store(facts)
    session = store.session
    if session is None:
        return
    pairs = [
        (ci_text(_token(session.doc).get(name)), ci_text(_token(facts.doc).get(name)), f"cdr_token.{name}")
        for name in ("country_code", "party_id", "uid", "type")
    ]
    location = facts.doc.get("cdr_location")
    location = location if isinstance(location, dict) else {}
    pairs += [
        (ci_text(session.doc.get("location_id")), ci_text(location.get("id")), "cdr_location.id"),
        (ci_text(session.doc.get("evse_uid")), ci_text(location.get("evse_uid")), "cdr_location.evse_uid"),
        (ci_text(session.doc.get("connector_id")), ci_text(location.get("connector_id")), "cdr_location.connector_id"),
    ]
    for in_session, in_cdr, name in pairs:
        if in_session is not None and in_cdr is not None and in_session != in_cdr:
            yield Issue(f"{name} is {in_cdr} in the CDR but {in_session} in its session", "/" + name.replace(".", "/"))


@rule("CDR054", Severity.WARNING, "CDR start differs from the session start", catalogue="SES-EXISTS", store=True)
def session_start(facts: Facts) -> Iterator[Issue]:
    store = need_store(facts)
    session = store.session
    view = facts.cdr.view
    started = timestamp(session.doc.get("start_date_time")) if session is not None else None
    if started is not None and view is not None and abs(view.start_date_time - started) > START_SKEW:
        yield Issue(
            f"the CDR starts at {view.start_date_time.isoformat()} but its session at {started.isoformat()}",
            "/start_date_time",
        )


@rule("CDR060", Severity.WARNING, "token unknown", catalogue="TOK-KNOWN", store=True)
def token_known(facts: Facts) -> Iterator[Issue]:
    store = need_store(facts)
    if store.token is None and facts.doc.get("auth_method") == "WHITELIST":
        token = _token(facts.doc)
        yield Issue(
            f"token {token.get('uid')} ({token.get('type')}) of {token.get('country_code')}/{token.get('party_id')} "
            "is unknown to the hub, yet the session was authorised from the whitelist (mod_tokens §12.2)",
            "/cdr_token/uid",
        )


@rule("CDR061", Severity.ERROR, "token invalid at session start", catalogue="TOK-KNOWN", store=True)
def token_valid_at_start(facts: Facts) -> Iterator[Issue]:
    store = need_store(facts)
    token, view = store.token, facts.cdr.view
    if token is None or view is None or token.doc.get("valid") is not False:
        return
    if token.last_updated is not None and token.last_updated <= view.start_date_time:
        yield Issue(
            f"token {token.doc.get('uid')} was made invalid at {token.last_updated.isoformat()}, before the session "
            f"started at {view.start_date_time.isoformat()}",
            "/cdr_token/uid",
        )


@rule("CDR062", Severity.INFO, "token invalidated after session start", catalogue="TOK-KNOWN", store=True)
def token_invalidated_later(facts: Facts) -> Iterator[Issue]:
    store = need_store(facts)
    token, view = store.token, facts.cdr.view
    if token is None or view is None or token.doc.get("valid") is not False:
        return
    if token.last_updated is None or token.last_updated > view.start_date_time:
        yield Issue(
            f"token {token.doc.get('uid')} is invalid now, but it changed after the session started; the hub keeps "
            "no token history, so its validity at the start is not known",
            "/cdr_token/uid",
        )


@rule("CDR063", Severity.WARNING, "whitelist authorisation of a token that must not use it", catalogue="TOK-KNOWN",
      store=True)  # fmt: skip
def whitelist_consistent(facts: Facts) -> Iterator[Issue]:
    store = need_store(facts)
    token = store.token
    if token is not None and facts.doc.get("auth_method") == "WHITELIST" and token.doc.get("whitelist") == "NEVER":
        yield Issue(
            f"auth_method is WHITELIST but token {token.doc.get('uid')} has whitelist NEVER (real-time authorisation "
            "only, mod_tokens §12.4.4)",
            "/auth_method",
        )


@rule("CDR064", Severity.WARNING, "contract_id differs from the token's", catalogue="TOK-KNOWN", store=True)
def contract_matches(facts: Facts) -> Iterator[Issue]:
    store = need_store(facts)
    token = store.token
    stated = key_of(facts.doc, "cdr_token", "contract_id")
    known = ci_text(token.doc.get("contract_id")) if token is not None else None
    if stated is not None and known is not None and stated != known:
        yield Issue(
            f"cdr_token.contract_id {text(facts.doc, 'cdr_token', 'contract_id')} differs from the token's "
            f"contract_id {token.doc.get('contract_id') if token else None}",
            "/cdr_token/contract_id",
        )


@rule("CDR065", Severity.INFO, "token unknown, authorised in real time", catalogue="TOK-KNOWN", store=True)
def token_unknown_realtime(facts: Facts) -> Iterator[Issue]:
    store = need_store(facts)
    if store.token is None and facts.doc.get("auth_method") != "WHITELIST":
        token = _token(facts.doc)
        yield Issue(
            f"token {token.get('uid')} is unknown to the hub; the eMSP authorised it ({facts.doc.get('auth_method')}) "
            "without pushing it, which OCPI allows",
            "/cdr_token/uid",
        )


@rule("CDR070", Severity.WARNING, "location unknown", catalogue="LOC-KNOWN", store=True)
def location_known(facts: Facts) -> Iterator[Issue]:
    store = need_store(facts)
    if store.location is None:
        yield Issue(
            f"location {text(facts.doc, 'cdr_location', 'id')} of {facts.cdr.key[0]}/{facts.cdr.key[1]} was never "
            "pushed to the hub (mod_cdrs §10.1: allowed for home chargers)",
            "/cdr_location/id",
        )


@rule("CDR071", Severity.WARNING, "EVSE or connector unknown", catalogue="LOC-KNOWN", store=True)
def evse_known(facts: Facts) -> Iterator[Issue]:
    store = need_store(facts)
    location = store.location
    evse_uid = key_of(facts.doc, "cdr_location", "evse_uid")
    connector_id = key_of(facts.doc, "cdr_location", "connector_id")
    if location is None or evse_uid is None:
        return
    evses = [e for e in location.doc.get("evses") or [] if isinstance(e, dict)]
    evse = next((e for e in evses if ci_text(e.get("uid")) == evse_uid), None)
    if evse is None:
        yield Issue(f"the location has no EVSE {text(facts.doc, 'cdr_location', 'evse_uid')}", "/cdr_location/evse_uid")
        return
    connectors = [c for c in evse.get("connectors") or [] if isinstance(c, dict)]
    if connector_id is not None and all(ci_text(c.get("id")) != connector_id for c in connectors):
        yield Issue(
            f"EVSE {evse.get('uid')} has no connector {text(facts.doc, 'cdr_location', 'connector_id')}",
            "/cdr_location/connector_id",
        )


@rule("CDR072", Severity.INFO, "location not published", catalogue="LOC-KNOWN", store=True)
def location_published(facts: Facts) -> Iterator[Issue]:
    store = need_store(facts)
    location = store.location
    if location is not None and location.doc.get("publish") is False:
        yield Issue("the location is not published (home charging, or visible to some tokens only)", "/cdr_location/id")
