"""Events that arrived before their lead: kept (`parked`), then delivered in order once it exists.

CONTRACT.md: events for an unknown lead are "kept, listed and delivered when the lead is
created, never silently dropped", and a `lead.updated` for an unknown lead creates it. This
module is the one path that creates a lead *and* hands it what was waiting for it, so the web
app, and any other intake path that wants the same promise, calls :func:`submit_lead`.

Delivery is safe to run twice at once: each event is claimed with a conditional update
(`parked` -> `delivered`) before it is signaled, so it is signaled once; and the workflow
ignores an event id it has already seen anyway.

The same sweep (:func:`redeliver`, run by the web app) finishes what a Temporal outage left
half-done: it starts the workflows of leads recorded while Temporal could not be reached
(:func:`start_waiting`), then delivers the events that waited for them or whose signal failed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.service import RPCError, RPCStatusCode

from nurture.adapters.database import EventRow, LeadRow, utcnow
from nurture.adapters.temporal import TemporalUnavailable
from nurture.domain.events import Event, Lead
from nurture.domain.names import SIGNAL_EVENT, workflow_id
from nurture.domain.vocabulary import FINAL_STAGES
from nurture.services.intake import (
    EventResult,
    Intake,
    IntakeResult,
    dispatch_event,
    record_event,
)

log = logging.getLogger(__name__)

# A lead's row is written just before its workflow starts: a signal in that gap finds no
# workflow. Waiting this long (in total) covers the gap without holding a request for long.
START_GAP_RETRIES = (0.1, 0.3, 0.6)
# Longer than a request takes to write a lead and try its start (a second or so on Temporal,
# see nurture.web.common), so the sweep never races a creation in flight.
START_GRACE = timedelta(seconds=5)


@dataclass(frozen=True)
class LeadSubmitted:
    """What :func:`submit_lead` did: the intake's result and how many parked events it delivered."""

    result: IntakeResult
    delivered_ids: list[str]

    @property
    def delivered(self) -> int:
        return len(self.delivered_ids)


async def submit_lead(intake: Intake, lead: Lead, *, inserted: bool = False) -> LeadSubmitted:
    """Create or update ``lead`` (see :meth:`Intake.submit`), then deliver its parked events.

    ``inserted``: the caller has just inserted the lead's row as posted
    (:func:`nurture.services.intake.lead_row`); only its workflow is left to start
    (:meth:`Intake.start_inserted`).

    Delivery runs for an update too: it costs one query, and it finishes the job when an
    earlier creation stopped between starting the workflow and delivering. A lead waiting
    to start (Temporal unreachable) keeps its events parked for the sweep.

    Raises:
        CadenceSetInvalid, SQLAlchemyError: as :meth:`Intake.submit` does.
    """
    result = await (intake.start_inserted(lead) if inserted else intake.submit(lead))
    delivered: list[str] = []
    if result.status in ("created", "updated"):
        delivered = await deliver_parked(intake, lead.id, started=True)
    return LeadSubmitted(result, delivered)


async def deliver_parked(intake: Intake, lead_id: str, *, started: bool = False) -> list[str]:
    """Signal the lead's parked events to its workflow, oldest first; returns the ids this
    call delivered (not those another request or the sweep had in hand).

    Nothing happens for a lead that does not exist or waits to start (``started``: the
    caller has just started it, so its row need not be read to know). An event that
    cannot be delivered because the workflow is not there stays parked (or, for a won or
    closed lead, is marked `recorded`); when Temporal cannot be reached the loop stops
    with the rest still parked, for the next sweep.
    """
    async with intake.sessions() as session:
        if not started:
            lead = await session.get(LeadRow, lead_id)
            if lead is None or lead.waiting_to_start:
                return []
        rows = (
            await session.scalars(
                select(EventRow)
                .where(EventRow.lead_id == lead_id, EventRow.status == "parked")
                # Arrival order is the order the sender meant; ids break exact ties stably.
                .order_by(EventRow.received_at, EventRow.id)
            )
        ).all()
    handle = intake.client.get_workflow_handle(workflow_id(lead_id))
    delivered: list[str] = []
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
            await _signal(intake, handle, await intake.for_signal(event))
        except TemporalUnavailable:
            await _set_status(intake.sessions, row.id, "parked")
            log.info("Temporal unreachable; parked events of %s wait for the next sweep", lead_id)
            return delivered
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                final = await _final_stage(intake.sessions, lead_id)
                await _set_status(intake.sessions, row.id, "recorded" if final else "parked")
                if final:
                    continue
                log.warning("lead %s has no workflow; %s stays parked", lead_id, row.id)
                return delivered
            await _set_status(intake.sessions, row.id, "parked")
            raise
        delivered.append(row.id)
    return delivered


