"""The sales team as the product acts on it: who gets a lead, who may own one, who left.

The playbook's ``team.sdrs`` says who the SDRs are and where they sell; the ``users`` table
says whose login is deactivated. An owner must be both: in the team and not deactivated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from nurture.adapters.database import LeadRow, User, utcnow
from nurture.domain.cadence import Playbook, Sdr
from nurture.domain.names import SIGNAL_REASSIGN, workflow_id
from nurture.domain.vocabulary import FINAL_STAGES
from nurture.services.accounts import account_lock, lock

# The password hash of a deactivation row written for an SDR who never had a login: no
# password matches it.
NO_LOGIN = "!"


class OwnerRefused(ValueError):
    """The SDR id cannot own leads: not in the playbook's team, or deactivated."""


async def deactivated_ids(session: AsyncSession) -> set[str]:
    rows = await session.scalars(select(User.id).where(User.deactivated_at.is_not(None)))
    return set(rows.all())


async def active_sdrs(session: AsyncSession, playbook: Playbook) -> list[Sdr]:
    """The team's SDRs whose login is not deactivated, in playbook order."""
    gone = await deactivated_ids(session)
    return [s for s in playbook.team.sdrs if s.id not in gone]


async def check_owner(session: AsyncSession, playbook: Playbook, owner: str) -> Sdr:
    """The SDR ``owner`` names, when they may own leads.

    Raises:
        OwnerRefused: the id is not in the playbook's team, or the SDR is deactivated;
            the message names the SDRs who may.
    """
    active = await active_sdrs(session, playbook)
    for sdr in active:
        if sdr.id == owner:
            return sdr
    names = ", ".join(s.id for s in active) or "none"
    if any(s.id == owner for s in playbook.team.sdrs):
        raise OwnerRefused(f"SDR '{owner}' is deactivated; active SDRs: {names}")
    raise OwnerRefused(f"no SDR '{owner}' in the playbook's team; active SDRs: {names}")


async def choose_owner(session: AsyncSession, playbook: Playbook, lead: LeadRow) -> str | None:
    """The lead's SDR: its owner; else its account's SDR; else round robin in its territory
    (deactivated SDRs never chosen).

    Round robin is kept without a counter: among the SDRs covering the lead's country, the
    one with the fewest accounts *in that country* gets the next account (ties by the
    playbook's order). That is what a rotation converges to, and it survives restarts and
    several workers. It counts accounts, not leads, because every later lead of an account
    follows its first one (sticky): a company with ten leads is one turn. And only within
    the territory: Ben's leads in GB must not make Carol take every US lead until she
    catches up. A country no SDR covers goes to the whole team, counted over such leads.

    Args:
        session: an open session.
        playbook: the team and its territories.
        lead: the lead to assign (its ``account`` computed by intake).

    Returns:
        An SDR id, or None when the playbook has no SDRs.
    """
    gone = await deactivated_ids(session)
    if lead.owner and lead.owner not in gone:
        return lead.owner
    if lead.account:
        # The account's lock, held until the caller's transaction ends (it writes the owner
        # in it): two first leads of one account chosen at once are chosen one after the
        # other, and the second finds the first one's owner.
        await lock(session, [account_lock(lead.account)], utcnow())
        sticky = await session.scalar(
            select(LeadRow.owner)
            .where(
                LeadRow.account == lead.account, LeadRow.owner.is_not(None), LeadRow.id != lead.id
            )
            # The account's first owner, so the answer does not depend on the row order.
            .order_by(LeadRow.created_at, LeadRow.id)
            .limit(1)
        )
        if sticky and sticky not in gone:
            return sticky
    sdrs = [s for s in playbook.team.sdrs if s.id not in gone]
    if not sdrs:
        return None
    country = (lead.country or "").upper()
    local = [s for s in playbook.team.covering(country) if s.id not in gone]
    if local:
        pool, in_territory = local, func.upper(LeadRow.country) == country
    else:
        covered = sorted({t.upper() for s in sdrs for t in s.territories})
        pool = list(sdrs)
        in_territory = or_(LeadRow.country.is_(None), func.upper(LeadRow.country).not_in(covered))
    account = func.coalesce(LeadRow.account, LeadRow.id)  # a lead without one is its own
    rows = await session.execute(
        select(LeadRow.owner, func.count(func.distinct(account)))
        .where(LeadRow.owner.in_([s.id for s in pool]), in_territory, LeadRow.id != lead.id)
        .group_by(LeadRow.owner)
    )
    counts: dict[str | None, int] = {owner: count for owner, count in rows.all()}
    return min(pool, key=lambda s: (counts.get(s.id, 0), pool.index(s))).id


