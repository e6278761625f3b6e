"""Every change an operator can make, shared by the admin API and the CLI, each written to the audit log.

A change and its audit row share one transaction where the change is a single transaction (agreements, deliveries,
operator keys). Party actions talk to the partner platform between transactions (the registry never holds a
transaction across a network call), so their audit row is written right after the registry committed the change,
with the platform as it was before and as it is after.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.admin.service import (
    Operator,
    create_operator_key,
    operator_key_as_dict,
    record_audit,
    revoke_operator_key,
)
from hub.agreements.models import RoamingAgreement
from hub.agreements.service import PartyRef, add_agreement, agreement_as_dict, end_agreement
from hub.parties.service import platform_as_dict
from hub.runtime import Runtime
from routing import outbox

PartyAction = Literal["suspend", "activate", "delete", "rotate"]
PARTY_ACTIONS: tuple[PartyAction, ...] = ("suspend", "activate", "delete", "rotate")


def platform_target(platform_id: int) -> str:
    return f"platform:{platform_id}"


def agreement_target(cpo: PartyRef, emsp: PartyRef) -> str:
    return f"agreement:{cpo}:{emsp}"


async def party_action(
    rt: Runtime, actor: Operator, action: PartyAction, platform_id: int, *, request_id: str | None = None
) -> dict[str, object]:
    """Suspend, activate, delete or rotate a platform (registry errors propagate as ``RegistryError``)."""
    registry = rt.registry
    before = platform_as_dict(await registry.get_platform(platform_id))
    extra: dict[str, object] = {}
    if action == "suspend":
        platform = await registry.suspend(platform_id)
    elif action == "activate":
        platform = await registry.activate(platform_id)
    elif action == "rotate":
        platform = await registry.rotate(platform_id)
    else:
        platform, told = await registry.delete(platform_id)
        extra["platform_notified"] = told
    after = platform_as_dict(platform)
    async with rt.sessions.begin() as session:
        await record_audit(
            session,
            actor=actor,
            action=f"party.{action}",
            target=platform_target(platform_id),
            before=before,
            after={**after, **extra},
            now=rt.clock.now(),
            request_id=request_id,
        )
    return {**after, **extra}


async def _agreement_state(session: AsyncSession, cpo: PartyRef, emsp: PartyRef) -> dict[str, object] | None:
    agreement = await session.scalar(
        select(RoamingAgreement).where(
            RoamingAgreement.cpo_country_code == cpo.country_code,
            RoamingAgreement.cpo_party_id == cpo.party_id,
            RoamingAgreement.emsp_country_code == emsp.country_code,
            RoamingAgreement.emsp_party_id == emsp.party_id,
        )
    )
    return None if agreement is None else agreement_as_dict(agreement)


async def agreement_add(
    rt: Runtime,
    actor: Operator,
    cpo: PartyRef,
    emsp: PartyRef,
    *,
    valid_from: datetime | None = None,
    valid_to: datetime | None = None,
    request_id: str | None = None,
) -> dict[str, object]:
    """Create or re-activate an agreement (``AgreementError`` on bad input), then reload routing."""
    async with rt.sessions.begin() as session:
        before = await _agreement_state(session, cpo, emsp)
        agreement = await add_agreement(
            session, cpo, emsp, now=rt.clock.now(), valid_from=valid_from, valid_to=valid_to
        )
        result = agreement_as_dict(agreement)
        await record_audit(
            session,
            actor=actor,
            action="agreement.add",
            target=agreement_target(cpo, emsp),
            before=before,
            after=result,
            now=rt.clock.now(),
            request_id=request_id,
        )
    await rt.agreements_changed((cpo.country_code, cpo.party_id), (emsp.country_code, emsp.party_id))
    return result


async def agreement_end(
    rt: Runtime, actor: Operator, cpo: PartyRef, emsp: PartyRef, *, request_id: str | None = None
) -> bool:
    """End the active agreement of a pair; False when there was none (nothing is audited then)."""
    async with rt.sessions.begin() as session:
        before = await _agreement_state(session, cpo, emsp)
        ended = await end_agreement(session, cpo, emsp, now=rt.clock.now())
        if ended:
            await session.flush()
            await record_audit(
                session,
                actor=actor,
                action="agreement.end",
                target=agreement_target(cpo, emsp),
                before=before,
                after=await _agreement_state(session, cpo, emsp),
                now=rt.clock.now(),
                request_id=request_id,
            )
    if ended:
        await rt.agreements_changed((cpo.country_code, cpo.party_id), (emsp.country_code, emsp.party_id))
    return ended


async def deliveries_retry(
    rt: Runtime,
    actor: Operator,
    *,
    ids: list[int] | None,
    platform_id: int | None,
    request_id: str | None = None,
) -> int:
    async with rt.sessions.begin() as session:
        count = await outbox.redeliver(session, ids=ids, platform_id=platform_id)
        await record_audit(
            session,
            actor=actor,
            action="deliveries.retry",
            target="deliveries" if platform_id is None else f"deliveries:platform:{platform_id}",
            before={"ids": ids, "platform": platform_id},
            after={"queued": count},
            now=rt.clock.now(),
            request_id=request_id,
        )
    return count


async def operator_add(
    rt: Runtime, actor: Operator, *, name: str, role: str, request_id: str | None = None
) -> tuple[dict[str, object], str]:
    """Create an operator key (``OperatorKeyError`` on bad input); returns its shape and the plain key."""
    async with rt.sessions.begin() as session:
        key, plain = await create_operator_key(session, name=name, role=role, now=rt.clock.now())
        result = operator_key_as_dict(key)
        await record_audit(
            session,
            actor=actor,
            action="operator.add",
            target=f"operator_key:{key.id}",
            before=None,
            after=result,
            now=rt.clock.now(),
            request_id=request_id,
        )
    return result, plain


async def operator_revoke(
    rt: Runtime, actor: Operator, key_id: int, *, request_id: str | None = None
) -> dict[str, object]:
    async with rt.sessions.begin() as session:
        before, key = await revoke_operator_key(session, key_id, now=rt.clock.now())
        result = operator_key_as_dict(key)
        await record_audit(
            session,
            actor=actor,
            action="operator.revoke",
            target=f"operator_key:{key_id}",
            before=before,
            after=result,
            now=rt.clock.now(),
            request_id=request_id,
        )
    return result
