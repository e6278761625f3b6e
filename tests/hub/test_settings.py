"""HUB_* settings: defaults for the embedded hub, required secrets with PostgreSQL, clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.settings import DEFAULT_DATABASE_URL, SettingsError, load_settings


def test_embedded_default_needs_nothing_and_keeps_its_generated_secret(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    first = load_settings({"HUB_DATABASE_URL": url})
    assert first.is_embedded
    assert first.secret_key_generated
    assert len(first.secret_key) >= 40
    again = load_settings({"HUB_DATABASE_URL": url})
    assert not again.secret_key_generated
    assert again.secret_key == first.secret_key
    assert (tmp_path / "hub.db.secret").read_text().strip() == first.secret_key


def test_defaults() -> None:
    settings = load_settings({"HUB_SECRET_KEY": "k"})
    assert settings.database_url == DEFAULT_DATABASE_URL == "sqlite+aiosqlite:///./ocpi-hub.db"
    assert settings.redis_url is None
    assert settings.versions_url == "http://127.0.0.1:8000/ocpi/versions"
    assert (settings.country_code, settings.party_id, settings.roaming_policy) == ("NL", "HUB", "open")
    assert settings.allow_private_peers is False


def test_postgres_requires_secret_key_and_admin_token() -> None:
    with pytest.raises(SettingsError, match="HUB_SECRET_KEY and HUB_ADMIN_TOKEN required"):
        load_settings({"HUB_DATABASE_URL": "postgresql+asyncpg://h/db"})
    with pytest.raises(SettingsError, match=r"^HUB_ADMIN_TOKEN required"):
        load_settings({"HUB_DATABASE_URL": "postgresql+asyncpg://h/db", "HUB_SECRET_KEY": "s"})
    ok = load_settings({"HUB_DATABASE_URL": "postgresql+asyncpg://h/db", "HUB_SECRET_KEY": "s", "HUB_ADMIN_TOKEN": "t"})
    assert not ok.is_embedded


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("HUB_ROAMING_POLICY", "closed", "HUB_ROAMING_POLICY must be 'open' or 'agreements'"),
        ("HUB_COUNTRY_CODE", "NLD", "HUB_COUNTRY_CODE must be two letters"),
        ("HUB_PARTY_ID", "HU", "HUB_PARTY_ID must be three letters or digits"),
        ("HUB_ALLOW_PRIVATE_PEERS", "maybe", "HUB_ALLOW_PRIVATE_PEERS must be true or false"),
        ("HUB_PUBLIC_URL", "hub.example.com", "HUB_PUBLIC_URL must be an http"),
        ("HUB_DATABASE_URL", "not a url", "HUB_DATABASE_URL is not a SQLAlchemy URL"),
        ("HUB_PARTNER_TIMEOUT", "soon", "HUB_PARTNER_TIMEOUT must be a number"),
        ("HUB_FORWARD_TIMEOUT", "0", "HUB_FORWARD_TIMEOUT must be positive"),
        ("HUB_AUTHORIZE_TIMEOUT", "-1", "HUB_AUTHORIZE_TIMEOUT must be positive"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings({"HUB_SECRET_KEY": "k", name: value})


def test_values_are_normalised() -> None:
    settings = load_settings(
        {
            "HUB_SECRET_KEY": "k",
            "HUB_COUNTRY_CODE": "de",
            "HUB_PARTY_ID": "hb1",
            "HUB_PUBLIC_URL": "https://hub.example.com/",
            "HUB_ALLOW_PRIVATE_PEERS": "Yes",
            "HUB_ROAMING_POLICY": "Agreements",
        }
    )
    assert (settings.country_code, settings.party_id) == ("DE", "HB1")
    assert settings.versions_url == "https://hub.example.com/ocpi/versions"
    assert settings.allow_private_peers is True
    assert settings.roaming_policy == "agreements"
