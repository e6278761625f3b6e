"""The one-command start stays honest: ``ocpi-hub db upgrade`` + ``serve`` on the embedded default, no settings."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

import aiohttp
import pytest

from tests.peers import PeerPlatform
from tests.peers.net import free_port
from tests.support.cli import OCPI_HUB, run_cli

pytestmark = pytest.mark.embedded


def _bare_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HUB_")}
    # Tests run every platform on loopback; a real deployment leaves the SSRF guard on.
    env["HUB_ALLOW_PRIVATE_PEERS"] = "true"
    return env


async def _wait_ready(url: str, process: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            if process.returncode is not None:
                raise AssertionError(f"serve exited with {process.returncode}")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("the hub did not become ready")


async def test_embedded_hub_serves_and_a_partner_registers(tmp_path: Path) -> None:
    env = _bare_env()
    upgraded = await run_cli("db", "upgrade", env=env, cwd=str(tmp_path))
    assert upgraded.code == 0, upgraded.stderr
    assert (tmp_path / "ocpi-hub.db").exists()
    assert (tmp_path / "ocpi-hub.db.secret").exists()  # generated once, beside the database
    assert oct((tmp_path / "ocpi-hub.db.secret").stat().st_mode & 0o777) == "0o600"

    port = free_port()
    # Serving elsewhere than the default http://127.0.0.1:8000 is told to every command through HUB_PUBLIC_URL.
    env["HUB_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    serve = await asyncio.create_subprocess_exec(
        OCPI_HUB,
        "serve",
        "--port",
        str(port),
        env=env,
        cwd=str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await _wait_ready(f"http://127.0.0.1:{port}/health/ready", serve)
        invitation = await run_cli("parties", "invite", "--name", "Laptop CPO", env=env, cwd=str(tmp_path))
        assert invitation.code == 0, invitation.stderr
        invited = json.loads(invitation.stdout)
        assert invited["versions_url"] == f"http://127.0.0.1:{port}/ocpi/versions"
        async with PeerPlatform() as peer:
            theirs = await peer.register(invited["versions_url"], invited["token_a"])
            assert theirs["roles"][0]["role"] == "HUB"
            assert (await peer.get_credentials())["token"] == peer.token_c
    finally:
        serve.terminate()
        _, stderr = await asyncio.wait_for(serve.communicate(), 30)
    # The first start printed a generated admin key once.
    assert re.search(r"Generated the first admin API key \(shown once, keep it\): \S{20,}", stderr.decode())
