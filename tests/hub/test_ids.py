"""Message ids (hub.platform.ids): random version-4 UUIDs in their canonical text form."""

from __future__ import annotations

import uuid

from hub.platform.ids import new_id


def test_ids_are_canonical_random_uuids() -> None:
    ids = [new_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(value)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == value  # lower-case, 8-4-4-4-12
    # Every variant digit the RFC allows shows up, and nothing else: its two free bits are random.
    assert {value[19] for value in ids} == set("89ab")