async def accept_event(intake: Intake, event: Event) -> EventResult:
    """Record ``event`` and deliver it (or park it), creating its lead from a `lead.updated`.

    Returns the event's status as it stands afterwards: `delivered`, `parked`, `recorded`
    or `duplicate`.
    """
    fresh, lead = await record_event(intake.sessions, event)
    return await accept_recorded(intake, event, fresh=fresh, lead=lead)


async def accept_recorded(
    intake: Intake, event: Event, *, fresh: bool, lead: LeadRow | None
) -> EventResult:
    """What :func:`accept_event` does once the event is recorded (``fresh``: it was new;
    ``lead``: its lead's row as read in the same transaction). The web app records a whole
    flood of events in a few transactions (:mod:`nurture.services.ingest`), then calls this."""
    if not fresh:
        if event.type == "lead.updated":
            # A retry after a creation that failed half-way: finish it from the stored event.
            await _create_from_stored(intake, event.id)
        return EventResult(event.id, "duplicate")
    result = await dispatch_event(intake, event, lead)
    if result.status != "parked" or (lead is not None and not lead.waiting_to_start):
        # Delivered, recorded, or parked because Temporal did not answer (the sweep's job).
        return result
    try:
        mine: list[str] = []
        if event.type == "lead.updated":
            mine = (await submit_lead(intake, lead_from_update(event))).delivered_ids
        elif await _lead_exists(intake.sessions, event.lead_id):
            # The lead was created (or started) while this event was being recorded, after
            # the creating request had looked for parked events: deliver it here, or nobody
            # would until the next sweep.
            mine = await deliver_parked(intake, event.lead_id)
        if event.id in mine:
            return EventResult(event.id, "delivered")
        status = await _status(intake.sessions, event.id)
        # `delivered` by someone else may still be in flight (claimed by the sweep, which
        # parks it again if Temporal does not answer): promise only what is certain.
        return EventResult(event.id, "recorded" if status == "recorded" else "parked")
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


async def _signal(intake: Intake, handle, event: Event) -> None:  # type: ignore[no-untyped-def]
    for delay in (*START_GAP_RETRIES, None):
        try:
            await intake.gate.call(lambda: handle.signal(SIGNAL_EVENT, event))
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


async def start_waiting(intake: Intake, limit: int = 500) -> int:
    """Start the workflows of leads recorded while Temporal could not be reached, oldest
    first, and deliver the events that waited for them; returns how many were started.

    A lead written in the last :data:`START_GRACE` is left alone: the request that wrote it
    may be starting it right now, and answers `created` only if it is the one that does.
    Stops at the first lead that cannot be started (Temporal still unreachable): the next
    sweep goes on from there.
    """
    async with intake.sessions() as session:
        lead_ids = (
            await session.scalars(
                select(LeadRow.id)
                .where(
                    LeadRow.started_at.is_(None),
                    LeadRow.stage.not_in(FINAL_STAGES),
                    LeadRow.erased_at.is_(None),
                    LeadRow.updated_at < utcnow() - START_GRACE,
                )
                .order_by(LeadRow.created_at, LeadRow.id)
                .limit(limit)
            )
        ).all()
    started = 0
    for lead_id in lead_ids:
        result = await intake.start(lead_id)
        if result.status == "pending_start":
            log.warning(
                "Temporal unreachable; %d lead(s) wait to start until the next sweep",
                len(lead_ids) - started,
            )
            break
        # `closed`: its workflow exists and has completed; either way it is no longer waiting.
        await intake.mark_started(lead_id)
        started += 1
        await deliver_parked(intake, lead_id)
    return started


async def redeliver(intake: Intake, limit: int = 500) -> int:
    """Start leads waiting to start, then deliver parked events of started leads (a signal
    that failed while Temporal was unreachable, or a creation that stopped half-way);
    returns how many events were delivered.

    Run periodically by the web app, so no recorded lead or event waits for a human.
    """
    await start_waiting(intake, limit)
    async with intake.sessions() as session:
        lead_ids = (
            await session.scalars(
                select(EventRow.lead_id)
                .join(LeadRow, LeadRow.id == EventRow.lead_id)
                .where(EventRow.status == "parked", LeadRow.started_at.is_not(None))
                .distinct()
                .limit(limit)
            )
        ).all()
    delivered = 0
    for lead_id in lead_ids:
        try:
            delivered += len(await deliver_parked(intake, lead_id))
        except RPCError:
            log.warning("parked events of %s wait for the next sweep", lead_id, exc_info=True)
        if intake.gate.shut:
            break
    return delivered
