"""Broken input from a partner never gets a 500 (standards: "bad input gets the right OCPI status, never a 500").

Seeded mutations of valid objects (fields dropped, nulled, retyped, out-of-range numbers, malformed dates and
CiStrings, truncated or non-JSON bytes, deep nesting) sent to every functional module the hub stores or routes, with
sloppy query parameters on GETs. Every answer must be an OCPI envelope with an HTTP status below 500 and a status
code the specification defines for that situation; the run is reproducible from its seed.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Iterator
from typing import Any

from tests.hub.objects import builders
from tests.peers import PeerPlatform
from tests.routing.world import CPA, EMA, HUB, RECEIVER, SENDER, World

pytest_plugins = ("tests.routing.scenarios_conftest",)

SEED = 20261207
ROUNDS = 12  # mutated bodies per endpoint
# 1xxx success, 2xxx client errors (2001 invalid, 2003 unknown location, 2004 unknown receiver...), 3xxx server
# errors of the partner side as the hub reports them, 4xxx hub errors (mod_hubclientinfo, hub notes §3).
ALLOWED = range(1000, 5000)

WEIRD: list[Any] = [
    None, True, -1, 0, 10**30, -(10**30), 1.5e308, "", " ", "x" * 400, "2026-13-45T99:99:99Z", "NaN",
    "\u0000", "\ud7ff\ue000", [], {}, [None], {"": None}, [[[[[[[[[[[]]]]]]]]]]],
]  # fmt: skip


def _walk(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _walk(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _walk(child, (*path, index))


def _mutate(valid: bytes, rng: random.Random) -> bytes:
    """One broken variant of ``valid``: a structural change to its JSON, or bytes that are not the object at all."""
    kind = rng.randrange(10)
    if kind == 0:
        return valid[: rng.randrange(1, len(valid))]  # truncated
    if kind == 1:
        return rng.choice([b"", b"null", b"[]", b"\xff\xfe", b"{" * 5000, b'{"a":1}{"b":2}', b"not json"])
    doc = json.loads(valid)
    for _ in range(rng.randrange(1, 4)):
        paths = [p for p in _walk(doc) if p]
        if not paths:
            break
        path = rng.choice(paths)
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        if kind == 2 and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(WEIRD))
    return json.dumps(doc).encode()


Endpoint = tuple[str, str, str, str, tuple[str, str], tuple[str, str], Callable[[], bytes]]


def _endpoints() -> list[Endpoint]:
    """(method, interface, module, tail, from, to, valid body): pushes the hub stores (and forwards), and calls it
    routes to a partner without decoding them (authorize, commands)."""
    cpo, emsp = CPA, EMA
    return [
        ("PUT", RECEIVER, "locations", "NL/CPA/LOC1", cpo, HUB, lambda: builders.location("LOC1", party_id="CPA")),
        ("PATCH", RECEIVER, "locations", "NL/CPA/LOC1/EVSE1", cpo, HUB,
         lambda: b'{"status": "CHARGING", "last_updated": "2026-01-05T00:00:00Z"}'),
        ("PUT", RECEIVER, "sessions", "NL/CPA/S1", cpo, emsp,
         lambda: builders.charging_session("S1", party_id="CPA", emsp=emsp)),
        ("POST", RECEIVER, "cdrs", "", cpo, emsp, lambda: builders.cdr("CDR1", party_id="CPA", emsp=emsp)),
        ("PUT", RECEIVER, "tariffs", "NL/CPA/T1", cpo, HUB, lambda: builders.tariff("T1", party_id="CPA")),
        ("PUT", RECEIVER, "tokens", "DE/EMA/TOKEN1", emsp, HUB,
         lambda: builders.token("TOKEN1", party_id="EMA")),
        ("POST", SENDER, "tokens", "TOKEN1/authorize", cpo, emsp, lambda: b'{"location_id": "LOC1"}'),
        ("POST", RECEIVER, "commands", "START_SESSION", emsp, cpo,
         lambda: b'{"response_url": "http://x/cb", "token": {}, "location_id": "LOC1"}'),
    ]  # fmt: skip


def _check(answer: Any, what: str) -> None:
    assert answer.status < 500, f"{what}: HTTP {answer.status} {answer.body[:300]!r}"
    assert answer.envelope is not None, f"{what}: not an OCPI envelope: {answer.body[:300]!r}"
    assert answer.status_code in ALLOWED, f"{what}: status_code {answer.status_code}"
    assert isinstance(answer.envelope.get("timestamp"), str), f"{what}: no timestamp"


async def test_mutated_pushes_never_get_a_server_error(world: World) -> None:
    rng = random.Random(SEED)
    peers: dict[tuple[str, str], PeerPlatform] = {CPA: world.cpo_a, EMA: world.emsp_a}
    refused = 0
    for method, interface, module, tail, frm, to, valid in _endpoints():
        baseline = await world.call(peers[frm], method, interface, module, tail, frm=frm, to=to, body=valid())
        # The unbroken object is accepted, so the mutations reach the checks behind the first one.
        assert baseline.status_code == 1000, (module, method, baseline.envelope)
        for round_ in range(ROUNDS):
            body = _mutate(valid(), rng)
            answer = await world.call(peers[frm], method, interface, module, tail, frm=frm, to=to, body=body)
            _check(answer, f"{method} {module}/{tail} round {round_} body {body[:200]!r}")
            refused += answer.status_code != 1000
    assert refused > len(_endpoints()) * ROUNDS // 2  # most mutations are refused, not silently stored


async def test_sloppy_get_parameters_never_get_a_server_error(world: World) -> None:
    queries = [
        "?offset=-1", "?limit=abc", "?limit=0", "?limit=99999999999999999999", "?date_from=yesterday",
        "?date_from=2026-01-01T00:00:00Z&date_to=2025-01-01T00:00:00Z", "?offset=1&offset=2", "?after=%00",
        "?date_from=2026-02-30T00:00:00Z", "?total=-5",
    ]  # fmt: skip
    for module in ("locations", "sessions", "cdrs", "tariffs"):
        for query in queries:
            answer = await world.call(world.emsp_a, "GET", SENDER, module, query, frm=EMA, to=HUB)
            _check(answer, f"GET {module}{query}")
    for query in queries:
        answer = await world.call(world.cpo_a, "GET", SENDER, "tokens", query, frm=CPA, to=HUB)
        _check(answer, f"GET tokens{query}")


async def test_nul_characters_are_refused_with_2001(world: World) -> None:
    """U+0000 is valid JSON but no OCPI string allows it, and PostgreSQL cannot store it: refused, not a 500."""
    location = builders.location("LOC1", party_id="CPA")
    named = location.rstrip(b"}") + b', "name": "Station\\u0000"}'
    answer = await world.call(world.cpo_a, "PUT", RECEIVER, "locations", "NL/CPA/LOC1", frm=CPA, to=HUB, body=named)
    assert (answer.status, answer.status_code) == (200, 2001), answer.envelope
    # A URL field has no character pattern of its own: the codec's check is what refuses it (was a 500).
    command = b'{"response_url": "http://x/\\u0000", "token": {}, "location_id": "LOC1"}'
    answer = await world.call(
        world.emsp_a, "POST", RECEIVER, "commands", "START_SESSION", frm=EMA, to=CPA, body=command
    )
    assert (answer.status, answer.status_code) == (200, 2001), answer.envelope
    assert "U+0000" in str(answer.envelope)
    # An escaped backslash before "u0000" is six ordinary characters, not U+0000.
    literal = location.rstrip(b"}") + b', "name": "C:\\\\u0000"}'
    answer = await world.call(world.cpo_a, "PUT", RECEIVER, "locations", "NL/CPA/LOC1", frm=CPA, to=HUB, body=literal)
    assert answer.status_code == 1000, answer.envelope


async def test_nul_characters_in_url_ids_never_get_a_server_error(world: World) -> None:
    location = builders.location("LOC1", party_id="CPA")
    calls: list[tuple[PeerPlatform, str, str, str, str, tuple[str, str], tuple[str, str], bytes | None]] = [
        (world.cpo_a, "PUT", RECEIVER, "locations", "NL/CPA/LOC%001", CPA, HUB, location),
        (world.cpo_a, "PATCH", RECEIVER, "locations", "NL/CPA/LOC1/%00", CPA, HUB, b'{"status": "BLOCKED"}'),
        (world.emsp_a, "GET", SENDER, "locations", "NL/CPA/%00", EMA, HUB, None),
        (world.emsp_a, "GET", SENDER, "tariffs", "NL/CPA/%00", EMA, HUB, None),
        (world.cpo_a, "GET", RECEIVER, "tokens", "DE/EMA/%00", CPA, HUB, None),
        (world.cpo_a, "POST", SENDER, "tokens", "%00/authorize", CPA, EMA, b"{}"),
        (world.emsp_a, "GET", RECEIVER, "sessions", "NL/CPA/%00", EMA, CPA, None),
    ]
    for peer, method, interface, module, tail, frm, to, body in calls:
        answer = await world.call(peer, method, interface, module, tail, frm=frm, to=to, body=body)
        _check(answer, f"{method} {interface} {module}/{tail}")
