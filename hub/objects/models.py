"""ORM models of the stored OCPI objects: one row per object, its JSON kept as raw bytes, keys upper-cased.

Key columns (``country_code``, ``party_id``, object ids, token ``uid``) hold `hub.ocpi.types.ci_key` of the CiString
(types §16.1: compared case-insensitively), so the unique constraints work on the normalised form; the original
spelling stays in ``data``. The autoincrement ``id`` is the creation order "GET All" pages by (transport_and_format
Pagination: paging must be stable). Class names end in ``Row`` so they never collide with the wire Structs
(``ocpi.Location``) or with other contexts' models in ``hub.models``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.platform.db import Base, UtcDateTime


class LocationRow(Base):
    """A broadcast Location (mod_locations §8.3.1) with its EVSEs and Connectors inside ``data``."""

    __tablename__ = "locations"
    __table_args__ = (UniqueConstraint("country_code", "party_id", "location_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    country_code: Mapped[str] = mapped_column(String(2))
    party_id: Mapped[str] = mapped_column(String(3))
    location_id: Mapped[str] = mapped_column(String(36))
    # mod_locations §8.3.1 publish: false means only holders of a token in publish_allowed_to may see it.
    publish: Mapped[bool] = mapped_column(Boolean)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    # The Location's own last_updated, which covers its EVSEs and Connectors (mod_locations §8.2.2).
    last_updated: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class LocationAudienceRow(Base):
    """One entry of a Location's ``publish_allowed_to`` (mod_locations §8.4.20), so visibility is a SQL join.

    A field left NULL matches anything; ``uid`` and ``group_id`` are CiStrings (stored upper-cased), ``visual_number``
    and ``issuer`` are case-sensitive strings.
    """

    __tablename__ = "location_audiences"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    location_row_id: Mapped[int] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"), index=True)
    uid: Mapped[str | None] = mapped_column(String(36))
    type: Mapped[str | None] = mapped_column(String(16))
    visual_number: Mapped[str | None] = mapped_column(String(64))
    issuer: Mapped[str | None] = mapped_column(String(64))
    group_id: Mapped[str | None] = mapped_column(String(36))


class TariffRow(Base):
    """The current version of a broadcast Tariff (mod_tariffs §11.3.1); DELETE removes the row."""

    __tablename__ = "tariffs"
    __table_args__ = (UniqueConstraint("country_code", "party_id", "tariff_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    country_code: Mapped[str] = mapped_column(String(2))
    party_id: Mapped[str] = mapped_column(String(3))
    tariff_id: Mapped[str] = mapped_column(String(36))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    last_updated: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class TariffVersionRow(Base):
    """Every Tariff PUT and DELETE, append-only: clearing prices a CDR with the tariff valid at session start.

    ``last_updated`` is when the version took effect: the PUT's own ``last_updated``, or for a DELETE (which carries
    no body) the time the hub received it. ``data`` is NULL for a DELETE.
    """

    __tablename__ = "tariff_versions"
    __table_args__ = (Index("ix_tariff_versions_key", "country_code", "party_id", "tariff_id", "last_updated"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    country_code: Mapped[str] = mapped_column(String(2))
    party_id: Mapped[str] = mapped_column(String(3))
    tariff_id: Mapped[str] = mapped_column(String(36))
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    last_updated: Mapped[datetime] = mapped_column(UtcDateTime())
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    deleted: Mapped[bool] = mapped_column(Boolean)


class TokenRow(Base):
    """A broadcast Token (mod_tokens §12.3.2); (uid, type) is unique per eMSP and indexed for open routing."""

    __tablename__ = "tokens"
    __table_args__ = (
        UniqueConstraint("country_code", "party_id", "uid", "type"),
        # Open routing of a real-time authorize finds the eMSP by (uid, type) alone (hub notes §4.8).
        Index("ix_tokens_uid_type", "uid", "type"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    country_code: Mapped[str] = mapped_column(String(2))
    party_id: Mapped[str] = mapped_column(String(3))
    uid: Mapped[str] = mapped_column(String(36))
    type: Mapped[str] = mapped_column(String(16))
    # Copies of the fields a Location's publish_allowed_to can name (mod_locations §8.4.20).
    visual_number: Mapped[str | None] = mapped_column(String(64))
    issuer: Mapped[str] = mapped_column(String(64))
    group_id: Mapped[str | None] = mapped_column(String(36))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    last_updated: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class SessionRow(Base):
    """A Session (mod_sessions §9.3.1) of a CPO, with the eMSP it belongs to (its ``cdr_token`` owner)."""

    __tablename__ = "sessions"
    __table_args__ = (
        UniqueConstraint("country_code", "party_id", "session_id"),
        Index("ix_sessions_emsp", "emsp_country_code", "emsp_party_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    country_code: Mapped[str] = mapped_column(String(2))
    party_id: Mapped[str] = mapped_column(String(3))
    session_id: Mapped[str] = mapped_column(String(36))
    # A Session PATCH carries no cdr_token, so routing needs this to address it (hub notes §4.2, §4.8).
    emsp_country_code: Mapped[str] = mapped_column(String(2))
    emsp_party_id: Mapped[str] = mapped_column(String(3))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    last_updated: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class CdrRow(Base):
    """A CDR (mod_cdrs §10.3.1) exactly as received; immutable, corrections arrive as credit CDRs."""

    __tablename__ = "cdrs"
    __table_args__ = (
        UniqueConstraint("country_code", "party_id", "cdr_id"),
        Index("ix_cdrs_emsp", "emsp_country_code", "emsp_party_id"),
        Index("ix_cdrs_credit_reference", "country_code", "party_id", "credit_reference_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    country_code: Mapped[str] = mapped_column(String(2))
    party_id: Mapped[str] = mapped_column(String(3))
    cdr_id: Mapped[str] = mapped_column(String(39))
    emsp_country_code: Mapped[str] = mapped_column(String(2))
    emsp_party_id: Mapped[str] = mapped_column(String(3))
    # Lets clearing match the CDR with its Session (same CPO, session_id) without decoding every CDR.
    session_id: Mapped[str | None] = mapped_column(String(36))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    last_updated: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # mod_cdrs §10.1.1 credit CDRs: credit=true and the id of the CDR it credits (same CPO).
    credit: Mapped[bool] = mapped_column(Boolean)
    credit_reference_id: Mapped[str | None] = mapped_column(String(39))
