"""Opt-outs that must hold at once: unsubscribe (per address), do not contact, erase.

They are written to the app database as soon as the event is recorded, before the lead's
workflow hears of them: the email activity re-checks these rows right before each send, so
an opt-out wins even while a send is being retried.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nurture.adapters.database import (
    CallTask,
    EmailSend,
    EventRow,
    InboundMail,
    LeadRow,
    ReceivedMail,
    Suppression,
    TouchGrant,
    insert_once,
)
from nurture.domain.events import PERSONAL_FIELDS, address_key

# The lead's contact details (the fields the workflow never carries), and `account`, which
# is derived from the email domain or the company name.
PERSONAL_COLUMNS: tuple[str, ...] = (*PERSONAL_FIELDS, "account")


async def suppress_address(
    sessions: async_sessionmaker[AsyncSession], address: str, reason: str, now: datetime
) -> dict[str, bool]:
    """Put ``address`` on the suppression list and mark every lead with it unsubscribed.

    Returns:
        Each lead with that address, and whether it was unsubscribed already (the others'
        workflows must be told).
    """
    address = address_key(address)
    async with sessions() as session:
        leads = (
            await session.scalars(select(LeadRow).where(func.lower(LeadRow.email) == address))
        ).all()
        before = {row.id: row.unsubscribed for row in leads}
        for row in leads:
            row.unsubscribed = True
        # The same address suppressed concurrently keeps its first reason and time.
        await insert_once(session, Suppression, {"email": address}, reason=reason, at=now)
        await session.commit()
        return before


async def unsubscribe_address(
    sessions: async_sessionmaker[AsyncSession], lead_id: str, reason: str, now: datetime
) -> list[str]:
    """Suppress the lead's current address (see :func:`suppress_address`).

    Returns:
        The ids of the *other* leads with that address that were not unsubscribed yet;
        empty when the lead has no address.
    """
    async with sessions() as session:
        lead = await session.get(LeadRow, lead_id)
        address = lead.email if lead is not None else None
    if not address:
        return []
    leads = await suppress_address(sessions, address, reason, now)
    return [other for other, already in leads.items() if other != lead_id and not already]


# CONTRACT.md, "Accounts and people": soft bounces this many times in this window suppress.
SOFT_BOUNCES_TO_SUPPRESS = 3
SOFT_BOUNCE_WINDOW = timedelta(days=30)


async def apply_bounce(
    sessions: async_sessionmaker[AsyncSession], lead_id: str, kind: object, now: datetime
) -> bool:
    """Suppress the lead's address after a hard bounce, or its third soft bounce in 30 days
    (counted over every lead with that address). Returns whether it is suppressed now.

    Called once the bounce is recorded, so the bounce being handled is counted too.
    """
    async with sessions() as session:
        lead = await session.get(LeadRow, lead_id)
        address = address_key(lead.email) if lead is not None and lead.email else None
        if not address:
            return False
        if kind != "hard":
            holders = select(LeadRow.id).where(func.lower(LeadRow.email) == address)
            bounces = await session.scalars(
                select(EventRow.data).where(
                    EventRow.type == "email.bounced",
                    EventRow.lead_id.in_(holders),
                    EventRow.received_at >= now - SOFT_BOUNCE_WINDOW,
                )
            )
            soft = sum(1 for data in bounces if (data or {}).get("kind", "soft") != "hard")
            if soft < SOFT_BOUNCES_TO_SUPPRESS:
                return False
    why = "hard bounce" if kind == "hard" else f"{SOFT_BOUNCES_TO_SUPPRESS} soft bounces in 30 days"
    await suppress_address(sessions, address, f"bounced: {why}", now)
    return True


async def mark_do_not_contact(sessions: async_sessionmaker[AsyncSession], lead_id: str) -> None:
    async with sessions() as session:
        lead = await session.get(LeadRow, lead_id)
        if lead is not None and not lead.do_not_contact:
            lead.do_not_contact = True
            await session.commit()


async def erase_personal_data(
    sessions: async_sessionmaker[AsyncSession], lead_id: str, now: datetime
) -> None:
    """Remove the lead's personal data everywhere; anonymous funnel rows stay.

    Kept: the lead's id and decision fields (country, industry, size: what the workflow
    already holds), its stage changes (the funnel), opportunities, event types and times,
    and the outbox's statuses and Message-IDs (so a late bounce still finds its send).
    Cleared: contact fields and free fields; each send's address, subject (it may greet
    by name), error and server reply (servers quote the address); call scripts and
    notes (rendered with the lead's details); event bodies; the mail that came back from
    the lead; and the dev sink's copies of the lead's emails. ``erased_at`` records that
    it was done. Running it again is harmless.

    The suppression list keeps an address the lead unsubscribed or bounced: it is what
    stops the same person from being mailed again if the CRM sends them back.
    """
    async with sessions() as session:
        lead = await session.get(LeadRow, lead_id)
        # Mail that came back from the lead (matched to it, or kept unmatched under its
        # address) goes with the rest of its personal data.
        address = address_key(lead.email) if lead is not None and lead.email else None
        mail = InboundMail.lead_id == lead_id
        if address:
            mail = or_(mail, func.lower(InboundMail.sender) == address)
        await session.execute(delete(InboundMail).where(mail))
        if lead is not None:
            for name in PERSONAL_COLUMNS:
                setattr(lead, name, None)
            lead.fields = {}
            lead.erased_at = lead.erased_at or now
            lead.do_not_contact = True
        sent_ids = [
            mid
            for mid in await session.scalars(
                select(EmailSend.message_id).where(
                    EmailSend.lead_id == lead_id, EmailSend.message_id.is_not(None)
                )
            )
            if mid
        ]
        if sent_ids:
            await session.execute(delete(ReceivedMail).where(ReceivedMail.message_id.in_(sent_ids)))
        await session.execute(
            update(EmailSend)
            .where(EmailSend.lead_id == lead_id)
            .values(to_address=None, subject=None, error=None, smtp_reply=None)
        )
        await session.execute(
            update(CallTask).where(CallTask.lead_id == lead_id).values(script=None, notes=None)
        )
        await session.execute(update(EventRow).where(EventRow.lead_id == lead_id).values(data={}))
        # The account governor's grants: the keyed hash of the address and the account key
        # (a company name for free-mail leads) go too; the grant's time stays.
        await session.execute(
            update(TouchGrant)
            .where(TouchGrant.lead_id == lead_id)
            .values(person=None, account=None)
        )
        await session.commit()
