"""Events that arrived before their lead: kept (`parked`), then delivered in order once it exists.

CONTRACT.md: events for an unknown lead are "kept, listed and delivered when the lead is
created, never silently dropped", and a `lead.updated` for an unknown lead creates it. This
module is the one path that creates a lead *and* hands it what was waiting for it, so the web
app, and any other intake path that wants the same promise, calls :func:`submit_lead`.

Delivery is safe to run twice at once: each event is claimed with a conditional update
(`parked` -> `delivered`) before it is signaled, so it is signaled once; and the workflow
ignores an event id it has already seen anyway.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.service import RPCError, RPCStatusCode

from nurture import SIGNAL_EVENT, workflow_id
from nurture.db import EventRow, LeadRow, utcnow
from nurture.events import Event, Lead
from nurture.intake import (
    EventResult,
    Intake,
    IntakeResult,
    for_workflow,
    submit_event,
)
from nurture.vocabulary import FINAL_STAGES

log = logging.getLogger(__name__)

# A lead's row is written just before its workflow starts: a signal in that gap finds no
# workflow. Waiting this long (in total) covers the gap without holding a request for long.
START_GAP_RETRIES = (0.1, 0.3, 0.6)


@dataclass(frozen=True)
class LeadSubmitted:
    """What :func:`submit_lead` did: the intake's result and how many parked events it delivered."""

    result: IntakeResult
    delivered: int


async def submit_lead(intake: Intake, lead: Lead) -> LeadSubmitted:
    """Create or update ``lead`` (see :meth:`Intake.submit`), then deliver its parked events.

    Delivery runs for an update too: it costs one query, and it finishes the job when an
    earlier creation stopped between starting the workflow and delivering.

    Raises:
        CadenceSetInvalid, RPCError, SQLAlchemyError: as :meth:`Intake.submit` does.
    """
    result = await intake.submit(lead)
    delivered = 0
    if result.status != "closed":
        delivered = await deliver_parked(intake, lead.id)
    return LeadSubmitted(result, delivered)


async def deliver_parked(intake: Intake, lead_id: str) -> int:
    """Signal the lead's parked events to its workflow, oldest first; returns how many.

    An event that cannot be delivered because the workflow is not there stays parked (or,
    for a won or closed lead, is marked `recorded`); a Temporal outage stops the loop with
    the rest still parked, and raises.
    """
    async with intake.sessions() as session:
        rows = (
            await session.scalars(
                select(EventRow)
                .where(EventRow.lead_id == lead_id, EventRow.status == "parked")
                # Arrival order is the order the sender meant; ids break exact ties stably.
                .order_by(EventRow.received_at, EventRow.id)
            )
        ).all()
    handle = intake.client.get_workflow_handle(workflow_id(lead_id))
    delivered = 0
    for row in rows:
        if not await _claim(intake.sessions, row.id):
            continue  # another request delivered it meanwhile
        event = Event.model_validate(
            {
                "id": row.id,
                "type": row.type,
                "lead_id": row.lead_id,
                "occurred_at": row.occurred_at,
                "data": dict(row.data or {}),
            }
        )
        try:
            # As submit_event does: a lead.updated's personal fields stay out of Temporal.
            await _signal(handle, for_workflow(event, intake.rule_fields()))
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                final = await _final_stage(intake.sessions, lead_id)
                await _set_status(intake.sessions, row.id, "recorded" if final else "parked")
                if final:
                    continue
                log.warning("lead %s has no workflow yet; %s stays parked", lead_id, row.id)
                return delivered
            await _set_status(intake.sessions, row.id, "parked")
            raise
        delivered += 1
    return delivered


