"""Two PeerPlatforms on loopback checking each other: the peer must be right before it can judge the hub."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Protocol

import pytest

from tests.peers import (
    NoMutualVersionError,
    PeerConfig,
    PeerError,
    PeerPlatform,
    ScriptedResponse,
    TokenForm,
    closed_port_url,
    encode_authorization,
)

CPO_A = ("NL", "CPA", "CPO", "CPO A")
EMSP_B = ("DE", "EMB", "EMSP", "eMSP B")
FORMS: list[TokenForm] = ["base64", "raw"]
# types.asciidoc DateTime as this peer emits it: UTC with Z.
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z$")


def expected_header(token: str, form: TokenForm) -> str:
    """Built here independently of tests.peers.wire so the two cannot share a mistake."""
    if form == "raw":
        return "Token " + token
    return "Token " + base64.b64encode(token.encode()).decode()


class MakePeer(Protocol):
    def __call__(self, config: PeerConfig | None = None) -> Awaitable[PeerPlatform]: ...


@pytest.fixture
async def make_peer() -> AsyncIterator[MakePeer]:
    started: list[PeerPlatform] = []

    async def make(config: PeerConfig | None = None) -> PeerPlatform:
        peer = await PeerPlatform(config).start()
        started.append(peer)
        return peer

    yield make
    for peer in started:
        await peer.stop()
    # A peer that crashed while answering would make every other assertion meaningless.
    assert [error for peer in started for error in peer.errors] == []


@dataclass
class Pair:
    a: PeerPlatform  # receiver of the handshake, issued token A
    b: PeerPlatform  # sender of the handshake
    token_a: str
    form: TokenForm


@pytest.fixture(params=FORMS)
async def pair(request: pytest.FixtureRequest, make_peer: MakePeer) -> Pair:
    form: TokenForm = request.param
    a = await make_peer(PeerConfig(roles=[CPO_A], token_form=form))
    b = await make_peer(PeerConfig(roles=[EMSP_B], token_form=form))
    token_a = a.issue_token_a()
    await b.register(a.versions_url, token_a)
    return Pair(a, b, token_a, form)


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


# ---------------------------------------------------------------------- registration


async def test_registration_exchanges_tokens_roles_and_endpoints(pair: Pair) -> None:
    a, b = pair.a, pair.b
    assert a.registered
    assert b.registered
    assert b.token_c is not None
    assert b.token_b is not None
    assert b.token_c == a.token_b
    assert b.token_b == a.token_c
    assert len({pair.token_a, b.token_b, b.token_c}) == 3
    assert a.partner_roles == [
        {"role": "EMSP", "business_details": {"name": "eMSP B"}, "party_id": "EMB", "country_code": "DE"}
    ]
    assert [role["party_id"] for role in b.partner_roles] == ["CPA"]
    assert b.partner_versions_url == a.versions_url
    assert a.partner_versions_url == b.versions_url
    # Each side stored the other's advertised endpoints, with the interface roles of its business role.
    assert b.partner_endpoints[("cdrs", "SENDER")] == a.module_url("cdrs", "SENDER")
    assert b.partner_endpoints[("credentials", "SENDER")] == a.credentials_url
    assert a.partner_endpoints[("cdrs", "RECEIVER")] == b.module_url("cdrs", "RECEIVER")
    assert a.partner_endpoints[("hubclientinfo", "RECEIVER")] == b.module_url("hubclientinfo", "RECEIVER")


async def test_registration_wire_uses_configured_token_form(pair: Pair) -> None:
    a, b = pair.a, pair.b
    assert b.token_b is not None
    # B discovered A with token A, then POSTed with token A.
    discovery = a.find_received(module="versions")
    assert [rec.path for rec in discovery] == ["/ocpi/versions", "/ocpi/2.2.1"]
    (post,) = a.find_received(path=path_of(a.credentials_url), method="POST")
    for rec in [*discovery, post]:
        assert rec.header("Authorization") == expected_header(pair.token_a, pair.form)
        assert rec.caller == "token_a"
        assert rec.token_form == pair.form
    assert post.header("content-type") == "application/json"
    assert post.json()["token"] == b.token_b
    assert post.json()["url"] == b.versions_url
    # While answering the POST, A fetched B's versions and details with the token B it had just been given.
    callbacks = b.find_received(module="versions")
    assert [rec.path for rec in callbacks] == ["/ocpi/versions", "/ocpi/2.2.1"]
    for rec in callbacks:
        assert rec.header("Authorization") == expected_header(b.token_b, pair.form)
        assert rec.at >= post.at
    assert post.status == 200


async def test_get_credentials_works_with_the_new_tokens(pair: Pair) -> None:
    a, b = pair.a, pair.b
    theirs = await b.get_credentials()
    assert theirs["token"] == b.token_c
    assert theirs["url"] == a.versions_url
    assert [role["role"] for role in theirs["roles"]] == ["CPO"]
    # The receiver discovered the sender's endpoints too, so it can call the sender's credentials module.
    ours = await a.get_credentials()
    assert ours["token"] == a.token_c
    assert ours["url"] == b.versions_url


async def test_token_a_is_dead_after_registration(pair: Pair) -> None:
    for url in (pair.a.versions_url, pair.a.version_url, pair.a.credentials_url):
        response = await pair.b.request("GET", url, token=pair.token_a)
        assert response.status == 401, url
        assert response.status_code == 2000


async def test_post_again_is_405(pair: Pair) -> None:
    before = pair.a.token_b
    response = await pair.b.request("POST", "credentials", body=pair.b.credentials_object("another-token"))
    assert response.status == 405
    assert pair.a.token_b == before
    assert pair.a.registered


async def test_put_rotates_tokens_on_both_sides(pair: Pair) -> None:
    a, b = pair.a, pair.b
    old_c, old_b = b.token_c, b.token_b
    assert old_c is not None
    assert old_b is not None
    theirs = await b.update_credentials()
    assert b.token_c == theirs["token"]
    assert b.token_c not in (old_c, None)
    assert b.token_b not in (old_b, None)
    assert a.token_b == b.token_c
    assert a.token_c == b.token_b
    # A re-read B's endpoints during the PUT, already with the new token it was given.
    assert b.token_b is not None
    last_callback = b.find_received(module="versions")[-1]
    assert last_callback.header("Authorization") == expected_header(b.token_b, pair.form)
    assert (await b.request("GET", "credentials", token=old_c)).status == 401
    assert (await b.request("GET", "credentials")).status == 200
    assert (await a.request("GET", b.versions_url, token=old_b)).status == 401
    assert (await a.request("GET", b.versions_url)).status == 200


async def test_delete_unregisters_and_later_calls_are_401(pair: Pair) -> None:
    a, b = pair.a, pair.b
    old_c, old_b = b.token_c, b.token_b
    await b.unregister()
    assert not a.registered
    assert not b.registered
    assert b.token_c is None
    assert (await b.request("GET", a.credentials_url, token=old_c)).status == 401
    assert (await b.request("DELETE", a.credentials_url, token=old_c)).status == 401
    assert (await a.request("GET", b.versions_url, token=old_b)).status == 401


async def test_put_and_delete_before_registration_are_405(make_peer: MakePeer) -> None:
    a = await make_peer()
    c = await make_peer(PeerConfig(roles=[EMSP_B]))
    token_a = a.issue_token_a()
    body = c.credentials_object("some-token")
    assert (await c.request("PUT", a.credentials_url, body=body, token=token_a)).status == 405
    assert (await c.request("DELETE", a.credentials_url, token=token_a)).status == 405
    assert (await c.request("PUT", a.credentials_url, body=body, token="unknown")).status == 401
    assert (await c.request("GET", a.credentials_url, authorize=False)).status == 401
    # Token A still works where it may: the registration has not happened.
    assert (await c.request("GET", a.credentials_url, token=token_a)).status == 200


async def test_token_a_only_opens_versions_and_credentials(make_peer: MakePeer) -> None:
    a = await make_peer()
    c = await make_peer(PeerConfig(roles=[EMSP_B]))
    token_a = a.issue_token_a()
    assert (await c.request("GET", a.versions_url, token=token_a)).status == 200
    assert (await c.request("GET", a.module_url("locations", "SENDER"), token=token_a)).status == 401
    assert (await c.request("PUT", a.module_url("hubclientinfo", "RECEIVER"), "NL/XYZ", token=token_a)).status == 401


@pytest.mark.parametrize(
    ("switch", "value"),
    [("versions_status", 500), ("fail_all", 503), ("versions_delay", 1.0)],
)
async def test_receiver_answers_3001_when_sender_versions_are_down(
    make_peer: MakePeer, switch: str, value: float
) -> None:
    a = await make_peer(PeerConfig(client_timeout=0.3))
    b = await make_peer(PeerConfig(roles=[EMSP_B]))
    token_a = a.issue_token_a()
    setattr(b, switch, value)
    with pytest.raises(PeerError) as caught:
        await b.register(a.versions_url, token_a)
    assert caught.value.status == 200
    assert caught.value.status_code == 3001
    assert caught.value.envelope is not None
    assert "unable to use the client's API" in caught.value.envelope["status_message"]
    assert not a.registered
    assert not b.registered
    assert b.token_b is None
    # A failed handshake consumes nothing: the same token A works once B is healthy again.
    setattr(b, switch, getattr(b.config, switch))  # the config holds the healthy initial value
    await b.register(a.versions_url, token_a)
    assert [a.registered, b.registered] == [True, True]  # a list: mypy narrowed both to False above


async def test_sender_refuses_partner_without_credentials_endpoint(make_peer: MakePeer) -> None:
    a = await make_peer(PeerConfig(advertise_credentials=False))
    b = await make_peer(PeerConfig(roles=[EMSP_B]))
    with pytest.raises(PeerError, match="advertises no 'credentials' endpoint"):
        await b.register(a.versions_url, a.issue_token_a())
    assert a.find_received(module="credentials") == []
    assert not b.registered


async def test_sender_refuses_partner_without_mutual_version(make_peer: MakePeer) -> None:
    a = await make_peer(PeerConfig(versions=["2.1.1"]))
    b = await make_peer(PeerConfig(roles=[EMSP_B]))
    token_a = a.issue_token_a()
    with pytest.raises(NoMutualVersionError, match=r"offers \['2\.1\.1'\]"):
        await b.register(a.versions_url, token_a)
    assert a.find_received(module="credentials") == []
    # 2.1.1 version details have no interface roles (the role field came with 2.2).
    details = await b.request("GET", f"{a.base_url}/ocpi/2.1.1", token=token_a)
    assert details.data["version"] == "2.1.1"
    assert all("role" not in endpoint for endpoint in details.data["endpoints"])
    assert (await b.request("GET", a.version_url, token=token_a)).status == 404


async def test_receiver_answers_3002_when_sender_lacks_2_2_1(make_peer: MakePeer) -> None:
    a = await make_peer()
    b = await make_peer(PeerConfig(roles=[EMSP_B], versions=["2.1.1"]))
    with pytest.raises(PeerError) as caught:
        await b.register(a.versions_url, a.issue_token_a())
    assert caught.value.status_code == 3002
    assert not a.registered


async def test_receiver_answers_3003_when_required_endpoints_are_missing(make_peer: MakePeer) -> None:
    a = await make_peer(PeerConfig(required_modules=["chargingprofiles"]))
    b = await make_peer(PeerConfig(roles=[EMSP_B]))
    with pytest.raises(PeerError) as caught:
        await b.register(a.versions_url, a.issue_token_a())
    assert caught.value.status_code == 3003
    assert not a.registered


async def test_sender_does_not_post_when_required_endpoints_are_missing(make_peer: MakePeer) -> None:
    a = await make_peer(PeerConfig(modules=[("credentials", "SENDER"), ("locations", "SENDER")]))
    b = await make_peer(PeerConfig(roles=[EMSP_B], required_modules=["tokens"]))
    with pytest.raises(PeerError, match=r"lacks required endpoints \['tokens'\]"):
        await b.register(a.versions_url, a.issue_token_a())
    assert a.find_received(module="credentials") == []


async def test_reject_registration_with_answers_that_code(make_peer: MakePeer) -> None:
    a = await make_peer()
    b = await make_peer(PeerConfig(roles=[EMSP_B]))
    a.reject_registration_with = 2001
    with pytest.raises(PeerError) as caught:
        await b.register(a.versions_url, a.issue_token_a())
    assert caught.value.status == 200
    assert caught.value.status_code == 2001
    assert len(a.find_received(module="credentials", method="POST")) == 1
    assert b.find_received(module="versions") == []  # refused before calling back


async def test_register_against_closed_port_raises_without_status(make_peer: MakePeer) -> None:
    b = await make_peer()
    with pytest.raises(PeerError, match="failed") as caught:
        await b.register(closed_port_url(), "token-a")
    assert caught.value.status is None


async def test_invalid_credentials_body_is_rejected(make_peer: MakePeer) -> None:
    a = await make_peer()
    c = await make_peer()
    token_a = a.issue_token_a()
    bad_json = await c.request("POST", a.credentials_url, body=b'{"token": ', token=token_a)
    assert bad_json.status == 400
    assert bad_json.status_code == 2000
    no_roles = await c.request("POST", a.credentials_url, body={"token": "t", "url": "http://x"}, token=token_a)
    assert no_roles.status == 200
    assert no_roles.status_code == 2001
    assert not a.registered


# ---------------------------------------------------------------------- transport and format


def test_base64_form_is_rfc4648_without_newline() -> None:
    # The spec's own example carries a trailing newline; the correct encoding has none (hub notes §1.1).
    assert encode_authorization("example-token", "base64") == "Token ZXhhbXBsZS10b2tlbg=="
    assert encode_authorization("example-token", "raw") == "Token example-token"


async def test_responses_are_envelopes_echoing_ids(pair: Pair) -> None:
    b = pair.b
    calls = [
        ("GET", pair.a.credentials_url, None, 200),
        ("GET", pair.a.versions_url, pair.token_a, 401),
        ("PATCH", pair.a.credentials_url, None, 405),
        ("GET", f"{pair.a.base_url}/nowhere", None, 404),
    ]
    for method, url, token, status in calls:
        ids = {"X-Request-ID": f"req-{method}-{status}", "X-Correlation-ID": f"corr-{method}-{status}"}
        response = await b.request(method, url, headers=ids, token=token)
        assert response.status == status, url
        assert response.envelope is not None
        assert isinstance(response.status_code, int)
        assert TIMESTAMP.match(response.envelope["timestamp"])
        assert response.header("X-Request-ID") == ids["X-Request-ID"]
        assert response.header("x-correlation-id") == ids["X-Correlation-ID"]
        assert (response.header("content-type") or "").startswith("application/json")


async def test_inbound_accepts_both_token_forms(pair: Pair) -> None:
    for form in FORMS:
        response = await pair.b.request("GET", "credentials", token_form=form)
        assert response.status == 200
        assert pair.a.received[-1].token_form == form
    garbage = await pair.b.request("GET", "credentials", headers={"Authorization": "Bearer " + str(pair.b.token_c)})
    assert garbage.status == 401


async def test_misbehaviour_switches(pair: Pair) -> None:
    a, b = pair.a, pair.b
    a.fail_all = 500
    failed = await b.request("GET", "credentials", headers={"X-Request-ID": "r1"})
    assert failed.status == 500
    assert failed.envelope is None
    assert (failed.header("content-type") or "").startswith("text/plain")
    assert failed.header("x-request-id") == "r1"
    assert a.received[-1].status == 500
    a.fail_all = None

    a.versions_status = 502
    down = await b.request("GET", a.versions_url)
    assert down.status == 502
    assert down.envelope is None
    assert (await b.request("GET", "credentials")).status == 200  # only the versions module is down
    a.versions_status = None

    a.versions_delay = 0.3
    started = time.monotonic()
    assert (await b.request("GET", a.version_url)).status == 200
    assert time.monotonic() - started >= 0.3


# ---------------------------------------------------------------------- functional modules


async def test_client_owned_object_push_and_pull(pair: Pair) -> None:
    a, b = pair.a, pair.b
    token = {"country_code": "DE", "party_id": "EMB", "uid": "TOK1", "last_updated": "2024-01-01T00:00:00Z"}
    routing = {
        "OCPI-from-country-code": "DE",
        "OCPI-from-party-id": "EMB",
        "OCPI-to-country-code": "NL",
        "OCPI-to-party-id": "CPA",
    }
    created = await b.request("PUT", "tokens", "DE/EMB/TOK1", body=token, headers=routing)
    assert created.status == 201
    assert created.status_code == 1000
    # transport_and_format §"Message Routing": the answer swaps from/to.
    assert created.header("OCPI-to-party-id") == "EMB"
    assert created.header("OCPI-from-party-id") == "CPA"
    assert (await b.request("PUT", "tokens", "DE/EMB/TOK1", body=token)).status == 200
    fetched = await b.request("GET", "tokens", "de/emb/tok1", interface="RECEIVER")  # CiString ids
    assert fetched.data == token
    listed = await b.request("GET", "tokens", interface="RECEIVER")
    assert listed.data == [token]
    assert listed.header("X-Total-Count") == "1"
    push = a.find_received(module="tokens", method="PUT")[0]
    assert push.header("Authorization") == expected_header(str(b.token_c), pair.form)
    assert push.json() == token

    patched = await b.request("PATCH", "tokens", "DE/EMB/TOK1", body={"valid": False})
    assert patched.status_code == 1000
    assert a.get_object("/ocpi/2.2.1/tokens/receiver/DE/EMB/TOK1")["valid"] is False
    assert (await b.request("DELETE", "tokens", "DE/EMB/TOK1")).status_code == 1000
    assert (await b.request("GET", "tokens", "DE/EMB/TOK1", interface="RECEIVER")).status == 404
    invalid = await b.request("PUT", "tokens", "DE/EMB/TOK2", body=b"{not json")
    assert invalid.status == 400
    assert invalid.header("OCPI-to-party-id") is None


async def test_collection_get_is_paginated(pair: Pair) -> None:
    a, b = pair.a, pair.b
    base = a.module_path("locations", "SENDER")
    for n in range(3):
        a.put_object(f"{base}/LOC{n}", {"id": f"LOC{n}", "last_updated": f"2024-01-0{n + 1}T00:00:00Z"})
    a.put_object(f"{base}/LOC0/EVSE1", {"uid": "EVSE1"})  # part of LOC0, not a list item
    first = await b.request("GET", "locations", "?limit=2&date_from=2024-01-01T00:00:00Z")
    assert [item["id"] for item in first.data] == ["LOC0", "LOC1"]
    assert first.header("X-Total-Count") == "3"
    assert first.header("X-Limit") == str(a.config.page_limit)
    link = first.header("Link")
    assert link is not None
    next_url = link[1 : link.index(">")]
    assert "offset=2" in next_url
    assert "date_from=" in next_url
    second = await b.request("GET", next_url)
    assert [item["id"] for item in second.data] == ["LOC2"]
    assert second.header("Link") is None
    windowed = await b.request("GET", "locations", "?date_to=2024-01-02T00:00:00Z")
    assert [item["id"] for item in windowed.data] == ["LOC0"]


async def test_hubclientinfo_receiver_stores_client_infos(pair: Pair) -> None:
    a, b = pair.a, pair.b
    info = {
        "party_id": "XYZ",
        "country_code": "BE",
        "role": "EMSP",
        "status": "CONNECTED",
        "last_updated": "2024-01-01T00:00:00Z",
    }
    assert (await b.request("PUT", "hubclientinfo", "BE/XYZ", body=info)).status == 201
    assert a.client_infos == {("BE", "XYZ"): info}
    assert (await b.request("GET", "hubclientinfo", "be/xyz")).data == info
    mismatch = await b.request("PUT", "hubclientinfo", "BE/ABC", body=info)
    assert mismatch.status_code == 2001
    incomplete = await b.request("PUT", "hubclientinfo", "BE/XYZ", body={**info, "status": "GONE"})
    assert incomplete.status_code == 2001
    assert a.client_infos[("BE", "XYZ")]["status"] == "CONNECTED"
    assert (await b.request("GET", "hubclientinfo", "BE/ABC")).status == 404


async def test_scripted_response_replaces_default(pair: Pair) -> None:
    a, b = pair.a, pair.b
    path = a.module_path("commands", "RECEIVER") + "/START_SESSION"
    a.set_response("POST", path, ScriptedResponse(data={"result": "ACCEPTED", "timeout": 30}))
    accepted = await b.request("POST", "commands", "START_SESSION", body={"response_url": "http://x"})
    assert accepted.data == {"result": "ACCEPTED", "timeout": 30}
    a.set_response("POST", path, ScriptedResponse(http_status=200, raw_body=b"not json"))
    broken = await b.request("POST", "commands", "START_SESSION", body={})
    assert broken.body == b"not json"
    assert broken.envelope is None
