"""Storage side effects: cadence snapshots, the stage-change log and projection, erase."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from nurture import activity_models as am
from nurture.catalog import CadenceCatalog
from nurture.db import CallTask, EmailSend, EventRow, LeadRow, StageChange, utcnow
from nurture.loader import CadenceSetInvalid


class StorageActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], catalog: CadenceCatalog) -> None:
        self.sessions = sessions
        self.catalog = catalog

    @activity.defn(name=am.LOAD_CADENCE)
    async def load_cadence(self, request: am.LoadCadenceInput) -> am.CadenceSnapshot:
        """The current version of a cadence and the playbook, validated."""
        try:
            cadence_set = self.catalog.current()
        except CadenceSetInvalid as exc:
            # Retried: ops fix the files and the lead goes on (it waits, visibly, meanwhile).
            raise ApplicationError(f"the cadence files have problems:\n{exc}", type="CadenceFilesInvalid") from exc
        try:
            cadence = cadence_set.cadence(request.cadence_id)
        except KeyError as exc:
            raise ApplicationError(str(exc), type="CadenceMissing") from exc
        return am.CadenceSnapshot(cadence=cadence, playbook=cadence_set.playbook)

    @activity.defn(name=am.RECORD_TRANSITION)
    async def record_transition(self, request: am.TransitionInput) -> None:
        """One stage-change row per transition (idempotent) and the lead's projection."""
        async with self.sessions() as session:
            exists = await session.scalar(
                select(StageChange.id).where(
                    StageChange.lead_id == request.lead_id,
                    StageChange.cycle == request.cycle,
                    StageChange.to_stage == request.to_stage,
                    StageChange.at == request.at,
                )
            )
            if exists is None:
                session.add(
                    StageChange(
                        lead_id=request.lead_id, cycle=request.cycle, from_stage=request.from_stage,
                        to_stage=request.to_stage, at=request.at, reason=request.reason,
                        source=request.source, cadence=request.cadence, step=request.step,
                    )
                )
            lead = await session.get(LeadRow, request.lead_id)
            if lead is not None:
                lead.stage = request.to_stage
                lead.score = request.score
                lead.grade = request.grade
                lead.owner = request.owner or lead.owner
                lead.cadence = request.cadence
                lead.step = request.step
                lead.next_touch_at = request.next_touch_at
                if request.to_stage == "closed" and "do not contact" in request.reason:
                    lead.do_not_contact = True
            await session.commit()

    @activity.defn(name=am.ERASE_LEAD)
    async def erase_lead(self, request: am.EraseInput) -> None:
        """Remove the lead's personal data everywhere; anonymous funnel rows stay."""
        async with self.sessions() as session:
            lead = await session.get(LeadRow, request.lead_id)
            if lead is not None:
                for name in ("email", "first_name", "last_name", "company", "title", "phone", "account"):
                    setattr(lead, name, None)
                lead.fields = {}
                lead.erased_at = lead.erased_at or utcnow()
                lead.do_not_contact = True
            await session.execute(
                update(EmailSend).where(EmailSend.lead_id == request.lead_id).values(to_address=None)
            )
            await session.execute(
                update(CallTask).where(CallTask.lead_id == request.lead_id).values(script=None, notes=None)
            )
            await session.execute(
                update(EventRow).where(EventRow.lead_id == request.lead_id).values(data={})
            )
            await session.commit()
