"""ORM models of the party registry: platforms (one per credentials connection), their parties and endpoints."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hub.platform.db import Base, UtcDateTime


class RegistrationStatus(enum.StrEnum):
    INVITED = "INVITED"  # the operator issued a token A; the platform has not registered yet
    CONNECTING = "CONNECTING"  # the hub is registering with the platform (outbound handshake under way)
    REGISTERED = "REGISTERED"  # token C (inbound) and token B (outbound) are in place
    UNREGISTERED = "UNREGISTERED"  # credentials deleted by either side; every token is dead
    SUSPENDED = "SUSPENDED"  # an operator suspended it: its token is refused, its parties stay reserved to it


class Direction(enum.StrEnum):
    INBOUND = "INBOUND"  # the platform registered itself with a token A the hub issued
    OUTBOUND = "OUTBOUND"  # the hub registered with the platform using a token A the platform issued


class ConnectionStatus(enum.StrEnum):
    """How reachable a platform's parties are, as announced in HubClientInfo (mod_hub_client_info §ConnectionStatus)."""

    CONNECTED = "CONNECTED"
    OFFLINE = "OFFLINE"
    PLANNED = "PLANNED"
    SUSPENDED = "SUSPENDED"


class TokenForm(enum.StrEnum):
    BASE64 = "base64"  # OCPI 2.2+: "Token " + Base64(token) (transport_and_format §4.1)
    RAW = "raw"  # older peers: "Token " + token


class Platform(Base):
    """One OCPI connection: a partner platform that hosts one or more parties (roles)."""

    __tablename__ = "platforms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default=RegistrationStatus.INVITED)
    direction: Mapped[str] = mapped_column(String(8))
    version: Mapped[str | None] = mapped_column(String(8))
    versions_url: Mapped[str | None] = mapped_column(String(255))
    # Hashes only (DESIGN §7): the token A the hub issued, and the token the platform uses to call the hub.
    token_a_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    inbound_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    # Encrypted with HUB_SECRET_KEY: the token the hub uses to call the platform.
    outbound_token: Mapped[str | None] = mapped_column(Text)
    # How the platform sends its token, and so how the hub sends ours back (DESIGN §7).
    token_form: Mapped[str] = mapped_column(String(8), default=TokenForm.BASE64)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    registered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Reachability for HubClientInfo: set by registration, deletion, deliveries and the still-alive probe.
    connection_status: Mapped[str] = mapped_column(String(16), default=ConnectionStatus.PLANNED)
    status_changed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    parties: Mapped[list[Party]] = relationship(
        back_populates="platform", cascade="all, delete-orphan", lazy="raise", order_by="Party.id"
    )
    endpoints: Mapped[list[PlatformEndpoint]] = relationship(
        back_populates="platform", cascade="all, delete-orphan", lazy="raise", order_by="PlatformEndpoint.id"
    )


class Party(Base):
    """A role a platform announced in its credentials (country_code, party_id, role, business details)."""

    __tablename__ = "parties"
    __table_args__ = (UniqueConstraint("platform_id", "country_code", "party_id", "role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id", ondelete="CASCADE"), index=True)
    # CiStrings (types §CiString) kept upper-cased so lookups are case-insensitive; headers forward the originals.
    country_code: Mapped[str] = mapped_column(String(2))
    party_id: Mapped[str] = mapped_column(String(3))
    role: Mapped[str] = mapped_column(String(8))
    business_name: Mapped[str] = mapped_column(String(100))
    # The BusinessDetails object as the platform sent it (JSON), echoed unchanged to others.
    business_details: Mapped[str] = mapped_column(Text)
    # "CC/PID/ROLE" while the platform is registered, NULL otherwise: a unique index on it refuses a second active
    # registration of the same party by another platform (hub notes §2.6) and lets it come back after a DELETE.
    active_key: Mapped[str | None] = mapped_column(String(16), unique=True)

    platform: Mapped[Platform] = relationship(back_populates="parties", lazy="raise")


class PlatformEndpoint(Base):
    """An endpoint from the platform's version details (version_information_endpoint §Endpoint)."""

    __tablename__ = "platform_endpoints"
    __table_args__ = (UniqueConstraint("platform_id", "identifier", "role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id", ondelete="CASCADE"), index=True)
    identifier: Mapped[str] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(8))
    url: Mapped[str] = mapped_column(String(255))

    platform: Mapped[Platform] = relationship(back_populates="endpoints", lazy="raise")
