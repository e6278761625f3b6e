"""Running the real ``ocpi-hub`` console script in a subprocess, without blocking the test's event loop."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from hub.settings import Settings

OCPI_HUB = str(Path(sys.executable).with_name("ocpi-hub"))


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str


def hub_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HUB_")}
    env.update(
        HUB_DATABASE_URL=settings.database_url,
        HUB_PUBLIC_URL=settings.public_url,
        HUB_SECRET_KEY=settings.secret_key,
        HUB_ADMIN_TOKEN=settings.admin_token or "",
        HUB_ALLOW_PRIVATE_PEERS="1" if settings.allow_private_peers else "0",
        HUB_COUNTRY_CODE=settings.country_code,
        HUB_PARTY_ID=settings.party_id,
        HUB_NAME=settings.hub_name,
        HUB_PARTNER_TIMEOUT=str(settings.partner_timeout),
    )
    env.update(extra)
    return env


async def run_cli(*args: str, env: dict[str, str], cwd: str | None = None, timeout: float = 60) -> CliResult:
    process = await asyncio.create_subprocess_exec(
        OCPI_HUB,
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return CliResult(process.returncode, stdout.decode(), stderr.decode())
