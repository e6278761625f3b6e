"""ORM model of a roaming agreement between one CPO party and one eMSP party."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.platform.db import Base, UtcDateTime


class RoamingAgreement(Base):
    __tablename__ = "roaming_agreements"
    __table_args__ = (
        UniqueConstraint(
            "cpo_country_code", "cpo_party_id", "emsp_country_code", "emsp_party_id", name="uq_roaming_agreements_pair"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # CiStrings kept upper-cased (types §CiString), like the party registry.
    cpo_country_code: Mapped[str] = mapped_column(String(2))
    cpo_party_id: Mapped[str] = mapped_column(String(3))
    emsp_country_code: Mapped[str] = mapped_column(String(2))
    emsp_party_id: Mapped[str] = mapped_column(String(3))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    valid_from: Mapped[datetime | None] = mapped_column(UtcDateTime())
    valid_to: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
