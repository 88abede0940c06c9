"""Storage side effects: cadence snapshots, the stage-change log and projection, erase."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from nurture.adapters.catalog import CadenceCatalog
from nurture.adapters.database import (
    LeadRow,
    Opportunity,
    StageChange,
    insert_once,
)
from nurture.adapters.loader import CadenceSetInvalid
from nurture.domain import messages as am
from nurture.services import crm_outbox
from nurture.services.optouts import erase_personal_data
from nurture.settings import Settings


class StorageActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        catalog: CadenceCatalog,
        settings: Settings | None = None,
    ) -> None:
        self.sessions = sessions
        self.catalog = catalog
        self.settings = settings

    @activity.defn(name=am.LOAD_CADENCE)
    async def load_cadence(self, request: am.LoadCadenceInput) -> am.CadenceSnapshot:
        """The current version of a cadence and the playbook, validated."""
        try:
            cadence_set = self.catalog.current()
        except CadenceSetInvalid as exc:
            # Retried: ops fix the files and the lead goes on (it waits, visibly, meanwhile).
            raise ApplicationError(
                f"the cadence files have problems:\n{exc}", type="CadenceFilesInvalid"
            ) from exc
        try:
            cadence = cadence_set.cadence(request.cadence_id)
        except KeyError as exc:
            raise ApplicationError(str(exc), type="CadenceMissing") from exc
        return am.CadenceSnapshot(cadence=cadence, playbook=cadence_set.playbook)

    @activity.defn(name=am.RECORD_TRANSITION)
    async def record_transition(self, request: am.TransitionInput) -> None:
        """One stage-change row per transition (idempotent) and the lead's projection."""
        async with self.sessions() as session:
            # Unique by the transition: an attempt running beside another (or after it) finds
            # the row instead of adding a second one.
            await insert_once(
                session,
                StageChange,
                {
                    "lead_id": request.lead_id,
                    "cycle": request.cycle,
                    "to_stage": request.to_stage,
                    "at": request.at,
                },
                from_stage=request.from_stage,
                reason=request.reason,
                source=request.source,
                cadence=request.cadence,
                step=request.step,
            )
            lead = await session.get(LeadRow, request.lead_id)
            if lead is not None:
                lead.stage = request.to_stage
                lead.score = request.score
                lead.grade = request.grade
                lead.owner = request.owner or lead.owner
                # The projection shows where the lead is now; the row above keeps where the
                # change happened (they differ when a stage change is logged after the fact).
                # An input from before `current_*` existed (a replayed history) has neither.
                sent = request.model_fields_set
                lead.cadence = (
                    request.current_cadence if "current_cadence" in sent else request.cadence
                )
                lead.step = request.current_step if "current_step" in sent else request.step
                lead.next_touch_at = request.next_touch_at
                if request.to_stage == "closed" and "do not contact" in request.reason:
                    lead.do_not_contact = True
            if request.from_stage == "sql" and request.to_stage in ("won", "lost", "closed"):
                await self._close_opportunity(session, request)
            await self._tell_crm(session, request)
            await session.commit()

    async def _close_opportunity(self, session: AsyncSession, request: am.TransitionInput) -> None:
        """The sales outcome on the cycle's opportunity (the funnel's loss reasons read it)."""
        opportunity = await session.scalar(
            select(Opportunity).where(
                Opportunity.lead_id == request.lead_id, Opportunity.cycle == request.cycle
            )
        )
        if opportunity is None or opportunity.outcome is not None:
            return
        if request.to_stage == "won":
            opportunity.outcome = "won"
        elif request.trigger == "handoff.rejected":
            opportunity.outcome = "rejected"
        elif request.to_stage == "lost":
            opportunity.outcome = "lost"
        else:
            return  # closed while with sales (do not contact): no sales outcome to record
        opportunity.outcome_reason = request.loss_reason
        opportunity.closed_at = request.at

    async def _tell_crm(self, session: AsyncSession, request: am.TransitionInput) -> None:
        """Queue the stage change for the CRM when NURTURE_CRM_WEBHOOK_URL is set: recorded in
        the outbox with the stage change itself, sent (signed) by the worker's sender."""
        if self.settings is None or self.settings.crm_webhook_url is None:
            return
        stamp = int(request.at.timestamp())
        # A stable id: a retried activity finds the same post, and the CRM drops a repeat.
        post_id = f"stage-{request.lead_id}-{request.cycle}-{request.to_stage}-{stamp}"
        await crm_outbox.enqueue(
            session,
            post_id,
            request.lead_id,
            "lead.stage_changed",
            {
                "id": post_id,
                "type": "lead.stage_changed",
                "lead_id": request.lead_id,
                "cycle": request.cycle,
                "from_stage": request.from_stage,
                "to_stage": request.to_stage,
                "reason": request.reason,
                "score": request.score,
                "grade": request.grade,
                "owner": request.owner,
                "at": request.at.isoformat(),
            },
        )

    @activity.defn(name=am.ERASE_LEAD)
    async def erase_lead(self, request: am.EraseInput) -> None:
        """Remove the lead's personal data everywhere (see `erase_personal_data`)."""
        await erase_personal_data(self.sessions, request.lead_id, request.now)