async def accept_event(intake: Intake, event: Event) -> EventResult:
    """Record ``event`` and deliver it (or park it), creating its lead from a `lead.updated`.

    Returns the event's status as it stands afterwards: `delivered`, `parked`, `recorded`
    or `duplicate`.
    """
    result = await submit_event(intake, event)
    if result.status == "duplicate":
        if event.type == "lead.updated":
            # A retry after a creation that failed half-way: finish it from the stored event.
            await _create_from_stored(intake, event.id)
        return result
    if result.status != "parked":
        return result
    try:
        if event.type == "lead.updated":
            await submit_lead(intake, lead_from_update(event))
        elif await _lead_exists(intake.sessions, event.lead_id):
            # The lead was created while this event was being recorded, after the creating
            # request had looked for parked events: deliver it here, or nobody would.
            await deliver_parked(intake, event.lead_id)
        return EventResult(event.id, await _status(intake.sessions, event.id))  # type: ignore[arg-type]
    except Exception:
        # The event is durable and stays parked (listed for ops, delivered when the lead is
        # created or the `lead.updated` is sent again): whatever stopped the follow-up, the
        # honest answer is "kept", not a failure that invites a resend of a recorded event.
        log.warning("event %s recorded and parked; its follow-up failed", event.id, exc_info=True)
        return EventResult(event.id, "parked")


def lead_from_update(event: Event) -> Lead:
    """The lead a `lead.updated` for an unknown lead creates: its data, with id = lead_id.

    Raises:
        pydantic.ValidationError: when the data is not a valid lead.
    """
    return Lead.model_validate({**event.data, "id": event.lead_id})


async def _create_from_stored(intake: Intake, event_id: str) -> None:
    async with intake.sessions() as session:
        row = await session.get(EventRow, event_id)
        if row is None or row.status != "parked" or row.type != "lead.updated":
            return
        if await session.get(LeadRow, row.lead_id) is not None:
            return
        stored = Event(
            id=row.id, type="lead.updated", lead_id=row.lead_id, data=dict(row.data or {})
        )
    await submit_lead(intake, lead_from_update(stored))


async def _signal(handle, event: Event) -> None:  # type: ignore[no-untyped-def]
    for delay in (*START_GAP_RETRIES, None):
        try:
            await handle.signal(SIGNAL_EVENT, event)
            return
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND or delay is None:
                raise
            await asyncio.sleep(delay)


async def _claim(sessions: async_sessionmaker[AsyncSession], event_id: str) -> bool:
    async with sessions() as session:
        claimed = await session.execute(
            update(EventRow)
            .where(EventRow.id == event_id, EventRow.status == "parked")
            .values(status="delivered", delivered_at=utcnow())
        )
        await session.commit()
        return bool(claimed.rowcount)  # type: ignore[attr-defined]


async def _set_status(
    sessions: async_sessionmaker[AsyncSession], event_id: str, status: str
) -> None:
    async with sessions() as session:
        await session.execute(
            update(EventRow)
            .where(EventRow.id == event_id)
            .values(status=status, delivered_at=utcnow() if status == "delivered" else None)
        )
        await session.commit()


async def _status(sessions: async_sessionmaker[AsyncSession], event_id: str) -> str:
    async with sessions() as session:
        row = await session.get(EventRow, event_id)
        return row.status if row is not None else "parked"


async def _lead_exists(sessions: async_sessionmaker[AsyncSession], lead_id: str) -> bool:
    async with sessions() as session:
        return await session.get(LeadRow, lead_id) is not None


async def _final_stage(sessions: async_sessionmaker[AsyncSession], lead_id: str) -> bool:
    async with sessions() as session:
        lead = await session.get(LeadRow, lead_id)
        return lead is not None and lead.stage in FINAL_STAGES


async def redeliver(intake: Intake, limit: int = 500) -> int:
    """Deliver parked events of leads that exist (a signal that failed while Temporal was
    unreachable, or a creation that stopped half-way); returns how many were delivered.

    Run periodically by the web app, so no recorded event waits for a human.
    """
    async with intake.sessions() as session:
        lead_ids = (
            await session.scalars(
                select(EventRow.lead_id)
                .join(LeadRow, LeadRow.id == EventRow.lead_id)
                .where(EventRow.status == "parked")
                .distinct()
                .limit(limit)
            )
        ).all()
    delivered = 0
    for lead_id in lead_ids:
        try:
            delivered += await deliver_parked(intake, lead_id)
        except RPCError:
            log.warning(
                "Temporal unreachable; parked events of %s wait for the next round", lead_id
            )
            break
    return delivered
