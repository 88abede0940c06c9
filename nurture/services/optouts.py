"""Opt-outs that must hold at once: unsubscribe (per address), do not contact, erase.

They are written to the app database as soon as the event is recorded, before the lead's
workflow hears of them: the email activity re-checks these rows right before each send, so
an opt-out wins even while a send is being retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

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
from nurture.domain.events import PERSONAL_FIELDS, address_key, event_time

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


def bounce_kind(data: dict[str, Any]) -> str:
    """``hard`` or ``soft``: a bounce that names no kind (or, recorded before kinds were
    checked, one nobody knows) counts as soft, never suppressing an address on a guess."""
    kind = data.get("kind")
    return "hard" if isinstance(kind, str) and kind.strip().lower() == "hard" else "soft"


def soft_bounces_suppress(times: list[datetime]) -> bool:
    """Whether :data:`SOFT_BOUNCES_TO_SUPPRESS` of the soft bounces ``times`` fall within
    one :data:`SOFT_BOUNCE_WINDOW` (any window: bounces may be reported out of order)."""
    ordered = sorted(times)
    n = SOFT_BOUNCES_TO_SUPPRESS
    return any(
        ordered[i + n - 1] - ordered[i] <= SOFT_BOUNCE_WINDOW for i in range(len(ordered) - n + 1)
    )


def bounce_reason(kind: str, status: object) -> str:
    """Why a bounce suppressed its address, for histories and pages: ``hard bounce (5.1.1)``."""
    code = f" ({str(status)[:20]})" if isinstance(status, str) and status.strip() else ""
    if kind == "hard":
        return f"hard bounce{code}"
    days = SOFT_BOUNCE_WINDOW.days
    return f"{SOFT_BOUNCES_TO_SUPPRESS} soft bounces in {days} days{code}"


@dataclass(frozen=True)
class Suppressed:
    """A bounce that suppressed its address: why, and each lead with it (and whether it
    was unsubscribed already: the others' workflows must be told)."""

    reason: str
    leads: dict[str, bool]


async def apply_bounce(
    sessions: async_sessionmaker[AsyncSession], lead_id: str, data: dict[str, Any], at: datetime
) -> Suppressed | None:
    """Suppress the lead's address after a hard bounce, or when this soft bounce makes
    three in 30 days (counted over every lead with that address, by when each bounce
    happened: ``occurred_at``, else when it was received). None when nothing is suppressed.

    Called once the bounce is recorded, so the bounce being handled is counted too.
    """
    kind = bounce_kind(data)
    async with sessions() as session:
        lead = await session.get(LeadRow, lead_id)
        address = address_key(lead.email) if lead is not None and lead.email else None
        if not address:
            return None
        if kind == "soft":
            holders = select(LeadRow.id).where(func.lower(LeadRow.email) == address)
            bounces = await session.execute(
                select(EventRow.data, EventRow.occurred_at, EventRow.received_at).where(
                    EventRow.type == "email.bounced", EventRow.lead_id.in_(holders)
                )
            )
            at = event_time(at)
            times = [
                when
                for data_, occurred, received in bounces
                if bounce_kind(data_ or {}) == "soft"
                and abs((when := event_time(occurred or received)) - at) <= SOFT_BOUNCE_WINDOW
            ]
            if not soft_bounces_suppress(times):
                return None
    reason = bounce_reason(kind, data.get("status"))
    leads = await suppress_address(sessions, address, f"bounced: {reason}", at)
    return Suppressed(reason, leads)


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
            # Also a bounce or complaint about the address that matched no lead: its
            # subject or kept excerpt quotes the address ("Your message to ... couldn't be
            # delivered").
            mail = or_(
                mail,
                func.lower(InboundMail.sender) == address,
                func.lower(InboundMail.subject).contains(address, autoescape=True),
                func.lower(InboundMail.excerpt).contains(address, autoescape=True),
            )
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
