"""Gauges read from the app database: leads by stage, call tasks open/overdue/escalated, the
email outbox and the CRM outbox by status, CRM outcomes waiting for their lead. Counted
where the truth is (every worker's sends land in one table), so an alert on a growing
``nurture_email_sends{status="unknown"}`` holds however many workers run. The web app
refreshes them while its metrics endpoint is on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nurture.adapters import metrics
from nurture.adapters.database import CallTask, CrmUnmatched, EmailSend, LeadRow
from nurture.domain.vocabulary import STAGES
from nurture.services import crm_outbox

log = logging.getLogger(__name__)

REFRESH_EVERY_S = 15.0
SEND_STATUSES = ("queued", "sending", "sent", "failed", "unknown", "skipped")


async def refresh(sessions: async_sessionmaker[AsyncSession], now: datetime | None = None) -> None:
    """Set the database gauges from one read of each table."""
    now = now or datetime.now(UTC)
    async with sessions() as session:
        stages: dict[str, int] = {
            stage: count
            for stage, count in await session.execute(
                select(LeadRow.stage, func.count()).group_by(LeadRow.stage)
            )
        }
        sends: dict[str, int] = {
            status: count
            for status, count in await session.execute(
                select(EmailSend.status, func.count()).group_by(EmailSend.status)
            )
        }
        open_tasks = CallTask.status == "open"
        tasks_open = await session.scalar(select(func.count()).where(open_tasks))
        overdue = await session.scalar(
            select(func.count()).where(open_tasks, CallTask.due_at < now)
        )
        escalated = await session.scalar(
            select(func.count()).where(open_tasks, CallTask.overdue_at.is_not(None))
        )
        crm_posts = await crm_outbox.counts(session)
        unmatched = await session.scalar(select(func.count()).select_from(CrmUnmatched))
    for stage in {*STAGES, *(s for s in stages if s)}:
        metrics.LEADS.labels(stage=stage).set(stages.get(stage, 0))
    for status in {*SEND_STATUSES, *(s for s in sends if s)}:
        metrics.SENDS.labels(status=status).set(sends.get(status, 0))
    metrics.CALL_TASKS.labels(state="open").set(tasks_open or 0)
    metrics.CALL_TASKS.labels(state="overdue").set(overdue or 0)
    metrics.CALL_TASKS.labels(state="escalated").set(escalated or 0)
    for status, count in crm_posts.items():
        metrics.CRM_OUTBOX.labels(status=status).set(count)
    metrics.CRM_UNMATCHED.set(unmatched or 0)


async def refresh_forever(
    sessions: async_sessionmaker[AsyncSession], every_s: float = REFRESH_EVERY_S
) -> None:
    """Refresh the gauges every ``every_s`` seconds until cancelled."""
    while True:
        try:
            await refresh(sessions)
        except Exception:  # noqa: BLE001 - a failed read leaves the last values; try again
            log.warning("metrics: database gauges not refreshed", exc_info=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.sleep(every_s)
