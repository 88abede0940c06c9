"""What the CRM adapters (HubSpot, Salesforce) share: their notifications mapped to the
product's events, and the links that tie a deal or an opportunity to its lead.

An adapter turns one request into a :class:`Mapped`: events ready for the same
record-then-signal path as ``POST /events`` (each with the vendor field it came from, so a
refusal names the field the CRM sent), the links it learned (a HubSpot deal associated with
a contact, a Salesforce opportunity converted from a lead), and deal outcomes
(:class:`Outcome`) whose lead comes from those links.

An outcome whose lead is not known yet is kept (``crm_unmatched``), listed for ops, and
delivered as soon as a link to a lead arrives: the CRM does not promise to tell us about the
association before the stage change.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nurture.adapters.database import CrmLink, CrmUnmatched, insert_or_ignore, utcnow


@dataclass
class Incoming:
    """One product event an adapter made, before validation.

    ``origin`` maps a key of the event (``lead_id``, ``occurred_at``, or a ``data`` key) to the
    vendor's own field, so a refusal names what the CRM sent (``[3].propertyValue``).
    """

    index: int
    event: dict[str, Any]
    origin: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Link:
    """``object_type`` ``object_id`` of ``source`` belongs to the lead ``lead_id``."""

    source: str
    object_type: str
    object_id: str
    lead_id: str
    removed: bool = False


@dataclass
class Outcome:
    """A deal or opportunity won or lost: an event for each of its leads.

    ``lead_ids`` are the leads the notification itself names (a Salesforce opportunity's
    lead field); the others come from :class:`Link` rows.
    """

    index: int
    id: str
    source: str
    object_type: str
    object_id: str
    type: str
    occurred_at: str | None
    data: dict[str, Any]
    lead_ids: list[str] = field(default_factory=list)


@dataclass
class Ignored:
    """A notification that maps to no event (a subscription the product does not use)."""

    index: int
    why: str


@dataclass
class Mapped:
    """What one request carried."""

    events: list[Incoming] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)
    # (location, message) of each notification that cannot be read.
    problems: list[tuple[list[str | int], str]] = field(default_factory=list)


def short_hash(*parts: object) -> str:
    """12 hex characters identifying ``parts`` (stable across processes and retries)."""
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class Resolved:
    """The outcomes' events (with the item each came from) and the rows to write once they are
    recorded."""

    events: list[Incoming]
    unmatched: list[Outcome]
    consumed: list[str]


async def resolve(sessions: async_sessionmaker[AsyncSession], mapped: Mapped) -> Resolved:
    """Turn outcomes into events for their leads, from this request's links and the stored
    ones, and pick up earlier outcomes that this request's links now resolve.

    Nothing is written: :func:`remember` writes after the events are recorded, so a request
    refused or failed leaves no trace and its resend is handled the same way.
    """
    batch: dict[tuple[str, str, str], set[str]] = {}
    removed: set[tuple[str, str, str, str]] = set()
    for link in mapped.links:
        key = (link.source, link.object_type, link.object_id)
        if link.removed:
            removed.add((*key, link.lead_id))
            batch.setdefault(key, set()).discard(link.lead_id)
        else:
            batch.setdefault(key, set()).add(link.lead_id)
    events: list[Incoming] = []
    unmatched: list[Outcome] = []
    consumed: list[str] = []
    async with sessions() as session:
        for outcome in mapped.outcomes:
            key = (outcome.source, outcome.object_type, outcome.object_id)
            stored = await _linked(session, *key)
            leads = (set(outcome.lead_ids) | stored | batch.get(key, set())) - {
                lead for (*k, lead) in removed if tuple(k) == key
            }
            if not leads:
                unmatched.append(outcome)
                continue
            events += [_event_of(outcome, lead) for lead in sorted(leads)]
        for (source, object_type, object_id), leads in batch.items():
            if not leads:
                continue
            waiting = (
                await session.scalars(
                    select(CrmUnmatched).where(
                        CrmUnmatched.source == source,
                        CrmUnmatched.object_type == object_type,
                        CrmUnmatched.object_id == object_id,
                    )
                )
            ).all()
            for row in waiting:
                stored = Outcome(
                    index=-1, id=row.id, source=source, object_type=object_type,
                    object_id=object_id, type=row.type,
                    occurred_at=row.occurred_at.isoformat() if row.occurred_at else None,
                    data=dict(row.data or {}),
                )  # fmt: skip
                events += [_event_of(stored, lead) for lead in sorted(leads)]
                consumed.append(row.id)
    return Resolved(events, unmatched, consumed)


def _event_of(outcome: Outcome, lead_id: str) -> Incoming:
    # One event per lead, its id the same whenever and through whichever link it is made: a
    # resent notification, or one resolved later from `crm_unmatched`, is a duplicate.
    event_id = f"{outcome.id}~{lead_id}"
    if len(event_id) > 200:
        event_id = f"{outcome.id}~{short_hash(lead_id)}"
    return Incoming(
        index=outcome.index,
        event={
            "id": event_id,
            "type": outcome.type,
            "lead_id": lead_id,
            "occurred_at": outcome.occurred_at,
            "data": outcome.data,
        },
    )


async def _linked(session: AsyncSession, source: str, object_type: str, object_id: str) -> set[str]:
    rows = await session.scalars(
        select(CrmLink.lead_id).where(
            CrmLink.source == source,
            CrmLink.object_type == object_type,
            CrmLink.object_id == object_id,
        )
    )
    return set(rows.all())


async def remember(
    sessions: async_sessionmaker[AsyncSession], mapped: Mapped, resolved: Resolved
) -> None:
    """Write the request's links, keep its unresolved outcomes, and drop the stored outcomes
    that became events (called once those events are recorded)."""
    async with sessions() as session:
        dialect = session.get_bind().dialect.name
        now = utcnow()
        for link in mapped.links:
            if link.removed:
                await session.execute(
                    delete(CrmLink).where(
                        CrmLink.source == link.source,
                        CrmLink.object_type == link.object_type,
                        CrmLink.object_id == link.object_id,
                        CrmLink.lead_id == link.lead_id,
                    )
                )
            else:
                await session.execute(
                    insert_or_ignore(CrmLink, dialect).values(
                        source=link.source,
                        object_type=link.object_type,
                        object_id=link.object_id,
                        lead_id=link.lead_id,
                        at=now,
                    )  # fmt: skip
                )
        for outcome in resolved.unmatched:
            await session.execute(
                insert_or_ignore(CrmUnmatched, dialect).values(
                    id=outcome.id,
                    source=outcome.source,
                    object_type=outcome.object_type,
                    object_id=outcome.object_id,
                    type=outcome.type,
                    occurred_at=_when(outcome.occurred_at),
                    data=outcome.data,
                    received_at=now,
                )  # fmt: skip
            )
        if resolved.consumed:
            gone = CrmUnmatched.id.in_(resolved.consumed)
            await session.execute(delete(CrmUnmatched).where(gone))
        await session.commit()


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
