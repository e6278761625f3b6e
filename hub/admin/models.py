"""ORM models of the operators' surface: API keys (DESIGN §7: hashed, roles admin / finance / viewer) and the
append-only audit log of every change made through the admin API and the CLI."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hub.platform.db import Base, UtcDateTime


class OperatorRole(enum.StrEnum):
    ADMIN = "admin"
    FINANCE = "finance"
    VIEWER = "viewer"


class OperatorKey(Base):
    __tablename__ = "operator_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # A revoked key is kept (the audit log names it) but no longer opens anything.
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class AuditEntry(Base):
    """One change made by an operator. Rows are only ever inserted: a trigger refuses UPDATE (and DELETE on
    PostgreSQL), and no code path in the hub updates or deletes them."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    # The operator key that made the change; NULL for the CLI (which runs with database access, not a key).
    operator_key_id: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(100))  # the key's name, or "cli"
    action: Mapped[str] = mapped_column(String(64))  # e.g. "party.suspend", "agreement.add", "operator.revoke"
    target: Mapped[str] = mapped_column(String(128), index=True)  # e.g. "platform:3", "agreement:NL/CPA-DE/EMA"
    before: Mapped[str | None] = mapped_column(Text)  # JSON
    after: Mapped[str | None] = mapped_column(Text)  # JSON
    request_id: Mapped[str | None] = mapped_column(String(64))
