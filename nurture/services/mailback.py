"""Mail that comes back, taken in: one path for the mailbox reader and ``POST /inbound/email``.

Each message is read once (``inbound_mail`` is unique by its Message-ID), classified
(:mod:`nurture.domain.mail`), tied to a lead (by ``In-Reply-To``/``References`` against the
outbox's Message-IDs, then by address), and becomes an event through the same record-then-
signal path as a CRM's (:func:`nurture.services.parked.accept_event`): recorded first, its
id derived from the Message-ID so a message read twice has one effect. What matches nothing
is kept for a person. Nothing of a body reaches the event or Temporal.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import desc, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nurture.adapters.database import EmailSend, InboundMail, LeadRow, insert_or_ignore
from nurture.domain.events import Event
from nurture.domain.mail import (
    MailFacts,
    classify,
    excerpt,
    return_date,
    unsubscribe_addresses,
)
from nurture.domain.timing import lead_zone
from nurture.services.intake import Intake
from nurture.services.optouts import suppress_address
from nurture.services.parked import accept_event

log = logging.getLogger(__name__)

MailSource = Literal["webhook", "mailbox"]
# The longest Message-ID kept as the key; a longer one is keyed by its digest.
MAX_KEY = 500


@dataclass(frozen=True)
class Match:
    lead_id: str
    cadence: str | None
    step: str | None
    how: str


@dataclass(frozen=True)
class MailResult:
    """What one message did: ``duplicate`` when it was read before (no second effect)."""

    status: Literal["accepted", "duplicate"]
    kind: str
    mail_status: Literal["matched", "unmatched", "ignored"]
    lead_id: str | None = None
    event_id: str | None = None
    event_type: str | None = None
    why: str = ""


def message_key(facts: MailFacts, raw: bytes) -> str:
    """What a message is known by: its Message-ID, else the digest of its bytes."""
    if facts.message_id and len(facts.message_id) <= MAX_KEY:
        return facts.message_id
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def event_id(key: str) -> str:
    # Derived, so the same message read twice records one event; hashed, so no address
    # (Message-IDs often hold one) ends up in an id.
    return "mail-" + hashlib.sha256(key.encode()).hexdigest()[:32]


async def _seen(session: AsyncSession, key: str) -> bool:
    found = await session.scalar(select(InboundMail.id).where(InboundMail.message_key == key))
    return found is not None


async def match_lead(session: AsyncSession, facts: MailFacts) -> Match | None:
    """The lead (and step) a message is about: the outbox's Message-IDs first, nearest
    reference first; then the address a bounce or complaint names, or the sender."""
    if facts.references:
        rows = (
            await session.execute(
                select(EmailSend.message_id, EmailSend.lead_id, EmailSend.cadence, EmailSend.step)
                .where(EmailSend.message_id.in_(facts.references))
            )
        ).all()  # fmt: skip
        by_id = {row.message_id: row for row in rows}
        for reference in facts.references:
            row = by_id.get(reference)
            if row is not None:
                return Match(row.lead_id, row.cadence, row.step, "Message-ID")
    address = facts.address if facts.kind in ("bounce", "complaint") else facts.sender
    if not address:
        return None
    lead = await session.scalar(
        select(LeadRow)
        .where(func.lower(LeadRow.email) == address.lower(), LeadRow.erased_at.is_(None))
        .order_by(desc(LeadRow.created_at))
        .limit(1)
    )
    if lead is None:
        return None
    last = (
        await session.execute(
            select(EmailSend.cadence, EmailSend.step)
            .where(EmailSend.lead_id == lead.id)
            .order_by(desc(EmailSend.created_at), desc(EmailSend.id))
            .limit(1)
        )
    ).first()
    return Match(lead.id, last.cadence if last else None, last.step if last else None, "address")


def _event(facts: MailFacts, found: Match, lead: LeadRow, key: str, now: datetime) -> Event | None:
    data: dict[str, object] = {}
    if found.step:
        data["step"] = found.step
    if found.cadence:
        data["cadence"] = found.cadence
    if facts.kind == "reply":
        kind = "email.replied"
    elif facts.kind == "auto_reply":
        kind = "email.auto_replied"
        back = return_date(facts, lead_zone(lead.timezone, lead.country).key, now)
        if back is not None:
            data["until"] = back.isoformat()
    elif facts.kind == "bounce":
        kind = "email.bounced"
        data["kind"] = facts.bounce_kind or "soft"
        if facts.status:
            data["status"] = facts.status
        data["reason"] = facts.why
    elif facts.kind in ("complaint", "unsubscribe"):
        kind = "lead.unsubscribed"
        data = {"via": "spam complaint" if facts.kind == "complaint" else "unsubscribe by mail"}
    else:
        return None
    return Event(id=event_id(key), type=kind, lead_id=found.lead_id, occurred_at=now, data=data)  # type: ignore[arg-type]


async def take_mail(
    intake: Intake, raw: bytes, *, source: MailSource, now: datetime | None = None
) -> MailResult:
    """Read one message and act on it once.

    A message already read answers ``duplicate``. Otherwise its event is recorded and
    delivered (or parked) first and the message's row written after: a crash between the
    two is repaired by reading it again (the event, keyed by the Message-ID, is not
    recorded twice).
    """
    now = now or datetime.now(UTC)
    sender = intake.catalog.current().playbook.sender
    ours = unsubscribe_addresses(sender.from_, sender.reply_to)
    facts = classify(raw, unsubscribe_addresses=ours)
    key = message_key(facts, raw)
    async with intake.sessions() as session:
        if await _seen(session, key):
            return MailResult("duplicate", facts.kind, "matched", why="already read")
        found = await match_lead(session, facts) if facts.kind != "other" else None
        lead = await session.get(LeadRow, found.lead_id) if found else None
    # Mail answering an erased lead's old email: nothing of it is kept, nothing happens
    # (a complaint still suppresses its address: the suppression list outlives erase).
    erased = lead is not None and lead.erased_at is not None
    event = _event(facts, found, lead, key, now) if found and lead and not erased else None
    status: Literal["matched", "unmatched", "ignored"]
    if erased:
        status = "ignored"
        if facts.kind == "complaint" and facts.address:
            await suppress_address(intake.sessions, facts.address, "spam complaint", now)
    elif facts.kind == "other":
        status = "ignored"
    elif event is None:
        status = "unmatched"
    else:
        status = "matched"
        if facts.kind == "complaint" and facts.address:
            # The address complained: suppressed at once, whoever else holds it.
            await suppress_address(intake.sessions, facts.address, "spam complaint", now)
        await accept_event(intake, event)
    async with intake.sessions() as session:
        inserted = await session.scalar(
            insert_or_ignore(InboundMail, session.get_bind().dialect.name)
            .values(
                message_key=key,
                received_at=now,
                source=source,
                kind=facts.kind,
                why=("the lead was erased: nothing kept" if erased else facts.why)[:500],
                status=status,
                lead_id=found.lead_id if found else None,
                event_id=event.id if event else None,
                sender=None if erased else facts.sender,
                subject=None if erased else facts.subject,
                excerpt=excerpt(raw) if status == "unmatched" else None,
            )
            .returning(InboundMail.id)
        )
        await session.commit()
    if inserted is None:
        return MailResult("duplicate", facts.kind, status, why="already read")
    log.info("mail %s: %s (%s)", status, facts.kind, facts.why)
    return MailResult(
        "accepted",
        facts.kind,
        status,
        lead_id=found.lead_id if found else None,
        event_id=event.id if event else None,
        event_type=event.type if event else None,
        why=facts.why,
    )


async def list_unmatched(session: AsyncSession, limit: int = 200) -> list[InboundMail]:
    """Mail that matched no lead, newest first: for a person to sort."""
    return list(
        await session.scalars(
            select(InboundMail)
            .where(InboundMail.status == "unmatched")
            .order_by(desc(InboundMail.received_at), desc(InboundMail.id))
            .limit(limit)
        )
    )
