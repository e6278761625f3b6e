"""Hub settings, read once from ``HUB_*`` environment variables (DESIGN §9).

On the embedded default (SQLite) nothing is required: a missing secret key is generated once and kept beside the
database file. With PostgreSQL, ``HUB_SECRET_KEY`` and ``HUB_ADMIN_TOKEN`` are required, because several hub
instances must share them and a generated value would differ per machine.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

import msgspec
from sqlalchemy.engine import make_url

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./ocpi-hub.db"


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the variable."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    public_url: str = "http://127.0.0.1:8000"
    country_code: str = "NL"
    party_id: str = "HUB"
    hub_name: str = "OCPI Hub"
    roaming_policy: str = "open"
    allow_private_peers: bool = False
    secret_key: str = ""
    # True when the embedded default had to generate the secret key just now (the app warns once at start).
    secret_key_generated: bool = False
    admin_token: str | None = None
    # Seconds the hub waits for a partner while it runs the credentials handshake (versions, version details).
    partner_timeout: float = 10.0
    # Seconds a routed request may take at the receiver before the hub answers 4002 (status_codes §4002).
    forward_timeout: float = 30.0
    # Real-time authorization has a driver waiting at the charger (mod_tokens §real-time authorization): tighter.
    authorize_timeout: float = 5.0
    # Seconds of silence after which the hub checks a platform is still alive (mod_hub_client_info: "start with 5
    # minutes").
    liveness_after: float = 300.0
    # Seconds between checks for registry/agreement changes made by other processes (without Redis the only way
    # another hub instance learns of them; with Redis a pub/sub signal makes it immediate).
    routing_poll: float = 2.0
    # Seconds after a settlement period's end before the clearing schedule closes it (late CDRs of its last hours
    # still arrive); HUB_CLEARING_CLOSE_GRACE, 0 closes at the end itself.
    clearing_close_grace: float = 86400.0
    # Seconds between runs of the clearing schedule (intake of stored CDRs, due closes) on the embedded default;
    # with Redis the workers' cron runs it once a minute. HUB_CLEARING_INTERVAL.
    clearing_interval: float = 60.0

    @property
    def is_embedded(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def versions_url(self) -> str:
        return f"{self.public_url}/ocpi/versions"

    @property
    def version_details_url(self) -> str:
        return f"{self.public_url}/ocpi/2.2.1"


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _flag(name: str, value: str | None) -> bool:
    if value is None:
        return False
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise SettingsError(f"{name} must be true or false, got {value!r}")


def _secret_file(database_url: str) -> Path:
    database = make_url(database_url).database or "ocpi-hub.db"
    return Path(f"{database}.secret")


def _embedded_secret(database_url: str) -> tuple[str, bool]:
    """Return the secret kept beside the SQLite file, creating it on first use (second value: newly made)."""
    path = _secret_file(database_url)
    if path.exists():
        return path.read_text().strip(), False
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    path.write_text(value + "\n")
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return value, True


def _seconds(env: Mapping[str, str], name: str, default: str) -> float:
    value = env.get(name) or default
    try:
        seconds = float(value)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number of seconds, got {value!r}") from exc
    if seconds <= 0:
        raise SettingsError(f"{name} must be positive, got {value!r}")
    return seconds


def _grace(env: Mapping[str, str], name: str, default: str) -> float:
    value = env.get(name) or default
    try:
        seconds = float(value)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number of seconds, got {value!r}") from exc
    if not 0 <= seconds < float("inf"):
        raise SettingsError(f"{name} must be zero or more seconds, got {value!r}")
    return seconds


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from the environment (or the mapping given, as tests do)."""
    env = os.environ if env is None else env
    database_url = env.get("HUB_DATABASE_URL") or DEFAULT_DATABASE_URL
    try:
        make_url(database_url)
    except Exception as exc:  # SQLAlchemy raises ArgumentError with a vague text; name the variable instead
        raise SettingsError(f"HUB_DATABASE_URL is not a SQLAlchemy URL: {database_url!r}") from exc
    embedded = database_url.startswith("sqlite")
    policy = (env.get("HUB_ROAMING_POLICY") or "open").strip().lower()
    if policy not in {"open", "agreements"}:
        raise SettingsError(f"HUB_ROAMING_POLICY must be 'open' or 'agreements', got {policy!r}")
    country_code = (env.get("HUB_COUNTRY_CODE") or "NL").strip()
    party_id = (env.get("HUB_PARTY_ID") or "HUB").strip()
    # types §CiString: country_code is ISO 3166 alpha-2, party_id three printable ASCII characters.
    if len(country_code) != 2 or not country_code.isalpha() or not country_code.isascii():
        raise SettingsError(f"HUB_COUNTRY_CODE must be two letters, got {country_code!r}")
    if len(party_id) != 3 or not party_id.isascii() or not party_id.isalnum():
        raise SettingsError(f"HUB_PARTY_ID must be three letters or digits, got {party_id!r}")
    secret_key = env.get("HUB_SECRET_KEY") or ""
    admin_token = env.get("HUB_ADMIN_TOKEN") or None
    if not embedded:
        missing = [
            name for name, value in (("HUB_SECRET_KEY", secret_key), ("HUB_ADMIN_TOKEN", admin_token)) if not value
        ]
        if missing:
            raise SettingsError(f"{' and '.join(missing)} required when HUB_DATABASE_URL is not SQLite")
    secret_key_generated = False
    if embedded and not secret_key:
        secret_key, secret_key_generated = _embedded_secret(database_url)
    public_url = (env.get("HUB_PUBLIC_URL") or "http://127.0.0.1:8000").rstrip("/")
    if not public_url.startswith(("http://", "https://")):
        raise SettingsError(f"HUB_PUBLIC_URL must be an http(s) URL, got {public_url!r}")
    partner_timeout = _seconds(env, "HUB_PARTNER_TIMEOUT", "10")
    forward_timeout = _seconds(env, "HUB_FORWARD_TIMEOUT", "30")
    authorize_timeout = _seconds(env, "HUB_AUTHORIZE_TIMEOUT", "5")
    liveness_after = _seconds(env, "HUB_LIVENESS_AFTER", "300")
    routing_poll = _seconds(env, "HUB_ROUTING_POLL", "2")
    clearing_close_grace = _grace(env, "HUB_CLEARING_CLOSE_GRACE", "86400")
    clearing_interval = _seconds(env, "HUB_CLEARING_INTERVAL", "60")
    return Settings(
        database_url=database_url,
        redis_url=env.get("HUB_REDIS_URL") or None,
        public_url=public_url,
        country_code=country_code.upper(),
        party_id=party_id.upper(),
        hub_name=env.get("HUB_NAME") or "OCPI Hub",
        roaming_policy=policy,
        allow_private_peers=_flag("HUB_ALLOW_PRIVATE_PEERS", env.get("HUB_ALLOW_PRIVATE_PEERS")),
        secret_key=secret_key,
        secret_key_generated=secret_key_generated,
        admin_token=admin_token,
        partner_timeout=partner_timeout,
        forward_timeout=forward_timeout,
        authorize_timeout=authorize_timeout,
        liveness_after=liveness_after,
        routing_poll=routing_poll,
        clearing_close_grace=clearing_close_grace,
        clearing_interval=clearing_interval,
    )
