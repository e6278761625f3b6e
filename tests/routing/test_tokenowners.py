"""The in-memory token owner lookup of open-routed authorize (routing.tokenowners) with a controlled clock."""

from __future__ import annotations

from routing.tokenowners import TokenOwners


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_owners_are_remembered_until_their_time_to_live_and_forgotten_on_a_push() -> None:
    clock = Clock()
    owners = TokenOwners(ttl=30.0, now=clock)
    key = TokenOwners.key("tok1", "rfid")
    assert key == ("TOK1", "RFID")  # CiStrings: any case finds the same entry
    assert owners.get(key) is None
    owners.put(key, (("DE", "EMA"),))
    clock.now += 29.9
    assert owners.get(key) == (("DE", "EMA"),)
    clock.now += 0.2
    assert owners.get(key) is None  # expired: the next authorize asks the database again
    owners.put(key, (("DE", "EMA"),))
    owners.forget("Tok1", "RFID")
    assert owners.get(key) is None


def test_unknown_tokens_are_not_remembered_and_memory_is_bounded() -> None:
    owners = TokenOwners(max_entries=10)
    owners.put(TokenOwners.key("NOPE", "RFID"), ())
    assert len(owners) == 0  # a token pushed a moment later must be found at once
    for i in range(25):
        owners.put(TokenOwners.key(f"T{i}", "RFID"), (("DE", "EMA"),))
    assert len(owners) <= 10
    assert owners.get(TokenOwners.key("T24", "RFID")) is not None  # the newest stay
    assert owners.get(TokenOwners.key("T0", "RFID")) is None