async def assign(session: AsyncSession, playbook: Playbook, lead_id: str) -> str | None:
    """Give the lead an SDR by the playbook's rule and keep it, committed (so a retry after
    a later failure finds the same owner rather than choosing again); race-free per account
    (see :func:`choose_owner`). None when the lead is unknown or there is no SDR."""
    lead = await session.get(LeadRow, lead_id)
    if lead is None:
        return None
    owner = await choose_owner(session, playbook, lead)
    if owner is not None and lead.owner != owner:
        lead.owner = owner
    await session.commit()
    return owner


@dataclass(frozen=True)
class Deactivation:
    """An SDR who left, and who now owns each of their leads in flight."""

    sdr: str
    at: datetime
    reassigned: list[tuple[str, str | None]]  # (lead id, new owner; None: no SDR left)


async def deactivate(session: AsyncSession, playbook: Playbook, sdr_id: str) -> Deactivation:
    """Deactivate ``sdr_id``'s login and give each of their leads in flight a new owner by the
    playbook's assignment rule (the projection is updated here, in one transaction, so each
    choice counts the ones before it; the caller then signals each lead, whose workflow
    moves its open call tasks and tells both SDRs).

    Raises:
        OwnerRefused: ``sdr_id`` is neither a login nor in the playbook's team.
    """
    user = await session.get(User, sdr_id)
    in_team = any(s.id == sdr_id for s in playbook.team.sdrs)
    if user is None and not in_team:
        raise OwnerRefused(f"no user or SDR '{sdr_id}'")
    now = utcnow()
    if user is None:
        user = User(id=sdr_id, role="sdr", password_hash=NO_LOGIN)
        session.add(user)
    if user.deactivated_at is None:
        user.deactivated_at = now
    await session.flush()
    leads = (
        await session.scalars(
            select(LeadRow)
            .where(
                LeadRow.owner == sdr_id,
                LeadRow.stage.not_in(sorted(FINAL_STAGES)),
                LeadRow.erased_at.is_(None),
            )
            .order_by(LeadRow.created_at, LeadRow.id)
        )
    ).all()
    moved: list[tuple[str, str | None]] = []
    for lead in leads:
        lead.owner = None
        await session.flush()
        lead.owner = await choose_owner(session, playbook, lead)
        await session.flush()
        moved.append((lead.id, lead.owner))
    await session.commit()
    return Deactivation(sdr=sdr_id, at=user.deactivated_at or now, reassigned=moved)


async def reassign(
    session: AsyncSession, client: Client, playbook: Playbook, lead_id: str, owner: str
) -> None:
    """Give a lead to ``owner``: checked first, then signaled; its workflow moves the lead's
    open call tasks to the new owner and tells both SDRs.

    Raises:
        OwnerRefused: ``owner`` may not own leads (see :func:`check_owner`).
        LookupError: no lead ``lead_id``.
        RPCError: the lead's workflow is not running.
    """
    await check_owner(session, playbook, owner)
    if await session.get(LeadRow, lead_id) is None:
        raise LookupError(f"no lead with id {lead_id}")
    await client.get_workflow_handle(workflow_id(lead_id)).signal(SIGNAL_REASSIGN, owner)
