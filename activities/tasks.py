"""SDR call tasks and the toss-up handoff."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.email import lead_context, sdr_context, sender_context
from nurture import activity_models as am
from nurture.cadence import Playbook
from nurture.catalog import CadenceCatalog
from nurture.db import CallTask, LeadRow, Opportunity
from nurture.links import unsubscribe_url
from nurture.rendering import Renderer
from nurture.settings import Settings


async def choose_owner(session: AsyncSession, playbook: Playbook, lead: LeadRow) -> str | None:
    """The lead's SDR: its owner if it has one; else its account's; else round robin in territory.

    Round robin is kept without a counter: the SDR of the territory with the fewest leads
    gets the next one (ties by the playbook's order), which is what a rotation converges to
    and survives restarts and several workers.
    """
    if lead.owner:
        return lead.owner
    if lead.account:
        sticky = await session.scalar(
            select(LeadRow.owner)
            .where(LeadRow.account == lead.account, LeadRow.owner.is_not(None), LeadRow.id != lead.id)
            .limit(1)
        )
        if sticky:
            return sticky
    sdrs = playbook.team.sdrs
    if not sdrs:
        return None
    local = [s for s in sdrs if lead.country and lead.country.upper() in {t.upper() for t in s.territories}]
    pool = local or sdrs
    counts = dict(
        (
            await session.execute(
                select(LeadRow.owner, func.count()).where(LeadRow.owner.in_([s.id for s in pool])).group_by(LeadRow.owner)
            )
        ).all()
    )
    return min(pool, key=lambda s: (counts.get(s.id, 0), pool.index(s))).id


class TaskActivities:
    def __init__(
        self, settings: Settings, sessions: async_sessionmaker[AsyncSession], catalog: CadenceCatalog
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.catalog = catalog

    @activity.defn(name=am.CREATE_CALL_TASK)
    async def create_call_task(self, request: am.CallTaskInput) -> am.CallTaskResult:
        """One task per (lead, cycle, cadence, step, visit), assigned and with its script rendered."""
        playbook = self.catalog.current().playbook
        async with self.sessions() as session:
            existing = await session.scalar(select(CallTask).where(CallTask.key == request.key))
            if existing is not None:
                return am.CallTaskResult(task_id=existing.id, owner=existing.owner, created=False)
            lead = await session.get(LeadRow, request.lead_id)
            if lead is None:
                raise ApplicationError(f"lead {request.lead_id} has no record", type="LeadMissing")
            owner = request.owner or await choose_owner(session, playbook, lead)
            lead.owner = owner
            context = {
                "lead": lead_context(lead),
                "sdr": sdr_context(playbook, owner),
                "sender": sender_context(playbook),
                "unsubscribe_url": unsubscribe_url(
                    self.settings.public_base, self.settings.require_webhook_secret(), lead.id, None
                ),
                "link": lambda url: str(url),
            }
            renderer = Renderer(self.catalog.templates_dir or self.settings.templates_dir)
            script = renderer.render_call_script(request.script, context)
            task = CallTask(
                key=request.key, lead_id=request.lead_id, cycle=request.cycle, cadence=request.cadence,
                step=request.step, visit=request.visit, owner=owner, status="open",
                due_at=request.due_at, script=script,
            )
            session.add(task)
            try:
                await session.commit()
            except IntegrityError:
                await session.rollback()
                existing = await session.scalar(select(CallTask).where(CallTask.key == request.key))
                assert existing is not None
                return am.CallTaskResult(task_id=existing.id, owner=existing.owner, created=False)
            return am.CallTaskResult(task_id=task.id, owner=owner, created=True)

    @activity.defn(name=am.CLOSE_CALL_TASKS)
    async def close_call_tasks(self, request: am.CloseCallTasksInput) -> int:
        """Cancel a lead's open tasks (toss-up, close) or mark one overdue (no outcome in time)."""
        async with self.sessions() as session:
            query = select(CallTask).where(CallTask.lead_id == request.lead_id, CallTask.status == "open")
            if request.task_id:
                query = query.where(CallTask.id == request.task_id)
            tasks = (await session.scalars(query)).all()
            for task in tasks:
                if request.status == "cancelled":
                    task.status = "cancelled"
                    task.completed_at = request.now
                    task.notes = ((task.notes or "") + f"\n[cancelled: {request.reason}]").strip()
                else:
                    task.overdue_at = task.overdue_at or request.now
                    task.notes = ((task.notes or "") + f"\n[overdue: {request.reason}]").strip()
            await session.commit()
            return len(tasks)

    @activity.defn(name=am.HANDOFF)
    async def handoff(self, request: am.HandoffInput) -> am.HandoffResult:
        """Record the opportunity (once per lead and cycle) and tell the CRM when configured."""
        async with self.sessions() as session:
            existing = await session.scalar(select(Opportunity).where(Opportunity.key == request.key))
            created = existing is None
            if created:
                session.add(
                    Opportunity(
                        key=request.key, lead_id=request.lead_id, cycle=request.cycle, owner=request.owner,
                        trigger=request.trigger, reason=request.reason, score=request.score,
                        grade=request.grade, created_at=request.now,
                    )
                )
                try:
                    await session.commit()
                except IntegrityError:
                    await session.rollback()
                    created = False
        notified = False
        if self.settings.crm_webhook_url is not None:
            await post_signed(
                str(self.settings.crm_webhook_url),
                self.settings.require_webhook_secret(),
                {
                    "type": "lead.tossed_up",
                    "id": f"tossup-{request.key}",
                    "lead_id": request.lead_id,
                    "cycle": request.cycle,
                    "owner": request.owner,
                    "trigger": request.trigger,
                    "reason": request.reason,
                    "score": request.score,
                    "grade": request.grade,
                    "at": request.now.isoformat(),
                },
            )
            notified = True
        return am.HandoffResult(opportunity_key=request.key, created=created, crm_notified=notified)


def signature(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The `X-Nurture-Signature` header value for ``body`` (same scheme as inbound)."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


async def post_signed(url: str, secret: str, payload: dict[str, object]) -> None:
    body = json.dumps(payload, sort_keys=True).encode()
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            url, content=body,
            headers={"Content-Type": "application/json", "X-Nurture-Signature": signature(secret, body)},
        )
    if response.status_code >= 500 or response.status_code == 429:
        raise ApplicationError(f"CRM webhook answered {response.status_code}", type="CrmUnavailable")
    if response.status_code >= 400:
        raise ApplicationError(
            f"CRM webhook refused the notification: {response.status_code}", type="CrmRefused", non_retryable=True
        )

