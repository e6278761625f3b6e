"""Fixtures of the end-to-end routing scenarios (``tests/routing/test_scenarios_*.py``), loaded as a plugin.

Test modules say ``pytest_plugins = ("tests.routing.scenarios_conftest",)`` and import helpers from
``tests.routing.world``; this module is never imported by them directly, so pytest can rewrite its asserts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import HubFactory, InviteOn
from tests.peers import PeerPlatform
from tests.routing.world import AUTHORIZE_TIMEOUT, FORWARD_TIMEOUT, MakeWorld, World, build_world


@pytest.fixture
async def make_world(hub_factory: HubFactory, invite_on: InviteOn) -> AsyncIterator[MakeWorld]:
    """Start the hub with the given setting overrides and register the four partner platforms with it."""
    started: list[PeerPlatform] = []

    async def make(**settings: Any) -> World:
        overrides = {"forward_timeout": FORWARD_TIMEOUT, "authorize_timeout": AUTHORIZE_TIMEOUT, **settings}
        return await build_world(await hub_factory(**overrides), invite_on, started)

    yield make
    for peer in started:
        await peer.stop()
    # A partner that crashed while answering would make the hub's behaviour meaningless to judge.
    assert [error for peer in started for error in peer.errors] == []


@pytest.fixture
async def world(make_world: MakeWorld) -> World:
    return await make_world()
