"""Adding, listing and ending roaming agreements (DESIGN §4: under HUB_ROAMING_POLICY=agreements only pairs with
an agreement in force may exchange data)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.agreements.models import RoamingAgreement
from hub.ocpi.types import ci_key
from hub.platform.clock import iso_utc


class AgreementError(ValueError):
    """Bad input for an agreement; the message says which."""


@dataclass(frozen=True, slots=True)
class PartyRef:
    country_code: str
    party_id: str

    @classmethod
    def parse(cls, text: str) -> PartyRef:
        """``NL/CPA`` (country code / party id, CiStrings: any case)."""
        cc, sep, pid = text.strip().partition("/")
        if not sep or len(cc) != 2 or not cc.isalpha() or not 1 <= len(pid) <= 3 or not pid.isalnum():
            raise AgreementError(f"a party is COUNTRY/PARTY, e.g. NL/CPA; got {text!r}")
        return cls(ci_key(cc), ci_key(pid))

    def __str__(self) -> str:
        return f"{self.country_code}/{self.party_id}"


async def add_agreement(
    session: AsyncSession,
    cpo: PartyRef,
    emsp: PartyRef,
    *,
    now: datetime,
    valid_from: datetime | None = None,
    valid_to: datetime | None = None,
) -> RoamingAgreement:
    """Create the agreement, or re-activate and re-date the existing one for the same pair."""
    if cpo == emsp:
        raise AgreementError("an agreement needs two different parties")
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        raise AgreementError("valid_to must be after valid_from")
    existing = await session.scalar(
        select(RoamingAgreement).where(
            RoamingAgreement.cpo_country_code == cpo.country_code,
            RoamingAgreement.cpo_party_id == cpo.party_id,
            RoamingAgreement.emsp_country_code == emsp.country_code,
            RoamingAgreement.emsp_party_id == emsp.party_id,
        )
    )
    if existing is None:
        existing = RoamingAgreement(
            cpo_country_code=cpo.country_code,
            cpo_party_id=cpo.party_id,
            emsp_country_code=emsp.country_code,
            emsp_party_id=emsp.party_id,
            created_at=now,
        )
        session.add(existing)
    existing.active = True
    existing.valid_from = valid_from
    existing.valid_to = valid_to
    existing.updated_at = now
    await session.flush()
    return existing


async def end_agreement(session: AsyncSession, cpo: PartyRef, emsp: PartyRef, *, now: datetime) -> bool:
    agreement = await session.scalar(
        select(RoamingAgreement).where(
            RoamingAgreement.cpo_country_code == cpo.country_code,
            RoamingAgreement.cpo_party_id == cpo.party_id,
            RoamingAgreement.emsp_country_code == emsp.country_code,
            RoamingAgreement.emsp_party_id == emsp.party_id,
            RoamingAgreement.active.is_(True),
        )
    )
    if agreement is None:
        return False
    agreement.active = False
    agreement.updated_at = now
    return True


async def list_agreements(session: AsyncSession) -> list[RoamingAgreement]:
    return list((await session.scalars(select(RoamingAgreement).order_by(RoamingAgreement.id))).all())


def agreement_as_dict(agreement: RoamingAgreement) -> dict[str, object]:
    return {
        "id": agreement.id,
        "cpo": f"{agreement.cpo_country_code}/{agreement.cpo_party_id}",
        "emsp": f"{agreement.emsp_country_code}/{agreement.emsp_party_id}",
        "active": agreement.active,
        "valid_from": iso_utc(agreement.valid_from),
        "valid_to": iso_utc(agreement.valid_to),
    }
